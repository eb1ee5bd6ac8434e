//! Which bytes of a volume its file system uses: the allocation maps behind
//! used-blocks imaging (`strata create --used-blocks`).
//!
//! ext2/3/4 from the block bitmaps (`struct ext4_group_desc`), FAT from the
//! FAT itself, NTFS from `$Bitmap`. A file system whose map is not read here, or whose map cannot
//! be trusted as it stands (an ext4 journal still to replay, layouts this code
//! does not follow), gives `None`: its volume is imaged whole. Every answer
//! errs towards "used": a block wrongly called free would be lost from the
//! image, a block wrongly called used only costs its bytes.

use std::ops::Range;
use std::rc::Rc;

use crate::filesystems::{fat_layout, for_each_fat_entry, FsKind};
use crate::{Disk, Error, ErrorKind, Volume};

/// The most free ranges [`free_ranges`] gives for one volume (16 bytes
/// each: 16 MiB). A file system whose free space is cut into more pieces
/// than this (a worn or a hostile one) keeps its longest free ranges; the
/// shorter ones are imaged as if they were used, which costs their bytes and
/// loses nothing. So memory is bounded here whatever the map claims.
pub const MAX_FREE_RANGES: usize = 1 << 20;

/// Free ranges of the volume's file system, as image byte ranges (sorted, not
/// overlapping), or `None` when its allocation map is not read here. At most
/// [`MAX_FREE_RANGES`] of them.
pub fn free_ranges(disk: &Rc<dyn Disk>, volume: &Volume) -> Result<Option<Vec<Range<u64>>>, Error> {
    free_ranges_within(disk, volume, MAX_FREE_RANGES)
}

/// [`free_ranges`] keeping at most `max_ranges` (at least 2): the longest
/// free ranges when there are more, the others being taken as used.
pub fn free_ranges_within(
    disk: &Rc<dyn Disk>,
    volume: &Volume,
    max_ranges: usize,
) -> Result<Option<Vec<Range<u64>>>, Error> {
    let Some(fs) = &volume.filesystem else { return Ok(None) };
    let mut free = FreeList::new(max_ranges);
    let read = match fs.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => ext_free(disk, volume.start, volume.length, &mut free)?,
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
            fat_free(disk, volume.start, volume.length, fs.kind, &mut free)?
        }
        FsKind::Ntfs => crate::filesystems::ntfs::free_ranges(disk, volume.start, volume.length, &mut free)?,
        _ => false,
    };
    if !read {
        return Ok(None);
    }
    let free = free.finish();
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

/// Free ranges in the order a map gives them, touching ones merged, never
/// more than a maximum: past it, the shortest are dropped (taken as used).
pub(crate) struct FreeList {
    ranges: Vec<Range<u64>>,
    max: usize,
    /// Ranges shorter than this are dropped: 0 until the list first fills.
    shortest: u64,
}

impl FreeList {
    pub(crate) fn new(max: usize) -> Self {
        FreeList { ranges: Vec::new(), max: max.max(2), shortest: 0 }
    }

    /// Adds `start..end`, merging with the last range when they touch.
    pub(crate) fn push(&mut self, start: u64, end: u64) {
        if let Some(last) = self.ranges.last_mut() {
            if last.end == start {
                last.end = end;
                return;
            }
            // The last range can no longer grow: drop it if it is too short.
            if last.end - last.start < self.shortest {
                self.ranges.pop();
            }
        }
        self.ranges.push(start..end);
        if self.ranges.len() > self.max {
            // The last range may still grow: it is judged when it is done.
            let last = self.ranges.pop();
            keep_longest(&mut self.ranges, &mut self.shortest, self.max - 1);
            self.ranges.extend(last);
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Range<u64>> {
        if self.ranges.last().is_some_and(|last| last.end - last.start < self.shortest) {
            self.ranges.pop();
        }
        self.ranges
    }
}

/// Drops the shortest of `ranges` until at most half of `max` are left,
/// raising `shortest` (the length below which a range is dropped) each
/// round. Half, so that a list being filled is not cut again at every push.
fn keep_longest(ranges: &mut Vec<Range<u64>>, shortest: &mut u64, max: usize) {
    let keep = (max / 2).max(1);
    while ranges.len() > keep {
        let least = ranges.iter().map(|r| r.end - r.start).min().unwrap_or(0);
        let most = ranges.iter().map(|r| r.end - r.start).max().unwrap_or(0);
        if least == most {
            // All of one length: the first of them stay.
            ranges.truncate(keep);
            break;
        }
        // Never above the longest: they stay, whatever comes after.
        *shortest = shortest.saturating_mul(2).max(least + 1).min(most);
        let bar = *shortest;
        ranges.retain(|r| r.end - r.start >= bar);
    }
}

/// `ranges` cut to at most `max` (at least 2), keeping the longest: for
/// callers that gather the free ranges of several volumes.
pub fn limit_free_ranges(ranges: &mut Vec<Range<u64>>, max: usize) {
    if ranges.len() > max.max(2) {
        keep_longest(ranges, &mut 0, max.max(2));
    }
}

pub(crate) fn read(
    disk: &Rc<dyn Disk>,
    start: u64,
    length: u64,
    offset: u64,
    n: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
    if offset.checked_add(n as u64).is_none_or(|end| end > length) {
        return Err(Error::new(ErrorKind::Damaged, what, "lies past the end of the volume").at(start + offset));
    }
    let mut buf = vec![0u8; n];
    disk.read_exact_at(start + offset, &mut buf).map_err(|e| Error::io(what, e).at(start + offset))?;
    Ok(buf)
}

pub(crate) fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
pub(crate) fn le32(b: &[u8], at: usize) -> u64 {
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

/// The most ext block groups followed: 128 TiB in 4 KiB blocks.
const MAX_EXT_GROUPS: u64 = 1 << 20;

/// The most bytes of ext group descriptors read (1,048,576 of 64 bytes).
const MAX_EXT_DESCRIPTOR_BYTES: u64 = 64 << 20;

/// What an ext2/3/4 superblock and its group descriptors say about where
/// things are, checked against the volume: shared by the free-space map here
/// and the metadata hints of [`crate::metadata`].
pub(crate) struct ExtGeometry {
    pub block_size: u64,
    pub blocks: u64,
    pub first_data_block: u64,
    pub per_group: u64,
    pub groups: u64,
    pub gdt_blocks: u64,
    pub reserved_gdt: u64,
    pub sparse_super: bool,
    /// `GDT_CSUM` or `METADATA_CSUM`: `bg_itable_unused` and `INODE_UNINIT` can be trusted.
    pub group_checksums: bool,
    pub inode_size: u64,
    pub inodes_per_group: u64,
    pub inode_table_blocks: u64,
    wide: bool,
    desc_size: u64,
    gdt: Vec<u8>,
}

impl ExtGeometry {
    /// Reads the superblock and group descriptors of the ext file system at
    /// `start`; `None` for layouts this crate does not follow (meta_bg,
    /// sparse_super2, a journal still to replay) or values that make no sense.
    pub fn read(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Result<Option<ExtGeometry>, Error> {
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
        // A real ext file system has at most some hundreds of thousands of
        // groups (16 TiB in 4 KiB blocks: 131,072). A superblock claiming
        // more is a layout not followed here (the volume is imaged whole),
        // so that what is read and kept stays bounded whatever it says.
        if groups > MAX_EXT_GROUPS || groups * desc_size > MAX_EXT_DESCRIPTOR_BYTES {
            return Ok(None);
        }
        let gdt_blocks = (groups * desc_size).div_ceil(block_size);
        let gdt = read(
            disk,
            start,
            length,
            (first_data_block + 1) * block_size,
            (groups * desc_size) as usize,
            "ext group descriptors",
        )?;
        // s_inode_size exists from revision 1 on; revision 0 inodes are 128 bytes.
        let inode_size = if le32(&sb, 0x4C) >= 1 { le16(&sb, 0x58).max(128) } else { 128 };
        let inodes_per_group = le32(&sb, 0x28);
        Ok(Some(ExtGeometry {
            block_size,
            blocks,
            first_data_block,
            per_group,
            groups,
            gdt_blocks,
            reserved_gdt: le16(&sb, 0xCE),
            sparse_super: ro_compat & 0x1 != 0,
            group_checksums: ro_compat & (0x10 | 0x400) != 0,
            inode_size,
            inodes_per_group,
            inode_table_blocks: (inodes_per_group * inode_size).div_ceil(block_size),
            wide,
            desc_size,
            gdt,
        }))
    }

    /// Group `g`'s descriptor.
    pub fn desc(&self, g: u64) -> &[u8] {
        &self.gdt[(g * self.desc_size) as usize..((g + 1) * self.desc_size) as usize]
    }

    /// A 64-bit field of a descriptor from its low and high halves.
    fn location(&self, d: &[u8], lo: usize, hi: usize) -> u64 {
        le32(d, lo) | if self.wide && self.desc_size >= 64 { le32(d, hi) << 32 } else { 0 }
    }

    /// Group `g`'s block bitmap, inode bitmap and inode table, as blocks.
    pub fn group_tables(&self, g: u64) -> (u64, u64, u64) {
        let d = self.desc(g);
        (self.location(d, 0x0, 0x20), self.location(d, 0x4, 0x24), self.location(d, 0x8, 0x28))
    }

    /// Group `g`'s `bg_flags`.
    pub fn group_flags(&self, g: u64) -> u64 {
        le16(self.desc(g), 0x12)
    }

    /// How many inodes at the start of group `g`'s table may be in use: all
    /// of them unless the descriptors are checksummed and say fewer.
    pub fn inodes_in_use(&self, g: u64) -> u64 {
        if !self.group_checksums {
            return self.inodes_per_group;
        }
        if self.group_flags(g) & 0x1 != 0 {
            return 0; // INODE_UNINIT
        }
        let d = self.desc(g);
        let unused = le16(d, 0x1C) | if self.desc_size >= 64 { le16(d, 0x32) << 16 } else { 0 };
        self.inodes_per_group.saturating_sub(unused)
    }
}

/// ext2/3/4: a block is free when its group's bitmap says so; a group whose
/// bitmap was never written (`BLOCK_UNINIT`) holds nothing but metadata.
fn ext_free(disk: &Rc<dyn Disk>, start: u64, length: u64, free: &mut FreeList) -> Result<bool, Error> {
    let Some(geometry) = ExtGeometry::read(disk, start, length)? else { return Ok(false) };
    let ExtGeometry { block_size, blocks, first_data_block, per_group, groups, gdt_blocks, reserved_gdt, .. } =
        geometry;
    let (sparse_super, inode_table_blocks) = (geometry.sparse_super, geometry.inode_table_blocks);
    // Every group's bitmaps and inode table, wherever they are (flex_bg puts
    // them together): used, even in a group whose bitmap is not written.
    let mut metadata: Vec<Range<u64>> = Vec::with_capacity(3 * groups as usize);
    for g in 0..groups {
        let (block_bitmap, inode_bitmap, table) = geometry.group_tables(g);
        // Block numbers come from the descriptors as stored: a damaged one
        // may lie anywhere up to 2^64, and only what falls inside a group counts.
        metadata.push(block_bitmap..block_bitmap.saturating_add(1));
        metadata.push(inode_bitmap..inode_bitmap.saturating_add(1));
        metadata.push(table..table.saturating_add(inode_table_blocks));
    }
    metadata.sort_by_key(|r| r.start);
    let mut bitmap = vec![0u8; block_size as usize];
    for g in 0..groups {
        let first = first_data_block + g * per_group;
        let count = per_group.min(blocks - first);
        let uninit = geometry.group_flags(g) & 0x2 != 0;
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
                    free.push(cursor * block_size, used.start.min(end) * block_size);
                }
                cursor = cursor.max(used.end);
            }
            if cursor < end {
                free.push(cursor * block_size, end * block_size);
            }
            continue;
        }
        let (at, _, _) = geometry.group_tables(g);
        if at.checked_mul(block_size).is_none_or(|o| o.saturating_add(block_size) > length) {
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
                free.push(block * block_size, (block + 1) * block_size);
            }
        }
    }
    Ok(true)
}

/// FAT: a cluster is free when its FAT entry is 0.
fn fat_free(disk: &Rc<dyn Disk>, start: u64, length: u64, kind: FsKind, free: &mut FreeList) -> Result<bool, Error> {
    let head = read(disk, start, length, 0, 512, "FAT boot sector")?;
    let Some(layout) = fat_layout(&head) else { return Ok(false) };
    for_each_fat_entry(disk, start, length, &layout, kind, &mut |cluster, value| {
        if value == 0 {
            let at = layout.data_start + (cluster - 2) * layout.cluster_size;
            free.push(at, at + layout.cluster_size);
        }
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map in more pieces than the list may hold, with pieces of every
    /// length: the list never holds more than its maximum, and what it keeps
    /// is free (each kept range lies inside one of the map's free ranges),
    /// with the longest pieces among it.
    #[test]
    fn a_free_list_past_its_maximum_keeps_its_longest_free_ranges() {
        for max in [2usize, 3, 16, 64, 1000] {
            let mut list = FreeList::new(max);
            let mut map = Vec::new();
            let mut at = 0u64;
            let mut most = 0usize;
            for i in 0..20_000u64 {
                // Lengths that go up and down; pushed block by block, as maps are read.
                let length = 1 + (i * 7919) % 97;
                for block in at..at + length {
                    list.push(block, block + 1);
                }
                map.push(at..at + length);
                at += length + 1 + i % 3;
                most = most.max(list.ranges.len());
            }
            let kept = list.finish();
            assert!(most <= max && kept.len() <= max, "max {max}: held {most}, kept {}", kept.len());
            assert!(kept.windows(2).all(|w| w[0].end < w[1].start), "sorted and apart");
            for range in &kept {
                assert!(map.iter().any(|m| m.start <= range.start && range.end <= m.end), "{range:?} is not free");
            }
            let longest = map.iter().map(|r| r.end - r.start).max().unwrap();
            assert!(kept.iter().any(|r| r.end - r.start == longest), "max {max}: the longest range was dropped");
        }
    }

    /// Below its maximum a list keeps every range, merged where they touch.
    #[test]
    fn a_free_list_within_its_maximum_keeps_everything() {
        let mut list = FreeList::new(8);
        for (start, end) in [(0, 4), (4, 8), (10, 11), (20, 30), (30, 31)] {
            list.push(start, end);
        }
        assert_eq!(list.finish(), vec![0..8, 10..11, 20..31]);
        let mut ranges: Vec<Range<u64>> = (0..100u64).map(|i| i * 10..i * 10 + 1 + i % 5).collect();
        limit_free_ranges(&mut ranges, 10);
        assert!(ranges.len() <= 10 && ranges.iter().all(|r| r.end - r.start == 5), "{ranges:?}");
    }
}
