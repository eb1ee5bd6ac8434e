//! Damaged file systems made from real ones (mkfs.vfat + mcopy, mkntfs +
//! ntfs-3g, mkfs.ext4 -d + debugfs) by patching the one structure that makes
//! a naive reader loop or read past the image. Each must end in a clear
//! [`Error`] (kind, and words naming what is wrong) within 30 seconds, never a
//! panic, a hang or unbounded memory; then random damage to the same images
//! must never panic either.

mod common;

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use strata_disk::filesystems::walk;
use strata_disk::{open_filesystem, scan, Disk, Error, ErrorKind, FileSystem};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `f`, failing the test if it takes longer than [`LIMIT`].
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    let took = started.elapsed();
    assert!(took < LIMIT, "{what} took {took:?}");
    value
}

/// Peak resident memory of this test process, in MiB (Linux's VmHWM).
fn peak_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).unwrap_or(0) / 1024
}

/// Walks all of `fs` and reads every file: the first error, if any.
fn read_everything(fs: &dyn FileSystem, length: u64) -> Result<(), Error> {
    walk(fs, b"", length, &mut |path, node| {
        if node.kind == strata_disk::NodeKind::File {
            fs.read_file(path, &mut |_| Ok(()))?;
        }
        Ok(true)
    })
}

/// The one file system of the damaged image `bytes`, opened.
fn only_file_system(bytes: Vec<u8>) -> Box<dyn FileSystem> {
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let layout = scan(&disk).unwrap();
    open_filesystem(&disk, layout.volume(None).unwrap()).unwrap()
}

/// Reads `file`: the read must fail as damage, in bounded time; gives the error.
fn reading_fails(fs: &dyn FileSystem, file: &str) -> Error {
    let e = timed("reading the file", || fs.read_file(file.as_bytes(), &mut |_| Ok(()))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    eprintln!("said: {e}");
    e
}

/// The clusters `mshowfat` gives for `path` in `image`: first and last of
/// each run.
fn clusters(image: &Path, path: &str) -> Vec<u32> {
    let text = output(&format!("mshowfat -i {} '::/{path}'", quoted(image)));
    let runs = &text[text.rfind('<').unwrap() + 1..text.rfind('>').unwrap()];
    let mut all = Vec::new();
    for run in runs.split(' ') {
        let (first, last) = run.split_once('-').unwrap_or((run, run));
        all.extend(first.parse::<u32>().unwrap()..=last.parse::<u32>().unwrap());
    }
    all
}

/// Sets cluster `cluster`'s entry to `value` in every FAT of a FAT16 image.
fn set_fat16(bytes: &mut [u8], cluster: u32, value: u16) {
    let le16 = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let (sector, reserved, fats, per_fat) = (le16(11), le16(14), bytes[16] as usize, le16(22));
    for fat in 0..fats {
        let at = (reserved + fat * per_fat) * sector + 2 * cluster as usize;
        bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
}

#[test]
fn a_fat_cluster_chain_that_loops_is_an_error_not_a_hang() {
    if !["mkfs.vfat", "mcopy", "mshowfat", "mmd"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    windows_tree(&src);
    // A folder of many long names spans several clusters.
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..60 {
        std::fs::write(src.join(format!("many/a file with a long name {i}.txt")), b"x").unwrap();
    }
    let image = fat_image(dir.path(), &src, "-F 16 -s 2", 8192);
    let file = "Docs/Deep/er/A long file name with spaces.bin";
    let chain = clusters(&image, file);
    let folder = clusters(&image, "many");
    assert!(chain.len() > 100 && folder.len() > 2, "{chain:?} {folder:?}");
    let mut bytes = std::fs::read(&image).unwrap();
    // The last cluster of each leads back to its first.
    set_fat16(&mut bytes, *chain.last().unwrap(), chain[0] as u16);
    set_fat16(&mut bytes, *folder.last().unwrap(), folder[0] as u16);
    // The image is the volume: no partition table.
    let length = bytes.len() as u64;
    let fs = only_file_system(bytes);
    let e = reading_fails(fs.as_ref(), file);
    let said = e.to_string();
    assert!(said.contains(file) && said.contains("loops") && said.contains("image byte"), "{said}");
    assert!(said.contains(&format!("cluster {} leads back to cluster {}", chain.last().unwrap(), chain[0])), "{said}");
    // The rest of the file system still reads: the listing needs no chain.
    assert_eq!(fs.node(file.as_bytes()).unwrap().size, 300_000);
    assert_eq!(content(fs.as_ref(), "Docs/readme.txt"), b"hello from a FAT or NTFS volume\n");

    let e = timed("listing the folder", || fs.for_each_child(b"many", &mut |_| Ok(()))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    eprintln!("said: {e}");
    assert!(e.to_string().contains("/many") && e.to_string().contains("loops"), "{e}");
    let e = timed("walking everything", || read_everything(fs.as_ref(), length)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    eprintln!("said: {e}");

    // A folder linked below itself: Docs/Deep's entry "er" made to point at
    // Docs's own cluster.
    let mut bytes = std::fs::read(&image).unwrap();
    let le16 = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let sector = le16(&bytes, 11);
    let data_at = (le16(&bytes, 14) + bytes[16] as usize * le16(&bytes, 22)) * sector + le16(&bytes, 17) * 32;
    let cluster_bytes = sector * bytes[13] as usize;
    let (docs, deep) = (clusters(&image, "Docs")[0], clusters(&image, "Docs/Deep")[0]);
    let deep_at = data_at + (deep as usize - 2) * cluster_bytes;
    let slot = (deep_at..deep_at + cluster_bytes).step_by(32).find(|&at| &bytes[at..at + 11] == b"ER         ");
    let slot = slot.expect("the entry of er in Docs/Deep");
    bytes[slot + 26..slot + 28].copy_from_slice(&(docs as u16).to_le_bytes());
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let fs = open_filesystem(&disk, scan(&disk).unwrap().volume(None).unwrap()).unwrap();
    let e = timed("walking a loop", || read_everything(fs.as_ref(), length)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    eprintln!("said: {e}");
    assert!(e.to_string().contains("/Docs/Deep/er") && e.to_string().contains("directory /Docs again"), "{e}");
    assert!(peak_mib() < 1024, "peak memory {} MiB", peak_mib());
}

/// The record of the file named `name` (UTF-16) in an NTFS image, and the
/// offset in it of its `$DATA` attribute's first data run.
fn first_data_run(bytes: &[u8], name: &str) -> (usize, usize) {
    let wanted: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let le16 = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    for record in (0..bytes.len()).step_by(1024) {
        let slice = &bytes[record..record + 1024];
        if &slice[..4] != b"FILE" || !slice.windows(wanted.len()).any(|w| w == wanted) {
            continue;
        }
        let mut at = record + le16(record + 0x14);
        while le32(at) != 0xFFFF_FFFF && at < record + 1024 {
            if le32(at) == 0x80 && bytes[at + 8] == 1 {
                return (record, at + le16(at + 0x20));
            }
            at += le32(at + 4);
        }
    }
    panic!("no record with a non-resident $DATA named {name}");
}

/// Points the data run at `run` to the farthest cluster its offset field
/// can name (32,767 clusters or more: 128 MiB in, past a 16 MiB image).
fn point_past_the_end(bytes: &mut [u8], run: usize) {
    let header = bytes[run];
    let (length_size, offset_size) = ((header & 0x0F) as usize, (header >> 4) as usize);
    assert!(offset_size >= 2, "a first run of {offset_size} offset bytes");
    let at = run + 1 + length_size;
    bytes[at..at + offset_size].fill(0xFF);
    bytes[at + offset_size - 1] = 0x7F;
}

#[test]
fn an_ntfs_data_run_past_the_image_is_an_error() {
    if !["mkntfs", "ntfs-3g", "setfattr"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    windows_tree(&src);
    let Some(image) = ntfs_image(dir.path(), &src, 16) else { return };
    let clean = std::fs::read(&image).unwrap();
    let file = "Docs/Deep/er/A long file name with spaces.bin";

    // A file whose data lies past the image: that file fails, nothing else.
    let mut bytes = clean.clone();
    let (_, run) = first_data_run(&bytes, "A long file name with spaces.bin");
    point_past_the_end(&mut bytes, run);
    let fs = only_file_system(bytes);
    let e = reading_fails(fs.as_ref(), file);
    assert!(e.to_string().contains(file), "{e}");
    assert!(e.to_string().contains("past") || e.to_string().contains("out of bounds"), "{e}");
    assert_eq!(content(fs.as_ref(), "Docs/readme.txt"), b"hello from a FAT or NTFS volume\n");

    // The boot sector's cluster of $MFT past the image: no record can be
    // read, so the file system does not open; it is still recognised.
    let mut bytes = clean.clone();
    bytes[0x30..0x38].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let layout = timed("scanning", || scan(&disk)).unwrap();
    let volume = layout.volume(None).unwrap();
    assert_eq!(volume.filesystem.as_ref().unwrap().used, None);
    let e = timed("opening", || open_filesystem(&disk, volume).map(|_| ())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    eprintln!("said: {e}");
    assert!(e.to_string().contains("ntfs file system"), "{e}");

    // File records of 127 clusters, which the crate would allocate for each
    // record it reads: refused from the boot sector.
    let mut bytes = clean.clone();
    bytes[0x40] = 0x7F;
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let layout = timed("scanning", || scan(&disk)).unwrap();
    let volume = layout.volume(None).unwrap();
    let e = timed("opening", || open_filesystem(&disk, volume).map(|_| ())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    eprintln!("said: {e}");
    assert!(e.to_string().contains("file records of 520192 bytes"), "{e}");
    assert!(peak_mib() < 1024, "peak memory {} MiB", peak_mib());
}

#[test]
fn an_ext4_directory_linked_below_itself_is_an_error_not_a_hang() {
    if !["mkfs.ext4", "debugfs"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/f"), b"hi\n").unwrap();
    let image = dir.path().join("ext4.img");
    run(&format!("mkfs.ext4 -q -F -d {} {} 8M", quoted(&src), quoted(&image)));
    run(&format!("debugfs -w -R 'link /a /a/b/loop' {} 2>/dev/null", quoted(&image)));
    let disk = disk_of(&image);
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap();
    let fs = open_filesystem(&disk, volume).unwrap();
    let e = timed("walking", || read_everything(fs.as_ref(), volume.length)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    eprintln!("said: {e}");
    assert!(e.to_string().contains("linked below itself") && e.to_string().contains("a/b/loop/b/loop"), "{e}");
    assert!(peak_mib() < 1024, "peak memory {} MiB", peak_mib());
}

/// A small deterministic generator (xorshift), so failures repeat.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Damages `clean` at random in `range` `rounds` times and reads all it can,
/// as imaging does (the allocation map and the metadata hints of each
/// volume) and as `cat --image` does (the file system walked and read):
/// errors are expected, panics are not, and each round ends in time.
fn random_damage(clean: &[u8], range: std::ops::Range<usize>, rounds: u64) {
    let started = Instant::now();
    for seed in 1..=rounds {
        let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut bytes = clean.to_vec();
        for _ in 0..1 + random.below(16) {
            let at = range.start + random.below(range.len());
            if random.below(4) == 0 {
                // A field at its largest: an aligned run of 0xFF, so that
                // 32- and 64-bit numbers reach 2^32 - 1 and 2^64 - 1.
                let at = at & !3;
                let end = (at + 4 * (1 + random.below(4))).min(range.end);
                bytes[at..end].fill(0xFF);
            } else {
                bytes[at] = random.below(256) as u8;
            }
        }
        let disk: Rc<dyn Disk> = Rc::new(bytes);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            timed(&format!("round {seed}"), || {
                let Ok(layout) = scan(&disk) else { return };
                for volume in layout.volumes() {
                    let _ = strata_disk::allocation::free_ranges(&disk, volume);
                    let _ = strata_disk::metadata::metadata_ranges(&disk, volume);
                    if let Ok(fs) = open_filesystem(&disk, volume) {
                        let _ = read_everything(fs.as_ref(), volume.length);
                    }
                }
            })
        }));
        assert!(outcome.is_ok(), "round {seed} panicked");
    }
    eprintln!("{rounds} rounds of damage to {range:?} took {:?}", started.elapsed());
}

/// A 2 MiB ext4 image with a few files, 1 KiB blocks (the superblock at
/// 1024, the 64-byte group descriptors from 2048) and no checksums, so that
/// damage is read rather than refused at once; `None` without mkfs.ext4.
fn small_ext4() -> Option<Vec<u8>> {
    if !tool("mkfs.ext4") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"demo\n").unwrap();
    std::fs::write(src.join("numbers"), (1..3000).map(|n| format!("{n}\n")).collect::<String>()).unwrap();
    let image = dir.path().join("ext4.img");
    run(&format!("mkfs.ext4 -q -F -b 1024 -N 64 -O ^metadata_csum,64bit -d {} {} 2M", quoted(&src), quoted(&image)));
    Some(std::fs::read(&image).unwrap())
}

/// Every field of an ext4 superblock and group descriptor table is read from
/// the disk as stored: block numbers up to 2^64 among them.
#[test]
fn random_damage_to_ext4_metadata_never_panics() {
    let Some(clean) = small_ext4() else { return };
    random_damage(&clean, 1024..4096, 400);
}

/// A group descriptor whose bitmaps and inode table lie at block 2^64 - 1
/// (every 64-bit location field all ones): an error, not an overflow.
#[test]
fn ext4_group_tables_at_the_end_of_the_block_space_are_an_error() {
    let Some(mut bytes) = small_ext4() else { return };
    // Group 0's 64-byte descriptor, in the block after the superblock's:
    // the low words of the three locations at 0, 4, 8, the high ones at 0x20.
    for field in [0, 4, 8, 0x20, 0x24, 0x28] {
        bytes[2048 + field..2048 + field + 4].fill(0xFF);
    }
    let disk: Rc<dyn Disk> = Rc::new(bytes);
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap();
    let free = strata_disk::allocation::free_ranges(&disk, volume);
    assert!(free.is_err(), "the bitmap lies outside the volume: {free:?}");
    let _ = strata_disk::metadata::metadata_ranges(&disk, volume);
}

#[test]
fn random_damage_to_fat_and_ntfs_never_panics() {
    if !["mkfs.vfat", "mcopy"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    windows_tree(&src);
    for options in ["-F 12", "-F 32 -s 1"] {
        let kib = if options == "-F 12" { 2048 } else { 40960 };
        let image = fat_image(dir.path(), &src, options, kib);
        let clean = std::fs::read(&image).unwrap();
        // The boot sector, the FATs and the first directories.
        let metadata_end = clean.len().min(if options == "-F 12" { 64 << 10 } else { 1 << 20 });
        // Fewer rounds of the 40 MiB FAT32 image: each copies it.
        random_damage(&clean, 0..metadata_end, if options == "-F 12" { 300 } else { 100 });
    }
    if !["mkntfs", "ntfs-3g", "setfattr"].iter().all(|t| tool(t)) {
        return;
    }
    let ntfs = dir.path().join("ntfs");
    std::fs::create_dir_all(&ntfs).unwrap();
    let Some(image) = ntfs_image(&ntfs, &src, 16) else { return };
    let clean = std::fs::read(&image).unwrap();
    // The MFT's first records (system files, the root and the test's files).
    let mft_lcn = u64::from_le_bytes(clean[0x30..0x38].try_into().unwrap()) as usize;
    let cluster = u16::from_le_bytes([clean[11], clean[12]]) as usize * clean[13] as usize;
    let mft = mft_lcn * cluster;
    random_damage(&clean, mft..mft + 96 * 1024, 300);
    random_damage(&clean, 0..512, 50);
}

/// A disk that reads as zeros but for its first bytes: room for a file
/// system whose superblock claims a terabyte, without the terabyte.
struct MostlyZeros {
    head: Vec<u8>,
    length: u64,
}

impl Disk for MostlyZeros {
    fn len(&self) -> u64 {
        self.length
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.length) {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end"));
        }
        buf.fill(0);
        if let Ok(start) = usize::try_from(offset) {
            if start < self.head.len() {
                let n = buf.len().min(self.head.len() - start);
                buf[..n].copy_from_slice(&self.head[start..start + n]);
            }
        }
        Ok(())
    }
}

/// An ext superblock claiming millions of block groups (a terabyte in
/// groups of 256 blocks): the allocation map is not followed and the
/// volume is imaged whole, without reading or keeping anything per group.
#[test]
fn an_ext_superblock_claiming_millions_of_groups_is_not_followed() {
    let Some(mut head) = small_ext4() else { return };
    head[1024 + 0x04..1024 + 0x08].copy_from_slice(&(1u32 << 30).to_le_bytes()); // s_blocks_count_lo
    head[1024 + 0x20..1024 + 0x24].copy_from_slice(&256u32.to_le_bytes()); // s_blocks_per_group
    let disk: Rc<dyn Disk> = Rc::new(MostlyZeros { head, length: 1 << 40 });
    let before = peak_mib();
    let started = std::time::Instant::now();
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap();
    assert!(matches!(strata_disk::allocation::free_ranges(&disk, volume), Ok(None)));
    assert!(strata_disk::metadata::metadata_ranges(&disk, volume).is_empty());
    assert!(peak_mib() < before + 100, "memory grew from {before} to {} MiB", peak_mib());
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}

/// A real ext4 file system whose free space is in many pieces (files
/// deleted every other one), read with a small maximum: at most that many
/// ranges, each of them free space, the longest kept.
#[test]
fn a_fragmented_free_space_map_is_cut_to_its_longest_ranges() {
    if !["mkfs.ext4", "debugfs"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..60 {
        std::fs::write(src.join(format!("f{i:02}")), vec![0x5Au8; 3000 + i * 1500]).unwrap();
    }
    let image = dir.path().join("ext4.img");
    run(&format!("mkfs.ext4 -q -F -b 1024 -d {} {} 8M", quoted(&src), quoted(&image)));
    for i in (0..60).step_by(2) {
        run(&format!("debugfs -w -R 'rm /f{i:02}' {} >/dev/null 2>&1", quoted(&image)));
    }
    let disk: Rc<dyn Disk> = Rc::new(std::fs::read(&image).unwrap());
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap();
    let all = strata_disk::allocation::free_ranges(&disk, volume).unwrap().unwrap();
    assert!(all.len() > 20, "the deletions left {} free ranges", all.len());
    for max in [2, 5, 12] {
        let kept = strata_disk::allocation::free_ranges_within(&disk, volume, max).unwrap().unwrap();
        assert!(!kept.is_empty() && kept.len() <= max, "max {max}: {} ranges", kept.len());
        for range in &kept {
            assert!(all.iter().any(|r| r.start <= range.start && range.end <= r.end), "{range:?} is not free");
        }
        let longest = all.iter().map(|r| r.end - r.start).max().unwrap();
        assert!(kept.iter().any(|r| r.end - r.start == longest), "max {max}: the longest range was dropped");
    }
}
