//! The archive writer: header first, then sections, then the index and trailer
//! (`spec/FORMAT.md` sections 2, 3, 9 and 14). It owns the output and the
//! archive-wide state: the chunk store's deduplication map (section 6), the
//! section list, and the tables written at the end.

use std::collections::HashMap;
use std::io::Write;

use strata_format::image::{self, ExtentMapCheck, ImageFlags, REF_FREE, REF_LOST, REF_ZERO, UNKNOWN_SIZE};
use strata_format::index::ChainIndexPointer;
use strata_format::index::{SectionKind, TRAILER_MAGIC};
use strata_format::ExtentKind;
use strata_format::{
    limits, record::RecordFlags, ArchiveHeader, ArchiveIndex, Chain, ChainIndex, ChainRef, ChunkHeader, ChunkRef,
    Extent, Features, ImageBegin, ImageEnd, RecordHeader, RecordType, SectionEntry, Trailer,
};

use crate::chunker::{prepare_split, PreparedChunk, PreparedWindow, SparePool};
use crate::source::{ImageSource, Window};
use crate::{Progress, WriteError};

/// Choices that change the archive's bytes. Equal options and equal input give a
/// byte-identical archive, whatever `threads` is (`spec/FORMAT.md` section 14:
/// the reference writer is deterministic).
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Chunk window size for images: a power of two from 4 KiB to 16 MiB.
    pub chunk_size: u32,
    /// zstd compression level.
    pub level: i32,
    /// The archive UUID; fix it for reproducible output.
    pub archive_uuid: [u8; 16],
    /// Creation time in nanoseconds since the Unix epoch; fix it for reproducible output.
    pub created_ns: i64,
    /// Worker threads for hashing and compression; 0 means one per core.
    pub threads: usize,
    /// Raw bytes read ahead and compressed as one batch: bounds memory in flight.
    pub batch_bytes: usize,
    /// Store table bodies (extent maps, entries, directory tables, indexes)
    /// compressed where that makes them smaller (`spec/FORMAT.md` 5.2). On by
    /// default; off gives the same archive with every table as plain bytes,
    /// which tools that patch tables in place (the test vectors) need.
    pub compress_tables: bool,
    /// Most entries in one group (`FILES_ENTRIES` record) of a file tree:
    /// 1,024 by default (`spec/FORMAT.md` 14), 1 to 65,536. Smaller groups
    /// let tests and the vectors build trees of several groups from a few
    /// entries; the 256 KiB bound on a group's body applies either way.
    pub group_entries: usize,
}

impl WriterOptions {
    /// The defaults of `strata create`: 4 MiB chunks, zstd level 3, all cores.
    pub fn new(archive_uuid: [u8; 16], created_ns: i64) -> Self {
        WriterOptions {
            chunk_size: 4 << 20,
            level: 3,
            archive_uuid,
            created_ns,
            threads: 0,
            batch_bytes: 32 << 20,
            compress_tables: true,
            group_entries: 1024,
        }
    }
}

/// A zstd level the library accepts.
fn check_level(level: i32) -> Result<(), WriteError> {
    let (min, max) = (zstd::zstd_safe::min_c_level(), zstd::zstd_safe::max_c_level());
    if !(min..=max).contains(&level) {
        return Err(WriteError::Invalid { what: "zstd level", detail: format!("{level}: expected {min} to {max}") });
    }
    Ok(())
}

/// What a child archive (`spec/FORMAT.md` 15.5) refers to instead of
/// storing: its chain, and the identity and reference of every chunk of the
/// chain it may refer to (its parent's own chunks as `archive` 1, and those
/// the parent itself took from its ancestors, one number further).
#[derive(Clone, Debug)]
pub struct ChainBase {
    /// The child's `CHAIN`: the parent first, then the parent's ancestors.
    pub chain: Chain,
    /// Chunk identity to the `chunk_ref` (with its `archive` byte ≥ 1) that
    /// finds it.
    pub chunks: HashMap<[u8; 32], u64>,
}

/// What a writer needs to know of a parent archive to write its child: the
/// facts a reader gives of it (`spec/FORMAT.md` 15.5).
#[derive(Clone, Debug)]
pub struct ParentFacts {
    /// The parent's file name, as the child records it (a base name).
    pub name: Vec<u8>,
    /// Its `archive_uuid`.
    pub uuid: [u8; 16],
    /// BLAKE3 of its `ARCHIVE_INDEX` body.
    pub binding: [u8; 32],
    /// Its file size.
    pub archive_length: u64,
    /// Its own chain, if it is itself a child.
    pub chain: Option<Chain>,
    /// Its `CHUNK` records: record offset and identity.
    pub local_chunks: Vec<(u64, [u8; 32])>,
    /// The ancestor chunks it refers to: its `CHAIN_INDEX` rows.
    pub ancestor_chunks: Vec<(u64, [u8; 32])>,
}

impl ChainBase {
    /// The base of a child of the parent `facts` describe: the parent first in
    /// its chain, then the parent's ancestors; its chunks as ancestor 1, and
    /// those it refers to one number further (15.5).
    pub fn from_parent(facts: ParentFacts) -> Result<ChainBase, WriteError> {
        let ParentFacts { name, uuid, binding, archive_length, chain, local_chunks, ancestor_chunks } = facts;
        if name.is_empty()
            || name.len() > 255
            || name.contains(&b'/')
            || name.contains(&0)
            || name == b"."
            || name == b".."
        {
            return Err(WriteError::Invalid {
                what: "parent name",
                detail: "the parent's file name must be a base name of 1 to 255 bytes".into(),
            });
        }
        let mut ancestors = vec![strata_format::Ancestor { uuid, binding, archive_length, name }];
        ancestors.extend(chain.map(|c| c.ancestors).unwrap_or_default());
        let mut chunks = HashMap::with_capacity(local_chunks.len() + ancestor_chunks.len());
        // The parent's own copy of an identity wins over an older one: the
        // nearer ancestor is the one a reader most likely has open.
        for (chunk_ref, id) in ancestor_chunks {
            chunks.insert(id, ChunkRef::split(chunk_ref).rebased().join());
        }
        for (offset, id) in local_chunks {
            chunks.insert(id, ChunkRef { archive: 1, offset }.join());
        }
        Ok(ChainBase { chain: Chain::new(ancestors), chunks })
    }
}

/// A child's `CHAIN` body, and the identity of each ancestor chunk it may
/// refer to, by `chunk_ref`.
type ChainBody = (Vec<u8>, HashMap<u64, [u8; 32]>);

/// What one image section (`spec/FORMAT.md` section 7) holds, for the
/// summary a caller prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSummary {
    /// The section's name.
    pub name: String,
    /// The image's size in bytes (`IMAGE_END`'s `logical_size`, 7.3).
    pub logical_size: u64,
    /// Bytes of the image stored as data extents.
    pub data_bytes: u64,
    /// Bytes of the image recorded as zero extents (all-zero windows and
    /// holes of a sparse source), not stored.
    pub zero_bytes: u64,
    /// Bytes the source reported lost (salvage), recorded as lost extents.
    pub lost_bytes: u64,
    /// Free space of the image's file systems, not stored (used-blocks capture).
    pub free_bytes: u64,
    /// Chunks this section stored (`CHUNK` records, section 6).
    pub new_chunks: u64,
    /// Chunk windows found already stored in the archive (or, in a child,
    /// in its chain), referred to rather than stored again.
    pub deduplicated_chunks: u64,
    /// Bytes of chunk records this section added to the archive.
    pub stored_bytes: u64,
}

/// What the whole archive holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// The archive's length in bytes, trailer included.
    pub archive_length: u64,
    /// Each image section, in the order added.
    pub images: Vec<ImageSummary>,
    /// Each file-tree section, in the order added.
    pub trees: Vec<crate::TreeSummary>,
}

pub(crate) struct SectionState {
    pub begin_offset: u64,
    pub end_offset: u64,
    pub tables: SectionTables,
}

/// What a section's table records are made from, kept until `finish`.
pub(crate) enum SectionTables {
    Image(Vec<Extent>),
    Tree(crate::tree::TreeTables),
}

/// The content identity of a run that stores nothing (zero, lost, free) in the map digest.
fn run_id(run: &Extent) -> [u8; 32] {
    run.kind().ok().and_then(ExtentKind::hole_identity).unwrap_or(image::ZERO_ID)
}

/// Why the image pipeline stopped.
enum PipelineError {
    Read(u64, std::io::Error),
    Write(WriteError),
}

impl PipelineError {
    fn into_write_error(self, read_error: &dyn Fn(u64, std::io::Error) -> WriteError) -> WriteError {
        match self {
            PipelineError::Read(offset, e) => read_error(offset, e),
            PipelineError::Write(e) => e,
        }
    }
}

/// What `add_image` carries from batch to batch.
struct ImageState {
    section_id: u32,
    /// A run of zero windows stays open until data or the end closes it, so that
    /// neighbouring zero windows become one extent even across batches.
    open_zero: Option<Extent>,
    extents: Vec<Extent>,
    summary: ImageSummary,
    digest: image::MapDigest,
}

/// Counts the chunks a section adds to the archive.
pub(crate) trait ChunkTally {
    fn add_chunk(&mut self, record_bytes: u64);
}

impl ChunkTally for ImageSummary {
    fn add_chunk(&mut self, record_bytes: u64) {
        self.new_chunks += 1;
        self.stored_bytes += record_bytes;
    }
}

/// Where a data extent's chunk is: already in the archive, or the n-th new chunk
/// of the batch being written.
pub(crate) enum ChunkLocation {
    Stored(u64),
    New(usize),
}

/// Writes one archive to `W` in a single pass; nothing is ever sought back to
/// (`spec/FORMAT.md` section 14).
///
/// [`ArchiveWriter::new`] writes the header (section 3); each
/// [`add_image`](ArchiveWriter::add_image) (section 7),
/// [`add_tree`](ArchiveWriter::add_tree) or
/// [`add_tree_from`](ArchiveWriter::add_tree_from) (section 8) writes one
/// section, whose chunks go into the one store all sections share and
/// deduplicate against (section 6); [`finish`](ArchiveWriter::finish) writes
/// the index and trailer (section 9) and hands the output back. The same
/// options (UUID and creation time included) and input give the same bytes.
///
/// ```
/// use strata_writer::{ArchiveWriter, NoProgress, SliceSource, WriterOptions};
///
/// let disk = vec![7u8; 1 << 20];
/// let options = WriterOptions::new([1; 16], 1_700_000_000_000_000_000);
/// let mut writer = ArchiveWriter::new(Vec::new(), options)?;
/// let image = writer.add_image("disk", &mut SliceSource::new(&disk), &NoProgress)?;
/// assert_eq!(image.logical_size, 1 << 20);
/// let (bytes, summary) = writer.finish()?;
/// assert!(bytes.starts_with(b"\x89STRATA\n"), "the archive magic");
/// assert_eq!(summary.archive_length, bytes.len() as u64);
/// # Ok::<(), strata_writer::WriteError>(())
/// ```
pub struct ArchiveWriter<W: Write> {
    out: W,
    pub(crate) position: u64,
    record_count: u64,
    tag: [u8; 8],
    pub(crate) options: WriterOptions,
    pub(crate) pool: rayon::ThreadPool,
    pub(crate) sections: Vec<SectionState>,
    names: Vec<Vec<u8>>,
    /// BLAKE3 of every stored chunk, to its record offset: the deduplication map.
    /// In a child it starts with every chunk of the chain (their `chunk_ref`s
    /// carry the ancestor's number), so they are referred to, not stored.
    stored_chunks: HashMap<[u8; 32], u64>,
    /// A child's chain: its `CHAIN` body, and each ancestor chunk's identity
    /// by `chunk_ref`.
    chain: Option<ChainBody>,
    /// The ancestor chunks this child referred to: the `CHAIN_INDEX` rows.
    ancestor_refs: std::sync::Mutex<std::collections::BTreeMap<u64, [u8; 32]>>,
    pub(crate) summary: ArchiveSummary,
    /// Buffers for stored chunk bytes, reused from chunk to chunk.
    pub(crate) spares: std::sync::Arc<SparePool>,
}

impl<W: Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("position", &self.position)
            .field("records", &self.record_count)
            .field("sections", &self.sections.len())
            .field("stored_chunks", &self.stored_chunks.len())
            .field("child", &self.chain.is_some())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive: checks the options and writes the header.
    pub fn new(out: W, options: WriterOptions) -> Result<Self, WriteError> {
        Self::start(out, options, None)
    }

    /// Starts an incremental archive (`spec/FORMAT.md` section 15), a child
    /// of the archives `base` lists: it stores only the chunks they lack, and
    /// refers to theirs.
    pub fn new_child(out: W, options: WriterOptions, base: ChainBase) -> Result<Self, WriteError> {
        Self::start(out, options, Some(base))
    }

    fn start(out: W, options: WriterOptions, base: Option<ChainBase>) -> Result<Self, WriteError> {
        if let Some(base) = &base {
            let depth = base.chain.depth();
            if depth == 0 || depth > limits::MAX_CHAIN_DEPTH as usize {
                return Err(WriteError::Invalid {
                    what: "chain depth",
                    detail: format!(
                        "{depth} ancestors; a chain holds 1 to {} (flatten the parent, `strata flatten`, to start a \
                         new chain)",
                        limits::MAX_CHAIN_DEPTH
                    ),
                });
            }
            if base.chain.ancestors.iter().any(|a| a.uuid == options.archive_uuid) {
                return Err(WriteError::Invalid {
                    what: "archive UUID",
                    detail: "the child would have the UUID of one of its ancestors".into(),
                });
            }
        }
        let chunk_size = options.chunk_size;
        if !chunk_size.is_power_of_two() || !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_RAW).contains(&chunk_size) {
            return Err(WriteError::Invalid {
                what: "chunk size",
                detail: format!("{chunk_size}: expected a power of two from 4 KiB to 16 MiB"),
            });
        }
        check_level(options.level)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .build()
            .map_err(|e| WriteError::Invalid { what: "threads", detail: e.to_string() })?;
        let mut header =
            ArchiveHeader::new(options.archive_uuid, options.created_ns, concat!("strata ", env!("CARGO_PKG_VERSION")));
        if base.is_some() {
            header.incompatible_features |= Features::INCOMPAT_INCREMENTAL;
            header.header_crc = ArchiveHeader::compute_crc(&header.encode(), &[]);
        }
        let (stored_chunks, chain) = match base {
            Some(base) => {
                let by_ref = base.chunks.iter().map(|(&id, &chunk_ref)| (chunk_ref, id)).collect();
                (base.chunks, Some((base.chain.to_bytes(), by_ref)))
            }
            None => (HashMap::new(), None),
        };
        let mut writer = ArchiveWriter {
            out,
            position: 0,
            record_count: 0,
            tag: header.archive_tag(),
            options,
            pool,
            sections: Vec::new(),
            names: Vec::new(),
            stored_chunks,
            chain,
            ancestor_refs: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            summary: ArchiveSummary::default(),
            spares: std::sync::Arc::new(SparePool::default()),
        };
        writer.write_bytes(&[&header.encode()])?;
        if let Some((body, _)) = &writer.chain {
            let body = body.clone();
            writer.write_record(RecordType::Chain, &[&body])?;
        }
        Ok(writer)
    }

    fn write_bytes(&mut self, parts: &[&[u8]]) -> Result<(), WriteError> {
        for part in parts {
            self.out.write_all(part).map_err(|source| WriteError::Output { offset: self.position, source })?;
            self.position += part.len() as u64;
        }
        Ok(())
    }

    /// Writes one record whose body is the concatenation of `body`; returns its offset.
    /// Writes a record; a table's body goes compressed when that makes it
    /// smaller (`spec/FORMAT.md` 5.2). Returns its offset.
    pub(crate) fn write_record(&mut self, record_type: RecordType, body: &[&[u8]]) -> Result<u64, WriteError> {
        if let [whole] = body {
            if let Some(stored) = self.compressed_table(record_type, whole) {
                return self.write_record_as(record_type, RecordFlags::ZSTD, &[&stored]);
            }
        }
        self.write_record_as(record_type, 0, body)
    }

    /// The body of a table stored compressed, when this writer compresses
    /// tables, the type allows it and the frame is smaller than the body.
    fn compressed_table(&self, record_type: RecordType, body: &[u8]) -> Option<Vec<u8>> {
        if !self.options.compress_tables || !record_type.may_compress() {
            return None;
        }
        crate::chunker::compress_table(body, self.options.level)
    }

    fn write_record_as(&mut self, record_type: RecordType, flags: u16, body: &[&[u8]]) -> Result<u64, WriteError> {
        let length: u64 = body.iter().map(|part| part.len() as u64).sum();
        let crc = body.iter().fold(0u32, |crc, part| crc32c::crc32c_append(crc, part));
        let header = RecordHeader::for_body(record_type.code(), flags, self.tag, length, crc);
        let offset = self.position;
        self.write_bytes(&[&header.encode()])?;
        self.write_bytes(body)?;
        self.record_count += 1;
        Ok(offset)
    }

    pub(crate) fn chunk_record_size(chunk: &PreparedChunk) -> u64 {
        (RecordHeader::SIZE + ChunkHeader::SIZE + chunk.stored.len()) as u64
    }

    /// Sets the chunk size of the sections added from now on (salvage keeps each
    /// image's own).
    pub fn set_chunk_size(&mut self, chunk_size: u32) -> Result<(), WriteError> {
        if !chunk_size.is_power_of_two() || !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_RAW).contains(&chunk_size) {
            return Err(WriteError::Invalid {
                what: "chunk size",
                detail: format!("{chunk_size}: expected a power of two from 4 KiB to 16 MiB"),
            });
        }
        self.options.chunk_size = chunk_size;
        Ok(())
    }

    /// Sets the zstd level of the chunks and tables written from now on.
    pub fn set_level(&mut self, level: i32) -> Result<(), WriteError> {
        check_level(level)?;
        self.options.level = level;
        Ok(())
    }

    /// Adds a block-image section named `name` holding everything `source` yields.
    pub fn add_image(
        &mut self,
        name: &str,
        source: &mut dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<ImageSummary, WriteError> {
        let section_id = self.begin_section(name)?;
        let begin = ImageBegin {
            section_id,
            sector_size: source.sector_size(),
            logical_size: source.known_size().unwrap_or(UNKNOWN_SIZE),
            chunk_size: self.options.chunk_size,
            flags: if source.used_blocks() { ImageFlags::USED_BLOCKS } else { 0 },
            name: name.as_bytes().to_vec(),
        };
        begin.validate()?;
        let begin_offset = self.write_record(RecordType::ImageBegin, &[&begin.to_bytes()])?;
        let mut check = ExtentMapCheck::new(&begin);
        let mut state = ImageState {
            section_id,
            open_zero: None,
            extents: Vec::new(),
            summary: ImageSummary { name: name.to_string(), ..ImageSummary::default() },
            digest: image::MapDigest::new(),
        };

        let chunk_size = self.options.chunk_size as usize;
        // Half the batch is one group of windows (one IMAGE_EXTENTS record and its
        // chunks); the other half is read ahead and in the workers' hands.
        let windows_per_batch = (self.options.batch_bytes / 2 / chunk_size).clamp(1, 4096);
        let read_error = |offset: u64, source: std::io::Error| WriteError::Source {
            what: format!("image {name:?}"),
            offset,
            source,
        };
        let logical_size = self
            .pipeline(&mut state, source, windows_per_batch, progress)
            .map_err(|e| e.into_write_error(&read_error))?;
        let ImageState { mut open_zero, mut extents, mut summary, mut digest, .. } = state;
        if let Some(run) = open_zero.take() {
            extents.push(run);
            digest.push(&run, &run_id(&run));
            self.write_record(RecordType::ImageExtents, &[&image::encode_extent_table(section_id, &[run])])?;
        }
        if let Some(expected) = source.known_size() {
            if expected != logical_size {
                return Err(read_error(
                    logical_size,
                    std::io::Error::other(format!("the source changed size from {expected} while it was read")),
                ));
            }
        }
        for extent in &extents {
            check.push(extent)?;
        }
        check.finish(logical_size)?;
        let end = ImageEnd {
            section_id,
            reserved: 0,
            logical_size,
            extent_count: extents.len() as u64,
            data_bytes: check.data_bytes,
            lost_bytes: check.lost_bytes,
            chunk_count: summary.new_chunks,
            chunk_bytes: summary.stored_bytes,
            begin_offset,
            map_blake3: digest.finish(),
        };
        let end_offset = self.write_record(RecordType::ImageEnd, &[&end.encode()])?;
        summary.logical_size = logical_size;
        summary.data_bytes = check.data_bytes;
        summary.zero_bytes = logical_size - check.data_bytes - check.lost_bytes - check.free_bytes;
        summary.lost_bytes = check.lost_bytes;
        summary.free_bytes = check.free_bytes;
        self.sections.push(SectionState { begin_offset, end_offset, tables: SectionTables::Image(extents) });
        self.summary.images.push(summary.clone());
        Ok(summary)
    }

    /// Reads `source` window by window on this thread while worker threads hash
    /// and compress, and writes the results in image order, `group` windows to an
    /// `IMAGE_EXTENTS` record. No batch waits for its slowest chunk before the next
    /// starts; memory holds at most `group` + 2 per worker windows. Returns the
    /// image's size.
    fn pipeline(
        &mut self,
        state: &mut ImageState,
        source: &mut dyn ImageSource,
        group: usize,
        progress: &dyn Progress,
    ) -> Result<u64, PipelineError> {
        let chunk_size = self.options.chunk_size as usize;
        let level = self.options.level;
        let workers = self.pool.current_num_threads().max(1);
        let slots = group + 2 * workers;
        // A job: sequence number, buffer, image offset, length, whether the
        // worker must read the bytes itself (sources with a window reader), and
        // the free ranges to split off (used-blocks capture).
        type Job = (u64, Vec<u8>, u64, usize, bool, Vec<(std::ops::Range<usize>, crate::Hole)>);
        type Done = (u64, Result<PreparedWindow, (u64, std::io::Error)>, Vec<u8>);
        let (work_tx, work_rx) = std::sync::mpsc::channel::<Job>();
        let work_rx = std::sync::Mutex::new(work_rx);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Done>();
        let reader = source.window_reader();
        let spares = self.spares.clone();
        std::thread::scope(|scope| {
            // Workers stop when `work_tx` is dropped, which the early returns do too.
            let work_tx = work_tx;
            for _ in 0..workers {
                let (work_rx, done_tx, reader, spares) = (&work_rx, done_tx.clone(), reader.as_deref(), &*spares);
                scope.spawn(move || loop {
                    let job = work_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok((seq, mut buffer, offset, len, unread, free)) = job else { break };
                    let read = match (unread, reader) {
                        (true, Some(reader)) => reader.read_window(&mut buffer, offset, len),
                        _ => Ok(()),
                    };
                    let prepared =
                        read.map(|()| prepare_split(&mut buffer, len, &free, level, spares)).map_err(|e| (offset, e));
                    if done_tx.send((seq, prepared, buffer)).is_err() {
                        break;
                    }
                });
            }
            drop(done_tx);
            let mut free: Vec<Vec<u8>> = (0..slots).map(|_| Vec::new()).collect();
            let mut ready: std::collections::BTreeMap<u64, PreparedWindow> = std::collections::BTreeMap::new();
            let (mut next_seq, mut next_write, mut in_flight) = (0u64, 0u64, 0usize);
            let (mut image_offset, mut group_offset, mut read_offset) = (0u64, 0u64, 0u64);
            let mut pending: Vec<PreparedWindow> = Vec::with_capacity(group);
            let mut ended = false;
            loop {
                while !ended {
                    let Some(mut buffer) = free.pop() else { break };
                    let window = if reader.is_some() {
                        source.skip_window(chunk_size)
                    } else {
                        source.next_window(&mut buffer, chunk_size)
                    }
                    .map_err(|e| PipelineError::Read(read_offset, e))?;
                    let n = match window {
                        Window::End => {
                            free.push(buffer);
                            ended = true;
                            break;
                        }
                        Window::Data(n) => {
                            let free = source.holes_within(read_offset, n);
                            work_tx
                                .send((next_seq, buffer, read_offset, n, reader.is_some(), free))
                                .expect("workers run until the sender is dropped");
                            in_flight += 1;
                            n
                        }
                        Window::Hole(n) | Window::Lost(n) | Window::Free(n) => {
                            let length = n as u64;
                            let prepared = match window {
                                Window::Lost(_) => PreparedWindow::Lost { length },
                                Window::Free(_) => PreparedWindow::Free { length },
                                _ => PreparedWindow::Zero { length },
                            };
                            ready.insert(next_seq, prepared);
                            free.push(buffer);
                            n
                        }
                    };
                    next_seq += 1;
                    read_offset += n as u64;
                    // A short window ends the image: nothing may follow it.
                    ended = n < chunk_size;
                }
                // Write what is ready, in order, a group at a time.
                while let Some(window) = ready.remove(&next_write) {
                    next_write += 1;
                    image_offset += window.length();
                    pending.push(window);
                    if pending.len() == group {
                        self.write_batch(state, group_offset, std::mem::take(&mut pending), progress)
                            .map_err(PipelineError::Write)?;
                        group_offset = image_offset;
                    }
                }
                if in_flight == 0 {
                    if ended {
                        break;
                    }
                    continue;
                }
                let (seq, prepared, buffer) = done_rx.recv().expect("a worker answers every job it took");
                let prepared = prepared.map_err(|(offset, e)| PipelineError::Read(offset, e))?;
                ready.insert(seq, prepared);
                free.push(buffer);
                in_flight -= 1;
            }
            if !pending.is_empty() {
                self.write_batch(state, group_offset, pending, progress).map_err(PipelineError::Write)?;
            }
            Ok(image_offset)
        })
    }

    pub(crate) fn begin_section(&mut self, name: &str) -> Result<u32, WriteError> {
        image::validate_section_name(name.as_bytes())?;
        if self.names.iter().any(|n| n == name.as_bytes()) {
            return Err(WriteError::Invalid {
                what: "section name",
                detail: format!("{name:?} is used by another section of this archive"),
            });
        }
        if self.sections.len() as u32 >= limits::MAX_SECTIONS {
            return Err(WriteError::Invalid {
                what: "sections",
                detail: format!("an archive holds at most {}", limits::MAX_SECTIONS),
            });
        }
        self.names.push(name.as_bytes().to_vec());
        Ok(self.sections.len() as u32)
    }

    /// Turns a prepared batch into extents, then writes its `IMAGE_EXTENTS` record
    /// followed by its new chunks, in the order their extents first use them.
    fn write_batch(
        &mut self,
        state: &mut ImageState,
        image_offset: u64,
        prepared: Vec<PreparedWindow>,
        progress: &dyn Progress,
    ) -> Result<(), WriteError> {
        let ImageState { section_id, open_zero, extents, summary, digest } = state;
        let section_id = *section_id;
        let mut planned: Vec<(Extent, Option<ChunkLocation>, [u8; 32])> = Vec::new();
        let mut new_chunks: Vec<PreparedChunk> = Vec::new();
        let mut new_by_hash: HashMap<[u8; 32], usize> = HashMap::new();
        let mut offset = image_offset;
        let pieces = prepared.into_iter().flat_map(|window| match window {
            PreparedWindow::Pieces(pieces) => pieces,
            whole => vec![whole],
        });
        for window in pieces {
            match window {
                PreparedWindow::Zero { length } | PreparedWindow::Lost { length } | PreparedWindow::Free { length } => {
                    let kind = match window {
                        PreparedWindow::Lost { .. } => REF_LOST,
                        PreparedWindow::Free { .. } => REF_FREE,
                        _ => REF_ZERO,
                    };
                    match open_zero {
                        Some(run) if run.chunk_ref == kind => run.length += length,
                        _ => {
                            if let Some(run) =
                                open_zero.replace(Extent { image_offset: offset, length, chunk_ref: kind })
                            {
                                planned.push((run, None, run_id(&run)));
                            }
                        }
                    }
                    offset += length;
                    progress.advance(length);
                }
                PreparedWindow::Data(chunk) => {
                    if let Some(run) = open_zero.take() {
                        planned.push((run, None, run_id(&run)));
                    }
                    let length = u64::from(chunk.raw_length);
                    let content_id = chunk.blake3;
                    let (location, deduplicated) = self.locate_chunk(chunk, &mut new_chunks, &mut new_by_hash);
                    summary.deduplicated_chunks += u64::from(deduplicated);
                    planned.push((Extent { image_offset: offset, length, chunk_ref: 0 }, Some(location), content_id));
                    offset += length;
                    progress.advance(length);
                }
                PreparedWindow::Pieces(_) => unreachable!("pieces were flattened above and hold no pieces"),
            }
        }
        if planned.is_empty() {
            return Ok(());
        }
        let extents_written = self.write_announced(RecordType::ImageExtents, new_chunks, summary, |resolve| {
            let batch: Vec<Extent> = planned
                .iter()
                .map(|(extent, location, _)| Extent {
                    chunk_ref: location.as_ref().map_or(extent.chunk_ref, resolve),
                    ..*extent
                })
                .collect();
            (image::encode_extent_table(section_id, &batch), batch)
        })?;
        for (extent, (_, _, content_id)) in extents_written.iter().zip(&planned) {
            digest.push(extent, content_id);
        }
        extents.extend_from_slice(&extents_written);
        Ok(())
    }

    /// Looks a prepared chunk up in the archive's store and in the batch's new
    /// chunks; adds it to the new ones if it is neither. One deduplication rule
    /// for every section kind.
    pub(crate) fn locate_chunk(
        &self,
        chunk: PreparedChunk,
        new_chunks: &mut Vec<PreparedChunk>,
        new_by_hash: &mut HashMap<[u8; 32], usize>,
    ) -> (ChunkLocation, bool) {
        if let Some(&stored) = self.stored_chunks.get(&chunk.blake3) {
            self.note_reference(stored);
            return (ChunkLocation::Stored(stored), true);
        }
        if let Some(&index) = new_by_hash.get(&chunk.blake3) {
            return (ChunkLocation::New(index), true);
        }
        new_by_hash.insert(chunk.blake3, new_chunks.len());
        new_chunks.push(chunk);
        (ChunkLocation::New(new_chunks.len() - 1), false)
    }

    /// Notes that an extent refers to `chunk_ref`: an ancestor chunk becomes a
    /// row of the `CHAIN_INDEX` (`spec/FORMAT.md` 15.3). Returns false for a
    /// reference into an ancestor that the chain does not offer.
    pub(crate) fn note_reference(&self, chunk_ref: u64) -> bool {
        if !ChunkRef::split(chunk_ref).is_ancestor() {
            return true;
        }
        let Some(id) = self.chain.as_ref().and_then(|(_, by_ref)| by_ref.get(&chunk_ref)) else {
            return false;
        };
        self.ancestor_refs.lock().expect("not poisoned").insert(chunk_ref, *id);
        true
    }

    /// Writes a record announcing `new_chunks` (built by `encode`, which is given a
    /// resolver from chunk locations to record offsets), then the chunks, in the
    /// order of their first use. Returns what `encode` returned besides the body.
    pub(crate) fn write_announced<T>(
        &mut self,
        record_type: RecordType,
        new_chunks: Vec<PreparedChunk>,
        summary: &mut impl ChunkTally,
        encode: impl Fn(&dyn Fn(&ChunkLocation) -> u64) -> (Vec<u8>, T),
    ) -> Result<T, WriteError> {
        // The plain body's length does not depend on the offsets, but a
        // compressed one's does, and the offsets of the chunks after it depend
        // on that length: compress with the offsets the previous length gives
        // until the length stays (FORMAT.md 14), else store it plain.
        let (probe, _) = encode(&|_| 0);
        let offsets_after = |stored_length: usize| {
            let mut at = self.position + (RecordHeader::SIZE + stored_length) as u64;
            let mut offsets = Vec::with_capacity(new_chunks.len());
            for chunk in &new_chunks {
                offsets.push(at);
                at += Self::chunk_record_size(chunk);
            }
            offsets
        };
        let encode_at = |chunk_offsets: &[u64]| {
            encode(&|location: &ChunkLocation| match *location {
                ChunkLocation::Stored(offset) => offset,
                ChunkLocation::New(index) => chunk_offsets[index],
            })
        };
        let mut compressed = None;
        if let Some(first) = self.compressed_table(record_type, &probe) {
            let mut assumed = first.len();
            for _ in 0..4 {
                let chunk_offsets = offsets_after(assumed);
                let (body, result) = encode_at(&chunk_offsets);
                match self.compressed_table(record_type, &body) {
                    Some(stored) if stored.len() == assumed => {
                        compressed = Some((stored, result, chunk_offsets));
                        break;
                    }
                    Some(stored) => assumed = stored.len(),
                    None => break,
                }
            }
        }
        let (result, chunk_offsets) = match compressed {
            Some((stored, result, chunk_offsets)) => {
                self.write_record_as(record_type, RecordFlags::ZSTD, &[&stored])?;
                (result, chunk_offsets)
            }
            None => {
                let chunk_offsets = offsets_after(probe.len());
                let (body, result) = encode_at(&chunk_offsets);
                debug_assert_eq!(body.len(), probe.len(), "a plain announcement's length cannot depend on offsets");
                self.write_record_as(record_type, 0, &[&body])?;
                (result, chunk_offsets)
            }
        };
        for (chunk, expected_offset) in new_chunks.iter().zip(&chunk_offsets) {
            let header = ChunkHeader {
                blake3: chunk.blake3,
                raw_length: chunk.raw_length,
                encoding: chunk.encoding.code(),
                reserved: [0; 3],
            };
            let offset = self.write_record(RecordType::Chunk, &[&header.encode(), &chunk.stored])?;
            debug_assert_eq!(offset, *expected_offset, "chunk offsets are planned before writing");
            self.stored_chunks.insert(chunk.blake3, offset);
            summary.add_chunk(Self::chunk_record_size(chunk));
        }
        for chunk in new_chunks {
            self.spares.give(chunk.stored);
        }
        Ok(result)
    }

    /// Writes the index and the trailer, flushes, and hands the output back.
    pub fn finish(mut self) -> Result<(W, ArchiveSummary), WriteError> {
        let mut entries = Vec::with_capacity(self.sections.len());
        let sections = std::mem::take(&mut self.sections);
        for (section_id, section) in sections.into_iter().enumerate() {
            let section_id = section_id as u32;
            let (kind, table_offset) = match section.tables {
                SectionTables::Image(extents) => {
                    let table = image::encode_extent_table(section_id, &extents);
                    (SectionKind::Image, self.write_record(RecordType::ImageIndex, &[&table])?)
                }
                SectionTables::Tree(tables) => (SectionKind::FileTree, self.write_tree_tables(section_id, tables)?),
            };
            entries.push(SectionEntry {
                kind: kind.code(),
                reserved: [0; 3],
                section_id,
                begin_offset: section.begin_offset,
                end_offset: section.end_offset,
                table_offset,
            });
        }
        let chain_index = match self.chain.take() {
            Some((chain_body, _)) => {
                let refs = std::mem::take(&mut *self.ancestor_refs.lock().expect("not poisoned"));
                let rows: Vec<ChainRef> = refs
                    .into_iter()
                    .map(|(chunk_ref, blake3)| ChainRef { chunk_ref: ChunkRef::split(chunk_ref), blake3 })
                    .collect();
                let body = ChainIndex::encode(&chain_body, &rows);
                let offset = self.write_record(RecordType::ChainIndex, &[&body])?;
                Some(ChainIndexPointer { offset, blake3: *blake3::hash(&body).as_bytes() })
            }
            None => None,
        };
        let index = ArchiveIndex { reserved: 0, chain_index, sections: entries };
        let index_offset = self.write_record(RecordType::ArchiveIndex, &[&index.to_bytes()])?;
        let trailer = Trailer {
            index_offset,
            archive_length: self.position + strata_format::index::TRAILER_RECORD_SIZE,
            record_count: self.record_count,
            magic: TRAILER_MAGIC,
        };
        self.write_record(RecordType::Trailer, &[&trailer.encode()])?;
        self.out.flush().map_err(|source| WriteError::Output { offset: self.position, source })?;
        self.summary.archive_length = self.position;
        Ok((self.out, self.summary))
    }
}
