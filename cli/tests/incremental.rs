//! Incremental archives (`spec/FORMAT.md` section 15): `create --parent`
//! stores only what the chain lacks, every read verb finds the ancestors
//! beside the child or by `--parent`, and a missing, replaced or damaged
//! ancestor is a clear error that costs only what refers to it.

mod common;

use std::path::Path;

use common::manifest::{differences, manifest};
use common::*;

const MIB: usize = 1 << 20;

/// A tree of many small files, a few large ones and a link, all older than a
/// second, so that a parent made now records them as settled.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs/deep")).unwrap();
    for i in 0..40u64 {
        std::fs::write(root.join(format!("docs/f{i}.txt")), format!("file {i} ").repeat(100 + i as usize)).unwrap();
    }
    std::fs::write(root.join("docs/deep/big.bin"), noise(7, 12 * MIB)).unwrap();
    std::fs::write(root.join("log.txt"), noise(8, 3 * MIB)).unwrap();
    std::os::unix::fs::symlink("docs/f1.txt", root.join("link")).unwrap();
    // ctime cannot be set: waiting makes every file at least a second older
    // than a parent made next (whose creation time is in whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(2100));
}

/// The tree of `make_tree` in `d/src`, and a full backup of it as section
/// `t` in `d/full.strata`.
fn tree_and_full_backup(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = d.join("src");
    make_tree(&src);
    let full = d.join("full.strata");
    run_ok(&["create", path_str(&full), "--files", &format!("t={}", path_str(&src)), "-q"]);
    (src, full)
}

fn create_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run_ok(&all);
    serde_json::from_slice(&out.stdout).expect("create --json prints JSON")
}

fn tree_of(json: &serde_json::Value) -> &serde_json::Value {
    json["sections"].as_array().unwrap().iter().find(|s| s["kind"] == "files").expect("a tree section")
}

fn extract_same(archive: &Path, src: &Path, dest: &Path, extra: &[&str]) {
    let mut args = vec!["extract", path_str(archive), "--files", "t", path_str(dest), "-q"];
    args.extend_from_slice(extra);
    run_ok(&args);
    let diff = differences(&manifest(src), &manifest(dest));
    assert!(diff.is_empty(), "extracted tree differs from its source: {diff:?}");
}

#[test]
fn a_chain_stores_only_changes_and_reads_back_whole() {
    let dir = temp_dir();
    let d = dir.path();
    let src = d.join("src");
    make_tree(&src);
    let disk = d.join("disk.img");
    std::fs::write(&disk, noise(3, 16 * MIB)).unwrap();
    let files_arg = format!("t={}", path_str(&src));
    let image_arg = format!("disk={}", path_str(&disk));
    // One backup of the tree and the image, a child of `parent` when given.
    let backup = |out: &Path, parent: Option<&Path>| {
        let mut args = vec!["create", path_str(out), "--files", &files_arg, "--image", &image_arg];
        if let Some(parent) = parent {
            args.extend(["--parent", path_str(parent)]);
        }
        create_json(&args)
    };
    let full = d.join("mon.strata");
    let full_json = backup(&full, None);
    let full_size = full_json["archive_size"].as_u64().unwrap();

    // Unchanged: the child reads no file and adds a tiny fraction.
    let tue = d.join("tue.strata");
    let json = backup(&tue, Some(&full));
    let files = tree_of(&json)["files"].as_u64().unwrap();
    assert_eq!(tree_of(&json)["unchanged_files"].as_u64().unwrap(), files, "no file is read again");
    assert_eq!(tree_of(&json)["stored_bytes"].as_u64().unwrap(), 0, "no content is stored again");
    let tue_size = json["archive_size"].as_u64().unwrap();
    assert!(tue_size * 100 < full_size, "an unchanged child is small: {tue_size} of {full_size}");

    // Changes: a file rewritten in place, one appended, one added, one removed,
    // a window of the image and a MiB in the middle of the big file.
    std::fs::write(src.join("docs/f3.txt"), "changed").unwrap();
    {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new().append(true).open(src.join("log.txt")).unwrap();
        log.write_all(&noise(9, MIB)).unwrap();
    }
    std::fs::write(src.join("docs/new.txt"), "new file").unwrap();
    std::fs::remove_file(src.join("docs/f5.txt")).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let big = std::fs::OpenOptions::new().write(true).open(src.join("docs/deep/big.bin")).unwrap();
        big.write_all_at(&noise(10, MIB), 5 * MIB as u64).unwrap();
        let image = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        image.write_all_at(&noise(11, 4096), 9 * MIB as u64).unwrap();
    }
    let wed = d.join("wed.strata");
    let json = backup(&wed, Some(&tue));
    let wed_size = json["archive_size"].as_u64().unwrap();
    // About the changed data: a 4 MiB window of the image, two of big.bin, the
    // log's new tail, small files; far from the 31 MiB a full copy takes.
    assert!(wed_size < 16 * MIB as u64, "the child stores about the changes: {wed_size} bytes");

    // Every generation reads back whole; the grandchild through both ancestors.
    let info = run_ok(&["info", path_str(&wed), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["chain"].as_array().unwrap().len(), 2, "{info}");
    assert!(info["chain"].as_array().unwrap().iter().all(|a| a["found"].is_string()), "{info}");
    for archive in [&full, &tue, &wed] {
        run_ok(&["verify", path_str(archive)]);
    }
    extract_same(&wed, &src, &d.join("out-wed"), &[]);
    let restored = d.join("disk-wed.img");
    run_ok(&["restore", path_str(&wed), "--image", "disk", path_str(&restored)]);
    assert_eq!(std::fs::read(&restored).unwrap(), std::fs::read(&disk).unwrap(), "the image restores bit for bit");
    // From a pipe too: ancestors are read by random access beside the child.
    let piped = d.join("disk-piped.img");
    sh(&format!(
        "cd '{}' && '{}' restore - --image disk '{}' < '{}'",
        path_str(d),
        env!("CARGO_BIN_EXE_strata"),
        path_str(&piped),
        path_str(&wed)
    ));
    assert_eq!(std::fs::read(&piped).unwrap(), std::fs::read(&disk).unwrap());
    let cat = run_ok(&["cat", path_str(&wed), "--files", "t", "docs/f7.txt"]);
    assert_eq!(cat.stdout, std::fs::read(src.join("docs/f7.txt")).unwrap());
}

#[test]
fn missing_moved_and_replaced_ancestors_are_named_and_cost_only_their_ranges() {
    let dir = temp_dir();
    let d = dir.path();
    let (src, full) = tree_and_full_backup(d);
    std::fs::write(src.join("docs/only-in-child.txt"), "kept in the child").unwrap();
    let child = d.join("child.strata");
    run_ok(&[
        "create",
        path_str(&child),
        "--parent",
        path_str(&full),
        "--files",
        &format!("t={}", path_str(&src)),
        "-q",
    ]);

    // Moved away: every read verb that needs it says which file and UUID.
    // Listing needs it too: the child's entry groups are stored against the
    // parent's (FORMAT.md 5.3), so the child alone names no file.
    let away = d.join("away");
    std::fs::create_dir(&away).unwrap();
    std::fs::rename(&full, away.join("full.strata")).unwrap();
    let out = run(&["list", path_str(&child), "--files", "t"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("full.strata") && err.contains("missing"), "{err}");
    let out = run(&["verify", path_str(&child), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(problems.iter().all(|p| p["class"] == "parent-missing"), "{report}");
    assert!(problems.iter().all(|p| p["detail"].as_str().unwrap().contains("full.strata")), "{report}");
    for verb in [["cat", "docs/only-in-child.txt"], ["cat", "docs/f1.txt"]] {
        let out = run(&[verb[0], path_str(&child), "--files", "t", verb[1]]);
        assert_ne!(out.status.code(), Some(0));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("full.strata") && err.contains("missing"), "{err}");
    }
    let out = run(&["verify", path_str(&child), "--chain"]);
    assert_eq!(out.status.code(), Some(1), "a missing ancestor is damage to the chain");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ancestor 1 full.strata") && err.contains("missing"), "{err}");
    // --parent finds it elsewhere, by its UUID.
    let moved = away.join("full.strata");
    run_ok(&["verify", path_str(&child), "--parent", path_str(&moved)]);
    extract_same(&child, &src, &d.join("out"), &["--parent", path_str(&moved)]);

    // Another archive under the parent's name does not bind.
    run_ok(&["create", path_str(&full), "--files", &format!("t={}", path_str(&src)), "-q"]);
    let out = run(&["verify", path_str(&child), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["class"], "parent-mismatch", "{report}");
    let out = run(&["extract", path_str(&child), "--files", "t", path_str(&d.join("wrong"))]);
    assert_ne!(out.status.code(), Some(0), "a wrong parent never gives bytes");
    std::fs::remove_file(&full).unwrap();

    // A damaged ancestor: its damaged chunk costs the files in it, by path.
    std::fs::copy(&moved, &full).unwrap();
    let mut bytes = std::fs::read(&full).unwrap();
    let big_at = bytes.len() / 2;
    bytes[big_at] ^= 0xFF;
    std::fs::write(&full, &bytes).unwrap();
    let out = run(&["verify", path_str(&child), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let affected: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["affects"].as_array().unwrap().iter().filter_map(|a| a["path"].as_str().map(String::from)))
        .collect();
    assert!(!affected.is_empty(), "the damage is named by file: {report}");
    assert!(!affected.iter().any(|p| p.contains("only-in-child")), "what the child holds is intact: {affected:?}");
    // --chain verifies the parent in full too: one report for each archive.
    let out = run(&["verify", path_str(&child), "--chain", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().expect("an array of reports");
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[1]["archive"].as_str().unwrap().ends_with("full.strata"), "{:?}", reports[1]);
    assert!(!reports[1]["problems"].as_array().unwrap().is_empty(), "the parent's damage: {:?}", reports[1]);
}

#[test]
fn a_file_changed_since_the_parent_is_read_again_and_reread_reads_all() {
    let dir = temp_dir();
    let d = dir.path();
    let (src, full) = tree_and_full_backup(d);
    // Same size, and the mtime put back: only the ctime tells.
    let path = src.join("docs/f2.txt");
    let before = std::fs::metadata(&path).unwrap();
    let mut content = std::fs::read(&path).unwrap();
    content[0] ^= 1;
    std::fs::write(&path, &content).unwrap();
    filetime::set_file_mtime(&path, filetime::FileTime::from_last_modification_time(&before)).unwrap();
    let child = d.join("child.strata");
    let json = create_json(&[
        "create",
        path_str(&child),
        "--parent",
        path_str(&full),
        "--files",
        &format!("t={}", path_str(&src)),
    ]);
    let files = tree_of(&json)["files"].as_u64().unwrap();
    assert_eq!(tree_of(&json)["unchanged_files"].as_u64().unwrap(), files - 1, "the touched file is read again");
    extract_same(&child, &src, &d.join("out"), &[]);
    let reread = d.join("reread.strata");
    let json = create_json(&[
        "create",
        path_str(&reread),
        "--parent",
        path_str(&full),
        "--reread",
        "--files",
        &format!("t={}", path_str(&src)),
    ]);
    assert_eq!(tree_of(&json)["unchanged_files"].as_u64().unwrap(), 0);
    assert!(
        json["archive_size"].as_u64().unwrap() < 4 * MIB as u64,
        "content read again is still deduplicated: {json}"
    );
    extract_same(&reread, &src, &d.join("out2"), &[]);
}

#[test]
fn a_chain_of_ten_reads_back_and_the_depth_limit_is_stated() {
    let dir = temp_dir();
    let d = dir.path();
    let disk = d.join("disk.img");
    std::fs::write(&disk, noise(1, 2 * MIB)).unwrap();
    let mut parent = d.join("g0.strata");
    run_ok(&[
        "create",
        path_str(&parent),
        "--image",
        &format!("disk={}", path_str(&disk)),
        "--chunk-size",
        "64K",
        "-q",
    ]);
    for generation in 1..=10u64 {
        use std::os::unix::fs::FileExt;
        let image = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        image.write_all_at(&noise(100 + generation, 4096), generation * 65_536).unwrap();
        let child = d.join(format!("g{generation}.strata"));
        run_ok(&[
            "create",
            path_str(&child),
            "--parent",
            path_str(&parent),
            "--image",
            &format!("disk={}", path_str(&disk)),
            "--chunk-size",
            "64K",
            "-q",
        ]);
        parent = child;
    }
    let info: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&parent), "--json"]).stdout).unwrap();
    assert_eq!(info["chain"].as_array().unwrap().len(), 10);
    let out = d.join("tip.img");
    run_ok(&["restore", path_str(&parent), "--image", "disk", path_str(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&disk).unwrap());
    run_ok(&["verify", path_str(&parent)]);
}

#[test]
fn a_cycle_and_a_chain_past_the_limit_are_refused_in_plain_words() {
    let dir = temp_dir();
    let d = dir.path();
    let disk = d.join("disk.img");
    std::fs::write(&disk, noise(2, 64 << 10)).unwrap();
    let image = format!("disk={}", path_str(&disk));
    let uuid_a = "11111111111111111111111111111111";
    let a = d.join("a.strata");
    run_ok(&["create", path_str(&a), "--image", &image, "--uuid", uuid_a, "-q"]);
    let b = d.join("b.strata");
    run_ok(&["create", path_str(&b), "--parent", path_str(&a), "--image", &image, "-q"]);
    // A child that would carry its grandparent's UUID closes a cycle.
    let c = d.join("c.strata");
    let out = run(&["create", path_str(&c), "--parent", path_str(&b), "--image", &image, "--uuid", uuid_a]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UUID"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!c.exists(), "nothing is left under the name");
    // 64 ancestors is the format's limit: the 65th generation is refused,
    // naming the way out.
    let mut parent = b;
    for generation in 2..=64 {
        let child = d.join(format!("g{generation}.strata"));
        run_ok(&["create", path_str(&child), "--parent", path_str(&parent), "--image", &image, "-q"]);
        parent = child;
    }
    let info: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&parent), "--json"]).stdout).unwrap();
    assert_eq!(info["chain"].as_array().unwrap().len(), 64);
    let out = run(&["create", path_str(&d.join("too-deep.strata")), "--parent", path_str(&parent), "--image", &image]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("64") && err.contains("flatten"), "{err}");
    // Flattened, the chain starts again.
    let flat = d.join("flat.strata");
    run_ok(&["flatten", path_str(&parent), path_str(&flat)]);
    let info: serde_json::Value = serde_json::from_slice(&run_ok(&["info", path_str(&flat), "--json"]).stdout).unwrap();
    assert_eq!(info["incremental"], false);
    run_ok(&["create", path_str(&d.join("new.strata")), "--parent", path_str(&flat), "--image", &image, "-q"]);
}

#[test]
fn files_inside_an_image_read_through_the_chain() {
    if !require_tool("mkfs.ext4") {
        return;
    }
    let dir = temp_dir();
    let d = dir.path();
    let src = d.join("fs");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"chain-host\n").unwrap();
    std::fs::write(src.join("etc/big"), noise(4, 3 * MIB)).unwrap();
    let disk = d.join("disk.img");
    sh(&format!("mkfs.ext4 -q -F -d '{}' '{}' 16M", path_str(&src), path_str(&disk)));
    let image = format!("disk={}", path_str(&disk));
    let full = d.join("full.strata");
    run_ok(&["create", path_str(&full), "--image", &image, "--chunk-size", "256K", "-q"]);
    let child = d.join("child.strata");
    run_ok(&["create", path_str(&child), "--parent", path_str(&full), "--image", &image, "--chunk-size", "256K", "-q"]);
    // Every window of the child is its parent's: the file system is read
    // from the parent's chunks, partly decoded or whole.
    let info: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&child), "--json"]).stdout).unwrap();
    assert!(info["sections"][0]["image"]["stored_bytes"].as_u64().unwrap() < 4096, "{info}");
    let out = run_ok(&["cat", path_str(&child), "--image", "disk", "etc/hostname"]);
    assert_eq!(out.stdout, b"chain-host\n");
    let out = run_ok(&["cat", path_str(&child), "--image", "disk", "etc/big"]);
    assert_eq!(out.stdout, std::fs::read(src.join("etc/big")).unwrap());
    run_ok(&["list", path_str(&child), "--image", "disk", "-l"]);
}

/// Small files that moved (a renamed folder) or were copied since the parent
/// are read, found in the parent by their content, and referred to: the
/// child does not store them again, and reads back whole.
#[test]
fn small_files_that_moved_or_were_copied_refer_to_the_parents_copies() {
    let dir = temp_dir();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir_all(src.join("pics")).unwrap();
    for i in 0..60u64 {
        std::fs::write(src.join(format!("pics/p{i}.jpg")), noise(300 + i, 10_000 + i as usize * 37)).unwrap();
    }
    make_tree(&src);
    let full = d.join("full.strata");
    run_ok(&["create", path_str(&full), "--files", &format!("t={}", path_str(&src)), "-q"]);
    std::fs::rename(src.join("pics"), src.join("photos")).unwrap();
    std::fs::copy(src.join("photos/p3.jpg"), src.join("docs/copy-of-p3.jpg")).unwrap();
    let child = d.join("child.strata");
    let json = create_json(&[
        "create",
        path_str(&child),
        "--parent",
        path_str(&full),
        "--files",
        &format!("t={}", path_str(&src)),
    ]);
    let moved_bytes: u64 = (0..60u64).map(|i| 10_000 + i * 37).sum();
    let size = json["archive_size"].as_u64().unwrap();
    assert!(size < moved_bytes / 4, "the moved files are stored again: {size} bytes for {moved_bytes}: {json}");
    let files = tree_of(&json)["files"].as_u64().unwrap();
    assert_eq!(tree_of(&json)["unchanged_files"].as_u64().unwrap(), files, "every file found in the parent");
    extract_same(&child, &src, &d.join("out"), &[]);
    run_ok(&["verify", path_str(&child)]);
}

/// Bytes inserted into and removed from the middle of a large file move the
/// content after them: the child stores the pieces around each change, not
/// the rest of the file (content-defined cuts, `spec/FORMAT.md` 14).
#[test]
fn an_insert_in_the_middle_of_a_large_file_costs_about_the_change() {
    let dir = temp_dir();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let original = noise(21, 48 * MIB);
    std::fs::write(src.join("dump.sql"), &original).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let full = d.join("full.strata");
    let files_arg = format!("t={}", path_str(&src));
    run_ok(&["create", path_str(&full), "--files", &files_arg, "-q"]);

    // 1,000 bytes in at 8 MiB, 5,000 bytes out at 30 MiB: with windows fixed
    // at file offset 0, every byte after 8 MiB (40 MiB) would be new.
    let mut changed = original[..8 * MIB].to_vec();
    changed.extend_from_slice(&noise(22, 1000));
    changed.extend_from_slice(&original[8 * MIB..30 * MIB]);
    changed.extend_from_slice(&original[30 * MIB + 5000..]);
    std::fs::write(src.join("dump.sql"), &changed).unwrap();
    let child = d.join("child.strata");
    let json = create_json(&["create", path_str(&child), "--parent", path_str(&full), "--files", &files_arg]);
    let stored = tree_of(&json)["stored_bytes"].as_u64().unwrap();
    // Each change costs the piece that holds it and at most the next one,
    // each at most a chunk (4 MiB).
    assert!(stored <= 16 * MIB as u64, "the child stores {stored} bytes for two small changes: {json}");
    let size = json["archive_size"].as_u64().unwrap();
    assert!(size <= 16 * MIB as u64 + MIB as u64, "the child is {size} bytes");
    extract_same(&child, &src, &d.join("out"), &[]);
    run_ok(&["verify", path_str(&child), "--chain"]);
}

/// Scattered 4 KiB writes (1% of an image's blocks, about eight in every
/// 4 MiB window): each child stores about the changed blocks, not the
/// windows that hold them (FORMAT.md 15.5), and every generation restores bit
/// for bit, by random access, from a pipe and flattened.
#[test]
fn scattered_block_writes_to_an_image_cost_about_the_blocks() {
    let dir = temp_dir();
    let d = dir.path();
    let disk = d.join("disk.img");
    let size = 32 * MIB;
    std::fs::write(&disk, noise(31, size)).unwrap();
    let image_arg = format!("disk={}", path_str(&disk));
    let mut parent = d.join("g0.strata");
    run_ok(&["create", path_str(&parent), "--image", &image_arg, "-q"]);
    let blocks = size / 4096;
    for generation in 1..=3u64 {
        // Blocks picked by a multiplicative step, distinct, all over the image.
        let changed: Vec<usize> = (0..blocks / 100).map(|i| (i * 7919 + generation as usize * 131) % blocks).collect();
        {
            use std::os::unix::fs::FileExt;
            let image = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
            for (i, block) in changed.iter().enumerate() {
                image.write_all_at(&noise(1000 * generation + i as u64, 4096), (block * 4096) as u64).unwrap();
            }
        }
        let child = d.join(format!("g{generation}.strata"));
        let json = create_json(&["create", path_str(&child), "--parent", path_str(&parent), "--image", &image_arg]);
        let added = json["archive_size"].as_u64().unwrap();
        let changed_bytes = (changed.len() * 4096) as u64;
        // The changed blocks are noise: stored raw. Headers, extents and
        // index add a little; a window stored whole would add 4 MiB.
        assert!(
            added < changed_bytes + changed_bytes / 5,
            "generation {generation}: {added} bytes for {changed_bytes} bytes of changed blocks: {json}"
        );
        let restored = d.join(format!("g{generation}.img"));
        run_ok(&["restore", path_str(&child), "--image", "disk", path_str(&restored), "-q"]);
        assert_eq!(file_blake3(&restored), file_blake3(&disk), "generation {generation} restores bit for bit");
        std::fs::remove_file(&restored).unwrap();
        run_ok(&["verify", path_str(&child), "--chain"]);
        parent = child;
    }
    // The tip from a pipe, and flattened.
    let piped = d.join("piped.img");
    sh(&format!(
        "cd '{}' && '{}' restore - --image disk '{}' -q < '{}'",
        path_str(d),
        env!("CARGO_BIN_EXE_strata"),
        path_str(&piped),
        path_str(&parent)
    ));
    assert_eq!(file_blake3(&piped), file_blake3(&disk));
    let flat = d.join("flat.strata");
    run_ok(&["flatten", path_str(&parent), path_str(&flat), "-q"]);
    let restored = d.join("flat.img");
    run_ok(&["restore", path_str(&flat), "--image", "disk", path_str(&restored), "-q"]);
    assert_eq!(file_blake3(&restored), file_blake3(&disk));
    // A read in the middle of a split window gives the image's bytes.
    let cat = run_ok(&["cat", path_str(&parent), "--image", "disk", "--offset", "5000000", "--length", "20000"]);
    assert_eq!(cat.stdout, std::fs::read(&disk).unwrap()[5_000_000..5_020_000]);
}

/// The records of an archive, front to back: (offset, type, flags, stored body length).
fn records_of(bytes: &[u8]) -> Vec<(usize, u16, u16, usize)> {
    let mut out = Vec::new();
    let mut at = u16::from_le_bytes([bytes[12], bytes[13]]) as usize;
    while at + 32 <= bytes.len() && bytes[at..at + 4] == *b"\xd3REC" {
        let kind = u16::from_le_bytes([bytes[at + 4], bytes[at + 5]]);
        let flags = u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]);
        let length = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap()) as usize;
        out.push((at, kind, flags, length));
        at += 32 + length;
    }
    out
}

const FILES_ENTRIES: u16 = 0x22;
const PREFIXED: u16 = 1 << 3;

/// A second backup of a tree that did not change stores its entry groups
/// against the parent's (FORMAT.md 5.3): a few bytes each instead of the
/// whole metadata again. After renames, additions and removals (entry ids
/// shift) the next child is still stored against its parent's groups, and
/// every generation reads back whole, through nested prefixes. A damaged
/// record of the parent costs the child's table it prefixes, named.
#[test]
fn unchanged_tables_of_a_child_cost_a_few_bytes_and_read_back_through_the_chain() {
    let dir = temp_dir();
    let d = dir.path();
    let src = d.join("src");
    for folder in 0..30 {
        let sub = src.join(format!("folder-{folder:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for file in 0..100 {
            std::fs::write(sub.join(format!("note-{file:03}.txt")), format!("{folder} {file}")).unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let spec = format!("t={}", path_str(&src));
    let full = d.join("full.strata");
    run_ok(&["create", path_str(&full), "--files", &spec, "-q"]);
    let child = d.join("child.strata");
    run_ok(&["create", path_str(&child), "--parent", path_str(&full), "--files", &spec, "-q"]);
    let groups = |path: &Path| -> Vec<(usize, u16, usize)> {
        let bytes = std::fs::read(path).unwrap();
        records_of(&bytes).into_iter().filter(|r| r.1 == FILES_ENTRIES).map(|r| (r.0, r.2, r.3)).collect()
    };
    let (parent_groups, child_groups) = (groups(&full), groups(&child));
    assert!(child_groups.iter().all(|g| g.1 & PREFIXED != 0), "every group is stored against the parent's");
    let stored = |g: &[(usize, u16, usize)]| g.iter().map(|r| r.2).sum::<usize>();
    assert!(
        stored(&child_groups) * 20 < stored(&parent_groups),
        "the child's groups take {} bytes, the parent's {}",
        stored(&child_groups),
        stored(&parent_groups)
    );
    extract_same(&child, &src, &d.join("out1"), &[]);

    // Renamed, added and removed entries: ids shift from the first change on.
    std::fs::rename(src.join("folder-03"), src.join("folder-03-renamed")).unwrap();
    for file in 0..40 {
        std::fs::write(src.join(format!("folder-00/added-{file}.txt")), "new").unwrap();
        std::fs::remove_file(src.join(format!("folder-20/note-{file:03}.txt"))).unwrap();
    }
    let grandchild = d.join("grandchild.strata");
    run_ok(&["create", path_str(&grandchild), "--parent", path_str(&child), "--files", &spec, "-q"]);
    assert!(groups(&grandchild).iter().any(|g| g.1 & PREFIXED != 0), "stored against the child's groups");
    extract_same(&grandchild, &src, &d.join("out2"), &[]);
    run_ok(&["verify", path_str(&grandchild), "--chain"]);

    // One byte of the parent's first group damaged: the child's group that
    // is stored against it is lost, reported at the child's group, and the
    // parent's file is named.
    let mut bytes = std::fs::read(&full).unwrap();
    let (at, _, length) = parent_groups[0];
    bytes[at + 32 + length / 2] ^= 0x40;
    std::fs::write(&full, &bytes).unwrap();
    let out = run(&["verify", path_str(&child), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let at_group = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["offset"] == child_groups[0].0 as u64)
        .unwrap_or_else(|| panic!("a problem at the child's group: {report}"));
    assert_eq!(at_group["class"], "record-checksum", "{report}");
    assert!(at_group["detail"].as_str().unwrap().contains("full.strata"), "{report}");
    let out = run(&["list", path_str(&child), "--files", "t"]);
    assert_ne!(out.status.code(), Some(0), "a table that cannot be read is an error, never a wrong listing");
}
