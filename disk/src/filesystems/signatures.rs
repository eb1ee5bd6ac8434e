//! File systems recognised by their superblocks: type, label, UUID, size and,
//! where the superblock or allocation table says, bytes in use.
//!
//! Offsets are the documented on-disk layouts (ext4's `struct ext4_super_block`,
//! Microsoft's FAT and exFAT specifications, NTFS's boot sector, XFS's
//! `xfs_sb`, btrfs's `btrfs_super_block`, Linux's swap header). A superblock
//! whose fields are implausible is not recognised: the volume is then shown,
//! and imaged, as unknown bytes.

use std::rc::Rc;

use super::{FsInfo, FsKind};
use crate::{Disk, Error};

/// Reads `n` bytes at `offset` of the volume at `start..start + length`;
/// `None` when they lie outside it.
fn read(disk: &Rc<dyn Disk>, start: u64, length: u64, offset: u64, n: usize) -> Result<Option<Vec<u8>>, Error> {
    if offset.checked_add(n as u64).is_none_or(|end| end > length) {
        return Ok(None);
    }
    let mut buf = vec![0u8; n];
    disk.read_exact_at(start + offset, &mut buf).map_err(|e| Error::io("a superblock", e).at(start + offset))?;
    Ok(Some(buf))
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes")))
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A text field: up to the first NUL, trailing spaces dropped.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim_end().to_string()
}

/// 16 bytes as `blkid` writes a UUID.
fn uuid(b: &[u8]) -> String {
    let hex = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{}-{}-{}-{}-{}", hex(0..4), hex(4..6), hex(6..8), hex(8..10), hex(10..16))
}

/// The file system at `start..start + length` of `disk`, if recognised.
pub(crate) fn detect(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Result<Option<FsInfo>, Error> {
    if let Some(info) = ext(disk, start, length)? {
        return Ok(Some(info));
    }
    if let Some(head) = read(disk, start, length, 0, 512)? {
        if &head[3..11] == b"NTFS    " {
            return Ok(ntfs(&head).map(|mut info| {
                let (label, used) = super::ntfs::label_and_used(disk, start, length);
                info.label = label.unwrap_or_default();
                info.used = used;
                info
            }));
        }
        if &head[3..11] == b"EXFAT   " {
            return Ok(exfat(&head));
        }
        if &head[0..4] == b"XFSB" {
            return Ok(xfs(&head));
        }
        if let Some(info) = fat(disk, start, length, &head)? {
            return Ok(Some(info));
        }
    }
    if let Some(info) = btrfs(disk, start, length)? {
        return Ok(Some(info));
    }
    swap(disk, start, length)
}

fn ext(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Result<Option<FsInfo>, Error> {
    let Some(sb) = read(disk, start, length, 1024, 1024)? else { return Ok(None) };
    if le16(&sb, 0x38) != 0xEF53 || le32(&sb, 0x18) > 6 {
        return Ok(None);
    }
    let block_size = 1024u64 << le32(&sb, 0x18);
    let (compat, incompat) = (le32(&sb, 0x5C), le32(&sb, 0x60));
    let wide = incompat & 0x80 != 0;
    let blocks = le32(&sb, 0x04) | if wide { le32(&sb, 0x150) << 32 } else { 0 };
    let free = le32(&sb, 0x0C) | if wide { le32(&sb, 0x158) << 32 } else { 0 };
    let kind = if incompat & (0x40 | 0x80 | 0x200) != 0 {
        FsKind::Ext4
    } else if compat & 0x4 != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    let size = blocks.saturating_mul(block_size);
    Ok(Some(FsInfo {
        kind,
        label: text(&sb[0x78..0x88]),
        uuid: uuid(&sb[0x68..0x78]),
        size,
        used: (free <= blocks).then(|| (blocks - free).saturating_mul(block_size)),
    }))
}

fn ntfs(head: &[u8]) -> Option<FsInfo> {
    let bytes_per_sector = le16(head, 11);
    if !matches!(bytes_per_sector, 256 | 512 | 1024 | 2048 | 4096) {
        return None;
    }
    let size = le64(head, 40).saturating_mul(bytes_per_sector);
    Some(FsInfo {
        kind: FsKind::Ntfs,
        label: String::new(),
        uuid: format!("{:016X}", le64(head, 72)),
        size,
        used: None,
    })
}

fn exfat(head: &[u8]) -> Option<FsInfo> {
    let shift = head[108];
    if !(9..=12).contains(&shift) {
        return None;
    }
    let serial = le32(head, 100);
    Some(FsInfo {
        kind: FsKind::ExFat,
        label: String::new(),
        uuid: format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF),
        size: le64(head, 72).saturating_mul(1 << shift),
        used: None,
    })
}

fn xfs(head: &[u8]) -> Option<FsInfo> {
    let block_size = be32(head, 4);
    if !(512..=65536).contains(&block_size) || !block_size.is_power_of_two() {
        return None;
    }
    let (blocks, free) = (be64(head, 8), be64(head, 144));
    Some(FsInfo {
        kind: FsKind::Xfs,
        label: text(&head[108..120]),
        uuid: uuid(&head[32..48]),
        size: blocks.saturating_mul(block_size),
        used: (free <= blocks).then(|| (blocks - free).saturating_mul(block_size)),
    })
}

fn btrfs(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Result<Option<FsInfo>, Error> {
    let Some(sb) = read(disk, start, length, 0x10000, 0x300)? else { return Ok(None) };
    if &sb[0x40..0x48] != b"_BHRfS_M" {
        return Ok(None);
    }
    Ok(Some(FsInfo {
        kind: FsKind::Btrfs,
        label: text(&sb[0x12B..0x22B]),
        uuid: uuid(&sb[0x20..0x30]),
        size: le64(&sb, 0x70),
        used: Some(le64(&sb, 0x78)),
    }))
}

fn swap(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Result<Option<FsInfo>, Error> {
    let Some(page) = read(disk, start, length, 0, 4096)? else { return Ok(None) };
    if &page[4086..4096] != b"SWAPSPACE2" {
        return Ok(None);
    }
    Ok(Some(FsInfo {
        kind: FsKind::Swap,
        label: text(&page[1024 + 28..1024 + 44]),
        uuid: uuid(&page[1024 + 12..1024 + 28]),
        size: length,
        used: None,
    }))
}

/// Where a FAT volume keeps what, from its boot sector's BIOS parameter block.
pub(crate) struct FatLayout {
    pub(crate) kind: FsKind,
    pub(crate) bytes_per_sector: u64,
    pub(crate) total_sectors: u64,
    /// Clusters in the data area (numbered from 2).
    pub(crate) clusters: u64,
    /// Byte offset of the first FAT in the volume.
    pub(crate) fat_at: u64,
    /// Byte offset of cluster 2 in the volume.
    pub(crate) data_start: u64,
    pub(crate) cluster_size: u64,
}

/// The layout a FAT boot sector describes, if its fields are plausible; the
/// type follows from the cluster count, as Microsoft's specification says.
pub(crate) fn fat_layout(head: &[u8]) -> Option<FatLayout> {
    let bytes_per_sector = le16(head, 11);
    let sectors_per_cluster = u64::from(head[13]);
    let (reserved, fats, root_entries) = (le16(head, 14), u64::from(head[16]), le16(head, 17));
    let total = if le16(head, 19) != 0 { le16(head, 19) } else { le32(head, 32) };
    let fat_sectors = if le16(head, 22) != 0 { le16(head, 22) } else { le32(head, 36) };
    let plausible = matches!(head[0], 0xEB | 0xE9)
        && head[510..512] == [0x55, 0xAA]
        && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && sectors_per_cluster <= 128
        && reserved >= 1
        && (1..=2).contains(&fats)
        && fat_sectors > 0
        && total > 0;
    if !plausible {
        return None;
    }
    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    let meta_sectors = reserved + fats * fat_sectors + root_sectors;
    let clusters = total.checked_sub(meta_sectors)? / sectors_per_cluster;
    let kind = match clusters {
        0..4085 => FsKind::Fat12,
        4085..65525 => FsKind::Fat16,
        _ => FsKind::Fat32,
    };
    Some(FatLayout {
        kind,
        bytes_per_sector,
        total_sectors: total,
        clusters,
        fat_at: reserved * bytes_per_sector,
        data_start: meta_sectors * bytes_per_sector,
        cluster_size: sectors_per_cluster * bytes_per_sector,
    })
}

/// FAT: label and serial from the boot sector; used bytes are the reserved
/// area, the FATs and root directory, and every cluster the first FAT marks as
/// not free.
fn fat(disk: &Rc<dyn Disk>, start: u64, length: u64, head: &[u8]) -> Result<Option<FsInfo>, Error> {
    let Some(layout) = fat_layout(head) else { return Ok(None) };
    let (id_at, label_at) = if layout.kind == FsKind::Fat32 { (67, 71) } else { (39, 43) };
    let serial = le32(head, id_at);
    let label = text(&head[label_at..label_at + 11]);
    let mut used_clusters = 0u64;
    let counted = for_each_fat_entry(disk, start, length, &layout, layout.kind, &mut |_, value| {
        used_clusters += u64::from(value != 0);
    });
    // A FAT that lies past the volume leaves used bytes unknown, not the volume unrecognised.
    let used = match counted {
        Ok(()) => Some(used_clusters * layout.cluster_size + layout.data_start),
        Err(e) if e.kind() == crate::ErrorKind::Damaged => None,
        Err(e) => return Err(e),
    };
    Ok(Some(FsInfo {
        kind: layout.kind,
        label: if label == "NO NAME" { String::new() } else { label },
        uuid: format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF),
        size: layout.total_sectors * layout.bytes_per_sector,
        used,
    }))
}

/// Calls `visit(cluster, value)` for each cluster 2.. of the data area with its
/// entry in the first FAT (28 bits for FAT32), reading the FAT in pieces.
pub(crate) fn for_each_fat_entry(
    disk: &Rc<dyn Disk>,
    start: u64,
    length: u64,
    layout: &FatLayout,
    kind: FsKind,
    visit: &mut dyn FnMut(u64, u32),
) -> Result<(), Error> {
    // Entries 0 and 1 are reserved; cluster n's entry is entry n.
    let entries = layout.clusters + 2;
    let fat_bytes = match kind {
        FsKind::Fat12 => (entries * 3).div_ceil(2),
        FsKind::Fat16 => entries * 2,
        _ => entries * 4,
    };
    let fat_at = layout.fat_at;
    if fat_at.checked_add(fat_bytes).is_none_or(|end| end > length) {
        return Err(Error::new(crate::ErrorKind::Damaged, "the FAT", "lies past the end of the volume").at(start));
    }
    // Pieces hold whole entries: a multiple of 3 (two FAT12 entries), 2 and 4 bytes.
    const PIECE: u64 = 3 * 4 * 4096;
    let mut at = 0u64;
    let mut buf = Vec::new();
    while at < fat_bytes {
        let n = PIECE.min(fat_bytes - at) as usize;
        buf.resize(n, 0);
        disk.read_exact_at(start + fat_at + at, &mut buf)
            .map_err(|e| Error::io("the FAT", e).at(start + fat_at + at))?;
        let (first_entry, entry_count) = match kind {
            FsKind::Fat12 => (at * 2 / 3, (n as u64 * 2) / 3),
            FsKind::Fat16 => (at / 2, n as u64 / 2),
            _ => (at / 4, n as u64 / 4),
        };
        for i in 0..entry_count {
            let entry = first_entry + i;
            if !(2..entries).contains(&entry) {
                continue;
            }
            let value = match kind {
                FsKind::Fat12 => {
                    let at = (i * 3 / 2) as usize;
                    let pair = u16::from_le_bytes([buf[at], *buf.get(at + 1).unwrap_or(&0)]);
                    if i % 2 == 0 {
                        u32::from(pair & 0x0FFF)
                    } else {
                        u32::from(pair >> 4)
                    }
                }
                FsKind::Fat16 => u32::from(u16::from_le_bytes([buf[2 * i as usize], buf[2 * i as usize + 1]])),
                _ => {
                    let at = 4 * i as usize;
                    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) & 0x0FFF_FFFF
                }
            };
            visit(entry, value);
        }
        at += n as u64;
    }
    Ok(())
}
