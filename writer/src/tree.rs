//! File-tree sections: the encoder. It takes entries from an
//! [`EntrySource`] in the entry order of `spec/FORMAT.md` section 8 (each
//! directory's children one run, sorted by name; section 14 for the walk that
//! gives it), checks that order, and writes the entries in groups, their
//! content as file extents into the shared chunk store (small files packed
//! together, holes kept as holes), and at the end one `FILES_DIR` per group
//! holding a directory and the `FILES_INDEX`.
//! It knows no file system: the folder walk is [`FolderSource`]
//! (`fs_source.rs`), one source among others (salvage, converters).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, TryRecvError};

use rayon::prelude::*;
use strata_format::files::{
    self, Captured, Entry, EntryKind, ExtentListRow, Fence, FileDigest, FileExtent, FilesBegin, FilesEnd, GroupDir,
    GroupHead, GroupRow, Locator, TreeCheck, DIGEST_LEN, NO_PARENT,
};
use strata_format::RecordType;

use crate::archive::{ArchiveWriter, SectionState, SectionTables};
use crate::chunker::{prepare_chunk, PreparedChunk};
use crate::file_cuts::ContentCutter;
use crate::fs_source::{FolderSource, TreeOptions};
use crate::store::{ChunkLocation, ChunkTally};
use crate::{FileCuts, FilesCache};
use crate::{Progress, WriteError};

/// One entry an [`EntrySource`] gives [`ArchiveWriter::add_tree_from`].
#[derive(Debug)]
pub struct SourceEntry {
    /// The entry as it is to be written; for a regular file, `size` is its length
    /// (holes included) and `digest` and `extents` are recomputed.
    pub entry: Entry,
    /// Its path in the tree, for messages.
    pub path: Vec<u8>,
    /// A regular file's data ranges, in order; the gaps between them are holes.
    pub data_ranges: Vec<(u64, u64)>,
}

impl SourceEntry {
    /// An entry with no data ranges (for a regular file: all of it a hole
    /// unless `data_ranges` is set).
    pub fn new(entry: Entry, path: Vec<u8>) -> SourceEntry {
        SourceEntry { entry, path, data_ranges: Vec::new() }
    }
}

/// The content of a regular file unchanged since the parent archive of an
/// incremental one (`spec/FORMAT.md` 15.5): its extents are referenced
/// again, nothing of the file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReusedContent {
    /// The file's length.
    pub size: u64,
    /// Its digest, as the parent recorded it.
    pub digest: [u8; DIGEST_LEN],
    /// Its extents in the parent, their `chunk_ref`s chunks the chain offers
    /// (`entry_id` is replaced by the new entry's).
    pub extents: Vec<FileExtent>,
}

/// A table of the parent that a child's table is stored against
/// (`spec/FORMAT.md` 5.3): its record offset in the parent's file and its
/// decoded body.
#[derive(Clone, Debug)]
pub struct TablePrefix {
    /// Record offset of the parent's record.
    pub record: u64,
    /// The record's body, decoded.
    pub body: Vec<u8>,
}

/// The tables of the parent's file-tree section of the same name, which the
/// reference writer stores a child's `FILES_ENTRIES` and `FILES_DIR` records
/// against (`spec/FORMAT.md` 5.3, 15.5). Read one record at a time, as the
/// child's groups are written, so memory does not grow with the tree.
///
/// ```
/// use strata_format::RecordType;
/// use strata_writer::{ParentTables, TablePrefix};
/// /// A parent with one group, at offset 4096.
/// struct OneGroup(Vec<u8>);
/// impl ParentTables for OneGroup {
///     fn table(&self, record_type: RecordType, _first_id: u64) -> Option<TablePrefix> {
///         (record_type == RecordType::FilesEntries).then(|| TablePrefix { record: 4096, body: self.0.clone() })
///     }
/// }
/// let parent = OneGroup(vec![1, 2, 3]);
/// assert!(parent.table(RecordType::FilesDir, 0).is_none());
/// ```
pub trait ParentTables: Send + Sync {
    /// The parent's record of `record_type` (`FILES_ENTRIES` or `FILES_DIR`)
    /// for the child's group that starts at entry `first_id`: the parent's
    /// group that holds that id, or its `FILES_DIR`. `None` when there is
    /// none or it cannot be read (the child's record is then stored whole).
    fn table(&self, record_type: RecordType, first_id: u64) -> Option<TablePrefix>;
}

/// Where a file-tree section's entries come from: a folder ([`FolderSource`],
/// behind [`ArchiveWriter::add_tree`]) or a tool's own data (salvage, a tar
/// converter). The writer knows no file system; it encodes what it is given.
///
/// Entries are numbered from 0 in order, in the entry order of
/// `spec/FORMAT.md` section 8: every parent (and hard link target) before
/// the entries that name it, each directory's children one run in
/// strictly increasing bytewise name order.
///
/// For each regular file, after [`next_entry`](Self::next_entry) gives it,
/// the writer first asks [`reused_content`](Self::reused_content); if there is
/// none it reads the file's data ranges through
/// [`read_content`](Self::read_content) and then calls
/// [`content_read`](Self::content_read). After every call it collects
/// [`take_warnings`](Self::take_warnings) into the [`TreeSummary`].
pub trait EntrySource {
    /// The next entry, or `None` after the last. An error ends the section.
    fn next_entry(&mut self) -> io::Result<Option<SourceEntry>>;
    /// Reads the current entry's content at `offset` into `buf`; returns the
    /// bytes read (0 at its end). An error keeps the content up to `offset`
    /// and adds a warning.
    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The current regular file's content as already stored in the parent
    /// archive, to reference instead of reading it. `None` (the default)
    /// reads it.
    fn reused_content(&mut self) -> Option<ReusedContent> {
        None
    }
    /// The parent's files by content ([`FilesCache::copy_of`]): a small file
    /// read now whose content one of them holds refers to it rather than
    /// being stored again. `None` (the default) looks for none.
    fn parent_copies(&self) -> Option<std::sync::Arc<FilesCache>> {
        None
    }
    /// The parent's tables of this section ([`ParentTables`]): the child's
    /// groups and directory tables are stored against them. `None` (the
    /// default) stores them whole.
    fn parent_tables(&self) -> Option<std::sync::Arc<dyn ParentTables>> {
        None
    }
    /// Called once the current regular file's content has been read;
    /// `ended_early` says it gave less than its size. Returns
    /// [`EntryFlags`](strata_format::files::EntryFlags) bits to add to its entry (`CHANGED_WHILE_READ` when
    /// the file changed under the reader); the default adds none.
    fn content_read(&mut self, ended_early: bool) -> u8 {
        let _ = ended_early;
        0
    }
    /// The warnings gathered since the last call (entries left out, not
    /// readable, changed while read): the writer adds them to the summary.
    /// The default has none.
    fn take_warnings(&mut self) -> Vec<TreeWarning> {
        Vec::new()
    }
}

/// Something that went wrong with one entry; the run goes on and ends non-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeWarning {
    /// Path relative to the tree's root, as bytes.
    pub path: Vec<u8>,
    /// What went wrong, and what the archive holds instead.
    pub message: String,
}

/// What one file-tree section holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSummary {
    /// The section's name.
    pub name: String,
    /// Entries recorded, the root included (`FILES_END.entry_count`).
    pub entries: u64,
    /// Regular files among them (hard links not counted).
    pub files: u64,
    /// Directories among them, the root included.
    pub directories: u64,
    /// Symbolic links among them.
    pub symlinks: u64,
    /// Bytes of file content recorded: the sum of the regular files' sizes,
    /// holes included.
    pub content_bytes: u64,
    /// Chunks this section stored.
    pub new_chunks: u64,
    /// Pieces of content found already stored (by this archive or its chain).
    pub deduplicated_chunks: u64,
    /// Bytes of the chunk records this section wrote.
    pub stored_bytes: u64,
    /// Regular files not read: unchanged since the parent (the files cache).
    pub reused_files: u64,
    /// What went wrong with single entries, in walk order.
    pub warnings: Vec<TreeWarning>,
}

impl ChunkTally for TreeSummary {
    fn add_chunk(&mut self, record_bytes: u64) {
        self.new_chunks += 1;
        self.stored_bytes += record_bytes;
    }
}

/// Per directory, what its group's `FILES_DIR` needs at the end
/// (`spec/FORMAT.md` 8.5): kept for every directory, so the tables cost
/// O(directories + groups) memory, never a copy of every entry's name.
struct DirInfo {
    entry_id: u64,
    /// The group holding the directory's own entry (an index into
    /// [`TreeTables::groups`]).
    group: usize,
    child_count: u64,
    first_child_id: u64,
    /// One per group holding part of the run: the group, the id of the run's
    /// first entry in it and that entry's name.
    fences: Vec<(usize, u64, Vec<u8>)>,
}

/// Per group (`FILES_ENTRIES` record), what `FILES_DIR` and `FILES_INDEX` need.
struct GroupInfo {
    entries_record: u64,
    first_id: u64,
    /// Whether it holds a directory entry (and so gets a `FILES_DIR`).
    has_dir: bool,
}

/// Kept from the walk until `finish` writes the tables.
pub(crate) struct TreeTables {
    /// In entry order.
    dirs: Vec<DirInfo>,
    groups: Vec<GroupInfo>,
    /// The parent's tables, which the section's are stored against.
    parent: Option<std::sync::Arc<dyn ParentTables>>,
}

/// The decoded body a group of the reference writer does not pass.
const GROUP_BYTES: usize = 256 << 10;
/// Most extents in one `FILES_EXTENTS` record of the reference writer.
const RECORD_EXTENTS: usize = 4096;

/// The read-ahead ([`crate::WriterOptions::batch_bytes`]) is cut into this
/// many batches: one fills while the others are queued for the pool. Many
/// small batches (one 4 MiB chunk each by default) keep every worker busy: a
/// worker done with its part of one batch finds the next. Measured on the
/// corpus tree, 2 cores, interleaved runs, medians of 9: 8 batches 2.44 s,
/// 4 batches 2.58 s.
const BATCHES_IN_FLIGHT: usize = 8;

/// Most items in the write queue: bounds the groups held behind a batch
/// still being compressed.
const MAX_QUEUED: usize = 64;

/// Where an extent's bytes are before the batch is written.
#[derive(Clone, Copy)]
enum Loc {
    /// The n-th raw chunk of the batch.
    Raw(usize),
    /// A chunk already written.
    Stored(u64),
    /// A small file's copy packed in an earlier batch that is queued and not
    /// written yet: where it went is known once that batch is written, which
    /// is before this one.
    Queued([u8; 32]),
}

/// Where the bytes of a small file (by their BLAKE3) went.
#[derive(Clone, Copy)]
enum SmallPlace {
    /// Packed in a batch handed to the pool and not written yet.
    Queued,
    /// Written: its `chunk_ref` and `chunk_offset`.
    Written(u64, u32),
}

/// A batch handed to the pool: its chunks are being compressed while the
/// walk reads on; it is written in turn.
struct QueuedBatch {
    extents: Vec<(FileExtent, Loc)>,
    packed_small: Vec<(usize, [u8; 32])>,
    raw_bytes: usize,
    /// The batch's chunks, compressed, in the order of its raw chunks.
    prepared: Receiver<Vec<PreparedChunk>>,
}

/// What the walk has finished and the output has not taken yet, in the
/// order of the archive: batches and the groups they precede.
enum Queued {
    Batch(QueuedBatch),
    Group(Group),
}

/// Content read and not written yet: the chunks and extents of the next
/// `FILES_EXTENTS` record.
#[derive(Default)]
struct Batch {
    raw_chunks: Vec<Vec<u8>>,
    raw_bytes: usize,
    /// The raw chunk small files are being packed into, if any.
    open_pack: Option<usize>,
    extents: Vec<(FileExtent, Loc)>,
    /// Small files packed in this batch, by index into `extents`, with the
    /// BLAKE3 of their bytes: once the batch is written, later copies refer to
    /// them (the entry's 16-byte digest is not a deduplication key).
    packed_small: Vec<(usize, [u8; 32])>,
}

/// The group being filled: its entries (each complete, its content already
/// in the batch or queued) and how many `FILES_EXTENTS` records (batches)
/// were queued for them.
#[derive(Default)]
struct Group {
    entries: Vec<Entry>,
    /// Bytes of the entries' rows, names and strings.
    entry_bytes: usize,
    /// Rows its extent list will have: one per batch queued since the
    /// previous group.
    batches: usize,
    /// The sum of the entries' `extent_count`.
    extent_count: u64,
}

/// The state of one `add_tree` call.
struct Walk<'a> {
    section_id: u32,
    begin_offset: u64,
    chunk_size: usize,
    /// Content-defined cuts of large files, unless they are cut in windows.
    cutter: Option<ContentCutter>,
    level: i32,
    /// Raw bytes that end a batch.
    batch_bytes: usize,
    /// Raw bytes of queued batches beyond which the walk waits for the pool.
    queue_bytes: usize,
    /// Most entries in a group ([`crate::WriterOptions::group_entries`]).
    group_entries: usize,
    captured: u64,
    next_id: u64,
    /// BLAKE3 of small files in batches handed on, to where they are.
    small_files: HashMap<[u8; 32], SmallPlace>,
    /// The parent's files by content ([`EntrySource::parent_copies`]).
    parent_copies: Option<std::sync::Arc<FilesCache>>,
    batch: Batch,
    group: Group,
    /// Groups handed to the queue: the index of the group being filled.
    groups_queued: usize,
    /// Batches and groups not written yet, in archive order.
    queue: VecDeque<Queued>,
    /// Raw bytes of the batches in `queue`.
    queued_bytes: usize,
    /// The extent-list rows of the batches written since the last group
    /// was: the next group's list.
    written_rows: Vec<ExtentListRow>,
    /// Extents announced so far (pushed into a batch): the next extent's index.
    extents_total: u64,
    /// Extents in `FILES_EXTENTS` records written so far: the next record's
    /// `first_index`.
    extents_written: u64,
    /// The `extent_base` of the group being filled.
    extent_base: u64,
    /// The directory whose run is being recorded (`NO_PARENT` before the
    /// first) and its index in `tables.dirs`.
    run_parent: u64,
    run_dir: usize,
    /// The rules between the entries from a source.
    check: TreeCheck,
    tables: TreeTables,
    summary: TreeSummary,
    progress: &'a dyn Progress,
}

impl<W: Write> ArchiveWriter<W> {
    /// Adds a file-tree section named `name` holding everything under `root`:
    /// a thin adapter over [`add_tree_from`](Self::add_tree_from) with a
    /// [`FolderSource`]. Entries that cannot be read are recorded with a
    /// warning in the summary.
    ///
    /// The walk gives the entries in the order of `spec/FORMAT.md` section 8
    /// (section 14): it lists a directory, sorts its children bytewise,
    /// gives the whole run (the files with their content), then descends
    /// into the run's directories in order, depth first.
    pub fn add_tree(
        &mut self,
        name: &str,
        root: &Path,
        options: &TreeOptions,
        progress: &dyn Progress,
    ) -> Result<TreeSummary, WriteError> {
        let mut source = FolderSource::new(root, options)?;
        self.add_tree_from(name, options.capture & Captured::KNOWN, &mut source, progress)
    }

    /// Adds a file-tree section named `name` holding the entries `source` gives,
    /// as they are (salvage rebuilds a tree this way). `captured` is the
    /// section's `Captured` bits. Regular files get their size, digest and
    /// extents from the content read.
    ///
    /// The source gives the entries in the order of `spec/FORMAT.md` section
    /// 8: each directory's children one run, consecutive, in strictly
    /// increasing bytewise name order, after the directory's own entry. An
    /// entry that breaks it is refused with [`WriteError::Invalid`] (the
    /// writer does not sort: that would hold the whole tree).
    pub fn add_tree_from(
        &mut self,
        name: &str,
        captured: u64,
        source: &mut dyn EntrySource,
        progress: &dyn Progress,
    ) -> Result<TreeSummary, WriteError> {
        let mut walk = self.begin_tree(name, captured, progress)?;
        walk.parent_copies = source.parent_copies();
        walk.tables.parent = source.parent_tables();
        let failed = |e| WriteError::Source { what: format!("tree {name:?}"), offset: 0, source: e };
        loop {
            let next = source.next_entry().map_err(failed);
            walk.summary.warnings.append(&mut source.take_warnings());
            let Some(SourceEntry { mut entry, path, data_ranges }) = next? else { break };
            let id = walk.next_id;
            if entry.kind == EntryKind::File {
                // Recomputed from the content read.
                entry.extent_count = 0;
            }
            // The rules of `spec/FORMAT.md` section 8, in their one home: the
            // ids are the writer's own, the rest format's.
            let invalid = if entry.entry_id != id {
                Some(format!("entry_id {}, expected {id}", entry.entry_id))
            } else {
                let between = walk.check.push(&entry).into_iter().next();
                between.or_else(|| entry.check(captured).err()).map(|e| e.detail)
            };
            if let Some(detail) = invalid {
                return Err(WriteError::Invalid {
                    what: "tree entry",
                    detail: format!("\"{}\": {detail}", strata_format::escaped(&path)),
                });
            }
            if captured & Captured::IDENTITY == 0 {
                entry.ino = 0;
                entry.dev = (0, 0);
            }
            walk.next_id += 1;
            match entry.kind {
                EntryKind::File => {
                    walk.summary.files += 1;
                    entry.extents.clear();
                    if let Some(reused) = source.reused_content() {
                        walk.summary.warnings.append(&mut source.take_warnings());
                        walk.take_over(self, entry, reused)?;
                        continue;
                    }
                    let size = data_ranges.last().map_or(0, |r| r.1).max(entry.size);
                    walk.reserve(self, &entry)?;
                    let ended_early =
                        walk.store_content(self, &path, &mut entry, size, data_ranges, &mut |buf, at| {
                            source.read_content(buf, at)
                        })?;
                    entry.flags |= source.content_read(ended_early);
                    walk.summary.warnings.append(&mut source.take_warnings());
                    walk.add_entry(self, entry)?;
                }
                kind => {
                    match kind {
                        EntryKind::Directory => walk.summary.directories += 1,
                        EntryKind::Symlink => walk.summary.symlinks += 1,
                        _ => {}
                    }
                    walk.add_entry(self, entry)?;
                }
            }
        }
        if walk.next_id == 0 {
            return Err(WriteError::Invalid { what: "tree", detail: format!("{name:?}: no root entry") });
        }
        self.end_tree(walk)
    }

    /// Starts a file-tree section: its `FILES_BEGIN` and the walk's state.
    fn begin_tree<'a>(
        &mut self,
        name: &str,
        captured: u64,
        progress: &'a dyn Progress,
    ) -> Result<Walk<'a>, WriteError> {
        let section_id = self.begin_section(name)?;
        let captured = captured & Captured::KNOWN;
        let begin =
            FilesBegin { section_id, chunk_size: self.options.chunk_size, captured, name: name.as_bytes().to_vec() };
        begin.validate()?;
        let begin_offset = self.write_record(RecordType::FilesBegin, &[&begin.to_bytes()])?;
        Ok(Walk {
            section_id,
            begin_offset,
            chunk_size: self.options.chunk_size as usize,
            cutter: (self.options.file_cuts == FileCuts::ContentDefined)
                .then(|| ContentCutter::new(self.options.chunk_size as usize)),
            level: self.options.level,
            batch_bytes: (self.options.batch_bytes / BATCHES_IN_FLIGHT).max(1),
            queue_bytes: self.options.batch_bytes - self.options.batch_bytes / BATCHES_IN_FLIGHT,
            group_entries: self.options.group_entries.clamp(1, files::MAX_GROUP_ENTRIES as usize),
            captured,
            next_id: 0,
            small_files: HashMap::new(),
            parent_copies: None,
            batch: Batch::default(),
            group: Group::default(),
            groups_queued: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            written_rows: Vec::new(),
            extents_total: 0,
            extents_written: 0,
            extent_base: 0,
            run_parent: NO_PARENT,
            run_dir: 0,
            check: TreeCheck::new(),
            tables: TreeTables { dirs: Vec::new(), groups: Vec::new(), parent: None },
            summary: TreeSummary { name: name.to_string(), ..TreeSummary::default() },
            progress,
        })
    }

    /// Ends a file-tree section: the last group and its `FILES_END`.
    fn end_tree(&mut self, mut walk: Walk<'_>) -> Result<TreeSummary, WriteError> {
        walk.end_group(self)?;
        walk.write_queued(self, true)?;
        debug_assert!(walk.queue.is_empty() && walk.written_rows.is_empty(), "every batch precedes its group");
        let end = FilesEnd {
            section_id: walk.section_id,
            reserved: 0,
            entry_count: walk.next_id,
            file_count: walk.summary.files,
            directory_count: walk.summary.directories,
            content_bytes: walk.summary.content_bytes,
            chunk_count: walk.summary.new_chunks,
            chunk_bytes: walk.summary.stored_bytes,
            begin_offset: walk.begin_offset,
            extent_count: walk.extents_written,
        };
        let end_offset = self.write_record(RecordType::FilesEnd, &[&end.encode()])?;
        walk.summary.entries = walk.next_id;
        self.sections.push(SectionState {
            begin_offset: walk.begin_offset,
            end_offset,
            tables: SectionTables::Tree(walk.tables),
        });
        self.summary.trees.push(walk.summary.clone());
        Ok(walk.summary)
    }

    /// Writes one `FILES_DIR` per group holding a directory, last group
    /// first (so every fence's `dir_record` points to a table already
    /// written, or to the one being written), then the `FILES_INDEX`; returns
    /// the index's offset.
    pub(crate) fn write_tree_tables(&mut self, section_id: u32, tables: TreeTables) -> Result<u64, WriteError> {
        let TreeTables { dirs, groups, parent } = tables;
        let mut dir_records = vec![0u64; groups.len()];
        // `dirs` is in entry order, so in group order: each group's
        // directories are one stretch of it.
        let mut end = dirs.len();
        for g in (0..groups.len()).rev() {
            if !groups[g].has_dir {
                continue;
            }
            let start = dirs[..end].partition_point(|d| d.group < g);
            let own = self.position;
            let mut locators = Vec::with_capacity(end - start);
            let mut fences = Vec::new();
            for dir in &dirs[start..end] {
                locators.push(Locator {
                    entry_id: dir.entry_id,
                    child_count: dir.child_count,
                    first_child_id: dir.first_child_id,
                    first_fence: fences.len() as u64,
                });
                for (group, first_child_id, name) in &dir.fences {
                    let dir_record = if *group == g { own } else { dir_records[*group] };
                    debug_assert!(*group >= g, "a run comes after its directory");
                    let fence = Fence {
                        entries_record: groups[*group].entries_record,
                        dir_record: if groups[*group].has_dir { dir_record } else { 0 },
                        first_child_id: *first_child_id,
                        name_length: name.len() as u8,
                    };
                    fences.push((fence, name.clone()));
                }
            }
            let table = GroupDir { section_id, entries_record: groups[g].entries_record, locators, fences };
            let prefix = parent.as_ref().and_then(|p| p.table(RecordType::FilesDir, groups[g].first_id));
            let offset = self.write_table(RecordType::FilesDir, &table.encode(), prefix.as_ref())?;
            debug_assert_eq!(offset, own);
            dir_records[g] = offset;
            end = start;
        }
        let rows: Vec<GroupRow> = groups
            .iter()
            .zip(&dir_records)
            .map(|(group, &dir_record)| GroupRow {
                entries_record: group.entries_record,
                dir_record,
                first_id: group.first_id,
            })
            .collect();
        self.write_record(RecordType::FilesIndex, &[&files::encode_files_index(section_id, &rows)])
    }
}
impl Walk<'_> {
    fn warn(&mut self, relative: &[u8], message: impl Into<String>) {
        self.summary.warnings.push(TreeWarning { path: relative.to_vec(), message: message.into() });
    }

    /// Completes a regular file's entry with the content of the parent's
    /// unchanged file (`spec/FORMAT.md` 15.5): its digest, and its extents
    /// announced again in this archive's `FILES_EXTENTS` with the parent's
    /// chunks as references. Nothing of the file is read.
    fn take_over<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        mut entry: Entry,
        cached: ReusedContent,
    ) -> Result<(), WriteError> {
        self.reserve(writer, &entry)?;
        entry.size = cached.size;
        entry.digest = cached.digest;
        entry.extent_count = cached.extents.len() as u64;
        for extent in cached.extents {
            if !writer.note_reference(extent.chunk_ref) {
                return Err(WriteError::Invalid {
                    what: "files cache",
                    detail: format!("a cached extent refers to {}, a chunk the chain does not offer", extent.chunk_ref),
                });
            }
            self.push_extent(writer, FileExtent { entry_id: entry.entry_id, ..extent }, Loc::Stored(extent.chunk_ref))?;
        }
        self.summary.content_bytes += cached.size;
        self.summary.reused_files += 1;
        self.add_entry(writer, entry)
    }

    /// Reads the `ranges` of a `size`-byte file through `read` into the batch,
    /// cut into pieces (section 14: small files packed whole, large ones cut
    /// where their content says or in windows aligned to file offset 0, and
    /// always at the edges of holes), and fills in the entry's size, digest
    /// and `extent_count`. Returns whether the content ended early (kept as
    /// read). The caller has reserved the entry's place in the group
    /// ([`Walk::reserve`]).
    fn store_content<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        relative: &[u8],
        entry: &mut Entry,
        size: u64,
        ranges: Vec<(u64, u64)>,
        read: &mut dyn FnMut(&mut [u8], u64) -> io::Result<usize>,
    ) -> Result<bool, WriteError> {
        let mut digest = FileDigest::new();
        let mut count = 0u64;
        let mut covered = 0u64;
        let mut shrank = false;
        let small = size < (self.chunk_size as u64).min(1 << 20) / 2 && ranges == [(0, size)];
        let cutter = if small { None } else { self.cutter };
        'ranges: for (start, end) in ranges {
            let mut at = start;
            // Bytes read from `at` on and not stored yet: what follows a
            // content-defined cut is kept for the next piece, not read again.
            let mut pending = Vec::new();
            // The source gave fewer bytes than asked: its content ends at
            // `at` + `pending.len()`.
            let mut short = false;
            while at < end {
                let want = match cutter {
                    Some(cutter) => (end - at).min(cutter.max() as u64) as usize,
                    None => (end.min((at / self.chunk_size as u64 + 1) * self.chunk_size as u64) - at) as usize,
                };
                if pending.len() < want && !short {
                    let have = pending.len();
                    pending.resize(want, 0);
                    match read(&mut pending[have..], at + have as u64) {
                        Ok(got) => {
                            pending.truncate(have + got);
                            short = have + got < want;
                        }
                        Err(e) => {
                            let failed_at = at + have as u64;
                            self.warn(
                                relative,
                                format!("content read failed at byte {failed_at}: {e}; kept up to there"),
                            );
                            pending.truncate(have);
                            short = true;
                        }
                    }
                }
                if pending.is_empty() {
                    shrank = true;
                    break 'ranges;
                }
                let take = cutter.map_or(pending.len(), |cutter| cutter.first_piece(&pending));
                // The piece keeps the buffer it was read into; only the bytes
                // after the cut are copied, to the next piece's buffer.
                let rest = if take == pending.len() { Vec::new() } else { pending[take..].to_vec() };
                let mut buf = std::mem::replace(&mut pending, rest);
                if buf.len() != take {
                    buf.truncate(take);
                    // Memory in flight is counted by length: give back the tail.
                    buf.shrink_to_fit();
                }
                let got = buf.len();
                // A small file is hashed once: the same BLAKE3 is its range's
                // identity in the digest and its key for deduplication.
                let small_hash = small.then(|| *blake3::hash(&buf).as_bytes());
                match &small_hash {
                    Some(hash) if digest.hashed_range(at, got as u64, hash) => {}
                    _ => digest.data(at, &buf),
                }
                covered = at + got as u64;
                let extent = FileExtent {
                    entry_id: entry.entry_id,
                    file_offset: at,
                    length: got as u64,
                    chunk_ref: 0,
                    chunk_offset: 0,
                };
                let copy = small_hash.and_then(|hash| self.parent_copy(writer, &hash, &digest, got as u64, size));
                let (chunk_offset, loc, packed) = if let Some(copy) = copy {
                    self.summary.reused_files += 1;
                    (copy.chunk_offset, Loc::Stored(copy.chunk_ref), None)
                } else if let Some(hash) = small_hash {
                    self.pack(&buf, hash)
                } else {
                    self.batch.raw_chunks.push(buf);
                    self.batch.raw_bytes += got;
                    (0, Loc::Raw(self.batch.raw_chunks.len() - 1), None)
                };
                if let Some(hash) = packed {
                    self.batch.packed_small.push((self.batch.extents.len(), hash));
                }
                count += 1;
                self.progress.advance(got as u64);
                self.push_extent(writer, FileExtent { chunk_offset, ..extent }, loc)?;
                at += got as u64;
                if short && pending.is_empty() {
                    shrank = true;
                    break 'ranges;
                }
            }
        }
        let final_size = if shrank { covered } else { size };
        entry.size = final_size;
        entry.digest = digest.finish(final_size);
        entry.extent_count = count;
        self.summary.content_bytes += final_size;
        Ok(shrank)
    }

    /// Adds an extent to the batch, writing the batch when it is full: enough
    /// data read ahead, or as many extents as the writer puts in one
    /// `FILES_EXTENTS` record.
    fn push_extent<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        extent: FileExtent,
        loc: Loc,
    ) -> Result<(), WriteError> {
        self.batch.extents.push((extent, loc));
        self.extents_total += 1;
        if self.batch.raw_bytes >= self.batch_bytes || self.batch.extents.len() >= RECORD_EXTENTS {
            self.submit(writer)?;
        }
        Ok(())
    }

    /// The parent's extent holding the same content as a small file read whole
    /// (`got` bytes of `size`, whose BLAKE3 is `hash`), unless this archive
    /// holds a copy already (packing finds that one) or the chain does not
    /// offer the parent's chunk. The whole file is compared through its
    /// digest (`digest`, which holds the file's one range), the one the
    /// parent recorded for its copy.
    fn parent_copy<W: Write>(
        &self,
        writer: &mut ArchiveWriter<W>,
        hash: &[u8; 32],
        digest: &FileDigest,
        got: u64,
        size: u64,
    ) -> Option<FileExtent> {
        let copies = self.parent_copies.as_ref()?;
        if got != size || self.small_files.contains_key(hash) {
            return None;
        }
        let copy = copies.copy_of(size, &digest.clone().finish(size))?;
        writer.note_reference(copy.chunk_ref).then_some(copy)
    }

    /// The largest pack of small files: reading one small file decodes its whole
    /// pack, so packs stay at 1 MiB even when large files use bigger windows.
    fn pack_size(&self) -> usize {
        self.chunk_size.min(1 << 20)
    }

    /// Appends a small file to the open pack chunk, starting a new one when full.
    /// Returns where the bytes are, and their BLAKE3 when they were packed
    /// rather than found.
    fn pack(&mut self, bytes: &[u8], hash: [u8; 32]) -> (u32, Loc, Option<[u8; 32]>) {
        match self.small_files.get(&hash) {
            Some(&SmallPlace::Written(chunk_ref, offset)) => {
                self.summary.deduplicated_chunks += 1;
                return (offset, Loc::Stored(chunk_ref), None);
            }
            Some(SmallPlace::Queued) => {
                self.summary.deduplicated_chunks += 1;
                return (0, Loc::Queued(hash), None);
            }
            None => {}
        }
        let index = match self.batch.open_pack {
            Some(i) if self.batch.raw_chunks[i].len() + bytes.len() <= self.pack_size() => i,
            _ => {
                self.batch.raw_chunks.push(Vec::with_capacity(self.pack_size()));
                self.batch.open_pack = Some(self.batch.raw_chunks.len() - 1);
                self.batch.raw_chunks.len() - 1
            }
        };
        let pack = &mut self.batch.raw_chunks[index];
        let offset = pack.len() as u32;
        pack.extend_from_slice(bytes);
        self.batch.raw_bytes += bytes.len();
        (offset, Loc::Raw(index), Some(hash))
    }

    /// Ends the group being filled when `entry` would not fit in it: at
    /// `group_entries` entries (1,024 by default), or when its decoded body would pass
    /// [`GROUP_BYTES`] (counting one more extent-list row for the entry's
    /// content). Called before a file's content is read, so that its
    /// extents are written for the group that holds it.
    fn reserve<W: Write>(&mut self, writer: &mut ArchiveWriter<W>, entry: &Entry) -> Result<(), WriteError> {
        let group = &self.group;
        if group.entries.is_empty() {
            return Ok(());
        }
        let body = GroupHead::SIZE
            + ExtentListRow::SIZE * (group.batches + 1)
            + group.entry_bytes
            + entry.group_len(self.captured);
        if group.entries.len() >= self.group_entries || body > GROUP_BYTES {
            self.end_group(writer)?;
        }
        Ok(())
    }

    /// Adds a finished entry to the group (ending the group first when the
    /// entry does not fit, unless its content is already in it), and keeps
    /// what the directory tables need: the runs, their fences, the
    /// directories.
    fn add_entry<W: Write>(&mut self, writer: &mut ArchiveWriter<W>, entry: Entry) -> Result<(), WriteError> {
        if entry.extent_count == 0 {
            self.reserve(writer, &entry)?;
        }
        let group_index = self.groups_queued;
        if entry.parent_id != NO_PARENT {
            if entry.parent_id != self.run_parent {
                // `TreeCheck` took the parent as an earlier directory, and every
                // directory passes here.
                let index = self.dir_index(entry.parent_id).ok_or_else(|| WriteError::Invalid {
                    what: "tree entry",
                    detail: format!("entry {}: parent {} is not an earlier directory", entry.entry_id, entry.parent_id),
                })?;
                self.run_parent = entry.parent_id;
                self.run_dir = index;
                self.tables.dirs[index].first_child_id = entry.entry_id;
            }
            let dir = &mut self.tables.dirs[self.run_dir];
            if dir.child_count == 0 || self.group.entries.is_empty() {
                dir.fences.push((group_index, entry.entry_id, entry.name.clone()));
            }
            dir.child_count += 1;
        }
        if entry.kind == EntryKind::Directory {
            self.tables.dirs.push(DirInfo {
                entry_id: entry.entry_id,
                group: group_index,
                child_count: 0,
                first_child_id: 0,
                fences: Vec::new(),
            });
        }
        self.group.entry_bytes += entry.group_len(self.captured);
        self.group.extent_count += entry.extent_count;
        self.group.entries.push(entry);
        self.progress.entry();
        if self.group.entries.len() >= self.group_entries {
            self.end_group(writer)?;
        }
        Ok(())
    }

    /// The index in `tables.dirs` of directory `entry_id`, if it is one.
    fn dir_index(&self, entry_id: u64) -> Option<usize> {
        self.tables.dirs.binary_search_by_key(&entry_id, |d| d.entry_id).ok()
    }

    /// Hands the batch to the pool to be compressed and queues it behind
    /// what was queued before; writes what is ready.
    fn submit<W: Write>(&mut self, writer: &mut ArchiveWriter<W>) -> Result<(), WriteError> {
        if self.batch.extents.is_empty() {
            debug_assert!(self.batch.raw_chunks.is_empty());
            return Ok(());
        }
        let Batch { raw_chunks, raw_bytes, open_pack: _, extents, packed_small } = std::mem::take(&mut self.batch);
        // Later batches refer to these small files rather than pack them
        // again, as they would once this batch is written: the archive is the
        // same however far the compression lags behind the walk.
        for &(_, hash) in &packed_small {
            self.small_files.entry(hash).or_insert(SmallPlace::Queued);
        }
        let (sender, prepared) = std::sync::mpsc::sync_channel(1);
        if raw_chunks.is_empty() {
            // The channel holds one message: this send does not wait.
            let _ = sender.send(Vec::new());
        } else {
            let (level, spares, known) = (self.level, writer.spares.clone(), writer.chain_chunks.clone());
            writer.pool.spawn(move || {
                let chunks = raw_chunks.par_iter().map(|raw| prepare_chunk(raw, level, &spares, &known)).collect();
                // No one receives only when the writer stopped on an error.
                let _ = sender.send(chunks);
            });
        }
        self.group.batches += 1;
        self.queued_bytes += raw_bytes;
        self.queue.push_back(Queued::Batch(QueuedBatch { extents, packed_small, raw_bytes, prepared }));
        self.write_queued(writer, false)
    }

    /// Writes the queue's items in order: a group at once (its batches are
    /// written), a batch once the pool has compressed it. Waits for the pool
    /// while `all`, or while the queue holds more than its bound (read-ahead
    /// bytes or items), else stops at the first batch not ready.
    fn write_queued<W: Write>(&mut self, writer: &mut ArchiveWriter<W>, all: bool) -> Result<(), WriteError> {
        loop {
            let wait = all || self.queued_bytes > self.queue_bytes || self.queue.len() > MAX_QUEUED;
            match self.queue.pop_front() {
                None => return Ok(()),
                Some(Queued::Group(group)) => self.write_group(writer, group)?,
                Some(Queued::Batch(batch)) => {
                    let received = if wait {
                        batch.prepared.recv().map_err(|_| TryRecvError::Disconnected)
                    } else {
                        batch.prepared.try_recv()
                    };
                    match received {
                        Ok(prepared) => {
                            self.queued_bytes -= batch.raw_bytes;
                            self.write_batch(writer, batch, prepared)?;
                        }
                        Err(TryRecvError::Empty) => {
                            self.queue.push_front(Queued::Batch(batch));
                            return Ok(());
                        }
                        Err(TryRecvError::Disconnected) => {
                            return Err(WriteError::Invalid {
                                what: "tree writer",
                                detail: "a compression worker stopped before it finished its batch".into(),
                            })
                        }
                    }
                }
            }
        }
    }

    /// Writes a compressed batch: a `FILES_EXTENTS` record and its new
    /// chunks, noted in the next group's extent list.
    fn write_batch<W: Write>(
        &mut self,
        writer: &mut ArchiveWriter<W>,
        batch: QueuedBatch,
        prepared: Vec<PreparedChunk>,
    ) -> Result<(), WriteError> {
        let QueuedBatch { extents, packed_small, .. } = batch;
        let mut new_chunks = Vec::new();
        let mut new_by_hash = HashMap::new();
        let mut raw_locations = Vec::with_capacity(prepared.len());
        for chunk in prepared {
            let (location, deduplicated) = writer.locate_chunk(chunk, &mut new_chunks, &mut new_by_hash);
            self.summary.deduplicated_chunks += u64::from(deduplicated);
            raw_locations.push(location);
        }
        let mut planned = Vec::with_capacity(extents.len());
        for (mut extent, loc) in extents {
            let location = match loc {
                Loc::Stored(offset) => ChunkLocation::Stored(offset),
                Loc::Raw(i) => raw_locations[i],
                Loc::Queued(hash) => {
                    // Its batch was queued before this one, so it is written.
                    let Some(&SmallPlace::Written(chunk_ref, chunk_offset)) = self.small_files.get(&hash) else {
                        return Err(WriteError::Invalid {
                            what: "tree writer",
                            detail: "a small file refers to a copy that was not written before it".into(),
                        });
                    };
                    extent.chunk_offset = chunk_offset;
                    ChunkLocation::Stored(chunk_ref)
                }
            };
            planned.push((extent, location));
        }
        let section_id = self.section_id;
        let first_index = self.extents_written;
        let extents_record = writer.position;
        let resolved: Vec<FileExtent> =
            writer.write_announced(RecordType::FilesExtents, new_chunks, &mut self.summary, |resolve| {
                let extents: Vec<FileExtent> = planned
                    .iter()
                    .map(|(extent, location)| FileExtent { chunk_ref: resolve(location), ..*extent })
                    .collect();
                (files::encode_file_extents(section_id, first_index, &extents), extents)
            })?;
        self.written_rows.push(ExtentListRow { extents_record, first_index });
        self.extents_written += resolved.len() as u64;
        // Small files now have a place: later copies refer to it (the first
        // of several copies in one batch).
        for &(index, hash) in &packed_small {
            let e = resolved[index];
            let place = self.small_files.entry(hash).or_insert(SmallPlace::Queued);
            if let SmallPlace::Queued = place {
                *place = SmallPlace::Written(e.chunk_ref, e.chunk_offset);
            }
        }
        Ok(())
    }

    /// Ends the group being filled: hands on the batch not handed on yet,
    /// then queues the group behind it.
    fn end_group<W: Write>(&mut self, writer: &mut ArchiveWriter<W>) -> Result<(), WriteError> {
        self.submit(writer)?;
        if self.group.entries.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        self.groups_queued += 1;
        self.queue.push_back(Queued::Group(group));
        self.write_queued(writer, false)
    }

    /// Writes a group's `FILES_ENTRIES` record: its batches are written.
    fn write_group<W: Write>(&mut self, writer: &mut ArchiveWriter<W>, group: Group) -> Result<(), WriteError> {
        let list = std::mem::take(&mut self.written_rows);
        debug_assert_eq!(list.len(), group.batches, "a group's batches are written before it");
        let first_id = group.entries[0].entry_id;
        let body =
            files::encode_group(self.section_id, first_id, self.captured, self.extent_base, &list, &group.entries);
        let prefix = self.tables.parent.as_ref().and_then(|p| p.table(RecordType::FilesEntries, first_id));
        let entries_record = writer.write_table(RecordType::FilesEntries, &body, prefix.as_ref())?;
        let has_dir = group.entries.iter().any(|e| e.kind == EntryKind::Directory);
        self.tables.groups.push(GroupInfo { entries_record, first_id, has_dir });
        self.extent_base += group.extent_count;
        debug_assert_eq!(self.extent_base, self.extents_written, "a group's extents are written before it");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::fs_source::timespec;
    use strata_format::files::Timestamp;

    /// Every time a file system gives is recorded as it is: `fstat`'s
    /// nanoseconds, out of range or not, carry into the seconds.
    #[test]
    fn times_are_recorded_exactly_whatever_the_year() {
        for secs in [i64::MIN + 1, -(1 << 31), -1, 0, 1, 9_223_372_037, 15_021_158_400, i64::MAX - 1] {
            for nsec in [0i64, 1, 500_000_000, 999_999_999] {
                assert_eq!(timespec(secs, nsec), Timestamp { secs, nsec: nsec as u32 });
            }
        }
        assert_eq!(timespec(0, -500_000_000), Timestamp { secs: -1, nsec: 500_000_000 });
        assert_eq!(timespec(5, 2_000_000_001), Timestamp { secs: 7, nsec: 1 });
        assert_eq!(timespec(i64::MAX, 1_000_000_000), Timestamp { secs: i64::MAX, nsec: 0 });
    }

    /// The count ahead of a walk gives what the walk then records and reads:
    /// exclusions, a cache folder, a hard link, a sparse file and a symbolic
    /// link included.
    /// A tree of every hard case the walk meets: exclusions, a cache folder,
    /// a hard link, a sparse file, a symbolic link, an empty file and folder,
    /// a file larger than a chunk, two files of the same content.
    fn mixed_tree(root: &std::path::Path) {
        for dir in ["a/b", "cache", "skip", "empty-dir"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("a/one"), vec![1u8; 5000]).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(root.join("a/b/two"), &big).unwrap();
        std::fs::hard_link(root.join("a/b/two"), root.join("a/two-again")).unwrap();
        std::fs::write(root.join("a/junk.tmp"), vec![3u8; 7000]).unwrap();
        std::fs::write(root.join("a/empty"), b"").unwrap();
        std::fs::write(root.join("a/same-as-one"), vec![1u8; 5000]).unwrap();
        std::fs::write(root.join("skip/inside"), b"left out by path").unwrap();
        std::fs::write(root.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        std::fs::write(root.join("cache/blob"), vec![4u8; 9000]).unwrap();
        let sparse = std::fs::File::create(root.join("sparse")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&sparse, &[5u8; 4096], 1 << 20).unwrap();
        drop(sparse);
        std::os::unix::fs::symlink("a/one", root.join("link")).unwrap();
    }

    #[test]
    fn the_count_agrees_with_the_walk() {
        use std::sync::atomic::{AtomicU64, Ordering};
        struct Tally(AtomicU64, AtomicU64);
        impl crate::Progress for Tally {
            fn advance(&self, bytes: u64) {
                self.0.fetch_add(bytes, Ordering::Relaxed);
            }
            fn entry(&self) {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
        }
        let root = std::env::temp_dir().join(format!("strata-count-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        mixed_tree(&root);
        let options = crate::TreeOptions {
            excludes: vec!["*.tmp".to_string(), "skip/inside".to_string()],
            exclude_caches: true,
            ..crate::TreeOptions::default()
        };
        let counted = crate::count_tree(&root, &options, &|_| true).expect("the count completes");
        let tally = Tally(AtomicU64::new(0), AtomicU64::new(0));
        let mut writer =
            crate::ArchiveWriter::new(Vec::new(), crate::WriterOptions::new([7; 16], 0)).expect("a writer");
        let summary = writer.add_tree("t", &root, &options, &tally).expect("the walk completes");
        assert_eq!(counted.entries, summary.entries);
        assert_eq!(tally.1.load(Ordering::Relaxed), summary.entries, "one call per entry");
        assert_eq!(counted.bytes, tally.0.load(Ordering::Relaxed));
        assert!(crate::count_tree(&root, &options, &|_| false).is_none(), "a count told to stop gives no total");
        std::fs::remove_dir_all(&root).unwrap();
    }
    /// Writes `root` with `threads` threads and plain tables.
    fn write_plain(root: &std::path::Path, threads: usize) -> Vec<u8> {
        let mut options = crate::WriterOptions::new([9; 16], 5);
        options.compress_tables = false;
        options.threads = threads;
        options.chunk_size = 64 << 10;
        let mut writer = crate::ArchiveWriter::new(Vec::new(), options).expect("a writer");
        let summary = writer.add_tree("t", root, &crate::TreeOptions::default(), &crate::NoProgress).expect("walk");
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
        writer.finish().expect("finish").0
    }

    /// The tree's records, checked against the rules of FORMAT.md 8 with the
    /// format crate alone: the entry order, groups and their extent lists,
    /// extents stored once, the per-group FILES_DIR and the FILES_INDEX.
    #[test]
    fn the_tree_is_written_in_runs_with_groups_and_their_tables() {
        use strata_format::files::*;
        use strata_format::record::{RecordHeader, RecordType};
        let root = std::env::temp_dir().join(format!("strata-groups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("b/c/d")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        for i in 0..1500 {
            std::fs::write(root.join(format!("a/f{i:04}")), format!("file {i}")).unwrap();
        }
        std::fs::create_dir_all(root.join("a/sub")).unwrap();
        std::fs::write(root.join("a/sub/x"), vec![7u8; 200_000]).unwrap();
        std::fs::write(root.join("b/c/d/deep"), b"deep").unwrap();
        std::fs::write(root.join("z"), b"zed").unwrap();
        std::fs::hard_link(root.join("z"), root.join("b/link")).unwrap();
        let bytes = write_plain(&root, 1);
        assert_eq!(bytes, write_plain(&root, 3), "the same bytes whatever the thread count");
        std::fs::remove_dir_all(&root).unwrap();

        let mut at = 128usize;
        let mut entries: Vec<Entry> = Vec::new();
        let mut extents: Vec<FileExtent> = Vec::new();
        let mut extent_records: Vec<(u64, u64)> = Vec::new();
        let mut groups: Vec<(u64, EntryGroup)> = Vec::new();
        let mut dirs: Vec<(u64, GroupDir)> = Vec::new();
        let mut index = None;
        let mut end = None;
        while at < bytes.len() {
            let header = RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
            let body = &bytes[at + 32..at + 32 + header.body_length as usize];
            match RecordType::from_code(header.record_type).unwrap() {
                RecordType::FilesExtents => {
                    assert_eq!(header.flags, 0);
                    let parsed = parse_file_extents(body).unwrap();
                    assert_eq!(parsed.head.first_index, extents.len() as u64);
                    assert!(parsed.extents.len() <= 4096);
                    extent_records.push((at as u64, parsed.head.first_index));
                    extents.extend(parsed.extents);
                }
                RecordType::FilesEntries => {
                    let group = parse_group(body).unwrap();
                    assert_eq!(group.head.first_id, entries.len() as u64);
                    assert!(group.head.count as usize <= 1024);
                    assert!(body.len() <= 256 << 10);
                    assert_eq!(group.head.captured, Captured::KNOWN);
                    let base: u64 = entries.iter().map(|e| e.extent_count).sum();
                    assert_eq!(group.head.extent_base, base);
                    let mine: u64 = group.entries.iter().map(|e| e.as_ref().unwrap().extent_count).sum();
                    let listed: Vec<(u64, u64)> = extent_records
                        .iter()
                        .copied()
                        .filter(|&(_, first)| {
                            let next =
                                extent_records.iter().find(|r| r.1 > first).map_or(extents.len() as u64, |r| r.1);
                            first < base + mine && next > base
                        })
                        .collect();
                    let list: Vec<(u64, u64)> =
                        group.extent_list.iter().map(|r| (r.extents_record, r.first_index)).collect();
                    assert_eq!(list, listed);
                    entries.extend(group.entries.iter().map(|e| e.clone().unwrap()));
                    groups.push((at as u64, group));
                }
                RecordType::FilesEnd => end = Some(FilesEnd::decode(body.try_into().unwrap())),
                RecordType::FilesDir => dirs.push((at as u64, GroupDir::parse(body).unwrap())),
                RecordType::FilesIndex => index = Some(parse_files_index(body).unwrap().1),
                _ => {}
            }
            at += 32 + body.len();
        }
        assert!(groups.len() >= 2, "1,500 entries take two groups at least");
        let end = end.unwrap();
        assert_eq!(end.extent_count, extents.len() as u64);
        assert_eq!(end.entry_count, entries.len() as u64);
        // Entry order: runs consecutive, names increasing, the directory first.
        let mut ended = std::collections::HashSet::new();
        let mut previous: Option<&Entry> = None;
        for e in &entries[1..] {
            assert!(entries[e.parent_id as usize].kind == EntryKind::Directory);
            match previous {
                Some(p) if p.parent_id == e.parent_id => assert!(p.name < e.name),
                Some(p) => {
                    ended.insert(p.parent_id);
                    assert!(!ended.contains(&e.parent_id));
                }
                None => {}
            }
            previous = Some(e);
        }
        let names: Vec<&[u8]> = entries.iter().filter(|e| e.parent_id == 0).map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"z"]);
        // The run of the root comes first, then a's, then a/sub's, then b's.
        assert_eq!(entries[4].parent_id, 1);
        let link = entries.iter().find(|e| e.kind == EntryKind::Hardlink).unwrap();
        assert_eq!(entries[link.link_id as usize].name, b"z", "first seen in walk order is the file");
        assert_eq!(entries[link.link_id as usize].ino, link.ino);
        assert!(entries.iter().all(|e| e.ino != 0));
        // Extents stored once, in entry order, counted by their entries.
        let mut next = 0usize;
        for e in &entries {
            let mine = &extents[next..next + e.extent_count as usize];
            assert!(mine.iter().all(|x| x.entry_id == e.entry_id));
            assert_eq!(mine.iter().map(|x| x.length).sum::<u64>(), e.size);
            next += e.extent_count as usize;
        }
        assert_eq!(next, extents.len());
        // FILES_DIR: one per group with a directory, last group first.
        let with_dirs: Vec<u64> = groups
            .iter()
            .filter(|(_, g)| g.entries.iter().any(|e| e.as_ref().unwrap().kind == EntryKind::Directory))
            .map(|(offset, _)| *offset)
            .collect();
        let described: Vec<u64> = dirs.iter().rev().map(|(_, d)| d.entries_record).collect();
        assert_eq!(described, with_dirs);
        let dir_of = |group: u64| dirs.iter().find(|(_, d)| d.entries_record == group).map_or(0, |(o, _)| *o);
        let group_of = |id: u64| groups.iter().rfind(|(_, g)| g.head.first_id <= id).unwrap();
        for (_, table) in &dirs {
            let (_, group) = groups.iter().find(|(o, _)| *o == table.entries_record).unwrap();
            let own: Vec<u64> = group
                .entries
                .iter()
                .map(|e| e.as_ref().unwrap())
                .filter(|e| e.kind == EntryKind::Directory)
                .map(|e| e.entry_id)
                .collect();
            assert_eq!(table.locators.iter().map(|l| l.entry_id).collect::<Vec<_>>(), own);
            for (i, locator) in table.locators.iter().enumerate() {
                let run: Vec<&Entry> =
                    entries.iter().filter(|e| e.parent_id == locator.entry_id && e.entry_id > 0).collect();
                assert_eq!(locator.child_count, run.len() as u64);
                assert_eq!(locator.first_child_id, run.first().map_or(0, |e| e.entry_id));
                let mut expected = Vec::new();
                for e in &run {
                    let (offset, g) = group_of(e.entry_id);
                    if expected.last().map(|&(o, _, _, _)| o) != Some(*offset) {
                        expected.push((*offset, dir_of(*offset), e.entry_id, e.name.clone()));
                    }
                    let _ = g;
                }
                let fences: Vec<(u64, u64, u64, Vec<u8>)> = table
                    .fences_of(i)
                    .unwrap()
                    .iter()
                    .map(|(f, name)| (f.entries_record, f.dir_record, f.first_child_id, name.clone()))
                    .collect();
                assert_eq!(fences, expected);
            }
        }
        let rows: Vec<(u64, u64, u64)> =
            index.unwrap().iter().map(|r| (r.entries_record, r.dir_record, r.first_id)).collect();
        let expected: Vec<(u64, u64, u64)> = groups.iter().map(|(o, g)| (*o, dir_of(*o), g.head.first_id)).collect();
        assert_eq!(rows, expected);
    }
    /// Sets a fixed mode and fixed times on everything under `root`, deepest
    /// first, so an archive of it depends on its shape and content alone.
    fn pin_tree(root: &std::path::Path) {
        use rustix::fs::{AtFlags, Timespec, Timestamps};
        fn all(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                    all(&path, out);
                }
                out.push(path);
            }
        }
        let mut paths = Vec::new();
        all(root, &mut paths);
        paths.push(root.to_path_buf());
        for (i, path) in paths.iter().enumerate() {
            let meta = std::fs::symlink_metadata(path).unwrap();
            if !meta.file_type().is_symlink() {
                let mode = if meta.is_dir() { 0o755 } else { 0o640 };
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            }
            let at = Timespec { tv_sec: 1_600_000_000 + i as i64, tv_nsec: 250 };
            let times = Timestamps { last_access: at, last_modification: at };
            rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }

    /// Archives of generated trees, with fixed options, hash to what the
    /// walk wrote before it became an `EntrySource` (issue 13): the folder
    /// source must give the same entries, content and warnings in the same
    /// order. The hashes were computed by the walk inside `add_tree`.
    #[test]
    fn archives_of_fixed_trees_keep_their_bytes() {
        use strata_format::files::Captured;
        let root = std::env::temp_dir().join(format!("strata-golden-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write_cut = |root: &std::path::Path,
                         tree: &crate::TreeOptions,
                         threads: usize,
                         group_entries: usize,
                         cuts: crate::FileCuts| {
            let mut options = crate::WriterOptions::new([3; 16], 1_700_000_000_000_000_000);
            options.threads = threads;
            options.chunk_size = 64 << 10;
            options.group_entries = group_entries;
            // The hashes were taken before content-defined cuts: windows
            // keep the layout they pin.
            options.file_cuts = cuts;
            let mut writer = crate::ArchiveWriter::new(Vec::new(), options).expect("a writer");
            let summary = writer.add_tree("t", root, tree, &crate::NoProgress).expect("walk");
            let warnings: Vec<String> = summary.warnings.iter().map(|w| w.message.clone()).collect();
            (blake3::hash(&writer.finish().expect("finish").0).to_hex().to_string(), summary.entries, warnings)
        };
        let write = |root: &std::path::Path, tree: &crate::TreeOptions, threads: usize, group_entries: usize| {
            write_cut(root, tree, threads, group_entries, crate::FileCuts::Windows)
        };
        let pinned = |extra: crate::TreeOptions| crate::TreeOptions {
            capture: Captured::HOLES,
            fixed_owner: Some((1000, 100)),
            ..extra
        };

        // Mixed: exclusions, a cache folder, a hard link, a sparse file, a
        // symbolic link, an empty file, a file larger than a chunk.
        mixed_tree(&root);
        pin_tree(&root);
        let mixed = pinned(crate::TreeOptions {
            excludes: vec!["*.tmp".to_string(), "skip/inside".to_string()],
            exclude_caches: true,
            ..crate::TreeOptions::default()
        });
        let got = write(&root, &mixed, 1, 1024);
        assert_eq!(got, write(&root, &mixed, 2, 1024), "the thread count changes nothing");
        let cut = write_cut(&root, &mixed, 1, 1024, crate::FileCuts::ContentDefined);
        assert_eq!(cut, write_cut(&root, &mixed, 2, 1024, crate::FileCuts::ContentDefined));
        assert_ne!(cut.0, got.0, "the file larger than a chunk is cut elsewhere");
        assert_eq!(got.0, "ea887b2ad41917cd1aac3ff20d91c27fa35b91a217c8d9a95553d220354f01a6", "mixed tree: {got:?}");
        std::fs::remove_dir_all(&root).unwrap();

        // Wide and deep: many small files in several groups, nested runs.
        for i in 0..40 {
            std::fs::create_dir_all(root.join(format!("d{:02}/e{}/f", i % 7, i % 3))).unwrap();
            std::fs::write(root.join(format!("d{:02}/e{}/f/x{i}", i % 7, i % 3)), format!("deep {i}")).unwrap();
        }
        for i in 0..300 {
            std::fs::write(root.join(format!("d0{}/s{i:03}", i % 5)), vec![(i % 251) as u8; i * 37]).unwrap();
        }
        pin_tree(&root);
        let got = write(&root, &pinned(crate::TreeOptions::default()), 2, 64);
        assert_eq!(got.0, "df414c24c5198dd9a78e7d0dd7d849d2e93d92798050dd503d91282da5529ff3", "wide tree: {got:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Many batches in flight at once: tiny batches of a few small files,
    /// each content repeated at every distance, so later copies refer to
    /// copies whose batch the pool may still be compressing. The archive
    /// is the one the writer gave when it wrote each batch before reading
    /// on (the hash is of commit 3771317's output, its batches cut at the
    /// same 2 KiB), whatever the threads and however the pool lags.
    #[test]
    fn batches_queued_behind_the_walk_give_the_same_archive() {
        let root = std::env::temp_dir().join(format!("strata-queued-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for i in 0..400usize {
            let dir = root.join(format!("r{}", i % 4));
            std::fs::create_dir_all(&dir).unwrap();
            let kind = (i * 7) % 53;
            std::fs::write(dir.join(format!("c{i:03}")), format!("small file {kind}\n").repeat(1 + kind % 9)).unwrap();
        }
        pin_tree(&root);
        let write = |threads: usize| {
            let mut options = crate::WriterOptions::new([4; 16], 1_700_000_000_000_000_000);
            options.threads = threads;
            options.chunk_size = 64 << 10;
            options.group_entries = 32;
            options.batch_bytes = BATCH_CUT * super::BATCHES_IN_FLIGHT;
            let mut writer = crate::ArchiveWriter::new(Vec::new(), options).expect("a writer");
            let tree =
                crate::TreeOptions { capture: Captured::HOLES, fixed_owner: Some((1000, 100)), ..Default::default() };
            let summary = writer.add_tree("t", &root, &tree, &crate::NoProgress).expect("walk");
            (blake3::hash(&writer.finish().expect("finish").0).to_hex().to_string(), summary.deduplicated_chunks)
        };
        const BATCH_CUT: usize = 2 << 10;
        use strata_format::files::Captured;
        let got = write(1);
        // 53 contents among 400 files: every later copy is found.
        assert_eq!(got.1, 400 - 53, "copies referred to, not stored again");
        for threads in [1, 2, 3] {
            for _ in 0..3 {
                assert_eq!(write(threads), got, "{threads} threads");
            }
        }
        assert_eq!(got.0, "2827a6fd22425058f37592598899f6a8cb2cf151547e3017a595d1ca3aa8e339", "{got:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A source's own warnings reach the summary in order, and its
    /// post-read hook is called once per file read, with whether the
    /// content ended early.
    #[test]
    fn a_source_reports_warnings_and_is_told_when_a_file_is_read() {
        use strata_format::files::{Entry, EntryFlags, EntryKind, NO_PARENT};
        struct Two {
            given: u64,
            hooks: Vec<bool>,
            warnings: Vec<super::TreeWarning>,
        }
        impl super::EntrySource for Two {
            fn next_entry(&mut self) -> std::io::Result<Option<super::SourceEntry>> {
                self.given += 1;
                let warn = |path: &[u8]| super::TreeWarning { path: path.to_vec(), message: "seen".to_string() };
                Ok(match self.given {
                    1 => {
                        let root = Entry { parent_id: NO_PARENT, ..Entry::bare(EntryKind::Directory, b"") };
                        Some(super::SourceEntry::new(root, Vec::new()))
                    }
                    2 => {
                        self.warnings.push(warn(b"f"));
                        let entry = Entry { entry_id: 1, parent_id: 0, size: 8, ..Entry::bare(EntryKind::File, b"f") };
                        Some(super::SourceEntry { entry, path: b"f".to_vec(), data_ranges: vec![(0, 8)] })
                    }
                    _ => None,
                })
            }
            fn read_content(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
                // Five bytes of the eight announced: the file shrank.
                let have = 5usize.saturating_sub(offset as usize).min(buf.len());
                buf[..have].fill(b'x');
                Ok(have)
            }
            fn content_read(&mut self, ended_early: bool) -> u8 {
                self.hooks.push(ended_early);
                self.warnings.push(super::TreeWarning { path: b"f".to_vec(), message: "changed".to_string() });
                EntryFlags::CHANGED_WHILE_READ
            }
            fn take_warnings(&mut self) -> Vec<super::TreeWarning> {
                std::mem::take(&mut self.warnings)
            }
        }
        let mut source = Two { given: 0, hooks: Vec::new(), warnings: Vec::new() };
        let mut writer =
            crate::ArchiveWriter::new(Vec::new(), crate::WriterOptions::new([7; 16], 0)).expect("a writer");
        let summary = writer.add_tree_from("t", 0, &mut source, &crate::NoProgress).expect("a valid tree");
        assert_eq!(source.hooks, [true], "one call, for the one file, which ended early");
        let messages: Vec<&str> = summary.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages, ["seen", "changed"]);
        assert_eq!((summary.entries, summary.files, summary.content_bytes), (2, 1, 5));
    }

    /// Entries from a source must come in the entry order of FORMAT.md 8:
    /// the writer refuses a name out of its run's order and a run that
    /// starts again, and takes the same entries in order.
    #[test]
    fn entries_from_a_source_out_of_the_entry_order_are_refused() {
        use strata_format::files::{Entry, EntryKind, NO_PARENT};
        struct Model(std::vec::IntoIter<Entry>);
        impl super::EntrySource for Model {
            fn next_entry(&mut self) -> std::io::Result<Option<super::SourceEntry>> {
                Ok(self.0.next().map(|entry| super::SourceEntry {
                    path: entry.name.clone(),
                    entry,
                    data_ranges: Vec::new(),
                }))
            }
            fn read_content(&mut self, _buf: &mut [u8], _offset: u64) -> std::io::Result<usize> {
                Ok(0)
            }
        }
        let entry = |id: u64, parent: u64, kind: EntryKind, name: &[u8]| Entry {
            entry_id: id,
            parent_id: parent,
            ..Entry::bare(kind, name)
        };
        let write = |entries: Vec<Entry>| {
            let mut writer =
                crate::ArchiveWriter::new(Vec::new(), crate::WriterOptions::new([7; 16], 0)).expect("a writer");
            writer.add_tree_from("t", 0, &mut Model(entries.into_iter()), &crate::NoProgress).map(|_| ())
        };
        let root = || entry(0, NO_PARENT, EntryKind::Directory, b"");
        // In order: the root's run (a, d), then d's run.
        let good = vec![
            root(),
            entry(1, 0, EntryKind::Fifo, b"a"),
            entry(2, 0, EntryKind::Directory, b"d"),
            entry(3, 2, EntryKind::Fifo, b"x"),
        ];
        assert!(write(good).is_ok());
        let unsorted = vec![root(), entry(1, 0, EntryKind::Fifo, b"b"), entry(2, 0, EntryKind::Fifo, b"a")];
        assert!(write(unsorted).is_err(), "a name before the previous one of its run");
        let repeated = vec![root(), entry(1, 0, EntryKind::Fifo, b"a"), entry(2, 0, EntryKind::Fifo, b"a")];
        assert!(write(repeated).is_err(), "a repeated name");
        let split = vec![
            root(),
            entry(1, 0, EntryKind::Directory, b"d"),
            entry(2, 1, EntryKind::Fifo, b"x"),
            entry(3, 0, EntryKind::Fifo, b"z"),
        ];
        assert!(write(split).is_err(), "the root's run starts again after d's");
    }
}
