//! File-tree sections by random access (FORMAT.md 8, 10.1 step 5): listing
//! from the entry groups alone, path lookup through the per-group `FILES_DIR`
//! tables (one table and one group per path component), entries by id through
//! the `FILES_INDEX`, and file content through its extents, located from the
//! group's `extent_base` and extent list in the `FILES_EXTENTS` records.

pub(crate) mod entry;
pub(crate) mod file_reader;
pub(crate) mod handle;

use std::io::Write;
use std::sync::{Arc, Mutex};

use strata_format::files::{
    self, Entry, EntryKind, ExtentListRow, FileDigest, FileExtent, FilesBegin, FilesEnd, GroupDir, GroupHead, GroupRow,
    NO_PARENT,
};
use strata_format::{ErrorClass, FormatError, RecordType};

use crate::archive::{expect_type, Archive};
use crate::record::read_record_at;
use crate::{Error, ReadAt};

/// A file-tree section: its begin and end records and its groups, as its
/// `FILES_INDEX` lists them.
#[derive(Clone, Debug)]
pub struct TreeSection {
    /// The section's number: sections of every kind count 0, 1, 2, ... in
    /// archive order (FORMAT.md 8.1, as 7.1).
    pub section_id: u32,
    /// The section's name (UTF-8, no `/`, unique in the archive).
    pub name: String,
    /// Its `FILES_BEGIN` record (8.1): chunk size and what was captured.
    pub begin: FilesBegin,
    /// Its `FILES_END` record (8.4): the section's totals.
    pub end: FilesEnd,
    /// Record offset of the section's `FILES_INDEX`.
    pub index_offset: u64,
    /// The `FILES_INDEX` rows: one per `FILES_ENTRIES` record, in order, with
    /// its `FILES_DIR` (0 when it holds no directory) and its `first_id`.
    pub groups: Vec<GroupRow>,
}

impl TreeSection {
    /// The index in [`TreeSection::groups`] of the group that should hold
    /// entry `id` by the `FILES_INDEX` (the last whose `first_id` ≤ `id`).
    pub fn group_of(&self, id: u64) -> Option<usize> {
        self.groups.partition_point(|g| g.first_id <= id).checked_sub(1)
    }
}

/// An entry with its path relative to the section's root.
#[derive(Clone, Debug)]
pub struct PathEntry {
    /// `a/b/c` from the section's root, no leading `/`, as stored (not
    /// checked to be UTF-8).
    pub path: Vec<u8>,
    /// The entry's row (FORMAT.md 8.3).
    pub entry: Entry,
}

/// One `FILES_ENTRIES` record of a section, parsed (FORMAT.md 8.3).
#[derive(Debug)]
pub struct Group {
    /// Its record offset.
    pub offset: u64,
    /// The group's fixed fields before the rows (8.3): its first `entry_id`,
    /// row count, first extent index and the sizes of its areas.
    pub head: GroupHead,
    /// Its extent list (8.3): the `FILES_EXTENTS` records that hold its
    /// files' extents, each with the index of its first extent.
    pub extent_list: Vec<ExtentListRow>,
    /// Its rows; a row that breaks a rule of its own is an error.
    pub entries: Vec<Result<Entry, FormatError>>,
    /// For each row, the index of its first extent in the section's extent
    /// sequence (`extent_base` + the `extent_count` of the rows before it);
    /// `None` from a row that cannot be read, or a sum that overflows, on.
    starts: Vec<Option<u64>>,
}

impl Group {
    /// The id after its last entry.
    pub fn end_id(&self) -> u64 {
        self.head.first_id.saturating_add(u64::from(self.head.count))
    }

    /// Whether it holds entry `id`.
    pub fn holds(&self, id: u64) -> bool {
        (self.head.first_id..self.end_id()).contains(&id)
    }

    /// Entry `id`, which it holds; a row that breaks a rule is an error at
    /// the group.
    pub fn entry(&self, id: u64, section: &str) -> Result<&Entry, Error> {
        let row = id.checked_sub(self.head.first_id).and_then(|i| self.entries.get(i as usize));
        match row {
            Some(Ok(entry)) => Ok(entry),
            Some(Err(e)) => Err(Error::from(e.clone()).at(self.offset).in_section(section)),
            None => Err(Error::new(
                ErrorClass::IndexMismatch,
                "FILES_ENTRIES",
                format!("entry {id} is not in the group of entries {}..{}", self.head.first_id, self.end_id()),
            )
            .at(self.offset)
            .in_section(section)),
        }
    }
}

/// The tree records read lately, parsed, for reads close to each other:
/// a few of each type, so memory stays bounded whatever the section holds.
#[derive(Default)]
pub(crate) struct TreeCache {
    groups: Vec<(u64, Arc<Group>)>,
    extents: Vec<(u64, Arc<files::FileExtents>)>,
    dirs: Vec<(u64, Arc<GroupDir>)>,
}

/// How many records of each type [`TreeCache`] keeps.
const CACHED: usize = 4;

fn cached<T>(list: &mut Vec<(u64, Arc<T>)>, offset: u64) -> Option<Arc<T>> {
    let at = list.iter().position(|(o, _)| *o == offset)?;
    let found = list.remove(at);
    list.insert(0, found.clone());
    Some(found.1)
}

fn keep<T>(list: &mut Vec<(u64, Arc<T>)>, offset: u64, value: Arc<T>) {
    list.truncate(CACHED - 1);
    list.insert(0, (offset, value));
}

pub(crate) type SharedTreeCache = Mutex<TreeCache>;

fn mismatch(what: impl Into<String>, detail: impl Into<String>, at: u64, section: &str) -> Error {
    Error::new(ErrorClass::IndexMismatch, what, detail).at(at).in_section(section)
}

impl<R: ReadAt> Archive<R> {
    /// The records of the file-tree section called `name`, for code that works
    /// at the level of the format; [`Archive::tree`] gives the handle to read
    /// it by.
    pub fn tree_section(&self, name: &str) -> Option<&TreeSection> {
        self.sections().iter().find_map(|s| match s {
            crate::Section::Tree(tree) if tree.name == name => Some(tree),
            _ => None,
        })
    }

    fn tree_record(
        &self,
        tree: &TreeSection,
        offset: u64,
        expected: RecordType,
    ) -> Result<crate::record::Record, Error> {
        let limit = self.limits().max_index_bytes;
        let record = read_record_at(self.source(), self.size(), offset, self.tag(), limit, self.prefixes())
            .map_err(|e| e.in_section(&tree.name))?;
        expect_type(&record, expected).map_err(|e| e.in_section(&tree.name))?;
        Ok(record)
    }

    /// Reads and parses the `FILES_ENTRIES` record (a group) at `offset`
    /// of `tree` (a few are kept, so reads close to each other cost one).
    pub fn group_at(&self, tree: &TreeSection, offset: u64) -> Result<Arc<Group>, Error> {
        if let Some(group) = self.tree_cache().lock().ok().and_then(|mut c| cached(&mut c.groups, offset)) {
            return Ok(group);
        }
        let record = self.tree_record(tree, offset, RecordType::FilesEntries)?;
        let parsed = files::parse_group(&record.body).map_err(|e| Error::from(e).at(offset).in_section(&tree.name))?;
        if parsed.head.section_id != tree.section_id {
            return Err(mismatch(
                "FILES_ENTRIES section_id",
                format!("{}, expected {}", parsed.head.section_id, tree.section_id),
                offset,
                &tree.name,
            ));
        }
        if parsed.head.captured != tree.begin.captured {
            return Err(Error::new(
                ErrorClass::RecordMalformed,
                "FILES_ENTRIES captured",
                format!("{:#x}, the section's FILES_BEGIN says {:#x}", parsed.head.captured, tree.begin.captured),
            )
            .at(offset)
            .in_section(&tree.name));
        }
        let mut next = Some(parsed.head.extent_base);
        let starts = parsed
            .entries
            .iter()
            .map(|row| {
                let start = next;
                next = match row {
                    Ok(entry) => next.and_then(|n| n.checked_add(entry.extent_count)),
                    Err(_) => None,
                };
                start
            })
            .collect();
        let group = Arc::new(Group {
            offset,
            head: parsed.head,
            extent_list: parsed.extent_list,
            entries: parsed.entries,
            starts,
        });
        if let Ok(mut cache) = self.tree_cache().lock() {
            keep(&mut cache.groups, offset, group.clone());
        }
        Ok(group)
    }

    /// Reads and parses one `FILES_ENTRIES` record of `tree`: its entries
    /// with their row numbers. A row that breaks a rule of its own is an
    /// error.
    pub fn entries_at(&self, tree: &TreeSection, offset: u64) -> Result<Vec<(u32, Entry)>, Error> {
        let group = self.group_at(tree, offset)?;
        group
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                Ok(entry) => Ok((i as u32, entry.clone())),
                Err(e) => Err(Error::from(e.clone()).at(offset).in_section(&tree.name)),
            })
            .collect()
    }

    /// Reads one `FILES_DIR` table of `tree` (a few are kept).
    pub fn dir_table(&self, tree: &TreeSection, offset: u64) -> Result<Arc<GroupDir>, Error> {
        if let Some(dir) = self.tree_cache().lock().ok().and_then(|mut c| cached(&mut c.dirs, offset)) {
            return Ok(dir);
        }
        let record = self.tree_record(tree, offset, RecordType::FilesDir)?;
        let table = GroupDir::parse(&record.body).map_err(|e| Error::from(e).at(offset).in_section(&tree.name))?;
        if table.section_id != tree.section_id {
            return Err(Error::new(
                ErrorClass::RecordMalformed,
                "FILES_DIR section_id",
                format!("{}, the section's is {}", table.section_id, tree.section_id),
            )
            .at(offset)
            .in_section(&tree.name));
        }
        let table = Arc::new(table);
        if let Ok(mut cache) = self.tree_cache().lock() {
            keep(&mut cache.dirs, offset, table.clone());
        }
        Ok(table)
    }

    /// Reads one `FILES_EXTENTS` record of `tree` (a few are kept).
    pub fn extents_at(&self, tree: &TreeSection, offset: u64) -> Result<Arc<files::FileExtents>, Error> {
        if let Some(found) = self.tree_cache().lock().ok().and_then(|mut c| cached(&mut c.extents, offset)) {
            return Ok(found);
        }
        let record = self.tree_record(tree, offset, RecordType::FilesExtents)?;
        let parsed =
            files::parse_file_extents(&record.body).map_err(|e| Error::from(e).at(offset).in_section(&tree.name))?;
        if parsed.head.section_id != tree.section_id {
            return Err(mismatch(
                "FILES_EXTENTS section_id",
                format!("{}, expected {}", parsed.head.section_id, tree.section_id),
                offset,
                &tree.name,
            ));
        }
        let parsed = Arc::new(parsed);
        if let Ok(mut cache) = self.tree_cache().lock() {
            keep(&mut cache.extents, offset, parsed.clone());
        }
        Ok(parsed)
    }

    /// The group of `tree` holding entry `id`, found by a binary search of
    /// the `FILES_INDEX` `first_id`s (FORMAT.md 8.6), with its index row.
    /// `None` when no group holds it.
    pub(crate) fn group_holding(&self, tree: &TreeSection, id: u64) -> Result<Option<(Arc<Group>, GroupRow)>, Error> {
        let Some(at) = tree.group_of(id) else {
            return Ok(None);
        };
        let row = tree.groups[at];
        let group = self.group_at(tree, row.entries_record)?;
        if group.head.first_id != row.first_id {
            return Err(mismatch(
                "FILES_INDEX first_id",
                format!("{}, but the group holds entries from {}", row.first_id, group.head.first_id),
                row.entries_record,
                &tree.name,
            ));
        }
        if !group.holds(id) {
            return Ok(None);
        }
        Ok(Some((group, row)))
    }

    /// The entry `id` of `tree`, with the record offset of its group's
    /// `FILES_DIR` (0 when none): one binary search of the `FILES_INDEX` and
    /// one group read. `None` when no group holds it.
    pub(crate) fn entry_by_id(&self, tree: &TreeSection, id: u64) -> Result<Option<(Entry, u64)>, Error> {
        match self.group_holding(tree, id)? {
            Some((group, row)) => Ok(Some((group.entry(id, &tree.name)?.clone(), row.dir_record))),
            None => Ok(None),
        }
    }

    /// Calls `visit` with every entry of `tree` in order, with its path. Reads the
    /// entry groups only, never file content.
    pub fn walk_tree(
        &self,
        tree: &TreeSection,
        mut visit: impl FnMut(PathEntry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for item in EntryWalk::new(self, tree) {
            visit(item?.0)?;
        }
        Ok(())
    }

    /// Finds the entry at `path` (relative to the section's root; `""` is the
    /// root) as FORMAT.md 8.5 says: one `FILES_DIR` and one group per
    /// component, each checked against the way that led to it.
    pub fn lookup(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<Entry>, Error> {
        Ok(self.find(tree, path)?.map(|(entry, _)| entry))
    }

    /// The root entry and its group's `FILES_DIR`, from the first
    /// `FILES_INDEX` row.
    pub(crate) fn root_of(&self, tree: &TreeSection) -> Result<(Entry, u64), Error> {
        let first = tree
            .groups
            .first()
            .copied()
            .ok_or_else(|| mismatch("FILES_INDEX", "no groups", tree.index_offset, &tree.name))?;
        let group = self.group_at(tree, first.entries_record)?;
        if first.first_id != 0 || !group.holds(0) {
            return Err(mismatch(
                "FILES_INDEX",
                format!("its first group holds entries from {}, not entry 0", group.head.first_id),
                first.entries_record,
                &tree.name,
            ));
        }
        // Entry 0 is where a lookup starts (FORMAT.md 8.5): only the root
        // directory is one (8.3).
        let root = group.entry(0, &tree.name)?.clone();
        if root.kind != EntryKind::Directory || root.parent_id != NO_PARENT || !root.name.is_empty() {
            return Err(Error::new(ErrorClass::RecordMalformed, "root entry", "entry 0 is not the root directory")
                .at(first.entries_record)
                .in_section(&tree.name));
        }
        Ok((root, first.dir_record))
    }

    /// [`Archive::lookup`], with the record offset of the `FILES_DIR` of the
    /// group holding the entry found (0 when none).
    pub(crate) fn find(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<(Entry, u64)>, Error> {
        let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
        let (mut dir, mut dir_record) = self.root_of(tree)?;
        let mut group_record = tree.groups[0].entries_record;
        let mut walked: Vec<u8> = Vec::new();
        for component in components {
            if dir.kind != EntryKind::Directory {
                return Ok(None);
            }
            let run = DirRun::open(self, tree, dir_record, group_record, dir.entry_id, &walked)?;
            // The last fence whose name is not greater than the component.
            let at = run.fences.partition_point(|(_, name)| name.as_slice() <= component);
            let Some(k) = at.checked_sub(1) else {
                return Ok(None);
            };
            let (fence, _) = &run.fences[k];
            let group = run.fence_group(self, tree, k)?;
            run.check_fence_name(&group, k, &tree.name)?;
            let (start, end) = run.rows_in(&group, k);
            // Binary search of the run's names in the group, each entry read
            // checked to be the directory's.
            let (mut low, mut high) = (start, end);
            let mut found = None;
            while low < high {
                let middle = low + (high - low) / 2;
                let entry = run.child(&group, middle, &tree.name)?;
                match entry.name.as_slice().cmp(component) {
                    std::cmp::Ordering::Less => low = middle + 1,
                    std::cmp::Ordering::Greater => high = middle,
                    std::cmp::Ordering::Equal => {
                        // Its neighbours in the run, in memory already: a
                        // repeated name is a defect (FORMAT.md 8, entry order),
                        // not a choice between two entries. (Other breaks of
                        // the order are verify's to report.)
                        let before = middle > start && run.child(&group, middle - 1, &tree.name)?.name == entry.name;
                        let after = middle + 1 < end && run.child(&group, middle + 1, &tree.name)?.name == entry.name;
                        if before || after {
                            return Err(run.out_of_order(group.offset, &entry.name, &tree.name));
                        }
                        found = Some(entry.clone());
                        break;
                    }
                }
            }
            let Some(entry) = found else {
                return Ok(None);
            };
            walked = join(&walked, component);
            (dir, dir_record, group_record) = (entry, fence.dir_record, fence.entries_record);
        }
        Ok(Some((dir, dir_record)))
    }

    /// The children of the directory at `path`, with their entries, sorted by name.
    pub fn list_dir(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<Vec<PathEntry>>, Error> {
        let Some((dir, dir_record)) = self.find(tree, path)? else {
            return Ok(None);
        };
        if dir.kind != EntryKind::Directory {
            return Ok(None);
        }
        let base = normal_path(path);
        let mut out = Vec::new();
        let mut cursor = DirCursor::open(self, tree, dir_record, dir.entry_id, base)?;
        while let Some(child) = cursor.next_child(self, tree) {
            out.push(child?.0);
        }
        Ok(Some(out))
    }

    /// Calls `visit` with the entry at `path` and everything below it, depth
    /// first in name order, through the directory tables only (no whole-tree
    /// walk). Returns false when the archive holds no such path.
    pub fn walk_below(
        &self,
        tree: &TreeSection,
        path: &[u8],
        mut visit: impl FnMut(PathEntry) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let Some(walk) = TableWalk::new(self, tree, path)? else {
            return Ok(false);
        };
        for item in walk {
            visit(item?.0)?;
        }
        Ok(true)
    }

    /// The extents of the regular file `entry` of `tree`, located as
    /// FORMAT.md 10.1 step 5 says: its group's `extent_base` and the
    /// `extent_count` of the rows before it give the index of its first
    /// extent; the extent list gives the `FILES_EXTENTS` record holding it;
    /// the file's extents follow from there. Each is checked to be the
    /// file's, and in order inside its size. Nothing is allocated by
    /// `extent_count` before the extents are found. An entry that carries
    /// its extents already gives them.
    pub fn file_extents(&self, tree: &TreeSection, entry: &Entry) -> Result<Vec<FileExtent>, Error> {
        if !entry.extents.is_empty() || entry.kind != EntryKind::File || entry.extent_count == 0 {
            return Ok(entry.extents.clone());
        }
        let id = entry.entry_id;
        let Some((group, _)) = self.group_holding(tree, id)? else {
            return Err(mismatch("file extents", format!("no group holds entry {id}"), tree.index_offset, &tree.name));
        };
        let at = group.offset;
        let row = (id - group.head.first_id) as usize;
        let Some(x) = group.starts.get(row).copied().flatten() else {
            return Err(mismatch(
                format!("extents of entry {id}"),
                "a row before it cannot be read, or the rows' extent counts overflow",
                at,
                &tree.name,
            ));
        };
        let lost = |detail: String| mismatch(format!("extents of entry {id}"), detail, at, &tree.name);
        if group.extent_list.windows(2).any(|w| w[0].first_index >= w[1].first_index) {
            return Err(lost("the group's extent list's first_index values do not grow".into()));
        }
        let mut list = group.extent_list.partition_point(|r| r.first_index <= x);
        if list == 0 {
            return Err(lost(format!("the group's extent list holds no record with extent {x}")));
        }
        list -= 1;
        let mut extents: Vec<FileExtent> = Vec::new();
        let mut next = x;
        let mut end_of_file = 0u64;
        while (extents.len() as u64) < entry.extent_count {
            let Some(list_row) = group.extent_list.get(list) else {
                return Err(lost(format!(
                    "{} extents announced, the group's extent list ends after {}",
                    entry.extent_count,
                    extents.len()
                )));
            };
            let record = self.extents_at(tree, list_row.extents_record)?;
            if record.head.first_index != list_row.first_index || next < list_row.first_index {
                return Err(lost(format!(
                    "the extent list gives FILES_EXTENTS at {} first_index {}, the record says {}",
                    list_row.extents_record, list_row.first_index, record.head.first_index
                )));
            }
            let from = (next - list_row.first_index) as usize;
            if from >= record.extents.len() {
                return Err(lost(format!(
                    "extent {next} is not in the FILES_EXTENTS record at {}, which the extent list names",
                    list_row.extents_record
                )));
            }
            for extent in &record.extents[from..] {
                if extents.len() as u64 == entry.extent_count {
                    break;
                }
                if extent.entry_id != id {
                    return Err(mismatch(
                        format!("extents of entry {id}"),
                        format!("extent {next} belongs to entry {}", extent.entry_id),
                        list_row.extents_record,
                        &tree.name,
                    ));
                }
                extent.validate().map_err(|e| Error::from(e).at(list_row.extents_record).in_section(&tree.name))?;
                if extent.file_offset < end_of_file || extent.end() > entry.size {
                    return Err(Error::new(
                        ErrorClass::ExtentMap,
                        format!("extents of entry {id}"),
                        format!(
                            "extent at file offset {} (length {}) overlaps the one before or runs past the size {}",
                            extent.file_offset, extent.length, entry.size
                        ),
                    )
                    .at(list_row.extents_record)
                    .in_section(&tree.name));
                }
                end_of_file = extent.end();
                extents.push(*extent);
                next += 1;
            }
            list += 1;
        }
        Ok(extents)
    }

    /// Writes a regular file's content to `out` (holes as zeros), checking it
    /// against the entry's digest. Returns the bytes written.
    ///
    /// A file held in one extent of a chunk not read before is decoded only up to
    /// the file's end (FORMAT.md 10.1, step 5): the file's digest checks every byte
    /// given, the chunk's own BLAKE3 is not checked.
    pub fn read_file(&self, tree: &TreeSection, entry: &Entry, out: &mut dyn Write) -> Result<u64, Error> {
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        self.visit_file(tree, entry, true, |_, piece| {
            let result = match piece {
                Piece::Data(bytes) => out.write_all(bytes),
                Piece::Hole(mut n) => {
                    let mut result = Ok(());
                    while n > 0 && result.is_ok() {
                        let take = n.min(ZEROS.len() as u64) as usize;
                        result = out.write_all(&ZEROS[..take]);
                        n -= take as u64;
                    }
                    result
                }
            };
            result.map_err(|e| Error::local_io("writing file content", e))
        })?;
        Ok(entry.size)
    }

    /// Calls `visit` with each piece of a regular file in order, data or hole,
    /// with its file offset; then checks the whole against the entry's digest
    /// (`spec/FORMAT.md` 8.3), which costs what the data costs: holes are not
    /// hashed.
    pub fn file_content(
        &self,
        tree: &TreeSection,
        entry: &Entry,
        visit: impl FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.visit_file(tree, entry, false, visit)
    }

    /// `file_content`, which may decode the chunk of a one-extent file only up
    /// to the file's end when `partial` is set.
    fn visit_file(
        &self,
        tree: &TreeSection,
        entry: &Entry,
        partial: bool,
        visit: impl FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        /// A chunk decoded whole (its BLAKE3 checked), or only up to the
        /// file's end (checked by the file's digest alone).
        enum Raw {
            Whole(Arc<crate::Chunk>),
            Part(Vec<u8>),
        }
        impl std::ops::Deref for Raw {
            type Target = [u8];
            fn deref(&self) -> &[u8] {
                match self {
                    Raw::Whole(chunk) => &chunk.raw,
                    Raw::Part(part) => part,
                }
            }
        }
        let extents = self.file_extents(tree, entry)?;
        let single = extents.len() == 1;
        let chunk = |extent: &FileExtent, end: usize| {
            Ok(if partial && single && self.first_read_of(extent.chunk_ref) {
                Raw::Part(self.read_chunk_prefix(extent.chunk_ref, end)?)
            } else {
                Raw::Whole(self.read_chunk_whole(extent.chunk_ref)?)
            })
        };
        // Partial decodes are left to the digest alone, as `cat` reports them.
        self.walk_content(tree, entry, &extents, false, chunk, visit)
    }

    /// The one walk of a regular file's content: calls `visit` with each
    /// piece in order, data or hole, with its file offset, taking each
    /// extent's bytes from what `chunk` gives for it (the chunk's raw bytes,
    /// decoded at least to `end`, the extent's end in it); then checks the
    /// whole against the entry's digest (`spec/FORMAT.md` 8.3), which covers
    /// every byte given. With `unhashed` (`chunk` gives bytes whose BLAKE3
    /// was not checked), a failed digest has the file's chunks read again with
    /// their BLAKE3 checked, so that a damaged chunk is named rather than only
    /// the file (FORMAT.md 10.1 step 5).
    pub(crate) fn walk_content<B: std::ops::Deref<Target: AsRef<[u8]>>>(
        &self,
        tree: &TreeSection,
        entry: &Entry,
        extents: &[FileExtent],
        unhashed: bool,
        mut chunk: impl FnMut(&FileExtent, usize) -> Result<B, Error>,
        mut visit: impl FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut digest = FileDigest::new();
        let mut at = 0u64;
        for extent in extents {
            if extent.file_offset > at {
                visit(at, Piece::Hole(extent.file_offset - at))?;
            }
            let start = extent.chunk_offset as usize;
            let end = start.saturating_add(extent.length as usize);
            let held = chunk(extent, end).map_err(|e| e.in_section(&tree.name))?;
            let raw = (*held).as_ref();
            let bytes = raw.get(start..end).ok_or_else(|| {
                Error::new(
                    ErrorClass::ExtentMap,
                    "file extent",
                    format!("bytes {start}..{end}, past the chunk's end at byte {}", raw.len()),
                )
                .at(extent.chunk_ref)
                .in_section(&tree.name)
            })?;
            digest.data(extent.file_offset, bytes);
            visit(extent.file_offset, Piece::Data(bytes))?;
            at = extent.end();
        }
        if entry.size > at {
            visit(at, Piece::Hole(entry.size - at))?;
        }
        if digest.finish(entry.size) != entry.digest {
            // A chunk that fails its own BLAKE3 is the better report: it
            // names the damage, not only the file.
            if unhashed {
                for extent in extents {
                    self.read_chunk_whole(extent.chunk_ref).map_err(|e| e.in_section(&tree.name))?;
                }
            }
            return Err(digest_mismatch(&tree.name, entry.entry_id));
        }
        Ok(())
    }
}

/// A regular file whose content, read from chunks that pass their checks,
/// does not give its entry's digest (FORMAT.md 8.3).
pub(crate) fn digest_mismatch(section: &str, entry_id: u64) -> Error {
    Error::new(
        ErrorClass::ChunkCorrupt,
        "file content digest",
        format!("entry {entry_id}: the content does not match its digest"),
    )
    .in_section(section)
}

/// A directory's run as its `FILES_DIR` gives it (FORMAT.md 8.5): its
/// locator and its fences, checked against the way that led to them.
pub(crate) struct DirRun {
    dir_id: u64,
    /// The directory's path, for messages.
    dir_path: Vec<u8>,
    dir_record: u64,
    first_child_id: u64,
    child_count: u64,
    fences: Vec<(files::Fence, Vec<u8>)>,
}

impl DirRun {
    /// The run of directory `dir_id` (reached as `dir_path`), held in the
    /// group at `group_record`, whose `FILES_DIR` is at `dir_record`.
    pub(crate) fn open<R: ReadAt>(
        archive: &Archive<R>,
        tree: &TreeSection,
        dir_record: u64,
        group_record: u64,
        dir_id: u64,
        dir_path: &[u8],
    ) -> Result<Self, Error> {
        let what = || format!("FILES_DIR of {}", shown_path(dir_path));
        if dir_record == 0 {
            return Err(mismatch(
                what(),
                format!("the group holding directory entry {dir_id} has no FILES_DIR"),
                group_record,
                &tree.name,
            ));
        }
        let table = archive.dir_table(tree, dir_record)?;
        if table.entries_record != group_record {
            return Err(mismatch(
                what(),
                format!("the table describes the group at {}, expected {group_record}", table.entries_record),
                dir_record,
                &tree.name,
            ));
        }
        let Some((index, locator)) = table.locator(dir_id) else {
            return Err(mismatch(what(), format!("no locator for entry {dir_id}"), dir_record, &tree.name));
        };
        let Some(fences) = table.fences_of(index) else {
            return Err(mismatch(
                what(),
                format!("entry {dir_id}'s fences are out of the table"),
                dir_record,
                &tree.name,
            ));
        };
        let run_end = locator.first_child_id.checked_add(locator.child_count);
        let sound = if locator.child_count == 0 {
            fences.is_empty()
        } else {
            locator.first_child_id > dir_id
                && run_end.is_some()
                && fences.first().is_some_and(|(f, _)| f.first_child_id == locator.first_child_id)
                && fences.windows(2).all(|w| w[0].0.first_child_id < w[1].0.first_child_id)
                && fences.last().is_some_and(|(f, _)| Some(f.first_child_id) < run_end)
        };
        if !sound {
            return Err(mismatch(
                what(),
                format!(
                    "entry {dir_id}'s run ({} children from entry {}) and its {} fences disagree",
                    locator.child_count,
                    locator.first_child_id,
                    fences.len()
                ),
                dir_record,
                &tree.name,
            ));
        }
        Ok(DirRun {
            dir_id,
            dir_path: dir_path.to_vec(),
            dir_record,
            first_child_id: locator.first_child_id,
            child_count: locator.child_count,
            fences: fences.to_vec(),
        })
    }

    fn run_end(&self) -> u64 {
        self.first_child_id + self.child_count
    }

    /// The group fence `k` names, checked to hold the fence's first entry.
    fn fence_group<R: ReadAt>(&self, archive: &Archive<R>, tree: &TreeSection, k: usize) -> Result<Arc<Group>, Error> {
        let (fence, _) = &self.fences[k];
        let group = archive.group_at(tree, fence.entries_record)?;
        if !group.holds(fence.first_child_id) {
            return Err(mismatch(
                format!("FILES_DIR of {}", shown_path(&self.dir_path)),
                format!(
                    "a fence names entry {} in the group at {}, which holds entries {}..{}",
                    fence.first_child_id,
                    fence.entries_record,
                    group.head.first_id,
                    group.end_id()
                ),
                self.dir_record,
                &tree.name,
            ));
        }
        Ok(group)
    }

    /// The ids of the run's rows in `group`, which fence `k` names: from the
    /// fence's first entry to the end of the group, of the run, or the next
    /// fence's first entry, whichever comes first.
    fn rows_in(&self, group: &Group, k: usize) -> (u64, u64) {
        let mut end = group.end_id().min(self.run_end());
        if let Some((next, _)) = self.fences.get(k + 1) {
            end = end.min(next.first_child_id);
        }
        (self.fences[k].0.first_child_id, end)
    }

    /// The entry at fence `k`'s `first_child_id`, in `group`, carries the
    /// fence's name (FORMAT.md 8.5).
    fn check_fence_name(&self, group: &Group, k: usize, section: &str) -> Result<(), Error> {
        let (fence, name) = &self.fences[k];
        let entry = self.child(group, fence.first_child_id, section)?;
        if entry.name != *name {
            return Err(mismatch(
                format!("FILES_DIR of {}", shown_path(&self.dir_path)),
                format!(
                    "a fence names entry {} \"{}\", the entry is \"{}\"",
                    fence.first_child_id,
                    strata_format::escaped(name),
                    strata_format::escaped(&entry.name)
                ),
                self.dir_record,
                section,
            ));
        }
        Ok(())
    }

    /// The error of a run whose names are repeated or out of order.
    fn out_of_order(&self, group: u64, name: &[u8], section: &str) -> Error {
        Error::new(
            ErrorClass::RecordMalformed,
            format!("entries of {}", shown_path(&self.dir_path)),
            format!(
                "\"{}\" is repeated or out of name order in the directory's run (FORMAT.md 8, entry order)",
                strata_format::escaped(name)
            ),
        )
        .at(group)
        .in_section(section)
    }

    /// Entry `id` of `group`, checked to be in the directory.
    fn child<'g>(&self, group: &'g Group, id: u64, section: &str) -> Result<&'g Entry, Error> {
        let entry = group.entry(id, section)?;
        if entry.parent_id != self.dir_id {
            return Err(mismatch(
                format!("FILES_DIR of {}", shown_path(&self.dir_path)),
                format!("entry {id}, in directory {}'s run, is in directory {}", self.dir_id, entry.parent_id),
                group.offset,
                section,
            ));
        }
        Ok(entry)
    }
}

/// The children of one directory, read through its run in name order: the
/// `FILES_DIR` once, then each group holding part of the run as it is
/// reached (FORMAT.md 8.5).
pub(crate) struct DirCursor {
    run: DirRun,
    /// The fence being read, its group, and the next id in it.
    fence: usize,
    group: Option<(Arc<Group>, u64, u64)>,
    given: u64,
    /// The name of the child given last: names grow through a run.
    last_name: Option<Vec<u8>>,
    done: bool,
}

impl DirCursor {
    /// The cursor over the run of the directory `dir_id` reached as
    /// `dir_path`, whose group's `FILES_DIR` is at `dir_record`.
    pub(crate) fn open<R: ReadAt>(
        archive: &Archive<R>,
        tree: &TreeSection,
        dir_record: u64,
        dir_id: u64,
        dir_path: Vec<u8>,
    ) -> Result<Self, Error> {
        // The group holding the directory, by the FILES_INDEX.
        let group_record = match tree.group_of(dir_id) {
            Some(at) => tree.groups[at].entries_record,
            None => {
                return Err(mismatch(
                    "FILES_INDEX",
                    format!("no group for entry {dir_id}"),
                    tree.index_offset,
                    &tree.name,
                ))
            }
        };
        let run = DirRun::open(archive, tree, dir_record, group_record, dir_id, &dir_path)?;
        Ok(DirCursor { run, fence: 0, group: None, given: 0, last_name: None, done: false })
    }

    /// The next child with its path, and the record offset of its group's
    /// `FILES_DIR`; `None` after the last.
    pub(crate) fn next_child<R: ReadAt>(
        &mut self,
        archive: &Archive<R>,
        tree: &TreeSection,
    ) -> Option<Result<(PathEntry, u64), Error>> {
        if self.done {
            return None;
        }
        let item = self.step(archive, tree);
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }

    fn step<R: ReadAt>(&mut self, archive: &Archive<R>, tree: &TreeSection) -> Option<Result<(PathEntry, u64), Error>> {
        loop {
            if let Some((group, next, end)) = &mut self.group {
                if *next < *end {
                    let id = *next;
                    *next += 1;
                    let dir_record = self.run.fences[self.fence].0.dir_record;
                    let entry = match self.run.child(group, id, &tree.name) {
                        Ok(entry) => entry.clone(),
                        Err(e) => return Some(Err(e)),
                    };
                    if self.last_name.as_ref().is_some_and(|last| entry.name <= *last) {
                        return Some(Err(self.run.out_of_order(group.offset, &entry.name, &tree.name)));
                    }
                    self.last_name = Some(entry.name.clone());
                    self.given += 1;
                    let path = join(&self.run.dir_path, &entry.name);
                    return Some(Ok((PathEntry { path, entry }, dir_record)));
                }
                self.group = None;
                self.fence += 1;
            }
            if self.fence >= self.run.fences.len() {
                if self.given != self.run.child_count {
                    return Some(Err(mismatch(
                        format!("FILES_DIR of {}", shown_path(&self.run.dir_path)),
                        format!(
                            "entry {}'s run has {} children, its fences lead to {}",
                            self.run.dir_id, self.run.child_count, self.given
                        ),
                        self.run.dir_record,
                        &tree.name,
                    )));
                }
                return None;
            }
            match self
                .run
                .fence_group(archive, tree, self.fence)
                .and_then(|group| self.run.check_fence_name(&group, self.fence, &tree.name).map(|()| group))
            {
                Ok(group) => {
                    let (start, end) = self.run.rows_in(&group, self.fence);
                    self.group = Some((group, start, end));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The entry at a path and everything below it, through the directory tables
/// only: the walk under [`Archive::walk_below`] and [`crate::Tree::subtree`].
/// A directory's children come in name order, then those of each child
/// directory in turn. Each run is read once, and ids grow along every path,
/// so the walk ends whatever the tables hold; it ends after the first error.
/// Each item has the record offset of its group's `FILES_DIR`.
pub(crate) struct TableWalk<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    tree: &'a TreeSection,
    /// The entry the walk starts at, until it is given.
    first: Option<(PathEntry, u64)>,
    /// Directories still to list: (path, FILES_DIR, entry id). Children are
    /// pushed in reverse so the smallest name is listed first.
    pending: Vec<(Vec<u8>, u64, u64)>,
    /// The directory being listed, and the directories found in it so far.
    current: Option<DirCursor>,
    below: Vec<(Vec<u8>, u64, u64)>,
    done: bool,
}

impl<'a, R: ReadAt> TableWalk<'a, R> {
    /// The walk from `path`; `None` when the archive holds no such path.
    pub(crate) fn new(archive: &'a Archive<R>, tree: &'a TreeSection, path: &[u8]) -> Result<Option<Self>, Error> {
        let Some((entry, table)) = archive.find(tree, path)? else {
            return Ok(None);
        };
        Ok(Some(TableWalk::from_entry(archive, tree, PathEntry { path: normal_path(path), entry }, table)))
    }

    /// The walk from `start`, whose group's `FILES_DIR` is at `table`.
    pub(crate) fn from_entry(archive: &'a Archive<R>, tree: &'a TreeSection, start: PathEntry, table: u64) -> Self {
        TableWalk {
            archive,
            tree,
            first: Some((start, table)),
            pending: Vec::new(),
            current: None,
            below: Vec::new(),
            done: false,
        }
    }
}

impl<R: ReadAt> Iterator for TableWalk<'_, R> {
    type Item = Result<(PathEntry, u64), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some((first, table)) = self.first.take() {
            if first.entry.kind == EntryKind::Directory {
                self.pending.push((first.path.clone(), table, first.entry.entry_id));
            }
            return Some(Ok((first, table)));
        }
        loop {
            if let Some(cursor) = &mut self.current {
                match cursor.next_child(self.archive, self.tree) {
                    Some(Ok((item, table))) => {
                        if item.entry.kind == EntryKind::Directory {
                            self.below.push((item.path.clone(), table, item.entry.entry_id));
                        }
                        return Some(Ok((item, table)));
                    }
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    None => {
                        self.current = None;
                        self.pending.extend(self.below.drain(..).rev());
                    }
                }
            }
            let Some((path, table, id)) = self.pending.pop() else {
                self.done = true;
                return None;
            };
            match DirCursor::open(self.archive, self.tree, table, id, path) {
                Ok(cursor) => self.current = Some(cursor),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The entries of a section in id order, with their paths and their groups'
/// `FILES_DIR`, read group by group from the `FILES_INDEX`: the walk under
/// [`Archive::walk_tree`] and [`crate::Tree::entries`]. Memory holds one
/// group and the directories' names ([`PathBuilder`]), whatever the number
/// of entries. It ends after the first error.
pub(crate) struct EntryWalk<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    tree: &'a TreeSection,
    paths: PathBuilder,
    next_id: u64,
    /// Index in `tree.groups` of the next group to read.
    next_group: usize,
    /// The group being walked, its `FILES_DIR`, and the next row.
    current: Option<(Arc<Group>, u64, usize)>,
    done: bool,
}

impl<'a, R: ReadAt> EntryWalk<'a, R> {
    pub(crate) fn new(archive: &'a Archive<R>, tree: &'a TreeSection) -> Self {
        EntryWalk {
            archive,
            tree,
            paths: PathBuilder::default(),
            next_id: 0,
            next_group: 0,
            current: None,
            done: false,
        }
    }

    fn fail(&mut self, error: Error) -> Option<Result<(PathEntry, u64), Error>> {
        self.done = true;
        Some(Err(error))
    }
}

impl<R: ReadAt> Iterator for EntryWalk<'_, R> {
    type Item = Result<(PathEntry, u64), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            if let Some((group, dir_record, row)) = &mut self.current {
                if let Some(item) = group.entries.get(*row) {
                    *row += 1;
                    let dir_record = *dir_record;
                    let entry = match item {
                        Ok(entry) => entry.clone(),
                        Err(e) => {
                            let error = Error::from(e.clone()).at(group.offset).in_section(&self.tree.name);
                            return self.fail(error);
                        }
                    };
                    self.next_id += 1;
                    let path = self.paths.place(&entry);
                    return Some(Ok((PathEntry { path, entry }, dir_record)));
                }
                self.current = None;
            }
            let Some(&row) = self.tree.groups.get(self.next_group) else {
                self.done = true;
                if self.next_id != self.tree.end.entry_count {
                    let error = Error::new(
                        ErrorClass::IndexMismatch,
                        "FILES_END entry_count",
                        format!("{}, but the groups hold {}", self.tree.end.entry_count, self.next_id),
                    )
                    .in_section(&self.tree.name);
                    return Some(Err(error));
                }
                return None;
            };
            self.next_group += 1;
            match self.archive.group_at(self.tree, row.entries_record) {
                Ok(group) if group.head.first_id == self.next_id && row.first_id == self.next_id => {
                    self.current = Some((group, row.dir_record, 0))
                }
                Ok(group) => {
                    let error = Error::new(
                        ErrorClass::RecordMalformed,
                        "FILES_ENTRIES first_id",
                        format!("{} (FILES_INDEX {}), expected {}", group.head.first_id, row.first_id, self.next_id),
                    )
                    .at(row.entries_record)
                    .in_section(&self.tree.name);
                    return self.fail(error);
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}

/// A piece of a file's content.
#[derive(Debug)]
pub enum Piece<'a> {
    /// These bytes, decoded from a chunk.
    Data(&'a [u8]),
    /// This many bytes of hole: zeros, nothing stored.
    Hole(u64),
}

/// `parent/name`, or `name` at the root.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        path.extend_from_slice(parent);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// `path` without empty and `.` components.
pub(crate) fn normal_path(path: &[u8]) -> Vec<u8> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect::<Vec<_>>().join(&b'/')
}

/// A path for messages: `.` for the root, escaped as everywhere.
fn shown_path(path: &[u8]) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        strata_format::escaped(path)
    }
}

/// Builds entry paths in one pass over entries in id order, in time linear in
/// the entries whatever the depth, and memory that grows with the directories
/// alone: the path of the current directory chain is one buffer, each
/// directory keeps only its parent, name and depth, and other entries nothing.
#[derive(Default)]
struct PathBuilder {
    /// The directories placed so far, by entry id.
    dirs: std::collections::HashMap<u64, PlacedDir>,
    /// The current chain of directories: entry id and the path length up to it.
    chain: Vec<(u64, usize)>,
    path: Vec<u8>,
}

/// What a path needs of a directory.
struct PlacedDir {
    parent: u64,
    name: Box<[u8]>,
    /// Its depth, which is its place in any chain.
    depth: usize,
}

impl PathBuilder {
    /// The path of `entry`, whose `entry_id` is the next one; remembers it if it
    /// is a directory.
    fn place(&mut self, entry: &Entry) -> Vec<u8> {
        // Only entry 0 is the root (FORMAT.md 8.3): another entry without a
        // parent has no directory, as below.
        let root = entry.parent_id == NO_PARENT && entry.entry_id == 0;
        let at = if root {
            self.chain.clear();
            self.path.clear();
            None
        } else {
            self.find(entry.parent_id)
        };
        let path = match at {
            _ if root => Vec::new(),
            Some(at) => join(&self.path[..self.chain[at].1], &entry.name),
            // Not a directory before it: a damaged or hostile entry. It is still
            // listed (verify reports it) under a path that names the problem;
            // extraction refuses it, having no directory to put it in.
            None if entry.parent_id == NO_PARENT => join(b"<no parent>", &entry.name),
            None => join(format!("<entry {} is no directory>", entry.parent_id).as_bytes(), &entry.name),
        };
        if entry.kind == EntryKind::Directory && (root || at.is_some()) {
            // The chain ends at the new directory; for other entries it stays
            // as it is, so entries that go back and forth between a deep
            // directory and one above it cost nothing more.
            if let Some(at) = at {
                self.chain.truncate(at + 1);
            }
            let placed = PlacedDir {
                parent: entry.parent_id,
                name: entry.name.clone().into_boxed_slice(),
                depth: self.chain.len(),
            };
            self.dirs.insert(entry.entry_id, placed);
            self.path.clone_from(&path);
            self.chain.push((entry.entry_id, path.len()));
        }
        path
    }

    /// Where `dir` is in the current chain, making it the chain's end when it
    /// is not on it; `None` if it is not a directory seen before.
    fn find(&mut self, dir: u64) -> Option<usize> {
        let depth = self.dirs.get(&dir)?.depth;
        if self.chain.get(depth).is_some_and(|c| c.0 == dir) {
            return Some(depth);
        }
        // Entries did not come depth first: rebuild the chain from the parents.
        // Each parent is an earlier entry, so the climb ends.
        let mut ids = Vec::new();
        let mut at = dir;
        loop {
            let parent = self.dirs.get(&at)?.parent;
            ids.push(at);
            if parent == NO_PARENT {
                break;
            }
            if parent >= at {
                return None;
            }
            at = parent;
        }
        self.chain.clear();
        self.path.clear();
        for &id in ids.iter().rev() {
            if let Some(dir) = self.dirs.get(&id) {
                if dir.parent != NO_PARENT {
                    if !self.path.is_empty() {
                        self.path.push(b'/');
                    }
                    self.path.extend_from_slice(&dir.name);
                }
            }
            self.chain.push((id, self.path.len()));
        }
        Some(self.chain.len() - 1)
    }
}

/// Loads a file-tree section's records named by the archive index.
pub(crate) fn load_tree_section<R: ReadAt>(
    archive_source: &R,
    size: u64,
    tag: [u8; 8],
    limits: &crate::Limits,
    entry: &strata_format::SectionEntry,
    prefixes: crate::record::Prefixes<'_>,
) -> Result<TreeSection, Error> {
    let read = |offset: u64| read_record_at(archive_source, size, offset, tag, limits.max_index_bytes, prefixes);
    let begin_record = read(entry.begin_offset)?;
    let begin = FilesBegin::parse(expect_type(&begin_record, RecordType::FilesBegin)?)
        .map_err(|e| Error::from(e).at(entry.begin_offset))?;
    let name = begin.name_lossy();
    let end_record = read(entry.end_offset).map_err(|e| e.in_section(&name))?;
    let end = FilesEnd::parse(expect_type(&end_record, RecordType::FilesEnd)?)
        .map_err(|e| Error::from(e).at(entry.end_offset).in_section(&name))?;
    let index_record = read(entry.table_offset).map_err(|e| e.in_section(&name))?;
    let (head, groups) = files::parse_files_index(expect_type(&index_record, RecordType::FilesIndex)?)
        .map_err(|e| Error::from(e).at(entry.table_offset).in_section(&name))?;
    let consistent = begin.section_id == entry.section_id
        && end.section_id == entry.section_id
        && end.begin_offset == entry.begin_offset
        && head.section_id == entry.section_id;
    if !consistent {
        return Err(Error::new(
            ErrorClass::IndexMismatch,
            "file-tree section",
            "FILES_BEGIN, FILES_END and FILES_INDEX disagree with the archive index",
        )
        .at(entry.begin_offset)
        .in_section(&name));
    }
    // The groups' first ids grow (FORMAT.md 8.6): a binary search needs it.
    if groups.first().map(|g| g.first_id) != Some(0) || groups.windows(2).any(|w| w[0].first_id >= w[1].first_id) {
        return Err(Error::new(
            ErrorClass::IndexMismatch,
            "FILES_INDEX",
            "its groups' first_id do not start at 0 and grow",
        )
        .at(entry.table_offset)
        .in_section(&name));
    }
    Ok(TreeSection { section_id: entry.section_id, name, begin, end, index_offset: entry.table_offset, groups })
}
