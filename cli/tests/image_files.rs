//! Files back out of a system image without restoring it: `info` lists the
//! partitions and file systems of an image section, `list`, `cat` and
//! `extract --image NAME [--partition N]` read the ext4 file system inside it.
//! The disks are made by the real tools (sgdisk, mkfs.ext4 -d, mkfs.vfat).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

const MIB: u64 = 1 << 20;

/// A source tree, and a 40 MiB GPT disk: partition 1 FAT "BOOT" (8 MiB),
/// partition 2 ext4 "rootfs" made from the tree (16 MiB); archived as image `disk`.
fn disk_archive(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc/sub")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"strata\n").unwrap();
    std::fs::write(src.join("etc/sub/numbers"), (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>())
        .unwrap();
    std::os::unix::fs::symlink("etc/hostname", src.join("link")).unwrap();
    sh(&format!("chmod 0640 '{}'", path_str(&src.join("etc/hostname"))));
    let (ext4, fat, disk) = (dir.join("ext4.img"), dir.join("fat.img"), dir.join("disk.img"));
    sh(&format!(
        "mkfs.ext4 -q -F -I 256 -L rootfs -U 0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9 -d '{}' '{}' 16M 2>/dev/null",
        path_str(&src),
        path_str(&ext4)
    ));
    sh(&format!("mkfs.vfat -n BOOT -i 1234ABCD -C '{}' 8192 >/dev/null", path_str(&fat)));
    sh(&format!(
        "truncate -s 40M '{0}' && sgdisk -o -n1:2048:+8M -t1:ef00 -c1:esp -n2:0:+16M -t2:8300 -c2:root '{0}' >/dev/null",
        path_str(&disk)
    ));
    sh(&format!("dd if='{}' of='{}' bs=1M seek=1 conv=notrunc status=none", path_str(&fat), path_str(&disk)));
    sh(&format!("dd if='{}' of='{}' bs=1M seek=9 conv=notrunc status=none", path_str(&ext4), path_str(&disk)));
    let archive = dir.join("a.strata");
    run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(&disk)), "-q"]);
    (archive, src)
}

fn tools() -> bool {
    ["mkfs.ext4", "mkfs.vfat", "sgdisk"].iter().all(|t| require_tool(t))
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
    let (archive, _) = disk_archive(dir.path());
    let text = stdout(&["info", path_str(&archive)]);
    assert!(text.contains("GPT partition table, 2 partitions"), "{text}");
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
}

#[test]
fn list_cat_and_extract_read_files_out_of_a_partition() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, src) = disk_archive(dir.path());
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
    let (archive, _) = disk_archive(dir.path());
    let a = path_str(&archive);
    let said = |args: &[&str]| {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Two partitions hold a file system: which one?
    assert!(said(&["list", a, "--image", "disk"]).contains("choose with --partition"));
    assert!(said(&["list", a, "--image", "disk", "--partition", "7"]).contains("partitions 1, 2"));
    // FAT is recognised but its files are not read yet: said so.
    let fat = said(&["list", a, "--image", "disk", "--partition", "1"]);
    assert!(fat.contains("fat") && fat.contains("cannot be read yet"), "{fat}");
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
    let (archive, _) = disk_archive(dir.path());
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
