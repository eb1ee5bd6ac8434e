//! Partition tables and file systems inside disk images, read-only.
//!
//! A Strata image section is a disk or a partition, byte for byte. This crate
//! says what it holds ([`scan`]: the partition table, each partition's file
//! system with its label, UUID, size and used bytes) and reads files out of it
//! ([`open_filesystem`]) without restoring the image: one file costs the reads
//! of its metadata and its blocks.
//!
//! Everything reads through [`Disk`], positional reads of an image of known
//! length, so the source can be an archive's image section, a file or memory.
//! Nothing here writes.
//!
//! Files are read from ext2/3/4 (through ext4-view), FAT12/16/32 (fatfs) and
//! NTFS (ntfs); exFAT, XFS, btrfs and swap are recognised only. For
//! used-blocks imaging, [`allocation`] says which bytes a file system leaves
//! free and [`metadata`] where it keeps what a lookup reads.
//!
//! # Bad input
//! Tables and file systems come from images that may be damaged or made to
//! harm: every structure is checked before it is used, reads of partition
//! tables go through a byte budget, FAT and NTFS reads through a budget
//! granted per operation from what it can need (FAT cluster chains are also
//! followed and checked here before fatfs follows them), and walks through
//! directory trees through a budget of entries, a depth limit and a check of
//! each directory against those above it, so no input makes this crate read,
//! allocate or loop without bound. Failures are [`Error`]s that say what,
//! where and why.
//!
//! ```
//! use std::rc::Rc;
//! use strata_disk::{scan, Disk};
//!
//! // An empty 1 MiB disk: no partition table, no file system.
//! let disk: Rc<dyn Disk> = Rc::new(vec![0u8; 1 << 20]);
//! let layout = scan(&disk).unwrap();
//! assert!(layout.partitions.is_empty());
//! assert!(layout.volumes().all(|v| v.filesystem.is_none()));
//! ```

pub mod allocation;
mod error;
pub mod filesystems;
pub mod metadata;
mod partitions;
mod window;

use std::rc::Rc;

pub use error::{Error, ErrorKind};
pub use filesystems::{open_filesystem, FileSystem, FsInfo, FsKind, Node, NodeKind};
pub use partitions::{Partition, TableKind};
pub use window::Window;

/// An image read by position: a disk, a partition, an archive's image section.
pub trait Disk {
    /// Length in bytes.
    fn len(&self) -> u64;

    /// Whether the image is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from byte `offset`; an error if any of it lies past the end
    /// or cannot be read.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Disk for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.as_slice().len());
        match start.and_then(|s| self.get(s..s.checked_add(buf.len())?)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end of the image")),
        }
    }
}

impl Disk for std::fs::File {
    fn len(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// A byte range of a disk that may hold a file system: a partition, or the
/// whole disk when it has no partition table.
#[derive(Clone, Debug)]
pub struct Volume {
    /// The partition, numbered as Linux does (`/dev/sdb2` is 2; logical MBR
    /// partitions from 5); `None` for a whole disk without a partition table.
    pub partition: Option<Partition>,
    /// First byte in the image.
    pub start: u64,
    /// Length in bytes (cut to the image's end).
    pub length: u64,
    /// The file system found there, if recognised.
    pub filesystem: Option<FsInfo>,
    /// Why the volume's superblocks could not be read (a damaged range of
    /// the image), when they could not.
    pub unreadable: Option<String>,
}

impl Volume {
    /// The partition number, if this is a partition.
    pub fn number(&self) -> Option<u32> {
        self.partition.as_ref().map(|p| p.number)
    }
}

/// What a disk image holds.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The kind of partition table.
    pub table: TableKind,
    /// The partitions, in number order (empty without a table).
    pub partitions: Vec<Volume>,
    /// The whole disk as one volume, when it has no partition table (a
    /// partition or file-system image).
    pub whole: Option<Volume>,
}

impl Layout {
    /// Every volume: the partitions, or the whole disk.
    pub fn volumes(&self) -> impl Iterator<Item = &Volume> {
        self.partitions.iter().chain(self.whole.as_ref())
    }

    /// The volume to read files from: partition `number`, or without a
    /// number the only volume with a recognised file system.
    pub fn volume(&self, number: Option<u32>) -> Result<&Volume, Error> {
        match number {
            Some(n) => self.partitions.iter().find(|v| v.number() == Some(n)).ok_or_else(|| {
                let have: Vec<String> =
                    self.partitions.iter().filter_map(|v| v.number()).map(|n| n.to_string()).collect();
                Error::new(
                    ErrorKind::NotFound,
                    format!("partition {n}"),
                    if have.is_empty() {
                        "the image has no partition table".to_string()
                    } else {
                        format!("the image has partitions {}", have.join(", "))
                    },
                )
            }),
            None => {
                let mut with_fs = self.volumes().filter(|v| v.filesystem.is_some());
                match (with_fs.next(), with_fs.next()) {
                    (Some(only), None) => Ok(only),
                    (None, _) => match self.volumes().find_map(|v| v.unreadable.as_ref()) {
                        Some(why) => Err(Error::new(ErrorKind::Io, "file system", format!("none readable: {why}"))),
                        None => Err(Error::new(ErrorKind::NotFound, "file system", "none recognised in the image")),
                    },
                    (Some(_), Some(_)) => {
                        let numbers: Vec<String> = self
                            .volumes()
                            .filter(|v| v.filesystem.is_some())
                            .filter_map(|v| v.number())
                            .map(|n| n.to_string())
                            .collect();
                        Err(Error::new(
                            ErrorKind::NotFound,
                            "file system",
                            format!("several partitions hold one ({}): choose with --partition", numbers.join(", ")),
                        ))
                    }
                }
            }
        }
    }
}

/// Reads the partition table of `disk` (GPT, MBR with extended and logical
/// partitions, or none) and recognises the file system of each volume.
pub fn scan(disk: &Rc<dyn Disk>) -> Result<Layout, Error> {
    // A file system at byte 0 means no partition table, even though a FAT
    // boot sector ends in the same 0x55AA as an MBR.
    if let Some(info) = filesystems::detect(disk, 0, disk.len())? {
        let whole = Volume { partition: None, start: 0, length: disk.len(), filesystem: Some(info), unreadable: None };
        return Ok(Layout { table: TableKind::None, partitions: Vec::new(), whole: Some(whole) });
    }
    let (table, found) = partitions::read(disk)?;
    if table == TableKind::None {
        let whole = Volume { partition: None, start: 0, length: disk.len(), filesystem: None, unreadable: None };
        return Ok(Layout { table, partitions: Vec::new(), whole: Some(whole) });
    }
    let mut volumes = Vec::with_capacity(found.len());
    for partition in found {
        let start = partition.start.min(disk.len());
        let length = partition.length.min(disk.len() - start);
        // A partition whose superblocks cannot be read is shown with why.
        let (filesystem, unreadable) = match filesystems::detect(disk, start, length) {
            Ok(found) => (found, None),
            Err(e) => (None, Some(e.to_string())),
        };
        volumes.push(Volume { partition: Some(partition), start, length, filesystem, unreadable });
    }
    Ok(Layout { table, partitions: volumes, whole: None })
}
