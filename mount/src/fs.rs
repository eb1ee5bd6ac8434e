//! The FUSE operations: inodes to sections and entries, attributes, reads.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, KernelConfig, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyXattr, Request,
};
use strata_format::files::{Entry, EntryKind, Timestamp};
use strata_format::ExtentKind;
use strata_reader::{Archive, Chunk, ChunkCache, Error, ImageSection, ReadAhead, ReadAt, Section, TreeSection};

use crate::table::{valid_name, Node, Table};
use crate::{Damage, DamageLog};

/// Nothing in an archive changes: the kernel may keep what it was told.
const TTL: Duration = Duration::from_secs(3600);
const ROOT: u64 = 1;
/// Regular files whose entries are kept between reads: files read in
/// parallel by the kernel's read-ahead and by several readers.
const FILES_HELD: usize = 1024;
/// Most stored chunks decoded ahead of a reader going through the archive in
/// order (16 MiB of 4 MiB chunks): enough that a reader seldom waits for a
/// decode when the machine is busy, within the chunk cache's budget.
const READ_AHEAD_CHUNKS: usize = 4;

/// An opened archive as a FUSE file system. See the crate docs.
pub struct ArchiveFs<R: ReadAt> {
    archive: Arc<Archive<R>>,
    cache: Arc<ChunkCache>,
    /// Decodes the chunks a sequential reader comes to next.
    ahead: ReadAhead<R>,
    /// Per section in archive order: its name in the root and inode range.
    slots: Vec<Slot>,
    /// Root name → index into `slots`.
    by_name: HashMap<Vec<u8>, usize>,
    /// The entry record read last, parsed: readlink, xattrs and opens of
    /// neighbouring entries hit it.
    record: Mutex<Option<(u64, Arc<Record>)>>,
    /// Regular files read lately: inode → section slot, entry id, whole
    /// entry. Bounded by [`FILES_HELD`]; emptied when full.
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// (inode, start of range) already reported.
    reported: Mutex<HashSet<(u64, u64)>>,
    on_damage: DamageLog,
    uid: u32,
    gid: u32,
}

/// The bytes a read answers with: part of a decoded chunk, or assembled.
enum Bytes {
    Chunk(Arc<Chunk>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Chunk(chunk, range) => &chunk.raw[range.clone()],
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// A parsed entry record: each entry with its byte offset in the body.
type Record = Vec<(u32, Entry)>;

struct Slot {
    name: Vec<u8>,
    /// Position in `archive.sections()`.
    section: usize,
    base: u64,
    /// Inodes taken: 1 for an image, the entry count for a file tree.
    count: u64,
    /// A file tree's root entry as a node, with `nlink` from its table.
    head: OnceLock<Result<Node, String>>,
    table: OnceLock<Result<Arc<Table>, String>>,
}

struct OpenFile {
    slot: usize,
    id: u32,
    entry: Entry,
}

impl<R: ReadAt> std::fmt::Debug for ArchiveFs<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveFs").field("sections", &self.slots.len()).field("cache", &self.cache).finish()
    }
}

/// What an inode is.
enum Inode<'a> {
    Root,
    Image(&'a ImageSection),
    /// A file-tree entry by slot and entry id (a hard link's target for links).
    Tree(usize, u32),
}

/// A recorded time as the kernel takes it (a time `SystemTime` cannot hold,
/// far outside any file system's range, shows as the epoch).
fn time(t: Timestamp) -> SystemTime {
    let after = if t.secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(t.secs.unsigned_abs(), 0))
    } else {
        UNIX_EPOCH.checked_sub(Duration::new(t.secs.unsigned_abs(), 0))
    };
    after.and_then(|s| s.checked_add(Duration::new(0, t.nsec))).unwrap_or(UNIX_EPOCH)
}

fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::File | EntryKind::Hardlink => FileType::RegularFile,
        EntryKind::Directory => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
    }
}

impl<R: ReadAt + Send + 'static> ArchiveFs<R> {
    /// The file system of `archive`, keeping up to `cache_bytes` of decoded
    /// chunks, telling `on_damage` about ranges that cannot be read.
    pub fn new(archive: Archive<R>, cache_bytes: usize, on_damage: DamageLog) -> Self {
        let mut slots = Vec::new();
        let mut by_name = HashMap::new();
        let mut base = ROOT + 1;
        for (index, section) in archive.sections().iter().enumerate() {
            let wanted = section.name().as_bytes().to_vec();
            let name = if valid_name(&wanted) && !by_name.contains_key(&wanted) {
                wanted
            } else {
                let mut name = if valid_name(&wanted) { wanted } else { b"section".to_vec() };
                name.extend_from_slice(format!("~{}", index + 1).as_bytes());
                name
            };
            let count = match section {
                Section::Image(_) => 1,
                // At least the root; a count past u32 is refused when listed.
                Section::Tree(tree) => tree.end.entry_count.clamp(1, u64::from(u32::MAX)),
            };
            by_name.insert(name.clone(), slots.len());
            slots.push(Slot { name, section: index, base, count, head: OnceLock::new(), table: OnceLock::new() });
            base = base.saturating_add(count);
        }
        let (archive, cache) = (Arc::new(archive), Arc::new(ChunkCache::new(cache_bytes)));
        // `tar` and `cp` read one file at a time, and the kernel's own
        // read-ahead already sends a large file's requests in parallel: one
        // worker decodes the chunks such a reader comes to next, up to
        // READ_AHEAD_CHUNKS of them, as far as the cache holds them beside the
        // chunk being read and one more (none without that room).
        let largest_chunk = archive
            .sections()
            .iter()
            .map(|s| match s {
                Section::Image(image) => image.chunk_size as usize,
                Section::Tree(tree) => tree.begin.chunk_size as usize,
            })
            .max()
            .unwrap_or(0);
        let fit = (cache_bytes / largest_chunk.max(1)).saturating_sub(2);
        let workers = usize::from(fit >= 2);
        let ahead = ReadAhead::with_depth(archive.clone(), cache.clone(), workers, fit.min(READ_AHEAD_CHUNKS));
        ArchiveFs {
            archive,
            cache,
            ahead,
            slots,
            by_name,
            record: Mutex::new(None),
            files: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashSet::new()),
            on_damage,
            uid: rustix_ids().0,
            gid: rustix_ids().1,
        }
    }
}

impl<R: ReadAt> ArchiveFs<R> {
    /// The names in the root, in archive order.
    pub fn root_names(&self) -> impl Iterator<Item = &[u8]> {
        self.slots.iter().map(|s| s.name.as_slice())
    }

    /// Reads that answered EIO and damaged ranges told so far.
    pub fn damaged_ranges(&self) -> usize {
        self.reported.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn tree(&self, slot: usize) -> &TreeSection {
        match &self.archive.sections()[self.slots[slot].section] {
            Section::Tree(tree) => tree,
            Section::Image(_) => unreachable!("tree() is called only for slots of file-tree sections"),
        }
    }

    fn resolve(&self, ino: u64) -> Option<Inode<'_>> {
        if ino == ROOT {
            return Some(Inode::Root);
        }
        let at = self.slots.partition_point(|s| s.base <= ino).checked_sub(1)?;
        let slot = &self.slots[at];
        let within = ino - slot.base;
        if within >= slot.count {
            return None;
        }
        Some(match &self.archive.sections()[slot.section] {
            Section::Image(image) => Inode::Image(image),
            Section::Tree(_) => Inode::Tree(at, within as u32),
        })
    }

    fn damage(&self, ino: u64, damage: Damage) {
        let first = self.reported.lock().map(|mut seen| seen.insert((ino, damage.range.start))).unwrap_or(true);
        if first {
            (self.on_damage)(&damage);
        }
    }

    /// The section's table, read on first use.
    fn table(&self, slot: usize) -> Result<Arc<Table>, Errno> {
        let result = self.slots[slot].table.get_or_init(|| {
            let tree = self.tree(slot);
            // Said once, at the section's folder.
            let say = |why: String| {
                let damage = Damage { section: tree.name.clone(), path: Some(".".into()), range: 0..0, why };
                self.damage(self.slots[slot].base, damage);
            };
            let table = Table::load(&self.archive, tree);
            match &table {
                Ok(table) if table.unreachable > 0 => say(format!(
                    "{} entries have no place in the tree (no directory before them, or a name no directory can \
                     hold) and are not shown",
                    table.unreachable
                )),
                Ok(_) => {}
                Err(why) => say(format!("cannot list the section: {why}")),
            }
            table.map(Arc::new)
        });
        result.clone().map_err(|_| Errno::EIO)
    }

    /// A section folder's attributes without listing the section.
    fn head(&self, slot: usize) -> Result<Node, Errno> {
        let result = self.slots[slot].head.get_or_init(|| {
            if let Some(Ok(table)) = self.slots[slot].table.get() {
                return Ok(table.nodes[0].clone());
            }
            let tree = self.tree(slot);
            let read = || -> Result<Node, Error> {
                let handle = self.archive.tree(&tree.name)?;
                let root = handle.root()?;
                let mut subdirs = 0usize;
                for child in handle.read_dir(&root)? {
                    subdirs += usize::from(child?.is_dir());
                }
                // The root is row 0 of the first group (FORMAT.md 8.6).
                let mut node = Node::from_entry(root.raw(), 0, 0, tree.begin.captured);
                node.nlink = 2 + subdirs as u32;
                Ok(node)
            };
            read().map_err(|e| e.to_string())
        });
        result.clone().map_err(|_| Errno::EIO)
    }

    fn node_attr(&self, slot: usize, id: u32, node: &Node) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.slots[slot].base + u64::from(id)),
            size: node.size,
            blocks: match node.kind {
                EntryKind::File | EntryKind::Hardlink => node.stored.div_ceil(512),
                _ => node.size.div_ceil(512),
            },
            atime: time(node.atime),
            mtime: time(node.mtime),
            ctime: time(node.ctime),
            crtime: time(node.mtime),
            kind: file_type(node.kind),
            perm: (node.mode & 0o7777) as u16,
            nlink: node.nlink,
            uid: node.uid,
            gid: node.gid,
            rdev: node.rdev,
            blksize: 4096,
            flags: 0,
        }
    }

    fn image_attr(&self, slot: usize, image: &ImageSection) -> FileAttr {
        let created = time(Timestamp::from_unix_nanos(self.archive.header().created_ns));
        let stored: u64 = image
            .extents
            .iter()
            .filter(|e| !matches!(e.kind(), Ok(ExtentKind::Zero | ExtentKind::Free)))
            .map(|e| e.length)
            .sum();
        FileAttr {
            ino: INodeNo(self.slots[slot].base),
            size: image.logical_size,
            blocks: stored.div_ceil(512),
            atime: created,
            mtime: created,
            ctime: created,
            crtime: created,
            kind: FileType::RegularFile,
            perm: 0o444,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn root_attr(&self) -> FileAttr {
        let created = time(Timestamp::from_unix_nanos(self.archive.header().created_ns));
        let trees = self.slots.iter().filter(|s| self.is_tree(s)).count() as u32;
        FileAttr {
            ino: INodeNo(ROOT),
            size: 0,
            blocks: 0,
            atime: created,
            mtime: created,
            ctime: created,
            crtime: created,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2 + trees,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn is_tree(&self, slot: &Slot) -> bool {
        matches!(self.archive.sections()[slot.section], Section::Tree(_))
    }

    /// Attributes of a section's entry in the root.
    fn slot_attr(&self, slot: usize) -> Result<FileAttr, Errno> {
        match &self.archive.sections()[self.slots[slot].section] {
            Section::Image(image) => Ok(self.image_attr(slot, image)),
            Section::Tree(_) => Ok(self.node_attr(slot, 0, &self.head(slot)?)),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        match self.resolve(ino).ok_or(Errno::ENOENT)? {
            Inode::Root => Ok(self.root_attr()),
            Inode::Image(_) | Inode::Tree(_, 0) => {
                let slot = self.slots.partition_point(|s| s.base <= ino) - 1;
                self.slot_attr(slot)
            }
            Inode::Tree(slot, id) => {
                let table = self.table(slot)?;
                let id = table.inode_of(id);
                let node = table.nodes.get(id as usize).ok_or(Errno::ENOENT)?;
                Ok(self.node_attr(slot, id, node))
            }
        }
    }

    /// The whole entry `id` of the file tree in `slot`, from its record.
    fn entry(&self, slot: usize, node: &Node) -> Result<Entry, String> {
        let tree = self.tree(slot);
        let record = tree.groups.get(node.record as usize).ok_or("no such entry group")?.entries_record;
        let mut held = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let entries = match &*held {
            Some((at, entries)) if *at == record => entries.clone(),
            _ => {
                let entries = Arc::new(self.archive.entries_at(tree, record).map_err(|e| e.to_string())?);
                *held = Some((record, entries.clone()));
                entries
            }
        };
        drop(held);
        // Entries are in body order: one binary search, not a scan per file.
        entries
            .binary_search_by_key(&node.offset, |(at, _)| *at)
            .ok()
            .map(|i| entries[i].1.clone())
            .ok_or_else(|| format!("entry group at byte {record}: no entry at row {}", node.offset))
    }

    /// The node behind a tree inode and its whole entry.
    fn tree_entry(&self, ino: u64) -> Result<(usize, u32, Entry), Errno> {
        match self.resolve(ino).ok_or(Errno::ENOENT)? {
            Inode::Tree(slot, id) => {
                let table = self.table(slot)?;
                let id = table.inode_of(id);
                let node = table.nodes.get(id as usize).ok_or(Errno::ENOENT)?;
                let entry = self.entry(slot, node).map_err(|e| {
                    self.damage(
                        ino,
                        Damage {
                            section: self.tree(slot).name.clone(),
                            path: Some(table.path_of(id)),
                            range: 0..0,
                            why: e,
                        },
                    );
                    Errno::EIO
                })?;
                Ok((slot, id, entry))
            }
            _ => Err(Errno::ENODATA),
        }
    }

    /// Bytes `offset..offset + size` of an open regular file.
    fn read_file(&self, ino: u64, file: &OpenFile, offset: u64, size: u32) -> Result<Bytes, Errno> {
        let entry = &file.entry;
        let end = entry.size.min(offset.saturating_add(u64::from(size)));
        if offset >= end {
            return Ok(Bytes::Owned(Vec::new()));
        }
        let first = entry.extents.partition_point(|e| e.end() <= offset);
        // Most reads lie within one extent: answer from the decoded chunk
        // itself, without a buffer to fill and copy.
        let whole = entry.extents.get(first).filter(|e| e.file_offset <= offset && e.end() >= end).is_some();
        let mut buf = if whole { Vec::new() } else { vec![0u8; (end - offset) as usize] };
        for extent in &entry.extents[first..] {
            if extent.file_offset >= end {
                break;
            }
            let (from, to) = (extent.file_offset.max(offset), extent.end().min(end));
            let fail = |why: String| {
                self.damage(
                    ino,
                    Damage {
                        section: self.tree(file.slot).name.clone(),
                        path: self.table(file.slot).ok().map(|t| t.path_of(file.id)),
                        range: extent.file_offset..extent.end(),
                        why,
                    },
                );
                Errno::EIO
            };
            let chunk = self.cache.chunk_whole(&self.archive, extent.chunk_ref).map_err(|e| fail(e.to_string()))?;
            self.ahead.read_in_record_order(extent.chunk_ref, &chunk);
            let start = extent.chunk_offset as u64 + (from - extent.file_offset);
            let range = usize::try_from(start)
                .ok()
                .map(|start| start..start + (to - from) as usize)
                .filter(|range| range.end <= chunk.raw.len())
                .ok_or_else(|| fail(format!("the extent runs past its chunk's end at byte {}", chunk.raw.len())))?;
            if whole {
                return Ok(Bytes::Chunk(chunk, range));
            }
            buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(&chunk.raw[range]);
        }
        Ok(Bytes::Owned(buf))
    }

    fn read_image(&self, ino: u64, image: &ImageSection, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let end = image.logical_size.min(offset.saturating_add(u64::from(size)));
        if offset >= end {
            return Ok(Vec::new());
        }
        // Lost in salvage reads as zeros in the reader: here it is EIO, as in
        // `strata serve`, so that no one takes the zeros for the image's bytes.
        let mut at = image.extent_at(offset);
        while let Some(index) = at {
            let extent = &image.extents[index];
            if extent.image_offset >= end {
                break;
            }
            if matches!(extent.kind(), Ok(ExtentKind::Lost)) {
                self.damage(
                    ino,
                    Damage {
                        section: image.name.clone(),
                        path: None,
                        range: extent.image_offset..extent.end(),
                        why: "lost in salvage".into(),
                    },
                );
                return Err(Errno::EIO);
            }
            at = (index + 1 < image.extents.len()).then_some(index + 1);
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        match self.cache.read_image_at(&self.archive, image, offset, &mut buf) {
            Ok(n) => {
                self.ahead.image_from(image, end);
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => {
                let range = e.image_range().unwrap_or(offset..end);
                self.damage(ino, Damage { section: image.name.clone(), path: None, range, why: e.to_string() });
                Err(Errno::EIO)
            }
        }
    }

    /// The regular file behind tree inode `ino`, its extents checked to be
    /// in order (else EIO, told to the damage log).
    fn file(&self, ino: u64) -> Result<Arc<OpenFile>, Errno> {
        let held = |files: &HashMap<u64, Arc<OpenFile>>| files.get(&ino).cloned();
        if let Some(file) = self.files.lock().ok().as_deref().and_then(held) {
            return Ok(file);
        }
        let (slot, id, mut entry) = self.tree_entry(ino)?;
        if entry.kind != EntryKind::File {
            return Err(Errno::EINVAL);
        }
        // Its extents, located in the FILES_EXTENTS records (FORMAT.md 10.1 step 5);
        // `file_extents` refuses extents out of order, overlapping or past the size.
        match self.archive.file_extents(self.tree(slot), &entry) {
            Ok(extents) => entry.extents = extents,
            Err(e) => {
                self.damage(
                    ino,
                    Damage {
                        section: self.tree(slot).name.clone(),
                        path: self.table(slot).ok().map(|t| t.path_of(id)),
                        range: 0..0,
                        why: e.to_string(),
                    },
                );
                return Err(Errno::EIO);
            }
        }
        let file = Arc::new(OpenFile { slot, id, entry });
        if let Ok(mut files) = self.files.lock() {
            if files.len() >= FILES_HELD {
                files.clear();
            }
            files.insert(ino, file.clone());
        }
        Ok(file)
    }
}

/// A kernel without POSIX ACL support for FUSE still shows the ACLs as
/// attributes; only modes and owners are then enforced.
fn warn_acls_not_enforced() {
    eprintln!("strata: this kernel does not enforce ACLs on FUSE mounts: access is checked by modes and owners only");
}

/// The real user and group of this process: the owners of the root and images.
fn rustix_ids() -> (u32, u32) {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Where the next data (`SEEK_DATA`) or hole (`SEEK_HOLE`) starts at or after
/// `offset`, over data ranges in order; `None` when there is none (ENXIO).
fn seek(ranges: impl Iterator<Item = (u64, u64)>, size: u64, offset: u64, data: bool) -> Option<u64> {
    if offset >= size {
        return None;
    }
    let mut hole_at = offset;
    for (start, end) in ranges {
        if end <= offset {
            continue;
        }
        if data {
            return Some(start.max(offset));
        }
        if start > hole_at {
            return Some(hole_at);
        }
        hole_at = hole_at.max(end);
    }
    if data {
        None
    } else {
        Some(hole_at.min(size))
    }
}

impl<R: ReadAt + Send + 'static> Filesystem for ArchiveFs<R> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Listings carry attributes: `ls -l` and `find` need no lookup per entry.
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS
                | fuser::InitFlags::FUSE_READDIRPLUS_AUTO
                | fuser::InitFlags::FUSE_PARALLEL_DIROPS,
        );
        // ACLs recorded as `system.posix_acl_*` attributes are enforced by the
        // kernel, not only shown (needs `default_permissions`, which is set).
        if config.add_capabilities(fuser::InitFlags::FUSE_POSIX_ACL).is_err() {
            warn_acls_not_enforced();
        }
        // Sequential readers (tar, cp, qemu-img) are served in fewer, larger
        // requests; the kernel offers its own maximum if this is more.
        if let Err(most) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(most);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        let result = match self.resolve(parent.0) {
            Some(Inode::Root) => match self.by_name.get(name) {
                Some(&slot) => self.slot_attr(slot),
                None => Err(Errno::ENOENT),
            },
            Some(Inode::Tree(slot, dir)) => self.table(slot).and_then(|table| {
                if table.nodes.get(dir as usize).is_none_or(|n| n.kind != EntryKind::Directory) {
                    return Err(Errno::ENOTDIR);
                }
                let child = table.child(dir, name).ok_or(Errno::ENOENT)?;
                let id = table.inode_of(child);
                Ok(self.node_attr(slot, id, &table.nodes[id as usize]))
            }),
            Some(Inode::Image(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        };
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree_entry(ino.0) {
            Ok((_, _, entry)) if entry.kind == EntryKind::Symlink => reply.data(&entry.target),
            Ok(_) | Err(Errno::ENODATA) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS tells the kernel that opening needs nothing from this file
        // system: it stops sending OPEN and RELEASE, two of the three requests
        // a small file costs (the mount is read-only, and the kernel checks
        // permissions itself: `default_permissions`). Reads find the entry by
        // inode.
        reply.error(Errno::ENOSYS)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = match self.resolve(ino.0) {
            Some(Inode::Image(image)) => self.read_image(ino.0, image, offset, size).map(Bytes::Owned),
            Some(Inode::Tree(..)) => self.file(ino.0).and_then(|file| self.read_file(ino.0, &file, offset, size)),
            Some(Inode::Root) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        };
        match result {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // As for files: ENOSYS tells the kernel that opening a directory needs
        // nothing from this file system (FUSE_NO_OPENDIR_SUPPORT), so it sends
        // neither OPENDIR nor RELEASEDIR again: two round trips of the four a
        // small directory costs `tar` or `find`. The kernel then keeps
        // listings in its cache as with FOPEN_CACHE_DIR. A section that cannot
        // be listed fails at READDIR instead (EIO).
        reply.error(Errno::ENOSYS)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let listing = match self.listing(ino.0) {
            Ok(listing) => listing,
            Err(e) => return reply.error(e),
        };
        for (index, item) in listing.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(item.ino), index as u64 + 1, item.kind, OsStr::from_bytes(&item.name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let listing = match self.listing(ino.0) {
            Ok(listing) => listing,
            Err(e) => return reply.error(e),
        };
        for (index, item) in listing.iter().enumerate().skip(offset as usize) {
            let Ok(attr) = self.attr(item.ino) else {
                continue;
            };
            if reply.add(INodeNo(item.ino), index as u64 + 1, OsStr::from_bytes(&item.name), &TTL, &attr, Generation(0))
            {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.slots.last().map_or(1, |s| s.base + s.count);
        reply.statfs(self.archive.size().div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.may_have_xattrs(ino.0) {
            return reply.error(Errno::ENODATA);
        }
        match self.tree_entry(ino.0) {
            Ok((_, _, entry)) => match entry.xattrs.iter().find(|x| x.name == name.as_bytes()) {
                Some(x) => xattr_reply(reply, &x.value, size),
                None => reply.error(Errno::ENODATA),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.may_have_xattrs(ino.0) {
            return xattr_reply(reply, &[], size);
        }
        match self.tree_entry(ino.0) {
            Ok((_, _, entry)) => {
                let mut names = Vec::new();
                for x in &entry.xattrs {
                    names.extend_from_slice(&x.name);
                    names.push(0);
                }
                xattr_reply(reply, &names, size)
            }
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions (default_permissions); only writing is refused here.
        if mask.contains(fuser::AccessFlags::W_OK) {
            reply.error(Errno::EROFS)
        } else {
            reply.ok()
        }
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            // The kernel answers the others itself.
            _ => return reply.error(Errno::EINVAL),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        let found = match self.resolve(ino.0) {
            Some(Inode::Image(image)) => seek(
                image
                    .extents
                    .iter()
                    .filter(|e| !matches!(e.kind(), Ok(ExtentKind::Zero | ExtentKind::Free)))
                    .map(|e| (e.image_offset, e.end())),
                image.logical_size,
                offset,
                data,
            ),
            Some(Inode::Tree(..)) => match self.file(ino.0) {
                Ok(file) => {
                    seek(file.entry.extents.iter().map(|e| (e.file_offset, e.end())), file.entry.size, offset, data)
                }
                Err(e) => return reply.error(e),
            },
            _ => return reply.error(Errno::EINVAL),
        };
        match found {
            Some(at) => reply.offset(at as i64),
            None => reply.error(Errno::ENXIO),
        }
    }
}

/// One name of a directory listing.
struct Item {
    ino: u64,
    kind: FileType,
    name: Vec<u8>,
}

impl<R: ReadAt> ArchiveFs<R> {
    /// `.`, `..` and the children of directory `ino`.
    fn listing(&self, ino: u64) -> Result<Vec<Item>, Errno> {
        let dot = |ino, name: &[u8]| Item { ino, kind: FileType::Directory, name: name.to_vec() };
        match self.resolve(ino).ok_or(Errno::ENOENT)? {
            Inode::Root => {
                let mut items = vec![dot(ROOT, b"."), dot(ROOT, b"..")];
                items.extend(self.slots.iter().map(|slot| Item {
                    ino: slot.base,
                    kind: if self.is_tree(slot) { FileType::Directory } else { FileType::RegularFile },
                    name: slot.name.clone(),
                }));
                Ok(items)
            }
            Inode::Tree(slot, dir) => {
                let table = self.table(slot)?;
                let node = table.nodes.get(dir as usize).ok_or(Errno::ENOENT)?;
                if node.kind != EntryKind::Directory {
                    return Err(Errno::ENOTDIR);
                }
                let base = self.slots[slot].base;
                let parent = if dir == 0 { ROOT } else { base + u64::from(node.parent) };
                let mut items = vec![dot(base + u64::from(dir), b"."), dot(parent, b"..")];
                items.extend(table.children_of(dir).iter().map(|&child| {
                    let node = &table.nodes[child as usize];
                    Item {
                        ino: base + u64::from(table.inode_of(child)),
                        kind: file_type(node.kind),
                        name: node.name.to_vec(),
                    }
                }));
                Ok(items)
            }
            Inode::Image(_) => Err(Errno::ENOTDIR),
        }
    }

    fn may_have_xattrs(&self, ino: u64) -> bool {
        match self.resolve(ino) {
            Some(Inode::Tree(slot, id)) => self.table(slot).is_ok_and(|table| {
                let id = table.inode_of(id);
                table.nodes.get(id as usize).is_some_and(|n| n.has_xattrs)
            }),
            _ => false,
        }
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}

#[cfg(test)]
mod tests {
    use super::seek;

    #[test]
    fn seek_data_and_hole() {
        let ranges = [(0, 10), (20, 30), (30, 40)];
        let data = |at| seek(ranges.iter().copied(), 50, at, true);
        let hole = |at| seek(ranges.iter().copied(), 50, at, false);
        assert_eq!(data(0), Some(0));
        assert_eq!(data(10), Some(20));
        assert_eq!(data(25), Some(25));
        assert_eq!(data(40), None);
        assert_eq!(data(50), None);
        assert_eq!(hole(0), Some(10));
        assert_eq!(hole(15), Some(15));
        assert_eq!(hole(20), Some(40));
        assert_eq!(hole(45), Some(45));
        assert_eq!(hole(50), None);
        assert_eq!(seek([(0, 50)].into_iter(), 50, 0, false), Some(50));
    }
}
