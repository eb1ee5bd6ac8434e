//! `create --files` options and the warnings that keep a backup honest.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::hard_tree::{deep_chain, deep_chain_extras, RemoveDeep};
use common::*;

fn listing(archive: &std::path::Path, name: &str) -> String {
    String::from_utf8_lossy(&run_ok(&["list", path_str(archive), "--files", name]).stdout).into_owned()
}

#[test]
fn exclude_patterns_match_names_and_relative_paths() {
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    sh(&format!(
        "mkdir -p {0}/a/cache {0}/b && touch {0}/a/keep.txt {0}/a/drop.tmp {0}/a/cache/x {0}/b/drop.tmp {0}/b/keep.log",
        path_str(&src)
    ));
    let archive = dir.join("e.strata");
    run_ok(&[
        "create",
        path_str(&archive),
        "--files",
        &format!("s={}", path_str(&src)),
        "--exclude",
        "*.tmp",
        "--exclude",
        "a/cache",
        "--quiet",
    ]);
    // In the entry order of FORMAT.md 8: each folder's children one run.
    assert_eq!(listing(&archive, "s"), ".\na\nb\na/keep.txt\nb/keep.log\n");
}

#[test]
fn an_unreadable_file_is_a_warning_with_exit_1_and_a_valid_archive() {
    if !require_tool("setpriv") {
        return;
    }
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    sh(&format!(
        "mkdir -p {0} && echo fine > {0}/ok && echo secret > {0}/locked && chmod 000 {0}/locked && chmod 755 {1} {0}",
        path_str(&src),
        path_str(dir)
    ));
    let archive = dir.join("w.strata");
    // Root reads anything: drop to nobody so the open fails as it would for a user.
    sh(&format!("chmod 777 {}", path_str(dir)));
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_strata"), "create"])
        .arg(&archive)
        .args(["--files", &format!("s={}", path_str(&src)), "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("warning: s/locked: content not read"), "{stderr}");
    assert!(stderr.contains("1 warning"), "{stderr}");
    run_ok(&["verify", path_str(&archive)]);
    assert_eq!(listing(&archive, "s"), ".\nlocked\nok\n");
    let ok = run_ok(&["cat", path_str(&archive), "--files", "s", "ok"]);
    assert_eq!(ok.stdout, b"fine\n");
}

/// Names are shown escaped in every warning and listing, as `list` shows them:
/// a name cannot move the cursor, clear the screen or forge a line.
#[test]
fn warnings_and_listings_escape_what_names_hold() {
    use std::os::unix::ffi::OsStrExt;
    if !require_tool("setpriv") {
        return;
    }
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let evil = src.join(std::ffi::OsStr::from_bytes(b"evil\nline\x1b[2J.txt"));
    std::fs::write(&evil, b"secret\n").unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"caf\xe9")), b"latin-1\n").unwrap();
    sh(&format!(
        "chmod 000 '{}' && chmod 755 {} && chmod 777 {}",
        path_str(&evil).replace('\'', ""),
        path_str(&src),
        path_str(dir)
    ));
    let shown = r"evil\nline\u{1b}[2J.txt";
    let clean = |what: &str, bytes: &[u8]| {
        assert!(!bytes.contains(&0x1b), "{what} wrote a raw escape: {}", String::from_utf8_lossy(bytes));
        let text =
            String::from_utf8(bytes.to_vec()).unwrap_or_else(|_| panic!("{what} wrote bytes that are not UTF-8"));
        assert!(!text.contains("evil\n"), "{what} wrote a raw newline of a name: {text}");
        text
    };
    // Root reads anything: drop to nobody so the open fails as it would for a user.
    let archive = dir.join("w.strata");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_strata"), "create"])
        .arg(&archive)
        .args(["--files", &format!("s={}", path_str(&src))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let said = clean("create", &out.stderr);
    assert!(said.lines().any(|l| l.starts_with(&format!("warning: s/{shown}: content not read"))), "{said}");
    // list, plain and long, verify's list of unreadable files, extract's warning.
    let listed = clean("list", &run_ok(&["list", path_str(&archive)]).stdout);
    assert_eq!(listed, format!(".\ncaf\\xe9\n{shown}\n"));
    let long = clean("list -l", &run_ok(&["list", "-l", path_str(&archive)]).stdout);
    assert!(long.lines().any(|l| l.ends_with(&format!("  {shown}  [unreadable at backup]"))), "{long}");
    let verify = run_ok(&["verify", path_str(&archive)]);
    assert!(clean("verify", &verify.stdout).contains(shown), "{}", String::from_utf8_lossy(&verify.stdout));
    let extract = run(&["extract", path_str(&archive), path_str(&dir.join("out"))]);
    assert_eq!(extract.status.code(), Some(1));
    let said = clean("extract", &extract.stderr);
    assert!(said.contains(&format!("{shown} in files s")), "{said}");
}

#[test]
fn device_nodes_round_trip_as_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: device nodes cannot be made here");
        return;
    }
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    sh(&format!("mknod {0}/null c 1 3 && mknod {0}/blk b 7 200 && chmod 640 {0}/blk", path_str(&src)));
    let archive = dir.join("d.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("s={}", path_str(&src)), "--quiet"]);
    let out = dir.join("out");
    run_ok(&["extract", path_str(&archive), "--files", "s", path_str(&out), "--quiet"]);
    let null = std::fs::symlink_metadata(out.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!((rustix::fs::major(null.rdev()), rustix::fs::minor(null.rdev())), (1, 3));
    let blk = std::fs::symlink_metadata(out.join("blk")).unwrap();
    assert!(blk.file_type().is_block_device());
    assert_eq!((rustix::fs::major(blk.rdev()), rustix::fs::minor(blk.rdev())), (7, 200));
    assert_eq!(blk.mode() & 0o7777, 0o640);
    let long =
        String::from_utf8_lossy(&run_ok(&["list", path_str(&archive), "--files", "s", "--long"]).stdout).into_owned();
    assert!(long.contains("crw"), "{long}");
    assert!(long.contains("7,200"), "{long}");
}

#[test]
fn the_archive_being_written_is_not_backed_up_into_itself() {
    let work = temp_dir();
    let dir = work.path();
    sh(&format!("echo data > {}/file", path_str(dir)));
    let archive = dir.join("self.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("s={}", path_str(dir)), "--quiet"]);
    assert_eq!(listing(&archive, "s"), ".\nfile\n");
}

#[test]
fn a_file_that_changes_while_it_is_read_is_kept_as_read_with_a_warning() {
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let growing = src.join("growing.log");
    std::fs::write(&growing, vec![b'x'; 64 << 20]).unwrap();
    // Something appends to the file the whole time the backup runs.
    let mut appender = std::process::Command::new("sh")
        .args(["-c", &format!("while :; do echo more >> {}; done", path_str(&growing))])
        .spawn()
        .unwrap();
    let archive = dir.join("c.strata");
    let out = run(&["create", path_str(&archive), "--files", &format!("s={}", path_str(&src)), "--quiet"]);
    appender.kill().unwrap();
    appender.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("s/growing.log: changed while it was read"), "{stderr}");
    run_ok(&["verify", path_str(&archive)]);
    // cat gives it as read, and warns with exit 1 that it changed meanwhile.
    let out = run(&["cat", path_str(&archive), "--files", "s", "growing.log"]);
    assert_eq!(out.status.code(), Some(1));
    let content = out.stdout;
    assert!(content.len() >= 64 << 20 && content.starts_with(b"xxxx"), "kept as read");
}

#[test]
fn one_file_system_keeps_mount_points_but_not_what_is_mounted_there() {
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    sh(&format!("mkdir -p {0}/mnt {0}/plain && echo here > {0}/plain/f", path_str(&src)));
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "strata-test", path_str(&src.join("mnt"))])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("cannot mount a tmpfs here: --one-file-system not exercised");
        return;
    }
    sh(&format!("echo elsewhere > {}/mnt/other", path_str(&src)));
    let archive = dir.join("o.strata");
    let result = std::panic::catch_unwind(|| {
        run_ok(&[
            "create",
            path_str(&archive),
            "--files",
            &format!("s={}", path_str(&src)),
            "--one-file-system",
            "--quiet",
        ]);
        listing(&archive, "s")
    });
    let _ = std::process::Command::new("umount").arg(src.join("mnt")).status();
    assert_eq!(result.expect("create and list"), ".\nmnt\nplain\nplain/f\n");
}

/// Backs up a deep chain with `prefix` before the strata command (a descriptor
/// limit, say) and checks, without extracting, that every file is in the
/// archive as it was.
fn deep_chain_backs_up(levels: usize, prefix: &[&str]) {
    const BOTTOM: &[u8] = b"at the bottom of a very deep tree\n";
    let every = 100;
    let work = temp_dir();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let _cleanup = RemoveDeep(src.clone());
    let (bottom, xattr) = deep_chain(&src, levels, every, BOTTOM);
    assert!(bottom.len() > 4096, "the chain is deeper than PATH_MAX");
    let archive = work.path().join("deep.strata");
    let (program, args) = match prefix {
        [program, args @ ..] => (*program, args),
        [] => (env!("CARGO_BIN_EXE_strata"), &[][..]),
    };
    let mut command = std::process::Command::new(program);
    command.args(args);
    if !prefix.is_empty() {
        command.arg(env!("CARGO_BIN_EXE_strata"));
    }
    let out = command
        .args(["create", path_str(&archive), "--files", &format!("t={}", path_str(&src))])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let listed = listing(&archive, "t");
    assert!(listed.lines().any(|line| line == bottom), "{} not listed", &bottom[..64]);
    assert_eq!(listed.lines().count(), 1 + 1 + levels + 1 + levels / every + 1);
    let content = run_ok(&["cat", path_str(&archive), "--files", "t", &bottom]).stdout;
    assert_eq!(content, BOTTOM);
    for (path, level) in deep_chain_extras(levels, every) {
        let content = run_ok(&["cat", path_str(&archive), "--files", "t", &path]).stdout;
        assert_eq!(content, level.as_bytes(), "{}", &path[..path.len().min(64)]);
    }
    if xattr {
        let json = run_ok(&["list", path_str(&archive), "--files", "t", &bottom, "--json"]).stdout;
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["sections"][0]["entries"][0]["xattrs"], serde_json::json!(["user.x"]));
    } else {
        eprintln!("no user xattrs on this file system: user.x not checked");
    }
}

#[test]
fn a_tree_deeper_than_path_max_is_backed_up() {
    // About 9,000 bytes of path, twice PATH_MAX.
    deep_chain_backs_up(3000, &[]);
}

#[test]
fn a_deep_tree_backs_up_with_few_file_descriptors() {
    if !require_tool("prlimit") {
        return;
    }
    // Deeper than the descriptor limit, and than PATH_MAX too.
    deep_chain_backs_up(1500, &["prlimit", "--nofile=64:64"]);
}

#[test]
fn a_deep_tree_moved_while_it_is_walked_is_a_warning_not_a_wrong_path() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use strata_writer::{ArchiveWriter, Progress, TreeOptions, WriterOptions};

    /// Moves a directory elsewhere when the walk reads the bottom file's
    /// content (its length tells it from the `zz.txt` files), so that its
    /// parent is no longer its `..`.
    struct MoveOnce {
        from: std::path::PathBuf,
        to: std::path::PathBuf,
        bottom: u64,
        done: AtomicBool,
    }
    impl Progress for MoveOnce {
        fn advance(&self, bytes: u64) {
            if bytes == self.bottom && !self.done.swap(true, Ordering::SeqCst) {
                std::fs::rename(&self.from, &self.to).unwrap();
            }
        }
    }

    let work = temp_dir();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let _cleanup = RemoveDeep(src.clone());
    // Deeper than the directory handles the walk keeps open, so that `chain`
    // and `chain/dd` are reopened through `..` on the way back up. The walk
    // records each folder's whole run before it descends (FORMAT.md 14), so
    // what is left to read in them then is the folder `ee` each holds after
    // `dd`.
    deep_chain(&src, 300, 1, b"bottom\n");
    for dir in ["chain/ee", "chain/dd/ee"] {
        std::fs::create_dir(src.join(dir)).unwrap();
        std::fs::write(src.join(dir).join("late.txt"), b"read after the chain\n").unwrap();
    }
    let progress = MoveOnce {
        from: src.join("chain/dd/dd"),
        to: src.join("elsewhere"),
        bottom: b"bottom\n".len() as u64,
        done: AtomicBool::new(false),
    };
    let options = WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    let summary = writer.add_tree("t", &src, &TreeOptions::default(), &progress).unwrap();
    writer.finish().unwrap();
    assert!(progress.done.load(Ordering::SeqCst));
    let warnings: Vec<(String, String)> =
        summary.warnings.iter().map(|w| (String::from_utf8_lossy(&w.path).into_owned(), w.message.clone())).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].0, "chain/dd", "{warnings:?}");
    assert!(warnings[0].1.contains("moved while it was read"), "{warnings:?}");
    assert_eq!(warnings[1].0, "chain", "{warnings:?}");
}
