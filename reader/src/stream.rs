//! Front-to-back reading from a pipe: restores one image without the index and
//! without seeking in the archive (`spec/FORMAT.md`, 10.2).
//!
//! Extents arrive before the chunks they announce, so each new chunk is decoded
//! once and written straight to its place. References back to earlier chunks
//! (deduplicated data) are served by reading the destination back where it can,
//! or from a spill file holding the stored bytes of chunks seen so far.
//!
//! ```
//! use strata_reader::{sink::StreamSink, stream, Limits};
//!
//! // Anything `Read` will do: a pipe, standard input, here a byte slice.
//! let input = &include_bytes!("../../spec/vectors/image-small.strata")[..];
//! let mut restored = Vec::new();
//! let size = stream::restore_image(input, "disk", &mut StreamSink::new(&mut restored), Limits::default(), &|_| {})?;
//! assert_eq!(size, 50_000);
//! assert_eq!(restored.len(), 50_000);
//! assert_eq!(blake3::hash(&restored).to_hex().as_str(), "0ee37a2c2d092eef66594065f2afc6f0ba0cee0e0300e70d4c211c2f7b48eb7e");
//! # Ok::<(), strata_reader::Error>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use strata_format::files::EntryKind;
use strata_format::image::{self, ExtentMapCheck, MapDigest};
use strata_format::{ArchiveHeader, ChunkRef, ErrorClass, Extent, ExtentKind, ImageBegin, ImageEnd, RecordType};

use crate::chain::ChainState;
use crate::record::{read_full, PrefixSource, Records, Sequential};
use crate::sink::ImageSink;
use crate::{chunk, Error, Limits};

/// Where a chunk seen earlier in the stream can be found again.
enum Seen {
    /// Written whole to the destination at this image offset; its length and BLAKE3.
    Restored { image_offset: u64, raw_length: u64, blake3: [u8; 32] },
    /// Its record body is in the spill file at this position.
    Spilled { position: u64, length: u64 },
}

struct Spill {
    file: Option<File>,
    length: u64,
}

impl Spill {
    fn store(&mut self, body: &[u8]) -> Result<Seen, Error> {
        if self.file.is_none() {
            self.file = Some(tempfile::tempfile().map_err(|e| Error::local_io("creating the spill file", e))?);
        }
        let file = self.file.as_mut().expect("spill file was just created");
        file.write_all(body).map_err(|e| Error::local_io("writing the spill file", e))?;
        let seen = Seen::Spilled { position: self.length, length: body.len() as u64 };
        self.length += body.len() as u64;
        Ok(seen)
    }

    fn load(&self, position: u64, length: u64) -> Result<Vec<u8>, Error> {
        let file = self.file.as_ref().expect("a spilled chunk implies a spill file");
        let mut body = vec![0u8; length as usize];
        file.read_exact_at(&mut body, position).map_err(|e| Error::local_io("reading the spill file", e))?;
        Ok(body)
    }
}

/// Reads the archive header from the front of a stream.
pub(crate) fn read_stream_header(input: &mut impl Read) -> Result<ArchiveHeader, Error> {
    let mut fixed = [0u8; ArchiveHeader::SIZE];
    let got = read_full(input, &mut fixed).map_err(|e| Error::io("header", 0, e))?;
    if !ArchiveHeader::has_magic(&fixed[..got]) {
        return Err(Error::new(ErrorClass::NotStrata, "header", crate::archive::not_strata_detail(&fixed[..got])).at(0));
    }
    if got < fixed.len() {
        return Err(Error::new(ErrorClass::Truncated, "header", format!("the input ends after {got} bytes")).at(0));
    }
    let header = ArchiveHeader::decode(&fixed);
    header.validate_length().map_err(|e| Error::from(e).at(0))?;
    let mut extension = vec![0u8; header.header_length as usize - ArchiveHeader::SIZE];
    let got = read_full(input, &mut extension).map_err(|e| Error::io("header", 128, e))?;
    if got < extension.len() {
        return Err(Error::new(ErrorClass::Truncated, "header extension", "the input ends inside it").at(128));
    }
    header.validate(&fixed, &extension).map_err(|e| Error::from(e).at(0))?;
    Ok(header)
}

struct Active {
    section_id: u32,
    check: ExtentMapCheck,
    /// Extents of the last `IMAGE_EXTENTS` record not yet written, in image order.
    pending: VecDeque<Extent>,
    /// Offset of that record: references beyond it are forward references.
    extents_record: u64,
    /// The map digest of what was written so far.
    digest: MapDigest,
}

/// Restores the image section `name` from an archive read front to back. Returns
/// the image size.
pub fn restore_image(
    input: impl Read,
    name: &str,
    sink: &mut dyn ImageSink,
    limits: Limits,
    progress: &dyn Fn(u64),
) -> Result<u64, Error> {
    restore_image_with_parents(input, name, sink, limits, &crate::ParentSearch::default(), progress)
}

/// [`restore_image`] of an archive whose ancestors (an incremental archive,
/// FORMAT.md 15) are looked for as `parents` says. Ancestors are files read
/// by random access; the child itself may come from a pipe.
pub fn restore_image_with_parents(
    mut input: impl Read,
    name: &str,
    sink: &mut dyn ImageSink,
    limits: Limits,
    parents: &crate::ParentSearch,
    progress: &dyn Fn(u64),
) -> Result<u64, Error> {
    let header = read_stream_header(&mut input)?;
    let incremental = header.incompatible_features & strata_format::Features::INCOMPAT_INCREMENTAL != 0;
    let mut chain: Option<std::sync::Arc<ChainState>> = None;
    let mut records =
        Records::new(Sequential(input), u64::from(header.header_length), header.archive_tag(), limits.max_index_bytes);
    if incremental {
        records.set_prefixes(PrefixSource::Unknown);
    }
    let can_read_back = sink.read_back(0, &mut []).unwrap_or(false);
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let mut spill = Spill { file: None, length: 0 };
    let mut next_section_id = 0u32;
    let mut active: Option<Active> = None;
    let mut started = false;

    loop {
        let Some(record) = records.next_record()? else {
            return Err(Error::new(
                ErrorClass::Truncated,
                "archive",
                if active.is_some() {
                    format!("the input ended inside image {name:?}")
                } else {
                    format!("the input ended before an image named {name:?}")
                },
            )
            .at(records.position));
        };
        let offset = record.offset;
        let section_error = |e: Error| e.at(offset).in_section(name);
        if incremental && offset == u64::from(header.header_length) {
            // The ancestors are known before any reference (FORMAT.md 15.4).
            if record.record_type != Some(RecordType::Chain) {
                return Err(Error::new(
                    ErrorClass::RecordMalformed,
                    "first record",
                    "the archive is incremental (feature bit 1), but its first record is not CHAIN",
                )
                .at(offset));
            }
            let parsed = strata_format::Chain::parse(&record.body, &header.archive_uuid, limits.max_chain_depth)
                .map_err(|e| Error::from(e).at(offset))?;
            let state = ChainState::new(parsed, offset, None, header.archive_uuid, limits);
            state.set_search(parents.clone());
            let state = std::sync::Arc::new(state);
            records.set_prefixes(PrefixSource::Chain(state.clone()));
            chain = Some(state);
            continue;
        }
        match record.record_type {
            Some(RecordType::Chunk) => {
                let wanted = active.as_ref().and_then(|a| a.pending.front().copied());
                match wanted {
                    Some(extent) if extent.chunk_ref == offset => {
                        let (header, raw) = chunk::decode_chunk(&record.body).map_err(|e| section_error(e.into()))?;
                        let part = extent_part(&extent, &raw, name)?;
                        if !started {
                            sink.start(None).map_err(|e| Error::local_io("preparing the destination", e))?;
                            started = true;
                        }
                        sink.write_data(extent.image_offset, part)
                            .map_err(|e| Error::local_io(format!("writing image byte {}", extent.image_offset), e))?;
                        progress(extent.length);
                        // Only a chunk written whole can be read back from the
                        // destination; one written in part is spilled (FORMAT.md 10.2).
                        let place = if can_read_back && extent.is_whole_chunk(raw.len() as u64) {
                            Seen::Restored {
                                image_offset: extent.image_offset,
                                raw_length: raw.len() as u64,
                                blake3: header.blake3,
                            }
                        } else {
                            spill.store(&record.body)?
                        };
                        seen.insert(offset, place);
                        if let Some(active) = active.as_mut() {
                            active.digest.push(&extent, &header.blake3);
                            active.pending.pop_front();
                        }
                    }
                    Some(extent)
                        if extent.chunk_ref > offset
                            && extent.chunk_ref > active.as_ref().map_or(0, |a| a.extents_record) =>
                    {
                        return Err(section_error(Error::new(
                            ErrorClass::DanglingReference,
                            "chunk order",
                            format!(
                                "the chunk at byte {offset} arrived while image byte {} waits for the chunk at byte {}",
                                extent.image_offset, extent.chunk_ref
                            ),
                        )));
                    }
                    // A chunk of another section: later sections may refer back to it.
                    _ => {
                        let place = spill.store(&record.body)?;
                        seen.insert(offset, place);
                    }
                }
            }
            Some(RecordType::ImageBegin) => {
                let begin = ImageBegin::parse(&record.body).map_err(|e| Error::from(e).at(offset))?;
                if begin.section_id != next_section_id {
                    return Err(Error::new(
                        ErrorClass::RecordMalformed,
                        "IMAGE_BEGIN section_id",
                        format!("{}, expected {next_section_id}", begin.section_id),
                    )
                    .at(offset));
                }
                next_section_id += 1;
                if begin.name == name.as_bytes() {
                    active = Some(Active {
                        section_id: begin.section_id,
                        check: ExtentMapCheck::new(&begin),
                        pending: VecDeque::new(),
                        extents_record: offset,
                        digest: MapDigest::new(),
                    });
                }
            }
            Some(RecordType::ImageExtents) => {
                let Some(state) = active.as_mut() else {
                    continue;
                };
                let (head, table) = image::parse_extent_table(&record.body, RecordType::ImageExtents)
                    .map_err(|e| section_error(e.into()))?;
                if head.section_id != state.section_id {
                    continue;
                }
                if !state.pending.is_empty() {
                    return Err(unresolved(state, name));
                }
                for extent in image::extents_of(table) {
                    state
                        .check
                        .push(&extent)
                        .map_err(|e| section_error(Error::from(e).in_image_range(extent.image_offset..extent.end())))?;
                    state.pending.push_back(extent);
                }
                state.extents_record = offset;
                if !started {
                    sink.start(None).map_err(|e| Error::local_io("preparing the destination", e))?;
                    started = true;
                }
                drain_resolved(state, &seen, &spill, chain.as_deref(), sink, name, progress)?;
            }
            Some(RecordType::Chain) => {
                return Err(Error::new(
                    ErrorClass::RecordMalformed,
                    "CHAIN",
                    "a CHAIN record that is not the first record of an incremental archive",
                )
                .at(offset))
            }
            Some(RecordType::ImageEnd) => {
                let Some(state) = active.as_mut() else {
                    continue;
                };
                let end =
                    ImageEnd::decode_exact(&record.body, "IMAGE_END body").map_err(|e| section_error(e.into()))?;
                if end.section_id != state.section_id {
                    continue;
                }
                end.validate().map_err(|e| section_error(e.into()))?;
                if !state.pending.is_empty() {
                    return Err(unresolved(state, name));
                }
                state.check.finish(end.logical_size).map_err(|e| section_error(e.into()))?;
                crate::image::section::check_map_digest(&state.digest, &end, name)?;
                if !started {
                    sink.start(Some(end.logical_size)).map_err(|e| Error::local_io("preparing the destination", e))?;
                }
                sink.finish(end.logical_size).map_err(|e| Error::local_io("finishing the destination", e))?;
                return Ok(end.logical_size);
            }
            Some(RecordType::Trailer) => {
                return Err(Error::new(
                    ErrorClass::RecordMalformed,
                    "image section",
                    format!("the archive has no image named {name:?}"),
                )
                .at(offset))
            }
            // Any other record, an ancillary one included, ends the run of chunks
            // after the last extent record: a forward reference still waiting is
            // one no CHUNK record of the run answered (FORMAT.md 7.2 rule 6).
            _ => {
                if let Some(state) = active.as_ref().filter(|state| !state.pending.is_empty()) {
                    return Err(unresolved(state, name));
                }
            }
        }
        if let Some(state) = active.as_mut() {
            drain_resolved(state, &seen, &spill, chain.as_deref(), sink, name, progress)?;
        }
    }
}

/// The raw bytes of its chunk `extent` reads, or `extent-map` when it runs
/// past the chunk's end (FORMAT.md 7.2 rule 5).
fn extent_part<'r>(extent: &Extent, raw: &'r [u8], name: &str) -> Result<&'r [u8], Error> {
    let range = extent.chunk_range();
    match raw.get(range.start as usize..range.end as usize) {
        Some(part) => Ok(part),
        None => Err(crate::archive::short_chunk(range.end, raw.len() as u64)
            .at(extent.chunk_ref)
            .in_section(name)
            .in_image_range(extent.image_offset..extent.end())),
    }
}

/// A forward reference of the last extent record that the run of `CHUNK`
/// records after it did not answer: reported at the offset it holds (7.2 rule 5).
fn unresolved(state: &Active, name: &str) -> Error {
    let extent = state.pending.front().copied().unwrap_or_default();
    Error::new(
        ErrorClass::DanglingReference,
        "chunk reference",
        format!(
            "the chunk at byte {} did not arrive in the run of CHUNK records after the extent record at byte {}",
            extent.chunk_ref, state.extents_record
        ),
    )
    .at(extent.chunk_ref)
    .in_section(name)
    .in_image_range(extent.image_offset..extent.end())
}

/// Writes the pending extents that can be written now: zeros, and data whose
/// chunk was seen before. Stops at the first forward reference.
fn drain_resolved(
    state: &mut Active,
    seen: &HashMap<u64, Seen>,
    spill: &Spill,
    chain: Option<&ChainState>,
    sink: &mut dyn ImageSink,
    name: &str,
    progress: &dyn Fn(u64),
) -> Result<(), Error> {
    while let Some(&extent) = state.pending.front() {
        let write_error = |e| Error::local_io(format!("writing image byte {}", extent.image_offset), e);
        match extent.kind().map_err(|e| Error::from(e).in_section(name))? {
            hole @ (ExtentKind::Zero | ExtentKind::Lost | ExtentKind::Free) => {
                state.digest.push(&extent, &hole.hole_identity().unwrap_or(image::ZERO_ID));
                sink.write_hole(extent.image_offset, extent.length).map_err(write_error)?
            }
            ExtentKind::Data(chunk_ref) if chain.is_some() && ChunkRef::split(chunk_ref).is_ancestor() => {
                // Read from the ancestor; its own checks and the map digest
                // check it (FORMAT.md 15.4: the CHAIN_INDEX comes only at the end).
                let chain = chain.expect("checked");
                let chunk = chain.chunk(ChunkRef::split(chunk_ref)).map_err(|e| {
                    e.at(state.extents_record).in_section(name).in_image_range(extent.image_offset..extent.end())
                })?;
                let part = extent_part(&extent, &chunk.raw, name)?;
                state.digest.push(&extent, &chunk.blake3);
                sink.write_data(extent.image_offset, part).map_err(write_error)?;
            }
            ExtentKind::Data(chunk_ref) => match seen.get(&chunk_ref) {
                Some(Seen::Restored { image_offset, raw_length, blake3 }) => {
                    let range = extent.chunk_range();
                    if range.end > *raw_length {
                        return Err(crate::archive::short_chunk(range.end, *raw_length)
                            .at(chunk_ref)
                            .in_section(name)
                            .in_image_range(extent.image_offset..extent.end()));
                    }
                    let mut data = vec![0u8; extent.length as usize];
                    sink.read_back(image_offset + range.start, &mut data)
                        .map_err(|e| Error::local_io("reading the destination back", e))?;
                    state.digest.push(&extent, blake3);
                    sink.write_data(extent.image_offset, &data).map_err(write_error)?;
                }
                Some(Seen::Spilled { position, length }) => {
                    let body = spill.load(*position, *length)?;
                    let (header, raw) =
                        chunk::decode_chunk(&body).map_err(|e| Error::from(e).at(chunk_ref).in_section(name))?;
                    let part = extent_part(&extent, &raw, name)?;
                    state.digest.push(&extent, &header.blake3);
                    sink.write_data(extent.image_offset, part).map_err(write_error)?;
                }
                None if chunk_ref > state.extents_record => return Ok(()),
                None => {
                    return Err(Error::new(
                        ErrorClass::DanglingReference,
                        "chunk reference",
                        format!("byte {chunk_ref} holds no chunk seen earlier in the archive"),
                    )
                    .at(state.extents_record)
                    .in_section(name)
                    .in_image_range(extent.image_offset..extent.end()))
                }
            },
        }
        progress(extent.length);
        state.pending.pop_front();
    }
    Ok(())
}

/// What a front-to-back read of an archive meets, in archive order
/// (`spec/FORMAT.md` 10.2): the sections' beginnings and ends, an image's
/// extent map run by run, a tree's entries with their paths. Content is not
/// delivered here: [`restore_image`] restores an image from a stream, and an
/// [`crate::Archive`] reads files by position.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    /// A block-image section begins (7.1).
    ImageBegin {
        /// The section's name.
        name: String,
        /// Its number among the archive's sections.
        section_id: u32,
        /// Its chunk size in bytes.
        chunk_size: u32,
    },
    /// A run of the open image's extent map (7.2), in image order.
    ImageExtents(Vec<crate::ImageExtent>),
    /// The open image section ends (7.3).
    ImageEnd {
        /// The section's name.
        name: String,
        /// The image's size in bytes.
        logical_size: u64,
    },
    /// A file-tree section begins (8.1).
    TreeBegin {
        /// The section's name.
        name: String,
        /// Its number among the archive's sections.
        section_id: u32,
    },
    /// An entry of the open file-tree section, in entry order, with its path.
    Entry(Box<crate::Entry>),
    /// The open file-tree section ends (8.4).
    TreeEnd {
        /// The section's name.
        name: String,
        /// How many entries it holds.
        entry_count: u64,
    },
}

/// Reads an archive front to back from any [`Read`] (a pipe, standard input)
/// through the one record walker, as an iterator of [`Item`]s: the same
/// image extents and tree entries an [`crate::Archive`] gives by position,
/// without the index and without seeking. Every record's CRC is checked, and
/// the rules of section 8 between entries; the first fault ends the
/// iteration with its error. The paths of the open tree's directories are
/// held, bounded by [`Limits::max_index_bytes`].
///
/// ```
/// use strata_reader::stream::{Item, Stream};
/// use strata_reader::Limits;
///
/// let input = &include_bytes!("../../spec/vectors/image-and-tree.strata")[..];
/// let mut paths = Vec::new();
/// let mut image_bytes = 0;
/// for item in Stream::new(input, Limits::default())? {
///     match item? {
///         Item::Entry(entry) => paths.push(String::from_utf8_lossy(entry.path()).into_owned()),
///         Item::ImageExtents(run) => image_bytes += run.iter().map(|e| e.length).sum::<u64>(),
///         _ => {}
///     }
/// }
/// assert!(paths.contains(&"docs/hard".to_string()), "{paths:?}");
/// assert!(image_bytes > 0);
/// # Ok::<(), strata_reader::Error>(())
/// ```
pub struct Stream<R: Read> {
    records: Records<Sequential<R>>,
    header: ArchiveHeader,
    limits: Limits,
    /// Items made from one record and not yet given.
    ready: VecDeque<Item>,
    /// The open section: image or tree, its name, id and (for a tree) what
    /// it captured, the check between its entries and its directories' paths.
    open: Option<OpenSection>,
    /// The trailer was read, or an error given: nothing more comes.
    done: bool,
}

enum OpenSection {
    Image { name: String, section_id: u32 },
    Tree(Box<OpenTree>),
}

struct OpenTree {
    name: String,
    section_id: u32,
    captured: u64,
    check: strata_format::files::TreeCheck,
    dirs: DirPaths,
}

/// The paths of a tree's directories by entry id, with their total size.
#[derive(Default)]
struct DirPaths {
    paths: HashMap<u64, Vec<u8>>,
    bytes: u64,
}

impl<R: Read> std::fmt::Debug for Stream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("position", &self.records.position)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Stream<R> {
    /// Reads the archive header from `input`; the records follow as the
    /// stream is iterated.
    pub fn new(mut input: R, limits: Limits) -> Result<Self, Error> {
        let header = read_stream_header(&mut input)?;
        let mut records = Records::new(
            Sequential(input),
            u64::from(header.header_length),
            header.archive_tag(),
            limits.max_index_bytes,
        );
        if header.incompatible_features & strata_format::Features::INCOMPAT_INCREMENTAL != 0 {
            // Prefixed tables need the ancestors, named by the CHAIN record first.
            records.set_prefixes(PrefixSource::Unknown);
        }
        Ok(Stream { records, header, limits, ready: VecDeque::new(), open: None, done: false })
    }

    /// The archive's header.
    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// The next record's items; `Ok(false)` after the trailer.
    fn read_record(&mut self) -> Result<bool, Error> {
        let Some(record) = self.records.next_record()? else {
            return Err(Error::new(ErrorClass::Truncated, "archive", "the input ended before the trailer")
                .at(self.records.position));
        };
        let offset = record.offset;
        let at = |e: strata_format::FormatError| Error::from(e).at(offset);
        let body = &record.body;
        match record.record_type {
            Some(RecordType::ImageBegin) => {
                let begin = ImageBegin::parse(body).map_err(at)?;
                let name = begin.name_lossy();
                self.open = Some(OpenSection::Image { name: name.clone(), section_id: begin.section_id });
                self.ready.push_back(Item::ImageBegin {
                    name,
                    section_id: begin.section_id,
                    chunk_size: begin.chunk_size,
                });
            }
            Some(RecordType::ImageExtents) => {
                let (head, table) = image::parse_extent_table(body, RecordType::ImageExtents).map_err(at)?;
                if matches!(&self.open, Some(OpenSection::Image { section_id, .. }) if *section_id == head.section_id) {
                    let run = image::extents_of(table)
                        .map(|e| {
                            Ok(crate::ImageExtent {
                                offset: e.image_offset,
                                length: e.length,
                                kind: e.kind().map_err(at)?,
                                chunk_offset: e.chunk_offset,
                            })
                        })
                        .collect::<Result<Vec<_>, Error>>()?;
                    self.ready.push_back(Item::ImageExtents(run));
                }
            }
            Some(RecordType::ImageEnd) => {
                let end = ImageEnd::parse(body).map_err(at)?;
                if let Some(OpenSection::Image { name, section_id }) = self.open.take() {
                    if section_id == end.section_id {
                        self.ready.push_back(Item::ImageEnd { name, logical_size: end.logical_size });
                    }
                }
            }
            Some(RecordType::FilesBegin) => {
                let begin = strata_format::files::FilesBegin::parse(body).map_err(at)?;
                let name = begin.name_lossy();
                self.open = Some(OpenSection::Tree(Box::new(OpenTree {
                    name: name.clone(),
                    section_id: begin.section_id,
                    captured: begin.captured,
                    check: strata_format::files::TreeCheck::new(),
                    dirs: DirPaths::default(),
                })));
                self.ready.push_back(Item::TreeBegin { name, section_id: begin.section_id });
            }
            Some(RecordType::FilesEntries) => {
                let group = strata_format::files::parse_group(body).map_err(at)?;
                let Some(OpenSection::Tree(tree)) = &mut self.open else {
                    return Ok(true);
                };
                let OpenTree { name, section_id, captured, check, dirs } = &mut **tree;
                if group.head.section_id != *section_id {
                    return Ok(true);
                }
                for entry in group.entries {
                    let entry = entry.map_err(at)?;
                    let fault = check.push(&entry).into_iter().next().or_else(|| entry.check(*captured).err());
                    if let Some(fault) = fault {
                        return Err(at(fault).in_section(name));
                    }
                    // The root has no parent: TreeCheck refused any other entry without one.
                    let path = dirs
                        .paths
                        .get(&entry.parent_id)
                        .map_or_else(Vec::new, |parent| crate::tree::join(parent, &entry.name));
                    if entry.kind == EntryKind::Directory {
                        dirs.bytes += path.len() as u64 + 64;
                        if dirs.bytes > self.limits.max_index_bytes {
                            return Err(Error::new(
                                ErrorClass::LimitExceeded,
                                "directory paths",
                                format!(
                                    "the paths of this tree's directories pass the reader's limit of {} bytes",
                                    self.limits.max_index_bytes
                                ),
                            )
                            .at(offset)
                            .in_section(name));
                        }
                        dirs.paths.insert(entry.entry_id, path.clone());
                    }
                    self.ready.push_back(Item::Entry(Box::new(crate::Entry::from_raw(path, entry, *captured))));
                }
            }
            Some(RecordType::FilesEnd) => {
                let end = strata_format::files::FilesEnd::parse(body).map_err(at)?;
                if let Some(OpenSection::Tree(tree)) = self.open.take() {
                    if tree.section_id == end.section_id {
                        self.ready.push_back(Item::TreeEnd { name: tree.name, entry_count: end.entry_count });
                    }
                }
            }
            Some(RecordType::Trailer) => return Ok(false),
            Some(RecordType::Chain) if offset == u64::from(self.header.header_length) => {
                // Ancestors of an archive from a pipe are looked for in the
                // current folder (FORMAT.md 15.4), for its prefixed tables.
                let chain = strata_format::Chain::parse(body, &self.header.archive_uuid, self.limits.max_chain_depth)
                    .map_err(at)?;
                let state = ChainState::new(chain, offset, None, self.header.archive_uuid, self.limits);
                state.set_search(crate::ParentSearch::beside(std::path::Path::new("-")));
                self.records.set_prefixes(PrefixSource::Chain(std::sync::Arc::new(state)));
            }
            // Chunks (their CRC checked by the walker), the tables written
            // after the sections, a chain, and ancillary records say nothing
            // a front-to-back reader gives.
            _ => {}
        }
        self.records.recycle(record.body);
        Ok(true)
    }
}

impl<R: Read> Iterator for Stream<R> {
    type Item = Result<Item, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.read_record() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
