//! `strata mount` through the real kernel: the mounted tree against its
//! source (the manifest walk, `find`, `stat`, `getfattr`, `readlink`, every
//! byte), the image file `cmp`-identical, a damaged chunk answering EIO, and
//! unmounting by `fusermount3 -u` and by SIGTERM.
//!
//! Needs root and /dev/fuse (and fuse3's `fusermount3`, attr's `getfattr`,
//! installed by scripts/ensure-tools.sh); without /dev/fuse each test says
//! why it is skipped and passes.

mod common;

use std::os::unix::fs::{symlink, FileExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::manifest::{differences, manifest};
use common::*;

/// Whether FUSE mounts are possible here; if not, says why the test stops.
fn fuse_present() -> bool {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: /dev/fuse is missing: this machine cannot mount FUSE file systems");
        return false;
    }
    ["fusermount3", "getfattr", "setfattr"].iter().all(|tool| require_tool(tool))
}

fn mounted(mountpoint: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let wanted = path_str(mountpoint).replace(' ', "\\040");
    mounts.lines().any(|line| line.split(' ').nth(1) == Some(wanted.as_str()))
}

/// A mount, unmounted when dropped even if the test failed, so that nothing
/// is left mounted: `fusermount3 -u`, then a lazy unmount if that fails.
struct Mount {
    mountpoint: PathBuf,
    /// The `strata mount -f` process, when the test started one.
    child: Option<Child>,
    stderr: PathBuf,
}

impl Mount {
    /// `strata mount` without `-f`: returns once mounted.
    fn detached(archive: &Path, mountpoint: &Path) -> Mount {
        Mount::detached_with(archive, mountpoint, &[])
    }

    /// `strata mount ARCHIVE MOUNTPOINT EXTRA...` without `-f`.
    fn detached_with(archive: &Path, mountpoint: &Path, extra: &[&str]) -> Mount {
        let stderr = mountpoint.with_extension("stderr");
        let status = strata()
            .args(["mount", path_str(archive), path_str(mountpoint)])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .status()
            .unwrap();
        let mount = Mount { mountpoint: mountpoint.to_path_buf(), child: None, stderr };
        assert!(status.success(), "strata mount failed: {}", mount.log());
        assert!(mounted(mountpoint), "strata mount returned, but nothing is mounted: {}", mount.log());
        mount
    }

    /// `strata mount -f` in a child process: waits until the mount is there.
    fn foreground(archive: &Path, mountpoint: &Path) -> Mount {
        let stderr = mountpoint.with_extension("stderr");
        let child = strata()
            .args(["mount", "-f", path_str(archive), path_str(mountpoint), "--cache", "1M"])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut mount = Mount { mountpoint: mountpoint.to_path_buf(), child: Some(child), stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !mounted(mountpoint) {
            let ended = mount.child.as_mut().unwrap().try_wait().unwrap();
            assert!(ended.is_none(), "strata mount -f ended ({ended:?}): {}", mount.log());
            assert!(Instant::now() < deadline, "not mounted after 30 s: {}", mount.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    /// Waits until the mount is gone and its process (if ours) has ended.
    fn wait_gone(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while mounted(&self.mountpoint) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.take().map(|mut child| {
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().unwrap().is_none() {
                let _ = child.kill();
            }
            child.wait().unwrap().code().unwrap_or(-1)
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if mounted(&self.mountpoint) {
            let quiet = |args: &[&str]| Command::new(args[0]).args(&args[1..]).stderr(Stdio::null()).status();
            if !quiet(&["fusermount3", "-u", path_str(&self.mountpoint)]).is_ok_and(|s| s.success()) {
                let _ = quiet(&["umount", "-l", path_str(&self.mountpoint)]);
            }
        }
        self.wait_gone();
    }
}

/// A tree with every kind of entry the mount shows.
fn source_tree(root: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(root.join("nested/deeper/deepest")).unwrap();
    std::fs::create_dir(root.join("empty dir")).unwrap();
    let mut regular = Vec::new();
    let mut file = |name: &str, bytes: &[u8]| {
        std::fs::write(root.join(name), bytes).unwrap();
        regular.push(root.join(name));
    };
    file("big.bin", &noise(1, 300_000));
    file("text.txt", &b"a line of text\n".repeat(20_000));
    file("empty", b"");
    file("nested/deeper/deepest/leaf", b"at the bottom\n");
    file("odd name \u{e9}\u{20ac} -x", b"odd\n");
    file("nested/tab\tand'quote\"", b"quoted\n");
    // A sparse file: data, a 5 MiB hole, data, and a hole at the end.
    let sparse = root.join("sparse");
    let handle = std::fs::File::create(&sparse).unwrap();
    handle.set_len(12 << 20).unwrap();
    handle.write_all_at(&noise(2, 100_000), 0).unwrap();
    handle.write_all_at(&noise(3, 70_000), 6 << 20).unwrap();
    drop(handle);
    regular.push(sparse);
    std::fs::hard_link(root.join("text.txt"), root.join("nested/hard link")).unwrap();
    std::fs::hard_link(root.join("text.txt"), root.join("third link")).unwrap();
    symlink("../text.txt", root.join("nested/link")).unwrap();
    symlink("nowhere/at all", root.join("dangling")).unwrap();
    sh(&format!("mkfifo '{}'", path_str(&root.join("fifo"))));
    sh(&format!("setfattr -n user.colour -v blue '{}'", path_str(&root.join("text.txt"))));
    sh(&format!("setfattr -n user.bin -v 0x00ff10 '{}'", path_str(&root.join("nested"))));
    if require_tool("setfacl") {
        sh(&format!("setfacl -m u:1234:r '{}'", path_str(&root.join("big.bin"))));
    }
    sh(&format!("chown 1234:5678 '{}'", path_str(&root.join("empty"))));
    sh(&format!("chmod 0640 '{}'", path_str(&root.join("nested/deeper/deepest/leaf"))));
    // Not every container allows device nodes.
    let _ = Command::new("mknod").arg(root.join("null device")).args(["c", "1", "3"]).status();
    // Directory times last: adding entries changed them.
    sh(&format!("touch -d '2001-02-03 04:05:06.123456789' '{}'", path_str(&root.join("nested/deeper"))));
    regular
}

/// An image of 3 MiB with data, holes and zeros.
fn source_image(dir: &Path) -> PathBuf {
    let path = dir.join("disk.img");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len((3 << 20) + 1234).unwrap();
    file.write_all_at(&noise(5, 200_000), 0).unwrap();
    file.write_all_at(&noise(6, 300_000), 2 << 20).unwrap();
    path
}

/// `find` with the stat fields compared: type, links, mode, owner, size (not
/// of directories, which file systems count differently), mtime to the
/// nanosecond, link target.
fn find_listing(root: &Path) -> Vec<String> {
    let out = Command::new("find").arg(root).args(["-printf", "%P|%y|%n|%m|%U|%G|%s|%T@|%l\\0"]).output().unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = out
        .stdout
        .split(|&b| b == 0)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut fields: Vec<String> = String::from_utf8_lossy(line).split('|').map(str::to_string).collect();
            if fields[1] == "d" {
                fields[6].clear();
            }
            fields.join("|")
        })
        .collect();
    lines.sort();
    lines
}

fn stdout_in(dir: &Path, command: &str) -> String {
    let out = Command::new("sh").args(["-c", command]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "`{command}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_mounted_archive_matches_its_source() {
    if !fuse_present() {
        return;
    }
    let dir = temp_dir();
    let src = dir.path().join("src");
    let regular = source_tree(&src);
    let image = source_image(dir.path());
    let archive = dir.path().join("a.strata");
    run_ok(&[
        "create",
        path_str(&archive),
        "--files",
        &format!("tree={}", path_str(&src)),
        "--image",
        &format!("disk={}", path_str(&image)),
        "--chunk-size",
        "64K",
        "-q",
    ]);
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mut mount = Mount::detached(&archive, &mountpoint);

    // The root: a folder per tree, a file per image.
    let mut names: Vec<String> =
        std::fs::read_dir(&mountpoint).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["disk", "tree"]);
    let tree = mount.path("tree");

    // Every field the manifest walk compares (kind, mode, owner, size, mtime
    // ns, xattrs with ACLs, targets, hard-link groups, content, data ranges,
    // devices), then find/stat, getfattr, readlink and plain reads.
    let (want, got) = (manifest(&src), manifest(&tree));
    let diffs = differences(&want, &got);
    assert!(diffs.is_empty(), "the mount differs from its source:\n{}", diffs.join("\n"));
    assert_eq!(find_listing(&src), find_listing(&tree));
    let xattrs = "getfattr -R -h -d -m - --absolute-names . 2>/dev/null | sort";
    assert_eq!(stdout_in(&src, xattrs), stdout_in(&tree, xattrs));
    assert!(stdout_in(&tree, xattrs).contains("user.colour=\"blue\""));
    for path in &regular {
        let inside = tree.join(path.strip_prefix(&src).unwrap());
        assert!(std::fs::read(path).unwrap() == std::fs::read(&inside).unwrap(), "{} differs", inside.display());
    }
    assert_eq!(std::fs::read_link(tree.join("nested/link")).unwrap(), Path::new("../text.txt"));
    // Hard links share one inode and count their links.
    use std::os::unix::fs::MetadataExt;
    let (a, b) =
        (std::fs::metadata(tree.join("text.txt")).unwrap(), std::fs::metadata(tree.join("third link")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 3));
    // Holes are holes: SEEK_HOLE finds the first one.
    let sparse = std::fs::File::open(tree.join("sparse")).unwrap();
    let hole = rustix::fs::seek(&sparse, rustix::fs::SeekFrom::Hole(0)).unwrap();
    assert!((100_000..6 << 20).contains(&hole), "SEEK_HOLE gave {hole}");
    drop(sparse);

    // The image, byte for byte, and sparse where the source is.
    sh(&format!("cmp '{}' '{}'", path_str(&image), path_str(&mount.path("disk"))));
    // Read-only.
    assert_eq!(std::fs::write(tree.join("new"), b"x").unwrap_err().raw_os_error(), Some(libc_erofs()));

    let status = Command::new("fusermount3").args(["-u", path_str(&mountpoint)]).status().unwrap();
    assert!(status.success());
    mount.wait_gone();
    assert!(!mounted(&mountpoint), "still mounted after fusermount3 -u");
}

fn libc_erofs() -> i32 {
    30
}

#[test]
fn a_damaged_chunk_answers_eio_for_its_file_only_and_sigterm_unmounts() {
    if !fuse_present() {
        return;
    }
    let dir = temp_dir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let (hurt, whole) = (noise(7, 400_000), noise(8, 400_000));
    std::fs::write(src.join("hurt.bin"), &hurt).unwrap();
    std::fs::write(src.join("whole.bin"), &whole).unwrap();
    let image = dir.path().join("disk.img");
    let disk = noise(9, 512 << 10);
    std::fs::write(&image, &disk).unwrap();
    let archive = dir.path().join("a.strata");
    run_ok(&[
        "create",
        path_str(&archive),
        "--files",
        &format!("t={}", path_str(&src)),
        "--image",
        &format!("disk={}", path_str(&image)),
        "--chunk-size",
        "64K",
        "-q",
    ]);
    // Noise is stored verbatim: find a piece of the middle of hurt.bin, and
    // of the image's third chunk, and flip a byte in each.
    let mut bytes = std::fs::read(&archive).unwrap();
    for needle in [&hurt[200_000..200_064], &disk[150_000..150_064]] {
        let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the noise is stored as it is");
        bytes[at + 10] ^= 0x40;
    }
    std::fs::write(&archive, &bytes).unwrap();

    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mut mount = Mount::foreground(&archive, &mountpoint);
    let error = std::fs::read(mount.path("t/hurt.bin")).expect_err("a damaged chunk is never read as bytes");
    assert_eq!(error.raw_os_error(), Some(5), "EIO, got {error}");
    // Reading it again tells nothing new; the intact file reads whole.
    let _ = std::fs::read(mount.path("t/hurt.bin"));
    assert!(std::fs::read(mount.path("t/whole.bin")).unwrap() == whole);
    // The intact start of the damaged file still reads.
    let start = std::fs::File::open(mount.path("t/hurt.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    start.read_exact_at(&mut first, 0).unwrap();
    assert_eq!(first, hurt[..4096]);
    drop(start);
    // The image: its damaged chunk (bytes 131072-196607) answers EIO, the rest reads.
    let file = std::fs::File::open(mount.path("disk")).unwrap();
    let mut buf = vec![0u8; 4096];
    let error = file.read_exact_at(&mut buf, 140_000).expect_err("the damaged image range is EIO");
    assert_eq!(error.raw_os_error(), Some(5), "EIO, got {error}");
    for at in [0u64, 65_536, 200_000, 400_000] {
        file.read_exact_at(&mut buf, at).unwrap();
        assert_eq!(buf, disk[at as usize..at as usize + 4096], "image bytes at {at}");
    }
    drop(file);

    let pid = rustix::process::Pid::from_child(mount.child.as_ref().unwrap());
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let code = mount.wait_gone();
    assert!(!mounted(&mountpoint), "still mounted after SIGTERM");
    assert_eq!(code, Some(0), "{}", mount.log());
    let log = mount.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("hurt.bin")).collect();
    assert_eq!(lines.len(), 1, "one line names the damaged range: {log}");
    assert!(lines[0].contains("unreadable") && lines[0].contains("bytes "), "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("image disk")).collect();
    assert_eq!(lines.len(), 1, "one line names the damaged image range: {log}");
    assert!(lines[0].contains("bytes 131072-196607 unreadable"), "{log}");
}

#[test]
fn reading_ahead_into_a_damaged_chunk_fails_only_the_file_it_holds() {
    if !fuse_present() {
        return;
    }
    let dir = temp_dir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files: Vec<Vec<u8>> = (0..24).map(|i| noise(100 + i, 150_000)).collect();
    for (i, bytes) in files.iter().enumerate() {
        std::fs::write(src.join(format!("f{i:02}")), bytes).unwrap();
    }
    let archive = dir.path().join("a.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("t={}", path_str(&src)), "--chunk-size", "64K", "-q"]);
    // A byte in the middle of f12, whose chunk holds nothing of another file
    // (150,000-byte files, 64 KiB chunks).
    let mut bytes = std::fs::read(&archive).unwrap();
    let needle = &files[12][75_000..75_064];
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the noise is stored as it is");
    bytes[at + 10] ^= 0x40;
    std::fs::write(&archive, &bytes).unwrap();

    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    // A 1 MiB cache: the chunks after the one read are decoded ahead.
    let mut mount = Mount::foreground(&archive, &mountpoint);
    // In archive order, as `tar` reads them: the damaged chunk is decoded
    // ahead (and fails) while the files before it are read; they read whole,
    // it answers EIO, and the files after it read whole again.
    for round in 0..2 {
        for (i, expected) in files.iter().enumerate() {
            let read = std::fs::read(mount.path(&format!("t/f{i:02}")));
            if i == 12 {
                let error = read.expect_err("a damaged chunk is never read as bytes");
                assert_eq!(error.raw_os_error(), Some(5), "EIO for f12, got {error} (round {round})");
            } else {
                assert!(read.unwrap() == *expected, "f{i:02} reads as stored (round {round})");
            }
        }
    }
    let pid = rustix::process::Pid::from_child(mount.child.as_ref().unwrap());
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(mount.wait_gone(), Some(0), "{}", mount.log());
    let log = mount.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("unreadable")).collect();
    assert_eq!(lines.len(), 1, "one line, for f12 only: {log}");
    assert!(lines[0].contains("f12"), "{log}");
}

/// Unmounts a kernel mount (here a loop mount of an image file) when dropped.
struct KernelMount(PathBuf);

impl Drop for KernelMount {
    fn drop(&mut self) {
        if mounted(&self.0) {
            let _ = Command::new("umount").arg(&self.0).stderr(Stdio::null()).status();
        }
        if mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn an_ext4_image_in_the_mount_loop_mounts() {
    if !fuse_present() || !require_tool("mke2fs") {
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED: no loop devices here (/dev/loop-control is missing)");
        return;
    }
    let dir = temp_dir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"archived\n").unwrap();
    std::fs::write(src.join("data.bin"), noise(9, 500_000)).unwrap();
    let image = dir.path().join("ext4.img");
    sh(&format!("mke2fs -q -t ext4 -d '{}' '{}' 16M", path_str(&src), path_str(&image)));
    let archive = dir.path().join("a.strata");
    run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(&image)), "-q"]);
    let mountpoint = dir.path().join("mnt");
    let inner = dir.path().join("inner");
    std::fs::create_dir(&mountpoint).unwrap();
    std::fs::create_dir(&inner).unwrap();
    let _mount = Mount::detached(&archive, &mountpoint);
    sh(&format!("cmp '{}' '{}'", path_str(&image), path_str(&mountpoint.join("disk"))));
    let loop_mount = KernelMount(inner.clone());
    let status = Command::new("mount")
        .args(["-o", "loop,ro", path_str(&mountpoint.join("disk")), path_str(&inner)])
        .status()
        .unwrap();
    assert!(status.success(), "mount -o loop,ro of the image file failed");
    assert_eq!(std::fs::read(inner.join("etc/hostname")).unwrap(), b"archived\n");
    assert!(std::fs::read(inner.join("data.bin")).unwrap() == noise(9, 500_000));
    drop(loop_mount);
    assert!(!mounted(&inner));
}

/// With `--allow-other`, other users come in, and the kernel checks the
/// archive's modes, owners and ACLs for them: a user an ACL names reads a file
/// its mode alone would refuse, and everyone else is refused.
#[test]
fn other_users_get_what_modes_and_acls_allow() {
    if !fuse_present() || !require_tool("setfacl") || !require_tool("setpriv") {
        return;
    }
    let dir = temp_dir();
    // Other users must reach the mount point.
    sh(&format!("chmod 0755 '{}'", path_str(dir.path())));
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("shared"), b"for 1234\n").unwrap();
    std::fs::write(src.join("private"), b"root only\n").unwrap();
    sh(&format!("chmod 0600 '{0}/shared' '{0}/private' && chmod 0755 '{0}'", path_str(&src)));
    sh(&format!("setfacl -m u:1234:r '{}'", path_str(&src.join("shared"))));
    let archive = dir.path().join("a.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("tree={}", path_str(&src)), "-q"]);
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mut mount = Mount::detached_with(&archive, &mountpoint, &["--allow-other"]);
    let cat_as = |uid: u32, name: &str| {
        Command::new("setpriv")
            .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups", "cat"])
            .arg(mount.path("tree").join(name))
            .output()
            .unwrap()
    };
    let read = cat_as(1234, "shared");
    assert!(read.status.success(), "the ACL lets 1234 read: {}", String::from_utf8_lossy(&read.stderr));
    assert_eq!(read.stdout, b"for 1234\n");
    for (uid, name) in [(1234, "private"), (4321, "shared"), (4321, "private")] {
        let refused = cat_as(uid, name);
        assert!(!refused.status.success(), "user {uid} read {name}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("Permission denied"), "user {uid}, {name}");
    }
    // The ACL still reads back as recorded.
    let acl = stdout_in(&mount.path("tree"), "getfacl -c shared 2>/dev/null");
    assert!(acl.contains("user:1234:r--"), "{acl}");
    let status = Command::new("fusermount3").args(["-u", path_str(&mountpoint)]).status().unwrap();
    assert!(status.success());
    mount.wait_gone();
}
