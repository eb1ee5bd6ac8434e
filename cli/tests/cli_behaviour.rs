//! Exit codes, damage reports, interruption, and block devices, through the binary.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn make_archive(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let image = dir.join("img.raw");
    sh(&format!("head -c 2500000 /dev/urandom > {0} && yes data | head -c 3000000 >> {0}", path_str(&image)));
    let archive = dir.join("a.strata");
    run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(&image)), "--quiet"]);
    (image, archive)
}

#[test]
fn verify_exit_codes_and_a_flipped_chunk_byte_names_the_image_range() {
    let work = temp_dir();
    let (_, archive) = make_archive(work.path());
    assert_eq!(run(&["verify", path_str(&archive)]).status.code(), Some(0));

    // Flip a byte well inside the first chunk (the first data after the header and
    // the first IMAGE_EXTENTS record): image bytes 0..4194304 (one 4 MiB window) are affected.
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[128 + 2_000] ^= 0xff;
    let damaged = work.path().join("damaged.strata");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&["verify", path_str(&damaged)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("damaged"), "{text}");
    assert!(text.contains("image disk: bytes 0-4,194,303 unreadable"), "{text}");
    let json = run(&["verify", path_str(&damaged), "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["status"], "damaged");
    let affects = &report["problems"][0]["affects"][0];
    assert_eq!(
        (affects["section"].as_str(), affects["start"].as_u64(), affects["end"].as_u64()),
        (Some("disk"), Some(0), Some(4 << 20))
    );

    // Not Strata at all, or missing: exit 2.
    let other = work.path().join("other.gz");
    std::fs::write(&other, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]).unwrap();
    let out = run(&["verify", path_str(&other)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gzip"));
    assert_eq!(run(&["verify", "/nonexistent.strata"]).status.code(), Some(2));

    // A truncated archive: info says so and points at salvage.
    let cut = work.path().join("cut.strata");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&["info", path_str(&cut)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    assert_eq!(run(&["verify", path_str(&cut)]).status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["create", "x.strata"]).status.code(), Some(2));
    assert_eq!(run(&["create", "x.strata", "--image", "noequals"]).status.code(), Some(2));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    let work = temp_dir();
    let (_, archive) = make_archive(work.path());
    let out = run(&["restore", path_str(&archive), "--image", "nope", path_str(&work.path().join("o"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named"));
    assert!(!work.path().join("o").exists());
    for cmd in ["create", "info", "verify", "restore", "cat"] {
        let help = run_ok(&[cmd, "--help"]);
        assert!(String::from_utf8_lossy(&help.stdout).contains("Example"), "{cmd} --help has no example");
    }
}

/// Starts `create` reading from a pipe that is never closed, so it stays busy.
fn start_stalled_create(archive: &std::path::Path) -> std::process::Child {
    let mut child = strata()
        .args(["create", path_str(archive), "--image", "disk=-", "--quiet", "--force"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(&vec![7u8; 3 << 20]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn interrupted_create_leaves_no_output_and_killed_create_keeps_the_old_archive() {
    let work = temp_dir();
    let dir = work.path();
    let archive = dir.join("new.strata");
    let mut child = start_stalled_create(&archive);
    sh(&format!("kill -INT {}", child.id()));
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!archive.exists(), "an interrupted create left an archive");
    assert!(temp_files(dir).is_empty(), "temporary files left: {:?}", temp_files(dir));

    let mut child = start_stalled_create(&archive);
    sh(&format!("kill -TERM {}", child.id()));
    child.wait().unwrap();
    assert!(temp_files(dir).is_empty());

    // SIGKILL cannot be caught: the old archive under the final name is untouched.
    let (_, old) = make_archive(dir);
    let before = std::fs::read(&old).unwrap();
    let mut child = start_stalled_create(&old);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read(&old).unwrap(), before);
}

/// A loop device over a file, detached on drop. `None` where loop devices are
/// not available (not root, or a container without them).
struct Loop(String);

impl Loop {
    fn attach(file: &std::path::Path) -> Option<Loop> {
        let out = std::process::Command::new("losetup").args(["--show", "-f", path_str(file)]).output().ok()?;
        if !out.status.success() {
            eprintln!("loop devices unavailable here: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Loop(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn block_devices_image_and_restore_bit_identical_with_holes_zeroed() {
    let work = temp_dir();
    let dir = work.path();
    let source = dir.join("source.raw");
    sh(&format!(
        "truncate -s 16M {0} && dd if=/dev/urandom of={0} bs=1M count=2 seek=3 conv=notrunc status=none",
        path_str(&source)
    ));
    let Some(source_dev) = Loop::attach(&source) else {
        return;
    };
    let archive = dir.join("dev.strata");
    run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", source_dev.0), "--quiet"]);

    // A target full of garbage: the holes must be zeroed for the device to match.
    let target = dir.join("target.raw");
    sh(&format!("head -c 16777216 /dev/urandom > {}", path_str(&target)));
    let Some(target_dev) = Loop::attach(&target) else {
        return;
    };
    run_ok(&["restore", path_str(&archive), "--image", "disk", &target_dev.0, "--quiet"]);
    drop(target_dev);
    assert_eq!(file_blake3(&source), file_blake3(&target));

    // A device smaller than the image is refused, and left alone.
    let small = dir.join("small.raw");
    sh(&format!("head -c 8388608 /dev/urandom > {}", path_str(&small)));
    let before = file_blake3(&small);
    let Some(small_dev) = Loop::attach(&small) else {
        return;
    };
    let out = run(&["restore", path_str(&archive), "--image", "disk", &small_dev.0]);
    drop(small_dev);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the image needs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(file_blake3(&small), before);
}

#[test]
fn a_full_destination_fails_cleanly_with_nothing_under_the_final_name() {
    let work = temp_dir();
    let dir = work.path();
    let image = dir.join("img.raw");
    sh(&format!("head -c 3000000 /dev/urandom > {}", path_str(&image)));
    let small = dir.join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "strata-full", path_str(&small)])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("cannot mount a tmpfs here: the real-file-system case is not exercised");
        return;
    }
    let archive = small.join("a.strata");
    let out = run(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(&image)), "--quiet"]);
    let left: Vec<_> = std::fs::read_dir(&small).unwrap().map(|e| e.unwrap().file_name()).collect();
    let _ = std::process::Command::new("umount").arg(&small).status();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_writer_whose_output_fails_reports_where_and_a_vanishing_source_is_an_error() {
    /// Accepts `room` bytes, then fails like a full disk.
    struct Full(usize);
    impl std::io::Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut x = 12_345u32;
    let data: Vec<u8> = (0..400_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    for room in [0, 100, 5_000, 50_000] {
        let mut options = strata_writer::WriterOptions::new(*b"0123456789abcdef", 0);
        options.chunk_size = 4096;
        let result = strata_writer::ArchiveWriter::new(Full(room), options).and_then(|mut w| {
            w.add_image("disk", &mut strata_writer::SliceSource::new(&data), &strata_writer::NoProgress)?;
            w.finish().map(|_| ())
        });
        let error = result.expect_err("a full output fails the write").to_string();
        assert!(error.contains("writing the archive at byte"), "{error}");
    }
    // A source that shrinks while it is read.
    let work = temp_dir();
    let path = work.path().join("shrinks.raw");
    std::fs::write(&path, vec![1u8; 1 << 20]).unwrap();
    let mut source = strata_writer::FileSource::open(&path).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1000).unwrap();
    let mut options = strata_writer::WriterOptions::new(*b"0123456789abcdef", 0);
    options.chunk_size = 4096;
    let mut writer = strata_writer::ArchiveWriter::new(Vec::new(), options).unwrap();
    let error = writer.add_image("disk", &mut source, &strata_writer::NoProgress).expect_err("the source shrank");
    assert!(error.to_string().contains("reading image \"disk\""), "{error}");
}
