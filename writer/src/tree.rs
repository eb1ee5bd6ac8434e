//! File-tree sections: walks a folder in the entry order of `spec/FORMAT.md`
//! section 8 (each directory's children one run, sorted by name) and writes
//! its entries in groups, their content as file extents into the shared chunk
//! store (small files packed together, holes kept as holes), and at the end
//! one `FILES_DIR` per group holding a directory and the `FILES_INDEX`.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};
use strata_format::files::{
    self, Captured, Entry, EntryFlags, EntryKind, ExtentListRow, Fence, FileDigest, FileExtent, FilesBegin, FilesEnd,
    GroupDir, GroupHead, GroupRow, Locator, Timestamp, Xattr, DIGEST_LEN, EMPTY_DIGEST, NO_PARENT,
};
use strata_format::RecordType;

use crate::archive::{ArchiveWriter, ChunkTally, SectionState, SectionTables};
use crate::chunker::{prepare_chunk, PreparedChunk};
use crate::{Progress, WriteError};

/// What to leave out of a tree, and what to record of what is in it.
#[derive(Clone, Debug)]
pub struct TreeOptions {
    /// Glob patterns: a pattern with a `/` is matched against the path relative to
    /// the tree's root, one without against the entry's name (as `tar --exclude`).
    pub excludes: Vec<String>,
    /// Do not descend into directories on another file system than the root's.
    pub one_file_system: bool,
    /// Files to skip by (device, inode): the archive being written, for one.
    pub skip_inodes: Vec<(u64, u64)>,
    /// Which `Captured` bits to record (owner names, xattrs, atime, ctime, birth
    /// time, holes, source identity); what is left out is recorded as not
    /// captured. The default records them all.
    pub capture: u64,
    /// Record every entry as owned by this uid and gid, like `tar --owner --group`.
    pub fixed_owner: Option<(u32, u32)>,
    /// Leave out the contents of folders marked as caches by a `CACHEDIR.TAG`
    /// file (bford.info/cachedir), keeping the folder and the tag itself, as
    /// `tar --exclude-caches` and borg do.
    pub exclude_caches: bool,
    /// The parent's files of an incremental archive (`spec/FORMAT.md` 15.5):
    /// a file whose size, mtime and ctime match is not read; its entry refers
    /// to the parent's chunks.
    pub files_cache: Option<std::sync::Arc<crate::FilesCache>>,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            excludes: Vec::new(),
            one_file_system: false,
            skip_inodes: Vec::new(),
            capture: Captured::KNOWN,
            fixed_owner: None,
            exclude_caches: false,
            files_cache: None,
        }
    }
}

/// One entry for [`ArchiveWriter::add_tree_from`].
pub struct SourceEntry {
    /// The entry as it is to be written; for a regular file, `size` is its length
    /// (holes included) and `blake3` and `extents` are recomputed.
    pub entry: Entry,
    /// Its path in the tree, for messages.
    pub path: Vec<u8>,
    /// A regular file's data ranges, in order; the gaps between them are holes.
    pub data_ranges: Vec<(u64, u64)>,
}

/// Entries from somewhere else than a folder, numbered from 0 in order, every
/// parent (and hard link target) before the entries that name it.
pub trait EntrySource {
    fn next_entry(&mut self) -> io::Result<Option<SourceEntry>>;
    /// Reads the current entry's content at `offset` into `buf`; returns the
    /// bytes read (0 at its end).
    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// Something that went wrong with one entry; the run goes on and ends non-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeWarning {
    /// Path relative to the tree's root, as bytes.
    pub path: Vec<u8>,
    pub message: String,
}

/// What one file-tree section holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSummary {
    pub name: String,
    pub entries: u64,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub content_bytes: u64,
    pub new_chunks: u64,
    pub deduplicated_chunks: u64,
    pub stored_bytes: u64,
    /// Regular files not read: unchanged since the parent (the files cache).
    pub reused_files: u64,
    pub warnings: Vec<TreeWarning>,
}

impl ChunkTally for TreeSummary {
    fn add_chunk(&mut self, record_bytes: u64) {
        self.new_chunks += 1;
        self.stored_bytes += record_bytes;
    }
}

/// Per directory, what its group's `FILES_DIR` needs at the end
/// (`spec/FORMAT.md` 8.5): kept for every directory, so the tables cost
/// O(directories + groups) memory, never a copy of every entry's name.
struct DirInfo {
    entry_id: u64,
    /// The group holding the directory's own entry (an index into
    /// [`TreeTables::groups`]).
    group: usize,
    child_count: u64,
    first_child_id: u64,
    /// One per group holding part of the run: the group, the id of the run's
    /// first entry in it and that entry's name.
    fences: Vec<(usize, u64, Vec<u8>)>,
}

/// Per group (`FILES_ENTRIES` record), what `FILES_DIR` and `FILES_INDEX` need.
struct GroupInfo {
    entries_record: u64,
    first_id: u64,
    /// Whether it holds a directory entry (and so gets a `FILES_DIR`).
    has_dir: bool,
}

/// Kept from the walk until `finish` writes the tables.
pub(crate) struct TreeTables {
    /// In entry order.
    dirs: Vec<DirInfo>,
    groups: Vec<GroupInfo>,
}

/// The decoded body a group of the reference writer does not pass.
const GROUP_BYTES: usize = 256 << 10;
/// Most extents in one `FILES_EXTENTS` record of the reference writer.
const RECORD_EXTENTS: usize = 4096;

/// Where an extent's bytes are before the batch is written.
#[derive(Clone, Copy)]
enum Loc {
    /// The n-th raw chunk of the batch.
    Raw(usize),
    /// A chunk already written.
    Stored(u64),
}

/// Content read and not written yet: the chunks and extents of the next
/// `FILES_EXTENTS` record.
#[derive(Default)]
struct Batch {
    raw_chunks: Vec<Vec<u8>>,
    raw_bytes: usize,
    /// The raw chunk small files are being packed into, if any.
    open_pack: Option<usize>,
    extents: Vec<(FileExtent, Loc)>,
    /// Small files packed in this batch, by index into `extents`, with the
    /// BLAKE3 of their bytes: once the batch is written, later copies refer to
    /// them (the entry's 16-byte digest is not a deduplication key).
    packed_small: Vec<(usize, [u8; 32])>,
}

/// The group being filled: its entries (each complete, its content already
/// in the batch or written) and the `FILES_EXTENTS` records written for them.
#[derive(Default)]
struct Group {
    entries: Vec<Entry>,
    /// Bytes of the entries' rows, names and strings.
    entry_bytes: usize,
    list: Vec<ExtentListRow>,
    /// The sum of the entries' `extent_count`.
    extent_count: u64,
}

/// Owner names, from the system's user and group databases, cached.
#[derive(Default)]
struct Names {
    users: Option<HashMap<u32, Vec<u8>>>,
    groups: Option<HashMap<u32, Vec<u8>>>,
}

fn read_id_names(path: &str) -> HashMap<u32, Vec<u8>> {
    let Ok(text) = std::fs::read(path) else {
        return HashMap::new();
    };
    let mut names = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if let (Some(name), Some(id)) = (fields.first(), fields.get(2)) {
            if let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()) {
                if name.len() <= 255 {
                    names.entry(id).or_insert_with(|| name.to_vec());
                }
            }
        }
    }
    names
}

impl Names {
    fn user(&mut self, uid: u32) -> Vec<u8> {
        self.users.get_or_insert_with(|| read_id_names("/etc/passwd")).get(&uid).cloned().unwrap_or_default()
    }
    fn group(&mut self, gid: u32) -> Vec<u8> {
        self.groups.get_or_insert_with(|| read_id_names("/etc/group")).get(&gid).cloned().unwrap_or_default()
    }
}

/// A time from a `struct timespec` whose nanoseconds may be out of range (only
/// `fstat`'s `long` can be): carried into the seconds, as the kernel means them.
fn timespec(secs: i64, nsecs: i64) -> Timestamp {
    Timestamp {
        secs: secs.saturating_add(nsecs.div_euclid(1_000_000_000)),
        nsec: nsecs.rem_euclid(1_000_000_000) as u32,
    }
}

/// Directory handles the walk keeps open at most. Each directory being walked
/// holds one, so a deep tree would otherwise use one descriptor per level and
/// run into the process's limit (often 1024, shared with the archive and the
/// file being read); past this many, the shallowest are closed and reopened
/// through `..` on the way back up.
const MAX_OPEN_DIRS: usize = 128;

/// How many directory handles this walk may keep open: [`MAX_OPEN_DIRS`], or a
/// quarter of the soft descriptor limit when that is lower, so that a process
/// started with a small limit still has descriptors for everything else.
fn open_dirs_allowed() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    usize::try_from(soft / 4).unwrap_or(usize::MAX).clamp(2, MAX_OPEN_DIRS)
}

/// What the walk records of one file system object.
struct Meta {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    /// Allocated 512-byte blocks.
    blocks: u64,
    atime: Timestamp,
    mtime: Timestamp,
    ctime: Timestamp,
    btime: Option<Timestamp>,
}

impl Meta {
    fn from_statx(x: &rustix::fs::Statx) -> Meta {
        let time = |t: &rustix::fs::StatxTimestamp| timespec(t.tv_sec, i64::from(t.tv_nsec));
        let has_btime = x.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0;
        Meta {
            dev: rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
            ino: x.stx_ino,
            mode: u32::from(x.stx_mode),
            nlink: u64::from(x.stx_nlink),
            uid: x.stx_uid,
            gid: x.stx_gid,
            rdev: rustix::fs::makedev(x.stx_rdev_major, x.stx_rdev_minor),
            size: x.stx_size,
            blocks: x.stx_blocks,
            atime: time(&x.stx_atime),
            mtime: time(&x.stx_mtime),
            ctime: time(&x.stx_ctime),
            btime: has_btime.then(|| time(&x.stx_btime)),
        }
    }

    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u64,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: timespec(st.st_atime as i64, st.st_atime_nsec as i64),
            mtime: timespec(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: timespec(st.st_ctime as i64, st.st_ctime_nsec as i64),
            btime: None,
        }
    }

    fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Stats `name` in `dir` (`flags` say whether to follow a symbolic link, or to
/// stat `dir` itself), with the birth time where the kernel has `statx`.
fn stat_at<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P, flags: AtFlags) -> io::Result<Meta> {
    use rustix::fs::StatxFlags;
    name.into_with_c_str(|name| {
        match rustix::fs::statx(dir, name, flags, StatxFlags::BASIC_STATS | StatxFlags::BTIME) {
            Ok(x) => Ok(Meta::from_statx(&x)),
            Err(rustix::io::Errno::NOSYS) => rustix::fs::statat(dir, name, flags).map(|st| Meta::from_stat(&st)),
            Err(e) => Err(e),
        }
    })
    .map_err(io::Error::from)
}

/// Opens `name` in `dir` read-only with `flags`, and `O_NOATIME` where
/// permitted: reading a file or listing a directory would otherwise set its
/// access time, so backing up an unchanged tree twice would give two
/// different archives.
fn open_at<P: rustix::path::Arg + Copy>(dir: BorrowedFd<'_>, name: P, flags: OFlags) -> io::Result<File> {
    let flags = flags | OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        other => other,
    }?;
    Ok(File::from(fd))
}

/// Opens a file in `dir` to read its content, not following a symbolic link.
fn open_content(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    open_at(dir, name, OFlags::NOFOLLOW)
}

/// Opens a directory in `dir` to list it and walk below it, not following a
/// symbolic link; `meta` is what was stat'ed by name, and a directory put in
/// its place since is refused.
fn open_directory(dir: BorrowedFd<'_>, name: &CStr, meta: &Meta) -> io::Result<File> {
    let handle = open_at(dir, name, OFlags::DIRECTORY | OFlags::NOFOLLOW)?;
    same_directory(handle, meta.id(), "replaced while it was read")
}

/// Opens the tree's root; the user named it, so a symbolic link to a
/// directory is followed, as it was to stat it.
fn open_root(root: &Path, meta: &Meta) -> io::Result<File> {
    let handle = open_at(rustix::fs::CWD, root, OFlags::DIRECTORY)?;
    same_directory(handle, meta.id(), "replaced while it was read")
}

/// Reopens a directory whose handle was closed, as the parent of `below`;
/// `id` is its (device, inode) when it was first opened.
fn reopen_parent(below: &File, id: (u64, u64)) -> io::Result<File> {
    let handle = open_at(below.as_fd(), c"..", OFlags::DIRECTORY | OFlags::NOFOLLOW)?;
    same_directory(handle, id, "moved while it was read")
}

/// `handle` if it is the directory `id`, else an error saying `what` happened.
fn same_directory(handle: File, id: (u64, u64), what: &str) -> io::Result<File> {
    if Meta::from_stat(&rustix::fs::fstat(&handle)?).id() == id {
        Ok(handle)
    } else {
        Err(io::Error::other(what.to_string()))
    }
}

/// The names in a directory, in increasing bytewise order (the order of a
/// run, `spec/FORMAT.md` section 8). Also the errors met, when the
/// listing stopped early.
fn list_directory(dir: &File) -> io::Result<(Vec<CString>, Option<io::Error>)> {
    // `read_from` opens the directory again with the handle's flags, O_NOATIME
    // included, and leaves the handle's own position alone.
    let listing = rustix::fs::Dir::read_from(dir)?;
    let mut children = Vec::new();
    let mut failed = None;
    for child in listing {
        match child {
            Ok(child) if matches!(child.file_name().to_bytes(), b"." | b"..") => {}
            Ok(child) => children.push(child.file_name().to_owned()),
            Err(e) => failed = Some(e.into()),
        }
    }
    children.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok((children, failed))
}

/// Where to read an entry's extended attributes from.
enum XattrsFrom<'a> {
    /// An open regular file or directory.
    Handle(&'a File),
    /// A name in a directory, for what is not opened (symbolic links, special
    /// files, what could not be opened); the name itself is not followed.
    At(BorrowedFd<'a>, &'a CStr),
    /// The tree's root, when it could not be opened.
    Path(&'a Path),
}

fn xattrs_of(from: XattrsFrom<'_>) -> io::Result<Vec<Xattr>> {
    use xattr::FileExt;
    match from {
        XattrsFrom::Handle(file) => collect_xattrs(file.list_xattr()?, |name| file.get_xattr(name)),
        XattrsFrom::At(dir, name) => {
            // The parent's /proc/self/fd link reaches the name by a short path
            // however deep it lies; `xattr::list` and `xattr::get` do not follow
            // its last component.
            let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            path.extend_from_slice(name.to_bytes());
            let path = Path::new(OsStr::from_bytes(&path));
            collect_xattrs(xattr::list(path)?, |name| xattr::get(path, name))
        }
        XattrsFrom::Path(path) => collect_xattrs(xattr::list(path)?, |name| xattr::get(path, name)),
    }
}

fn collect_xattrs(
    names: impl Iterator<Item = OsString>,
    mut get: impl FnMut(&OsStr) -> io::Result<Option<Vec<u8>>>,
) -> io::Result<Vec<Xattr>> {
    let mut out = Vec::new();
    for name in names {
        let name = name.into_vec();
        if name.is_empty() || name.len() > 255 {
            continue;
        }
        if let Some(value) = get(OsStr::from_bytes(&name))? {
            if value.len() <= files::MAX_XATTR_VALUE as usize {
                out.push(Xattr { name, value });
            }
        }
    }
    out.sort();
    Ok(out)
}

fn kind_of(mode: u32) -> EntryKind {
    use rustix::fs::FileType;
    match FileType::from_raw_mode(mode) {
        FileType::Directory => EntryKind::Directory,
        FileType::Symlink => EntryKind::Symlink,
        FileType::CharacterDevice => EntryKind::CharDevice,
        FileType::BlockDevice => EntryKind::BlockDevice,
        FileType::Fifo => EntryKind::Fifo,
        FileType::Socket => EntryKind::Socket,
        _ => EntryKind::File,
    }
}

/// Data ranges of a file of `size` bytes, from SEEK_DATA/SEEK_HOLE; the whole
/// file where the file system cannot tell.
fn data_ranges(file: &File, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(at)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, size)],
        };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(start)).unwrap_or(size).min(size);
        if end <= start {
            return vec![(0, size)];
        }
        ranges.push((start, end));
        at = end;
    }
    ranges
}

/// Reads `buf.len()` bytes at `offset`; returns fewer only at end of file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A directory whose run is recorded, with the directories of the run still
/// to descend into.
struct Frame {
    /// Its handle, while it is among the deepest [`open_dirs_allowed`] ones.
    dir: Option<File>,
    /// Its (device, inode), to check it when it is reopened.
    id: (u64, u64),
    /// The length of its path relative to the root, a prefix of the walk's
    /// current path.
    relative_len: usize,
    /// The directories of its run still to descend into, last first.
    subdirs: Vec<Subdir>,
}

/// A directory recorded in its parent's run, to descend into later.
struct Subdir {
    name: CString,
    entry_id: u64,
    /// Its (device, inode) when it was recorded: the directory opened to
    /// descend into it must be the same.
    id: (u64, u64),
}

/// The state of one `add_tree` call.
struct Walk<'a> {
    section_id: u32,
    begin_offset: u64,
    chunk_size: usize,
    level: i32,
    batch_bytes: usize,
    /// Most entries in a group ([`crate::WriterOptions::group_entries`]).
    group_entries: usize,
    captured: u64,
    excludes: globset::GlobSet,
    excludes_by_name: globset::GlobSet,
    options: &'a TreeOptions,
    root_dev: u64,
    names: Names,
    next_id: u64,
    hardlinks: HashMap<(u64, u64), u64>,
    /// BLAKE3 of small files already stored, to (chunk_ref, chunk_offset).
    small_files: HashMap<[u8; 32], (u64, u32)>,
    batch: Batch,
    group: Group,
    /// Extents announced so far (pushed into a batch): the next extent's index.
    extents_total: u64,
    /// Extents in `FILES_EXTENTS` records written so far: the next record's
    /// `first_index`.
    extents_written: u64,
    /// The `extent_base` of the group being filled.
    extent_base: u64,
    /// The directory whose run is being recorded (`NO_PARENT` before the
    /// first), its index in `tables.dirs`, and the name of the run's last entry.
    run_parent: u64,
    run_dir: usize,
    run_last_name: Vec<u8>,
    /// For entries from a source only: one bit per entry, set for regular
    /// files, to check hard-link targets.
    file_ids: Option<Vec<u64>>,
    tables: TreeTables,
    summary: TreeSummary,
    progress: &'a dyn Progress,
}

impl<W: Write> ArchiveWriter<W> {
    /// Adds a file-tree section named `name` holding everything under `root`.
    /// Entries that cannot be read are recorded with a warning in the summary.
    ///
    /// The walk writes the entries in the order of `spec/FORMAT.md` section 8
    /// (section 14): it lists a directory, sorts its children bytewise,
    /// records the whole run (reading the files' content), then descends into
    /// the run's directories in order, depth first.
    pub fn add_tree(
        &mut self,
        name: &str,
        root: &Path,
        options: &TreeOptions,
        progress: &dyn Progress,
    ) -> Result<TreeSummary, WriteError> {
        // Followed, as the user named it.
        let root_meta = stat_at(rustix::fs::CWD, root, AtFlags::empty()).map_err(|source| WriteError::Source {
            what: format!("tree {name:?} at {}", root.display()),
            offset: 0,
            source,
        })?;
        if kind_of(root_meta.mode) != EntryKind::Directory {
            return Err(WriteError::Invalid {
                what: "tree root",
                detail: format!("{} is not a directory", root.display()),
            });
        }
        let mut walk = self.begin_tree(name, options, root_meta.dev, progress)?;
        let handle = open_root(root, &root_meta);
        let xattrs = handle.as_ref().map_or(XattrsFrom::Path(root), XattrsFrom::Handle);
        let root_entry = walk.entry_for(&root_meta, xattrs, Vec::new(), NO_PARENT, b"");
        walk.summary.directories += 1;
        walk.add_entry(self, root_entry)?;
        // The path of the directory whose run is recorded last, relative to
        // the root; every frame's own path is a prefix of it.
        let mut relative = Vec::new();
        let mut stack: Vec<Frame> =
            walk.record_run(self, handle, root_meta.id(), &mut relative, 0)?.into_iter().collect();
        let open_allowed = open_dirs_allowed();
        // Frames below this index have had their handles closed.
        let mut open_from = 0;
        while let Some(frame) = stack.last_mut() {
            let next = match &frame.dir {
                Some(dir) => frame.subdirs.pop().map(|sub| (dir.as_fd(), sub)),
                None => None,
            };
            let Some((dir, sub)) = next else {
                let done = stack.pop().map(|done| done.dir).unwrap_or_default();
                walk.back_to_parent(stack.last_mut(), done, &relative);
                open_from = open_from.min(stack.len().saturating_sub(1));
                continue;
            };
            relative.truncate(frame.relative_len);
            if !relative.is_empty() {
                relative.push(b'/');
            }
            relative.extend_from_slice(sub.name.to_bytes());
            // Opened only now, and checked to be the directory recorded.
            let handle = open_at(dir, sub.name.as_c_str(), OFlags::DIRECTORY | OFlags::NOFOLLOW)
                .and_then(|handle| same_directory(handle, sub.id, "replaced since it was recorded"));
            if let Some(below) = walk.record_run(self, handle, sub.id, &mut relative, sub.entry_id)? {
                stack.push(below);
                if stack.len() - open_from > open_allowed {
                    stack[open_from].dir = None;
                    open_from += 1;
                }
            }
        }
        self.end_tree(walk)
    }

    /// Adds a file-tree section named `name` holding the entries `source` gives,
    /// as they are (salvage rebuilds a tree this way). `captured` is the
    /// section's `Captured` bits. Regular files get their size, digest and
    /// extents from the content read.
    ///
    /// The source gives the entries in the order of `spec/FORMAT.md` section
    /// 8: each directory's children one run, consecutive, in strictly
    /// increasing bytewise name order, after the directory's own entry. An
    /// entry that breaks it is refused with [`WriteError::Invalid`] (the
    /// writer does not sort: that would hold the whole tree).
    pub fn add_tree_from(
        &mut self,
        name: &str,
        captured: u64,
        source: &mut dyn EntrySource,
        progress: &dyn Progress,
    ) -> Result<TreeSummary, WriteError> {
        let options = TreeOptions { capture: captured, ..TreeOptions::default() };
        let mut walk = self.begin_tree(name, &options, 0, progress)?;
        walk.file_ids = Some(Vec::new());
        while let Some(SourceEntry { mut entry, path, data_ranges }) = source
            .next_entry()
            .map_err(|e| WriteError::Source { what: format!("tree {name:?}"), offset: 0, source: e })?
        {
            let id = walk.next_id;
            if entry.kind == EntryKind::File {
                // Recomputed from the content read.
                entry.extent_count = 0;
            }
            let invalid = if entry.entry_id != id {
                Some(format!("entry_id {}, expected {id}", entry.entry_id))
            } else if (id == 0) != (entry.parent_id == NO_PARENT) || (id == 0 && entry.kind != EntryKind::Directory) {
                Some("only entry 0, a directory, has no parent".to_string())
            } else if id > 0 && walk.dir_index(entry.parent_id).is_none() {
                Some(format!("parent {} is not an earlier directory", entry.parent_id))
            } else if entry.kind == EntryKind::Hardlink && !walk.is_file(entry.link_id) {
                Some(format!("hard link to {}, not an earlier file", entry.link_id))
            } else {
                walk.order_fault(&entry)
            };
            let invalid = invalid.or_else(|| {
                let rules = entry.validate_kind().and_then(|()| entry.check_captured(captured));
                rules.err().map(|e| e.detail)
            });
            if let Some(detail) = invalid {
                return Err(WriteError::Invalid {
                    what: "tree entry",
                    detail: format!("\"{}\": {detail}", strata_format::escaped(&path)),
                });
            }
            if captured & Captured::IDENTITY == 0 {
                entry.ino = 0;
                entry.dev = (0, 0);
            }
            walk.next_id += 1;
            match entry.kind {
                EntryKind::File => {
                    walk.summary.files += 1;
                    let size = data_ranges.last().map_or(0, |r| r.1).max(entry.size);
                    entry.extents.clear();
                    walk.reserve(self, &entry)?;
                    walk.store_content(self, &path, &mut entry, size, data_ranges, &mut |buf, at| {
                        source.read_content(buf, at)
                    })?;
                    walk.add_entry(self, entry)?;
                }
                kind => {
                    match kind {
                        EntryKind::Directory => walk.summary.directories += 1,
                        EntryKind::Symlink => walk.summary.symlinks += 1,
                        _ => {}
                    }
                    walk.add_entry(self, entry)?;
                }
            }
        }
        if walk.next_id == 0 {
            return Err(WriteError::Invalid { what: "tree", detail: format!("{name:?}: no root entry") });
        }
        self.end_tree(walk)
    }

    /// Starts a file-tree section: its `FILES_BEGIN` and the walk's state.
    fn begin_tree<'a>(
        &mut self,
        name: &str,
        options: &'a TreeOptions,
        root_dev: u64,
        progress: &'a dyn Progress,
    ) -> Result<Walk<'a>, WriteError> {
        let (excludes, excludes_by_name) = build_excludes(&options.excludes)?;
        let section_id = self.begin_section(name)?;
        let captured = options.capture & Captured::KNOWN;
        let begin =
            FilesBegin { section_id, chunk_size: self.options.chunk_size, captured, name: name.as_bytes().to_vec() };
        begin.validate()?;
        let begin_offset = self.write_record(RecordType::FilesBegin, &[&begin.to_bytes()])?;
        Ok(Walk {
            section_id,
            begin_offset,
            chunk_size: self.options.chunk_size as usize,
            level: self.options.level,
            batch_bytes: self.options.batch_bytes,
            group_entries: self.options.group_entries.clamp(1, files::MAX_GROUP_ENTRIES as usize),
            captured,
            excludes,
            excludes_by_name,
            options,
            root_dev,
            names: Names::default(),
            next_id: 0,
            hardlinks: HashMap::new(),
            small_files: HashMap::new(),
            batch: Batch::default(),
            group: Group::default(),
            extents_total: 0,
            extents_written: 0,
            extent_base: 0,
            run_parent: NO_PARENT,
            run_dir: 0,
            run_last_name: Vec::new(),
            file_ids: None,
            tables: TreeTables { dirs: Vec::new(), groups: Vec::new() },
            summary: TreeSummary { name: name.to_string(), ..TreeSummary::default() },
            progress,
        })
    }

    /// Ends a file-tree section: the last group and its `FILES_END`.
    fn end_tree(&mut self, mut walk: Walk<'_>) -> Result<TreeSummary, WriteError> {
        walk.end_group(self)?;
        let end = FilesEnd {
            section_id: walk.section_id,
            reserved: 0,
            entry_count: walk.next_id,
            file_count: walk.summary.files,
            directory_count: walk.summary.directories,
            content_bytes: walk.summary.content_bytes,
            chunk_count: walk.summary.new_chunks,
            chunk_bytes: walk.summary.stored_bytes,
            begin_offset: walk.begin_offset,
            extent_count: walk.extents_written,
        };
        let end_offset = self.write_record(RecordType::FilesEnd, &[&end.encode()])?;
        walk.summary.entries = walk.next_id;
        self.sections.push(SectionState {
            begin_offset: walk.begin_offset,
            end_offset,
            tables: SectionTables::Tree(walk.tables),
        });
        self.summary.trees.push(walk.summary.clone());
        Ok(walk.summary)
    }

    /// Writes one `FILES_DIR` per group holding a directory, last group
    /// first (so every fence's `dir_record` points to a table already
    /// written, or to the one being written), then the `FILES_INDEX`; returns
    /// the index's offset.
    pub(crate) fn write_tree_tables(&mut self, section_id: u32, tables: TreeTables) -> Result<u64, WriteError> {
        let TreeTables { dirs, groups } = tables;
        let mut dir_records = vec![0u64; groups.len()];
        // `dirs` is in entry order, so in group order: each group's
        // directories are one stretch of it.
        let mut end = dirs.len();
        for g in (0..groups.len()).rev() {
            if !groups[g].has_dir {
                continue;
            }
            let start = dirs[..end].partition_point(|d| d.group < g);
            let own = self.position;
            let mut locators = Vec::with_capacity(end - start);
            let mut fences = Vec::new();
            for dir in &dirs[start..end] {
                locators.push(Locator {
                    entry_id: dir.entry_id,
                    child_count: dir.child_count,
                    first_child_id: dir.first_child_id,
                    first_fence: fences.len() as u64,
                });
                for (group, first_child_id, name) in &dir.fences {
                    let dir_record = if *group == g { own } else { dir_records[*group] };
                    debug_assert!(*group >= g, "a run comes after its directory");
                    let fence = Fence {
                        entries_record: groups[*group].entries_record,
                        dir_record: if groups[*group].has_dir { dir_record } else { 0 },
                        first_child_id: *first_child_id,
                        name_length: name.len() as u8,
                    };
                    fences.push((fence, name.clone()));
                }
            }
            let table = GroupDir { section_id, entries_record: groups[g].entries_record, locators, fences };
            let offset = self.write_record(RecordType::FilesDir, &[&table.encode()])?;
            debug_assert_eq!(offset, own);
            dir_records[g] = offset;
            end = start;
        }
        let rows: Vec<GroupRow> = groups
            .iter()
            .zip(&dir_records)
            .map(|(group, &dir_record)| GroupRow {
                entries_record: group.entries_record,
                dir_record,
                first_id: group.first_id,
            })
            .collect();
        self.write_record(RecordType::FilesIndex, &[&files::encode_files_index(section_id, &rows)])
    }
}

/// What a tree holds, counted ahead of writing it so that a progress display
/// can show a total, a file count and the time left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeTotals {
    /// The entries [`ArchiveWriter::add_tree`] would record, the root included.
    pub entries: u64,
    /// The content bytes it would read: allocated bytes for a sparse file when
    /// holes are captured, each hard-linked file once.
    pub bytes: u64,
}

/// Counts what [`ArchiveWriter::add_tree`] would record of the folder `root`
/// with `options` (the same exclusions, cache folders, file-system boundary
/// and skipped inodes), from directory listings and metadata alone, opening
/// directories with `O_NOATIME` as the walk does. `keep_going` is asked before
/// each directory is listed: when it says no, or the tree is deeper than the
/// open directories allowed, the count stops and gives `None`, so a caller
/// bounds its cost. What cannot be read is left out (the walk warns of it).
pub fn count_tree(root: &Path, options: &TreeOptions, keep_going: &dyn Fn(&TreeTotals) -> bool) -> Option<TreeTotals> {
    let root_meta = stat_at(rustix::fs::CWD, root, AtFlags::empty()).ok()?;
    if kind_of(root_meta.mode) != EntryKind::Directory {
        return None;
    }
    let (excludes, excludes_by_name) = build_excludes(&options.excludes).ok()?;
    let holes = options.capture & Captured::HOLES != 0;
    let max_depth = open_dirs_allowed() / 2;
    let mut totals = TreeTotals { entries: 1, bytes: 0 };
    let mut linked: HashSet<(u64, u64)> = HashSet::new();
    // The directories being walked, each with the children still to visit and
    // the length of its path in `relative`.
    let mut stack: Vec<(File, Vec<CString>, usize)> = Vec::new();
    let mut relative: Vec<u8> = Vec::new();
    let mut pending = Some((open_root(root, &root_meta).ok()?, 0));
    loop {
        if let Some((dir, relative_len)) = pending.take() {
            if !keep_going(&totals) || stack.len() >= max_depth {
                return None;
            }
            if let Ok((children, _)) = list_directory(&dir) {
                let children = if options.exclude_caches && is_cache_dir(&dir, &children) {
                    children.into_iter().filter(|name| name.as_bytes() == CACHEDIR_TAG).collect()
                } else {
                    children
                };
                stack.push((dir, children, relative_len));
            }
        }
        let Some((dir, children, relative_len)) = stack.last_mut() else { break };
        let Some(child) = children.pop() else {
            stack.pop();
            continue;
        };
        relative.truncate(*relative_len);
        if !relative.is_empty() {
            relative.push(b'/');
        }
        relative.extend_from_slice(child.to_bytes());
        if (!excludes.is_empty() && excludes.is_match(OsStr::from_bytes(&relative)))
            || (!excludes_by_name.is_empty() && excludes_by_name.is_match(OsStr::from_bytes(child.to_bytes())))
        {
            continue;
        }
        let Ok(meta) = stat_at(dir.as_fd(), child.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
        if options.skip_inodes.contains(&meta.id()) {
            continue;
        }
        totals.entries += 1;
        match kind_of(meta.mode) {
            EntryKind::Directory if !(options.one_file_system && meta.dev != root_meta.dev) => {
                if let Ok(below) = open_directory(dir.as_fd(), &child, &meta) {
                    pending = Some((below, relative.len()));
                }
            }
            EntryKind::File if meta.nlink < 2 || linked.insert(meta.id()) => {
                let allocated = meta.blocks.saturating_mul(512);
                totals.bytes += if holes && allocated < meta.size { allocated } else { meta.size };
            }
            _ => {}
        }
    }
    Some(totals)
}

fn build_excludes(patterns: &[String]) -> Result<(globset::GlobSet, globset::GlobSet), WriteError> {
    let mut by_path = globset::GlobSetBuilder::new();
    let mut by_name = globset::GlobSetBuilder::new();
    for pattern in patterns {
        let glob = globset::GlobBuilder::new(pattern.trim_end_matches('/'))
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| WriteError::Invalid { what: "--exclude pattern", detail: format!("{pattern:?}: {e}") })?;
        if pattern.trim_end_matches('/').contains('/') {
            by_path.add(glob);
        } else {
            by_name.add(glob);
        }
    }
    let build = |b: globset::GlobSetBuilder| {
        b.build().map_err(|e| WriteError::Invalid { what: "--exclude pattern", detail: e.to_string() })
    };
    Ok((build(by_path)?, build(by_name)?))
}

const CACHEDIR_TAG: &[u8] = b"CACHEDIR.TAG";

/// Whether a folder holds a `CACHEDIR.TAG` that starts with the standard's
/// signature (a regular file, read without following a link).
fn is_cache_dir(dir: &File, children: &[std::ffi::CString]) -> bool {
    const SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
    if !children.iter().any(|c| c.as_bytes() == CACHEDIR_TAG) {
        return false;
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let Ok(fd) = rustix::fs::openat(dir, c"CACHEDIR.TAG", flags, Mode::empty()) else {
        return false;
    };
    let file = File::from(fd);
    let mut start = [0u8; SIGNATURE.len()];
    file.metadata().is_ok_and(|m| m.is_file())
        && read_at_most(&file, &mut start, 0).ok() == Some(SIGNATURE.len())
        && start == SIGNATURE
}

impl Walk<'_> {
    fn warn(&mut self, relative: &[u8], message: impl Into<String>) {
        self.summary.warnings.push(TreeWarning { path: relative.to_vec(), message: message.into() });
    }

    /// The metadata part of an entry (no content), with the next id.
    fn entry_for(
        &mut self,
        meta: &Meta,
        xattrs: XattrsFrom<'_>,
        name: Vec<u8>,
        parent_id: u64,
        relative: &[u8],
    ) -> Entry {
        let kind = kind_of(meta.mode);
        let entry_id = self.next_id;
        self.next_id += 1;
        let capture = self.options.capture;
        let captured = |bit: u64, time: Timestamp| if capture & bit != 0 { time } else { Timestamp::ZERO };
        let (btime, flags) = match meta.btime {
            Some(btime) if capture & Captured::BTIME != 0 => (btime, EntryFlags::BTIME),
            _ => (Timestamp::ZERO, 0),
        };
        let xattrs = match xattrs_of(xattrs) {
            Ok(x) => x,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => Vec::new(),
            Err(e) => {
                self.warn(relative, format!("extended attributes not read: {e}"));
                Vec::new()
            }
        };
        let (uid, gid) = self.options.fixed_owner.unwrap_or((meta.uid, meta.gid));
        let (user, group) = if capture & Captured::OWNER_NAMES != 0 {
            (self.names.user(uid), self.names.group(gid))
        } else {
            (Vec::new(), Vec::new())
        };
        let xattrs = if capture & Captured::XATTRS != 0 { xattrs } else { Vec::new() };
        let rdev = meta.rdev;
        let is_device = matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice);
        Entry {
            kind,
            flags,
            entry_id,
            parent_id,
            mode: meta.mode & 0o7777,
            uid,
            gid,
            rdev_major: if is_device { rustix::fs::major(rdev) } else { 0 },
            rdev_minor: if is_device { rustix::fs::minor(rdev) } else { 0 },
            mtime: meta.mtime,
            atime: captured(Captured::ATIME, meta.atime),
            ctime: captured(Captured::CTIME, meta.ctime),
            btime,
            size: 0,
            link_id: 0,
            digest: [0; DIGEST_LEN],
            extent_count: 0,
            ino: if capture & Captured::IDENTITY != 0 { meta.ino } else { 0 },
            dev: if capture & Captured::IDENTITY != 0 {
                (rustix::fs::major(meta.dev), rustix::fs::minor(meta.dev))
            } else {
                (0, 0)
            },
            user,
            group,
            name,
            target: Vec::new(),
            xattrs,
            extents: Vec::new(),
        }
    }

    /// Lists the directory `entry_id` (open as `handle`, `relative` its
    /// path) and records its whole run: every child in bytewise name order,
    /// files with their content. Returns a frame holding the run's
    /// directories to descend into, unless there are none.
    fn record_run<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        handle: io::Result<File>,
        id: (u64, u64),
        relative: &mut Vec<u8>,
        entry_id: u64,
    ) -> Result<Option<Frame>, WriteError> {
        let relative_len = relative.len();
        let listed = handle.and_then(|dir| list_directory(&dir).map(|listed| (dir, listed)));
        let (dir, children) = match listed {
            Ok((dir, (children, None))) => (dir, children),
            Ok((dir, (children, Some(e)))) => {
                self.warn(relative, format!("directory not fully listed: {e}"));
                (dir, children)
            }
            Err(e) => {
                self.warn(relative, format!("directory not listed: {e}; its content is skipped"));
                return Ok(None);
            }
        };
        let children = if self.options.exclude_caches && is_cache_dir(&dir, &children) {
            children.into_iter().filter(|name| name.as_bytes() == CACHEDIR_TAG).collect()
        } else {
            children
        };
        let mut subdirs = Vec::new();
        for child in &children {
            relative.truncate(relative_len);
            if !relative.is_empty() {
                relative.push(b'/');
            }
            relative.extend_from_slice(child.to_bytes());
            if let Some(sub) = self.visit(writer, dir.as_fd(), relative, entry_id, child)? {
                subdirs.push(sub);
            }
        }
        relative.truncate(relative_len);
        if subdirs.is_empty() {
            return Ok(None);
        }
        subdirs.reverse();
        Ok(Some(Frame { dir: Some(dir), id, relative_len, subdirs }))
    }

    /// Gives `parent`, once a frame below it is done, its handle back if it was
    /// closed, reopened as `below`'s parent; if that fails or is not the same
    /// directory (the tree was moved while it was read), the rest of it is
    /// skipped with a warning. `relative` starts with its path.
    fn back_to_parent(&mut self, parent: Option<&mut Frame>, below: Option<File>, relative: &[u8]) {
        let Some(parent) = parent else { return };
        if parent.dir.is_some() {
            return;
        }
        let reopened = match &below {
            Some(below) => reopen_parent(below, parent.id),
            None => Err(io::Error::other("the directory below it was not reopened either")),
        };
        match reopened {
            Ok(dir) => parent.dir = Some(dir),
            Err(e) if !parent.subdirs.is_empty() => {
                let path = &relative[..parent.relative_len.min(relative.len())];
                self.warn(path, format!("directory not reopened: {e}; the rest of it is skipped"));
                parent.subdirs.clear();
            }
            Err(_) => {}
        }
    }

    /// Records `name` in `dir`, `relative` being its path, as an entry of
    /// the run of `parent_id`; returns it if it is a directory to descend
    /// into later.
    fn visit<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        dir: BorrowedFd<'_>,
        relative: &[u8],
        parent_id: u64,
        name: &CStr,
    ) -> Result<Option<Subdir>, WriteError> {
        // Matching copies the path even against no pattern, which costs a deep
        // tree its depth for every entry.
        if (!self.excludes.is_empty() && self.excludes.is_match(OsStr::from_bytes(relative)))
            || (!self.excludes_by_name.is_empty() && self.excludes_by_name.is_match(OsStr::from_bytes(name.to_bytes())))
        {
            return Ok(None);
        }
        let meta = match stat_at(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(meta) => meta,
            Err(e) => {
                self.warn(relative, format!("not read: {e}"));
                return Ok(None);
            }
        };
        if self.options.skip_inodes.contains(&meta.id()) {
            return Ok(None);
        }
        let at = XattrsFrom::At(dir, name);
        match kind_of(meta.mode) {
            EntryKind::Directory => {
                let entry = self.entry_for(&meta, at, name.to_bytes().to_vec(), parent_id, relative);
                let entry_id = entry.entry_id;
                self.summary.directories += 1;
                self.add_entry(writer, entry)?;
                if self.options.one_file_system && meta.dev != self.root_dev {
                    // Like tar: the mount point is kept, its content is not.
                    return Ok(None);
                }
                Ok(Some(Subdir { name: name.to_owned(), entry_id, id: meta.id() }))
            }
            EntryKind::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new());
                let mut entry = self.entry_for(&meta, at, name.to_bytes().to_vec(), parent_id, relative);
                match target {
                    Ok(target) => {
                        entry.target = target.into_bytes();
                        entry.size = entry.target.len() as u64;
                    }
                    Err(e) => {
                        self.warn(relative, format!("symbolic link not read: {e}"));
                        self.next_id -= 1;
                        return Ok(None);
                    }
                }
                if entry.target.is_empty() || entry.target.len() > files::MAX_TARGET as usize {
                    self.warn(relative, "symbolic link target is empty or longer than 4095 bytes: skipped");
                    self.next_id -= 1;
                    return Ok(None);
                }
                self.summary.symlinks += 1;
                self.add_entry(writer, entry)?;
                Ok(None)
            }
            EntryKind::File => {
                if meta.nlink > 1 {
                    if let Some(&first) = self.hardlinks.get(&meta.id()) {
                        let mut entry = self.entry_for(&meta, at, name.to_bytes().to_vec(), parent_id, relative);
                        entry.kind = EntryKind::Hardlink;
                        entry.link_id = first;
                        self.add_entry(writer, entry)?;
                        return Ok(None);
                    }
                }
                if let Some(cached) =
                    self.options.files_cache.as_ref().and_then(|cache| {
                        cache.unchanged(relative, meta.size, meta.mtime, meta.ctime, meta.ino, meta.dev)
                    })
                {
                    let cached = cached.clone();
                    let entry = self.entry_for(&meta, at, name.to_bytes().to_vec(), parent_id, relative);
                    if meta.nlink > 1 {
                        self.hardlinks.insert(meta.id(), entry.entry_id);
                    }
                    self.summary.files += 1;
                    return self.take_over(writer, entry, cached).map(|()| None);
                }
                let file = open_content(dir, name);
                let xattrs = file.as_ref().map_or(at, XattrsFrom::Handle);
                let entry = self.entry_for(&meta, xattrs, name.to_bytes().to_vec(), parent_id, relative);
                if meta.nlink > 1 {
                    self.hardlinks.insert(meta.id(), entry.entry_id);
                }
                self.summary.files += 1;
                self.read_content(writer, file, relative, &meta, entry)?;
                Ok(None)
            }
            _ => {
                let entry = self.entry_for(&meta, at, name.to_bytes().to_vec(), parent_id, relative);
                self.add_entry(writer, entry)?;
                Ok(None)
            }
        }
    }

    /// Completes a regular file's entry with the content of the parent's
    /// unchanged file (`spec/FORMAT.md` 15.5): its digest, and its extents
    /// announced again in this archive's `FILES_EXTENTS` with the parent's
    /// chunks as references. Nothing of the file is read.
    fn take_over<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        mut entry: Entry,
        cached: crate::files_cache::CachedFile,
    ) -> Result<(), WriteError> {
        self.reserve(writer, &entry)?;
        entry.size = cached.size;
        entry.digest = cached.digest;
        entry.extent_count = cached.extents.len() as u64;
        for extent in cached.extents {
            if !writer.note_reference(extent.chunk_ref) {
                return Err(WriteError::Invalid {
                    what: "files cache",
                    detail: format!("a cached extent refers to {}, a chunk the chain does not offer", extent.chunk_ref),
                });
            }
            self.push_extent(writer, FileExtent { entry_id: entry.entry_id, ..extent }, Loc::Stored(extent.chunk_ref))?;
        }
        self.summary.content_bytes += cached.size;
        self.summary.reused_files += 1;
        self.add_entry(writer, entry)
    }

    /// Reads a regular file's content into the batch and records its entry.
    fn read_content<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        file: io::Result<File>,
        relative: &[u8],
        meta: &Meta,
        mut entry: Entry,
    ) -> Result<(), WriteError> {
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                self.warn(relative, format!("content not read: {e}"));
                entry.flags |= EntryFlags::UNREADABLE;
                // No content: size 0 and the digest of nothing, as for an empty file.
                entry.digest = EMPTY_DIGEST;
                return self.add_entry(writer, entry);
            }
        };
        // The group is chosen before the content is read: the file's extents
        // then belong to the group that holds its entry.
        self.reserve(writer, &entry)?;
        let size = meta.size;
        let ranges =
            if self.options.capture & Captured::HOLES != 0 { data_ranges(&file, size) } else { vec![(0, size)] };
        let shrank = self
            .store_content(writer, relative, &mut entry, size, ranges, &mut |buf, at| read_at_most(&file, buf, at))?;
        // A file that changed while it was read is kept as read, and said so.
        match file.metadata() {
            Ok(after)
                if !shrank && after.len() == meta.size && timespec(after.mtime(), after.mtime_nsec()) == meta.mtime => {
            }
            Ok(after) => {
                entry.flags |= EntryFlags::CHANGED_WHILE_READ;
                self.warn(
                    relative,
                    format!("changed while it was read (size {} -> {}); kept as read", meta.size, after.len()),
                );
            }
            Err(e) => self.warn(relative, format!("not checked after reading: {e}")),
        }
        self.add_entry(writer, entry)
    }

    /// Reads the `ranges` of a `size`-byte file through `read` into the batch,
    /// in windows aligned to file offset 0 (small files packed), and fills in the
    /// entry's size, digest and `extent_count`. Returns whether the content
    /// ended early (kept as read). The caller has reserved the entry's place
    /// in the group ([`Walk::reserve`]).
    fn store_content<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        relative: &[u8],
        entry: &mut Entry,
        size: u64,
        ranges: Vec<(u64, u64)>,
        read: &mut dyn FnMut(&mut [u8], u64) -> io::Result<usize>,
    ) -> Result<bool, WriteError> {
        let mut digest = FileDigest::new();
        let mut count = 0u64;
        let mut covered = 0u64;
        let mut shrank = false;
        let small = size < (self.chunk_size as u64).min(1 << 20) / 2 && ranges == [(0, size)];
        let mut buf = Vec::new();
        'ranges: for (start, end) in ranges {
            let mut at = start;
            while at < end {
                let window_end = ((at / self.chunk_size as u64) + 1) * self.chunk_size as u64;
                let piece = (end.min(window_end) - at) as usize;
                buf.resize(piece, 0);
                let got = match read(&mut buf, at) {
                    Ok(got) => got,
                    Err(e) => {
                        self.warn(relative, format!("content read failed at byte {at}: {e}; kept up to there"));
                        shrank = true;
                        break 'ranges;
                    }
                };
                if got == 0 {
                    shrank = true;
                    break 'ranges;
                }
                buf.truncate(got);
                digest.data(at, &buf);
                covered = at + got as u64;
                let extent = FileExtent {
                    entry_id: entry.entry_id,
                    file_offset: at,
                    length: got as u64,
                    chunk_ref: 0,
                    chunk_offset: 0,
                };
                let (chunk_offset, loc, packed) = if small {
                    self.pack(&buf)
                } else {
                    self.batch.raw_chunks.push(std::mem::take(&mut buf));
                    self.batch.raw_bytes += got;
                    (0, Loc::Raw(self.batch.raw_chunks.len() - 1), None)
                };
                if let Some(hash) = packed {
                    self.batch.packed_small.push((self.batch.extents.len(), hash));
                }
                count += 1;
                self.progress.advance(got as u64);
                self.push_extent(writer, FileExtent { chunk_offset, ..extent }, loc)?;
                at += got as u64;
                if got < piece {
                    shrank = true;
                    break 'ranges;
                }
            }
        }
        let final_size = if shrank { covered } else { size };
        entry.size = final_size;
        entry.digest = digest.finish(final_size);
        entry.extent_count = count;
        self.summary.content_bytes += final_size;
        Ok(shrank)
    }

    /// Adds an extent to the batch, writing the batch when it is full: enough
    /// data read ahead, or as many extents as the writer puts in one
    /// `FILES_EXTENTS` record.
    fn push_extent<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        extent: FileExtent,
        loc: Loc,
    ) -> Result<(), WriteError> {
        self.batch.extents.push((extent, loc));
        self.extents_total += 1;
        if self.batch.raw_bytes >= self.batch_bytes || self.batch.extents.len() >= RECORD_EXTENTS {
            self.flush_data(writer)?;
        }
        Ok(())
    }

    /// The largest pack of small files: reading one small file decodes its whole
    /// pack, so packs stay at 1 MiB even when large files use bigger windows.
    fn pack_size(&self) -> usize {
        self.chunk_size.min(1 << 20)
    }

    /// Appends a small file to the open pack chunk, starting a new one when full.
    /// Returns where the bytes are, and their BLAKE3 when they were packed
    /// rather than found.
    fn pack(&mut self, bytes: &[u8]) -> (u32, Loc, Option<[u8; 32]>) {
        let hash = *blake3::hash(bytes).as_bytes();
        if let Some(&(chunk_ref, offset)) = self.small_files.get(&hash) {
            self.summary.deduplicated_chunks += 1;
            return (offset, Loc::Stored(chunk_ref), None);
        }
        let index = match self.batch.open_pack {
            Some(i) if self.batch.raw_chunks[i].len() + bytes.len() <= self.pack_size() => i,
            _ => {
                self.batch.raw_chunks.push(Vec::with_capacity(self.pack_size()));
                self.batch.open_pack = Some(self.batch.raw_chunks.len() - 1);
                self.batch.raw_chunks.len() - 1
            }
        };
        let pack = &mut self.batch.raw_chunks[index];
        let offset = pack.len() as u32;
        pack.extend_from_slice(bytes);
        self.batch.raw_bytes += bytes.len();
        (offset, Loc::Raw(index), Some(hash))
    }

    /// Ends the group being filled when `entry` would not fit in it: at
    /// `group_entries` entries (1,024 by default), or when its decoded body would pass
    /// [`GROUP_BYTES`] (counting one more extent-list row for the entry's
    /// content). Called before a file's content is read, so that its
    /// extents are written for the group that holds it.
    fn reserve<W: Write>(&mut self, writer: &mut ArchiveWriter<W>, entry: &Entry) -> Result<(), WriteError> {
        let group = &self.group;
        if group.entries.is_empty() {
            return Ok(());
        }
        let body = GroupHead::SIZE
            + ExtentListRow::SIZE * (group.list.len() + 1)
            + group.entry_bytes
            + entry.group_len(self.captured);
        if group.entries.len() >= self.group_entries || body > GROUP_BYTES {
            self.end_group(writer)?;
        }
        Ok(())
    }

    /// Adds a finished entry to the group (ending the group first when the
    /// entry does not fit, unless its content is already in it), and keeps
    /// what the directory tables need: the runs, their fences, the
    /// directories.
    fn add_entry<W: Write>(&mut self, writer: &mut ArchiveWriter<W>, entry: Entry) -> Result<(), WriteError> {
        if entry.extent_count == 0 {
            self.reserve(writer, &entry)?;
        }
        let group_index = self.tables.groups.len();
        if entry.parent_id != NO_PARENT {
            if entry.parent_id != self.run_parent {
                let index = self.dir_index(entry.parent_id).expect("the parent is an earlier directory");
                self.run_parent = entry.parent_id;
                self.run_dir = index;
                self.tables.dirs[index].first_child_id = entry.entry_id;
                self.run_last_name.clear();
            }
            let dir = &mut self.tables.dirs[self.run_dir];
            if dir.child_count == 0 || self.group.entries.is_empty() {
                dir.fences.push((group_index, entry.entry_id, entry.name.clone()));
            }
            dir.child_count += 1;
            self.run_last_name.clear();
            self.run_last_name.extend_from_slice(&entry.name);
        }
        if entry.kind == EntryKind::Directory {
            self.tables.dirs.push(DirInfo {
                entry_id: entry.entry_id,
                group: group_index,
                child_count: 0,
                first_child_id: 0,
                fences: Vec::new(),
            });
        }
        if let Some(file_ids) = &mut self.file_ids {
            let id = entry.entry_id as usize;
            if file_ids.len() <= id / 64 {
                file_ids.resize(id / 64 + 1, 0);
            }
            if entry.kind == EntryKind::File {
                file_ids[id / 64] |= 1 << (id % 64);
            }
        }
        self.group.entry_bytes += entry.group_len(self.captured);
        self.group.extent_count += entry.extent_count;
        self.group.entries.push(entry);
        self.progress.entry();
        if self.group.entries.len() >= self.group_entries {
            self.end_group(writer)?;
        }
        Ok(())
    }

    /// The index in `tables.dirs` of directory `entry_id`, if it is one.
    fn dir_index(&self, entry_id: u64) -> Option<usize> {
        self.tables.dirs.binary_search_by_key(&entry_id, |d| d.entry_id).ok()
    }

    /// Whether `entry_id` is an earlier regular file (entries from a source).
    fn is_file(&self, entry_id: u64) -> bool {
        let id = entry_id as usize;
        entry_id < self.next_id
            && self.file_ids.as_ref().is_some_and(|ids| ids.get(id / 64).is_some_and(|word| word >> (id % 64) & 1 == 1))
    }

    /// What breaks the entry order of `spec/FORMAT.md` section 8 if `entry`
    /// comes next: a parent whose run has ended, or a name not after the
    /// previous one of the run.
    fn order_fault(&self, entry: &Entry) -> Option<String> {
        if entry.parent_id == NO_PARENT {
            return None;
        }
        if entry.parent_id == self.run_parent {
            return (entry.name <= self.run_last_name).then(|| {
                format!(
                    "name not after \"{}\", the previous name of its folder's run (the entry order of FORMAT.md 8)",
                    strata_format::escaped(&self.run_last_name)
                )
            });
        }
        let dir = &self.tables.dirs[self.dir_index(entry.parent_id)?];
        (dir.child_count > 0).then(|| {
            format!("the run of its folder {} ended before it (the entry order of FORMAT.md 8)", entry.parent_id)
        })
    }

    /// Writes the batch: a `FILES_EXTENTS` record and its new chunks, noted in
    /// the group's extent list.
    fn flush_data<W: Write>(&mut self, writer: &mut ArchiveWriter<W>) -> Result<(), WriteError> {
        if self.batch.extents.is_empty() {
            debug_assert!(self.batch.raw_chunks.is_empty());
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let level = self.level;
        let prepared: Vec<PreparedChunk> = writer
            .pool
            .install(|| batch.raw_chunks.par_iter().map(|raw| prepare_chunk(raw, level, &writer.spares)).collect());
        let mut new_chunks = Vec::new();
        let mut new_by_hash = HashMap::new();
        let mut raw_locations = Vec::with_capacity(prepared.len());
        for chunk in prepared {
            let (location, deduplicated) = writer.locate_chunk(chunk, &mut new_chunks, &mut new_by_hash);
            self.summary.deduplicated_chunks += u64::from(deduplicated);
            raw_locations.push(location);
        }
        let section_id = self.section_id;
        let first_index = self.extents_written;
        let extents_record = writer.position;
        let resolved: Vec<FileExtent> =
            writer.write_announced(RecordType::FilesExtents, new_chunks, &mut self.summary, |resolve| {
                let extents: Vec<FileExtent> = batch
                    .extents
                    .iter()
                    .map(|(extent, loc)| FileExtent {
                        chunk_ref: match *loc {
                            Loc::Stored(offset) => offset,
                            Loc::Raw(i) => resolve(&raw_locations[i]),
                        },
                        ..*extent
                    })
                    .collect();
                (files::encode_file_extents(section_id, first_index, &extents), extents)
            })?;
        self.group.list.push(ExtentListRow { extents_record, first_index });
        self.extents_written += resolved.len() as u64;
        // Small files now have a place: later copies refer to it.
        for &(index, hash) in &batch.packed_small {
            let e = resolved[index];
            self.small_files.entry(hash).or_insert((e.chunk_ref, e.chunk_offset));
        }
        Ok(())
    }

    /// Writes the group being filled: the content not written yet, then its
    /// `FILES_ENTRIES` record.
    fn end_group<W: Write>(&mut self, writer: &mut ArchiveWriter<W>) -> Result<(), WriteError> {
        self.flush_data(writer)?;
        if self.group.entries.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        let first_id = group.entries[0].entry_id;
        let body = files::encode_group(
            self.section_id,
            first_id,
            self.captured,
            self.extent_base,
            &group.list,
            &group.entries,
        );
        let entries_record = writer.write_record(RecordType::FilesEntries, &[&body])?;
        let has_dir = group.entries.iter().any(|e| e.kind == EntryKind::Directory);
        self.tables.groups.push(GroupInfo { entries_record, first_id, has_dir });
        self.extent_base += group.extent_count;
        debug_assert_eq!(self.extent_base, self.extents_written, "a group's extents are written before it");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::timespec;
    use strata_format::files::Timestamp;

    /// Every time a file system gives is recorded as it is: `fstat`'s
    /// nanoseconds, out of range or not, carry into the seconds.
    #[test]
    fn times_are_recorded_exactly_whatever_the_year() {
        for secs in [i64::MIN + 1, -(1 << 31), -1, 0, 1, 9_223_372_037, 15_021_158_400, i64::MAX - 1] {
            for nsec in [0i64, 1, 500_000_000, 999_999_999] {
                assert_eq!(timespec(secs, nsec), Timestamp { secs, nsec: nsec as u32 });
            }
        }
        assert_eq!(timespec(0, -500_000_000), Timestamp { secs: -1, nsec: 500_000_000 });
        assert_eq!(timespec(5, 2_000_000_001), Timestamp { secs: 7, nsec: 1 });
        assert_eq!(timespec(i64::MAX, 1_000_000_000), Timestamp { secs: i64::MAX, nsec: 0 });
    }

    /// The count ahead of a walk gives what the walk then records and reads:
    /// exclusions, a cache folder, a hard link, a sparse file and a symbolic
    /// link included.
    #[test]
    fn the_count_agrees_with_the_walk() {
        use std::sync::atomic::{AtomicU64, Ordering};
        struct Tally(AtomicU64, AtomicU64);
        impl crate::Progress for Tally {
            fn advance(&self, bytes: u64) {
                self.0.fetch_add(bytes, Ordering::Relaxed);
            }
            fn entry(&self) {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
        }
        let root = std::env::temp_dir().join(format!("strata-count-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["a/b", "cache", "skip"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("a/one"), vec![1u8; 5000]).unwrap();
        std::fs::write(root.join("a/b/two"), vec![2u8; 300_000]).unwrap();
        std::fs::hard_link(root.join("a/b/two"), root.join("a/two-again")).unwrap();
        std::fs::write(root.join("a/junk.tmp"), vec![3u8; 7000]).unwrap();
        std::fs::write(root.join("skip/inside"), b"left out by path").unwrap();
        std::fs::write(root.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        std::fs::write(root.join("cache/blob"), vec![4u8; 9000]).unwrap();
        let sparse = std::fs::File::create(root.join("sparse")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&sparse, &[5u8; 4096], 1 << 20).unwrap();
        std::os::unix::fs::symlink("a/one", root.join("link")).unwrap();
        let options = super::TreeOptions {
            excludes: vec!["*.tmp".to_string(), "skip/inside".to_string()],
            exclude_caches: true,
            ..super::TreeOptions::default()
        };
        let counted = super::count_tree(&root, &options, &|_| true).expect("the count completes");
        let tally = Tally(AtomicU64::new(0), AtomicU64::new(0));
        let mut writer =
            crate::ArchiveWriter::new(Vec::new(), crate::WriterOptions::new([7; 16], 0)).expect("a writer");
        let summary = writer.add_tree("t", &root, &options, &tally).expect("the walk completes");
        assert_eq!(counted.entries, summary.entries);
        assert_eq!(tally.1.load(Ordering::Relaxed), summary.entries, "one call per entry");
        assert_eq!(counted.bytes, tally.0.load(Ordering::Relaxed));
        assert!(super::count_tree(&root, &options, &|_| false).is_none(), "a count told to stop gives no total");
        std::fs::remove_dir_all(&root).unwrap();
    }
    /// Writes `root` with `threads` threads and plain tables.
    fn write_plain(root: &std::path::Path, threads: usize) -> Vec<u8> {
        let mut options = crate::WriterOptions::new([9; 16], 5);
        options.compress_tables = false;
        options.threads = threads;
        options.chunk_size = 64 << 10;
        let mut writer = crate::ArchiveWriter::new(Vec::new(), options).expect("a writer");
        let summary = writer.add_tree("t", root, &super::TreeOptions::default(), &crate::NoProgress).expect("walk");
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
        writer.finish().expect("finish").0
    }

    /// The tree's records, checked against the rules of FORMAT.md 8 with the
    /// format crate alone: the entry order, groups and their extent lists,
    /// extents stored once, the per-group FILES_DIR and the FILES_INDEX.
    #[test]
    fn the_tree_is_written_in_runs_with_groups_and_their_tables() {
        use strata_format::files::*;
        use strata_format::record::{RecordHeader, RecordType};
        let root = std::env::temp_dir().join(format!("strata-groups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("b/c/d")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        for i in 0..1500 {
            std::fs::write(root.join(format!("a/f{i:04}")), format!("file {i}")).unwrap();
        }
        std::fs::create_dir_all(root.join("a/sub")).unwrap();
        std::fs::write(root.join("a/sub/x"), vec![7u8; 200_000]).unwrap();
        std::fs::write(root.join("b/c/d/deep"), b"deep").unwrap();
        std::fs::write(root.join("z"), b"zed").unwrap();
        std::fs::hard_link(root.join("z"), root.join("b/link")).unwrap();
        let bytes = write_plain(&root, 1);
        assert_eq!(bytes, write_plain(&root, 3), "the same bytes whatever the thread count");
        std::fs::remove_dir_all(&root).unwrap();

        let mut at = 128usize;
        let mut entries: Vec<Entry> = Vec::new();
        let mut extents: Vec<FileExtent> = Vec::new();
        let mut extent_records: Vec<(u64, u64)> = Vec::new();
        let mut groups: Vec<(u64, EntryGroup)> = Vec::new();
        let mut dirs: Vec<(u64, GroupDir)> = Vec::new();
        let mut index = None;
        let mut end = None;
        while at < bytes.len() {
            let header = RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
            let body = &bytes[at + 32..at + 32 + header.body_length as usize];
            match RecordType::from_code(header.record_type).unwrap() {
                RecordType::FilesExtents => {
                    assert_eq!(header.flags, 0);
                    let parsed = parse_file_extents(body).unwrap();
                    assert_eq!(parsed.head.first_index, extents.len() as u64);
                    assert!(parsed.extents.len() <= 4096);
                    extent_records.push((at as u64, parsed.head.first_index));
                    extents.extend(parsed.extents);
                }
                RecordType::FilesEntries => {
                    let group = parse_group(body).unwrap();
                    assert_eq!(group.head.first_id, entries.len() as u64);
                    assert!(group.head.count as usize <= 1024);
                    assert!(body.len() <= 256 << 10);
                    assert_eq!(group.head.captured, Captured::KNOWN);
                    let base: u64 = entries.iter().map(|e| e.extent_count).sum();
                    assert_eq!(group.head.extent_base, base);
                    let mine: u64 = group.entries.iter().map(|e| e.as_ref().unwrap().extent_count).sum();
                    let listed: Vec<(u64, u64)> = extent_records
                        .iter()
                        .copied()
                        .filter(|&(_, first)| {
                            let next =
                                extent_records.iter().find(|r| r.1 > first).map_or(extents.len() as u64, |r| r.1);
                            first < base + mine && next > base
                        })
                        .collect();
                    let list: Vec<(u64, u64)> =
                        group.extent_list.iter().map(|r| (r.extents_record, r.first_index)).collect();
                    assert_eq!(list, listed);
                    entries.extend(group.entries.iter().map(|e| e.clone().unwrap()));
                    groups.push((at as u64, group));
                }
                RecordType::FilesEnd => end = Some(FilesEnd::decode(body.try_into().unwrap())),
                RecordType::FilesDir => dirs.push((at as u64, GroupDir::parse(body).unwrap())),
                RecordType::FilesIndex => index = Some(parse_files_index(body).unwrap().1),
                _ => {}
            }
            at += 32 + body.len();
        }
        assert!(groups.len() >= 2, "1,500 entries take two groups at least");
        let end = end.unwrap();
        assert_eq!(end.extent_count, extents.len() as u64);
        assert_eq!(end.entry_count, entries.len() as u64);
        // Entry order: runs consecutive, names increasing, the directory first.
        let mut ended = std::collections::HashSet::new();
        let mut previous: Option<&Entry> = None;
        for e in &entries[1..] {
            assert!(entries[e.parent_id as usize].kind == EntryKind::Directory);
            match previous {
                Some(p) if p.parent_id == e.parent_id => assert!(p.name < e.name),
                Some(p) => {
                    ended.insert(p.parent_id);
                    assert!(!ended.contains(&e.parent_id));
                }
                None => {}
            }
            previous = Some(e);
        }
        let names: Vec<&[u8]> = entries.iter().filter(|e| e.parent_id == 0).map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"z"]);
        // The run of the root comes first, then a's, then a/sub's, then b's.
        assert_eq!(entries[4].parent_id, 1);
        let link = entries.iter().find(|e| e.kind == EntryKind::Hardlink).unwrap();
        assert_eq!(entries[link.link_id as usize].name, b"z", "first seen in walk order is the file");
        assert_eq!(entries[link.link_id as usize].ino, link.ino);
        assert!(entries.iter().all(|e| e.ino != 0));
        // Extents stored once, in entry order, counted by their entries.
        let mut next = 0usize;
        for e in &entries {
            let mine = &extents[next..next + e.extent_count as usize];
            assert!(mine.iter().all(|x| x.entry_id == e.entry_id));
            assert_eq!(mine.iter().map(|x| x.length).sum::<u64>(), e.size);
            next += e.extent_count as usize;
        }
        assert_eq!(next, extents.len());
        // FILES_DIR: one per group with a directory, last group first.
        let with_dirs: Vec<u64> = groups
            .iter()
            .filter(|(_, g)| g.entries.iter().any(|e| e.as_ref().unwrap().kind == EntryKind::Directory))
            .map(|(offset, _)| *offset)
            .collect();
        let described: Vec<u64> = dirs.iter().rev().map(|(_, d)| d.entries_record).collect();
        assert_eq!(described, with_dirs);
        let dir_of = |group: u64| dirs.iter().find(|(_, d)| d.entries_record == group).map_or(0, |(o, _)| *o);
        let group_of = |id: u64| groups.iter().rfind(|(_, g)| g.head.first_id <= id).unwrap();
        for (_, table) in &dirs {
            let (_, group) = groups.iter().find(|(o, _)| *o == table.entries_record).unwrap();
            let own: Vec<u64> = group
                .entries
                .iter()
                .map(|e| e.as_ref().unwrap())
                .filter(|e| e.kind == EntryKind::Directory)
                .map(|e| e.entry_id)
                .collect();
            assert_eq!(table.locators.iter().map(|l| l.entry_id).collect::<Vec<_>>(), own);
            for (i, locator) in table.locators.iter().enumerate() {
                let run: Vec<&Entry> =
                    entries.iter().filter(|e| e.parent_id == locator.entry_id && e.entry_id > 0).collect();
                assert_eq!(locator.child_count, run.len() as u64);
                assert_eq!(locator.first_child_id, run.first().map_or(0, |e| e.entry_id));
                let mut expected = Vec::new();
                for e in &run {
                    let (offset, g) = group_of(e.entry_id);
                    if expected.last().map(|&(o, _, _, _)| o) != Some(*offset) {
                        expected.push((*offset, dir_of(*offset), e.entry_id, e.name.clone()));
                    }
                    let _ = g;
                }
                let fences: Vec<(u64, u64, u64, Vec<u8>)> = table
                    .fences_of(i)
                    .unwrap()
                    .iter()
                    .map(|(f, name)| (f.entries_record, f.dir_record, f.first_child_id, name.clone()))
                    .collect();
                assert_eq!(fences, expected);
            }
        }
        let rows: Vec<(u64, u64, u64)> =
            index.unwrap().iter().map(|r| (r.entries_record, r.dir_record, r.first_id)).collect();
        let expected: Vec<(u64, u64, u64)> = groups.iter().map(|(o, g)| (*o, dir_of(*o), g.head.first_id)).collect();
        assert_eq!(rows, expected);
    }
    /// Sets a fixed mode and fixed times on everything under `root`, deepest
    /// first, so an archive of it depends on its shape and content alone.
    fn pin_tree(root: &std::path::Path) {
        use rustix::fs::{AtFlags, Timespec, Timestamps};
        fn all(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                    all(&path, out);
                }
                out.push(path);
            }
        }
        let mut paths = Vec::new();
        all(root, &mut paths);
        paths.push(root.to_path_buf());
        for (i, path) in paths.iter().enumerate() {
            let meta = std::fs::symlink_metadata(path).unwrap();
            if !meta.file_type().is_symlink() {
                let mode = if meta.is_dir() { 0o755 } else { 0o640 };
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            }
            let at = Timespec { tv_sec: 1_600_000_000 + i as i64, tv_nsec: 250 };
            let times = Timestamps { last_access: at, last_modification: at };
            rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }

    /// Archives of generated trees, with fixed options, hash to what the
    /// walk wrote before it became an `EntrySource` (issue 13): the folder
    /// source must give the same entries, content and warnings in the same
    /// order. The hashes were computed by the walk inside `add_tree`.
    #[test]
    fn archives_of_fixed_trees_keep_their_bytes() {
        use strata_format::files::Captured;
        let root = std::env::temp_dir().join(format!("strata-golden-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |root: &std::path::Path, tree: &super::TreeOptions, threads: usize, group_entries: usize| {
            let mut options = crate::WriterOptions::new([3; 16], 1_700_000_000_000_000_000);
            options.threads = threads;
            options.chunk_size = 64 << 10;
            options.group_entries = group_entries;
            let mut writer = crate::ArchiveWriter::new(Vec::new(), options).expect("a writer");
            let summary = writer.add_tree("t", root, tree, &crate::NoProgress).expect("walk");
            let warnings: Vec<String> = summary.warnings.iter().map(|w| w.message.clone()).collect();
            (blake3::hash(&writer.finish().expect("finish").0).to_hex().to_string(), summary.entries, warnings)
        };
        let pinned = |extra: super::TreeOptions| super::TreeOptions {
            capture: Captured::HOLES,
            fixed_owner: Some((1000, 100)),
            ..extra
        };

        // Mixed: exclusions, a cache folder, a hard link, a sparse file, a
        // symbolic link, an empty file, a file larger than a chunk.
        for dir in ["a/b", "cache", "skip", "empty-dir"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("a/one"), vec![1u8; 5000]).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(root.join("a/b/two"), &big).unwrap();
        std::fs::hard_link(root.join("a/b/two"), root.join("a/two-again")).unwrap();
        std::fs::write(root.join("a/junk.tmp"), vec![3u8; 7000]).unwrap();
        std::fs::write(root.join("a/empty"), b"").unwrap();
        std::fs::write(root.join("a/same-as-one"), vec![1u8; 5000]).unwrap();
        std::fs::write(root.join("skip/inside"), b"left out by path").unwrap();
        std::fs::write(root.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        std::fs::write(root.join("cache/blob"), vec![4u8; 9000]).unwrap();
        let sparse = std::fs::File::create(root.join("sparse")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&sparse, &[5u8; 4096], 1 << 20).unwrap();
        drop(sparse);
        std::os::unix::fs::symlink("a/one", root.join("link")).unwrap();
        pin_tree(&root);
        let mixed = pinned(super::TreeOptions {
            excludes: vec!["*.tmp".to_string(), "skip/inside".to_string()],
            exclude_caches: true,
            ..super::TreeOptions::default()
        });
        let got = write(&root, &mixed, 1, 1024);
        assert_eq!(got, write(&root, &mixed, 2, 1024), "the thread count changes nothing");
        assert_eq!(got.0, "ea887b2ad41917cd1aac3ff20d91c27fa35b91a217c8d9a95553d220354f01a6", "mixed tree: {got:?}");
        std::fs::remove_dir_all(&root).unwrap();

        // Wide and deep: many small files in several groups, nested runs.
        for i in 0..40 {
            std::fs::create_dir_all(root.join(format!("d{:02}/e{}/f", i % 7, i % 3))).unwrap();
            std::fs::write(root.join(format!("d{:02}/e{}/f/x{i}", i % 7, i % 3)), format!("deep {i}")).unwrap();
        }
        for i in 0..300 {
            std::fs::write(root.join(format!("d0{}/s{i:03}", i % 5)), vec![(i % 251) as u8; i * 37]).unwrap();
        }
        pin_tree(&root);
        let got = write(&root, &pinned(super::TreeOptions::default()), 2, 64);
        assert_eq!(got.0, "df414c24c5198dd9a78e7d0dd7d849d2e93d92798050dd503d91282da5529ff3", "wide tree: {got:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Entries from a source must come in the entry order of FORMAT.md 8:
    /// the writer refuses a name out of its run's order and a run that
    /// starts again, and takes the same entries in order.
    #[test]
    fn entries_from_a_source_out_of_the_entry_order_are_refused() {
        use strata_format::files::{Entry, EntryKind, NO_PARENT};
        struct Model(std::vec::IntoIter<Entry>);
        impl super::EntrySource for Model {
            fn next_entry(&mut self) -> std::io::Result<Option<super::SourceEntry>> {
                Ok(self.0.next().map(|entry| super::SourceEntry {
                    path: entry.name.clone(),
                    entry,
                    data_ranges: Vec::new(),
                }))
            }
            fn read_content(&mut self, _buf: &mut [u8], _offset: u64) -> std::io::Result<usize> {
                Ok(0)
            }
        }
        let entry = |id: u64, parent: u64, kind: EntryKind, name: &[u8]| Entry {
            entry_id: id,
            parent_id: parent,
            ..Entry::bare(kind, name)
        };
        let write = |entries: Vec<Entry>| {
            let mut writer =
                crate::ArchiveWriter::new(Vec::new(), crate::WriterOptions::new([7; 16], 0)).expect("a writer");
            writer.add_tree_from("t", 0, &mut Model(entries.into_iter()), &crate::NoProgress).map(|_| ())
        };
        let root = || entry(0, NO_PARENT, EntryKind::Directory, b"");
        // In order: the root's run (a, d), then d's run.
        let good = vec![
            root(),
            entry(1, 0, EntryKind::Fifo, b"a"),
            entry(2, 0, EntryKind::Directory, b"d"),
            entry(3, 2, EntryKind::Fifo, b"x"),
        ];
        assert!(write(good).is_ok());
        let unsorted = vec![root(), entry(1, 0, EntryKind::Fifo, b"b"), entry(2, 0, EntryKind::Fifo, b"a")];
        assert!(write(unsorted).is_err(), "a name before the previous one of its run");
        let repeated = vec![root(), entry(1, 0, EntryKind::Fifo, b"a"), entry(2, 0, EntryKind::Fifo, b"a")];
        assert!(write(repeated).is_err(), "a repeated name");
        let split = vec![
            root(),
            entry(1, 0, EntryKind::Directory, b"d"),
            entry(2, 1, EntryKind::Fifo, b"x"),
            entry(3, 0, EntryKind::Fifo, b"z"),
        ];
        assert!(write(split).is_err(), "the root's run starts again after d's");
    }
}
