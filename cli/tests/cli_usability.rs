//! The command as a tar, borg or zstd user types it (issue 15): plain paths,
//! sections picked when there is one, everything checked before any work,
//! sizes and dates as people write them, outputs never replaced unasked, and
//! errors that say what to do.

mod common;

use std::path::Path;
use std::process::Output;

use common::{path_str, run, run_ok, temp_dir};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_fails(out: &Output, code: i32, wanted: &[&str]) {
    let said = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {said}");
    for w in wanted {
        assert!(said.contains(w), "stderr lacks {w:?}: {said}");
    }
    // Temporary outputs are named `.NAME.XXXXXX.tmp` (and `.strata-*.tmp` in an
    // extraction): no word of a message may end so.
    let leaked =
        said.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')').any(|w| w.ends_with(".tmp"));
    assert!(!leaked, "a temporary name leaked into a message: {said}");
}

/// Two small folders, `etc` and `home/alice`, with a file each.
fn folders(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let etc = root.join("etc");
    let alice = root.join("home/alice");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::write(etc.join("passwd"), b"root:x:0:0\n").unwrap();
    std::fs::write(alice.join("notes.txt"), b"notes\n").unwrap();
    (etc, alice)
}

fn section_names(archive: &Path) -> Vec<String> {
    let out = run_ok(&["info", path_str(archive), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["sections"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn plain_folders_become_sections_named_after_them() {
    let work = temp_dir();
    let (etc, alice) = folders(work.path());
    let archive = work.path().join("a.strata");
    run_ok(&["create", path_str(&archive), path_str(&etc), path_str(&alice)]);
    assert_eq!(section_names(&archive), ["etc", "alice"]);
    // `--files DIR` without a name is the same.
    let second = work.path().join("b.strata");
    run_ok(&["create", path_str(&second), "--files", path_str(&etc)]);
    assert_eq!(section_names(&second), ["etc"]);
    // Two folders of one name: a clear error with the fix, and nothing written.
    let other = work.path().join("srv/etc");
    std::fs::create_dir_all(&other).unwrap();
    let clash = work.path().join("c.strata");
    let out = run(&["create", path_str(&clash), path_str(&etc), path_str(&other)]);
    assert_fails(&out, 2, &["two sections would be named \"etc\"", "--files etc2="]);
    assert!(!clash.exists());
    // Nothing to back up says what to give.
    let out = run(&["create", path_str(&clash)]);
    assert_fails(&out, 2, &["nothing to back up", "--files NAME=DIR", "--image NAME=SOURCE"]);
}

#[test]
fn everything_is_checked_before_any_work() {
    let work = temp_dir();
    let (etc, _) = folders(work.path());
    let out_file = work.path().join("a.strata");
    // A folder given as an image: say it is a folder and suggest --files.
    let out = run(&["create", path_str(&out_file), "--image", &format!("disk={}", path_str(&etc))]);
    assert_fails(&out, 2, &["is a folder", "--files disk="]);
    // A file given as a folder: suggest --image.
    let file = etc.join("passwd");
    let out = run(&["create", path_str(&out_file), path_str(&file)]);
    assert_fails(&out, 2, &["is not a folder", "--image"]);
    // An invalid name.
    let out = run(&["create", path_str(&out_file), "--files", &format!("a/b={}", path_str(&etc))]);
    assert_eq!(out.status.code(), Some(2));
    // The output is a folder, or lies in a missing folder.
    let out = run(&["create", path_str(work.path()), path_str(&etc)]);
    assert_fails(&out, 2, &["is a folder", "give a file name"]);
    let missing = work.path().join("nonexistent/dir/x.strata");
    let out = run(&["create", path_str(&missing), path_str(&etc)]);
    assert_fails(&out, 2, &["does not exist"]);
    assert!(!out_file.exists(), "no archive after a refused create");
    assert!(std::fs::read_dir(work.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn outputs_are_replaced_only_with_force() {
    let work = temp_dir();
    let (etc, _) = folders(work.path());
    let archive = work.path().join("a.strata");
    run_ok(&["create", path_str(&archive), path_str(&etc)]);
    let before = std::fs::read(&archive).unwrap();
    let out = run(&["create", path_str(&archive), path_str(&etc)]);
    assert_fails(&out, 2, &["already exists", "--force"]);
    assert_eq!(std::fs::read(&archive).unwrap(), before, "the existing archive is untouched");
    run_ok(&["create", path_str(&archive), path_str(&etc), "--force"]);

    let image = work.path().join("disk.img");
    std::fs::write(&image, vec![7u8; 65536]).unwrap();
    let with_image = work.path().join("i.strata");
    run_ok(&["create", path_str(&with_image), "--image", path_str(&image)]);
    let restored = work.path().join("restored.img");
    std::fs::write(&restored, b"precious").unwrap();
    let out = run(&["restore", path_str(&with_image), path_str(&restored)]);
    assert_fails(&out, 2, &["already exists", "--force"]);
    assert_eq!(std::fs::read(&restored).unwrap(), b"precious");
    run_ok(&["restore", path_str(&with_image), path_str(&restored), "--force"]);
    assert_eq!(std::fs::read(&restored).unwrap(), std::fs::read(&image).unwrap());
    // A folder as the destination is refused before the image is written.
    let out = run(&["restore", path_str(&with_image), path_str(work.path())]);
    assert_fails(&out, 2, &["is a folder"]);
}

#[test]
fn read_verbs_pick_the_only_section_and_name_the_others() {
    let work = temp_dir();
    let (etc, alice) = folders(work.path());
    let one = work.path().join("one.strata");
    run_ok(&["create", path_str(&one), path_str(&etc)]);
    // cat PATH and extract DEST need no --files when there is one tree.
    let cat = run_ok(&["cat", path_str(&one), "passwd"]);
    assert_eq!(cat.stdout, b"root:x:0:0\n");
    let dest = work.path().join("out");
    run_ok(&["extract", path_str(&one), path_str(&dest)]);
    assert_eq!(std::fs::read(dest.join("passwd")).unwrap(), b"root:x:0:0\n");
    // A wrong name lists the names there are.
    let two = work.path().join("two.strata");
    run_ok(&["create", path_str(&two), path_str(&etc), path_str(&alice)]);
    let out = run(&["list", path_str(&two), "--files", "nosuch"]);
    assert_fails(&out, 2, &["no file tree named \"nosuch\"", "\"etc\"", "\"alice\""]);
    // Two trees and none named: choose, with the names.
    let out = run(&["cat", path_str(&two), "passwd"]);
    assert_fails(&out, 2, &["2 file trees", "--files NAME", "\"etc\""]);
    // restore without --image when the archive holds one image.
    let image = work.path().join("disk.img");
    std::fs::write(&image, vec![9u8; 8192]).unwrap();
    let img = work.path().join("img.strata");
    run_ok(&["create", path_str(&img), "--image", path_str(&image)]);
    let restored = work.path().join("r.img");
    run_ok(&["restore", path_str(&img), path_str(&restored)]);
    assert_eq!(std::fs::read(&restored).unwrap(), std::fs::read(&image).unwrap());
    // A tree's name given as an image says which option it wants.
    let out = run(&["restore", path_str(&two), "--image", "etc", path_str(&work.path().join("x.img"))]);
    assert_fails(&out, 2, &["is one of its file trees", "--files etc"]);
}

#[test]
fn sizes_levels_and_dates_as_people_write_them() {
    let work = temp_dir();
    let (etc, _) = folders(work.path());
    let archive = work.path().join("a.strata");
    let out = run(&["create", path_str(&archive), path_str(&etc), "--chunk-size", "3M"]);
    assert_fails(&out, 2, &["3M", "power of two from 4K to 16M"]);
    let out = run(&["create", path_str(&archive), path_str(&etc), "--chunk-size", "1G"]);
    assert_fails(&out, 2, &["1G", "power of two"]);
    let out = run(&["create", path_str(&archive), path_str(&etc), "--chunk-size", "1Q"]);
    assert_fails(&out, 2, &["\"1Q\" is not a size", "K, M, G"]);
    let out = run(&["create", path_str(&archive), path_str(&etc), "--level", "30"]);
    assert_fails(&out, 2, &["levels go from 1", "22"]);
    run_ok(&[
        "create",
        path_str(&archive),
        path_str(&etc),
        "--level",
        "max",
        "--chunk-size",
        "64KiB",
        "--created",
        "2024-01-01T00:00:00Z",
    ]);
    let info: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&archive), "--json"]).stdout).unwrap();
    let created = info["created_ns"].as_i64().or_else(|| info["created"].as_i64());
    assert_eq!(created.map(|c| c / 1_000_000_000), Some(1_704_067_200), "{info}");
    let out = run(&["create", path_str(&archive), path_str(&etc), "--created", "yesterday", "--force"]);
    assert_fails(&out, 2, &["\"yesterday\" is not a time", "2024-01-01"]);
    // Offsets with suffixes.
    let image = work.path().join("disk.img");
    let bytes: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&image, &bytes).unwrap();
    let img = work.path().join("img.strata");
    run_ok(&["create", path_str(&img), "--image", path_str(&image)]);
    let cat = run_ok(&["cat", path_str(&img), "--image", "disk", "--offset", "1K", "--length", "2KiB"]);
    assert_eq!(cat.stdout, &bytes[1024..3072]);
}

#[test]
fn errors_on_opening_say_what_the_file_is() {
    let work = temp_dir();
    let empty = work.path().join("empty.strata");
    std::fs::write(&empty, b"").unwrap();
    let out = run(&["info", path_str(&empty)]);
    assert_fails(&out, 2, &["is empty: not a Strata archive"]);
    let out = run(&["info", path_str(work.path())]);
    assert_fails(&out, 2, &["is a folder, not an archive"]);
    assert!(!stderr(&out).contains("byte 0"), "no byte noise for a folder: {}", stderr(&out));
    let gz = work.path().join("x.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).unwrap();
    let out = run(&["restore", path_str(&gz), "--image", "disk", path_str(&work.path().join("o.img"))]);
    assert_fails(&out, 2, &["not a Strata archive", "gzip"]);
    assert_eq!(stderr(&out).matches("not a Strata archive").count(), 1, "said once: {}", stderr(&out));
}

#[test]
fn binary_output_to_a_terminal_is_refused() {
    if !common::require_tool("script") {
        return;
    }
    let work = temp_dir();
    let (etc, _) = folders(work.path());
    let strata = env!("CARGO_BIN_EXE_strata");
    // `script` gives the command a terminal as its standard output.
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{strata} create - {}", path_str(&etc)), "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("refusing to write an archive to a terminal"), "{said}");
}

/// A tree whose extraction takes a few seconds in a debug build: 192 MiB that
/// compress to little, in three files.
fn slow_tree(root: &Path) -> std::path::PathBuf {
    let src = root.join("big");
    std::fs::create_dir_all(&src).unwrap();
    let block: Vec<u8> = (0..1u32 << 20).map(|n| (n % 251) as u8 | 1).collect();
    for i in 0..3 {
        let mut file = std::fs::File::create(src.join(format!("f{i}"))).unwrap();
        for _ in 0..64 {
            std::io::Write::write_all(&mut file, &block).unwrap();
        }
    }
    src
}

#[test]
fn extraction_shows_progress_on_a_terminal_and_in_logs() {
    if !common::require_tool("tmux") {
        return;
    }
    let work = temp_dir();
    let src = slow_tree(work.path());
    let archive = work.path().join("a.strata");
    run_ok(&["create", path_str(&archive), path_str(&src)]);
    let strata = env!("CARGO_BIN_EXE_strata");
    // Each round has a tmux server of its own: the last session killed ends
    // its server, and a new session started while that server is going away
    // fails (the screen stayed empty once in CI).
    let tmux = |socket: &str, args: &[&str]| {
        std::process::Command::new("tmux").args(["-L", socket]).args(args).output().expect("tmux runs")
    };
    for (round, (verb, seen)) in [
        (format!("{strata} extract {} {}", path_str(&archive), path_str(&work.path().join("out"))), &["entries"][..]),
        // A tree being created shows its total (counted ahead), its entries
        // done of how many, and so the time left.
        (
            format!("{strata} create {} {} --force", path_str(&work.path().join("b.strata")), path_str(&src)),
            &["big", "/ 192.00 MiB", "/ 4 entries"][..],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let session = format!("strata-progress-{}-{round}", std::process::id());
        let socket = session.as_str();
        // Everything the terminal receives is logged (pipe-pane, set up during
        // the pause before the command), so a bar drawn and cleared between
        // two looks at the screen is still seen.
        let log = work.path().join(format!("screen-{round}.log"));
        let command = format!("sleep 1; {verb}; sleep 30");
        let started = tmux(socket, &["new-session", "-d", "-s", &session, "-x", "160", "-y", "20", &command]);
        assert!(started.status.success(), "tmux: {}", String::from_utf8_lossy(&started.stderr));
        tmux(socket, &["pipe-pane", "-o", "-t", &session, &format!("cat >> {}", path_str(&log))]);
        let start = std::time::Instant::now();
        let mut screen = String::new();
        let mut shown = false;
        while start.elapsed() < std::time::Duration::from_secs(60) {
            screen = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
            // A bar: its label, a byte count and a rate, while the work runs.
            if seen.iter().all(|s| screen.contains(s)) && screen.contains("/s") {
                shown = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        tmux(socket, &["kill-server"]);
        assert!(shown, "no progress seen for `{verb}`; the screen:\n{screen}");
    }
    // Not a terminal: nothing but the summary, unless --progress asks for lines.
    let quiet_log = run_ok(&["extract", path_str(&archive), path_str(&work.path().join("o2"))]);
    assert!(!stderr(&quiet_log).contains("/s,"), "{}", stderr(&quiet_log));
    let log = run_ok(&["--progress", "extract", path_str(&archive), path_str(&work.path().join("o3"))]);
    let said = stderr(&log);
    assert!(said.contains("extract: ") && said.contains("/s") && said.contains("entries"), "{said}");
    assert!(said.contains("entries, 192.0 MiB extracted"), "the summary stays: {said}");
    // So does create's, with the tree's total, entry count and time left.
    let log = run_ok(&["--progress", "create", path_str(&work.path().join("c.strata")), path_str(&src)]);
    let said = stderr(&log);
    let line = said.lines().find(|l| l.starts_with("big: ")).unwrap_or_else(|| panic!("no progress line: {said}"));
    assert!(line.contains(" / 192.0 MiB (") && line.contains(" s left") && line.contains(" / 4 entries"), "{said}");
}

#[test]
fn quiet_is_one_rule_for_every_command() {
    let work = temp_dir();
    let (etc, _) = folders(work.path());
    let archive = work.path().join("a.strata");
    let create = run_ok(&["create", "-q", path_str(&archive), path_str(&etc)]);
    assert!(stderr(&create).contains("1 section"), "create -q keeps its summary: {}", stderr(&create));
    assert!(!stderr(&create).contains("entries ("), "create -q drops per-section lines: {}", stderr(&create));
    for args in [
        vec!["info", "-q", path_str(&archive)],
        vec!["list", "-q", path_str(&archive)],
        vec!["cat", "-q", path_str(&archive), "passwd"],
        vec!["verify", "-q", path_str(&archive)],
    ] {
        run_ok(&args);
    }
    let dest = work.path().join("out");
    let extract = run_ok(&["extract", "-q", path_str(&archive), path_str(&dest)]);
    assert!(stderr(&extract).contains("entries"), "extract -q keeps its summary: {}", stderr(&extract));
    // Counts agree: create, info and extract give the same number of entries.
    let info: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&archive), "--json"]).stdout).unwrap();
    let entries = info["sections"][0]["files"]["entries"].as_u64();
    let entries = entries.expect("info --json gives a tree's entries");
    assert!(stderr(&extract).contains(&format!("{entries} entries")), "{} vs {entries}", stderr(&extract));
}

#[test]
fn list_long_reads_like_ls_and_json_carries_every_field() {
    let work = temp_dir();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("data.bin");
    std::fs::write(&file, vec![1u8; 1_572_864]).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    // 2024-01-01T00:00:00Z.
    filetime::set_file_mtime(&file, filetime::FileTime::from_unix_time(1_704_067_200, 0)).unwrap();
    let archive = work.path().join("a.strata");
    run_ok(&["create", path_str(&archive), path_str(&src)]);
    let line = |tz: &str, extra: &[&str]| {
        let mut command = common::strata();
        command.env("TZ", tz).args(["list", "-l", path_str(&archive)]).args(extra);
        let out = command.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).lines().find(|l| l.ends_with("data.bin")).unwrap().to_string()
    };
    let utc = line("UTC", &[]);
    assert!(utc.starts_with("-rw-r-----  root/root"), "{utc}");
    assert!(utc.contains(" 1572864 2024-01-01 00:00:00  data.bin"), "{utc}");
    // Local time, as ls and tar show it.
    assert!(line("Asia/Tokyo", &[]).contains("2024-01-01 09:00:00"), "{}", line("Asia/Tokyo", &[]));
    assert!(line("UTC", &["-h"]).contains(" 1.5M 2024-01-01"), "{}", line("UTC", &["-h"]));
    // JSON: every field, the mode also as octal, captured fields by name.
    let out = run_ok(&["list", "--json", path_str(&archive)]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let section = &doc["sections"][0];
    let captured: Vec<&str> = section["captured"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(captured.contains(&"owner_names") && captured.contains(&"xattrs"), "{captured:?}");
    let entry = section["entries"].as_array().unwrap().iter().find(|e| e["path"] == "data.bin").unwrap();
    assert_eq!(entry["mode_octal"], "0640");
    assert_eq!(entry["mode_string"], "-rw-r-----");
    assert_eq!((entry["mtime_s"].as_i64(), entry["mtime_nsec"].as_u64()), (Some(1_704_067_200), Some(0)));
    assert!(entry["flags"].is_array());
    assert!(entry.get("atime_s").is_some() == captured.contains(&"atime"));
    assert_eq!(entry["digest"].as_str().map(str::len), Some(32), "16 bytes in hex");
    // One object per line, each naming its section.
    let out = run_ok(&["list", "--json-lines", path_str(&archive)]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["section"] == "src"));
}

#[test]
fn the_options_tar_and_borg_users_reach_for() {
    let work = temp_dir();
    let root = work.path().join("proj");
    for dir in ["src/a", "build/cache", "docs"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("src/a/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(root.join("src/a/old.bak"), b"old\n").unwrap();
    std::fs::write(root.join("docs/guide.md"), b"# guide\n").unwrap();
    std::fs::write(root.join("docs/notes.txt"), b"notes\n").unwrap();
    std::fs::write(root.join("build/cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    std::fs::write(root.join("build/cache/blob"), vec![5u8; 10000]).unwrap();
    let excludes = work.path().join("excludes");
    std::fs::write(&excludes, b"# backups\n*.bak\n\n").unwrap();
    let list = work.path().join("folders");
    std::fs::write(&list, format!("{}\n", path_str(&root))).unwrap();
    let archive = work.path().join("a.strata");
    run_ok(&[
        "create",
        path_str(&archive),
        "--files-from",
        path_str(&list),
        "--exclude-from",
        path_str(&excludes),
        "--exclude-caches",
    ]);
    let listing = String::from_utf8_lossy(&run_ok(&["list", path_str(&archive)]).stdout).into_owned();
    let paths: Vec<&str> = listing.lines().collect();
    assert!(paths.contains(&"src/a/main.rs"), "{listing}");
    assert!(!paths.contains(&"src/a/old.bak"), "--exclude-from: {listing}");
    assert!(paths.contains(&"build/cache/CACHEDIR.TAG"), "the tag is kept: {listing}");
    assert!(!paths.contains(&"build/cache/blob"), "--exclude-caches: {listing}");
    // Patterns select as in tar, and bring their folders.
    let out = run_ok(&["list", path_str(&archive), "*.md"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), ["docs/guide.md"]);
    let dest = work.path().join("out");
    run_ok(&["extract", path_str(&archive), path_str(&dest), "docs/*.txt"]);
    assert_eq!(std::fs::read(dest.join("docs/notes.txt")).unwrap(), b"notes\n");
    assert!(!dest.join("docs/guide.md").exists() && !dest.join("src").exists());
    let out = run(&["extract", path_str(&archive), path_str(&work.path().join("none")), "*.nothing"]);
    assert_fails(&out, 2, &["no entry", "matches", "*.nothing"]);
    // --strip-components: one level up.
    let stripped = work.path().join("stripped");
    run_ok(&["extract", path_str(&archive), path_str(&stripped), "--strip-components", "1"]);
    assert_eq!(std::fs::read(stripped.join("a/main.rs")).unwrap(), b"fn main() {}\n");
    assert_eq!(std::fs::read(stripped.join("guide.md")).unwrap(), b"# guide\n");
    assert!(!stripped.join("src").exists() && !stripped.join("docs").exists());
}

#[test]
fn summaries_as_json_and_one_ratio() {
    let work = temp_dir();
    let (etc, _) = folders(work.path());
    let image = work.path().join("disk.img");
    let mut bytes = vec![0u8; 1 << 20];
    bytes[..4096].fill(3);
    std::fs::write(&image, &bytes).unwrap();
    let archive = work.path().join("a.strata");
    let out = run_ok(&["create", path_str(&archive), path_str(&etc), "--image", path_str(&image), "--json"]);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let size = std::fs::metadata(&archive).unwrap().len();
    assert_eq!(created["archive_size"], size);
    assert_eq!(created["given_back_bytes"], (1u64 << 20) + 11);
    let kinds: Vec<&str> =
        created["sections"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["image", "files"]);
    // The ratio create prints is the one info prints for the whole archive.
    let ratio = format!("{:.2}x", created["ratio"].as_f64().unwrap());
    assert!(stderr(&out).contains(&format!("({ratio})")), "{}", stderr(&out));
    let info = String::from_utf8_lossy(&run_ok(&["info", path_str(&archive)]).stdout).into_owned();
    assert!(info.contains(&format!("({ratio}:")), "{info}");
    let out = run(&["create", "-", path_str(&etc), "--json"]);
    assert_fails(&out, 2, &["--json", "file name"]);

    let restored = work.path().join("r.img");
    let out = run_ok(&["restore", path_str(&archive), "--image", "disk", path_str(&restored), "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["size"], 1u64 << 20);
    assert_eq!(summary["image"], "disk");

    let salvaged = work.path().join("s.strata");
    let out = run_ok(&["salvage", path_str(&archive), path_str(&salvaged), "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["lost_anything"], false);
    assert_eq!(summary["sections"].as_array().unwrap().len(), 2);
}

#[test]
fn completions_and_a_manual_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_ok(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("strata") && script.contains("extract"), "{shell}: {script}");
    }
    let out = run_ok(&["manpage"]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH strata"), "roff: {}", &page[..200.min(page.len())]);
    // roff writes a hyphen as `\-`.
    for verb in ["strata\\-create", "strata\\-extract", "strata\\-restore", "strata\\-verify"] {
        assert!(page.contains(verb), "the page covers {verb}");
    }
}

#[test]
fn a_cut_archive_is_read_as_far_as_it_is_intact() {
    let work = temp_dir();
    let first = work.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::write(first.join("kept.txt"), b"kept\n").unwrap();
    let second = work.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    for i in 0..50 {
        let body: Vec<u8> = (0..20_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> (i % 7)) as u8).collect();
        std::fs::write(second.join(format!("f{i}")), body).unwrap();
    }
    let archive = work.path().join("a.strata");
    run_ok(&["create", path_str(&archive), path_str(&first), path_str(&second)]);
    let bytes = std::fs::read(&archive).unwrap();
    let cut = work.path().join("cut.strata");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    // verify says, in plain words, that the end is gone and what that costs.
    let verify = run(&["verify", path_str(&cut)]);
    assert_eq!(verify.status.code(), Some(1));
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(said.contains("the archive ends early at byte") && said.contains("strata salvage"), "{said}");
    // list, cat and extract read what is intact, warn, and exit 1.
    let list = run(&["list", path_str(&cut), "--files", "first"]);
    assert_eq!(list.status.code(), Some(1), "{}", stderr(&list));
    assert!(String::from_utf8_lossy(&list.stdout).contains("kept.txt"));
    assert!(stderr(&list).contains("ends early; reading what is intact"), "{}", stderr(&list));
    let cat = run(&["cat", path_str(&cut), "--files", "first", "kept.txt"]);
    assert_eq!((cat.status.code(), cat.stdout.as_slice()), (Some(1), &b"kept\n"[..]));
    let dest = work.path().join("out");
    let extract = run(&["extract", path_str(&cut), "--files", "first", path_str(&dest)]);
    assert_eq!(extract.status.code(), Some(1));
    assert_eq!(std::fs::read(dest.join("kept.txt")).unwrap(), b"kept\n");
    // salvage says that sections after the cut cannot be named.
    let out = run(&["salvage", path_str(&cut), path_str(&work.path().join("s.strata"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ends early: any section written after the cut is lost too"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(" 1 entries"), "{}", stderr(&out));
}

#[test]
fn diff_against_a_folder_and_another_archive() {
    let work = temp_dir();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("same.txt"), b"same\n").unwrap();
    std::fs::write(src.join("edit.txt"), b"abcd\n").unwrap();
    std::fs::write(src.join("gone.txt"), b"gone\n").unwrap();
    std::fs::write(src.join("sub/mode.txt"), b"mode\n").unwrap();
    let before = work.path().join("before.strata");
    run_ok(&["create", path_str(&before), path_str(&src)]);
    // Nothing changed yet: exit 0.
    let out = run_ok(&["diff", path_str(&before), path_str(&src)]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    // Same size, new content; a removal; an addition; a mode change.
    let mtime = std::fs::metadata(src.join("edit.txt")).unwrap().modified().unwrap();
    std::fs::write(src.join("edit.txt"), b"wxyz\n").unwrap();
    filetime::set_file_mtime(src.join("edit.txt"), filetime::FileTime::from_system_time(mtime)).unwrap();
    std::fs::remove_file(src.join("gone.txt")).unwrap();
    std::fs::write(src.join("new.txt"), b"new\n").unwrap();
    std::fs::set_permissions(src.join("sub/mode.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = run(&["diff", path_str(&before), path_str(&src)]);
    assert_eq!(out.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines,
        ["M edit.txt  (content)", "- gone.txt", "+ new.txt", "M sub/mode.txt  (mode 0644 -> 0600)"],
        "{listed}"
    );
    // Between two archives, by the entries' content hashes.
    let after = work.path().join("after.strata");
    run_ok(&["create", path_str(&after), path_str(&src)]);
    let out = run(&["diff", path_str(&before), path_str(&after), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes: Vec<(String, String)> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap().to_string(), c["change"].as_str().unwrap().to_string()))
        .collect();
    assert!(changes.contains(&("edit.txt".into(), "modified".into())), "{changes:?}");
    assert!(changes.contains(&("gone.txt".into(), "removed".into())));
    assert!(changes.contains(&("new.txt".into(), "added".into())));
}

#[test]
fn tar_habits_get_a_hint() {
    let out = run(&["create", "-v", "x.strata", "/etc"]);
    assert_fails(&out, 2, &["'-v'", "hint:", "--progress", "strata list -l"]);
    let out = run(&["extract", "-C", "/tmp", "x.strata"]);
    assert_fails(&out, 2, &["hint:", "destination folder"]);
    let out = run(&["create", "-z", "x.strata"]);
    assert_fails(&out, 2, &["hint:", "zstd"]);
}
