//! `create --used-blocks`: only the blocks the file systems inside an image
//! use are stored. A GPT disk made by the real tools (sgdisk, mkfs.ext4 -d with
//! files deleted afterwards by debugfs, mkfs.vfat with mtools), with garbage in
//! every free block and between the partitions, restores to a disk whose file
//! systems check clean (e2fsck -fn, fsck.vfat -n), whose every file is the
//! source's, and whose bytes outside the file systems are the source's.

mod common;

use common::*;

const MIB: usize = 1 << 20;

fn stdout_of(command: &str) -> Vec<u8> {
    let out = std::process::Command::new("sh").args(["-c", command]).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_used_blocks_image_restores_clean_file_systems_with_the_same_files() {
    if !["mkfs.ext4", "debugfs", "e2fsck", "mkfs.vfat", "mcopy", "fsck.vfat", "sgdisk"].iter().all(|t| require_tool(t))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Garbage everywhere first: what deleted files and old data leave behind.
    let disk_path = d.join("disk.img");
    std::fs::write(&disk_path, noise(1, 40 * MIB)).unwrap();
    sh(&format!("sgdisk -o -n1:2048:+8M -t1:0700 -n2:0:+24M -t2:8300 '{}' >/dev/null", path_str(&disk_path)));
    // ext4 from a tree, on an image full of garbage; then files deleted.
    let src = d.join("src");
    std::fs::create_dir_all(src.join("keep")).unwrap();
    for i in 0..30 {
        std::fs::write(src.join(format!("keep/k{i}")), noise(100 + i, 20_000 + 7_000 * i as usize)).unwrap();
        std::fs::write(src.join(format!("gone{i}")), noise(200 + i, 30_000)).unwrap();
    }
    let ext4 = d.join("ext4.img");
    std::fs::write(&ext4, noise(2, 24 * MIB)).unwrap();
    sh(&format!("mkfs.ext4 -q -F -E nodiscard -d '{}' '{}' >/dev/null", path_str(&src), path_str(&ext4)));
    for i in 0..30 {
        sh(&format!("debugfs -w -R 'rm /gone{i}' '{}' >/dev/null 2>&1", path_str(&ext4)));
    }
    let fat = d.join("fat.img");
    std::fs::write(&fat, noise(3, 8 * MIB)).unwrap();
    sh(&format!("mkfs.vfat '{}' >/dev/null", path_str(&fat)));
    for i in 0..6 {
        let file = d.join(format!("f{i}"));
        std::fs::write(&file, noise(300 + i, 40_000 * (i as usize + 1))).unwrap();
        sh(&format!("mcopy -i '{}' '{}' ::/f{i}", path_str(&fat), path_str(&file)));
    }
    sh(&format!("mdel -i '{}' ::/f2 ::/f4", path_str(&fat)));
    let mut disk = std::fs::read(&disk_path).unwrap();
    disk[MIB..9 * MIB].copy_from_slice(&std::fs::read(&fat).unwrap());
    disk[9 * MIB..33 * MIB].copy_from_slice(&std::fs::read(&ext4).unwrap());
    std::fs::write(&disk_path, &disk).unwrap();

    let (whole, used) = (d.join("whole.strata"), d.join("used.strata"));
    run_ok(&["create", path_str(&whole), "--image", &format!("disk={}", path_str(&disk_path)), "-q"]);
    let created =
        run_ok(&["create", path_str(&used), "--image", &format!("disk={}", path_str(&disk_path)), "--used-blocks"]);
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(said.contains("partition 1: fat") && said.contains("partition 2: ext4"), "{said}");
    assert!(said.contains("free in its file systems (not stored)"), "{said}");
    let (whole_size, used_size) = (std::fs::metadata(&whole).unwrap().len(), std::fs::metadata(&used).unwrap().len());
    assert!(used_size * 2 < whole_size, "used blocks {used_size} bytes, whole {whole_size}");
    let info = String::from_utf8_lossy(&run_ok(&["info", path_str(&used)]).stdout).into_owned();
    assert!(info.contains("used blocks only"), "{info}");
    let json: serde_json::Value = serde_json::from_slice(&run_ok(&["info", path_str(&used), "--json"]).stdout).unwrap();
    let image = &json["sections"][0]["image"];
    assert_eq!(image["used_blocks"], true);
    assert!(image["free_bytes"].as_u64().unwrap() > 10 * MIB as u64, "{image}");
    run_ok(&["verify", path_str(&used)]);

    let restored = d.join("restored.img");
    run_ok(&["restore", path_str(&used), "--image", "disk", path_str(&restored), "-q"]);
    let back = std::fs::read(&restored).unwrap();
    assert_eq!(back.len(), disk.len());
    // Outside the file systems: the source's bytes (the GPT, the gap before
    // partition 1, the space after partition 2).
    assert!(back[..MIB] == disk[..MIB], "the table and the gap before the first partition");
    assert!(back[33 * MIB..] == disk[33 * MIB..], "the space after the last partition");
    let (ext4_back, fat_back) = (d.join("ext4.back"), d.join("fat.back"));
    std::fs::write(&ext4_back, &back[9 * MIB..33 * MIB]).unwrap();
    std::fs::write(&fat_back, &back[MIB..9 * MIB]).unwrap();
    sh(&format!("e2fsck -fn '{}' >/dev/null 2>&1", path_str(&ext4_back)));
    sh(&format!("fsck.vfat -n '{}' >/dev/null", path_str(&fat_back)));
    for i in 0..30 {
        let got = stdout_of(&format!("debugfs -R 'cat /keep/k{i}' '{}' 2>/dev/null", path_str(&ext4_back)));
        assert!(got == std::fs::read(src.join(format!("keep/k{i}"))).unwrap(), "keep/k{i}");
    }
    for i in [0, 1, 3, 5] {
        let got = stdout_of(&format!("mtype -i '{}' ::/f{i}", path_str(&fat_back)));
        assert!(got == std::fs::read(d.join(format!("f{i}"))).unwrap(), "f{i}");
    }
    // The free space came back as zeros, not as the garbage that was there.
    assert!(back != disk, "free space is not stored: the disk is not bit-identical");

    // A salvage keeps the section used-blocks and its free extents free.
    let mut damaged = std::fs::read(&used).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xFF;
    let (hurt, saved) = (d.join("hurt.strata"), d.join("saved.strata"));
    std::fs::write(&hurt, &damaged).unwrap();
    let out = run(&["salvage", path_str(&hurt), path_str(&saved), "-q"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&saved), "--json"]).stdout).unwrap();
    let salvaged = &json["sections"][0]["image"];
    assert_eq!(salvaged["used_blocks"], true, "{salvaged}");
    assert_eq!(salvaged["free_bytes"], image["free_bytes"], "{salvaged} {image}");
}

/// The chunk size of an image: 4 MiB by default, used-blocks or not;
/// `--chunk-size` is obeyed either way, and a child's image keeps its
/// parent's chunk size (not the default), so that an unchanged image shares
/// every chunk with the parent.
#[test]
fn image_chunk_sizes_default_to_4_mib_and_children_keep_their_parents() {
    if !require_tool("mkfs.ext4") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("f{i}")), noise(400 + i, 300_000)).unwrap();
    }
    let image = d.join("ext4.img");
    std::fs::write(&image, noise(5, 16 * MIB)).unwrap();
    sh(&format!("mkfs.ext4 -q -F -E nodiscard -d '{}' '{}' >/dev/null", path_str(&src), path_str(&image)));
    let source = format!("disk={}", path_str(&image));
    let chunk_size = |archive: &std::path::Path| {
        let json: serde_json::Value =
            serde_json::from_slice(&run_ok(&["info", path_str(archive), "--json"]).stdout).expect("info --json");
        json["sections"][0]["image"]["chunk_size"].as_u64().expect("a chunk size")
    };
    let archive = |name: &str, extra: &[&str]| {
        let path = d.join(name);
        let mut args = vec!["create", path_str(&path), "--image", &source, "-q"];
        args.extend_from_slice(extra);
        run_ok(&args);
        path
    };
    assert_eq!(chunk_size(&archive("whole.strata", &[])), 4 << 20);
    assert_eq!(chunk_size(&archive("used.strata", &["--used-blocks"])), 4 << 20);
    assert_eq!(chunk_size(&archive("used-1m.strata", &["--used-blocks", "--chunk-size", "1M"])), 1 << 20);
    let parent = archive("parent.strata", &["--used-blocks", "--chunk-size", "2M"]);
    let child = archive("child.strata", &["--used-blocks", "--parent", path_str(&parent)]);
    assert_eq!(chunk_size(&child), 2 << 20, "the parent's chunk size");
    let (parent_size, child_size) =
        (std::fs::metadata(&parent).unwrap().len(), std::fs::metadata(&child).unwrap().len());
    assert!(
        child_size * 20 < parent_size,
        "the unchanged image is not stored again: {child_size} of {parent_size} bytes"
    );
    run_ok(&["verify", path_str(&child)]);
}

/// A used-blocks archive of a real ext4 file system (many folders among
/// many small files, as a system disk has) keeps what a lookup reads near
/// the start of a chunk: every folder's blocks less than METADATA_REACH
/// (1 MiB) from where their chunk starts, the inode table in chunks of at
/// most 64 KiB. So
/// finding a file decodes a little of each chunk on its path, not up to a
/// whole window (issue 16's one file out of an image).
#[test]
fn a_lookup_in_a_used_blocks_image_decodes_little_of_each_chunk() {
    use strata_reader::{Archive, Section};
    if !["mkfs.ext4", "debugfs"].iter().all(|t| require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("src");
    for folder in 0..60 {
        let sub = src.join(format!("f{folder}/g{}", folder % 7));
        std::fs::create_dir_all(&sub).unwrap();
        for file in 0..20 {
            std::fs::write(sub.join(format!("file{file}")), noise(folder * 100 + file, 5_000 + file as usize * 700))
                .unwrap();
        }
    }
    let image = d.join("ext4.img");
    sh(&format!("mkfs.ext4 -q -F -E nodiscard -d '{}' '{}' 64M >/dev/null", path_str(&src), path_str(&image)));
    let archive_path = d.join("used.strata");
    run_ok(&[
        "create",
        path_str(&archive_path),
        "--image",
        &format!("disk={}", path_str(&image)),
        "--used-blocks",
        "-q",
    ]);
    let archive = Archive::new(std::fs::read(&archive_path).unwrap()).unwrap();
    let Section::Image(section) = &archive.sections()[0] else { panic!("an image section") };
    // The data extent (one chunk each) holding image byte `at`: how far into
    // its chunk `at` is, which is what reading it decodes.
    let depth = |at: u64| {
        let extent = &section.extents[section.extent_at(at).unwrap()];
        assert!(extent.chunk_ref >= 128, "byte {at} is stored");
        (at - extent.image_offset, extent.length)
    };
    let mut folders = vec!["/".to_string()];
    for folder in 0..60 {
        folders.push(format!("/f{folder}"));
        folders.push(format!("/f{folder}/g{}", folder % 7));
    }
    let stats = String::from_utf8(
        std::process::Command::new("debugfs").args(["-R", "stats"]).arg(&image).output().unwrap().stdout,
    )
    .unwrap();
    let field = |name: &str| stats.lines().find_map(|l| l.trim().strip_prefix(name)).unwrap().trim().to_string();
    let block_size: u64 = field("Block size:").parse().unwrap();
    let mut blocks_seen = 0;
    for folder in &folders {
        let out = std::process::Command::new("debugfs")
            .args(["-R", &format!("blocks \"{folder}\"")])
            .arg(&image)
            .output()
            .unwrap();
        for block in String::from_utf8(out.stdout).unwrap().split_whitespace() {
            let at = block.parse::<u64>().unwrap() * block_size;
            let (into, _) = depth(at);
            assert!(into < strata_writer::METADATA_REACH, "{folder}: block at {at} lies {into} bytes into its chunk");
            blocks_seen += 1;
        }
    }
    assert!(blocks_seen >= folders.len(), "every folder has a block");
    let table: u64 = stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("Group  0:"))
        .and_then(|l| l.split("inode table at ").nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (_, length) = depth(table * block_size);
    assert!(length <= 64 << 10, "the inode table's first chunk holds {length} bytes");
    // And the image is the same image.
    let restored = d.join("restored.img");
    run_ok(&["restore", path_str(&archive_path), "--image", "disk", path_str(&restored), "-q"]);
    assert!(std::fs::read(&restored).unwrap() == std::fs::read(&image).unwrap(), "restored byte for byte");
}

/// NTFS's free clusters, from `$Bitmap`, are not stored: a volume made by
/// mkntfs over garbage and filled by ntfscp restores to one that ntfsfix
/// finds clean, whose files ntfscat reads back, whose free space is zeros,
/// and whose free bytes are what ntfsinfo counts.
#[test]
fn an_ntfs_volume_keeps_only_its_used_clusters() {
    if !["mkntfs", "ntfscp", "ntfscat", "ntfsfix", "ntfsinfo"].iter().all(|t| require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = d.join("ntfs.img");
    std::fs::write(&image, noise(7, 24 * MIB)).unwrap();
    sh(&format!("mkntfs -F -Q -L data '{}' >/dev/null 2>&1", path_str(&image)));
    let mut files = Vec::new();
    for i in 0..8 {
        let file = d.join(format!("file{i}"));
        std::fs::write(&file, noise(700 + i, 1_000 + 150_000 * i as usize)).unwrap();
        sh(&format!("ntfscp '{}' '{}' file{i} >/dev/null 2>&1", path_str(&image), path_str(&file)));
        files.push(file);
    }
    let archive = d.join("used.strata");
    let created =
        run_ok(&["create", path_str(&archive), "--image", &format!("disk={}", path_str(&image)), "--used-blocks"]);
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(said.contains("ntfs") && said.contains("free: not stored"), "{said}");
    let json: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&archive), "--json"]).stdout).unwrap();
    let free_bytes = json["sections"][0]["image"]["free_bytes"].as_u64().unwrap();
    let ntfsinfo = stdout_of(&format!("ntfsinfo -m '{}' 2>/dev/null", path_str(&image)));
    let ntfsinfo = String::from_utf8_lossy(&ntfsinfo).into_owned();
    let field = |name: &str| -> u64 {
        let line = ntfsinfo.lines().find_map(|l| l.trim().strip_prefix(name)).expect(name).trim().to_string();
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    // Free clusters shorter than the writer's smallest split stay stored as
    // zeros: the free extents hold at most what the bitmap says is free.
    let bitmap_free = field("Free Clusters:") * field("Cluster Size:");
    assert!(free_bytes <= bitmap_free && free_bytes * 10 >= bitmap_free * 9, "{free_bytes} of {bitmap_free}");
    assert!(
        std::fs::metadata(&archive).unwrap().len() < 24 * MIB as u64 - bitmap_free / 2,
        "free garbage is not stored"
    );
    run_ok(&["verify", path_str(&archive)]);
    let restored = d.join("restored.img");
    run_ok(&["restore", path_str(&archive), "--image", "disk", path_str(&restored), "-q"]);
    sh(&format!("ntfsfix -n '{}' >/dev/null", path_str(&restored)));
    for (i, file) in files.iter().enumerate() {
        let got = stdout_of(&format!("ntfscat '{}' file{i} 2>/dev/null", path_str(&restored)));
        assert!(got == std::fs::read(file).unwrap(), "file{i}");
    }
    let (back, source) = (std::fs::read(&restored).unwrap(), std::fs::read(&image).unwrap());
    assert_eq!(back.len(), source.len());
    let zeroed = back.iter().zip(&source).filter(|(b, s)| b != s).count() as u64;
    assert!(zeroed * 2 > free_bytes, "the garbage in free space came back as zeros: {zeroed} bytes differ");

    // A volume marked dirty (not cleanly unmounted) may have changes in its
    // log that its bitmap does not show yet: stored whole.
    let mut dirty = source;
    set_ntfs_dirty(&mut dirty);
    let dirty_image = d.join("dirty.img");
    std::fs::write(&dirty_image, &dirty).unwrap();
    let dirty_archive = d.join("dirty.strata");
    let created = run_ok(&[
        "create",
        path_str(&dirty_archive),
        "--image",
        &format!("disk={}", path_str(&dirty_image)),
        "--used-blocks",
    ]);
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(said.contains("stored whole"), "{said}");
    let json: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&dirty_archive), "--json"]).stdout).unwrap();
    assert_eq!(json["sections"][0]["image"]["free_bytes"], 0, "{json}");
}

/// Sets the dirty flag of an NTFS volume: `VOLUME_INFORMATION` (attribute
/// 0x70) of `$Volume` (MFT record 3), whose flags are at offset 10 of its
/// value. The flag lies inside the record's first sector, away from the
/// update-sequence bytes at its end.
fn set_ntfs_dirty(image: &mut [u8]) {
    let le = |b: &[u8], at: usize, n: usize| b[at..at + n].iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x));
    let cluster = le(image, 0x0B, 2) * le(image, 0x0D, 1);
    let record_size = match le(image, 0x40, 1) as i8 {
        n if n < 0 => 1u64 << -n,
        n => n as u64 * cluster,
    };
    let record = (le(image, 0x30, 8) * cluster + 3 * record_size) as usize;
    assert_eq!(&image[record..record + 4], b"FILE", "MFT record 3");
    let mut at = record + le(image, record + 0x14, 2) as usize;
    loop {
        let (kind, length) = (le(image, at, 4), le(image, at + 4, 4) as usize);
        assert!(kind != 0xFFFF_FFFF && length > 0, "no VOLUME_INFORMATION in $Volume");
        if kind == 0x70 {
            let flags = at + le(image, at + 0x14, 2) as usize + 10;
            assert!(flags - record < 510, "the flag lies clear of the update sequence");
            image[flags] |= 0x01;
            return;
        }
        at += length;
    }
}
