//! Extracting a file tree to a folder, safely and in the specified restore order.
//!
//! # Security
//!
//! Nothing is created, written or changed outside the destination folder. Every
//! path is resolved component by component from a handle on the destination with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, so a symbolic link extracted earlier (or
//! already present) is never followed; names that are empty, `.`, `..` or hold
//! `/` are refused, as are duplicate names and hard links to anything but an
//! earlier regular file of the same section. A refused entry is reported by path
//! and the rest goes on; the entries below a refused directory are refused too.
//!
//! Files are written under a temporary name in their folder, given their owner,
//! extended attributes, mode and times, and only then renamed into place: an
//! interrupted extraction leaves no truncated file under a real name.
//!
//! # Threads
//!
//! One thread walks the entries and does everything that decides what goes
//! where: directories, symbolic links, devices, hard links, every check above,
//! and at the end the directories' modes and times, deepest first. Only the
//! regular files' content is handed to a pool of [`ExtractOptions::threads`]
//! threads (`std::thread::scope`, no runtime): decoding zstd, checking BLAKE3
//! and writing are where the time goes, and they need nothing from other files.
//! Each file is handed out with its directory's handle, its name checked and
//! whatever stood there dealt with, so a thread creates, writes, renames and
//! gives metadata through that handle (`openat`), and the safety rules stay
//! in one place.
//!
//! Files go out in batches, in walk order, cut where a file starts a new chunk
//! (small files are packed many to a chunk: a chunk split between two threads
//! is decoded twice) once a batch holds 256 files, 16 MiB or files of 16
//! directories; each thread keeps the last chunk it decoded. At most as many
//! batches wait as there are threads, so memory and open handles stay bounded
//! whatever the tree. A hard link waits for its file to be written; what the
//! threads report is sorted back into walk order, so the report and the tree
//! are the same for any number of threads. A damaged chunk is a warning for
//! each file in it; an error of the destination (full, read-only) or a cancel
//! stops every thread, and files not started are not written; when the walk
//! itself fails, files already handed out are still written.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, XattrFlags};
use strata_format::files::{Captured, Entry, EntryKind, Timestamp, NO_PARENT};

use strata_format::files::FileExtent;

use crate::{Archive, Error, PathEntry, Piece, ReadAt, TreeSection};

/// How owners are restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// As root: restore them (by name where the name exists here, else by number);
    /// otherwise leave files owned by the user extracting (GNU tar's default).
    Auto,
    /// Restore the stored numbers, ignoring names (`--numeric-owner`).
    Numeric,
    /// Never change owners.
    Never,
}

/// How to extract: [`ExtractOptions::default`] extracts everything, restores
/// owners as root, and replaces nothing.
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Replace files that already exist (never follows a symbolic link to do so).
    pub overwrite: bool,
    /// Whose files they become ([`Owners`]).
    pub owners: Owners,
    /// Only these paths (and what is below them, and their parent directories).
    pub select: Vec<Vec<u8>>,
    /// Set from elsewhere (a signal handler) to stop: the file being written is
    /// removed, nothing is left under a temporary name, and `extract` fails
    /// with an error of kind [`io::ErrorKind::Interrupted`].
    pub cancel: Option<&'static std::sync::atomic::AtomicBool>,
    /// Counters the extraction advances as it goes, for a progress display.
    pub progress: Option<std::sync::Arc<ExtractProgress>>,
    /// Leave out this many leading path components (`tar --strip-components`):
    /// entries no deeper than that are not created, and what is below them
    /// goes that many levels up.
    pub strip_components: u32,
    /// Threads that decode, check and write regular files' content, besides
    /// the one that walks the entries; 1 writes content on the walking thread.
    /// The default is one per core ([`std::thread::available_parallelism`]).
    /// The result is the same whatever the number.
    pub threads: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            overwrite: false,
            owners: Owners::Auto,
            select: Vec::new(),
            cancel: None,
            progress: None,
            strip_components: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// How far an extraction has come: entries done and content bytes written.
#[derive(Debug, Default)]
pub struct ExtractProgress {
    /// Entries handed to the extraction so far (selected or not refused).
    pub entries: AtomicU64,
    /// Content bytes written so far (holes included).
    pub bytes: AtomicU64,
}

/// One entry that was not extracted, or not completely.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The entry's path in the source, relative to its root.
    pub path: Vec<u8>,
    /// Why, in words.
    pub reason: String,
}

/// What an extraction did: every list is in the order of the entries (the
/// walk's), whatever the number of threads.
#[derive(Clone, Debug, Default)]
pub struct ExtractReport {
    /// Entries extracted (the root included).
    pub entries: u64,
    /// Content bytes of the regular files extracted.
    pub bytes: u64,
    /// Entries refused for safety or because they already exist.
    pub refused: Vec<Refusal>,
    /// Entries extracted with a problem (content that failed its check, metadata
    /// that could not be applied).
    pub warnings: Vec<Refusal>,
    /// Selected paths that the archive does not hold.
    pub not_found: Vec<Vec<u8>>,
}

fn ts(t: Timestamp) -> Timespec {
    Timespec { tv_sec: t.secs, tv_nsec: t.nsec as _ }
}

/// The times to set: `mtime`, and `atime` when the section captured it (else
/// left as extraction made it, as tar does).
fn times(entry: &Entry, captured: u64) -> Timestamps {
    let last_access = if captured & Captured::ATIME != 0 {
        ts(entry.atime)
    } else {
        Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT }
    };
    Timestamps { last_access, last_modification: ts(entry.mtime) }
}

/// The recorded times the destination did not keep (`spec/FORMAT.md` 8.7,
/// "Times the destination cannot hold"), as a warning, from what it holds now.
fn times_kept(entry: &Entry, captured: u64, st: &rustix::fs::Stat) -> Option<String> {
    let kept = |secs: i64, nsec: i64| Timestamp { secs, nsec: nsec.clamp(0, 999_999_999) as u32 };
    let mut differ = Vec::new();
    let mtime = kept(seconds(st.st_mtime), st.st_mtime_nsec as i64);
    if mtime != entry.mtime {
        differ.push(format!("mtime recorded {}, the destination keeps {mtime}", entry.mtime));
    }
    let atime = kept(seconds(st.st_atime), st.st_atime_nsec as i64);
    if captured & Captured::ATIME != 0 && atime != entry.atime {
        differ.push(format!("atime recorded {}, the destination keeps {atime}", entry.atime));
    }
    (!differ.is_empty()).then(|| differ.join("; "))
}

/// A `stat` time in seconds as an `i64`: the field is an `i64` on some
/// targets and a narrower C `long` on others, where a cast would be flagged
/// as needless on the first.
fn seconds(secs: impl Into<i64>) -> i64 {
    secs.into()
}

/// User or group ids by name, from `/etc/passwd` or `/etc/group`.
type IdsByName = HashMap<Vec<u8>, u32>;

fn user_ids(path: &str) -> IdsByName {
    let Ok(text) = std::fs::read(path) else { return HashMap::new() };
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
            let id = std::str::from_utf8(fields.get(2)?).ok()?.parse().ok()?;
            Some((fields.first()?.to_vec(), id))
        })
        .collect()
}

/// Where the content of regular files comes from: an archive's chunks, or a
/// file system inside an image. Extraction knows nothing else of its source.
pub trait FileContent {
    /// Hands the content of the regular file `entry`, at `path` of the
    /// source, to `piece`, front to back, as data at its offset or holes; an
    /// error for content that cannot be read or fails its check.
    fn content(
        &self,
        path: &[u8],
        entry: &Entry,
        piece: &mut dyn FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error>;
}

/// A decoded chunk's bytes a content thread keeps, with its record offset:
/// small files packed many to a chunk are read from it without decoding it
/// again.
type Held = Option<(u64, Arc<Vec<u8>>)>;

/// Content as the writers of files read it: [`FileContent`], plus what a
/// thread keeps between files ([`Held`]) and the extents known ahead, for
/// cutting batches at chunk starts.
trait Source {
    /// Gives `entry` its extents when they can be known before its content
    /// is read (left empty otherwise, or when they cannot be read: the
    /// content read then reports it).
    fn find_extents(&self, _entry: &mut Entry) {}

    /// [`FileContent::content`], with the chunk kept by the calling thread.
    fn content(
        &self,
        held: &mut Held,
        path: &[u8],
        entry: &Entry,
        piece: &mut dyn FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error>;
}

/// Any [`FileContent`]: read on the walking thread, as it need not be `Sync`.
struct AnyContent<'a>(&'a dyn FileContent);

impl Source for AnyContent<'_> {
    fn content(
        &self,
        _held: &mut Held,
        path: &[u8],
        entry: &Entry,
        piece: &mut dyn FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.0.content(path, entry, piece)
    }
}

/// A file-tree section's content: its chunks, checked against each file's digest.
struct SectionContent<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    tree: &'a TreeSection,
}

impl<R: ReadAt> Source for SectionContent<'_, R> {
    fn find_extents(&self, entry: &mut Entry) {
        if let Ok(extents) = self.archive.file_extents(self.tree, entry) {
            entry.extents = extents;
        }
    }

    /// What [`Archive::file_content`] does, through the thread's own held
    /// chunk rather than the archive's one shared slot, which threads would
    /// take from each other. Each chunk is decoded whole and every byte
    /// taken from it is checked by the file's digest before the file is put
    /// in place, which makes the chunk's own BLAKE3 a second hash of the same
    /// bytes: it is checked only when the digest fails, to name the damaged
    /// chunk (FORMAT.md 10.1 step 5). One hash per byte instead of two: on
    /// the corpus tree, a tenth of extraction's CPU time.
    fn content(
        &self,
        held: &mut Held,
        _path: &[u8],
        entry: &Entry,
        piece: &mut dyn FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let extents = self.archive.file_extents(self.tree, entry)?;
        let chunk = |extent: &FileExtent, _end: usize| match held {
            Some((chunk_ref, chunk)) if *chunk_ref == extent.chunk_ref => Ok(chunk.clone()),
            _ => {
                let chunk = self.archive.read_chunk_unhashed(extent.chunk_ref)?;
                *held = Some((extent.chunk_ref, chunk.clone()));
                Ok(chunk)
            }
        };
        self.archive.walk_content(self.tree, entry, &extents, true, chunk, piece)
    }
}

/// What every thread that writes files shares: how to apply metadata, and
/// the run's switches.
struct Shared {
    /// The source's `captured` bits (FORMAT.md 8.1): which fields its entries hold.
    captured: u64,
    /// Owners to apply: `None` to leave them.
    owners: Option<(IdsByName, IdsByName)>,
    overwrite: bool,
    cancel: Option<&'static AtomicBool>,
    progress: Option<Arc<ExtractProgress>>,
    /// Numbers the temporary names, across threads.
    temp_counter: AtomicU64,
    /// Set when the extraction stops (an error fatal to it, a cancel): files
    /// handed out and not started are not written.
    stop: AtomicBool,
}

impl Shared {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// A regular file to write: its directory is open, its name checked, what
/// stood there dealt with; what is left is content, metadata and the rename.
struct FileJob {
    /// The entry's position in the walk: the order its warnings are reported in.
    seq: u64,
    parent: Arc<OwnedFd>,
    path: Vec<u8>,
    entry: Entry,
}

/// How writing a [`FileJob`] went, for the walking thread to record.
struct FileDone {
    seq: u64,
    path: Vec<u8>,
    entry: Entry,
    /// `None` when not tried (the extraction had stopped).
    outcome: Option<Result<(), Error>>,
    /// Metadata that could not be applied, in the order met.
    warnings: Vec<Refusal>,
}

/// Batches of files handed to the threads end at a chunk start once they
/// hold this many files, this many stored bytes, or files in this many
/// directories (each a handle held open until the batch is written)...
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 16 << 20;
const BATCH_DIRS: usize = 16;
/// ...and anywhere once they hold this many files (a chunk of very many tiny
/// files is then decoded by two threads).
const BATCH_FILES_MAX: usize = 4 * BATCH_FILES;

/// The threads writing files, as the walking thread sees them.
struct Pool {
    /// Batches to write: at most as many waiting as there are threads, so
    /// memory and open handles stay bounded whatever the tree.
    jobs: Option<mpsc::SyncSender<Vec<FileJob>>>,
    done: mpsc::Receiver<FileDone>,
    batch: Vec<FileJob>,
    batch_bytes: u64,
    batch_dirs: usize,
    /// The chunk the batch's last file ends in, and the directory it is in.
    last_chunk: Option<u64>,
    last_dir: Option<u64>,
    /// Files handed out and not yet recorded, by entry id.
    pending: HashSet<u64>,
}

struct Extractor<'a> {
    shared: &'a Shared,
    /// Where content is read when no thread pool writes files.
    content: &'a dyn Source,
    pool: Option<Pool>,
    dest: Arc<OwnedFd>,
    /// Whether extraction made the destination folder: only then does it take
    /// the root entry's metadata (an existing folder keeps its own).
    dest_created: bool,
    options: &'a ExtractOptions,
    report: ExtractReport,
    /// Warnings with the walk position of the entry they are about: sorted by
    /// it at the end, so threads finishing in any order report the same.
    warnings: Vec<(u64, Refusal)>,
    /// The walk position of the entry being extracted.
    seq: u64,
    /// The first error that stops the extraction met by a thread writing files.
    fatal: Option<(u64, Error)>,
    /// The chunk held when files are written on the walking thread.
    held: Held,
    /// Directories placed in the destination, by entry id.
    dirs: HashMap<u64, PlacedDir>,
    /// Regular files placed, by entry id: their directory and name, for hard links.
    files: HashMap<u64, (u64, Vec<u8>)>,
    siblings: HashSet<(u64, Vec<u8>)>,
    /// Directories left out by `strip_components`, to the placed directory
    /// that stands for them.
    stripped: HashMap<u64, u64>,
    /// Regular files skipped with a warning (no content to give): hard links to
    /// them are skipped with a warning too.
    skipped: HashSet<u64>,
    /// Handles on the directories most recently extracted into, by entry id,
    /// with when each was last used: at most [`MAX_OPEN_DIRS`], so neither depth
    /// nor width exhausts file descriptors.
    handles: HashMap<u64, (Arc<OwnedFd>, u64)>,
    uses: u64,
    /// The directories from the root to the one being finished, in the last
    /// pass that gives every directory its mode and times.
    chain: Vec<Frame>,
    /// How many of the deepest frames of `chain` hold an open handle: at most
    /// [`MAX_OPEN_DIRS`].
    open_frames: usize,
}

/// Directory handles kept open: while extracting, those of the directories
/// used last; while finishing, those of the deepest directories of the chain
/// (the others are reopened through `..`, checked by device and inode, on the
/// way back up).
const MAX_OPEN_DIRS: usize = 64;

struct PlacedDir {
    parent_id: u64,
    name: Vec<u8>,
    entry: Entry,
    /// Device and inode of the directory made (or found) there.
    dev: u64,
    ino: u64,
}

/// One directory of the chain.
struct Frame {
    id: u64,
    fd: Option<Arc<OwnedFd>>,
    dev: u64,
    ino: u64,
}

/// Whether a failure of the destination ends the whole extraction: every
/// later file would fail the same way, and one message says it best.
fn fatal_to_destination(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
        Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT | rustix::io::Errno::ROFS | rustix::io::Errno::IO)
    )
}

fn interrupted() -> Error {
    Error::local_io("extracting", io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
}

/// Extracts the file-tree section `tree` into `dest` (created if missing).
///
/// An existing `dest` keeps its own mode, owner, times and ACLs; a `dest` this
/// call creates takes the root entry's. Time and memory grow with the number of
/// entries, not with their depth, in whatever order the entries come. A
/// destination that is full or read-only stops the extraction with an error
/// (the entries before it stay extracted). Regular files' content is written
/// by [`ExtractOptions::threads`] threads; the result and the report are the
/// same for any number.
pub fn extract<R: ReadAt>(
    archive: &Archive<R>,
    tree: &TreeSection,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport, Error> {
    let content = SectionContent { archive, tree };
    run(|visit| archive.walk_tree(tree, visit), tree.begin.captured, &content, Some(&content), dest, options)
}

/// Extracts entries from any source into `dest` under every rule of
/// [`extract`] (nothing outside `dest`, temporary names, unsafe names refused
/// by path). `walk` hands each entry to its argument in an order where a
/// directory comes before what it holds, ids growing: entry 0 is the root
/// directory (`parent_id` [`NO_PARENT`]); `captured` says which fields the
/// entries hold (FORMAT.md 8.1); `content` gives regular files their bytes,
/// on the calling thread (it need not be `Sync`), so
/// [`ExtractOptions::threads`] does not apply.
pub fn extract_entries(
    walk: impl FnOnce(&mut dyn FnMut(PathEntry) -> Result<(), Error>) -> Result<(), Error>,
    captured: u64,
    content: &dyn FileContent,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport, Error> {
    run(walk, captured, &AnyContent(content), None, dest, options)
}

/// The extraction: on this thread, or with a pool of threads writing files
/// when `parallel` gives content they can share.
fn run(
    walk: impl FnOnce(&mut dyn FnMut(PathEntry) -> Result<(), Error>) -> Result<(), Error>,
    captured: u64,
    content: &dyn Source,
    parallel: Option<&(dyn Source + Sync)>,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport, Error> {
    let dest_created = !dest.exists();
    std::fs::create_dir_all(dest).map_err(|e| Error::local_io(format!("creating {}", dest.display()), e))?;
    let dest_fd = rustix::fs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::local_io(format!("opening {}", dest.display()), e.into()))?;
    let is_root = rustix::process::geteuid().is_root();
    let owners = match options.owners {
        Owners::Never => None,
        Owners::Auto if !is_root => None,
        Owners::Auto => Some((user_ids("/etc/passwd"), user_ids("/etc/group"))),
        Owners::Numeric => Some((HashMap::new(), HashMap::new())),
    };
    let shared = Shared {
        captured,
        owners,
        overwrite: options.overwrite,
        cancel: options.cancel,
        progress: options.progress.clone(),
        temp_counter: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    };
    let extractor = Extractor {
        shared: &shared,
        content,
        pool: None,
        dest: Arc::new(dest_fd),
        dest_created,
        options,
        report: ExtractReport::default(),
        warnings: Vec::new(),
        seq: 0,
        fatal: None,
        held: None,
        dirs: HashMap::new(),
        files: HashMap::new(),
        siblings: HashSet::new(),
        stripped: HashMap::new(),
        skipped: HashSet::new(),
        handles: HashMap::new(),
        uses: 0,
        chain: Vec::new(),
        open_frames: 0,
    };
    let threads = options.threads.max(1);
    let Some(source) = parallel.filter(|_| threads > 1) else {
        return extractor.run(walk);
    };
    let (jobs, waiting) = mpsc::sync_channel::<Vec<FileJob>>(threads);
    let waiting = Mutex::new(waiting);
    std::thread::scope(|scope| {
        let (done_tx, done) = mpsc::channel();
        for _ in 0..threads {
            let (waiting, done_tx, shared) = (&waiting, done_tx.clone(), &shared);
            scope.spawn(move || {
                let mut held = None;
                loop {
                    let batch = match waiting.lock() {
                        Ok(waiting) => waiting.recv(),
                        Err(_) => break,
                    };
                    let Ok(mut batch) = batch else { break };
                    // In chunk order: a thread keeps one decoded chunk, and
                    // the files of one folder may use chunks in any order (in
                    // an incremental chain, unchanged files sit in the
                    // parents' packs, changed ones in the child's), so path
                    // order would decode a chunk again each time it comes
                    // back. Each file is put in place on its own, so the
                    // order within a batch changes nothing else.
                    batch.sort_by_key(|job| job.entry.extents.first().map(|e| e.chunk_ref));
                    for job in batch {
                        if done_tx.send(write_file(shared, source, &mut held, job)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop(done_tx);
        let mut extractor = extractor;
        extractor.pool = Some(Pool {
            jobs: Some(jobs),
            done,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_dirs: 0,
            last_chunk: None,
            last_dir: None,
            pending: HashSet::new(),
        });
        extractor.run(walk)
    })
}

/// Writes one regular file under a temporary name in its directory, gives it
/// its metadata, and renames it into place; on any failure removes it.
fn write_file(shared: &Shared, source: &dyn Source, held: &mut Held, job: FileJob) -> FileDone {
    let FileJob { seq, parent, path, entry } = job;
    let mut warnings = Vec::new();
    if shared.stop.load(Ordering::Relaxed) {
        return FileDone { seq, path, entry, outcome: None, warnings };
    }
    let outcome = (|| {
        let (temp_name, fd) = temp_file(shared, &parent)?;
        let file = File::from(fd);
        let written = write_content(shared, source, held, &file, &path, &entry);
        let renamed = written.and_then(|()| {
            apply_fd_metadata(shared, file.as_fd(), &path, &entry, true, false, &mut warnings);
            if let Some(problem) = set_times_fd(shared.captured, &file, &entry) {
                warnings.push(Refusal { path: path.clone(), reason: problem });
            }
            let flags = if shared.overwrite { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
            rustix::fs::renameat_with(&*parent, temp_name.as_str(), &*parent, os(&entry.name), flags)
                .map_err(|e| Error::local_io("renaming into place", e.into()))
        });
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(&*parent, temp_name.as_str(), AtFlags::empty());
        }
        renamed
    })();
    // A fatal error or a cancel: the other threads stop too; a damaged chunk
    // is only a warning, and they go on.
    if let Err(e) = &outcome {
        let io_error = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>());
        if io_error.is_some_and(|io| io.kind() == io::ErrorKind::Interrupted || fatal_to_destination(io)) {
            shared.stop.store(true, Ordering::Relaxed);
        }
    }
    // Stopped by another thread's error, not cancelled: as if not tried, so
    // that error, not this one, is the one reported.
    let stopped_by_other = outcome.as_ref().err().is_some_and(|e| {
        let io_error = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>());
        io_error.is_some_and(|io| io.kind() == io::ErrorKind::Interrupted) && !shared.cancelled()
    });
    if stopped_by_other {
        return FileDone { seq, path, entry, outcome: None, warnings };
    }
    FileDone { seq, path, entry, outcome: Some(outcome), warnings }
}

fn temp_file(shared: &Shared, parent: &OwnedFd) -> Result<(String, OwnedFd), Error> {
    loop {
        let n = shared.temp_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!(".strata-{}-{n}.tmp", std::process::id());
        match rustix::fs::openat(
            parent,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok((name, fd)),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(Error::local_io("creating a temporary file", e.into())),
        }
    }
}

/// Writes a file's data extents at their offsets (holes stay holes), checking
/// the content against the entry's digest.
fn write_content(
    shared: &Shared,
    source: &dyn Source,
    held: &mut Held,
    file: &File,
    path: &[u8],
    entry: &Entry,
) -> Result<(), Error> {
    let progress = shared.progress.as_deref();
    source.content(held, path, entry, &mut |offset, piece| {
        if shared.cancelled() || shared.stop.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        let length = match piece {
            Piece::Data(bytes) => {
                file.write_all_at(bytes, offset).map_err(|e| Error::local_io("writing file content", e))?;
                bytes.len() as u64
            }
            Piece::Hole(n) => n,
        };
        if let Some(progress) = progress {
            progress.bytes.fetch_add(length, Ordering::Relaxed);
        }
        Ok(())
    })?;
    file.set_len(entry.size).map_err(|e| Error::local_io("setting the file size", e))?;
    Ok(())
}

impl Extractor<'_> {
    /// Walks the entries, extracting each; then waits for the files handed
    /// out, and gives directories their modes and times.
    fn run(
        mut self,
        walk: impl FnOnce(&mut dyn FnMut(PathEntry) -> Result<(), Error>) -> Result<(), Error>,
    ) -> Result<ExtractReport, Error> {
        let options = self.options;
        let mut found: HashSet<Vec<u8>> = HashSet::new();
        let mut next_seq = 0u64;
        let walked = walk(&mut |item| {
            if options.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                self.shared.stop.store(true, Ordering::Relaxed);
                return Err(interrupted());
            }
            if let Some((_, e)) = self.fatal.take() {
                return Err(e);
            }
            if !options.select.is_empty() {
                let wanted = options.select.iter().any(|s| {
                    let exact = item.path == *s;
                    let below = item.path.len() > s.len() && item.path.starts_with(s) && item.path[s.len()] == b'/';
                    let above = s.len() > item.path.len()
                        && s.starts_with(&item.path)
                        && (item.path.is_empty() || s[item.path.len()] == b'/');
                    if exact {
                        found.insert(s.clone());
                    }
                    exact || below || above
                });
                if !wanted {
                    return Ok(());
                }
            }
            self.seq = next_seq;
            next_seq += 1;
            self.entry(item)
        });
        // Files handed out are written even when the walk failed (unless it
        // was stopped): then every outcome is recorded.
        if let Err(e) = &walked {
            let stopped = std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .is_some_and(|io| io.kind() == io::ErrorKind::Interrupted);
            if stopped {
                self.shared.stop.store(true, Ordering::Relaxed);
            }
        }
        self.close_pool();
        // Directories get their modes and times even when the walk failed, so what
        // was extracted is left as complete as it can be.
        self.seq = u64::MAX;
        self.finish_dirs();
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.sort_by_key(|(seq, _)| *seq);
        self.report.warnings = warnings.into_iter().map(|(_, w)| w).collect();
        if let Some((_, e)) = self.fatal.take() {
            return Err(e);
        }
        walked?;
        self.report.not_found = options.select.iter().filter(|s| !found.contains(*s)).cloned().collect();
        Ok(self.report)
    }

    /// Hands out the last batch, lets the threads finish, and records every
    /// file they wrote.
    fn close_pool(&mut self) {
        let Some(mut pool) = self.pool.take() else { return };
        let batch = std::mem::take(&mut pool.batch);
        if let Some(jobs) = pool.jobs.take() {
            if !batch.is_empty() {
                let _ = jobs.send(batch);
            }
        }
        // The threads end once the queue is empty and closed.
        while let Ok(done) = pool.done.recv() {
            self.record(done);
        }
    }

    /// Hands a file to the threads, or writes it now without them.
    fn hand_out(&mut self, job: FileJob) {
        if self.pool.is_none() {
            let mut held = self.held.take();
            let done = write_file(self.shared, self.content, &mut held, job);
            self.held = held;
            self.record(done);
            return;
        }
        let mut job = job;
        self.content.find_extents(&mut job.entry);
        let pool = self.pool.as_mut().expect("checked above");
        let first = job.entry.extents.first().map(|e| e.chunk_ref);
        let full = pool.batch.len() >= BATCH_FILES || pool.batch_bytes >= BATCH_BYTES || pool.batch_dirs >= BATCH_DIRS;
        let chunk_start = first.is_none() || first != pool.last_chunk;
        if !pool.batch.is_empty() && ((full && chunk_start) || pool.batch.len() >= BATCH_FILES_MAX) {
            self.send_batch();
        }
        let pool = self.pool.as_mut().expect("checked above");
        if pool.last_dir != Some(job.entry.parent_id) {
            pool.batch_dirs += 1;
            pool.last_dir = Some(job.entry.parent_id);
        }
        pool.batch_bytes += job.entry.extents.iter().map(|e| e.length).sum::<u64>();
        pool.last_chunk = job.entry.extents.last().map(|e| e.chunk_ref);
        pool.pending.insert(job.entry.entry_id);
        pool.batch.push(job);
    }

    /// Sends the batch being filled to the threads (waiting while the queue
    /// is full), recording what they finished meanwhile.
    fn send_batch(&mut self) {
        let Some(pool) = &mut self.pool else { return };
        let batch = std::mem::take(&mut pool.batch);
        (pool.batch_bytes, pool.batch_dirs, pool.last_dir) = (0, 0, None);
        if let Some(jobs) = &pool.jobs {
            if !batch.is_empty() {
                let _ = jobs.send(batch);
            }
        }
        let finished: Vec<FileDone> = pool.done.try_iter().collect();
        for done in finished {
            self.record(done);
        }
    }

    /// Waits until the file `id`, if handed out, is written and recorded: a
    /// hard link to it needs to know.
    fn wait_for(&mut self, id: u64) {
        if !self.pool.as_ref().is_some_and(|p| p.pending.contains(&id)) {
            return;
        }
        if self.pool.as_ref().is_some_and(|p| p.batch.iter().any(|j| j.entry.entry_id == id)) {
            self.send_batch();
        }
        while self.pool.as_ref().is_some_and(|p| p.pending.contains(&id)) {
            let Some(Ok(done)) = self.pool.as_ref().map(|p| p.done.recv()) else { break };
            self.record(done);
        }
    }

    /// Records how writing a file went, as if it had been written in its
    /// place in the walk: its warnings under its walk position.
    fn record(&mut self, done: FileDone) {
        let FileDone { seq, path, entry, outcome, warnings } = done;
        if let Some(pool) = &mut self.pool {
            pool.pending.remove(&entry.entry_id);
        }
        let Some(outcome) = outcome else { return };
        self.warnings.extend(warnings.into_iter().map(|w| (seq, w)));
        let warn = |this: &mut Self, reason: String| {
            this.warnings.push((seq, Refusal { path: path.clone(), reason }));
        };
        match outcome {
            Ok(()) => {
                self.report.bytes = self.report.bytes.saturating_add(entry.size);
                self.files.insert(entry.entry_id, (entry.parent_id, entry.name.clone()));
                if entry.flags & strata_format::files::EntryFlags::CHANGED_WHILE_READ != 0 {
                    // Extracted as the archive holds it, which may not be what the file
                    // ever was: the writer saw it change while it read it (8.3 bit 1).
                    warn(self, "it changed while it was read when the archive was written: extracted as read".into());
                }
            }
            Err(e) => {
                let io_error = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
                if io_error.is_some_and(|io| io.kind() == io::ErrorKind::Interrupted) {
                    self.stop_with(seq, e);
                    return;
                }
                if let Some(io) = io_error.filter(|io| fatal_to_destination(io)) {
                    let io = io
                        .raw_os_error()
                        .map_or_else(|| io::Error::other(io.to_string()), io::Error::from_raw_os_error);
                    let e = Error::local_io(format!("{}: {}", strata_format::escaped(&path), e.what()), io);
                    self.stop_with(seq, e);
                    return;
                }
                // A failure of the archive (corrupt chunk) is a warning for this file;
                // the extraction goes on, and hard links to the file are skipped with a
                // warning too (FORMAT.md 8.7).
                self.skipped.insert(entry.entry_id);
                warn(self, e.to_string());
            }
        }
    }

    /// Keeps the error that stops the extraction met first in walk order.
    fn stop_with(&mut self, seq: u64, e: Error) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if self.fatal.as_ref().is_none_or(|(first, _)| seq < *first) {
            self.fatal = Some((seq, e));
        }
    }

    fn refuse(&mut self, path: &[u8], reason: impl Into<String>) {
        self.report.refused.push(Refusal { path: path.to_vec(), reason: reason.into() });
    }

    fn warn(&mut self, path: &[u8], reason: impl Into<String>) {
        self.warnings.push((self.seq, Refusal { path: path.to_vec(), reason: reason.into() }));
    }

    /// The path of a placed directory, for messages and for reopening it.
    fn path_of(&self, mut id: u64) -> Vec<u8> {
        let mut names = Vec::new();
        while let Some(dir) = self.dirs.get(&id) {
            if dir.parent_id == NO_PARENT || dir.parent_id >= id {
                break;
            }
            names.push(dir.name.as_slice());
            id = dir.parent_id;
        }
        names.reverse();
        names.join(&b'/')
    }

    /// Opens the placed directory `id` from the destination, component by
    /// component, without following any symbolic link on the way.
    fn open_placed_dir(&self, id: u64) -> io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = rustix::fs::openat(&self.dest, ".", flags, Mode::empty())?;
        for component in self.path_of(id).split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if !Entry::name_is_safe(component) {
                return Err(io::Error::other("unsafe path component"));
            }
            fd = rustix::fs::openat(&fd, os(component), flags, Mode::empty())?;
        }
        Ok(fd)
    }

    /// Adds directory `id` (open as `fd`) to the end of the chain, dropping the
    /// handle of the shallowest frame that holds one when too many are open.
    fn push_frame(&mut self, id: u64, fd: Arc<OwnedFd>) -> io::Result<Arc<OwnedFd>> {
        let stat = rustix::fs::fstat(&*fd)?;
        self.chain.push(Frame { id, fd: Some(fd.clone()), dev: stat.st_dev, ino: stat.st_ino });
        self.open_frames += 1;
        if self.open_frames > MAX_OPEN_DIRS {
            // Handles are held by the deepest frames only (a suffix of the chain).
            let shallowest = self.chain.len() - self.open_frames;
            self.chain[shallowest].fd = None;
            self.open_frames -= 1;
        }
        Ok(fd)
    }

    /// Reopens `frame`'s directory as the parent of `child`, checking that it is
    /// the same directory; else from the destination by path.
    fn reopen(&self, frame: &Frame, child: Option<&OwnedFd>) -> io::Result<OwnedFd> {
        if let Some(child) = child {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            if let Ok(fd) = rustix::fs::openat(child, "..", flags, Mode::empty()) {
                if rustix::fs::fstat(&fd).is_ok_and(|st| st.st_dev == frame.dev && st.st_ino == frame.ino) {
                    return Ok(fd);
                }
            }
        }
        let fd = self.open_placed_dir(frame.id)?;
        let stat = rustix::fs::fstat(&fd)?;
        if (stat.st_dev, stat.st_ino) != (frame.dev, frame.ino) {
            return Err(io::Error::other("the directory was replaced during the extraction"));
        }
        Ok(fd)
    }

    /// Leaves the chain's directories deeper than `len`, deepest first, giving
    /// each its mode and times now that nothing more is written inside; the new
    /// end of the chain gets its handle back if it was dropped.
    fn leave_to(&mut self, len: usize) {
        let mut child: Option<Arc<OwnedFd>> = None;
        while self.chain.len() > len {
            let Some(frame) = self.chain.pop() else { break };
            let fd = match frame.fd.clone() {
                Some(fd) => {
                    self.open_frames -= 1;
                    Ok(fd)
                }
                None => self.reopen(&frame, child.as_deref()).map(Arc::new),
            };
            match fd {
                Ok(fd) => {
                    self.finish_dir(frame.id, &fd);
                    child = Some(fd);
                }
                Err(e) => {
                    let path = self.path_of(frame.id);
                    self.warn(&path, format!("mode and times not set: {e}"));
                    child = None;
                }
            }
        }
        if let Some(top) = self.chain.last() {
            if top.fd.is_none() {
                let reopened = self.reopen(top, child.as_deref());
                let top = self.chain.last_mut().expect("checked above");
                if let Ok(fd) = reopened {
                    top.fd = Some(Arc::new(fd));
                    self.open_frames += 1;
                }
            }
        }
    }

    /// A handle on the placed directory `id`, to extract into: one kept open,
    /// else opened from the nearest kept directory above it (the destination at
    /// worst) one component at a time, without following links, each checked to
    /// be the directory placed there. Entries in any order cost the distance to
    /// a kept directory, not the depth: going back and forth between two deep
    /// directories reuses both handles.
    fn dir_handle(&mut self, id: u64) -> io::Result<Arc<OwnedFd>> {
        self.uses += 1;
        let uses = self.uses;
        let mut below = Vec::new();
        let mut at = id;
        let mut fd = loop {
            if let Some((fd, used)) = self.handles.get_mut(&at) {
                *used = uses;
                break fd.clone();
            }
            let dir = self.dirs.get(&at).ok_or_else(|| io::Error::other("not a directory of this extraction"))?;
            if dir.parent_id == NO_PARENT {
                break self.dest.clone();
            }
            // Parents are placed before their children: the climb ends.
            if dir.parent_id >= at {
                return Err(io::Error::other("a directory placed before its parent"));
            }
            below.push(at);
            at = dir.parent_id;
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for id in below.iter().rev() {
            let dir = &self.dirs[id];
            if !Entry::name_is_safe(&dir.name) {
                return Err(io::Error::other("unsafe path component"));
            }
            let next = rustix::fs::openat(&*fd, os(&dir.name), flags, Mode::empty())?;
            let stat = rustix::fs::fstat(&next)?;
            if (stat.st_dev, stat.st_ino) != (dir.dev, dir.ino) {
                return Err(io::Error::other("the directory was replaced during the extraction"));
            }
            fd = Arc::new(next);
        }
        if !below.is_empty() {
            self.keep(id, fd.clone());
        }
        Ok(fd)
    }

    /// Keeps a handle on directory `id`, dropping the one used longest ago when
    /// [`MAX_OPEN_DIRS`] are kept.
    fn keep(&mut self, id: u64, fd: Arc<OwnedFd>) {
        if self.handles.len() >= MAX_OPEN_DIRS {
            let oldest = self.handles.iter().min_by_key(|(_, (_, used))| *used).map(|(&id, _)| id);
            if let Some(oldest) = oldest {
                self.handles.remove(&oldest);
            }
        }
        self.uses += 1;
        self.handles.insert(id, (fd, self.uses));
    }

    /// Gives every placed directory its default ACL, mode and times, once
    /// everything is written, deepest first (FORMAT.md 8.7). Entries may come
    /// in any order, so only now is a directory known to be complete. The
    /// directories are walked depth first through the chain of handles: each
    /// entered from its parent and left through `..`, one step per directory
    /// whatever the depth.
    fn finish_dirs(&mut self) {
        self.handles.clear();
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut root = None;
        for (&id, dir) in &self.dirs {
            if dir.parent_id == NO_PARENT {
                root = Some(id);
            } else {
                children.entry(dir.parent_id).or_default().push(id);
            }
        }
        let Some(root) = root else { return };
        for list in children.values_mut() {
            list.sort_unstable();
        }
        self.chain.clear();
        self.open_frames = 0;
        if let Err(e) = self.push_frame(root, self.dest.clone()) {
            self.warn(b"", format!("directory modes and times not set: {e}"));
            return;
        }
        // Per directory of the chain, the next of its children to enter.
        let mut next = vec![0usize];
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        while let (Some(frame), Some(&n)) = (self.chain.last(), next.last()) {
            let Some(&child) = children.get(&frame.id).and_then(|list| list.get(n)) else {
                // Everything below it is finished: so is it.
                next.pop();
                self.leave_to(self.chain.len() - 1);
                continue;
            };
            *next.last_mut().expect("checked above") += 1;
            let dir = &self.dirs[&child];
            let opened = match &frame.fd {
                Some(parent) => {
                    rustix::fs::openat(&**parent, os(&dir.name), flags, Mode::empty()).map_err(io::Error::from)
                }
                None => Err(io::Error::other("its parent directory cannot be reopened")),
            }
            .and_then(|fd| {
                let stat = rustix::fs::fstat(&fd)?;
                if (stat.st_dev, stat.st_ino) != (dir.dev, dir.ino) {
                    return Err(io::Error::other("the directory was replaced during the extraction"));
                }
                Ok(fd)
            })
            .and_then(|fd| self.push_frame(child, Arc::new(fd)));
            match opened {
                Ok(_) => next.push(0),
                Err(e) => {
                    let path = self.path_of(child);
                    self.warn(&path, format!("mode and times not set (nor below it): {e}"));
                }
            }
        }
    }

    /// A directory is left: its deferred default ACL, then mode and times. The
    /// root's metadata goes to the destination only if extraction created it.
    fn finish_dir(&mut self, id: u64, fd: &OwnedFd) {
        let Some(dir) = self.dirs.get(&id) else { return };
        let (is_root, entry) = (dir.parent_id == NO_PARENT, dir.entry.clone());
        if is_root && !self.dest_created {
            return;
        }
        if is_root {
            self.apply_fd_metadata(fd, b"", &entry, false, true);
        }
        // The path is built only for a message: building it for every directory
        // would cost its depth each time.
        if let Some(acl) = entry.xattrs.iter().find(|x| x.name == DEFAULT_ACL) {
            if let Err(e) = rustix::fs::fsetxattr(fd, xattr_name(&acl.name), &acl.value, XattrFlags::empty()) {
                self.warn(&self.path_of(id), format!("default ACL not set: {e}"));
            }
        }
        if let Err(e) = rustix::fs::fchmod(fd, Mode::from_raw_mode(entry.mode)) {
            self.warn(&self.path_of(id), format!("mode not set: {e}"));
        }
        if let Some(problem) = set_times_fd(self.shared.captured, fd, &entry) {
            self.warn(&self.path_of(id), problem);
        }
    }

    fn entry(&mut self, item: PathEntry) -> Result<(), Error> {
        if let Some(progress) = &self.options.progress {
            progress.entries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let PathEntry { path, entry } = item;
        // The root is entry 0, a directory: the destination itself, of which
        // only its metadata applies. Another entry without a parent is no
        // root (FORMAT.md 8.3): it is refused below, having no directory.
        if entry.parent_id == NO_PARENT && entry.entry_id == 0 {
            if entry.kind != EntryKind::Directory {
                self.refuse(&path, "the root entry is not a directory");
                return Ok(());
            }
            let stat =
                rustix::fs::fstat(&*self.dest).map_err(|e| Error::local_io("opening the destination", e.into()))?;
            let (dev, ino) = (stat.st_dev, stat.st_ino);
            self.dirs.insert(0, PlacedDir { parent_id: NO_PARENT, name: Vec::new(), entry, dev, ino });
            // It counts as extracted, so counts agree with `info` and `list`.
            self.report.entries += 1;
            return Ok(());
        }
        let mut entry = entry;
        if let Some(&placed) = self.stripped.get(&entry.parent_id) {
            entry.parent_id = placed;
        }
        let strip = self.options.strip_components as usize;
        if strip > 0 && path.split(|&b| b == b'/').count() <= strip {
            // Not created: a directory stands for its placed parent, so what is
            // below it goes up a level; anything else is left out (as tar does).
            if entry.kind == EntryKind::Directory && self.dirs.contains_key(&entry.parent_id) {
                self.stripped.insert(entry.entry_id, entry.parent_id);
            }
            return Ok(());
        }
        if !self.dirs.contains_key(&entry.parent_id) {
            self.refuse(&path, "its parent directory was refused or is not a directory");
            return Ok(());
        }
        if !Entry::name_is_safe(&entry.name) {
            self.refuse(
                &path,
                "unsafe name (empty, `.`, `..`, or holds `/` or NUL): it could point outside the destination",
            );
            return Ok(());
        }
        if !self.siblings.insert((entry.parent_id, entry.name.clone())) {
            self.refuse(&path, "a second entry of the same name in one directory");
            return Ok(());
        }
        if let Err(e) = entry.check(self.shared.captured) {
            self.refuse(&path, format!("it breaks a rule of the format: {}", e.detail));
            return Ok(());
        }
        if entry.kind == EntryKind::Hardlink {
            self.wait_for(entry.link_id);
        }
        // A hard link whose file was not extracted is not made: decided before
        // anything in the destination is touched, so that --overwrite does not
        // remove what stands at its name for nothing.
        if entry.kind == EntryKind::Hardlink && self.skipped.contains(&entry.link_id) {
            self.warn(&path, "a hard link to a file whose content is not in the archive: not extracted");
            return Ok(());
        }
        if entry.kind == EntryKind::Hardlink && !self.files.contains_key(&entry.link_id) {
            self.refuse(
                &path,
                format!("hard link to entry {}, which is not an extracted regular file of this tree", entry.link_id),
            );
            return Ok(());
        }
        let parent = match self.dir_handle(entry.parent_id) {
            Ok(fd) => fd,
            Err(e) => {
                self.refuse(&path, format!("its parent directory cannot be opened without following a link: {e}"));
                return Ok(());
            }
        };
        let name_bytes = entry.name.clone();
        let name = os(&name_bytes);
        let existing = rustix::fs::statat(&*parent, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let is_dir = existing
            .as_ref()
            .is_some_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory);
        // An existing real directory is extracted into; anything else in the way
        // (a file, or a symbolic link, which is never followed) is replaced only
        // with --overwrite.
        let reuse_dir = entry.kind == EntryKind::Directory && is_dir;
        if existing.is_some() {
            if !reuse_dir && !self.options.overwrite {
                self.refuse(&path, "already exists (use --overwrite to replace it)");
                return Ok(());
            }
            if !reuse_dir && is_dir {
                self.refuse(&path, "a directory exists there and is not replaced");
                return Ok(());
            }
            if !reuse_dir && entry.kind != EntryKind::File {
                let _ = rustix::fs::unlinkat(&*parent, name, AtFlags::empty());
            }
        }
        if entry.kind == EntryKind::File {
            use strata_format::files::EntryFlags;
            if entry.flags & EntryFlags::UNREADABLE != 0 {
                self.skipped.insert(entry.entry_id);
                self.warn(&path, "its content could not be read when the archive was written: not extracted");
                return Ok(());
            }
            if entry.flags & EntryFlags::LOST_IN_SALVAGE != 0 {
                self.skipped.insert(entry.entry_id);
                self.warn(&path, "its content was lost in salvage: not extracted");
                return Ok(());
            }
        }
        self.report.entries += 1;
        if entry.kind == EntryKind::File {
            self.hand_out(FileJob { seq: self.seq, parent, path, entry });
            return Ok(());
        }
        let result = match entry.kind {
            EntryKind::Directory => self.make_dir(&parent, name, &path, entry, reuse_dir),
            EntryKind::Symlink => self.make_symlink(&parent, name, &path, &entry),
            EntryKind::Hardlink => self.make_hardlink(&parent, name, &entry),
            _ => self.make_node(&parent, name, &path, &entry),
        };
        if let Err(e) = result {
            let io_error = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
            if io_error.is_some_and(|io| io.kind() == io::ErrorKind::Interrupted) {
                return Err(e);
            }
            if let Some(io) = io_error.filter(|io| fatal_to_destination(io)) {
                let io =
                    io.raw_os_error().map_or_else(|| io::Error::other(io.to_string()), io::Error::from_raw_os_error);
                return Err(Error::local_io(format!("{}: {}", strata_format::escaped(&path), e.what()), io));
            }
            self.warn(&path, e.to_string());
        }
        Ok(())
    }

    fn make_dir(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        path: &[u8],
        entry: Entry,
        exists: bool,
    ) -> Result<(), Error> {
        if !exists {
            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                .map_err(|e| Error::local_io("creating the directory", e.into()))?;
        }
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::local_io("opening the new directory", e.into()))?;
        let stat = rustix::fs::fstat(&dir).map_err(|e| Error::local_io("opening the new directory", e.into()))?;
        // Owner and xattrs now (the default ACL, which new entries inside would
        // inherit, only once everything is extracted); mode and times then too.
        self.apply_fd_metadata(&dir, path, &entry, false, true);
        let id = entry.entry_id;
        let (dev, ino) = (stat.st_dev, stat.st_ino);
        self.dirs.insert(id, PlacedDir { parent_id: entry.parent_id, name: entry.name.clone(), entry, dev, ino });
        // Entries inside it usually come next.
        self.keep(id, Arc::new(dir));
        Ok(())
    }

    fn make_symlink(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), Error> {
        rustix::fs::symlinkat(os(&entry.target), parent, name)
            .map_err(|e| Error::local_io("creating the symbolic link", e.into()))?;
        self.apply_at_metadata(parent, name, path, entry, true);
        Ok(())
    }

    fn make_hardlink(&mut self, parent: &OwnedFd, name: &std::ffi::OsStr, entry: &Entry) -> Result<(), Error> {
        // `entry` checked that the file was extracted.
        let (target_dir, target_name) =
            self.files.get(&entry.link_id).cloned().ok_or_else(|| {
                Error::local_io("creating the hard link", io::Error::other("its file was not extracted"))
            })?;
        let source_dir =
            self.dir_handle(target_dir).map_err(|e| Error::local_io("opening the link's target directory", e))?;
        rustix::fs::linkat(&*source_dir, os(&target_name), parent, name, AtFlags::empty())
            .map_err(|e| Error::local_io("creating the hard link", e.into()))?;
        Ok(())
    }

    fn make_node(&mut self, parent: &OwnedFd, name: &std::ffi::OsStr, path: &[u8], entry: &Entry) -> Result<(), Error> {
        let file_type = match entry.kind {
            EntryKind::CharDevice => rustix::fs::FileType::CharacterDevice,
            EntryKind::BlockDevice => rustix::fs::FileType::BlockDevice,
            EntryKind::Fifo => rustix::fs::FileType::Fifo,
            _ => rustix::fs::FileType::Socket,
        };
        let dev = rustix::fs::makedev(entry.rdev_major, entry.rdev_minor);
        rustix::fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev).map_err(|e| {
            let hint = if e == rustix::io::Errno::PERM { " (device nodes need root)" } else { "" };
            Error::local_io(format!("creating the {}{hint}", entry.kind.name()), e.into())
        })?;
        self.apply_at_metadata(parent, name, path, entry, false);
        Ok(())
    }

    /// [`apply_fd_metadata`], its warnings under the current entry.
    fn apply_fd_metadata(&mut self, fd: impl AsFd, path: &[u8], entry: &Entry, with_mode: bool, is_dir: bool) {
        let mut warnings = Vec::new();
        apply_fd_metadata(self.shared, fd, path, entry, with_mode, is_dir, &mut warnings);
        let seq = self.seq;
        self.warnings.extend(warnings.into_iter().map(|w| (seq, w)));
    }

    /// The same, by name in `parent`, for links and special files; then times.
    fn apply_at_metadata(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        path: &[u8],
        entry: &Entry,
        is_link: bool,
    ) {
        if let Some((uid, gid)) = owner_ids(self.shared, entry) {
            let ids = (Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)));
            if let Err(e) = rustix::fs::chownat(parent, name, ids.0, ids.1, AtFlags::SYMLINK_NOFOLLOW) {
                self.warn(path, format!("owner not set: {e}"));
            }
        }
        let inherited = if is_link { Vec::new() } else { inherited_acls(self.shared.captured, entry, false) };
        if !entry.xattrs.is_empty() || !inherited.is_empty() {
            // l*xattr through the parent's /proc/self/fd link: the last component
            // is not followed.
            use std::os::fd::AsRawFd;
            let mut proc_path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
            proc_path.extend_from_slice(&entry.name);
            let proc_path = os(&proc_path);
            for name in inherited {
                match rustix::fs::lremovexattr(proc_path, xattr_name(name)) {
                    Ok(()) | Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => {}
                    Err(e) => self.warn(path, format!("inherited ACL not removed: {e}")),
                }
            }
            for xattr in ordered_xattrs(entry) {
                if let Err(e) =
                    rustix::fs::lsetxattr(proc_path, xattr_name(&xattr.name), &xattr.value, XattrFlags::empty())
                {
                    self.warn(path, format!("extended attribute {} not set: {e}", strata_format::escaped(&xattr.name)));
                }
            }
        }
        if !is_link {
            if let Err(e) = rustix::fs::chmodat(parent, name, Mode::from_raw_mode(entry.mode), AtFlags::empty()) {
                self.warn(path, format!("mode not set: {e}"));
            }
        }
        let captured = self.shared.captured;
        if let Err(e) = rustix::fs::utimensat(parent, name, &times(entry, captured), AtFlags::SYMLINK_NOFOLLOW) {
            self.warn(path, format!("times not set: {e}"));
        } else {
            match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    if let Some(problem) = times_kept(entry, captured, &st) {
                        self.warn(path, problem);
                    }
                }
                Err(e) => self.warn(path, format!("times not read back: {e}")),
            }
        }
    }
}

fn owner_ids(shared: &Shared, entry: &Entry) -> Option<(u32, u32)> {
    let (users, groups) = shared.owners.as_ref()?;
    let uid = users.get(&entry.user).copied().unwrap_or(entry.uid);
    let gid = groups.get(&entry.group).copied().unwrap_or(entry.gid);
    Some((uid, gid))
}

/// The ACLs a new entry may have inherited from the default ACL of the
/// folder it was made in, and that its own record does not hold: removed,
/// so that an entry gets exactly the ACLs it was recorded with. Only when
/// the section captured extended attributes: otherwise nothing is known.
fn inherited_acls(captured: u64, entry: &Entry, is_dir: bool) -> Vec<&'static [u8]> {
    if captured & strata_format::files::Captured::XATTRS == 0 {
        return Vec::new();
    }
    let names: &[&'static [u8]] = if is_dir { &[ACCESS_ACL, DEFAULT_ACL] } else { &[ACCESS_ACL] };
    names.iter().copied().filter(|n| !entry.xattrs.iter().any(|x| x.name == *n)).collect()
}

/// Owner, then ACLs inherited and not recorded removed, then xattrs
/// (capabilities last; a directory's default ACL when it is left), then mode,
/// on an open file or directory. `with_mode` is false for directories, whose
/// mode is set when they are left, so that a read-only directory can still
/// be filled by a user who is not root.
fn apply_fd_metadata(
    shared: &Shared,
    fd: impl AsFd,
    path: &[u8],
    entry: &Entry,
    with_mode: bool,
    is_dir: bool,
    warnings: &mut Vec<Refusal>,
) {
    let mut warn = |reason: String| warnings.push(Refusal { path: path.to_vec(), reason });
    if let Some((uid, gid)) = owner_ids(shared, entry) {
        if let Err(e) =
            rustix::fs::fchown(&fd, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
        {
            warn(format!("owner not set: {e}"));
        }
    }
    for name in inherited_acls(shared.captured, entry, is_dir) {
        match rustix::fs::fremovexattr(&fd, xattr_name(name)) {
            Ok(()) | Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => {}
            Err(e) => warn(format!("inherited ACL not removed: {e}")),
        }
    }
    for xattr in ordered_xattrs(entry).into_iter().filter(|x| !(is_dir && x.name == DEFAULT_ACL)) {
        if let Err(e) = rustix::fs::fsetxattr(&fd, xattr_name(&xattr.name), &xattr.value, XattrFlags::empty()) {
            warn(format!("extended attribute {} not set: {e}", strata_format::escaped(&xattr.name)));
        }
    }
    if with_mode {
        if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(entry.mode)) {
            warn(format!("mode not set: {e}"));
        }
    }
}

/// Sets an entry's times on `fd` and reads them back: a problem to warn
/// about, if any.
fn set_times_fd(captured: u64, fd: impl AsFd, entry: &Entry) -> Option<String> {
    if let Err(e) = rustix::fs::futimens(&fd, &times(entry, captured)) {
        return Some(format!("times not set: {e}"));
    }
    match rustix::fs::fstat(&fd) {
        Ok(st) => times_kept(entry, captured, &st),
        Err(e) => Some(format!("times not read back: {e}")),
    }
}

const ACCESS_ACL: &[u8] = b"system.posix_acl_access";
const DEFAULT_ACL: &[u8] = b"system.posix_acl_default";

fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes)
}

/// Extended attributes in restore order: file capabilities last, since changing
/// the owner clears them and some file systems reorder.
fn ordered_xattrs(entry: &Entry) -> Vec<&strata_format::files::Xattr> {
    let mut xattrs: Vec<_> = entry.xattrs.iter().collect();
    xattrs.sort_by_key(|x| x.name == b"security.capability");
    xattrs
}

fn xattr_name(name: &[u8]) -> &std::ffi::OsStr {
    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name)
}
