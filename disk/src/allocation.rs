//! Which bytes of a volume its file system uses: the allocation maps behind
//! used-blocks imaging (`strata create --used-blocks`).
//!
//! ext2/3/4 from the block bitmaps (`struct ext4_group_desc`), FAT from the
//! FAT itself. A file system whose map is not read here, or whose map cannot
//! be trusted as it stands (an ext4 journal still to replay, layouts this code
//! does not follow), gives `None`: its volume is imaged whole. Every answer
//! errs towards "used": a block wrongly called free would be lost from the
//! image, a block wrongly called used only costs its bytes.

use std::ops::Range;
use std::rc::Rc;

use crate::filesystems::{fat_layout, for_each_fat_entry, FsKind};
use crate::{Disk, Error, ErrorKind, Volume};

/// Free ranges of the volume's file system, as image byte ranges (sorted, not
/// overlapping), or `None` when its allocation map is not read here.
pub fn free_ranges(disk: &Rc<dyn Disk>, volume: &Volume) -> Result<Option<Vec<Range<u64>>>, Error> {
    let Some(fs) = &volume.filesystem else { return Ok(None) };
    let ranges = match fs.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => ext_free(disk, volume.start, volume.length)?,
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => fat_free(disk, volume.start, volume.length, fs.kind)?,
        _ => None,
    };
    let Some(free) = ranges else { return Ok(None) };
    // A map that names bytes past its volume describes some other volume: a
    // superblock that claims more than its partition holds.
    if free.last().is_some_and(|r| r.end > volume.length) {
        return Err(Error::new(
            ErrorKind::Damaged,
            format!("{} allocation map", fs.kind.name()),
            "it describes blocks past the end of its volume (the file system claims more than the partition holds)",
        )
        .at(volume.start));
    }
    Ok(Some(free.into_iter().map(|r| volume.start + r.start..volume.start + r.end).collect()))
}

/// Adds `start..end` to `ranges`, merging with the last when they touch.
fn push(ranges: &mut Vec<Range<u64>>, start: u64, end: u64) {
    match ranges.last_mut() {
        Some(last) if last.end == start => last.end = end,
        _ => ranges.push(start..end),
    }
}

fn read(disk: &Rc<dyn Disk>, start: u64, length: u64, offset: u64, n: usize, what: &str) -> Result<Vec<u8>, Error> {
    if offset.checked_add(n as u64).is_none_or(|end| end > length) {
        return Err(Error::new(ErrorKind::Damaged, what, "lies past the end of the volume").at(start + offset));
    }
    let mut buf = vec![0u8; n];
    disk.read_exact_at(start + offset, &mut buf).map_err(|e| Error::io(what, e).at(start + offset))?;
    Ok(buf)
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")))
}

/// Whether ext group `group` holds a superblock backup and group descriptors.
fn has_backup(group: u64, sparse_super: bool) -> bool {
    if !sparse_super || group <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut power = base;
        while power < group {
            power = power.saturating_mul(base);
        }
        power == group
    })
}

/// ext2/3/4: a block is free when its group's bitmap says so; a group whose
/// bitmap was never written (`BLOCK_UNINIT`) holds nothing but metadata.
fn ext_free(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Result<Option<Vec<Range<u64>>>, Error> {
    let sb = read(disk, start, length, 1024, 1024, "ext superblock")?;
    let block_size = 1024u64 << le32(&sb, 0x18).min(6);
    let (compat, incompat, ro_compat) = (le32(&sb, 0x5C), le32(&sb, 0x60), le32(&sb, 0x64));
    let wide = incompat & 0x80 != 0;
    // needs_recovery: the journal holds changes the bitmaps do not show yet.
    // meta_bg and sparse_super2 place descriptors and backups elsewhere.
    if incompat & (0x4 | 0x10) != 0 || compat & 0x200 != 0 {
        return Ok(None);
    }
    let blocks = le32(&sb, 0x04) | if wide { le32(&sb, 0x150) << 32 } else { 0 };
    let first_data_block = le32(&sb, 0x14);
    let per_group = le32(&sb, 0x20);
    let desc_size = if wide { le16(&sb, 0xFE).max(32) } else { 32 };
    if per_group == 0 || per_group > 8 * block_size || blocks <= first_data_block || desc_size > 1024 {
        return Ok(None);
    }
    if blocks.saturating_mul(block_size) > length {
        return Err(Error::new(ErrorKind::Damaged, "ext superblock", "the file system is larger than its volume")
            .at(start + 1024));
    }
    let groups = (blocks - first_data_block).div_ceil(per_group);
    let gdt_blocks = (groups * desc_size).div_ceil(block_size);
    let reserved_gdt = le16(&sb, 0xCE);
    let sparse_super = ro_compat & 0x1 != 0;
    let gdt = read(
        disk,
        start,
        length,
        (first_data_block + 1) * block_size,
        (groups * desc_size) as usize,
        "ext group descriptors",
    )?;
    let desc = |g: u64| &gdt[(g * desc_size) as usize..((g + 1) * desc_size) as usize];
    let location =
        |d: &[u8], lo: usize, hi: usize| le32(d, lo) | if wide && desc_size >= 64 { le32(d, hi) << 32 } else { 0 };
    // s_inode_size exists from revision 1 on; revision 0 inodes are 128 bytes.
    let inode_size = if le32(&sb, 0x4C) >= 1 { le16(&sb, 0x58).max(128) } else { 128 };
    let inode_table_blocks = (le32(&sb, 0x28) * inode_size).div_ceil(block_size);
    // Every group's bitmaps and inode table, wherever they are (flex_bg puts
    // them together): used, even in a group whose bitmap is not written.
    let mut metadata: Vec<Range<u64>> = Vec::with_capacity(3 * groups as usize);
    for g in 0..groups {
        let d = desc(g);
        metadata.push(location(d, 0x0, 0x20)..location(d, 0x0, 0x20) + 1);
        metadata.push(location(d, 0x4, 0x24)..location(d, 0x4, 0x24) + 1);
        let table = location(d, 0x8, 0x28);
        metadata.push(table..table + inode_table_blocks);
    }
    metadata.sort_by_key(|r| r.start);
    let mut free = Vec::new();
    let mut bitmap = vec![0u8; block_size as usize];
    for g in 0..groups {
        let d = desc(g);
        let first = first_data_block + g * per_group;
        let count = per_group.min(blocks - first);
        let uninit = le16(d, 0x12) & 0x2 != 0;
        if uninit {
            // Free except its backup superblock and descriptors and any
            // group's bitmaps and inode table placed in it.
            let mut at = first;
            if has_backup(g, sparse_super) {
                at += 1 + gdt_blocks + reserved_gdt;
            }
            let end = first + count;
            let inside = metadata.iter().filter(|r| r.start < end && r.end > at);
            let mut cursor = at;
            for used in inside {
                if used.start > cursor {
                    push(&mut free, cursor * block_size, used.start.min(end) * block_size);
                }
                cursor = cursor.max(used.end);
            }
            if cursor < end {
                push(&mut free, cursor * block_size, end * block_size);
            }
            continue;
        }
        let at = location(d, 0x0, 0x20);
        if at.checked_mul(block_size).is_none_or(|o| o + block_size > length) {
            return Err(Error::new(
                ErrorKind::Damaged,
                "ext block bitmap",
                format!("group {g}'s lies outside the volume"),
            ));
        }
        disk.read_exact_at(start + at * block_size, &mut bitmap)
            .map_err(|e| Error::io(format!("ext block bitmap of group {g}"), e).at(start + at * block_size))?;
        for bit in 0..count {
            if bitmap[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                let block = first + bit;
                push(&mut free, block * block_size, (block + 1) * block_size);
            }
        }
    }
    Ok(Some(free))
}

/// FAT: a cluster is free when its FAT entry is 0.
fn fat_free(disk: &Rc<dyn Disk>, start: u64, length: u64, kind: FsKind) -> Result<Option<Vec<Range<u64>>>, Error> {
    let head = read(disk, start, length, 0, 512, "FAT boot sector")?;
    let Some(layout) = fat_layout(&head) else { return Ok(None) };
    let mut free = Vec::new();
    for_each_fat_entry(disk, start, length, &layout, kind, &mut |cluster, value| {
        if value == 0 {
            let at = layout.data_start + (cluster - 2) * layout.cluster_size;
            push(&mut free, at, at + layout.cluster_size);
        }
    })?;
    Ok(Some(free))
}
