//! A decoded-chunk cache shared by readers that come back to the same chunks:
//! an NBD server answering many small reads, a mounted archive.
//!
//! [`Archive`] keeps only the chunk it decoded last, which is enough for one
//! sequential reader. Several readers at once (clients of a server, files read
//! in parallel through a mount) take turns and would each evict the others'
//! chunk; a [`ChunkCache`] keeps the chunks used most recently up to a byte
//! budget, and decodes a chunk that several threads ask for at once only once.
//!
//! ```no_run
//! use std::fs::File;
//! use std::io::{Read, Seek, SeekFrom};
//! use strata_reader::{Archive, ChunkCache};
//!
//! let archive = Archive::new(File::open("backup.strata")?)?;
//! let cache = ChunkCache::new(64 << 20);
//! let image = archive.image("disk")?;
//! let mut buf = vec![0; 4096];
//! cache.read_image_at(&archive, image.section(), 1 << 20, &mut buf)?;
//! // The same bytes through Read + Seek, with the same cache:
//! let mut reader = image.reader_with_cache(&cache);
//! reader.seek(SeekFrom::Start(1 << 20))?;
//! reader.read_exact(&mut buf)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::archive::short_chunk;
use crate::chunk::ChunkStream;
use crate::image::{read_image_range, ChunkPart};
use strata_format::ExtentKind;

use crate::{Archive, Chunk, Error, ImageSection, ReadAt};

/// Decoded chunks of one archive, least recently used first out, holding at
/// most `capacity` bytes of decoded data (a chunk larger than the whole budget
/// is returned but not kept). Keys are the chunks' record offsets, so a cache
/// belongs to one archive: give each archive its own.
///
/// ```
/// use strata_reader::{Archive, ChunkCache};
///
/// let archive = Archive::new(&include_bytes!("../../spec/vectors/image-small.strata")[..])?;
/// let image = archive.image("disk")?;
/// let cache = ChunkCache::new(1 << 20);
/// let mut through_cache = [0u8; 3000];
/// assert_eq!(cache.read_image_at(&archive, image.section(), 1000, &mut through_cache)?, 3000);
/// assert!(cache.held() > 0 && cache.held() <= cache.capacity(), "the chunk read is kept");
/// // The same bytes as a read without the cache.
/// let mut direct = [0u8; 3000];
/// image.read_at(1000, &mut direct)?;
/// assert_eq!(through_cache, direct);
/// # Ok::<(), strata_reader::Error>(())
/// ```
#[derive(Debug)]
pub struct ChunkCache {
    capacity: usize,
    state: Mutex<State>,
    /// Woken when a chunk some thread was decoding is ready (or failed).
    decoded: Condvar,
    /// The chunk [`ChunkCache::read_image_at_partial`] read in part last,
    /// decoded as far as the reads in it needed, and its decoder: a later
    /// read in it goes on from there (to the chunk's end when it needs the
    /// chunk whole), and the next first read of
    /// another chunk decodes into its buffer, whose pages are then touched
    /// already (a fresh process pays for each page it touches). Outside the
    /// budget: one chunk's raw bytes at most.
    begun: Mutex<Option<(u64, ChunkStream)>>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<u64, Slot>,
    /// Last use → chunk reference, oldest first: the eviction order.
    by_use: BTreeMap<u64, u64>,
    clock: u64,
    held: usize,
    /// Chunks [`ChunkCache::read_image_at_partial`] decoded only in part: a
    /// read in one of them that is not the one read in part last decodes it
    /// whole.
    read_in_part: HashSet<u64>,
}

#[derive(Debug)]
enum Slot {
    /// Another thread is decoding it; wait for `decoded`.
    Decoding,
    Ready {
        chunk: Arc<Chunk>,
        last_use: u64,
    },
}

impl ChunkCache {
    /// A cache holding at most `capacity` bytes of decoded chunks.
    pub fn new(capacity: usize) -> Self {
        ChunkCache { capacity, state: Mutex::new(State::default()), decoded: Condvar::new(), begun: Mutex::new(None) }
    }

    /// The byte budget given to [`ChunkCache::new`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the chunk at `chunk_ref` is held, or being decoded by some thread.
    pub fn holds(&self, chunk_ref: u64) -> bool {
        self.lock().entries.contains_key(&chunk_ref)
    }

    /// Bytes of decoded chunks held now.
    pub fn held(&self) -> usize {
        self.lock().held
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left the maps
        // consistent (every change is one insert or remove): keep using them.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The chunk at `chunk_ref`, which must hold at least `raw_needed` raw bytes
    /// (as [`Archive::read_chunk`]), from the cache or read, checked and kept.
    pub fn chunk<R: ReadAt>(&self, archive: &Archive<R>, chunk_ref: u64, raw_needed: u64) -> Result<Arc<Chunk>, Error> {
        self.fetch(archive, chunk_ref, Some(raw_needed), None)
    }

    /// The chunk at `chunk_ref` whatever its length (as
    /// [`Archive::read_chunk_whole`]), for file extents, which name a range of a
    /// chunk rather than its length: from the cache or read, checked and kept.
    pub fn chunk_whole<R: ReadAt>(&self, archive: &Archive<R>, chunk_ref: u64) -> Result<Arc<Chunk>, Error> {
        self.fetch(archive, chunk_ref, None, None)
    }

    /// The chunk from the cache, else decoded: by going on with `begun`, the
    /// stream of its first read in part, when given, else from its start.
    fn fetch<R: ReadAt>(
        &self,
        archive: &Archive<R>,
        chunk_ref: u64,
        raw_needed: Option<u64>,
        begun: Option<ChunkStream>,
    ) -> Result<Arc<Chunk>, Error> {
        let read = || match raw_needed {
            Some(length) => archive.read_chunk(chunk_ref, length),
            None => archive.read_chunk_whole(chunk_ref),
        };
        let mut state = self.lock();
        loop {
            match state.entries.get(&chunk_ref) {
                Some(Slot::Ready { .. }) => {
                    state.clock += 1;
                    let now = state.clock;
                    let Some(Slot::Ready { chunk, last_use }) = state.entries.get_mut(&chunk_ref) else {
                        unreachable!("the slot was just seen ready under the same lock");
                    };
                    let (chunk, before) = (chunk.clone(), std::mem::replace(last_use, now));
                    state.by_use.remove(&before);
                    state.by_use.insert(now, chunk_ref);
                    if raw_needed.is_some_and(|length| (chunk.raw.len() as u64) < length) {
                        // An extent that runs past its chunk: let the archive
                        // say so in its words.
                        drop(state);
                        return read();
                    }
                    return Ok(chunk);
                }
                Some(Slot::Decoding) => {
                    state = self.decoded.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                None => break,
            }
        }
        state.entries.insert(chunk_ref, Slot::Decoding);
        drop(state);
        let decoding = Decoding { cache: self, chunk_ref };
        let result = match begun {
            Some(stream) => {
                let next_record = stream.end();
                stream
                    .finish(archive.source())
                    .map(|(header, raw)| Arc::new(Chunk { blake3: header.blake3, raw, next_record }))
                    .map_err(|e| e.at(chunk_ref))
            }
            None => read(),
        };
        std::mem::forget(decoding);
        let mut state = self.lock();
        state.entries.remove(&chunk_ref);
        if let Ok(chunk) = &result {
            let size = chunk.raw.len();
            if size <= self.capacity {
                while state.held + size > self.capacity {
                    let Some((_, oldest)) = state.by_use.pop_first() else { break };
                    if let Some(Slot::Ready { chunk, .. }) = state.entries.remove(&oldest) {
                        state.held -= chunk.raw.len();
                    }
                }
                state.clock += 1;
                let now = state.clock;
                state.entries.insert(chunk_ref, Slot::Ready { chunk: chunk.clone(), last_use: now });
                state.by_use.insert(now, chunk_ref);
                state.held += size;
            }
        }
        drop(state);
        self.decoded.notify_all();
        result
    }

    /// Reads image bytes at `offset` into `buf` through the cache, as
    /// [`Archive::read_image_at`] does; returns how many were read (fewer than
    /// `buf.len()` only at the end of the image). A range recorded as lost in
    /// salvage reads as zeros here too; [`ImageSection::lost_ranges`] lists them.
    pub fn read_image_at<R: ReadAt>(
        &self,
        archive: &Archive<R>,
        image: &ImageSection,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        read_image_range(image, offset, buf, |part, dest| {
            let chunk = self.chunk(archive, part.chunk_ref, part.raw_needed)?;
            part.copy_from(&chunk, dest)
        })
    }

    /// Reads image bytes as [`ChunkCache::read_image_at`] does, for a reader
    /// of small parts far apart, such as a file system's metadata and one
    /// file: the first read in a chunk that is not held decodes the chunk only
    /// up to the end of the part it needs, and so do the reads in it that
    /// follow, each going on from where the last stopped, until a chunk is
    /// read in part: a read in a chunk read in part before, after reads in
    /// others, decodes it whole, checks its BLAKE3 and keeps it, as is a read
    /// that needs a chunk to its end; every read of a held chunk is served.
    ///
    /// A part read in part is checked by the chunk's record CRC, which covers
    /// every stored byte, and by the zstd frame rules, but not by the chunk's
    /// BLAKE3, which needs the whole chunk (FORMAT.md 10.1, step 4).
    /// Use it where that is enough and said (`cat` and `list` of files inside
    /// an image), never to verify, restore or extract.
    pub fn read_image_at_partial<R: ReadAt>(
        &self,
        archive: &Archive<R>,
        image: &ImageSection,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        read_image_range(image, offset, buf, |part, dest| {
            // A part that runs to the chunk's end needs it all: check it whole.
            // So is an ancestor's chunk, against the child's CHAIN_INDEX (FORMAT.md 15.4).
            if (part.range.end as u64) < part.raw_needed && !archive.is_ancestor_ref(part.chunk_ref) {
                if let Some(read) = self.read_more_of_begun(archive, part, dest) {
                    return read;
                }
                if self.first_read_in_part(part.chunk_ref) {
                    return self.read_first_part(archive, part, dest);
                }
            }
            let begun = {
                let mut begun = self.begun();
                match begun.take() {
                    Some((chunk_ref, stream)) if chunk_ref == part.chunk_ref => Some(stream),
                    other => {
                        *begun = other;
                        None
                    }
                }
            };
            let chunk = self.fetch(archive, part.chunk_ref, Some(part.raw_needed), begun)?;
            part.copy_from(&chunk, dest)
        })
    }

    /// Whether the chunk at `chunk_ref` is neither held (or being decoded) nor
    /// was read in part before; notes that it is being read in part now.
    fn first_read_in_part(&self, chunk_ref: u64) -> bool {
        let mut state = self.lock();
        !state.entries.contains_key(&chunk_ref) && state.read_in_part.insert(chunk_ref)
    }

    /// When the chunk of `part` is the one read in part last: decodes on to
    /// the part's end, from where the last read stopped, and copies the part
    /// into `dest`. `None` for another chunk.
    fn read_more_of_begun<R: ReadAt>(
        &self,
        archive: &Archive<R>,
        part: &ChunkPart,
        dest: &mut [u8],
    ) -> Option<Result<(), Error>> {
        let mut begun = self.begun();
        let (_, stream) = begun.as_mut().filter(|(chunk_ref, _)| *chunk_ref == part.chunk_ref)?;
        let read =
            stream.decode_to(archive.source(), part.range.end).map_err(|e| e.at(part.chunk_ref)).and_then(|()| {
                let bytes = stream
                    .decoded()
                    .get(part.range.clone())
                    .ok_or_else(|| short_chunk(part.raw_needed, stream.decoded().len() as u64).at(part.chunk_ref))?;
                dest.copy_from_slice(bytes);
                Ok(())
            });
        if read.is_err() {
            // A stream that failed is not gone on with.
            *begun = None;
        }
        Some(read)
    }

    /// Decodes the chunk of `part` up to the part's end, copies the part into
    /// `dest`, and keeps the stream as the one begun last.
    fn read_first_part<R: ReadAt>(&self, archive: &Archive<R>, part: &ChunkPart, dest: &mut [u8]) -> Result<(), Error> {
        // The buffer of the stream begun last, whose pages are touched already.
        let buffer = self.begun().take().map(|(_, stream)| stream.into_buffer()).unwrap_or_default();
        let mut stream = archive.chunk_stream(part.chunk_ref, part.raw_needed, buffer)?;
        stream.decode_to(archive.source(), part.range.end).map_err(|e| e.at(part.chunk_ref))?;
        let bytes = stream
            .decoded()
            .get(part.range.clone())
            .ok_or_else(|| short_chunk(part.raw_needed, stream.decoded().len() as u64).at(part.chunk_ref))?;
        dest.copy_from_slice(bytes);
        *self.begun() = Some((part.chunk_ref, stream));
        Ok(())
    }

    fn begun(&self) -> MutexGuard<'_, Option<(u64, ChunkStream)>> {
        // A stream is taken out to be decoded and put back only once decoded:
        // what a panicking thread left is whole.
        self.begun.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Worker threads that decode chunks into a shared [`ChunkCache`] before a
/// reader asks for them, so that a client reading front to back (`tar` through
/// a mount, `qemu-img convert` over NBD) finds each chunk decoded while it was
/// busy with the previous one, and decoding uses every core.
///
/// Requests never block: a request made while every worker is busy and the
/// queue is full is dropped, and the reader then decodes that chunk itself, as
/// without read-ahead. A chunk that fails its checks is not reported here: the
/// reader meets the failure when it reads the chunk.
///
/// ```no_run
/// use std::{fs::File, sync::Arc};
/// use strata_reader::{Archive, ChunkCache, ReadAhead};
///
/// let archive = Arc::new(Archive::new(File::open("backup.strata")?)?);
/// let ahead = ReadAhead::new(archive.clone(), Arc::new(ChunkCache::new(64 << 20)), 2);
/// let image = archive.image("disk")?;
/// let mut buf = vec![0; 1 << 20];
/// let mut offset = 0;
/// while offset < image.len() {
///     let n = ahead.cache().read_image_at(&archive, image.section(), offset, &mut buf)?;
///     offset += n as u64;
///     ahead.image_from(image.section(), offset);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadAhead<R: ReadAt> {
    archive: Arc<Archive<R>>,
    cache: Arc<ChunkCache>,
    /// Chunk reference and, for an image extent, its expected length.
    queue: Option<SyncSender<(u64, Option<u64>)>>,
    workers: usize,
    /// Stored chunks kept decoded ahead of a reader that goes on in order.
    depth: usize,
    /// What a reader in record order is doing.
    order: Mutex<RecordOrder>,
}

/// The reader in record order as [`ReadAhead::read_in_record_order`] follows it.
#[derive(Debug, Default)]
struct RecordOrder {
    /// Runs of reads in record order, the one read last first: the main run
    /// and one that a look back started (a deduplicated file of several
    /// chunks pointing to earlier ones), so that returning to the main run
    /// finds it as it was.
    runs: Vec<Run>,
    /// The last chunk read out of any run (an earlier chunk that a
    /// deduplicated file points back to, a random read) and the chunk stored
    /// after it: moving on to that one starts a run.
    stray: Option<(u64, u64)>,
}

/// Reads in record order.
#[derive(Debug)]
struct Run {
    /// The chunk read last in it.
    read: u64,
    /// The chunks stored after it that were asked for: where the reader is
    /// expected next.
    ahead: Vec<u64>,
    /// Moves in order so far: a run is given as many chunks ahead, up to the
    /// depth, so that a short one (a look back) costs little.
    moves: usize,
}

/// Runs followed at once.
const RUNS: usize = 2;

impl<R: ReadAt> std::fmt::Debug for ReadAhead<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("workers", &self.workers)
            .field("depth", &self.depth)
            .field("cache", &self.cache)
            .finish()
    }
}

impl<R: ReadAt + Send + 'static> ReadAhead<R> {
    /// Starts `workers` threads decoding into `cache` (none with 0: requests
    /// are then ignored), keeping one chunk more than the workers decoded
    /// ahead of a reader. A chunk decoded ahead is only worth it when the
    /// cache holds a few chunks: give it room for `workers + 2` at least.
    pub fn new(archive: Arc<Archive<R>>, cache: Arc<ChunkCache>, workers: usize) -> Self {
        Self::with_depth(archive, cache, workers, workers + 1)
    }

    /// As [`ReadAhead::new`], keeping `depth` stored chunks (at least one)
    /// decoded ahead of a reader that goes on in order. What is decoded ahead
    /// lives in the cache and counts in its budget: give it room for
    /// `depth + 2` chunks, or chunks decoded ahead are dropped before use.
    pub fn with_depth(archive: Arc<Archive<R>>, cache: Arc<ChunkCache>, workers: usize, depth: usize) -> Self {
        let depth = depth.max(1);
        let mut started = 0;
        let queue = (workers > 0)
            .then(|| {
                let (sender, receiver) = sync_channel::<(u64, Option<u64>)>(workers.max(depth));
                let receiver = Arc::new(Mutex::new(receiver));
                for n in 0..workers {
                    let (archive, cache, receiver) = (archive.clone(), cache.clone(), receiver.clone());
                    let spawned = std::thread::Builder::new()
                        .name(format!("read-ahead-{n}"))
                        .spawn(move || decode_requests(&archive, &cache, &receiver));
                    // No thread, no read-ahead: readers decode for themselves.
                    if spawned.is_ok() {
                        started += 1;
                    }
                }
                (started > 0).then_some(sender)
            })
            .flatten();
        ReadAhead { archive, cache, queue, workers: started, depth, order: Mutex::new(RecordOrder::default()) }
    }
}

/// A worker's loop: until every sender is gone, decode what is asked for.
fn decode_requests<R: ReadAt>(
    archive: &Archive<R>,
    cache: &ChunkCache,
    receiver: &Mutex<Receiver<(u64, Option<u64>)>>,
) {
    loop {
        let request = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok((chunk_ref, raw_needed)) = request else { return };
        // A failure is the reader's to report when it reads the chunk.
        let _ = match raw_needed {
            Some(length) => cache.chunk(archive, chunk_ref, length),
            None => cache.chunk_whole(archive, chunk_ref),
        };
    }
}

impl<R: ReadAt> ReadAhead<R> {
    /// The archive read.
    pub fn archive(&self) -> &Arc<Archive<R>> {
        &self.archive
    }

    /// The cache decoded into.
    pub fn cache(&self) -> &Arc<ChunkCache> {
        &self.cache
    }

    /// Worker threads running.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Asks for the chunk at `chunk_ref` (holding at least `raw_needed` raw bytes,
    /// when known) to be decoded soon, unless it is held or being decoded.
    /// Returns whether it was queued.
    pub fn request(&self, chunk_ref: u64, raw_needed: Option<u64>) -> bool {
        let Some(queue) = &self.queue else { return false };
        if self.cache.holds(chunk_ref) {
            return false;
        }
        match queue.try_send((chunk_ref, raw_needed)) {
            Ok(()) => true,
            // Busy: the reader decodes it itself if it needs it.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Stored chunks kept decoded ahead of a reader that goes on in order.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// For readers that go through chunks in the order the writer stored
    /// them (files of a tree in walk order, a large file's chunks): tells that
    /// `chunk` at `chunk_ref` was read. When the reader moved here from the
    /// chunk stored just before it (records other than chunks in between do
    /// not count), the chunks stored after it are requested, found by their
    /// record headers: one after the first such move, one more after each
    /// next, up to the depth. A random reader, which does not move that way,
    /// starts no decoding; a look back (a deduplicated file pointing to
    /// earlier chunks) does not end the run it left. Returns the first chunk
    /// it requested, if any.
    pub fn read_in_record_order(&self, chunk_ref: u64, chunk: &Chunk) -> Option<u64> {
        let Ok(mut order) = self.order.lock() else { return None };
        if order.runs.iter().any(|run| run.read == chunk_ref) {
            return None;
        }
        let moves = match order.runs.iter().position(|run| run.ahead.contains(&chunk_ref)) {
            Some(at) => order.runs.remove(at).moves + 1,
            None if order.stray.is_some_and(|(read, next)| read != chunk_ref && next == chunk_ref) => {
                order.runs.truncate(RUNS - 1);
                1
            }
            None => {
                if order.stray.is_none_or(|(read, _)| read != chunk_ref) {
                    let next = self.chunks_after(chunk, 1).first().copied().unwrap_or(u64::MAX);
                    order.stray = Some((chunk_ref, next));
                }
                return None;
            }
        };
        let ahead = self.chunks_after(chunk, moves.min(self.depth));
        order.runs.insert(0, Run { read: chunk_ref, ahead: ahead.clone(), moves });
        order.stray = None;
        drop(order);
        let mut first = None;
        for &next in &ahead {
            if self.request(next, None) {
                first.get_or_insert(next);
            }
        }
        first
    }

    /// Up to `want` chunks stored after `chunk`, in record order.
    fn chunks_after(&self, chunk: &Chunk, want: usize) -> Vec<u64> {
        let next = chunk.next_record;
        if strata_format::ChunkRef::split(next).is_ancestor() {
            // A chunk of an ancestor names the next record there (FORMAT.md
            // 15.1), whose headers this archive does not read: that one only.
            return vec![next];
        }
        if next >= self.archive.size() {
            return Vec::new();
        }
        self.archive.chunk_records_from(next, want)
    }

    /// For readers of an image front to back: requests the stored chunks
    /// that come next from image `offset` on (as many as the depth),
    /// looking past zero extents, which cost nothing to serve.
    /// Returns how many chunks it queued.
    pub fn image_from(&self, image: &ImageSection, offset: u64) -> usize {
        let Some(first) = image.extent_at(offset) else { return 0 };
        let (mut stored, mut queued, mut last) = (0, 0, None);
        for extent in image.extents[first..].iter().take(16.max(4 * self.depth)) {
            // A window split into parts of a few chunks (a child's changed
            // blocks, FORMAT.md 15.5) counts each chunk once.
            if let (Ok(ExtentKind::Data(chunk_ref)), true) = (extent.kind(), last != Some(extent.chunk_ref)) {
                last = Some(chunk_ref);
                queued += usize::from(self.request(chunk_ref, Some(extent.chunk_range().end)));
                stored += 1;
                if stored >= self.depth {
                    break;
                }
            }
        }
        queued
    }
}

/// Clears a chunk's `Decoding` mark if its decoding thread panics, so that
/// the threads waiting for it decode it themselves instead of waiting for ever.
struct Decoding<'a> {
    cache: &'a ChunkCache,
    chunk_ref: u64,
}

impl Drop for Decoding<'_> {
    fn drop(&mut self) {
        self.cache.lock().entries.remove(&self.chunk_ref);
        self.cache.decoded.notify_all();
    }
}
