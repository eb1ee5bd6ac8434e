//! Where a file system keeps what a lookup reads: its metadata, as hints for
//! used-blocks imaging (`strata create --used-blocks`).
//!
//! Finding one file in an image section reads the file system's superblock,
//! the inode of each path component and each directory's blocks. Stored in
//! large chunks, each of those small reads decodes a large chunk up to the
//! bytes it needs; a writer that cuts the ranges named here into small
//! chunks makes the lookup decode little (`spec/FORMAT.md` 14).
//!
//! These are hints, not facts the archive depends on: a range left out or
//! named wrongly changes how an image is cut into chunks, never what it
//! holds. So a structure that makes no sense ends the scan early instead of
//! failing it, and the scan reads at most [`SCAN_BUDGET`] bytes and keeps at
//! most [`MAX_RANGES`] ranges whatever the file system claims.
//!
//! For ext2/3/4: the superblock and group descriptors, the inode tables'
//! used part, every directory's blocks, and the extent-tree blocks of every
//! inode (a file's extent tree is read before its data). For NTFS: `$MFT`,
//! where every lookup reads a file record per path component (directories'
//! index blocks are not found here). FAT: nothing yet.

use std::ops::Range;
use std::rc::Rc;

use crate::allocation::{le16, le32, ExtGeometry};
use crate::filesystems::FsKind;
use crate::{Disk, Volume};

/// The most bytes of inode tables and tree blocks one scan reads.
pub const SCAN_BUDGET: u64 = 512 << 20;

/// The most ranges one scan keeps (16 bytes each).
pub const MAX_RANGES: usize = 1 << 20;

/// Image byte ranges of the volume's file-system metadata that a lookup
/// reads (sorted, not overlapping, touching ranges merged); empty for file
/// systems this module does not know and for any whose structures it cannot
/// follow. Never an error: these are hints (see the module's documentation).
///
/// ```
/// use std::rc::Rc;
/// use strata_disk::{metadata::metadata_ranges, scan, Disk};
///
/// // A disk with no file system has no metadata to point at.
/// let disk: Rc<dyn Disk> = Rc::new(vec![0u8; 1 << 20]);
/// let layout = scan(&disk).unwrap();
/// let volume = layout.volumes().next().unwrap();
/// assert!(metadata_ranges(&disk, volume).is_empty());
/// ```
pub fn metadata_ranges(disk: &Rc<dyn Disk>, volume: &Volume) -> Vec<Range<u64>> {
    let Some(fs) = &volume.filesystem else { return Vec::new() };
    let mut hints = Hints::default();
    match fs.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => ext_metadata(disk, volume.start, volume.length, &mut hints),
        FsKind::Ntfs => {
            hints.unit = 1;
            for range in crate::filesystems::ntfs::mft_ranges(disk, volume.start, volume.length) {
                hints.add(range);
            }
        }
        _ => {}
    }
    hints.into_image_ranges(volume.start, volume.length)
}

/// Ranges collected in file-system units (blocks), within the budgets.
#[derive(Default)]
struct Hints {
    ranges: Vec<Range<u64>>,
    unit: u64,
    read: u64,
}

impl Hints {
    fn add(&mut self, range: Range<u64>) {
        if range.start < range.end && self.ranges.len() < MAX_RANGES {
            self.ranges.push(range);
        }
    }

    /// Whether `bytes` more may be read; counts them if so.
    fn may_read(&mut self, bytes: u64) -> bool {
        if self.read.saturating_add(bytes) > SCAN_BUDGET {
            return false;
        }
        self.read += bytes;
        true
    }

    fn into_image_ranges(mut self, start: u64, length: u64) -> Vec<Range<u64>> {
        self.ranges.sort_by_key(|r| r.start);
        let mut out: Vec<Range<u64>> = Vec::with_capacity(self.ranges.len());
        for range in self.ranges {
            let from = range.start.saturating_mul(self.unit).min(length);
            let to = range.end.saturating_mul(self.unit).min(length);
            if from >= to {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.end >= start + from => last.end = last.end.max(start + to),
                _ => out.push(start + from..start + to),
            }
        }
        out
    }
}

const EXT_EXTENTS_FL: u64 = 0x8_0000;
const EXT_INLINE_DATA_FL: u64 = 0x1000_0000;
const EXT_EXTENT_MAGIC: u64 = 0xF30A;
/// ext4 extent trees are at most 5 levels deep below the inode.
const EXT_MAX_DEPTH: u64 = 5;

/// ext2/3/4: the superblock and descriptors, the used part of each inode
/// table, and, from each in-use inode, a directory's blocks and the
/// extent-tree blocks below any inode.
fn ext_metadata(disk: &Rc<dyn Disk>, start: u64, length: u64, hints: &mut Hints) {
    let Ok(Some(geometry)) = ExtGeometry::read(disk, start, length) else { return };
    let block_size = geometry.block_size;
    hints.unit = block_size;
    hints.add(0..geometry.first_data_block + 1 + geometry.gdt_blocks);
    let inode_size = geometry.inode_size;
    if inode_size > block_size || !inode_size.is_power_of_two() {
        return;
    }
    let scan = ExtScan { disk, start, geometry: &geometry };
    // Inode tables are read a piece at a time: a group's table may be large.
    let piece = (64 << 10).max(block_size);
    let mut buf = vec![0u8; piece as usize];
    for g in 0..geometry.groups {
        let (_, _, table) = geometry.group_tables(g);
        let in_use = geometry.inodes_in_use(g).min(geometry.inodes_per_group);
        let table_bytes = in_use * inode_size;
        if table_bytes == 0 || !scan.holds(table, table_bytes.div_ceil(block_size)) {
            continue;
        }
        hints.add(table..table + table_bytes.div_ceil(block_size));
        let mut done = 0;
        while done < table_bytes {
            let n = piece.min(table_bytes - done);
            if !hints.may_read(n) {
                return;
            }
            let bytes = &mut buf[..n as usize];
            if disk.read_exact_at(start + table * block_size + done, bytes).is_err() {
                return;
            }
            for inode in bytes.chunks_exact(inode_size as usize) {
                if !scan.inode(inode, hints) {
                    return;
                }
            }
            done += n;
        }
    }
}

struct ExtScan<'a> {
    disk: &'a Rc<dyn Disk>,
    start: u64,
    geometry: &'a ExtGeometry,
}

impl ExtScan<'_> {
    /// Whether blocks `block..block + count` lie inside the file system.
    fn holds(&self, block: u64, count: u64) -> bool {
        block.checked_add(count).is_some_and(|end| end <= self.geometry.blocks)
    }

    /// Adds what one inode points at; false when the budget is spent.
    fn inode(&self, inode: &[u8], hints: &mut Hints) -> bool {
        let (mode, links, flags) = (le16(inode, 0x0), le16(inode, 0x1A), le32(inode, 0x20));
        if mode == 0 || links == 0 || flags & EXT_INLINE_DATA_FL != 0 {
            return true;
        }
        let directory = mode & 0xF000 == 0x4000;
        let i_block = &inode[0x28..0x28 + 60];
        if flags & EXT_EXTENTS_FL != 0 {
            self.extent_node(i_block, EXT_MAX_DEPTH, directory, hints)
        } else if directory {
            self.block_map(i_block, hints)
        } else {
            true
        }
    }

    /// An extent-tree node (the inode's `i_block` or a tree block): its
    /// leaves' blocks when they are a directory's, and the tree blocks below.
    fn extent_node(&self, node: &[u8], depth_left: u64, directory: bool, hints: &mut Hints) -> bool {
        if node.len() < 12 || le16(node, 0) != EXT_EXTENT_MAGIC {
            return true;
        }
        let entries = le16(node, 2).min((node.len() as u64 - 12) / 12);
        let depth = le16(node, 6);
        if depth > depth_left {
            return true;
        }
        for e in 0..entries as usize {
            let entry = &node[12 + 12 * e..24 + 12 * e];
            if depth == 0 {
                if directory {
                    let len = le16(entry, 4);
                    let len = if len > 32768 { len - 32768 } else { len };
                    let at = le32(entry, 8) | (le16(entry, 6) << 32);
                    if self.holds(at, len) {
                        hints.add(at..at + len);
                    }
                }
                continue;
            }
            let at = le32(entry, 4) | (le16(entry, 8) << 32);
            if !self.holds(at, 1) {
                continue;
            }
            hints.add(at..at + 1);
            let Some(block) = self.block(at, hints) else { return false };
            if !self.extent_node(&block, depth - 1, directory, hints) {
                return false;
            }
        }
        true
    }

    /// A directory's blocks in an ext2/3 block map: the direct blocks, and
    /// the indirect blocks with what they point at, three levels deep.
    fn block_map(&self, i_block: &[u8], hints: &mut Hints) -> bool {
        for i in 0..15 {
            let at = le32(i_block, 4 * i);
            if at == 0 || !self.holds(at, 1) {
                continue;
            }
            hints.add(at..at + 1);
            let levels = i.saturating_sub(11) as u32;
            if levels > 0 && !self.indirect(at, levels, hints) {
                return false;
            }
        }
        true
    }

    fn indirect(&self, at: u64, levels: u32, hints: &mut Hints) -> bool {
        let Some(block) = self.block(at, hints) else { return false };
        for pointer in block.chunks_exact(4) {
            let next = le32(pointer, 0);
            if next == 0 || !self.holds(next, 1) {
                continue;
            }
            hints.add(next..next + 1);
            if levels > 1 && !self.indirect(next, levels - 1, hints) {
                return false;
            }
        }
        true
    }

    /// One block, within the budget; `None` when it is spent or the read fails.
    fn block(&self, at: u64, hints: &mut Hints) -> Option<Vec<u8>> {
        let size = self.geometry.block_size;
        if !hints.may_read(size) {
            return None;
        }
        let mut block = vec![0u8; size as usize];
        self.disk.read_exact_at(self.start + at * size, &mut block).ok()?;
        Some(block)
    }
}
