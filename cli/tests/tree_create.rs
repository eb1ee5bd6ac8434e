//! `create --files` options and the warnings that keep a backup honest.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

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
    assert_eq!(listing(&archive, "s"), ".\na\na/keep.txt\nb\nb/keep.log\n");
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
