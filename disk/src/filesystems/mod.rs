//! Recognising file systems, and reading files out of the ones a crate reads.
//!
//! [`detect`] knows ext2/3/4, FAT12/16/32, NTFS, exFAT, XFS, btrfs and Linux
//! swap by their superblocks (type, label, UUID, size, used bytes where the
//! superblock or allocation table says). [`open_filesystem`] gives a
//! [`FileSystem`] for those whose files can be read here: ext2/3/4 (through
//! ext4-view), FAT12/16/32 (fatfs) and NTFS (ntfs).

mod ext;
mod fat;
pub(crate) mod ntfs;
mod signatures;
mod stream;

use std::rc::Rc;

use crate::{Disk, Error, ErrorKind, Volume};

pub(crate) use signatures::{detect, fat_layout, for_each_fat_entry};

/// A recognised file system type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Fat12,
    Fat16,
    Fat32,
    Ntfs,
    ExFat,
    Xfs,
    Btrfs,
    Swap,
}

impl FsKind {
    /// The name `info` shows, as `blkid` gives it.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Fat12 => "fat12",
            FsKind::Fat16 => "fat16",
            FsKind::Fat32 => "fat32",
            FsKind::Ntfs => "ntfs",
            FsKind::ExFat => "exfat",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "swap",
        }
    }
}

/// What the superblock of a file system says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsInfo {
    /// Its type.
    pub kind: FsKind,
    /// Its label; empty when it has none.
    pub label: String,
    /// Its UUID or serial number, written as `blkid` shows it.
    pub uuid: String,
    /// Size in bytes, as the file system records it.
    pub size: u64,
    /// Bytes in use, when the superblock or allocation table says.
    pub used: Option<u64>,
}

/// The type of a [`Node`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// A file, directory or other node of a file system, with the metadata the
/// file system holds (as far as the crate reading it gives it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its name in its directory; empty for the root.
    pub name: Vec<u8>,
    /// Its type.
    pub kind: NodeKind,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner and group ids (0 where the file system keeps none: FAT, NTFS).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// Content length of a regular file or symbolic link; the directory's
    /// own size for a directory (0 where the file system keeps none).
    pub size: u64,
    /// Modification time: seconds and nanoseconds since 1970 (UTC).
    pub mtime: (i64, u32),
    /// Access time, as `mtime`.
    pub atime: (i64, u32),
    /// Change time, when the crate reading the file system gives it.
    pub ctime: Option<(i64, u32)>,
    /// Creation time, when the file system keeps it.
    pub btime: Option<(i64, u32)>,
    /// A symbolic link's target.
    pub target: Vec<u8>,
    /// What identifies the node within its file system, when the crate
    /// reading it says: an NTFS file record number, a FAT directory's first
    /// cluster. [`walk`] uses it to stop at a directory linked below itself.
    pub id: Option<u64>,
}

/// A file system read through paths: bytes separated by `/`, relative to its
/// root (`""` is the root; a leading `/` is allowed).
pub trait FileSystem {
    /// What its superblock says.
    fn info(&self) -> &FsInfo;

    /// The node at `path`, not following a final symbolic link.
    fn node(&self, path: &[u8]) -> Result<Node, Error>;

    /// Each entry of directory `path` (not `.` or `..`), in the file system's order.
    fn for_each_child(&self, path: &[u8], visit: &mut dyn FnMut(Node) -> Result<(), Error>) -> Result<(), Error>;

    /// The content of the regular file at `path`, front to back, in pieces.
    fn read_file(&self, path: &[u8], piece: &mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Result<(), Error>;
}

/// Opens the file system of `volume` for reading files: ext2/3/4, FAT12/16/32
/// or NTFS; an error of kind [`ErrorKind::Unsupported`] that names the type
/// when it is recognised but its files are not read here (exFAT, XFS, btrfs,
/// swap).
pub fn open_filesystem(disk: &Rc<dyn Disk>, volume: &Volume) -> Result<Box<dyn FileSystem>, Error> {
    let info = volume.filesystem.clone().ok_or_else(|| match &volume.unreadable {
        Some(why) => Error::new(ErrorKind::Io, "file system", format!("its superblock cannot be read: {why}")),
        None => {
            Error::new(ErrorKind::NotFound, "file system", "no recognised file system in this volume").at(volume.start)
        }
    })?;
    match info.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            Ok(Box::new(ext::Ext::open(disk.clone(), volume.start, volume.length, info)?))
        }
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
            Ok(Box::new(fat::Fat::open(disk.clone(), volume.start, volume.length, info)?))
        }
        FsKind::Ntfs => Ok(Box::new(ntfs::Ntfs::open(disk.clone(), volume.start, volume.length, info)?)),
        kind => Err(Error::new(
            ErrorKind::Unsupported,
            format!("{} file system", kind.name()),
            "its files cannot be read yet (its type, label, size and used bytes are shown by `strata info`)",
        )
        .at(volume.start)),
    }
}

/// Directory entries every walk may list, as a multiple of the volume's
/// length in bytes: each entry takes 8 bytes or more in any file system this
/// crate reads, so a walk that lists more has gone round a loop of a damaged
/// file system (a directory linked below itself).
const WALK_ENTRY_BYTES: u64 = 8;

/// The deepest path a walk follows, in bytes (Linux's `PATH_MAX`) and in
/// levels. A walk that goes deeper has most likely gone round a directory
/// linked below itself; the level limit also bounds the cost of such a walk,
/// which grows with the square of the depth (each directory is found from the
/// root by path).
const MAX_WALK_PATH: usize = 4096;
/// See [`MAX_WALK_PATH`].
const MAX_WALK_DEPTH: usize = 512;

/// What [`walk`] calls with each node's path and the node; it returns
/// whether to go into a directory.
pub type Visit<'a> = dyn FnMut(&[u8], &Node) -> Result<bool, Error> + 'a;

/// Walks `fs` from directory `from` depth first, calling `visit` with each
/// node's path (relative to the root, no leading `/`) and the node, a
/// directory before what it holds; `visit` returns whether to go into a
/// directory. Bounded: a walk that lists more entries than the volume could
/// hold (`volume_length` / 8), or goes deeper than 512 levels or 4096
/// bytes of path, stops with an error.
pub fn walk(fs: &dyn FileSystem, from: &[u8], volume_length: u64, visit: &mut Visit<'_>) -> Result<(), Error> {
    let from = trim(from);
    let root = fs.node(from)?;
    let mut budget = volume_length / WALK_ENTRY_BYTES;
    if !visit(from, &root)? || root.kind != NodeKind::Directory {
        return Ok(());
    }
    let mut pending = vec![(from.to_vec(), Rc::new(Ancestry { id: root.id, path: from.to_vec(), parent: None }))];
    while let Some((dir, ancestry)) = pending.pop() {
        let mut children = Vec::new();
        let mut below = Vec::new();
        // Name order, so that listings and extractions come out the same
        // whatever order the file system keeps (ext4's hash order, say); a
        // directory too large to hold in memory is taken in its own order.
        let mut sorted = true;
        let mut take = |node: Node, below: &mut Vec<(Vec<u8>, Rc<Ancestry>)>| -> Result<(), Error> {
            let path = join(&dir, &node.name);
            if !visit(&path, &node)? || node.kind != NodeKind::Directory {
                return Ok(());
            }
            if let Some(above) = node.id.and_then(|id| ancestry.find(id)) {
                return Err(Error::new(
                    ErrorKind::Damaged,
                    format!("/{}", String::from_utf8_lossy(&path)),
                    format!(
                        "it is the directory /{} again: a directory is linked below itself",
                        String::from_utf8_lossy(&above.path)
                    ),
                ));
            }
            let depth = path.iter().filter(|&&b| b == b'/').count() + 1;
            if path.len() >= MAX_WALK_PATH || depth >= MAX_WALK_DEPTH {
                let shown = String::from_utf8_lossy(&path[..path.len().min(120)]).into_owned();
                return Err(Error::new(
                    ErrorKind::Damaged,
                    "directory tree",
                    format!(
                        "/{shown}... goes deeper than {MAX_WALK_DEPTH} levels or {MAX_WALK_PATH} bytes: \
                         a directory is linked below itself (or the tree is deeper than this reader follows)"
                    ),
                ));
            }
            let parent = Some(ancestry.clone());
            below.push((path.clone(), Rc::new(Ancestry { id: node.id, path, parent })));
            Ok(())
        };
        fs.for_each_child(&dir, &mut |node| {
            budget = budget.checked_sub(1).ok_or_else(|| {
                Error::new(
                    ErrorKind::Damaged,
                    "directory tree",
                    "it lists more entries than the volume could hold: a directory is linked below itself",
                )
            })?;
            if sorted && children.len() < MAX_SORTED {
                children.push(node);
                return Ok(());
            }
            if sorted {
                sorted = false;
                for held in children.drain(..) {
                    take(held, &mut below)?;
                }
            }
            take(node, &mut below)
        })?;
        children.sort_by(|a, b| a.name.cmp(&b.name));
        for node in children {
            take(node, &mut below)?;
        }
        pending.extend(below.into_iter().rev());
    }
    Ok(())
}

/// The directories a walk is below, innermost first, with their ids.
struct Ancestry {
    id: Option<u64>,
    path: Vec<u8>,
    parent: Option<Rc<Ancestry>>,
}

impl Ancestry {
    /// The directory with `id` among these, if any.
    fn find(self: &Rc<Self>, id: u64) -> Option<&Ancestry> {
        let mut at = Some(self.as_ref());
        while let Some(a) = at {
            if a.id == Some(id) {
                return Some(a);
            }
            at = a.parent.as_deref();
        }
        None
    }
}

/// Entries of one directory held to be sorted by name; a larger directory
/// is walked in the file system's order.
const MAX_SORTED: usize = 1 << 16;

/// `path` without leading and trailing `/`.
pub(crate) fn trim(mut path: &[u8]) -> &[u8] {
    while let [b'/', rest @ ..] = path {
        path = rest;
    }
    while let [rest @ .., b'/'] = path {
        path = rest;
    }
    path
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        path.extend_from_slice(dir);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}
