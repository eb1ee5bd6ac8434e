//! The folder walk: [`FolderSource`], the [`EntrySource`] behind
//! [`ArchiveWriter::add_tree`](crate::ArchiveWriter::add_tree)(crate::ArchiveWriter::add_tree), owns
//! everything a file system adds to a file tree (`spec/FORMAT.md` section 8
//! for the entries and their order, section 14 for the walk that gives it):
//! listing by directory handles with `O_NOATIME`, exclusions, `CACHEDIR.TAG`,
//! one file system, owner names, extended attributes, hard links, holes,
//! the files cache of an incremental archive (section 15.5), and the checks
//! that a directory or file did not change under the walk. The encoder in
//! `tree.rs` knows none of it. [`count_tree`] counts the same walk ahead.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use strata_format::files::{
    self, Captured, Entry, EntryFlags, EntryKind, Timestamp, Xattr, DIGEST_LEN, EMPTY_DIGEST, NO_PARENT,
};

use crate::tree::{EntrySource, ReusedContent, SourceEntry, TreeWarning};
use crate::WriteError;

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
    /// The parent's tables of the section of the same name (`spec/FORMAT.md`
    /// 5.3): the child's groups and directory tables are stored against them.
    pub parent_tables: Option<std::sync::Arc<dyn crate::ParentTables>>,
}

impl std::fmt::Debug for dyn crate::ParentTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParentTables")
    }
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
            parent_tables: None,
        }
    }
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
pub(crate) fn timespec(secs: i64, nsecs: i64) -> Timestamp {
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
#[derive(Clone)]
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

/// What a tree holds, counted ahead of writing it so that a progress display
/// can show a total, a file count and the time left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeTotals {
    /// The entries [`ArchiveWriter::add_tree`](crate::ArchiveWriter::add_tree) would record, the root included.
    pub entries: u64,
    /// The content bytes it would read: allocated bytes for a sparse file when
    /// holes are captured, each hard-linked file once.
    pub bytes: u64,
}

/// Counts what [`ArchiveWriter::add_tree`](crate::ArchiveWriter::add_tree) would record of the folder `root`
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

/// The directory whose run is being given: its handle, its listing and the
/// next child to give.
struct Run {
    dir: File,
    id: (u64, u64),
    entry_id: u64,
    relative_len: usize,
    children: Vec<CString>,
    next: usize,
    subdirs: Vec<Subdir>,
}

/// The regular file whose content is being read.
struct Current {
    file: File,
    size: u64,
    mtime: Timestamp,
    relative: Vec<u8>,
}

/// An [`EntrySource`] that walks the folder `root` in the entry order of
/// `spec/FORMAT.md` section 8: it lists a directory, sorts its children
/// bytewise, gives the whole run (the files with their content), then
/// descends into the run's directories in order, depth first. What cannot
/// be read is left out or recorded as unreadable, with a warning.
///
/// Memory, as the walk inside `add_tree` always held: the listing of the
/// directory whose run is being given, and for each directory on the path
/// the names of its subdirectories still to descend into; at most 128
/// directory handles open (fewer under a low descriptor limit), one file
/// open at a time.
///
/// ```no_run
/// use strata_writer::{ArchiveWriter, FolderSource, NoProgress, TreeOptions, WriterOptions};
/// # fn main() -> Result<(), strata_writer::WriteError> {
/// let mut writer = ArchiveWriter::new(Vec::new(), WriterOptions::new([1; 16], 0))?;
/// let options = TreeOptions { excludes: vec!["*.tmp".into()], ..TreeOptions::default() };
/// // The same as `writer.add_tree("home", "/home".as_ref(), &options, &NoProgress)`.
/// let mut source = FolderSource::new("/home".as_ref(), &options)?;
/// let summary = writer.add_tree_from("home", options.capture, &mut source, &NoProgress)?;
/// println!("{} entries, {} warnings", summary.entries, summary.warnings.len());
/// # Ok(()) }
/// ```
pub struct FolderSource<'a> {
    options: &'a TreeOptions,
    root: std::path::PathBuf,
    root_meta: Meta,
    excludes: globset::GlobSet,
    excludes_by_name: globset::GlobSet,
    names: Names,
    next_id: u64,
    hardlinks: HashMap<(u64, u64), u64>,
    started: bool,
    run: Option<Run>,
    stack: Vec<Frame>,
    open_allowed: usize,
    /// Frames below this index have had their handles closed.
    open_from: usize,
    /// The path of the entry given last, relative to the root; every frame's
    /// own path is a prefix of it.
    relative: Vec<u8>,
    current: Option<Current>,
    reused: Option<ReusedContent>,
    warnings: Vec<TreeWarning>,
}

impl std::fmt::Debug for FolderSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderSource").field("root", &self.root).field("next_id", &self.next_id).finish()
    }
}

impl<'a> FolderSource<'a> {
    /// A walk of the folder `root` (followed if it is a symbolic link) with
    /// `options`. Fails if `root` is not a directory or a pattern is not a
    /// valid glob.
    pub fn new(root: &Path, options: &'a TreeOptions) -> Result<FolderSource<'a>, WriteError> {
        let (excludes, excludes_by_name) = build_excludes(&options.excludes)?;
        // Followed, as the user named it.
        let root_meta = stat_at(rustix::fs::CWD, root, AtFlags::empty()).map_err(|source| WriteError::Source {
            what: format!("tree at {}", root.display()),
            offset: 0,
            source,
        })?;
        if kind_of(root_meta.mode) != EntryKind::Directory {
            return Err(WriteError::Invalid {
                what: "tree root",
                detail: format!("{} is not a directory", root.display()),
            });
        }
        Ok(FolderSource {
            options,
            root: root.to_path_buf(),
            root_meta,
            excludes,
            excludes_by_name,
            names: Names::default(),
            next_id: 0,
            hardlinks: HashMap::new(),
            started: false,
            run: None,
            stack: Vec::new(),
            open_allowed: open_dirs_allowed(),
            open_from: 0,
            relative: Vec::new(),
            current: None,
            reused: None,
            warnings: Vec::new(),
        })
    }

    fn warn(&mut self, relative: &[u8], message: impl Into<String>) {
        self.warnings.push(TreeWarning { path: relative.to_vec(), message: message.into() });
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

    /// Lists the directory `entry_id` (open as `handle`, the walk's current
    /// path its path) to give its run next; leaves it out with a warning
    /// when it cannot be listed.
    fn start_run(&mut self, handle: io::Result<File>, id: (u64, u64), entry_id: u64) {
        let listed = handle.and_then(|dir| list_directory(&dir).map(|listed| (dir, listed)));
        let relative = self.relative.clone();
        let (dir, children) = match listed {
            Ok((dir, (children, None))) => (dir, children),
            Ok((dir, (children, Some(e)))) => {
                self.warn(&relative, format!("directory not fully listed: {e}"));
                (dir, children)
            }
            Err(e) => {
                self.warn(&relative, format!("directory not listed: {e}; its content is skipped"));
                return;
            }
        };
        let children = if self.options.exclude_caches && is_cache_dir(&dir, &children) {
            children.into_iter().filter(|name| name.as_bytes() == CACHEDIR_TAG).collect()
        } else {
            children
        };
        let relative_len = self.relative.len();
        self.run = Some(Run { dir, id, entry_id, relative_len, children, next: 0, subdirs: Vec::new() });
    }

    /// Gives the frame on top of the stack, once a frame below it is done,
    /// its handle back if it was closed, reopened as `below`'s parent; if
    /// that fails or is not the same directory (the tree was moved while it
    /// was read), the rest of it is skipped with a warning.
    fn back_to_parent(&mut self, below: Option<File>) {
        let Some(parent) = self.stack.last_mut() else { return };
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
                parent.subdirs.clear();
                let path = self.relative[..parent.relative_len.min(self.relative.len())].to_vec();
                self.warn(&path, format!("directory not reopened: {e}; the rest of it is skipped"));
            }
            Err(_) => {}
        }
    }

    /// The entry for `name` in `dir`, the walk's current path its path, in
    /// the run of `parent_id`, unless it is left out; a directory to descend
    /// into later is added to `subdirs`.
    fn visit(
        &mut self,
        dir: BorrowedFd<'_>,
        parent_id: u64,
        name: &CStr,
        subdirs: &mut Vec<Subdir>,
    ) -> Option<SourceEntry> {
        let relative = self.relative.clone();
        // Matching copies the path even against no pattern, which costs a deep
        // tree its depth for every entry.
        if (!self.excludes.is_empty() && self.excludes.is_match(OsStr::from_bytes(&relative)))
            || (!self.excludes_by_name.is_empty() && self.excludes_by_name.is_match(OsStr::from_bytes(name.to_bytes())))
        {
            return None;
        }
        let meta = match stat_at(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(meta) => meta,
            Err(e) => {
                self.warn(&relative, format!("not read: {e}"));
                return None;
            }
        };
        if self.options.skip_inodes.contains(&meta.id()) {
            return None;
        }
        let at = XattrsFrom::At(dir, name);
        let name_bytes = name.to_bytes().to_vec();
        match kind_of(meta.mode) {
            EntryKind::Directory => {
                let entry = self.entry_for(&meta, at, name_bytes, parent_id, &relative);
                // Like tar: a mount point is kept, its content is not.
                if !(self.options.one_file_system && meta.dev != self.root_meta.dev) {
                    subdirs.push(Subdir { name: name.to_owned(), entry_id: entry.entry_id, id: meta.id() });
                }
                Some(SourceEntry::new(entry, relative))
            }
            EntryKind::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new());
                let mut entry = self.entry_for(&meta, at, name_bytes, parent_id, &relative);
                match target {
                    Ok(target) => {
                        entry.target = target.into_bytes();
                        entry.size = entry.target.len() as u64;
                    }
                    Err(e) => {
                        self.warn(&relative, format!("symbolic link not read: {e}"));
                        self.next_id -= 1;
                        return None;
                    }
                }
                if entry.target.is_empty() || entry.target.len() > files::MAX_TARGET as usize {
                    self.warn(&relative, "symbolic link target is empty or longer than 4095 bytes: skipped");
                    self.next_id -= 1;
                    return None;
                }
                Some(SourceEntry::new(entry, relative))
            }
            EntryKind::File => {
                if meta.nlink > 1 {
                    if let Some(&first) = self.hardlinks.get(&meta.id()) {
                        let mut entry = self.entry_for(&meta, at, name_bytes, parent_id, &relative);
                        entry.kind = EntryKind::Hardlink;
                        entry.link_id = first;
                        return Some(SourceEntry::new(entry, relative));
                    }
                }
                let cached = self.options.files_cache.as_ref().and_then(|cache| {
                    cache.unchanged(&relative, meta.size, meta.mtime, meta.ctime, meta.ino, meta.dev).map(|cached| {
                        ReusedContent { size: cached.size, digest: cached.digest, extents: cached.extents.clone() }
                    })
                });
                if let Some(reused) = cached {
                    let entry = self.entry_for(&meta, at, name_bytes, parent_id, &relative);
                    if meta.nlink > 1 {
                        self.hardlinks.insert(meta.id(), entry.entry_id);
                    }
                    self.reused = Some(reused);
                    return Some(SourceEntry::new(entry, relative));
                }
                let file = open_content(dir, name);
                let xattrs = file.as_ref().map_or(at, XattrsFrom::Handle);
                let mut entry = self.entry_for(&meta, xattrs, name_bytes, parent_id, &relative);
                if meta.nlink > 1 {
                    self.hardlinks.insert(meta.id(), entry.entry_id);
                }
                let file = match file {
                    Ok(file) => file,
                    Err(e) => {
                        self.warn(&relative, format!("content not read: {e}"));
                        // No content: size 0 and the digest of nothing, as for an empty file.
                        entry.flags |= EntryFlags::UNREADABLE;
                        entry.digest = EMPTY_DIGEST;
                        return Some(SourceEntry::new(entry, relative));
                    }
                };
                let size = meta.size;
                entry.size = size;
                let data_ranges = if self.options.capture & Captured::HOLES != 0 {
                    data_ranges(&file, size)
                } else {
                    vec![(0, size)]
                };
                self.current = Some(Current { file, size, mtime: meta.mtime, relative: relative.clone() });
                Some(SourceEntry { entry, path: relative, data_ranges })
            }
            _ => {
                let entry = self.entry_for(&meta, at, name_bytes, parent_id, &relative);
                Some(SourceEntry::new(entry, relative))
            }
        }
    }
}

impl EntrySource for FolderSource<'_> {
    fn next_entry(&mut self) -> io::Result<Option<SourceEntry>> {
        self.current = None;
        self.reused = None;
        if !self.started {
            self.started = true;
            let root = self.root.clone();
            let meta = self.root_meta.clone();
            let handle = open_root(&root, &meta);
            let xattrs = handle.as_ref().map_or(XattrsFrom::Path(&root), XattrsFrom::Handle);
            let entry = self.entry_for(&meta, xattrs, Vec::new(), NO_PARENT, b"");
            self.start_run(handle, meta.id(), entry.entry_id);
            return Ok(Some(SourceEntry::new(entry, Vec::new())));
        }
        loop {
            if let Some(mut run) = self.run.take() {
                if run.next < run.children.len() {
                    let name = std::mem::take(&mut run.children[run.next]);
                    run.next += 1;
                    self.relative.truncate(run.relative_len);
                    if !self.relative.is_empty() {
                        self.relative.push(b'/');
                    }
                    self.relative.extend_from_slice(name.to_bytes());
                    let given = self.visit(run.dir.as_fd(), run.entry_id, &name, &mut run.subdirs);
                    self.run = Some(run);
                    if given.is_some() {
                        return Ok(given);
                    }
                    continue;
                }
                self.relative.truncate(run.relative_len);
                if !run.subdirs.is_empty() {
                    let Run { dir, id, relative_len, mut subdirs, .. } = run;
                    subdirs.reverse();
                    self.stack.push(Frame { dir: Some(dir), id, relative_len, subdirs });
                    if self.stack.len() - self.open_from > self.open_allowed {
                        self.stack[self.open_from].dir = None;
                        self.open_from += 1;
                    }
                }
                continue;
            }
            let Some(frame) = self.stack.last_mut() else { return Ok(None) };
            let next = match &frame.dir {
                Some(dir) => frame.subdirs.pop().map(|sub| (dir.as_fd(), sub)),
                None => None,
            };
            let Some((dir, sub)) = next else {
                let done = self.stack.pop().and_then(|done| done.dir);
                self.back_to_parent(done);
                self.open_from = self.open_from.min(self.stack.len().saturating_sub(1));
                continue;
            };
            self.relative.truncate(frame.relative_len);
            if !self.relative.is_empty() {
                self.relative.push(b'/');
            }
            self.relative.extend_from_slice(sub.name.to_bytes());
            // Opened only now, and checked to be the directory recorded.
            let handle = open_at(dir, sub.name.as_c_str(), OFlags::DIRECTORY | OFlags::NOFOLLOW)
                .and_then(|handle| same_directory(handle, sub.id, "replaced since it was recorded"));
            self.start_run(handle, sub.id, sub.entry_id);
        }
    }

    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &self.current {
            Some(current) => read_at_most(&current.file, buf, offset),
            None => Ok(0),
        }
    }

    fn reused_content(&mut self) -> Option<ReusedContent> {
        self.reused.take()
    }

    fn parent_copies(&self) -> Option<std::sync::Arc<crate::FilesCache>> {
        self.options.files_cache.clone()
    }

    fn parent_tables(&self) -> Option<std::sync::Arc<dyn crate::ParentTables>> {
        self.options.parent_tables.clone()
    }

    /// A file that changed while it was read is kept as read, and said so.
    fn content_read(&mut self, ended_early: bool) -> u8 {
        let Some(Current { file, size, mtime, relative }) = self.current.take() else { return 0 };
        match file.metadata() {
            Ok(after)
                if !ended_early && after.len() == size && timespec(after.mtime(), after.mtime_nsec()) == mtime =>
            {
                0
            }
            Ok(after) => {
                self.warn(
                    &relative,
                    format!("changed while it was read (size {size} -> {}); kept as read", after.len()),
                );
                EntryFlags::CHANGED_WHILE_READ
            }
            Err(e) => {
                self.warn(&relative, format!("not checked after reading: {e}"));
                0
            }
        }
    }

    fn take_warnings(&mut self) -> Vec<TreeWarning> {
        std::mem::take(&mut self.warnings)
    }
}
