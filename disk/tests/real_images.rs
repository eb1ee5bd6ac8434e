//! Disk images made by the real tools (sgdisk, sfdisk, mkfs.ext4 -d,
//! mkfs.vfat and mtools), read back by the crate and compared with what the
//! tools were given.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

mod common;

use common::{run, tool};
use strata_disk::{filesystems::walk, open_filesystem, scan, Disk, ErrorKind, FsKind, NodeKind, TableKind};

const MIB: u64 = 1 << 20;

/// A source tree with nested folders, a symbolic link, modes and times.
fn source_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"strata-test\n").unwrap();
    std::fs::write(root.join("etc/deep/er/big.bin"), (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>())
        .unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("etc/hostname", root.join("link")).unwrap();
    std::fs::set_permissions(root.join("etc/hostname"), std::fs::Permissions::from_mode(0o640)).unwrap();
    run(&format!("touch -h -d '2020-05-06 07:08:09.123456789' '{}'/etc/hostname", root.display()));
}

fn write_at(disk: &mut [u8], offset: u64, path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    disk[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
}

fn ext4_image(dir: &Path, src: &Path, size_mib: u64) -> std::path::PathBuf {
    let image = dir.join("ext4.img");
    run(&format!(
        "mkfs.ext4 -q -F -I 256 -L rootfs -U 0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9 -d '{}' '{}' {size_mib}M",
        src.display(),
        image.display()
    ));
    image
}

#[test]
fn a_gpt_disk_with_fat_and_ext4_lists_its_partitions_and_reads_its_files() {
    if !["sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "tune2fs"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let ext4 = ext4_image(dir.path(), &src, 16);
    let fat = dir.path().join("fat.img");
    run(&format!("mkfs.vfat -n BOOT -i 1234ABCD -C '{}' 8192 >/dev/null", fat.display()));
    run(&format!("mcopy -i '{}' '{}' ::/hostname", fat.display(), src.join("etc/hostname").display()));
    let disk_path = dir.path().join("disk.img");
    run(&format!("truncate -s 40M '{0}' && sgdisk -o -n1:2048:+8M -t1:ef00 -c1:esp -n2:0:+16M -t2:8300 -c2:root '{0}' >/dev/null 2>&1", disk_path.display()));
    let mut bytes = std::fs::read(&disk_path).unwrap();
    write_at(&mut bytes, MIB, &fat);
    write_at(&mut bytes, 9 * MIB, &ext4);
    let disk: Rc<dyn Disk> = Rc::new(bytes);

    let layout = scan(&disk).unwrap();
    assert_eq!(layout.table, TableKind::Gpt);
    let numbers: Vec<u32> = layout.partitions.iter().filter_map(|v| v.number()).collect();
    assert_eq!(numbers, [1, 2]);
    let (esp, root) = (&layout.partitions[0], &layout.partitions[1]);
    assert_eq!((esp.start, esp.length), (MIB, 8 * MIB));
    assert!(esp.partition.as_ref().unwrap().type_name.contains("EFI system"));
    assert_eq!(root.partition.as_ref().unwrap().name, "root");
    let fat_info = esp.filesystem.as_ref().expect("FAT recognised");
    assert!(matches!(fat_info.kind, FsKind::Fat12 | FsKind::Fat16), "{fat_info:?}");
    assert_eq!((fat_info.label.as_str(), fat_info.uuid.as_str()), ("BOOT", "1234-ABCD"));
    assert!(fat_info.used.unwrap() > 0 && fat_info.used.unwrap() < 8 * MIB);
    let ext_info = root.filesystem.as_ref().expect("ext4 recognised");
    assert_eq!(ext_info.kind, FsKind::Ext4);
    assert_eq!(ext_info.label, "rootfs");
    assert_eq!(ext_info.uuid, "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9");
    assert_eq!(ext_info.size, 16 * MIB);
    // Used bytes as tune2fs reports them.
    let out = Command::new("tune2fs").arg("-l").arg(&ext4).output().unwrap();
    let field = |name: &str| -> u64 {
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    let used = (field("Block count") - field("Free blocks")) * field("Block size");
    assert_eq!(ext_info.used, Some(used));

    // Two volumes hold file systems: one must be chosen.
    let e = layout.volume(None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("--partition"), "{e}");
    assert_eq!(layout.volume(Some(3)).unwrap_err().kind(), ErrorKind::NotFound);

    // The ext4 partition's files, as the source had them.
    let fs = open_filesystem(&disk, layout.volume(Some(2)).unwrap()).unwrap();
    let mut seen = Vec::new();
    walk(fs.as_ref(), b"", root.length, &mut |path, node| {
        seen.push(String::from_utf8_lossy(path).into_owned());
        if path.is_empty() || path == b"lost+found" || path.starts_with(b"lost+found/") {
            return Ok(path.is_empty());
        }
        let source = src.join(String::from_utf8_lossy(path).as_ref());
        let meta = std::fs::symlink_metadata(&source).unwrap();
        assert_eq!(node.mode, meta.mode() & 0o7777, "{}", source.display());
        // mkfs.ext4 -d copies times to the second.
        assert_eq!(node.mtime.0, meta.mtime(), "{}", source.display());
        match node.kind {
            NodeKind::File => {
                let mut content = Vec::new();
                fs.read_file(path, &mut |piece| {
                    content.extend_from_slice(piece);
                    Ok(())
                })
                .unwrap();
                assert_eq!(content, std::fs::read(&source).unwrap(), "{}", source.display());
            }
            NodeKind::Symlink => assert_eq!(node.target, b"etc/hostname"),
            NodeKind::Directory => assert!(meta.is_dir()),
            other => panic!("{other:?} at {}", source.display()),
        }
        Ok(true)
    })
    .unwrap();
    let mut want = vec![
        "",
        "empty",
        "etc",
        "etc/deep",
        "etc/deep/er",
        "etc/deep/er/big.bin",
        "etc/hostname",
        "link",
        "lost+found",
    ];
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
    // A missing path is NotFound, with the path in the message.
    let e = fs.node(b"etc/nothing").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("/etc/nothing"), "{e}");

    // The FAT partition's file, through fatfs.
    let fat_fs = open_filesystem(&disk, layout.volume(Some(1)).unwrap()).unwrap();
    let mut hostname = Vec::new();
    fat_fs
        .read_file(b"/hostname", &mut |piece| {
            hostname.extend_from_slice(piece);
            Ok(())
        })
        .unwrap();
    assert_eq!(hostname, b"strata-test\n");
}

#[test]
fn an_mbr_disk_numbers_logical_partitions_from_five() {
    if !["sfdisk", "mkfs.ext4"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let ext4 = ext4_image(dir.path(), &src, 8);
    let disk_path = dir.path().join("disk.img");
    // Primary 1 and an extended partition fill the disk, so the partitions
    // appended after them can only be logical ones inside it.
    run(&format!(
        "truncate -s 29M '{0}' && printf 'label: dos\\n2048,8M,83\\n,20M,5\\n' | sfdisk -q '{0}' \\
         && printf ',4M,83\\n' | sfdisk -q -a '{0}' && printf ',8M,83\\n' | sfdisk -q -a '{0}'",
        disk_path.display()
    ));
    let table = Command::new("sfdisk").arg("-J").arg(&disk_path).output().unwrap();
    let json = String::from_utf8_lossy(&table.stdout).to_string();
    let mut bytes = std::fs::read(&disk_path).unwrap();
    // The last logical partition (5 or 6 by sfdisk's numbering) takes the ext4 image.
    let layout = scan(&(Rc::new(bytes.clone()) as Rc<dyn Disk>)).unwrap();
    assert_eq!(layout.table, TableKind::Mbr);
    let numbers: Vec<u32> = layout.partitions.iter().filter_map(|v| v.number()).collect();
    assert_eq!(numbers, [1, 5, 6], "{json}");
    let sixth = layout.partitions[2].start;
    write_at(&mut bytes, sixth, &ext4);
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap();
    assert_eq!(volume.number(), Some(6));
    let fs = open_filesystem(&disk, volume).unwrap();
    assert_eq!(fs.node(b"etc/hostname").unwrap().size, 12);
}

#[test]
fn an_unpartitioned_file_system_is_the_whole_disk() {
    if !tool("mkfs.ext4") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let ext4 = ext4_image(dir.path(), &src, 8);
    let disk: Rc<dyn Disk> = Rc::new(std::fs::read(&ext4).unwrap());
    let layout = scan(&disk).unwrap();
    assert_eq!(layout.table, TableKind::None);
    let volume = layout.volume(None).unwrap();
    assert_eq!((volume.number(), volume.start), (None, 0));
    assert_eq!(volume.filesystem.as_ref().unwrap().kind, FsKind::Ext4);
}

/// The free ranges of an ext4 file system with deleted files, and of a FAT
/// one: they add up to what the file system itself counts as free, and a copy
/// of the image with every free range overwritten still checks clean and
/// holds the same files: no used block is called free.
#[test]
fn free_ranges_are_exactly_the_free_space_and_nothing_used() {
    if !["mkfs.ext4", "e2fsck", "debugfs", "tune2fs", "mkfs.vfat", "mcopy", "fsck.vfat"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    for i in 0..40 {
        std::fs::write(src.join(format!("gone{i}")), vec![0xA5u8; 20_000 + i * 3000]).unwrap();
    }
    // 64 MiB: several block groups, most never written (BLOCK_UNINIT).
    let image = dir.path().join("ext4.img");
    run(&format!("mkfs.ext4 -q -F -b 1024 -g 8192 -d '{}' '{}' 64M", src.display(), image.display()));
    for i in (0..40).step_by(2) {
        run(&format!("debugfs -w -R 'rm /gone{i}' '{}' >/dev/null 2>&1", image.display()));
    }
    let check = |bytes: Vec<u8>| {
        let disk: Rc<dyn Disk> = Rc::new(bytes);
        let layout = scan(&disk).unwrap();
        let volume = layout.volume(None).unwrap().clone();
        let free = strata_disk::allocation::free_ranges(&disk, &volume).unwrap().expect("a map for this file system");
        (disk, volume, free)
    };
    let (_, _, free) = check(std::fs::read(&image).unwrap());
    let out = Command::new("tune2fs").arg("-l").arg(&image).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| -> u64 {
        text.lines().find(|l| l.starts_with(name)).unwrap().split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    let free_bytes: u64 = free.iter().map(|r| r.end - r.start).sum();
    assert_eq!(free_bytes, field("Free blocks") * field("Block size"), "free ranges against the superblock's count");
    assert!(free.windows(2).all(|w| w[0].end < w[1].start), "sorted, merged");
    // Overwrite every free byte: the file system must not notice.
    let mut bytes = std::fs::read(&image).unwrap();
    for range in &free {
        bytes[range.start as usize..range.end as usize].fill(0xEE);
    }
    let scribbled = dir.path().join("scribbled.img");
    std::fs::write(&scribbled, &bytes).unwrap();
    let fsck = Command::new("e2fsck").args(["-fn"]).arg(&scribbled).output().unwrap();
    assert!(fsck.status.success(), "e2fsck: {}", String::from_utf8_lossy(&fsck.stdout));
    let (disk, volume, _) = check(bytes);
    let fs = open_filesystem(&disk, &volume).unwrap();
    for i in (1..40).step_by(2) {
        let mut content = Vec::new();
        fs.read_file(format!("gone{i}").as_bytes(), &mut |p| {
            content.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(content, std::fs::read(src.join(format!("gone{i}"))).unwrap(), "gone{i}");
    }

    // FAT: free clusters as the FAT says, and scribbling over them is harmless.
    let fat = dir.path().join("fat.img");
    run(&format!("mkfs.vfat -C '{}' 16384 >/dev/null", fat.display()));
    for i in 0..10 {
        let file = dir.path().join(format!("f{i}"));
        std::fs::write(&file, vec![i as u8 + 1; 5000 * (i + 1)]).unwrap();
        run(&format!("mcopy -i '{}' '{}' ::/f{i}", fat.display(), file.display()));
    }
    run(&format!("mdel -i '{}' ::/f3 ::/f7", fat.display()));
    let (_, _, free) = check(std::fs::read(&fat).unwrap());
    let free_bytes: u64 = free.iter().map(|r| r.end - r.start).sum();
    let mdir = Command::new("mdir").args(["-i"]).arg(&fat).arg("::/").output().unwrap();
    let said = String::from_utf8_lossy(&mdir.stdout).to_string();
    let line = said.lines().find(|l| l.contains("bytes free")).unwrap().to_string();
    let mdir_free: u64 = line.split_whitespace().take_while(|w| *w != "bytes").collect::<String>().parse().unwrap();
    assert_eq!(free_bytes, mdir_free, "{line}");
    let mut bytes = std::fs::read(&fat).unwrap();
    for range in &free {
        bytes[range.start as usize..range.end as usize].fill(0xEE);
    }
    std::fs::write(&fat, &bytes).unwrap();
    let fsck = Command::new("fsck.vfat").args(["-n"]).arg(&fat).output().unwrap();
    assert!(fsck.status.success(), "fsck.vfat: {}", String::from_utf8_lossy(&fsck.stdout));
    for i in [0, 1, 2, 4, 5, 6, 8, 9] {
        let out = Command::new("mtype").args(["-i"]).arg(&fat).arg(format!("::/f{i}")).output().unwrap();
        assert_eq!(out.stdout, vec![i as u8 + 1; 5000 * (i + 1)], "f{i}");
    }
}

/// NTFS: the free clusters are exactly those `$Bitmap` leaves clear, as
/// ntfsinfo counts them, and scribbling over them harms nothing.
#[test]
fn ntfs_free_ranges_are_the_clusters_its_bitmap_leaves_clear() {
    if !["mkntfs", "ntfscp", "ntfscat", "ntfsfix", "ntfsinfo"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("ntfs.img");
    run(&format!("truncate -s 20M '{0}' && mkntfs -F -Q -L data '{0}' >/dev/null 2>&1", image.display()));
    let mut files = Vec::new();
    for i in 0..6usize {
        let file = dir.path().join(format!("f{i}"));
        std::fs::write(&file, (0..40_000 * (i + 1)).map(|b| (b * 13 % 251) as u8 ^ i as u8).collect::<Vec<_>>())
            .unwrap();
        run(&format!("ntfscp '{}' '{}' f{i} >/dev/null 2>&1", image.display(), file.display()));
        files.push(file);
    }
    let mut bytes = std::fs::read(&image).unwrap();
    let disk: Rc<dyn Disk> = Rc::new(bytes.clone());
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap().clone();
    let free = strata_disk::allocation::free_ranges(&disk, &volume).unwrap().expect("a map for NTFS");
    assert!(free.windows(2).all(|w| w[0].end < w[1].start), "sorted, merged");
    let out = Command::new("ntfsinfo").arg("-m").arg(&image).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| -> u64 {
        let line = text.lines().find_map(|l| l.trim().strip_prefix(name)).unwrap().trim().to_string();
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    let free_bytes: u64 = free.iter().map(|r| r.end - r.start).sum();
    assert_eq!(free_bytes, field("Free Clusters:") * field("Cluster Size:"), "free ranges against ntfsinfo");
    // The metadata hints name $MFT, where a lookup reads its records, and
    // none of the free space.
    let mft = field("LCN of Data Attribute for FILE_MFT:") * field("Cluster Size:");
    let metadata = strata_disk::metadata::metadata_ranges(&disk, &volume);
    assert!(metadata.iter().any(|r| r.start <= mft && mft + 1024 * 16 <= r.end), "{metadata:?}: $MFT at {mft}");
    assert!(
        metadata.iter().all(|m| free.iter().all(|f| m.end <= f.start || f.end <= m.start)),
        "{metadata:?} overlaps free space"
    );
    for range in &free {
        bytes[range.start as usize..range.end as usize].fill(0xEE);
    }
    std::fs::write(&image, &bytes).unwrap();
    let fix = Command::new("ntfsfix").arg("-n").arg(&image).output().unwrap();
    assert!(fix.status.success(), "ntfsfix: {}", String::from_utf8_lossy(&fix.stdout));
    for (i, file) in files.iter().enumerate() {
        let out = Command::new("ntfscat").arg(&image).arg(format!("f{i}")).output().unwrap();
        assert!(out.stdout == std::fs::read(file).unwrap(), "f{i}");
    }
}

/// A file system that claims more than its volume holds (a FAT whose boot
/// sector counts more sectors than the image has): its allocation map is an
/// error, never free ranges outside the volume.
#[test]
fn an_allocation_map_past_its_volume_is_an_error() {
    if !tool("mkfs.vfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fat = dir.path().join("fat.img");
    run(&format!("mkfs.vfat -C '{}' 1024 >/dev/null", fat.display()));
    let mut bytes = std::fs::read(&fat).unwrap();
    // 2048 sectors (1 MiB) in a 1 MiB image, then cut the image to 512 KiB.
    bytes.truncate(512 << 10);
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap();
    let e = strata_disk::allocation::free_ranges(&disk, volume).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged);
    assert!(e.to_string().contains("past the end of its volume"), "{e}");
}

/// An MBR entry that starts at sector 0 (the MBR itself) is a damaged table,
/// named as such, not a crash of the crate that parses MBRs.
#[test]
fn an_mbr_partition_at_sector_zero_is_a_damaged_table() {
    let mut bytes = vec![0u8; 1 << 20];
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    bytes[446 + 4] = 0x83;
    bytes[446 + 12..446 + 16].copy_from_slice(&100u32.to_le_bytes());
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let e = scan(&disk).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged);
    assert!(e.to_string().contains("sector 0"), "{e}");
}

/// The metadata hints name what a lookup reads (every directory's blocks,
/// the used part of the inode tables, the superblock) and no file's data,
/// for extent-mapped ext4 and block-mapped ext2 with indirect blocks.
#[test]
fn metadata_ranges_cover_every_directory_and_no_file_data() {
    if !["mkfs.ext4", "debugfs", "dumpe2fs"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    // A folder of long names spans many 1 KiB blocks: past the 12 direct
    // blocks of an ext2 block map, so its indirect block is used too.
    let wide = src.join("wide");
    std::fs::create_dir_all(&wide).unwrap();
    for i in 0..300 {
        std::fs::write(wide.join(format!("{i:04}-a-name-long-enough-to-fill-directory-blocks-quickly")), b"x").unwrap();
    }
    for d in 0..20 {
        let sub = src.join(format!("d{d}/e{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("data"), vec![d as u8; 9000]).unwrap();
    }
    let directories: Vec<String> = {
        let out = Command::new("find").arg(&src).args(["-type", "d", "-printf", "/%P\n"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
    };
    for kind in ["ext4", "ext2"] {
        let image = dir.path().join(format!("{kind}.img"));
        run(&format!("mkfs.ext4 -q -F -t {kind} -b 1024 -d '{}' '{}' 32M", src.display(), image.display()));
        let disk: Rc<dyn Disk> = Rc::new(std::fs::read(&image).unwrap());
        let layout = scan(&disk).unwrap();
        let volume = layout.volume(None).unwrap().clone();
        let metadata = strata_disk::metadata::metadata_ranges(&disk, &volume);
        assert!(metadata.windows(2).all(|w| w[0].end < w[1].start), "{kind}: sorted, merged");
        let covered = |offset: u64| metadata.iter().any(|r| r.start <= offset && offset + 1024 <= r.end);
        let blocks_of = |path: &str| -> Vec<u64> {
            let out = Command::new("debugfs").args(["-R", &format!("blocks \"{path}\"")]).arg(&image).output().unwrap();
            String::from_utf8(out.stdout).unwrap().split_whitespace().map(|b| b.parse().unwrap()).collect()
        };
        let mut directory_blocks = 0;
        for path in &directories {
            for block in blocks_of(path) {
                assert!(covered(block * 1024), "{kind}: block {block} of directory {path} is not in the hints");
                directory_blocks += 1;
            }
        }
        assert!(directory_blocks > 12 + directories.len(), "{kind}: the wide folder spans many blocks");
        for file in ["/etc/deep/er/big.bin", "/d3/e3/data"] {
            for block in blocks_of(file) {
                assert!(!covered(block * 1024), "{kind}: data block {block} of {file} is named as metadata");
            }
        }
        assert!(covered(1024), "{kind}: the superblock");
        let out = Command::new("dumpe2fs").arg(&image).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let table: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Inode table at "))
            .and_then(|l| l.split('-').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(covered(table * 1024), "{kind}: group 0's inode table at block {table}");
    }
}
