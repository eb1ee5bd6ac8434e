//! GPT and MBR partition tables, through gptman and mbrman, within a read budget.

use std::rc::Rc;

use crate::{Disk, Error, ErrorKind, Window};

/// The kind of partition table an image has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// GUID partition table (with its protective MBR).
    Gpt,
    /// MBR (DOS) table, with extended and logical partitions.
    Mbr,
    /// None: the image is one partition or file system, or holds nothing known.
    None,
}

impl TableKind {
    /// The name `info` shows.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Gpt => "GPT",
            TableKind::Mbr => "MBR",
            TableKind::None => "none",
        }
    }
}

/// One partition of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Its number as Linux gives it (`/dev/sdb2` is 2; MBR logical partitions from 5).
    pub number: u32,
    /// First byte in the image.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// The type: a GPT type GUID (with its common name when known) or an MBR type byte.
    pub type_name: String,
    /// A GPT partition's name; empty for MBR.
    pub name: String,
    /// A GPT partition's unique GUID; empty for MBR.
    pub uuid: String,
}

/// What any valid table needs read: the MBR, the GPT header and up to 128 KiB
/// of GPT entries (a standard table is 16 KiB), both copies, and at most
/// [`MAX_LOGICAL`] extended boot records.
const TABLE_READ_BUDGET: u64 = 1 << 20;

/// Logical partitions followed in an extended partition's chain (Linux reads
/// up to 256 partitions in all).
const MAX_LOGICAL: usize = 252;

/// Reads the partition table of `disk`, if any.
pub(crate) fn read(disk: &Rc<dyn Disk>) -> Result<(TableKind, Vec<Partition>), Error> {
    let mut mbr = [0u8; 512];
    if disk.len() < 512 {
        return Ok((TableKind::None, Vec::new()));
    }
    disk.read_exact_at(0, &mut mbr).map_err(|e| Error::io("the master boot record", e).at(0))?;
    // A GPT header at LBA 1 counts even without its protective MBR (some
    // tools leave it out, and a damaged one should not hide the table).
    let mut signature = [0u8; 8];
    for sector_size in [512u64, 4096] {
        if disk.len() >= sector_size + 8 {
            disk.read_exact_at(sector_size, &mut signature)
                .map_err(|e| Error::io("the GPT header", e).at(sector_size))?;
            if &signature == b"EFI PART" {
                return gpt(disk).map(|p| (TableKind::Gpt, p));
            }
        }
    }
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok((TableKind::None, Vec::new()));
    }
    let types: Vec<u8> = (0..4).map(|i| mbr[446 + 16 * i + 4]).collect();
    if types.contains(&0xEE) {
        return gpt(disk).map(|p| (TableKind::Gpt, p));
    }
    // Each entry's boot flag is 0x00 or 0x80 in a real table; anything else
    // is boot code or another structure that happens to end in 0x55AA.
    let plausible = (0..4).all(|i| matches!(mbr[446 + 16 * i], 0x00 | 0x80));
    if !plausible || types.iter().all(|&t| t == 0) {
        return Ok((TableKind::None, Vec::new()));
    }
    // A partition cannot start at LBA 0, the MBR itself (mbrman 0.6 panics
    // on one, finding no alignment): refused here first.
    if let Some(i) = (0..4).find(|&i| types[i] != 0 && mbr[446 + 16 * i + 8..446 + 16 * i + 12] == [0; 4]) {
        return Err(
            damaged("MBR", format!("partition {} starts at sector 0, the MBR itself", i + 1)).at(446 + 16 * i as u64)
        );
    }
    mbr_partitions(disk).map(|p| (TableKind::Mbr, p))
}

fn damaged(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Damaged, what, e.to_string())
}

fn gpt(disk: &Rc<dyn Disk>) -> Result<Vec<Partition>, Error> {
    let mut last = None;
    // The sector size is not written anywhere: the header is at LBA 1 of
    // whichever size the disk was made with.
    for sector_size in [512u64, 4096] {
        let mut window = Window::new(disk.clone(), 0, disk.len()).with_budget(TABLE_READ_BUDGET);
        match gptman::GPT::read_from(&mut window, sector_size) {
            Ok(table) => {
                let mut found = Vec::new();
                for (number, entry) in table.iter().filter(|(_, e)| e.is_used()) {
                    let sectors =
                        entry.ending_lba.checked_sub(entry.starting_lba).and_then(|n| n.checked_add(1)).ok_or_else(
                            || damaged("GPT partition entry", format!("partition {number} ends before it starts")),
                        )?;
                    let bytes = |lba: u64| lba.checked_mul(sector_size);
                    let (Some(start), Some(length)) = (bytes(entry.starting_lba), bytes(sectors)) else {
                        return Err(damaged(
                            "GPT partition entry",
                            format!("partition {number} lies beyond 2^64 bytes"),
                        ));
                    };
                    found.push(Partition {
                        number,
                        start,
                        length,
                        type_name: gpt_type_name(&entry.partition_type_guid),
                        name: entry.partition_name.as_str().to_string(),
                        uuid: guid(&entry.unique_partition_guid),
                    });
                }
                return Ok(found);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(damaged("GPT", last.map_or_else(|| "unreadable".to_string(), |e| e.to_string())).at(512))
}

fn mbr_partitions(disk: &Rc<dyn Disk>) -> Result<Vec<Partition>, Error> {
    let budget = 4096 + 1024 * MAX_LOGICAL as u64;
    let mut window = Window::new(disk.clone(), 0, disk.len()).with_budget(budget);
    let table = mbrman::MBR::read_from(&mut window, 512).map_err(|e| damaged("MBR", e).at(0))?;
    if table.logical_partitions.len() > MAX_LOGICAL {
        return Err(damaged("MBR extended partition", format!("more than {MAX_LOGICAL} logical partitions")));
    }
    let mut found = Vec::new();
    for (number, entry) in table.iter().filter(|(_, e)| e.is_used()) {
        // The extended partition is a container, not a volume.
        if matches!(entry.sys, 0x05 | 0x0F | 0x85) {
            continue;
        }
        found.push(Partition {
            number: number as u32,
            start: u64::from(entry.starting_lba) * 512,
            length: u64::from(entry.sectors) * 512,
            type_name: format!("0x{:02x} {}", entry.sys, mbr_type_name(entry.sys)),
            name: String::new(),
            uuid: String::new(),
        });
    }
    Ok(found)
}

/// A GUID as text (mixed-endian, as GPT stores it).
fn guid(bytes: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        u16::from_le_bytes([bytes[4], bytes[5]]),
        u16::from_le_bytes([bytes[6], bytes[7]]),
        bytes[8],
        bytes[9],
        bytes[10..].iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn gpt_type_name(type_guid: &[u8; 16]) -> String {
    let text = guid(type_guid);
    let known = match text.as_str() {
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" => "EFI system",
        "21686148-6449-6e6f-744e-656564454649" => "BIOS boot",
        "0fc63daf-8483-4772-8e79-3d69d8477de4" => "Linux file system",
        "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f" => "Linux swap",
        "e6d6d379-f507-44c2-a23c-238f2a3df928" => "Linux LVM",
        "a19d880f-05fc-4d3b-a006-743f0f84911e" => "Linux RAID",
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709" => "Linux root (x86-64)",
        "933ac7e1-2eb4-4f13-b844-0e14e2aef915" => "Linux home",
        "bc13c2ff-59e6-4262-a352-b275fd6f7172" => "Linux extended boot",
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7" => "Microsoft basic data",
        "e3c9e316-0b5c-4db8-817d-f92df00215ae" => "Microsoft reserved",
        "de94bba4-06d1-4d40-a16a-bfd50179d6ac" => "Windows recovery",
        _ => "",
    };
    if known.is_empty() {
        text
    } else {
        format!("{text} ({known})")
    }
}

fn mbr_type_name(sys: u8) -> &'static str {
    match sys {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0E => "FAT16",
        0x07 => "NTFS/exFAT",
        0x0B | 0x0C => "FAT32",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8E => "Linux LVM",
        0xEF => "EFI system",
        0xFD => "Linux RAID",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_read_as_gpt_writes_them() {
        let efi = [0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b];
        assert_eq!(gpt_type_name(&efi), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b (EFI system)");
    }
}
