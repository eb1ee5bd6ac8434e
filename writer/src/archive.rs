//! The archive writer: header first, then sections, then the index and trailer
//! (`spec/FORMAT.md` sections 2, 3, 9 and 14). It owns the output and the
//! archive-wide state: the chunk store's deduplication map (section 6), the
//! section list, and the tables written at the end.

use std::collections::HashMap;
use std::io::Write;

use strata_format::image;
use strata_format::index::ChainIndexPointer;
use strata_format::index::{SectionKind, TRAILER_MAGIC};
use strata_format::{
    limits, record::RecordFlags, ArchiveHeader, ArchiveIndex, Chain, ChainIndex, ChainRef, ChunkRef, Extent, Features,
    RecordHeader, RecordType, SectionEntry, Trailer,
};

use crate::chunker::SparePool;
use crate::image::ImageSummary;
use crate::WriteError;

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
    /// Raw bytes read ahead: bounds memory in flight. An image's batch of
    /// windows takes half of it; a tree cuts its batches (each one
    /// `FILES_EXTENTS` record) at an eighth of it and reads on while up to
    /// the rest is being compressed.
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
    /// Where large files of a file tree are cut into chunks: at
    /// content-defined boundaries by default ([`FileCuts`]).
    pub file_cuts: crate::FileCuts,
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
            file_cuts: crate::FileCuts::ContentDefined,
        }
    }
}

/// A zstd level the library accepts.
pub(crate) fn check_level(level: i32) -> Result<(), WriteError> {
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
    pub(crate) out: W,
    pub(crate) position: u64,
    pub(crate) record_count: u64,
    pub(crate) tag: [u8; 8],
    pub(crate) options: WriterOptions,
    pub(crate) pool: rayon::ThreadPool,
    pub(crate) sections: Vec<SectionState>,
    pub(crate) names: Vec<Vec<u8>>,
    /// BLAKE3 of every stored chunk, to its record offset: the deduplication map.
    /// In a child it starts with every chunk of the chain (their `chunk_ref`s
    /// carry the ancestor's number), so they are referred to, not stored.
    pub(crate) stored_chunks: HashMap<[u8; 32], u64>,
    /// The chain's chunks, by BLAKE3 (empty without a parent): shared with
    /// the workers, which do not compress a chunk found here.
    pub(crate) chain_chunks: std::sync::Arc<crate::chunker::KnownChunks>,
    /// A child's chain: its `CHAIN` body, and each ancestor chunk's identity
    /// by `chunk_ref`.
    pub(crate) chain: Option<ChainBody>,
    /// The ancestor chunks this child referred to: the `CHAIN_INDEX` rows.
    pub(crate) ancestor_refs: std::sync::Mutex<std::collections::BTreeMap<u64, [u8; 32]>>,
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
        let (chain_chunks, chain) = match base {
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
            stored_chunks: HashMap::new(),
            chain_chunks: std::sync::Arc::new(chain_chunks),
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

    /// Writes a table record of a child against `prefix`, a table of the
    /// same type in the parent (`spec/FORMAT.md` 5.3), when that makes it
    /// smaller than [`write_record`](Self::write_record) would; else as that
    /// does. Returns its offset.
    pub(crate) fn write_table(
        &mut self,
        record_type: RecordType,
        body: &[u8],
        prefix: Option<&crate::TablePrefix>,
    ) -> Result<u64, WriteError> {
        let plain = self.compressed_table(record_type, body);
        let prefix = prefix.filter(|_| self.chain.is_some() && self.options.compress_tables);
        if let Some(prefix) = prefix.filter(|_| record_type != RecordType::ChainIndex) {
            if let Some(frame) = crate::chunker::compress_table_with_prefix(body, self.options.level, &prefix.body) {
                let head = strata_format::PrefixHead {
                    prefix_ref: strata_format::ChunkRef { archive: 1, offset: prefix.record },
                    prefix_length: prefix.body.len() as u64,
                    prefix_blake3: *blake3::hash(&prefix.body).as_bytes(),
                };
                let best = plain.as_ref().map_or(body.len(), Vec::len);
                if strata_format::PrefixHead::SIZE + frame.len() < best {
                    let flags = RecordFlags::ZSTD | RecordFlags::PREFIXED;
                    return self.write_record_as(record_type, flags, &[&head.encode(), &frame]);
                }
            }
        }
        match plain {
            Some(stored) => self.write_record_as(record_type, RecordFlags::ZSTD, &[&stored]),
            None => self.write_record_as(record_type, 0, &[body]),
        }
    }

    /// The body of a table stored compressed, when this writer compresses
    /// tables, the type allows it and the frame is smaller than the body.
    pub(crate) fn compressed_table(&self, record_type: RecordType, body: &[u8]) -> Option<Vec<u8>> {
        if !self.options.compress_tables || !record_type.may_compress() {
            return None;
        }
        crate::chunker::compress_table(body, self.options.level)
    }

    pub(crate) fn write_record_as(
        &mut self,
        record_type: RecordType,
        flags: u16,
        body: &[&[u8]],
    ) -> Result<u64, WriteError> {
        let length: u64 = body.iter().map(|part| part.len() as u64).sum();
        let crc = body.iter().fold(0u32, |crc, part| crc32c::crc32c_append(crc, part));
        let header = RecordHeader::for_body(record_type.code(), flags, self.tag, length, crc);
        let offset = self.position;
        self.write_bytes(&[&header.encode()])?;
        self.write_bytes(body)?;
        self.record_count += 1;
        Ok(offset)
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
