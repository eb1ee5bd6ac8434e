//! Verification: walk every record front to back, check every checksum and every
//! rule, resynchronise past damage, and say what each problem costs in image byte
//! ranges. Reports every problem, not just the first (FORMAT.md 11, 12).
//!
//! The walk (`walk`) hands each record to its section's checks, peers in
//! their own files: block images (`image`, section 7), file trees (`tree`,
//! section 8), the chain of an incremental archive (`chain`, section 15),
//! and, once every record is read, the index and trailer (`index`, section 9).
//!
//! ```
//! use strata_reader::{verify, ErrorClass, Limits};
//!
//! let good = &include_bytes!("../../../spec/vectors/image-small.strata")[..];
//! let report = verify::verify(good, Limits::default(), &|_| {})?;
//! assert!(report.is_clean());
//! assert_eq!(report.sections[0].logical_size, 50_000);
//!
//! // One stored byte of the first chunk changed: one problem, and what it costs.
//! let damaged = &include_bytes!("../../../spec/vectors/chunk-body-crc.strata")[..];
//! let report = verify::verify(damaged, Limits::default(), &|_| {})?;
//! assert!(!report.is_clean());
//! let [problem] = &report.problems[..] else { panic!("one problem: {:?}", report.problems) };
//! assert_eq!((problem.class, problem.offset), (ErrorClass::RecordChecksum, 652));
//! assert_eq!(problem.affects[0].section, "disk");
//! assert_eq!(problem.affects[0].range, 0..4096);
//! # Ok::<(), strata_reader::Error>(())
//! ```

mod chain;
mod image;
mod index;
pub(crate) mod tree;
mod walk;

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use strata_format::image::ExtentMapCheck;
use strata_format::{
    ArchiveHeader, ArchiveIndex, ErrorClass, Extent, ExtentKind, ImageBegin, ImageEnd, RecordType, Trailer,
};

use crate::archive::read_header;
use crate::record::{find_any_record, Positional, PrefixSource, Records, Step, Unusable};
use crate::recovery::{Recovered, RecoveredImage, RecoveredTree};
use crate::verify::tree::WalkTree;
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
    pub(crate) chain: crate::verify::chain::WalkChain,
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
    let mut chain = crate::verify::chain::WalkChain::default();
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
                            (None, strata_format::image::UNKNOWN_SIZE) => s.check.next_offset(),
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
