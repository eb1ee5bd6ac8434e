//! Random access: open from the trailer, look extents up by binary search.

use std::sync::{Arc, Mutex};

use strata_format::index::{SectionKind, TRAILER_RECORD_SIZE};
use strata_format::{ArchiveHeader, ArchiveIndex, Chain, ChunkRef, ErrorClass, RecordHeader, RecordType, Trailer};

use crate::chain::{open_chain, ChainState, ParentSearch};
use crate::image::section::{load_image_section, ImageSection};
use crate::image::Image;
use crate::record::{read_checked_body, read_record_at, read_record_header_at, Prefixes, Record, BODY_CRC_WHAT};
use crate::{chunk, Error, ReadAt};

/// How much the reader is willing to allocate for structures whose size the
/// format does not bound. Every other size is bounded by the format itself
/// (FORMAT.md 13).
///
/// ```
/// use strata_reader::{Archive, ErrorClass, ErrorKind, Limits};
///
/// let bytes = &include_bytes!("../../spec/vectors/image-small.strata")[..];
/// // This archive's IMAGE_INDEX body is 328 bytes: allow fewer and it is refused.
/// let tight = Limits { max_index_bytes: 100, ..Limits::default() };
/// let error = Archive::new_with_limits(bytes, tight).unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::Archive(ErrorClass::LimitExceeded));
/// assert!(Archive::new_with_limits(bytes, Limits::default()).is_ok());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest `IMAGE_INDEX` (or unknown ancillary) record body loaded into memory.
    pub max_index_bytes: u64,
    /// Most ancestors an incremental archive may list (at most the format's 64).
    pub max_chain_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_index_bytes: 256 << 20, max_chain_depth: strata_format::limits::MAX_CHAIN_DEPTH as usize }
    }
}

/// One section of an archive.
#[derive(Clone, Debug)]
pub enum Section {
    /// A block-image section (FORMAT.md 7).
    Image(ImageSection),
    /// A file-tree section (FORMAT.md 8).
    Tree(crate::tree::TreeSection),
}

impl Section {
    /// The section's name, unique among all the archive's sections (FORMAT.md 7.1, 8.1).
    pub fn name(&self) -> &str {
        match self {
            Section::Image(image) => &image.name,
            Section::Tree(tree) => &tree.name,
        }
    }
    /// Which kind of section this is, as the `ARCHIVE_INDEX` records it (FORMAT.md 9.2).
    pub fn kind(&self) -> SectionKind {
        match self {
            Section::Image(_) => SectionKind::Image,
            Section::Tree(_) => SectionKind::FileTree,
        }
    }
}

/// An archive opened for random access (FORMAT.md 10.1): [`Archive::open`]
/// reads the header, the trailer, the `ARCHIVE_INDEX` and every section's
/// extent map; content is read only when asked for, through [`Archive::image`]
/// and [`Archive::tree`]. The source is anything [`ReadAt`]: a file, a byte
/// slice, a `Vec<u8>`.
///
/// Its `Debug` names the size and the sections, not the whole index.
///
/// ```
/// use strata_reader::{Archive, Section};
///
/// let bytes: Vec<u8> = include_bytes!("../../spec/vectors/image-and-tree.strata").to_vec();
/// let archive = Archive::new(bytes)?;
/// assert_eq!(archive.size(), 17_034);
/// let names: Vec<&str> = archive.sections().iter().map(Section::name).collect();
/// assert_eq!(names, ["disk", "tree"]);
/// match &archive.sections()[0] {
///     Section::Image(image) => assert_eq!(image.logical_size, 18_192),
///     Section::Tree(_) => unreachable!("the first section is the image"),
/// }
/// assert_eq!(archive.image("disk")?.len(), 18_192);
/// assert!(archive.tree("tree")?.lookup("abc")?.is_some());
/// assert!(format!("{archive:?}").starts_with("Archive { size: 17034, sections: [(Image, \"disk\"), (FileTree, \"tree\")]"));
/// # Ok::<(), strata_reader::Error>(())
/// ```
pub struct Archive<R: ReadAt> {
    source: R,
    size: u64,
    header: ArchiveHeader,
    tag: [u8; 8],
    limits: Limits,
    sections: Vec<Section>,
    /// The last chunk decoded, so sequential small reads decode each chunk once.
    last_chunk: Mutex<Option<(u64, Arc<Chunk>)>>,
    /// The last chunk read only in part: a second read in it decodes it whole.
    last_partial: std::sync::atomic::AtomicU64,
    /// File-tree records read lately (groups, tables, extents records).
    tree_cache: crate::tree::SharedTreeCache,
    /// The ancestors of an incremental archive (FORMAT.md 15).
    chain: Option<Arc<ChainState>>,
    /// BLAKE3 of the `ARCHIVE_INDEX` body: what a child binds this archive by.
    binding: [u8; 32],
    /// Record offset of the `ARCHIVE_INDEX`.
    index_offset: u64,
}

impl<R: ReadAt> std::fmt::Debug for Archive<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sections: Vec<(SectionKind, &str)> = self.sections.iter().map(|s| (s.kind(), s.name())).collect();
        f.debug_struct("Archive")
            .field("size", &self.size)
            .field("sections", &sections)
            .field("incremental", &self.chain.is_some())
            .finish_non_exhaustive()
    }
}

/// Reads and checks the trailer (the last 64 bytes) and the `ARCHIVE_INDEX` it
/// points at (FORMAT.md 10.1 steps 2 and 3): the trailer and the index body.
/// The caller has checked that the file can hold a trailer after the header.
pub(crate) fn read_trailer_and_index<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    tag: [u8; 8],
    limits: &Limits,
) -> Result<(Trailer, Vec<u8>), Error> {
    let trailer_offset = size - TRAILER_RECORD_SIZE;
    let trailer_record = read_record_at(source, size, trailer_offset, tag, limits.max_index_bytes, Prefixes::None)
        .map_err(|e| {
            // A record header that passes says a trailer is there: a body that
            // then fails its CRC is damage to it, not a cut (FORMAT.md 10.1).
            if e.what() == BODY_CRC_WHAT {
                return e;
            }
            Error::new(
                ErrorClass::Truncated,
                "trailer",
                format!(
                    "the last 64 bytes are not a valid trailer ({e}): the archive is truncated or its end is damaged; `strata salvage` recovers what is complete"
                ),
            )
            .at(trailer_offset)
        })?;
    let trailer = expect_type(&trailer_record, RecordType::Trailer)?;
    let trailer = Trailer::decode_exact(trailer, "TRAILER body").map_err(|e| Error::from(e).at(trailer_offset))?;
    trailer.validate().map_err(|e| Error::from(e).at(trailer_offset))?;
    if trailer.archive_length != size {
        return Err(Error::new(
            if trailer.archive_length > size { ErrorClass::Truncated } else { ErrorClass::IndexMismatch },
            "TRAILER archive_length",
            format!("{}, but the file has {size} bytes", trailer.archive_length),
        )
        .at(trailer_offset));
    }
    let index_record = read_record_at(source, size, trailer.index_offset, tag, limits.max_index_bytes, Prefixes::None)?;
    let index_body = expect_type(&index_record, RecordType::ArchiveIndex)?.to_vec();
    Ok((trailer, index_body))
}

/// Reads and checks the header at offset 0.
pub(crate) fn read_header<R: ReadAt + ?Sized>(source: &R, size: u64) -> Result<ArchiveHeader, Error> {
    let mut fixed = [0u8; ArchiveHeader::SIZE];
    if size < ArchiveHeader::SIZE as u64 {
        let mut start = vec![0u8; size as usize];
        source.read_exact_at(&mut start, 0).map_err(|e| Error::io("header", 0, e))?;
        return Err(if ArchiveHeader::has_magic(&start) {
            Error::new(ErrorClass::Truncated, "header", format!("the file has {size} bytes, the header alone 128"))
        } else {
            Error::new(ErrorClass::NotStrata, "header", not_strata_detail(&start))
        }
        .at(0));
    }
    source.read_exact_at(&mut fixed, 0).map_err(|e| Error::io("header", 0, e))?;
    let header = ArchiveHeader::decode(&fixed);
    if !ArchiveHeader::has_magic(&fixed) {
        return Err(Error::new(ErrorClass::NotStrata, "header", not_strata_detail(&fixed)).at(0));
    }
    header.validate_length().map_err(|e| Error::from(e).at(0))?;
    let extension_length = header.header_length as usize - ArchiveHeader::SIZE;
    let mut extension = vec![0u8; extension_length];
    if extension_length > 0 {
        source
            .read_exact_at(&mut extension, ArchiveHeader::SIZE as u64)
            .map_err(|e| Error::io("header extension", 128, e))?;
    }
    header.validate(&fixed, &extension).map_err(|e| Error::from(e).at(0))?;
    Ok(header)
}

/// Says what a file that is not a Strata archive seems to be.
pub fn not_strata_detail(start: &[u8]) -> String {
    let shown: Vec<String> = start.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let guess = match start {
        [0x1f, 0x8b, ..] => ", a gzip stream",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => ", a zstd stream",
        [b'Q', b'F', b'I', 0xfb, ..] => ", a qcow2 image",
        [0xfd, b'7', b'z', b'X', ..] => ", an xz stream",
        [b'P', b'K', 3, 4, ..] => ", a zip archive",
        [] => " (the file is empty)",
        _ => "",
    };
    format!("not a Strata archive (it starts with {}{guess})", shown.join(" "))
}

impl Archive<std::fs::File> {
    /// Opens the archive file at `path` with the default [`Limits`]:
    /// [`Archive::new`] over the opened file.
    ///
    /// ```no_run
    /// let archive = strata_reader::Archive::open("backup.strata")?;
    /// for section in archive.sections() {
    ///     println!("{:?} {}", section.kind(), section.name());
    /// }
    /// # Ok::<(), strata_reader::Error>(())
    /// ```
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::local_io(format!("opening {}", path.display()), e))?;
        Archive::new_with_parents(file, Limits::default(), ParentSearch::beside(path))
    }
}

impl<R: ReadAt> Archive<R> {
    /// Opens an archive read through `source` (a file, a byte slice, any
    /// [`ReadAt`]) with the default [`Limits`].
    pub fn new(source: R) -> Result<Self, Error> {
        Self::new_with_limits(source, Limits::default())
    }

    /// Opens an archive: header, trailer, index, and every section's extent map.
    pub fn new_with_limits(source: R, limits: Limits) -> Result<Self, Error> {
        Self::new_with_parents(source, limits, ParentSearch::default())
    }

    /// Opens an archive as [`new_with_limits`](Self::new_with_limits) does,
    /// an incremental one's ancestors looked for as `parents` says from the
    /// start: tables read while opening may be stored against an ancestor's
    /// (FORMAT.md 5.3).
    pub fn new_with_parents(source: R, limits: Limits, parents: ParentSearch) -> Result<Self, Error> {
        let size = source.size().map_err(|e| Error::io("archive size", 0, e))?;
        let header = read_header(&source, size)?;
        let tag = header.archive_tag();
        let first_record = u64::from(header.header_length);
        if size < first_record + TRAILER_RECORD_SIZE {
            return Err(Error::new(
                ErrorClass::Truncated,
                "trailer",
                format!("the archive has {size} bytes, too few to hold a trailer; `strata salvage` recovers what is complete"),
            )
            .at(size));
        }
        let (trailer, index_body) = read_trailer_and_index(&source, size, tag, &limits)?;
        let index = ArchiveIndex::parse(&index_body).map_err(|e| Error::from(e).at(trailer.index_offset))?;
        let chain = open_chain(&source, size, &header, &limits, &index, trailer.index_offset)?;
        if let Some(chain) = &chain {
            chain.set_search(parents);
        }
        let mut sections = Vec::with_capacity(index.sections.len());
        let prefixes = Prefixes::of(chain.as_deref());
        for entry in &index.sections {
            let section = match SectionKind::from_code(entry.kind) {
                Some(SectionKind::Image) => {
                    Section::Image(load_image_section(&source, size, tag, &limits, entry, prefixes)?)
                }
                Some(SectionKind::FileTree) => {
                    Section::Tree(crate::tree::load_tree_section(&source, size, tag, &limits, entry, prefixes)?)
                }
                None => {
                    return Err(Error::new(
                        ErrorClass::RecordMalformed,
                        "section kind",
                        format!("section {} has unknown kind {}", entry.section_id, entry.kind),
                    )
                    .at(entry.begin_offset))
                }
            };
            if sections.iter().any(|s: &Section| s.name() == section.name()) {
                return Err(Error::new(
                    ErrorClass::RecordMalformed,
                    "section name",
                    format!("{:?} names two sections", section.name()),
                )
                .at(entry.begin_offset));
            }
            sections.push(section);
        }
        Ok(Archive {
            source,
            size,
            header,
            tag,
            limits,
            sections,
            last_chunk: Mutex::new(None),
            last_partial: std::sync::atomic::AtomicU64::new(0),
            tree_cache: Default::default(),
            chain,
            binding: *blake3::hash(&index_body).as_bytes(),
            index_offset: trailer.index_offset,
        })
    }

    /// The positional source the archive is read from.
    pub fn source(&self) -> &R {
        &self.source
    }
    /// The decoded body of the table record at `offset`, which must be of
    /// type `expected`: for tools that work at the level of the format (a
    /// child's writer stores its tables against its parent's, FORMAT.md 5.3).
    /// A prefixed body is decoded against its ancestor's record.
    pub fn table_body(&self, offset: u64, expected: RecordType) -> Result<Vec<u8>, Error> {
        let limit = self.limits.max_index_bytes;
        let record = read_record_at(&self.source, self.size, offset, self.tag, limit, self.prefixes())?;
        expect_type(&record, expected)?;
        Ok(record.body)
    }

    /// What this archive's prefixed tables are decoded against (FORMAT.md 5.3).
    pub(crate) fn prefixes(&self) -> Prefixes<'_> {
        Prefixes::of(self.chain.as_deref())
    }

    pub(crate) fn tag(&self) -> [u8; 8] {
        self.tag
    }
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The archive header (FORMAT.md 3): version, feature bits, the tag.
    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// The archive's size in bytes, as its source reported it when opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Every section, in the order of the `ARCHIVE_INDEX` (FORMAT.md 9.2),
    /// which is the archive order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The chain of an incremental archive (FORMAT.md 15): its ancestors,
    /// the parent first. `None` for a self-contained archive.
    pub fn chain(&self) -> Option<&Chain> {
        self.chain.as_ref().map(|c| &c.chain)
    }

    /// Sets where the ancestors of an incremental archive are looked for
    /// (FORMAT.md 15.4). Nothing is opened until a read needs an ancestor.
    /// Without a call, ancestors are found only by `--parent`-style files
    /// given here, so a caller that opened the archive from a path should
    /// pass [`ParentSearch::beside`] that path.
    pub fn set_parent_search(&self, search: ParentSearch) {
        if let Some(chain) = &self.chain {
            chain.set_search(search);
        }
    }

    /// Opens and checks ancestor `k` (1 is the parent), giving the path it was
    /// found at, or the error (`parent-missing`, `parent-mismatch`) that
    /// every read needing it reports.
    pub fn ancestor_status(&self, k: usize) -> Option<Result<std::path::PathBuf, Error>> {
        let chain = self.chain.as_ref()?;
        (1..=chain.chain.depth()).contains(&k).then(|| chain.status(k))
    }

    /// What a child of this archive binds it by (FORMAT.md 15.2): the BLAKE3
    /// of its `ARCHIVE_INDEX` body.
    pub fn binding(&self) -> [u8; 32] {
        self.binding
    }

    /// The ancestor chunks this archive refers to, with the identity each
    /// must have (the rows of its `CHAIN_INDEX`, FORMAT.md 15.3): a writer
    /// of a child may refer to them too. Empty for a self-contained archive.
    pub fn ancestor_chunks(&self) -> Vec<(u64, [u8; 32])> {
        self.chain
            .as_ref()
            .and_then(|c| c.index.as_ref())
            .map(|index| index.refs.iter().map(|r| (r.chunk_ref.join(), r.blake3)).collect())
            .unwrap_or_default()
    }

    /// Every `CHUNK` record of this archive: its record offset and identity,
    /// from a walk of the record headers up to the index area (each chunk's
    /// 40-byte head is read, never its data). A writer of a child refers to
    /// these instead of storing the same data again (FORMAT.md 15.5).
    pub fn local_chunks(&self) -> Result<Vec<(u64, [u8; 32])>, Error> {
        let mut chunks = Vec::new();
        let mut at = u64::from(self.header.header_length);
        while at < self.index_offset {
            let (header, record_type) =
                read_record_header_at(&self.source, self.size, at, self.tag, self.limits.max_index_bytes)?;
            if record_type == Some(RecordType::Chunk) {
                let mut head = [0u8; 32];
                self.source
                    .read_exact_at(&mut head, at + RecordHeader::SIZE as u64)
                    .map_err(|e| Error::io("chunk header", at, e))?;
                chunks.push((at, head));
            }
            at += RecordHeader::SIZE as u64 + header.body_length;
        }
        Ok(chunks)
    }

    /// Opens and checks every ancestor (`verify` does this first).
    pub fn check_ancestors(&self) -> Result<(), Error> {
        self.chain.as_ref().map_or(Ok(()), |c| c.check_all())
    }

    /// The image section called `name`, as a handle to read it by
    /// ([`Image::read_at`], [`Image::reader`]). An archive without such an
    /// image (none by that name, or a file tree by that name) gives an error
    /// of kind [`ErrorKind::NoSuchSection`](crate::ErrorKind::NoSuchSection).
    pub fn image(&self, name: &str) -> Result<Image<'_, R>, Error> {
        let found = self.sections.iter().find_map(|s| match s {
            Section::Image(image) if image.name == name => Some(image),
            _ => None,
        });
        if let Some(section) = found {
            return Ok(Image::new(self, section));
        }
        let images: Vec<String> = self
            .sections
            .iter()
            .filter_map(|s| match s {
                Section::Image(image) => Some(format!("{:?}", image.name)),
                Section::Tree(_) => None,
            })
            .collect();
        let detail = if self.sections.iter().any(|s| s.name() == name) {
            "the section of that name is a file tree, not an image".to_string()
        } else if images.is_empty() {
            "the archive holds no image section".to_string()
        } else {
            format!("the archive has none of that name; its images: {}", images.join(", "))
        };
        Err(Error::no_such_section("image section", name, detail))
    }

    /// Reads, checks and decodes the chunk record at `chunk_ref`, which must hold
    /// at least `raw_needed` raw bytes (where the extent that refers to it ends
    /// in it: `chunk_offset` + `length`, FORMAT.md 7.2 rule 5).
    pub fn read_chunk(&self, chunk_ref: u64, raw_needed: u64) -> Result<Arc<Chunk>, Error> {
        let chunk = self.read_chunk_whole(chunk_ref)?;
        if (chunk.raw.len() as u64) < raw_needed {
            return Err(short_chunk(raw_needed, chunk.raw.len() as u64).at(chunk_ref));
        }
        Ok(chunk)
    }

    /// Reads, checks and decodes the chunk record at `chunk_ref`.
    pub fn read_chunk_whole(&self, chunk_ref: u64) -> Result<Arc<Chunk>, Error> {
        if let Some((cached_ref, data)) = self.last_chunk.lock().ok().and_then(|c| c.clone()) {
            if cached_ref == chunk_ref {
                return Ok(data);
            }
        }
        let reference = ChunkRef::split(chunk_ref);
        let chunk = Arc::new(match &self.chain {
            Some(chain) if reference.is_ancestor() => chain.chunk(reference)?,
            _ => decode_chunk_record(&self.source, self.size, chunk_ref, self.tag, &self.limits, true)?,
        });
        if let Ok(mut cache) = self.last_chunk.lock() {
            *cache = Some((chunk_ref, chunk.clone()));
        }
        Ok(chunk)
    }

    /// The raw bytes of the chunk at `chunk_ref`, decoded whole with every
    /// check of section 6 but its BLAKE3 (the record CRC, the frame rules, the
    /// length), for a caller that checks every byte it takes against a file
    /// digest (FORMAT.md 10.1 step 5) and, when that fails, reads the chunk
    /// again with [`read_chunk_whole`](Self::read_chunk_whole) to name it. An
    /// ancestor chunk's record must still hold the identity the child's
    /// `CHAIN_INDEX` lists for it (15.4 step 5).
    pub(crate) fn read_chunk_unhashed(&self, chunk_ref: u64) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(chain) = self.chain.as_ref().filter(|_| self.is_ancestor_ref(chunk_ref)) {
            return Ok(Arc::new(chain.chunk_checked(ChunkRef::split(chunk_ref), false)?.raw));
        }
        let record = read_chunk_record(&self.source, self.size, chunk_ref, self.tag, &self.limits)?;
        let (_, raw) = chunk::decode_chunk_unhashed(&record.body).map_err(|e| Error::from(e).at(chunk_ref))?;
        Ok(Arc::new(raw))
    }

    /// Whether a read of part of the chunk at `chunk_ref` should decode only the
    /// part: true for the first read of a chunk not held whole. A second read in
    /// the same chunk decodes it whole, checks its BLAKE3 and keeps it, so reads
    /// that walk a chunk piece by piece decode it about twice, not once per piece.
    pub(crate) fn tree_cache(&self) -> &crate::tree::SharedTreeCache {
        &self.tree_cache
    }

    pub(crate) fn first_read_of(&self, chunk_ref: u64) -> bool {
        let cached = self.last_chunk.lock().ok().is_some_and(|c| c.as_ref().is_some_and(|(r, _)| *r == chunk_ref));
        !cached && self.last_partial.swap(chunk_ref, std::sync::atomic::Ordering::Relaxed) != chunk_ref
    }

    /// The first `prefix` raw bytes of the chunk at `chunk_ref` (fewer if the
    /// chunk is shorter), decoded only that far: the record CRC and the frame
    /// rules are checked, the chunk's BLAKE3 is not (FORMAT.md 10.1, steps 4
    /// and 5), so the caller checks what it reads some other way or says so.
    pub(crate) fn read_chunk_prefix(&self, chunk_ref: u64, prefix: usize) -> Result<Vec<u8>, Error> {
        if self.is_ancestor_ref(chunk_ref) {
            // An ancestor chunk is checked whole, against the identity the
            // child's CHAIN_INDEX lists for it (FORMAT.md 15.4 step 5).
            let chunk = self.read_chunk_whole(chunk_ref)?;
            return Ok(chunk.raw[..prefix.min(chunk.raw.len())].to_vec());
        }
        let header = read_chunk_record_header(&self.source, self.size, chunk_ref, self.tag, &self.limits)?;
        let body_start = chunk_ref + RecordHeader::SIZE as u64;
        chunk::decode_prefix_streamed(&self.source, body_start, header.body_length, Some((&header, chunk_ref)), prefix)
            .map_err(|e| e.at(chunk_ref))
    }

    /// Up to `want` `CHUNK` records of this archive from the record at `offset`
    /// on, in record order, found by their checked record headers alone (the
    /// records between them, at most 16 in a row, are stepped over): fewer at
    /// the end of the archive or at a header that fails its checks. For
    /// read-ahead, which only needs to know what a reader comes to next; each
    /// chunk is checked whole when it is decoded.
    pub(crate) fn chunk_records_from(&self, mut offset: u64, want: usize) -> Vec<u64> {
        let mut found = Vec::with_capacity(want);
        let mut others = 0;
        while found.len() < want && others <= 16 {
            let Ok((header, record_type)) =
                read_record_header_at(&self.source, self.size, offset, self.tag, self.limits.max_index_bytes)
            else {
                break;
            };
            if record_type == Some(RecordType::Chunk) {
                found.push(offset);
                others = 0;
            } else {
                others += 1;
            }
            match offset.checked_add(RecordHeader::SIZE as u64 + header.body_length) {
                Some(next) => offset = next,
                None => break,
            }
        }
        found
    }

    /// Whether `chunk_ref` names a chunk of an ancestor (FORMAT.md 15.1).
    pub(crate) fn is_ancestor_ref(&self, chunk_ref: u64) -> bool {
        self.chain.is_some() && ChunkRef::split(chunk_ref).is_ancestor()
    }

    /// The chunk at `chunk_ref`, which must hold at least `raw_needed` raw bytes
    /// (as [`Archive::read_chunk`] checks), as a stream to decode only as far
    /// as needed, into `out` (emptied, its room kept): its record CRC and frame
    /// rules are checked now, its BLAKE3 once decoded whole. Local chunks only:
    /// an ancestor's ([`Archive::is_ancestor_ref`]) is read whole.
    pub(crate) fn chunk_stream(
        &self,
        chunk_ref: u64,
        raw_needed: u64,
        out: Vec<u8>,
    ) -> Result<chunk::ChunkStream, Error> {
        let header = read_chunk_record_header(&self.source, self.size, chunk_ref, self.tag, &self.limits)?;
        let body_start = chunk_ref + RecordHeader::SIZE as u64;
        let stream =
            chunk::ChunkStream::open(&self.source, body_start, header.body_length, Some((&header, chunk_ref)), out)
                .map_err(|e| e.at(chunk_ref))?;
        if stream.raw_length() < raw_needed {
            return Err(short_chunk(raw_needed, stream.raw_length()).at(chunk_ref));
        }
        Ok(stream)
    }
}

/// Reads and decodes the `CHUNK` record at `offset` of any positional source,
/// without an opened archive (salvage reads what a walk found).
pub(crate) fn chunk_at<R: ReadAt + ?Sized>(
    source: &R,
    offset: u64,
    tag: [u8; 8],
    limits: &Limits,
) -> Result<Chunk, Error> {
    let size = source.size().map_err(|e| Error::io("archive size", 0, e))?;
    decode_chunk_record(source, size, offset, tag, limits, true)
}

/// Reads the record at `offset`, which a reference says is a `CHUNK`, and decodes
/// it. Anything else there is a dangling reference; a damaged record keeps its class.
pub(crate) fn decode_chunk_record<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    limits: &Limits,
    hashed: bool,
) -> Result<Chunk, Error> {
    let record = read_chunk_record(source, size, offset, tag, limits)?;
    let decoded = if hashed { chunk::decode_chunk(&record.body) } else { chunk::decode_chunk_unhashed(&record.body) };
    let (header, raw) = decoded.map_err(|e| Error::from(e).at(offset))?;
    let next_record = offset + RecordHeader::SIZE as u64 + record.body.len() as u64;
    Ok(Chunk { blake3: header.blake3, raw, next_record })
}

/// Reads the record at `offset`, which a reference says is a `CHUNK`, and checks
/// its CRCs and type.
fn read_chunk_record<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    limits: &Limits,
) -> Result<Record, Error> {
    let header = read_chunk_record_header(source, size, offset, tag, limits)?;
    let body = read_checked_body(source, offset, &header)?;
    Ok(Record { offset, record_type: Some(RecordType::Chunk), body })
}

/// Reads and checks the header of the record a chunk reference points at, which
/// must be a `CHUNK` record.
fn read_chunk_record_header<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    limits: &Limits,
) -> Result<RecordHeader, Error> {
    let (header, record_type) =
        read_record_header_at(source, size, offset, tag, limits.max_index_bytes).map_err(|e| {
            if matches!(e.class(), Some(ErrorClass::RecordChecksum) | Some(ErrorClass::Truncated) | None) {
                e
            } else {
                Error::new(ErrorClass::DanglingReference, "chunk reference", format!("no chunk record here: {e}"))
                    .at(offset)
            }
        })?;
    if record_type != Some(RecordType::Chunk) {
        return Err(Error::new(
            ErrorClass::DanglingReference,
            "chunk reference",
            format!("the record here is {}, not CHUNK", record_type.map_or("an ancillary record", |t| t.name())),
        )
        .at(offset));
    }
    Ok(header)
}

/// A data extent longer or shorter than the chunk it refers to.
/// A data extent that runs past the end of its chunk (FORMAT.md 7.2 rule 5):
/// it needs `raw_needed` raw bytes (`chunk_offset` + `length`).
pub(crate) fn short_chunk(raw_needed: u64, holds: u64) -> Error {
    Error::new(
        ErrorClass::ExtentMap,
        "data extent length",
        format!("the extent ends at byte {raw_needed} of its chunk, but the chunk holds {holds} bytes"),
    )
}

/// A decoded chunk and its identity.
#[derive(Debug)]
pub struct Chunk {
    /// The BLAKE3 of `raw`, as the chunk's header records it (checked).
    pub blake3: [u8; 32],
    /// The decoded bytes.
    pub raw: Vec<u8>,
    /// Offset of the record after this chunk's: where the next chunk of a
    /// writer's output usually is, which read-ahead decodes before it is asked for.
    pub next_record: u64,
}

pub(crate) fn expect_type(record: &Record, expected: RecordType) -> Result<&[u8], Error> {
    if record.record_type != Some(expected) {
        return Err(Error::new(
            ErrorClass::IndexMismatch,
            "record type",
            format!(
                "expected {} here, found {}",
                expected.name(),
                record.record_type.map_or("an ancillary record", |t| t.name())
            ),
        )
        .at(record.offset));
    }
    Ok(&record.body)
}
