//! Verification: walk every record front to back, check every checksum and every
//! rule, resynchronise past damage, and say what each problem costs in image byte
//! ranges. Reports every problem, not just the first (FORMAT.md 11, 12).
//!
//! ```
//! use strata_reader::{verify, ErrorClass, Limits};
//!
//! let good = &include_bytes!("../../spec/vectors/image-small.strata")[..];
//! let report = verify::verify(good, Limits::default(), &|_| {})?;
//! assert!(report.is_clean());
//! assert_eq!(report.sections[0].logical_size, 50_000);
//!
//! // One stored byte of the first chunk changed: one problem, and what it costs.
//! let damaged = &include_bytes!("../../spec/vectors/chunk-body-crc.strata")[..];
//! let report = verify::verify(damaged, Limits::default(), &|_| {})?;
//! assert!(!report.is_clean());
//! let [problem] = &report.problems[..] else { panic!("one problem: {:?}", report.problems) };
//! assert_eq!((problem.class, problem.offset), (ErrorClass::RecordChecksum, 548));
//! assert_eq!(problem.affects[0].section, "disk");
//! assert_eq!(problem.affects[0].range, 0..4096);
//! # Ok::<(), strata_reader::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use strata_format::image::{self, ExtentMapCheck};
use strata_format::{
    ArchiveHeader, ArchiveIndex, ErrorClass, Extent, ExtentKind, ImageBegin, ImageEnd, RecordType, Trailer,
};

use crate::archive::read_header;
use crate::record::{find_any_record, Positional, Records, Step, Unusable};
use crate::recovery::{Recovered, RecoveredImage, RecoveredTree};
use crate::verify_tree::WalkTree;
use crate::{chunk, Error, Limits, ReadAt};
use strata_format::SectionKind;

/// Image bytes a problem makes unreadable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affected {
    /// The name of the section the bytes belong to.
    pub section: String,
    /// For a file-tree section, the file's path; the range is then in the file.
    pub path: Option<Vec<u8>>,
    /// The bytes, half-open: image bytes, or bytes of the file `path` names.
    pub range: Range<u64>,
}

/// One thing wrong with an archive.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Its error class (FORMAT.md 12).
    pub class: ErrorClass,
    /// Byte offset in the archive of the structure at fault.
    pub offset: u64,
    /// Which structure or field.
    pub what: String,
    /// What was found and what was expected.
    pub detail: String,
    /// What it costs: image byte ranges that cannot be restored.
    pub affects: Vec<Affected>,
}

/// A section as the walk found it.
#[derive(Clone, Debug, Default)]
pub struct SectionReport {
    /// The section's name.
    pub name: String,
    /// `"image"` for a block image (FORMAT.md 7), `"files"` for a file tree (8).
    pub kind: &'static str,
    /// Bytes: an image's size (from `IMAGE_END`, else as declared or as far as
    /// the extents found reach); a tree's total file content.
    pub logical_size: u64,
    /// Bytes of data extents (of file content, for a tree).
    pub data_bytes: u64,
    /// Bytes of lost extents, recorded in salvage (`chunk_ref` 1); 0 for file trees.
    pub lost_bytes: u64,
    /// Bytes of free extents (used-blocks images); 0 for file trees.
    pub free_bytes: u64,
    /// Extents of the image's map found; 0 for file trees.
    pub extents: u64,
    /// `CHUNK` records found in the section.
    pub chunks: u64,
    /// Bytes of those chunks, record headers included (`chunk_bytes` of 7.3).
    pub stored_bytes: u64,
}

/// Everything `verify` found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Bytes read: the whole source.
    pub archive_size: u64,
    /// Whether anything of Strata was found (a header magic or a valid record).
    pub recognised: bool,
    /// Every problem, in archive order.
    pub problems: Vec<Problem>,
    /// Every section found, in archive order.
    pub sections: Vec<SectionReport>,
    /// Records whose header passed its checks.
    pub records: u64,
    /// `CHUNK` records found, in every section.
    pub chunks: u64,
    /// Bytes of the archive inside records that passed every check.
    pub verified_bytes: u64,
    /// Entries of file trees flagged as lost in salvage (8.3 flag bit 3):
    /// section name and path.
    pub lost_entries: Vec<(String, Vec<u8>)>,
    /// Regular files whose content could not be read when the archive was
    /// written (8.3 flag bit 2): section name and path. Facts recorded at
    /// backup time, not problems.
    pub unreadable_entries: Vec<(String, Vec<u8>)>,
    /// Regular files that changed while they were read (8.3 flag bit 1), kept
    /// as read: section name and path. Not problems either.
    pub changed_entries: Vec<(String, Vec<u8>)>,
}

impl Report {
    /// Whether the source is a Strata archive with nothing wrong in it.
    pub fn is_clean(&self) -> bool {
        self.recognised && self.problems.is_empty()
    }
}

struct WalkSection {
    begin_offset: u64,
    begin: ImageBegin,
    name: String,
    check: ExtentMapCheck,
    extents: Vec<Extent>,
    chunk_count: u64,
    chunk_bytes: u64,
    end: Option<(u64, ImageEnd)>,
    /// A lost record left a gap in the map since the last extent read: the
    /// problem that opened it (FORMAT.md section 11, "What a verifier reports").
    gap: Option<usize>,
}

/// A check that compares a record with the records before it as a whole
/// (FORMAT.md section 11, "What a verifier reports"): made after the walk, in
/// archive order, only when no problem is reported at a lower offset.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Summary {
    /// A section that this record ended before its end record came.
    LeftOpen,
    ImageEnd(usize),
    FilesEnd(usize),
    /// An `IMAGE_INDEX`: its place in `image_indexes`.
    ImageIndex(usize),
    /// A `FILES_DIR` of a tree: the tree and its place in the tree's tables.
    FilesDir(usize, usize),
    /// A `FILES_INDEX` of a tree: the tree and its place in the tree's indexes.
    FilesIndex(usize, usize),
    ArchiveIndex,
    /// The `CHAIN_INDEX` of an incremental archive (FORMAT.md 15.3).
    ChainIndex,
    Trailer,
}

pub(crate) struct Walk<'a, R: ReadAt + ?Sized> {
    pub(crate) source: &'a R,
    pub(crate) size: u64,
    pub(crate) tag: [u8; 8],
    pub(crate) limits: Limits,
    pub(crate) report: Report,
    sections: Vec<WalkSection>,
    open: Option<usize>,
    pub(crate) trees: Vec<WalkTree>,
    pub(crate) open_tree: Option<usize>,
    /// Every section in archive order: its kind and its index in `sections` or `trees`.
    pub(crate) order: Vec<(SectionKind, usize)>,
    /// Valid chunks by record offset: raw length and BLAKE3.
    pub(crate) chunks: HashMap<u64, (u32, [u8; 32])>,
    pub(crate) chunk_cache: Option<(u64, std::sync::Arc<Vec<u8>>)>,
    /// Archive byte ranges whose content is unusable, with the problem that says so.
    pub(crate) damaged: Vec<(Range<u64>, usize)>,
    /// The offsets after its own that the last extent record refers to, in the
    /// order of first reference (FORMAT.md 7.2 rule 6).
    pub(crate) forward: Vec<u64>,
    /// Those of them the run of `CHUNK` records after it holds, as they came.
    arrived: Vec<u64>,
    /// The record offset of the extent record those references belong to.
    pub(crate) forward_owner: u64,
    /// What each of those references stands for, for the report if its run
    /// ends without it.
    pub(crate) forward_targets: HashMap<u64, Vec<ForwardTarget>>,
    /// Forward references whose run ended before they were answered (FORMAT.md
    /// 7.2 rule 6): the extent record, the `chunk_ref`, what it stands for.
    broken_forward: Vec<(u64, u64, Vec<ForwardTarget>)>,
    /// The run of `CHUNK` records now read follows an extent record or a lost
    /// record (FORMAT.md section 2): its `CHUNK` records are in place.
    run_in_place: bool,
    /// Ranges of files that problems affect, named by path once the walk has
    /// read the entries: the problem, the tree, the `entry_id`, the range.
    pub(crate) file_affects: Vec<(usize, usize, u64, Range<u64>)>,
    /// Every `IMAGE_INDEX` read: its offset, `section_id` and extents.
    image_indexes: Vec<(u64, u32, Vec<Extent>)>,
    pub(crate) archive_index: Option<(u64, ArchiveIndex)>,
    trailer: Option<(u64, Trailer)>,
    /// The walk stopped at a record whose header says `TRAILER`: its offset.
    trailer_at: Option<u64>,
    /// A damaged span runs to the end of the file.
    span_to_end: bool,
    /// Offset and length of every record counted in `records`.
    counted: Vec<(u64, u64)>,
    /// The checks made after the walk, at the offset of their record.
    pub(crate) summaries: Vec<(u64, Summary)>,
    /// The header passed every check: its length.
    header_bytes: u64,
    /// Record offset of the first record: the header's length.
    pub(crate) first_record: u64,
    /// Where the record being handled ends in the file (its stored body).
    pub(crate) record_end: u64,
    /// The header's `archive_uuid` (zero when the header failed).
    pub(crate) own_uuid: [u8; 16],
    /// Where the ancestors of an incremental archive are looked for.
    pub(crate) parents: crate::ParentSearch,
    /// The chain of an incremental archive (FORMAT.md 15).
    pub(crate) chain: crate::verify_chain::WalkChain,
}

/// What a forward reference stands for: an image range, or a range of a file
/// whose path is known only once its entry comes.
#[derive(Clone, Debug)]
pub(crate) enum ForwardTarget {
    Image { section: String, range: Range<u64> },
    File { tree: usize, entry_id: u64, range: Range<u64> },
}

/// Verifies a whole archive. Fails only when the source cannot be read at all;
/// everything wrong with the archive is in the report.
pub fn verify<R: ReadAt + ?Sized>(source: &R, limits: Limits, progress: &dyn Fn(u64)) -> Result<Report, Error> {
    walk_archive(source, limits, &crate::ParentSearch::default(), progress).map(|(report, _)| report)
}

/// [`verify`] of an archive whose ancestors (an incremental archive,
/// FORMAT.md 15) are looked for as `parents` says.
pub fn verify_with_parents<R: ReadAt + ?Sized>(
    source: &R,
    limits: Limits,
    parents: &crate::ParentSearch,
    progress: &dyn Fn(u64),
) -> Result<Report, Error> {
    walk_archive(source, limits, parents, progress).map(|(report, _)| report)
}

/// The walk behind [`verify`] and [`crate::recovery::scan`]: the report, and
/// what survives.
pub(crate) fn walk_archive<R: ReadAt + ?Sized>(
    source: &R,
    limits: Limits,
    parents: &crate::ParentSearch,
    progress: &dyn Fn(u64),
) -> Result<(Report, Recovered), Error> {
    let size = source.size().map_err(|e| Error::io("archive size", 0, e))?;
    let mut report = Report { archive_size: size, ..Report::default() };
    let mut start = ArchiveHeader::SIZE as u64;
    let mut chain = crate::verify_chain::WalkChain::default();
    let mut own_uuid = [0u8; 16];
    let tag = match read_header(source, size) {
        Ok(header) => {
            report.recognised = true;
            start = u64::from(header.header_length);
            chain.incremental = header.incompatible_features & strata_format::Features::INCOMPAT_INCREMENTAL != 0;
            own_uuid = header.archive_uuid;
            Some(header.archive_tag())
        }
        Err(e) => {
            let class = e.class();
            if class.is_none() {
                return Err(e);
            }
            let class = class.expect("checked above");
            // Past a damaged header, the records still say which archive they belong to.
            let found = find_any_record(source, size, ArchiveHeader::SIZE as u64)?;
            // Its feature bits are not trusted: the archive is incremental when
            // its first record is a CHAIN (FORMAT.md 15).
            chain.incremental = found.is_some_and(|(offset, tag)| {
                crate::chain::record_type_at(source, size, offset, tag, &limits) == Some(RecordType::Chain)
            });
            let fatal = matches!(class, ErrorClass::UnsupportedVersion | ErrorClass::UnsupportedFeature);
            if class != ErrorClass::NotStrata || found.is_some() {
                report.recognised = true;
                report.problems.push(Problem {
                    class: if class == ErrorClass::NotStrata { ErrorClass::BadHeader } else { class },
                    offset: 0,
                    what: e.what().to_string(),
                    detail: e.detail().to_string(),
                    affects: Vec::new(),
                });
            } else {
                report.problems.push(Problem {
                    class,
                    offset: 0,
                    what: e.what().to_string(),
                    detail: e.detail().to_string(),
                    affects: Vec::new(),
                });
            }
            if fatal {
                return Ok((report, Recovered::default()));
            }
            match found {
                Some((offset, tag)) => {
                    start = offset;
                    Some(tag)
                }
                None => None,
            }
        }
    };
    let Some(tag) = tag else {
        return Ok((report, Recovered::default()));
    };
    // A valid header counts as verified, so a clean archive verifies whole.
    let header_bytes = if report.problems.is_empty() { start } else { 0 };
    let mut walk = Walk {
        source,
        size,
        tag,
        limits,
        report,
        sections: Vec::new(),
        open: None,
        trees: Vec::new(),
        open_tree: None,
        order: Vec::new(),
        chunks: HashMap::new(),
        chunk_cache: None,
        damaged: Vec::new(),
        forward: Vec::new(),
        arrived: Vec::new(),
        forward_owner: 0,
        forward_targets: HashMap::new(),
        broken_forward: Vec::new(),
        run_in_place: false,
        file_affects: Vec::new(),
        image_indexes: Vec::new(),
        archive_index: None,
        trailer: None,
        trailer_at: None,
        span_to_end: false,
        counted: Vec::new(),
        summaries: Vec::new(),
        header_bytes,
        first_record: start,
        record_end: 0,
        own_uuid,
        parents: parents.clone(),
        chain,
    };
    walk.walk(start, progress)?;
    walk.cross_check();
    let mut recovered = walk.recovered();
    recovered.ancestors = walk.chain.state.take().map(|state| {
        // With the CHAIN_INDEX read, each ancestor chunk is checked against it.
        let index = walk.chain.index.as_ref().map(|(_, _, index, _)| index.clone());
        std::sync::Arc::new(state.with_index(index))
    });
    Ok((walk.finish(), recovered))
}

/// One problem per class and offset, what it affects the union of theirs, in
/// increasing offset (FORMAT.md section 11, "What a verifier reports").
fn merge_problems(problems: Vec<Problem>) -> Vec<Problem> {
    let mut merged: Vec<Problem> = Vec::with_capacity(problems.len());
    let mut at: HashMap<(ErrorClass, u64), usize> = HashMap::new();
    for problem in problems {
        match at.get(&(problem.class, problem.offset)) {
            Some(&i) => {
                let first = &mut merged[i];
                if first.detail != problem.detail {
                    first.detail = format!("{}; {}: {}", first.detail, problem.what, problem.detail);
                }
                first.affects.extend(problem.affects);
            }
            None => {
                at.insert((problem.class, problem.offset), merged.len());
                merged.push(problem);
            }
        }
    }
    for problem in &mut merged {
        problem.affects.retain(|a| a.range.start < a.range.end);
        merge_affected(&mut problem.affects);
    }
    merged.sort_by_key(|p| p.offset);
    merged
}

fn merge_affected(affects: &mut Vec<Affected>) {
    affects.sort_by(|a, b| a.section.cmp(&b.section).then(a.path.cmp(&b.path)).then(a.range.start.cmp(&b.range.start)));
    let mut merged: Vec<Affected> = Vec::with_capacity(affects.len());
    for item in affects.drain(..) {
        match merged.last_mut() {
            Some(last)
                if last.section == item.section && last.path == item.path && last.range.end >= item.range.start =>
            {
                last.range.end = last.range.end.max(item.range.end);
            }
            _ => merged.push(item),
        }
    }
    *affects = merged;
}

impl<R: ReadAt + ?Sized> Walk<'_, R> {
    pub(crate) fn problem(
        &mut self,
        class: ErrorClass,
        offset: u64,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) -> usize {
        self.report.problems.push(Problem {
            class,
            offset,
            what: what.into(),
            detail: detail.into(),
            affects: Vec::new(),
        });
        self.report.problems.len() - 1
    }

    fn problem_from(&mut self, e: Error, fallback_offset: u64) -> usize {
        let class = e.class().unwrap_or(ErrorClass::Truncated);
        let index = self.problem(class, e.offset().unwrap_or(fallback_offset), e.what(), e.detail());
        if let (Some(section), Some(range)) = (e.section(), e.image_range()) {
            self.report.problems[index].affects.push(Affected { section: section.to_string(), path: None, range });
        }
        index
    }

    fn walk(&mut self, start: u64, progress: &dyn Fn(u64)) -> Result<(), Error> {
        let source = Positional { source: self.source, size: self.size };
        let mut records = Records::new(source, start, self.tag, self.limits.max_index_bytes);
        while let Some(step) = records.step()? {
            match step {
                Step::Record { record, end } => {
                    let pos = record.offset;
                    self.report.records += 1;
                    self.counted.push((pos, end - pos));
                    progress(end - pos);
                    // (A trailer is never compressed: ZSTD on one fails its header.)
                    self.header_seen(pos, record.record_type, true);
                    self.record_end = end;
                    self.handle(pos, record.record_type, &record.body);
                    if record.record_type == Some(RecordType::Trailer) {
                        self.trailer_at = Some(pos);
                        records.stop();
                    }
                    records.recycle(record.body);
                }
                Step::Unusable { offset: pos, end, code, record_type, why, error } => {
                    let p = self.problem_from(error, pos);
                    match why {
                        Unusable::Header => {
                            // The record is skipped, and lost (FORMAT.md section 11).
                            self.damaged.push((pos..end, p));
                            self.header_seen(pos, record_type, false);
                            if code == RecordType::Chunk.code() {
                                self.chunk_in_run(pos, false);
                            } else {
                                self.lost(p);
                            }
                        }
                        Unusable::BodyChecksum | Unusable::Body => {
                            self.report.records += 1;
                            self.counted.push((pos, end - pos));
                            progress(end - pos);
                            if why == Unusable::BodyChecksum {
                                let name = record_type.map_or("ancillary", |t| t.name());
                                self.report.problems[p].what = format!("{name} record body CRC-32C");
                            }
                            // A compressed table that does not decode is
                            // unusable as a whole, as a body that fails its CRC is.
                            self.body_unusable(pos..end, record_type, p);
                        }
                    }
                    if code == RecordType::Trailer.code() {
                        self.trailer_at = Some(pos);
                        records.stop();
                    }
                }
                Step::Damaged { offset: pos, next, error } => {
                    let p = self.problem_from(error, pos);
                    self.resynced(pos, next, p);
                }
            }
        }
        let pos = records.position;
        if let Some(at) = self.trailer_at.filter(|_| pos < self.size) {
            // Bytes after the first trailer: at the trailer (FORMAT.md 9.3).
            self.problem(
                ErrorClass::IndexMismatch,
                at,
                "archive end",
                format!("{} bytes follow the trailer", self.size - pos),
            );
        }
        Ok(())
    }

    /// A record whose header passed but whose body cannot be used (its CRC
    /// fails, or, compressed, it does not decode): its bytes are a damaged
    /// span, reported as problem `p`.
    fn body_unusable(&mut self, span: std::ops::Range<u64>, record_type: Option<RecordType>, p: usize) {
        let (pos, end) = (span.start, span.end);
        self.damaged.push((span, p));
        self.header_seen(pos, record_type, false);
        if record_type == Some(RecordType::Chunk) {
            // The header is sound: the chunk still takes its place in the
            // run and the totals, so only its own loss is reported.
            self.chunk_in_run(pos, false);
            self.note_chunk_record(pos, end);
        } else {
            self.lost(p);
        }
    }

    /// Damage at `pos`: the walk goes on at `next`, the next valid record of
    /// this archive, or (`None`) no valid record follows.
    fn resynced(&mut self, pos: u64, next: Option<u64>, problem: usize) {
        let next = next.unwrap_or(self.size);
        // Past the last valid record, everything is gone, references beyond the
        // end of a cut file included.
        self.damaged.push((pos..if next == self.size { u64::MAX } else { next }, problem));
        self.span_to_end |= next == self.size;
        // A damaged span does not end a run of chunks, and what follows it is
        // not out of place (FORMAT.md section 2).
        self.run_in_place = true;
        self.lost(problem);
        let detail = if next == self.size {
            format!("no valid record follows; bytes {pos}..{next} are unreadable")
        } else {
            format!("resynchronised at byte {next}; bytes {pos}..{next} are unreadable")
        };
        let p = &mut self.report.problems[problem];
        p.detail = format!("{}; {detail}", p.detail);
    }

    /// A record lost to the walk, or whose extents or entries cannot be read,
    /// inside the open section: a gap in an image's map, entries of a tree
    /// that may be missing (FORMAT.md section 11, "What a verifier reports").
    pub(crate) fn lost(&mut self, problem: usize) {
        if let Some(open) = self.open {
            self.sections[open].gap.get_or_insert(problem);
        } else if let Some(open) = self.open_tree {
            self.trees[open].note_lost();
        }
    }

    /// What a record whose header passed its magic, CRC and tag checks does to
    /// the open section and the run of chunks, from its type alone: `read` is
    /// whether its body is read (not skipped, its CRC passed).
    fn header_seen(&mut self, pos: u64, record_type: Option<RecordType>, read: bool) {
        use RecordType::*;
        let ends_section = matches!(
            record_type,
            Some(ImageBegin | FilesBegin | ImageIndex | FilesDir | FilesIndex | ChainIndex | ArchiveIndex | Trailer)
        );
        if pos == self.first_record {
            self.chain.first_type = Some(record_type);
        }
        if ends_section && (self.open.is_some() || self.open_tree.is_some()) {
            // Left open: its end record never came (FORMAT.md section 11).
            self.open = None;
            self.open_tree = None;
            self.summaries.push((pos, Summary::LeftOpen));
        }
        if !read {
            // An end record whose body is not read still ends its section.
            if record_type == Some(ImageEnd) {
                self.open = None;
            } else if record_type == Some(FilesEnd) {
                self.open_tree = None;
            }
        }
        if record_type != Some(Chunk) {
            // Any record of another type, an ancillary one included, ends the run
            // of chunks that follows an extent record (7.2 rule 6).
            self.end_run();
            self.run_in_place = !read || matches!(record_type, Some(ImageExtents | FilesExtents));
        }
    }

    /// Checks one record whose CRCs passed.
    fn handle(&mut self, pos: u64, record_type: Option<RecordType>, body: &[u8]) {
        let end = pos + 32 + body.len() as u64;
        match record_type {
            None => {}
            Some(RecordType::Chunk) => {
                self.chunk_in_run(pos, true);
                self.note_chunk_record(pos, end);
                match chunk::decode_chunk(body) {
                    Ok((header, _)) => {
                        self.chunks.insert(pos, (header.raw_length, header.blake3));
                    }
                    Err(e) => {
                        let p = self.problem(e.class, pos, format!("CHUNK {}", e.what), e.detail);
                        self.damaged.push((pos..end, p));
                    }
                }
            }
            Some(RecordType::ImageBegin) => match ImageBegin::parse(body) {
                Ok(begin) => {
                    let name = begin.name_lossy();
                    self.open_new_section(pos, begin.section_id, &name, "IMAGE_BEGIN");
                    self.order.push((SectionKind::Image, self.sections.len()));
                    self.open = Some(self.sections.len());
                    self.sections.push(WalkSection {
                        begin_offset: pos,
                        check: ExtentMapCheck::new(&begin),
                        begin,
                        name,
                        extents: Vec::new(),
                        chunk_count: 0,
                        chunk_bytes: 0,
                        end: None,
                        gap: None,
                    });
                }
                Err(e) => {
                    self.problem(e.class, pos, e.what, e.detail);
                }
            },
            Some(RecordType::ImageExtents) => self.handle_extents(pos, body),
            Some(RecordType::ImageEnd) => self.handle_end(pos, body),
            Some(RecordType::ImageIndex) => match image::parse_extent_table(body, RecordType::ImageIndex) {
                Ok((head, table)) => {
                    self.summaries.push((pos, Summary::ImageIndex(self.image_indexes.len())));
                    self.image_indexes.push((pos, head.section_id, image::extents_of(table).collect()));
                }
                Err(e) => {
                    self.problem(e.class, pos, e.what, e.detail);
                }
            },
            Some(RecordType::FilesBegin) => self.handle_files_begin(pos, body),
            Some(RecordType::FilesExtents) => self.handle_files_extents(pos, body),
            Some(RecordType::FilesEntries) => self.handle_files_entries(pos, body),
            Some(RecordType::FilesEnd) => self.handle_files_end(pos, body),
            Some(RecordType::FilesDir) => self.handle_files_dir(pos, body),
            Some(RecordType::FilesIndex) => self.handle_files_index(pos, body),
            Some(RecordType::Chain) => self.handle_chain(pos, body),
            Some(RecordType::ChainIndex) => self.handle_chain_index(pos, self.record_end, body),
            Some(RecordType::ArchiveIndex) => match ArchiveIndex::parse(body) {
                Ok(index) if index.chain_index.is_some() != self.chain.incremental && self.header_bytes > 0 => {
                    self.problem(
                        ErrorClass::RecordMalformed,
                        pos,
                        "ARCHIVE_INDEX body",
                        if self.chain.incremental {
                            "the archive is incremental (feature bit 1), but its ARCHIVE_INDEX has no chain fields"
                        } else {
                            "it has the chain fields of an incremental archive, but feature bit 1 is clear"
                        },
                    );
                }
                Ok(index) => {
                    self.archive_index = Some((pos, index));
                    self.summaries.push((pos, Summary::ArchiveIndex));
                }
                Err(e) => {
                    self.problem(e.class, pos, e.what, e.detail);
                }
            },
            Some(RecordType::Trailer) => {
                let trailer = match Trailer::decode_exact(body, "TRAILER body") {
                    Ok(trailer) => trailer,
                    Err(e) => {
                        self.problem(e.class, pos, e.what, e.detail);
                        return;
                    }
                };
                if let Err(e) = trailer.validate() {
                    self.problem(e.class, pos, e.what, e.detail);
                }
                if trailer.archive_length != self.size {
                    self.problem(
                        if trailer.archive_length > self.size {
                            ErrorClass::Truncated
                        } else {
                            ErrorClass::IndexMismatch
                        },
                        pos,
                        "TRAILER archive_length",
                        format!("{}, but the file has {} bytes", trailer.archive_length, self.size),
                    );
                }
                self.trailer = Some((pos, trailer));
                self.summaries.push((pos, Summary::Trailer));
            }
        }
    }

    /// A `CHUNK` record whose header passed, read or not: its place in the run
    /// that follows an extent record (FORMAT.md section 2 and 7.2 rule 6).
    fn chunk_in_run(&mut self, pos: u64, read: bool) {
        if read && !self.run_in_place {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "CHUNK",
                "a CHUNK record in a run that follows neither an extent record nor a lost record (section 2; an ancillary record ends a run)",
            );
        }
        if self.forward.contains(&pos) {
            self.arrived.push(pos);
        }
    }

    /// Accounts for a `CHUNK` record whose body was read, whatever it holds:
    /// the open section's totals.
    fn note_chunk_record(&mut self, pos: u64, end: u64) {
        if let Some(open) = self.open {
            self.sections[open].chunk_count += 1;
            self.sections[open].chunk_bytes += end - pos;
        } else if let Some(open) = self.open_tree {
            self.trees[open].chunk_count += 1;
            self.trees[open].chunk_bytes += end - pos;
        }
        self.report.chunks += 1;
    }

    /// Ends the run of `CHUNK` records that follows an extent record (7.2 rule
    /// 6): the `CHUNK` records it referred to forward came in the order of first
    /// reference, and those that did not come are reported after the walk,
    /// when what lies at their offsets is known.
    pub(crate) fn end_run(&mut self) {
        if self.forward.is_empty() {
            return;
        }
        let owner = self.forward_owner;
        let forward = std::mem::take(&mut self.forward);
        let arrived = std::mem::take(&mut self.arrived);
        let mut targets = std::mem::take(&mut self.forward_targets);
        let came: HashSet<u64> = arrived.iter().copied().collect();
        let order = forward.iter().filter(|r| came.contains(r));
        if let Some((&first, _)) = arrived.iter().zip(order).find(|(a, o)| a != o) {
            self.problem(
                ErrorClass::DanglingReference,
                first,
                "chunk order",
                format!(
                    "the CHUNK records after the extent record at byte {owner} do not come in the order of its first references to them"
                ),
            );
        }
        for chunk_ref in forward.into_iter().filter(|r| !came.contains(r)) {
            let stands_for = targets.remove(&chunk_ref).unwrap_or_default();
            self.broken_forward.push((owner, chunk_ref, stands_for));
        }
    }

    /// Notes a forward reference of the extent record at `owner` (7.2 rule 6).
    pub(crate) fn expect_forward(&mut self, owner: u64, chunk_ref: u64, target: ForwardTarget) {
        self.forward_owner = owner;
        if !self.forward.contains(&chunk_ref) {
            self.forward.push(chunk_ref);
        }
        self.forward_targets.entry(chunk_ref).or_default().push(target);
    }

    /// Reports the forward references whose run ended before them (rule 6) at
    /// the offset they hold (rule 5), unless that lies in damage, which they
    /// are charged to.
    fn report_broken_forward(&mut self) {
        for (owner, chunk_ref, stands_for) in std::mem::take(&mut self.broken_forward) {
            let detail = format!(
                "{chunk_ref}: a forward reference of the extent record at byte {owner} that no CHUNK record of the run following it answers (7.2 rule 6)"
            );
            for target in stands_for {
                let affected = match target {
                    ForwardTarget::Image { section, range } => Affected { section, path: None, range },
                    ForwardTarget::File { tree, entry_id, range } => Affected {
                        section: self.trees[tree].name.clone(),
                        path: Some(self.trees[tree].path_of(entry_id)),
                        range,
                    },
                };
                self.charge_or_report(chunk_ref, affected, "chunk reference order", &detail);
            }
        }
    }

    /// Whether a section's extents and chunks give its `IMAGE_END` map digest.
    /// Only asked when the map itself checked out; a damaged chunk is reported on
    /// its own, so the digest is then not compared.
    fn map_digest_matches(&self, section: usize, end: &ImageEnd) -> bool {
        let mut digest = strata_format::image::MapDigest::new();
        for extent in &self.sections[section].extents {
            let id = match extent.kind() {
                Ok(ExtentKind::Data(chunk_ref)) if self.is_ancestor_ref(chunk_ref) => {
                    match self.chain.resolved.get(&chunk_ref) {
                        Some(Ok((_, blake3))) => *blake3,
                        _ => return true,
                    }
                }
                Ok(ExtentKind::Data(chunk_ref)) => match self.chunks.get(&chunk_ref) {
                    Some(&(_, blake3)) => blake3,
                    None => return true,
                },
                Ok(hole) => hole.hole_identity().unwrap_or(strata_format::image::ZERO_ID),
                Err(_) => return true,
            };
            digest.push(extent, &id);
        }
        digest.finish() == end.map_blake3
    }

    /// Checks a section's begin record against what came before: the previous
    /// section closed, ids in order, names unique across kinds.
    pub(crate) fn open_new_section(&mut self, pos: u64, section_id: u32, name: &str, what: &str) {
        if section_id as usize != self.order.len() {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                format!("{what} section_id"),
                format!("{section_id}, expected {}", self.order.len()),
            );
        }
        if self.sections.iter().any(|s| s.name == name) || self.trees.iter().any(|t| t.name == name) {
            self.problem(ErrorClass::RecordMalformed, pos, "section name", format!("{name:?} names two sections"));
        }
    }

    /// Charges `affected` to the damage that holds `chunk_ref` (FORMAT.md section
    /// 11: a lost record, a damaged span or a damaged chunk), or reports a
    /// dangling reference there.
    fn charge_or_report(&mut self, chunk_ref: u64, affected: Affected, what: &str, detail: &str) {
        match self.damaged.iter().find(|(span, _)| span.contains(&chunk_ref)) {
            Some(&(_, p)) => self.report.problems[p].affects.push(affected),
            None => {
                let p = self.problem(ErrorClass::DanglingReference, chunk_ref, what, detail);
                self.report.problems[p].affects.push(affected);
            }
        }
    }

    /// Attaches `affected` to the problem whose damaged span holds `chunk_ref`, or
    /// reports a dangling reference.
    pub(crate) fn attach_or_dangling(&mut self, chunk_ref: u64, affected: Affected) {
        match self.damaged.iter().find(|(span, _)| span.contains(&chunk_ref)) {
            Some(&(_, p)) => self.report.problems[p].affects.push(affected),
            None => {
                let p = self.problem(
                    ErrorClass::DanglingReference,
                    chunk_ref,
                    "chunk reference",
                    format!("data at byte {chunk_ref} is referenced, but no chunk record starts there"),
                );
                self.report.problems[p].affects.push(affected);
            }
        }
    }

    fn handle_extents(&mut self, pos: u64, body: &[u8]) {
        let (head, table) = match image::parse_extent_table(body, RecordType::ImageExtents) {
            Ok(parsed) => parsed,
            Err(e) => {
                let p = self.problem(e.class, pos, e.what, e.detail);
                self.lost(p);
                return;
            }
        };
        let Some(open) = self.open.filter(|&i| self.sections[i].begin.section_id == head.section_id) else {
            let p = self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "IMAGE_EXTENTS section_id",
                format!("section {} is not the open section", head.section_id),
            );
            self.lost(p);
            return;
        };
        let name = self.sections[open].name.clone();
        for extent in image::extents_of(table) {
            let range = extent.image_offset..extent.image_offset.saturating_add(extent.length);
            let next = self.sections[open].check.next_offset();
            if let Some(gap) = self.sections[open].gap.take() {
                // After a lost record the map resumes where this extent starts
                // (FORMAT.md section 11); the range skipped is what it cost.
                if extent.image_offset > next {
                    self.report.problems[gap].affects.push(Affected {
                        section: name.clone(),
                        path: None,
                        range: next..extent.image_offset,
                    });
                    self.sections[open].check.skip_to(extent.image_offset);
                }
            }
            if let Err(e) = self.sections[open].check.push(&extent) {
                let p = self.problem(e.class, pos, e.what, e.detail);
                self.report.problems[p].affects.push(Affected { section: name.clone(), path: None, range });
                // Carry on from this extent, so later extents are checked too.
                let check = &mut self.sections[open].check;
                check.skip_to(extent.image_offset);
                if check.push(&extent).is_err() {
                    check.skip_to(extent.end());
                }
            }
            if let Ok(ExtentKind::Data(chunk_ref)) = extent.kind() {
                if self.is_ancestor_ref(chunk_ref) {
                    let target =
                        ForwardTarget::Image { section: name.clone(), range: extent.image_offset..extent.end() };
                    self.note_ancestor_ref(pos, chunk_ref, target, extent.length, true);
                } else if chunk_ref > pos {
                    let target =
                        ForwardTarget::Image { section: name.clone(), range: extent.image_offset..extent.end() };
                    self.expect_forward(pos, chunk_ref, target);
                }
            }
            self.sections[open].extents.push(extent);
        }
    }

    fn handle_end(&mut self, pos: u64, body: &[u8]) {
        let end = match ImageEnd::decode_exact(body, "IMAGE_END body") {
            Ok(end) => end,
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
                return;
            }
        };
        let valid = match end.validate() {
            Ok(()) => true,
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
                false
            }
        };
        let Some(open) = self.open.filter(|&i| self.sections[i].begin.section_id == end.section_id) else {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "IMAGE_END section_id",
                format!("section {} is not the open section", end.section_id),
            );
            return;
        };
        // It ends its section; one that breaks a rule of its body is not used.
        self.open = None;
        if !valid {
            return;
        }
        let section = &mut self.sections[open];
        section.end = Some((pos, end));
        let declared = section.begin.logical_size;
        if declared != image::UNKNOWN_SIZE && declared != end.logical_size {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "IMAGE_END logical_size",
                format!("{}, but IMAGE_BEGIN declared {declared}", end.logical_size),
            );
        }
        self.summaries.push((pos, Summary::ImageEnd(open)));
    }

    /// The summary checks of an `IMAGE_END` (FORMAT.md 7.3): the end of the map,
    /// the map digest and the totals.
    fn summary_image_end(&mut self, open: usize) {
        let section = &self.sections[open];
        let Some((pos, end)) = section.end else { return };
        let name = section.name.clone();
        let next = section.check.next_offset();
        let counts = (
            section.check.extent_count,
            section.check.data_bytes,
            section.check.lost_bytes,
            section.chunk_count,
            section.chunk_bytes,
            section.begin_offset,
        );
        if next != end.logical_size {
            let p = self.problem(
                ErrorClass::ExtentMap,
                pos,
                "extent map",
                format!("extents cover image bytes 0..{next}, the image has {}", end.logical_size),
            );
            self.report.problems[p].affects.push(Affected {
                section: name.clone(),
                path: None,
                range: next.min(end.logical_size)..next.max(end.logical_size),
            });
        }
        if !self.map_digest_matches(open, &end) {
            let p = self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "IMAGE_END map_blake3",
                format!("section {name:?}: the extent map and chunks do not give the digest IMAGE_END holds"),
            );
            self.report.problems[p].affects.push(Affected { section: name, path: None, range: 0..end.logical_size });
        }
        let declared =
            (end.extent_count, end.data_bytes, end.lost_bytes, end.chunk_count, end.chunk_bytes, end.begin_offset);
        if counts != declared {
            self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "IMAGE_END totals",
                format!(
                    "extents, data bytes, lost bytes, chunks, chunk bytes, begin offset: records give {counts:?}, IMAGE_END says {declared:?}"
                ),
            );
        }
    }

    /// The image size `verify` reports for a section (conformance.md,
    /// `sections`).
    fn image_size(s: &WalkSection) -> u64 {
        match (s.end, s.begin.logical_size) {
            (Some((_, end)), _) => end.logical_size,
            (None, image::UNKNOWN_SIZE) => s.check.next_offset(),
            (None, declared) => declared,
        }
    }

    /// Checks every reference, then the records against the records before them
    /// (FORMAT.md section 11, "What a verifier reports").
    fn cross_check(&mut self) {
        self.end_run();
        // Gaps still open at the end of their section run to its size.
        for i in 0..self.sections.len() {
            if let Some(gap) = self.sections[i].gap.take() {
                let (next, size) = (self.sections[i].check.next_offset(), Self::image_size(&self.sections[i]));
                if size > next {
                    let section = self.sections[i].name.clone();
                    self.report.problems[gap].affects.push(Affected { section, path: None, range: next..size });
                }
            }
        }
        self.report_broken_forward();
        self.check_tree_references();
        self.check_chain();
        // Every data extent must resolve to a valid chunk of its length.
        for i in 0..self.sections.len() {
            let name = self.sections[i].name.clone();
            let extents = std::mem::take(&mut self.sections[i].extents);
            for extent in &extents {
                let Ok(ExtentKind::Data(chunk_ref)) = extent.kind() else {
                    continue;
                };
                if self.is_ancestor_ref(chunk_ref) {
                    // Checked through the ancestors (check_chain).
                    continue;
                }
                let affected = Affected { section: name.clone(), path: None, range: extent.image_offset..extent.end() };
                match self.chunks.get(&chunk_ref) {
                    Some(&(raw_length, _)) if u64::from(raw_length) == extent.length => {}
                    Some(&(raw_length, _)) => {
                        let p = self.problem(
                            ErrorClass::ExtentMap,
                            chunk_ref,
                            "data extent length",
                            format!("{}, but its chunk holds {raw_length} bytes", extent.length),
                        );
                        self.report.problems[p].affects.push(affected);
                    }
                    None => self.attach_or_dangling(chunk_ref, affected),
                }
            }
            self.sections[i].extents = extents;
        }
        // An IMAGE_INDEX of a section the walk never found (its begin record was
        // lost or broken) describes nothing: FORMAT.md 9.1.
        let walked: HashSet<u32> = self.sections.iter().map(|s| s.begin.section_id).collect();
        for i in 0..self.image_indexes.len() {
            let (offset, id, _) = self.image_indexes[i];
            if !walked.contains(&id) {
                self.problem(
                    ErrorClass::IndexMismatch,
                    offset,
                    "IMAGE_INDEX section_id",
                    format!("section {id}: no image section with this id was found"),
                );
            }
        }
        if self.trailer_at.is_none() && !self.span_to_end {
            self.problem(
                ErrorClass::Truncated,
                self.size,
                "trailer",
                "the archive has no trailer: it is truncated or its end is damaged",
            );
        }
        let mut summaries = std::mem::take(&mut self.summaries);
        summaries.sort_by_key(|&(offset, _)| offset);
        // Problems are only added from here on, at the offsets of the checks.
        let mut lowest = self.report.problems.iter().map(|p| p.offset).min().unwrap_or(u64::MAX);
        for (offset, summary) in summaries {
            if lowest < offset {
                continue;
            }
            let before = self.report.problems.len();
            match summary {
                Summary::LeftOpen => {
                    self.problem(
                        ErrorClass::RecordMalformed,
                        offset,
                        "section end",
                        "a section was left open: this record came before its end record",
                    );
                }
                Summary::ImageEnd(i) => self.summary_image_end(i),
                Summary::FilesEnd(t) => self.summary_files_end(t),
                Summary::ImageIndex(i) => self.summary_image_index(i),
                Summary::FilesDir(t, i) => self.summary_files_dir(t, i),
                Summary::FilesIndex(t, i) => self.summary_files_index(t, i),
                Summary::ArchiveIndex => self.summary_archive_index(),
                Summary::ChainIndex => self.summary_chain_index(),
                Summary::Trailer => self.summary_trailer(),
            }
            if self.report.problems.len() > before {
                lowest = lowest.min(offset);
            }
        }
    }

    /// An `IMAGE_INDEX` compared with its section's extents (FORMAT.md 9.1).
    fn summary_image_index(&mut self, i: usize) {
        let (offset, id, _) = self.image_indexes[i];
        let Some(section) = self.sections.iter().position(|s| s.begin.section_id == id) else { return };
        if self.image_indexes[i].2 != self.sections[section].extents {
            let name = self.sections[section].name.clone();
            self.problem(
                ErrorClass::IndexMismatch,
                offset,
                "IMAGE_INDEX",
                format!("section {name:?}: its extents differ from the IMAGE_EXTENTS records"),
            );
        }
    }

    /// The `ARCHIVE_INDEX` compared with the sections the walk found (9.2).
    fn summary_archive_index(&mut self) {
        let Some((index_offset, index)) = self.archive_index.take() else { return };
        let mut faults = Vec::new();
        let mut tables: HashMap<u32, u64> = HashMap::new();
        for &(offset, id, _) in &self.image_indexes {
            tables.entry(id).or_insert(offset);
        }
        if index.sections.len() != self.order.len() {
            faults.push(format!("{} sections, but the records hold {}", index.sections.len(), self.order.len()));
        }
        for (entry, &(kind, i)) in index.sections.iter().zip(&self.order) {
            let (name, begin, end, table) = match kind {
                SectionKind::Image => {
                    let s = &self.sections[i];
                    let id = s.begin.section_id;
                    let table = tables.get(&id).copied();
                    (s.name.clone(), s.begin_offset, s.end.map(|(o, _)| o), table)
                }
                SectionKind::FileTree => {
                    let t = &self.trees[i];
                    (t.name.clone(), t.begin_offset, t.end.map(|(o, _)| o), t.indexes.first().map(|x| x.0))
                }
            };
            if entry.kind != kind.code()
                || entry.begin_offset != begin
                || Some(entry.end_offset) != end
                || Some(entry.table_offset) != table
            {
                faults.push(format!("section {name:?}: its kind or offsets disagree with the records"));
            }
        }
        if let Some(fault) = self.chain_pointer_fault(index_offset, &index) {
            faults.push(fault);
        }
        if !faults.is_empty() {
            self.problem(ErrorClass::IndexMismatch, index_offset, "ARCHIVE_INDEX", faults.join("; "));
        }
        self.archive_index = Some((index_offset, index));
    }

    /// The trailer's `index_offset` and `record_count` (9.3).
    fn summary_trailer(&mut self) {
        let Some((trailer_offset, trailer)) = self.trailer else { return };
        match self.archive_index {
            Some((index_offset, _)) if index_offset == trailer.index_offset => {}
            Some((index_offset, _)) => {
                self.problem(
                    ErrorClass::IndexMismatch,
                    trailer_offset,
                    "TRAILER index_offset",
                    format!("{}, but the ARCHIVE_INDEX is at byte {index_offset}", trailer.index_offset),
                );
            }
            None => {
                self.problem(
                    ErrorClass::IndexMismatch,
                    trailer_offset,
                    "TRAILER index_offset",
                    "no valid ARCHIVE_INDEX record was found",
                );
            }
        }
        let before = self.report.records.saturating_sub(1);
        if trailer.record_count != before {
            self.problem(
                ErrorClass::IndexMismatch,
                trailer_offset,
                "TRAILER record_count",
                format!("{}, but {before} records precede the trailer", trailer.record_count),
            );
        }
    }

    fn recovered(&self) -> Recovered {
        let images = self
            .sections
            .iter()
            .map(|s| {
                let mut extents = s.extents.clone();
                extents.sort_by_key(|e| e.image_offset);
                extents.dedup_by_key(|e| e.image_offset);
                let end_of_map = extents.last().map_or(0, Extent::end);
                RecoveredImage {
                    name: s.name.clone(),
                    sector_size: s.begin.sector_size,
                    chunk_size: s.begin.chunk_size,
                    flags: s.begin.flags,
                    logical_size: s.end.map_or(
                        if s.begin.logical_size != strata_format::image::UNKNOWN_SIZE {
                            s.begin.logical_size
                        } else {
                            end_of_map
                        },
                        |(_, end)| end.logical_size,
                    ),
                    extents,
                }
            })
            .collect();
        Recovered {
            images,
            trees: self
                .trees
                .iter()
                .map(|t| RecoveredTree {
                    name: t.name.clone(),
                    chunk_size: t.chunk_size,
                    captured: t.captured,
                    entries: t.entries.clone(),
                    listed: t.listed(),
                    entry_count: t.end.map(|(_, end)| end.entry_count),
                })
                .collect(),
            chunks: self.chunks.iter().map(|(&offset, &(raw, _))| (offset, raw)).collect(),
            tag: self.tag,
            ancestors: None,
        }
    }

    fn finish(mut self) -> Report {
        for (p, tree, entry_id, range) in std::mem::take(&mut self.file_affects) {
            let affected = Affected {
                section: self.trees[tree].name.clone(),
                path: Some(self.trees[tree].path_of(entry_id)),
                range,
            };
            self.report.problems[p].affects.push(affected);
        }
        self.report.problems = merge_problems(std::mem::take(&mut self.report.problems));
        // Bytes in records at whose offset no problem is reported (conformance.md).
        let at_fault: HashSet<u64> = self.report.problems.iter().map(|p| p.offset).collect();
        self.report.verified_bytes = if at_fault.contains(&0) { 0 } else { self.header_bytes }
            + self
                .counted
                .iter()
                .filter(|(offset, _)| !at_fault.contains(offset))
                .map(|&(_, length)| length)
                .sum::<u64>();
        self.report.sections = self
            .order
            .iter()
            .map(|&(kind, i)| match kind {
                SectionKind::Image => {
                    let s = &self.sections[i];
                    SectionReport {
                        name: s.name.clone(),
                        kind: "image",
                        // IMAGE_END has the final word; without it, the size
                        // IMAGE_BEGIN declared, else the end of the last extent.
                        logical_size: match (s.end, s.begin.logical_size) {
                            (Some((_, end)), _) => end.logical_size,
                            (None, image::UNKNOWN_SIZE) => s.check.next_offset(),
                            (None, declared) => declared,
                        },
                        data_bytes: s.check.data_bytes,
                        lost_bytes: s.check.lost_bytes,
                        free_bytes: s.check.free_bytes,
                        extents: s.check.extent_count,
                        chunks: s.chunk_count,
                        stored_bytes: s.chunk_bytes,
                    }
                }
                SectionKind::FileTree => {
                    let t = &self.trees[i];
                    SectionReport {
                        name: t.name.clone(),
                        kind: "files",
                        logical_size: t.content_bytes,
                        data_bytes: t.content_bytes,
                        lost_bytes: 0,
                        free_bytes: 0,
                        extents: 0,
                        chunks: t.chunk_count,
                        stored_bytes: t.chunk_bytes,
                    }
                }
            })
            .collect();
        self.report.recognised |= self.report.records > 0;
        self.report
    }
}
