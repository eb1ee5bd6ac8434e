//! What a damaged archive still holds, for salvage (`strata-salvage`, and
//! any tool that rebuilds archives): the sections, entries and chunks a walk
//! of the records found sound (`spec/FORMAT.md` section 11). Reading,
//! verifying and restoring an intact archive need none of this.

use std::collections::{BTreeMap, HashMap};

use strata_format::{Extent, RecordType};

use crate::verify::Report;
use crate::{Error, Limits, ReadAt};

/// Walks every record of `source` as [`crate::verify::verify`] does,
/// returning its report and what survives.
pub fn scan<R: ReadAt + ?Sized>(
    source: &R,
    limits: Limits,
    progress: &dyn Fn(u64),
) -> Result<(Report, Recovered), Error> {
    scan_with_parents(source, limits, &crate::ParentSearch::default(), progress)
}

/// [`scan`] of an archive whose ancestors (an incremental archive,
/// `spec/FORMAT.md` 15) are looked for as `parents` says.
pub fn scan_with_parents<R: ReadAt + ?Sized>(
    source: &R,
    limits: Limits,
    parents: &crate::ParentSearch,
    progress: &dyn Fn(u64),
) -> Result<(Report, Recovered), Error> {
    crate::verify::walk_archive(source, limits, parents, progress)
}

/// An image section as a walk of the records found it: what salvage rebuilds.
#[derive(Clone, Debug)]
pub struct RecoveredImage {
    /// The section's name, from `IMAGE_BEGIN`.
    pub name: String,
    /// Sector size of the source in bytes, from `IMAGE_BEGIN` (7.1).
    pub sector_size: u32,
    /// Chunk size in bytes, from `IMAGE_BEGIN` (7.1).
    pub chunk_size: u32,
    /// `IMAGE_BEGIN` flags (a used-blocks section keeps its free extents).
    pub flags: u16,
    /// From `IMAGE_END`, or else the end of the last extent found.
    pub logical_size: u64,
    /// The extents found, sorted by image offset; ranges no extent covers were lost.
    pub extents: Vec<Extent>,
}

pub use crate::verify::tree::EntryFacts;

/// A file-tree section as the walk found it.
#[derive(Clone, Debug)]
pub struct RecoveredTree {
    /// The section's name, from `FILES_BEGIN`.
    pub name: String,
    /// Chunk size in bytes, from `FILES_BEGIN` (8.1).
    pub chunk_size: u32,
    /// What the writer captured for every entry: the bits of `FILES_BEGIN`
    /// `captured` (8.1).
    pub captured: u64,
    /// The entries whose `FILES_ENTRIES` records survived, by `entry_id`.
    pub entries: BTreeMap<u64, EntryFacts>,
    /// What the surviving `FILES_DIR` tables say of each child: its `entry_id`
    /// to its parent's id, its name and its kind code. This names entries whose
    /// own records were lost.
    pub listed: crate::verify::tree::Listed,
    /// `entry_count` of the section's `FILES_END`, if that survived.
    pub entry_count: Option<u64>,
}

impl RecoveredTree {
    /// The path of an entry in the damaged tree, as far as the surviving entries
    /// and directory tables name it (a part nothing names shows as `#ID`).
    pub fn path_of(&self, entry_id: u64) -> Vec<u8> {
        crate::verify::tree::tree_path(
            &self.entries,
            &|id| self.listed.get(&id).map(|(parent, name, _)| (*parent, name.as_slice())),
            entry_id,
        )
    }
}

/// What survives in a damaged archive, for salvage.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The image sections found, in archive order.
    pub images: Vec<RecoveredImage>,
    /// The file-tree sections found, in archive order.
    pub trees: Vec<RecoveredTree>,
    /// Every chunk that passed all its checks: record offset to raw length.
    pub chunks: HashMap<u64, u32>,
    /// The archive tag its records carry.
    pub tag: [u8; 8],
    /// The ancestors of an incremental archive (FORMAT.md 15), to read the
    /// chunks its extents take from them.
    pub(crate) ancestors: Option<std::sync::Arc<crate::chain::ChainState>>,
}

impl Recovered {
    /// Whether the chunk at `chunk_ref` survived and holds at least
    /// `raw_needed` bytes (where the extent that refers to it ends in it), as
    /// far as the walk knows: a chunk of an ancestor is checked only when it
    /// is read ([`Recovered::read_chunk`]).
    pub fn holds_chunk(&self, chunk_ref: u64, raw_needed: u64) -> bool {
        if self.ancestors.is_some() && strata_format::ChunkRef::split(chunk_ref).is_ancestor() {
            return true;
        }
        self.chunks.get(&chunk_ref).is_some_and(|&raw| raw_needed <= u64::from(raw))
    }

    /// Reads, checks and decodes the chunk at `chunk_ref` of the walked
    /// archive `source`, or of one of its ancestors (checked as FORMAT.md
    /// 15.4 says).
    pub fn read_chunk<R: ReadAt + ?Sized>(
        &self,
        source: &R,
        chunk_ref: u64,
        limits: &Limits,
    ) -> Result<crate::Chunk, Error> {
        match &self.ancestors {
            Some(chain) if strata_format::ChunkRef::split(chunk_ref).is_ancestor() => {
                chain.chunk(strata_format::ChunkRef::split(chunk_ref))
            }
            _ => crate::archive::chunk_at(source, chunk_ref, self.tag, limits),
        }
    }
}

/// Reads one `FILES_ENTRIES` record (a group) again (salvage does, after
/// the walk found it sound): its entries that can be read, each with its row
/// in the group. Their `extents` are empty: the walk keeps each file's
/// ([`EntryFacts::extents`]).
pub fn entries_record_at<R: ReadAt + ?Sized>(
    source: &R,
    offset: u64,
    recovered: &Recovered,
    limits: &Limits,
) -> Result<Vec<(u32, strata_format::files::Entry)>, Error> {
    let size = source.size().map_err(|e| Error::io("archive size", 0, e))?;
    // A group the walk read whole, prefixed or not, reads again the same way.
    let prefixes =
        recovered.ancestors.as_deref().map_or(crate::record::Prefixes::Unknown, crate::record::Prefixes::Chain);
    let record = crate::record::read_record_at(source, size, offset, recovered.tag, limits.max_index_bytes, prefixes)?;
    let body = crate::archive::expect_type(&record, RecordType::FilesEntries)?;
    let group = strata_format::files::parse_group(body).map_err(|e| Error::from(e).at(offset))?;
    Ok(group.entries.into_iter().enumerate().filter_map(|(row, e)| Some((row as u32, e.ok()?))).collect())
}
