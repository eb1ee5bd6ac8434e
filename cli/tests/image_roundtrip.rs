//! Block images through the real `strata` binary: create, verify, restore.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

/// Creates, verifies and restores `image`, and checks the restore is identical.
fn round_trip(image: &std::path::Path, work: &std::path::Path) {
    let archive = work.join("a.strata");
    let restored = work.join("restored.img");
    run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(image)), "--quiet"]);
    let verify = run_ok(&["verify", path_str(&archive)]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains(": ok"));
    run_ok(&["restore", path_str(&archive), "--image", "disk", path_str(&restored), "--quiet"]);
    assert_eq!(file_blake3(image), file_blake3(&restored), "the restored image differs");
}

#[test]
fn ext4_image_round_trips_bit_identical_and_stays_sparse() {
    if !require_tool("mke2fs") {
        return;
    }
    let work = temp_dir();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // Real files: some of the machine's documentation plus generated data.
    sh(&format!(
        "cp -r /usr/share/doc/. {0}/ 2>/dev/null; head -c 3000000 /dev/urandom > {0}/random.bin; yes strata | head -c 5000000 > {0}/text.txt",
        path_str(&tree)
    ));
    let image = work.path().join("ext4.img");
    sh(&format!("mke2fs -q -t ext4 -d {} {} 256M", path_str(&tree), path_str(&image)));
    round_trip(&image, work.path());
    // The image is mostly free space: the restore must not allocate it.
    let restored = work.path().join("restored.img");
    assert_eq!(std::fs::metadata(&restored).unwrap().len(), 256 << 20);
    assert!(
        allocated(&restored) < 128 << 20,
        "a 256 MiB image with little data restored to {} allocated bytes",
        allocated(&restored)
    );
}

#[test]
fn qcow2_converted_to_raw_round_trips() {
    if !require_tool("qemu-img") {
        return;
    }
    let work = temp_dir();
    let dir = work.path();
    let raw = dir.join("source.raw");
    sh(&format!(
        "truncate -s 64M {0} && dd if=/dev/urandom of={0} bs=1M count=3 seek=5 conv=notrunc status=none && yes qcow | dd of={0} bs=1M count=2 seek=40 conv=notrunc iflag=fullblock status=none",
        path_str(&raw)
    ));
    let qcow2 = dir.join("disk.qcow2");
    let back = dir.join("back.raw");
    sh(&format!("qemu-img convert -f raw -O qcow2 {} {}", path_str(&raw), path_str(&qcow2)));
    sh(&format!("qemu-img convert -f qcow2 -O raw {} {}", path_str(&qcow2), path_str(&back)));
    round_trip(&back, dir);
    assert_eq!(file_blake3(&raw), file_blake3(&dir.join("restored.img")));
}

#[test]
fn pipe_output_equals_file_output_and_restores_from_a_pipe() {
    let work = temp_dir();
    let dir = work.path();
    let image = dir.join("img.raw");
    sh(&format!(
        "head -c 3000000 /dev/urandom > {0} && head -c 2000000 /dev/zero >> {0} && yes pipe | head -c 1500000 >> {0}",
        path_str(&image)
    ));
    let fixed = ["--uuid", UUID, "--created", "1700000000", "--quiet"];
    let to_file = dir.join("file.strata");
    let source = format!("disk={}", path_str(&image));
    let mut args = vec!["create", path_str(&to_file), "--image", &source];
    args.extend(fixed);
    run_ok(&args);
    let mut args = vec!["create", "-", "--image", &source];
    args.extend(fixed);
    let piped = run_ok(&args).stdout;
    assert_eq!(std::fs::read(&to_file).unwrap(), piped, "`create -` must write the same bytes as a file");

    // The image itself from a pipe: the archive differs only in IMAGE_BEGIN's size.
    let from_stdin = dir.join("stdin.strata");
    let mut child = strata()
        .args(["create", path_str(&from_stdin), "--image", "disk=-", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(&image).unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    run_ok(&["verify", path_str(&from_stdin)]);

    // Restore from a non-seekable stdin, to a file and to stdout.
    for archive in [&to_file, &from_stdin] {
        let out = dir.join("from-pipe.img");
        let status = strata()
            .args(["restore", "-", "--image", "disk", path_str(&out), "--quiet", "--force"])
            .stdin(std::fs::File::open(archive).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(file_blake3(&image), file_blake3(&out));
        let out = strata()
            .args(["restore", "-", "--image", "disk", "-", "--quiet"])
            .stdin(std::fs::File::open(archive).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(blake3::hash(&out.stdout).to_hex().to_string(), file_blake3(&image));
    }
}

#[test]
fn cat_reads_a_byte_range_by_random_access() {
    let work = temp_dir();
    let dir = work.path();
    let image = dir.join("img.raw");
    sh(&format!("head -c 5000000 /dev/urandom > {}", path_str(&image)));
    let archive = dir.join("a.strata");
    run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(&image)), "--quiet"]);
    let bytes = std::fs::read(&image).unwrap();
    for (offset, length) in [(0usize, 10usize), (1_048_570, 20), (4_999_990, 10), (123_456, 2_000_000)] {
        let out = run_ok(&[
            "cat",
            path_str(&archive),
            "--image",
            "disk",
            "--offset",
            &offset.to_string(),
            "--length",
            &length.to_string(),
        ]);
        assert_eq!(out.stdout, &bytes[offset..offset + length]);
    }
    let past_end = run(&["cat", path_str(&archive), "--image", "disk", "--offset", "4999999", "--length", "2"]);
    assert_eq!(past_end.status.code(), Some(2));
}

#[test]
fn two_images_restore_independently_and_share_chunks() {
    let work = temp_dir();
    let dir = work.path();
    let disk = dir.join("disk.raw");
    let part = dir.join("part.raw");
    sh(&format!(
        "head -c 4194304 /dev/urandom > {0} && dd if={0} of={1} bs=1M skip=1 count=2 status=none",
        path_str(&disk),
        path_str(&part)
    ));
    let archive = dir.join("a.strata");
    run_ok(&[
        "create",
        path_str(&archive),
        "--image",
        &format!("disk={}", path_str(&disk)),
        "--image",
        &format!("part1={}", path_str(&part)),
        // 1 MiB windows: the partition starts 1 MiB into the disk.
        "--chunk-size",
        "1M",
        "--quiet",
    ]);
    // The partition's chunks are the disk's: the archive is barely larger than the disk.
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(size < (4 << 20) + (64 << 10), "archive of {size} bytes did not deduplicate");
    let info = run_ok(&["info", path_str(&archive), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let names: Vec<&str> = info["sections"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["disk", "part1"]);
    assert_eq!(info["sections"][1]["kind"], "image");
    assert_eq!(info["sections"][1]["image"]["logical_size"], 2 << 20);
    for (name, source) in [("disk", &disk), ("part1", &part)] {
        let out = dir.join(format!("{name}.out"));
        run_ok(&["restore", path_str(&archive), "--image", name, path_str(&out), "--quiet"]);
        assert_eq!(file_blake3(source), file_blake3(&out), "{name}");
    }
}

#[test]
fn same_input_and_options_give_identical_archives_whatever_the_threads() {
    let work = temp_dir();
    let dir = work.path();
    let image = dir.join("img.raw");
    sh(&format!("head -c 6000000 /dev/urandom > {0} && yes same | head -c 6000000 >> {0}", path_str(&image)));
    let source = format!("disk={}", path_str(&image));
    let mut archives = Vec::new();
    for threads in ["1", "2", "3"] {
        let archive = dir.join(format!("t{threads}.strata"));
        run_ok(&[
            "create",
            path_str(&archive),
            "--image",
            &source,
            "--threads",
            threads,
            "--uuid",
            UUID,
            "--created",
            "1700000000",
            "--quiet",
        ]);
        archives.push(std::fs::read(&archive).unwrap());
    }
    assert_eq!(archives[0], archives[1]);
    assert_eq!(archives[0], archives[2]);
}

#[test]
fn a_one_tib_sparse_file_is_imaged_without_reading_its_holes() {
    // Reading 1 TiB of holes would take hours: SEEK_DATA/SEEK_HOLE must skip them.
    let work = temp_dir();
    let dir = work.path();
    let sparse = dir.join("sparse.raw");
    sh(&format!(
        "truncate -s 1T {0} && printf 'start' | dd of={0} conv=notrunc status=none && printf 'end' | dd of={0} bs=1 seek=$((1024*1024*1024*1024 - 3)) conv=notrunc status=none",
        path_str(&sparse)
    ));
    let archive = dir.join("sparse.strata");
    run_ok(&[
        "create",
        path_str(&archive),
        "--image",
        &format!("disk={}", path_str(&sparse)),
        "--chunk-size",
        "1M",
        "--quiet",
    ]);
    assert!(std::fs::metadata(&archive).unwrap().len() < 64 << 10);
    let info = run_ok(&["info", path_str(&archive), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["sections"][0]["image"]["logical_size"], 1u64 << 40);
    assert_eq!(info["sections"][0]["image"]["data_bytes"], 2u64 << 20);
    assert_eq!(info["sections"][0]["image"]["extents"], 3);
    let restored = dir.join("restored.raw");
    run_ok(&["restore", path_str(&archive), "--image", "disk", path_str(&restored), "--quiet"]);
    assert_eq!(std::fs::metadata(&restored).unwrap().len(), 1u64 << 40);
    assert!(allocated(&restored) <= 2 << 20, "the restore allocated {} bytes", allocated(&restored));
    let tail = run_ok(&["cat", path_str(&archive), "--image", "disk", "--offset", &((1u64 << 40) - 3).to_string()]);
    assert_eq!(tail.stdout, b"end");
}
