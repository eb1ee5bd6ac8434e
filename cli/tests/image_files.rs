//! Files back out of a system image without restoring it: `info` lists the
//! partitions and file systems of an image section, `list`, `cat` and
//! `extract --image NAME [--partition N]` read the ext4, FAT and NTFS file
//! systems inside it. The disks are made by the real tools (sgdisk,
//! mkfs.ext4 -d, mkfs.vfat + mcopy, mkntfs filled through ntfs-3g, mkswap).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

/// The trees a disk is made from: `src` for ext4, `windows` for FAT and NTFS.
struct Sources {
    src: PathBuf,
    windows: PathBuf,
    /// Whether the NTFS partition was filled (ntfs-3g needs FUSE).
    ntfs_filled: bool,
}

/// The files of the FAT and NTFS partitions: nested folders, a long name, a
/// multi-cluster file, an empty file; mtimes on an even second (FAT keeps
/// 2-second steps).
const WINDOWS_FILES: [&str; 4] = ["EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/a long name.txt", "readme.txt", "empty"];

fn windows_tree(root: &Path) {
    std::fs::create_dir_all(root.join("EFI/BOOT")).unwrap();
    let big: Vec<u8> = (0..150_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(root.join("EFI/BOOT/BOOTX64.EFI"), big).unwrap();
    std::fs::write(root.join("EFI/BOOT/a long name.txt"), b"a long name\n").unwrap();
    std::fs::write(root.join("readme.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    for file in WINDOWS_FILES {
        sh(&format!("touch -d '2020-05-06 07:08:10' '{}'", path_str(&root.join(file))));
    }
}

/// Fills the NTFS image `image` with `tree` through an ntfs-3g mount;
/// `false` (said) where FUSE mounts cannot be made here.
fn fill_ntfs(image: &Path, tree: &Path, at: &Path) -> bool {
    std::fs::create_dir_all(at).unwrap();
    let Ok(mut ntfs3g) = Command::new("ntfs-3g")
        .arg(image)
        .arg(at)
        .args(["-o", "no_detach"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mounted = loop {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        if mounts.lines().any(|l| l.split(' ').nth(1) == Some(path_str(at))) {
            break true;
        }
        if Instant::now() > deadline || matches!(ntfs3g.try_wait(), Ok(Some(_))) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !mounted {
        eprintln!("SKIPPED: ntfs-3g cannot mount here (FUSE needs root and /dev/fuse): the NTFS partition stays empty");
        let _ = ntfs3g.kill();
        let _ = ntfs3g.wait();
        return false;
    }
    let copied = Command::new("cp").arg("-a").arg(format!("{}/.", path_str(tree))).arg(at).status();
    let _ = Command::new("umount").arg(at).status();
    // ntfs-3g has written everything once it exits.
    let _ = ntfs3g.wait();
    assert!(copied.is_ok_and(|s| s.success()), "copying into the NTFS mount failed");
    true
}

/// A 48 MiB GPT disk made from two source trees, archived as image `disk`:
/// partition 1 FAT "BOOT" (8 MiB, from the windows tree), 2 ext4 "rootfs"
/// (16 MiB, from the source tree), and with `all` also 3 NTFS "Windows"
/// (16 MiB, the windows tree) and 4 Linux swap (1 MiB).
fn disk_archive(dir: &Path, all: bool) -> (PathBuf, Sources) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc/sub")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"strata\n").unwrap();
    std::fs::write(src.join("etc/sub/numbers"), (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>())
        .unwrap();
    std::os::unix::fs::symlink("etc/hostname", src.join("link")).unwrap();
    sh(&format!("chmod 0640 '{}'", path_str(&src.join("etc/hostname"))));
    let windows = dir.join("windows");
    windows_tree(&windows);
    let (ext4, fat, disk) = (dir.join("ext4.img"), dir.join("fat.img"), dir.join("disk.img"));
    sh(&format!(
        "mkfs.ext4 -q -F -I 256 -L rootfs -U 0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9 -d '{}' '{}' 16M 2>/dev/null",
        path_str(&src),
        path_str(&ext4)
    ));
    sh(&format!("mkfs.vfat -n BOOT -i 1234ABCD -C '{}' 8192 >/dev/null", path_str(&fat)));
    // mtools takes local time for FAT's zoneless times: UTC, as the reader does.
    sh(&format!("cd '{}' && TZ=UTC mcopy -s -m -i '{}' * ::/", path_str(&windows), path_str(&fat)));
    let more = if all { " -n3:0:+16M -t3:0700 -c3:data -n4:0:+1M -t4:8200 -c4:swap" } else { "" };
    sh(&format!(
        "truncate -s 48M '{0}' && sgdisk -o -n1:2048:+8M -t1:ef00 -c1:esp -n2:0:+16M -t2:8300 -c2:root{more} '{0}' >/dev/null",
        path_str(&disk)
    ));
    sh(&format!("dd if='{}' of='{}' bs=1M seek=1 conv=notrunc status=none", path_str(&fat), path_str(&disk)));
    sh(&format!("dd if='{}' of='{}' bs=1M seek=9 conv=notrunc status=none", path_str(&ext4), path_str(&disk)));
    let mut ntfs_filled = false;
    if all {
        let (ntfs, swap) = (dir.join("ntfs.img"), dir.join("swap.img"));
        sh(&format!("truncate -s 16M '{0}' && mkntfs -F -Q -L Windows '{0}' >/dev/null 2>&1", path_str(&ntfs)));
        ntfs_filled = fill_ntfs(&ntfs, &windows, &dir.join("ntfs-mnt"));
        sh(&format!("truncate -s 1M '{0}' && mkswap -L swappy '{0}' >/dev/null 2>&1", path_str(&swap)));
        sh(&format!("dd if='{}' of='{}' bs=1M seek=25 conv=notrunc status=none", path_str(&ntfs), path_str(&disk)));
        sh(&format!("dd if='{}' of='{}' bs=1M seek=41 conv=notrunc status=none", path_str(&swap), path_str(&disk)));
    }
    let archive = dir.join("a.strata");
    run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(&disk)), "-q"]);
    (archive, Sources { src, windows, ntfs_filled })
}

fn tools() -> bool {
    ["mkfs.ext4", "mkfs.vfat", "mcopy", "sgdisk", "mkntfs", "ntfs-3g", "mkswap"].iter().all(|t| require_tool(t))
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(run_ok(args).stdout).unwrap()
}

#[test]
fn info_lists_partitions_and_file_systems() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = disk_archive(dir.path(), true);
    let text = stdout(&["info", path_str(&archive)]);
    assert!(text.contains("GPT partition table, 4 partitions"), "{text}");
    assert!(text.contains("ntfs \"Windows\""), "{text}");
    assert!(text.contains("swap \"swappy\""), "{text}");
    assert!(text.contains("fat") && text.contains("\"BOOT\"") && text.contains("1234-ABCD"), "{text}");
    assert!(text.contains("ext4 \"rootfs\" 0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&["info", path_str(&archive), "--json"])).unwrap();
    let volumes = &json["sections"][0]["volumes"];
    assert_eq!(volumes["partition_table"], "GPT");
    let root = &volumes["partitions"][1];
    assert_eq!((root["number"].as_u64(), root["start"].as_u64()), (Some(2), Some(9 * MIB)));
    assert_eq!(root["name"], "root");
    assert_eq!(root["filesystem"]["type"], "ext4");
    assert_eq!(root["filesystem"]["size"].as_u64(), Some(16 * MIB));
    let used = root["filesystem"]["used_bytes"].as_u64().unwrap();
    assert!(used > 800_000 && used < 16 * MIB, "{used}");
    assert_eq!(volumes["partitions"][0]["filesystem"]["label"], "BOOT");
    // NTFS's label comes from $Volume, its used bytes from $Bitmap (the
    // metafiles of a 16 MiB volume take about 2.5 MiB).
    let ntfs = &volumes["partitions"][2]["filesystem"];
    assert_eq!((ntfs["type"].as_str(), ntfs["label"].as_str()), (Some("ntfs"), Some("Windows")));
    let used = ntfs["used_bytes"].as_u64().unwrap();
    assert!(used > 2 * MIB && used < 16 * MIB, "{used}");
}

#[test]
fn list_cat_and_extract_read_files_out_of_a_partition() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, Sources { src, .. }) = disk_archive(dir.path(), true);
    let a = path_str(&archive);

    let listed = stdout(&["list", a, "--image", "disk", "--partition", "2"]);
    let mut paths: Vec<&str> = listed.lines().collect();
    paths.sort();
    assert_eq!(paths, [".", "etc", "etc/hostname", "etc/sub", "etc/sub/numbers", "link", "lost+found"]);
    let long = stdout(&["list", a, "--image", "disk", "--partition", "2", "-l", "etc"]);
    assert!(long.lines().any(|l| l.starts_with("-rw-r-----") && l.ends_with("etc/hostname")), "{long}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&["list", a, "--image", "disk", "--partition", "2", "--json"])).unwrap();
    let entries = json["sections"][0]["entries"].as_array().unwrap();
    let link = entries.iter().find(|e| e["path"] == "link").unwrap();
    assert_eq!((link["kind"].as_str(), link["target"].as_str()), (Some("symlink"), Some("etc/hostname")));

    assert_eq!(run_ok(&["cat", a, "--image", "disk", "--partition", "2", "/etc/hostname"]).stdout, b"strata\n");
    let numbers = run_ok(&["cat", a, "--image", "disk", "--partition", "2", "etc/sub/numbers"]).stdout;
    assert!(numbers == std::fs::read(src.join("etc/sub/numbers")).unwrap());

    // One folder, with the folders that lead to it.
    let one = dir.path().join("one");
    run_ok(&["extract", a, "--image", "disk", "--partition", "2", path_str(&one), "etc/sub", "-q"]);
    assert!(std::fs::read(one.join("etc/sub/numbers")).unwrap() == std::fs::read(src.join("etc/sub/numbers")).unwrap());
    assert!(!one.join("etc/hostname").exists() && !one.join("link").exists());
    // Everything: contents, modes, mtimes (to the second: mkfs.ext4 -d copies
    // seconds) and links as the source has them.
    let all = dir.path().join("all");
    run_ok(&["extract", a, "--image", "disk", "--partition", "2", path_str(&all), "-q"]);
    for path in ["etc/hostname", "etc/sub/numbers"] {
        let (want, got) = (src.join(path), all.join(path));
        assert!(std::fs::read(&want).unwrap() == std::fs::read(&got).unwrap(), "{path}");
        let (w, g) = (std::fs::metadata(&want).unwrap(), std::fs::metadata(&got).unwrap());
        assert_eq!((w.mode() & 0o7777, w.mtime()), (g.mode() & 0o7777, g.mtime()), "{path}");
    }
    assert_eq!(std::fs::read_link(all.join("link")).unwrap(), Path::new("etc/hostname"));
    // Nothing left under a temporary name.
    let leftovers = walkdir(&all).into_iter().filter(|p| p.contains(".strata-")).count();
    assert_eq!(leftovers, 0);
}

#[test]
fn fat_and_ntfs_partitions_list_cat_and_extract_as_their_sources() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, sources) = disk_archive(dir.path(), true);
    let a = path_str(&archive);
    let mut want: Vec<&str> = vec![".", "EFI", "EFI/BOOT"];
    want.extend(WINDOWS_FILES);
    want.sort();
    for partition in ["1", "3"] {
        if partition == "3" && !sources.ntfs_filled {
            continue;
        }
        let strata = |command: &str, more: &[&str]| -> String {
            let mut all = vec![command, a, "--image", "disk", "--partition", partition];
            all.extend_from_slice(more);
            // Bytes as they come, for `cat`: mapped one to one onto chars.
            run_ok(&all).stdout.iter().map(|&b| b as char).collect()
        };
        let bytes = |text: String| -> Vec<u8> { text.chars().map(|c| c as u8).collect() };
        let listed = strata("list", &[]);
        let mut paths: Vec<&str> = listed.lines().collect();
        paths.sort();
        assert_eq!(paths, want, "partition {partition}");
        // Modes as the adapters give them, sizes as the sources have them.
        let long = strata("list", &["-l"]);
        let line = |path: &str| long.lines().find(|l| l.ends_with(&format!("  {path}"))).unwrap_or_default();
        assert!(line("EFI/BOOT").starts_with("drwxr-xr-x  0/0"), "{long}");
        assert!(line("EFI/BOOT/BOOTX64.EFI").starts_with("-rw-r--r--  0/0     150000 "), "{long}");
        assert!(line("empty").starts_with("-rw-r--r--  0/0          0 "), "{long}");
        for path in WINDOWS_FILES {
            let cat = bytes(strata("cat", &[path]));
            assert!(cat == std::fs::read(sources.windows.join(path)).unwrap(), "partition {partition}: {path}");
        }
        // Everything, then one folder with the folders that lead to it.
        let all = dir.path().join(format!("all-{partition}"));
        strata("extract", &[path_str(&all), "-q"]);
        for path in WINDOWS_FILES {
            let (want, got) = (sources.windows.join(path), all.join(path));
            assert!(std::fs::read(&want).unwrap() == std::fs::read(&got).unwrap(), "{path}");
            let (w, g) = (std::fs::metadata(&want).unwrap(), std::fs::metadata(&got).unwrap());
            assert_eq!((g.mode() & 0o7777, g.mtime()), (0o644, w.mtime()), "partition {partition}: {path}");
        }
        assert_eq!(walkdir(&all).into_iter().filter(|p| p.contains(".strata-")).count(), 0);
        let one = dir.path().join(format!("one-{partition}"));
        strata("extract", &[path_str(&one), "EFI/BOOT/a long name.txt", "-q"]);
        assert_eq!(std::fs::read(one.join("EFI/BOOT/a long name.txt")).unwrap(), b"a long name\n");
        assert!(!one.join("readme.txt").exists() && !one.join("EFI/BOOT/BOOTX64.EFI").exists());
    }
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        found.push(entry.file_name().to_string_lossy().into_owned());
        if entry.file_type().unwrap().is_dir() {
            found.extend(walkdir(&entry.path()));
        }
    }
    found
}

#[test]
fn wrong_choices_are_clear_errors() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = disk_archive(dir.path(), true);
    let a = path_str(&archive);
    let said = |args: &[&str]| {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Two partitions hold a file system: which one?
    assert!(said(&["list", a, "--image", "disk"]).contains("choose with --partition"));
    assert!(said(&["list", a, "--image", "disk", "--partition", "7"]).contains("partitions 1, 2, 3, 4"));
    // Swap is recognised but holds no files to read: said so.
    let swap = said(&["list", a, "--image", "disk", "--partition", "4"]);
    assert!(swap.contains("swap") && swap.contains("cannot be read yet"), "{swap}");
    assert!(said(&["cat", a, "--image", "disk", "--partition", "1", "EFI"]).contains("is a directory"));
    assert!(said(&["cat", a, "--image", "disk", "--partition", "1", "EFI/nothing"]).contains("/EFI/nothing"));
    assert!(said(&["cat", a, "--image", "disk", "--partition", "2", "etc/nothing"]).contains("/etc/nothing"));
    assert!(said(&["cat", a, "--image", "disk", "--partition", "2", "etc"]).contains("is a directory"));
    assert!(said(&["list", a, "--image", "nodisk"]).contains("no image named"));
    // A path not there: listed as missing, exit 1.
    let out = run(&["list", a, "--image", "disk", "--partition", "2", "nothing/here"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_damaged_image_gives_a_clear_error_never_a_wrong_byte() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = disk_archive(dir.path(), false);
    // Damage the chunk holding the start of partition 2 (its superblock and
    // group descriptors): the second 4 MiB chunk of the image.
    let mut bytes = std::fs::read(&archive).unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&["info", path_str(&archive), "--json"])).unwrap();
    assert!(json["sections"][0]["image"]["chunks"].as_u64().unwrap() >= 2);
    // Flip bytes in every stored chunk but the first: the partition table
    // stays readable, the ext4 metadata does not.
    let cut = bytes.len() / 3;
    for b in &mut bytes[cut..cut + 64] {
        *b ^= 0x5A;
    }
    let damaged = dir.path().join("damaged.strata");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&["cat", path_str(&damaged), "--image", "disk", "--partition", "2", "etc/hostname"]);
    assert_ne!(out.status.code(), Some(0), "a damaged image gave: {:?}", String::from_utf8_lossy(&out.stdout));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("panicked"), "{said}");
    assert!(out.stdout.is_empty() || out.stdout == b"strata\n", "never a wrong byte");
    assert!(said.contains("cannot be read") || said.contains("checksum") || said.contains("damaged"), "{said}");
    // info says the partition is unreadable, not that it holds no file system.
    let info = stdout(&["info", path_str(&damaged)]);
    assert!(info.contains("unreadable ("), "{info}");
}

/// `cat` of a file inside an image decodes a chunk read once only as far as
/// the read needs (FORMAT.md 10.1, step 4) and still gives the file's bytes,
/// here over many 64 KiB chunks from a deep path; a stored byte damaged under
/// the file fails its chunk's record CRC: an error, never a wrong byte.
#[test]
fn cat_gives_a_file_over_many_chunks_and_never_a_damaged_byte() {
    if !require_tool("mkfs.ext4") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a/b/c/d")).unwrap();
    let text: Vec<u8> = (0..400_000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    std::fs::write(src.join("a/b/c/d/text"), &text).unwrap();
    std::fs::write(src.join("noise"), noise(7, 300_000)).unwrap();
    for i in 0..50 {
        std::fs::write(src.join(format!("a/b/f{i}")), format!("file {i}\n")).unwrap();
    }
    let image = dir.path().join("ext4.img");
    sh(&format!("mkfs.ext4 -q -F -I 256 -d '{}' '{}' 16M 2>/dev/null", path_str(&src), path_str(&image)));
    let archive = dir.path().join("a.strata");
    let source = format!("disk={}", path_str(&image));
    run_ok(&["create", path_str(&archive), "--image", &source, "--chunk-size", "64K", "-q"]);
    let a = path_str(&archive);
    for path in ["a/b/c/d/text", "noise", "a/b/f7", "a/b/f49"] {
        let out = run_ok(&["cat", a, "--image", "disk", path]).stdout;
        assert!(out == std::fs::read(src.join(path)).unwrap(), "{path}");
    }

    // The chunk holding the text's second MiB, one stored byte changed.
    let raw = std::fs::read(&image).unwrap();
    let needle = &text[1 << 20..(1 << 20) + 64];
    let at = raw.windows(needle.len()).position(|w| w == needle).expect("the text is in the image") as u64;
    let opened = strata_reader::Archive::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let extent = opened.image("disk").unwrap().extents().find(|e| e.range().contains(&at)).unwrap();
    let strata_reader::ExtentKind::Data(chunk_ref) = extent.kind else { panic!("{extent:?} holds the text") };
    let mut bytes = std::fs::read(&archive).unwrap();
    let record = chunk_ref as usize;
    let body_length = u64::from_le_bytes(bytes[record + 16..record + 24].try_into().unwrap()) as usize;
    bytes[record + 32 + 40 + (body_length - 40) / 2] ^= 0x10;
    let damaged = dir.path().join("damaged.strata");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&["cat", path_str(&damaged), "--image", "disk", "a/b/c/d/text"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(text.starts_with(&out.stdout), "a wrong byte was written");
    assert!(out.stdout.len() < (1 << 20) + 64, "the damaged chunk's bytes were written");
    assert!(said.contains("record-checksum"), "{said}");
    // The files elsewhere still read.
    assert_eq!(run_ok(&["cat", path_str(&damaged), "--image", "disk", "a/b/f7"]).stdout, b"file 7\n");
}
