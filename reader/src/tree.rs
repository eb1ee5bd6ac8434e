//! File-tree sections by random access: listing from the entry records alone,
//! path lookup through the per-directory tables (O(depth × directory size) bytes
//! read), and file content through its extents.

use std::io::Write;

use strata_format::files::{self, DirTable, Entry, EntryKind, FileDigest, FilesBegin, FilesEnd, NO_PARENT};
use strata_format::{ErrorClass, RecordType};

use crate::archive::{expect_type, Archive};
use crate::record::read_record_at;
use crate::{Error, ReadAt};

/// A file-tree section: its begin and end records and where its tables are.
#[derive(Clone, Debug)]
pub struct TreeSection {
    pub section_id: u32,
    pub name: String,
    pub begin: FilesBegin,
    pub end: FilesEnd,
    /// Record offset of the root directory's `FILES_DIR`.
    pub root_dir: u64,
    pub root_entries_record: u64,
    pub root_entry_offset: u32,
    /// Record offsets of the section's `FILES_ENTRIES` records, in order.
    pub entries_records: Vec<u64>,
}

/// An entry with its path relative to the section's root.
#[derive(Clone, Debug)]
pub struct PathEntry {
    pub path: Vec<u8>,
    pub entry: Entry,
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

    /// Reads and parses one `FILES_ENTRIES` record of `tree`.
    pub fn entries_at(&self, tree: &TreeSection, offset: u64) -> Result<Vec<(u32, Entry)>, Error> {
        let record = read_record_at(self.source(), self.size(), offset, self.tag(), self.limits().max_index_bytes)
            .map_err(|e| e.in_section(&tree.name))?;
        let body = expect_type(&record, RecordType::FilesEntries)?;
        let (section_id, entries) =
            files::parse_entries(body).map_err(|e| Error::from(e).at(offset).in_section(&tree.name))?;
        if section_id != tree.section_id {
            return Err(Error::new(
                ErrorClass::IndexMismatch,
                "FILES_ENTRIES section_id",
                format!("{section_id}, expected {}", tree.section_id),
            )
            .at(offset)
            .in_section(&tree.name));
        }
        Ok(entries)
    }

    /// The entry at (`record`, `offset`) of `tree`.
    pub fn entry_at(&self, tree: &TreeSection, record: u64, offset: u32) -> Result<Entry, Error> {
        self.entries_at(tree, record)?.into_iter().find(|(at, _)| *at == offset).map(|(_, entry)| entry).ok_or_else(
            || {
                Error::new(
                    ErrorClass::IndexMismatch,
                    "entry location",
                    format!("no entry starts at body byte {offset}"),
                )
                .at(record)
                .in_section(&tree.name)
            },
        )
    }

    /// Calls `visit` with every entry of `tree` in order, with its path. Reads the
    /// entry records only, never file content.
    ///
    /// Time and memory are linear in the entries whatever the depth: the path of
    /// the current directory is kept in one buffer, and only a directory's parent
    /// and name are remembered (a path is rebuilt from them only when entries do
    /// not come depth first).
    pub fn walk_tree(
        &self,
        tree: &TreeSection,
        mut visit: impl FnMut(PathEntry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for item in EntryWalk::new(self, tree) {
            visit(item?)?;
        }
        Ok(())
    }

    /// Reads one directory table.
    pub fn dir_table(&self, tree: &TreeSection, offset: u64) -> Result<DirTable, Error> {
        let record = read_record_at(self.source(), self.size(), offset, self.tag(), self.limits().max_index_bytes)
            .map_err(|e| e.in_section(&tree.name))?;
        let table = DirTable::parse(expect_type(&record, RecordType::FilesDir)?)
            .map_err(|e| Error::from(e).at(offset).in_section(&tree.name))?;
        if table.section_id != tree.section_id {
            return Err(Error::new(ErrorClass::IndexMismatch, "FILES_DIR section_id", format!("{}", table.section_id))
                .at(offset)
                .in_section(&tree.name));
        }
        Ok(table)
    }

    /// Reads the directory table at `offset`, which must belong to the directory
    /// `dir_id` reached as `dir_path`: a table that names another directory, or a
    /// child that is not a later entry than its directory, would let a walk loop
    /// or reach a path that no entry has (FORMAT.md 8.5).
    pub(crate) fn table_of(
        &self,
        tree: &TreeSection,
        offset: u64,
        dir_id: u64,
        dir_path: &[u8],
    ) -> Result<DirTable, Error> {
        let table = self.dir_table(tree, offset)?;
        let mismatch = |detail: String| {
            Error::new(ErrorClass::IndexMismatch, format!("FILES_DIR of {}", shown_path(dir_path)), detail)
                .at(offset)
                .in_section(&tree.name)
        };
        if table.entry_id != dir_id {
            return Err(mismatch(format!("the table is entry {}'s, but entry {dir_id} leads to it", table.entry_id)));
        }
        if let Some((child, name)) = table.children.iter().find(|(child, _)| child.entry_id <= dir_id) {
            return Err(mismatch(format!(
                "child \"{}\" is entry {}, not after its directory (entry {dir_id})",
                strata_format::escaped(name),
                child.entry_id
            )));
        }
        Ok(table)
    }

    /// The entry a directory-table child points to, checked against the child
    /// and the directory (`dir_id`) whose table lists it.
    pub(crate) fn child_entry(
        &self,
        tree: &TreeSection,
        cache: &mut Option<(u64, Vec<(u32, Entry)>)>,
        child: &files::DirChild,
        dir_id: u64,
        path: &[u8],
    ) -> Result<Entry, Error> {
        if cache.as_ref().map(|c| c.0) != Some(child.entries_record) {
            *cache = Some((child.entries_record, self.entries_at(tree, child.entries_record)?));
        }
        let entries = &cache.as_ref().expect("just filled").1;
        let entry = entries.iter().find(|(at, _)| *at == child.entry_offset).map(|(_, e)| e);
        match entry {
            Some(entry) if entry.entry_id == child.entry_id && entry.parent_id == dir_id => Ok(entry.clone()),
            found => Err(Error::new(
                ErrorClass::IndexMismatch,
                format!("FILES_DIR child {}", shown_path(path)),
                match found {
                    None => format!("no entry starts at body byte {}", child.entry_offset),
                    Some(e) => format!(
                        "the table names entry {} in directory {dir_id}, the record holds entry {} in directory {}",
                        child.entry_id, e.entry_id, e.parent_id
                    ),
                },
            )
            .at(child.entries_record)
            .in_section(&tree.name)),
        }
    }

    /// Finds the entry at `path` (relative to the section's root; `""` is the
    /// root) through the directory tables: one table per path component and one
    /// entry record. Every table must belong to the directory that leads to it,
    /// so a lookup ends after at most `depth` tables and finds only real paths.
    pub fn lookup(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<Entry>, Error> {
        Ok(self.find(tree, path)?.map(|(entry, _)| entry))
    }

    /// [`Archive::lookup`], with the record offset of the directory table of the
    /// entry found when it is a directory.
    pub(crate) fn find(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<(Entry, u64)>, Error> {
        let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
        if components.is_empty() {
            let root = self.entry_at(tree, tree.root_entries_record, tree.root_entry_offset)?;
            return Ok(Some((root, tree.root_dir)));
        }
        let (mut table_offset, mut dir_id) = (tree.root_dir, 0u64);
        let mut cache = None;
        let mut walked: Vec<u8> = Vec::new();
        for (depth, component) in components.iter().enumerate() {
            let table = self.table_of(tree, table_offset, dir_id, &walked)?;
            let Some(child) = table.find(component) else {
                return Ok(None);
            };
            walked = join(&walked, component);
            if depth + 1 == components.len() {
                let entry = self.child_entry(tree, &mut cache, child, dir_id, &walked)?;
                return Ok(Some((entry, child.dir_table)));
            }
            if child.kind != EntryKind::Directory.code() || child.dir_table == 0 {
                return Ok(None);
            }
            (table_offset, dir_id) = (child.dir_table, child.entry_id);
        }
        Ok(None)
    }

    /// The children of the directory at `path`, with their entries, sorted by name.
    pub fn list_dir(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<Vec<PathEntry>>, Error> {
        let Some((dir, table_offset)) = self.find(tree, path)? else {
            return Ok(None);
        };
        if dir.kind != EntryKind::Directory {
            return Ok(None);
        }
        let base = normal_path(path);
        let mut out = Vec::new();
        self.dir_children(tree, table_offset, dir.entry_id, &base, &mut None, |item, _| {
            out.push(item);
            Ok(())
        })?;
        Ok(Some(out))
    }

    /// Calls `visit` with each child of the directory `dir_id` at `dir_path`,
    /// whose table is at `table_offset`, in name order, with the record offset of
    /// the child's own table (0 unless it is a directory).
    fn dir_children(
        &self,
        tree: &TreeSection,
        table_offset: u64,
        dir_id: u64,
        dir_path: &[u8],
        cache: &mut Option<(u64, Vec<(u32, Entry)>)>,
        mut visit: impl FnMut(PathEntry, u64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut cursor = DirCursor::open(self, tree, table_offset, dir_id, dir_path.to_vec())?;
        while let Some(child) = cursor.next_child(self, tree, cache) {
            let (item, table) = child?;
            visit(item, table)?;
        }
        Ok(())
    }

    /// Calls `visit` with the entry at `path` and everything below it, depth
    /// first in name order, through the directory tables only (no whole-tree
    /// walk). Returns false when the archive holds no such path. Each table is
    /// read once, and tables must belong to the directories that lead to them,
    /// so the walk ends whatever the tables hold.
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

    /// The entry `id` of `tree`, found by a binary search of the section's
    /// entry records: entry ids grow from record to record (FORMAT.md 8.3), so
    /// it costs at most log2(records) + 1 record reads, never a walk. `cache`
    /// keeps the records read, for searches close to each other (a path
    /// climbed parent by parent). `None` when no record holds it; a record
    /// that holds it twice gives the first.
    pub(crate) fn entry_by_id(
        &self,
        tree: &TreeSection,
        id: u64,
        cache: &mut RecordCache,
    ) -> Result<Option<Entry>, Error> {
        // A record read lately may hold it: a directory is usually near the
        // entries it holds, so a climb from an entry to the root costs little
        // more than the first search.
        if let Some(entries) = cache.holding(id) {
            return Ok(entries.iter().find(|(_, e)| e.entry_id == id).map(|(_, e)| e.clone()));
        }
        let records = &tree.entries_records;
        let (mut low, mut high) = (0, records.len());
        while low < high {
            let middle = low + (high - low) / 2;
            let entries = cache.get(self, tree, records[middle])?;
            // `parse_entries` gives at least one entry per record.
            let (Some((_, first)), Some((_, last))) = (entries.first(), entries.last()) else {
                return Ok(None);
            };
            if id < first.entry_id {
                high = middle;
            } else if id > last.entry_id {
                low = middle + 1;
            } else {
                return Ok(entries.iter().find(|(_, e)| e.entry_id == id).map(|(_, e)| e.clone()));
            }
        }
        Ok(None)
    }

    /// Writes a regular file's content to `out` (holes as zeros), checking it
    /// against the entry's BLAKE3. Returns the bytes written.
    ///
    /// A file held in one extent of a chunk not read before is decoded only up to
    /// the file's end (FORMAT.md 10.1, step 5): the file's BLAKE3 checks every byte
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
        mut visit: impl FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut digest = FileDigest::new();
        let mut at = 0u64;
        for extent in &entry.extents {
            if extent.file_offset > at {
                visit(at, Piece::Hole(extent.file_offset - at))?;
            }
            let start = extent.chunk_offset as usize;
            let end = start.saturating_add(extent.length as usize);
            // The file's digest, checked below, covers a partial decode, which
            // skips the chunk's BLAKE3.
            let (whole, part);
            let raw: &[u8] = if partial && entry.extents.len() == 1 && self.first_read_of(extent.chunk_ref) {
                part = self.read_chunk_prefix(extent.chunk_ref, end).map_err(|e| e.in_section(&tree.name))?;
                &part
            } else {
                whole = self.read_chunk_whole(extent.chunk_ref).map_err(|e| e.in_section(&tree.name))?;
                &whole.raw
            };
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
            return Err(Error::new(
                ErrorClass::ChunkCorrupt,
                "file content digest",
                format!("entry {}: the content does not match its digest", entry.entry_id),
            )
            .in_section(&tree.name));
        }
        Ok(())
    }
}

/// A piece of a file's content.
pub enum Piece<'a> {
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

/// The entries of a section in id order, with their paths, read from its
/// entry records one record at a time: the walk under [`Archive::walk_tree`]
/// and [`crate::Tree::entries`]. Memory holds one record's entries and the
/// directories' names ([`PathBuilder`]), whatever the number of entries. It
/// ends after the first error.
pub(crate) struct EntryWalk<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    tree: &'a TreeSection,
    paths: PathBuilder,
    next_id: u64,
    /// Index in `tree.entries_records` of the next record to read.
    next_record: usize,
    /// What is left of the record being walked.
    current: std::vec::IntoIter<(u32, Entry)>,
    current_record: u64,
    done: bool,
}

impl<'a, R: ReadAt> EntryWalk<'a, R> {
    pub(crate) fn new(archive: &'a Archive<R>, tree: &'a TreeSection) -> Self {
        EntryWalk {
            archive,
            tree,
            paths: PathBuilder::default(),
            next_id: 0,
            next_record: 0,
            current: Vec::new().into_iter(),
            current_record: 0,
            done: false,
        }
    }

    fn fail(&mut self, error: Error) -> Option<Result<PathEntry, Error>> {
        self.done = true;
        Some(Err(error))
    }
}

impl<R: ReadAt> Iterator for EntryWalk<'_, R> {
    type Item = Result<PathEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            if let Some((_, entry)) = self.current.next() {
                if entry.entry_id != self.next_id {
                    let error = Error::new(
                        ErrorClass::RecordMalformed,
                        "entry_id",
                        format!("{}, expected {}", entry.entry_id, self.next_id),
                    )
                    .at(self.current_record)
                    .in_section(&self.tree.name);
                    return self.fail(error);
                }
                self.next_id += 1;
                let path = self.paths.place(&entry);
                return Some(Ok(PathEntry { path, entry }));
            }
            let Some(&record) = self.tree.entries_records.get(self.next_record) else {
                self.done = true;
                if self.next_id != self.tree.end.entry_count {
                    let error = Error::new(
                        ErrorClass::IndexMismatch,
                        "FILES_END entry_count",
                        format!("{}, but the entry records hold {}", self.tree.end.entry_count, self.next_id),
                    )
                    .in_section(&self.tree.name);
                    return Some(Err(error));
                }
                return None;
            };
            self.next_record += 1;
            match self.archive.entries_at(self.tree, record) {
                Ok(entries) => (self.current, self.current_record) = (entries.into_iter(), record),
                Err(e) => return self.fail(e),
            }
        }
    }
}

/// The children of one directory, read through its table in name order: the
/// table is read and checked once (one record, bounded by
/// [`crate::Limits::max_index_bytes`]), each child's entry when it is reached.
pub(crate) struct DirCursor {
    dir_path: Vec<u8>,
    dir_id: u64,
    table: std::vec::IntoIter<(files::DirChild, Vec<u8>)>,
}

impl DirCursor {
    /// The cursor over the table at `table_offset`, which must be that of
    /// the directory `dir_id` reached as `dir_path`.
    pub(crate) fn open<R: ReadAt>(
        archive: &Archive<R>,
        tree: &TreeSection,
        table_offset: u64,
        dir_id: u64,
        dir_path: Vec<u8>,
    ) -> Result<Self, Error> {
        let table = archive.table_of(tree, table_offset, dir_id, &dir_path)?;
        Ok(DirCursor { dir_path, dir_id, table: table.children.into_iter() })
    }

    /// The next child with its path, and the record offset of its own table
    /// (0 unless it is a directory); `None` after the last.
    pub(crate) fn next_child<R: ReadAt>(
        &mut self,
        archive: &Archive<R>,
        tree: &TreeSection,
        cache: &mut Option<(u64, Vec<(u32, Entry)>)>,
    ) -> Option<Result<(PathEntry, u64), Error>> {
        let (child, name) = self.table.next()?;
        let path = join(&self.dir_path, &name);
        Some(
            archive
                .child_entry(tree, cache, &child, self.dir_id, &path)
                .map(|entry| (PathEntry { path, entry }, child.dir_table)),
        )
    }
}

/// The entry at a path and everything below it, through the directory tables
/// only: the walk under [`Archive::walk_below`] and [`crate::Tree::subtree`].
/// A directory's children come in name order, then those of each child
/// directory in turn. Each table is read once, and must belong to the
/// directory that leads to it, so the walk ends whatever the tables hold; it
/// ends after the first error. Each item has the record offset of the entry's
/// own table (0 unless it is a directory).
pub(crate) struct TableWalk<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    tree: &'a TreeSection,
    /// The entry the walk starts at, until it is given.
    first: Option<(PathEntry, u64)>,
    /// Directories still to list: (path, table, entry id). Children are
    /// pushed in reverse so the smallest name is listed first.
    pending: Vec<(Vec<u8>, u64, u64)>,
    /// The directory being listed, and the directories found in it so far.
    current: Option<DirCursor>,
    below: Vec<(Vec<u8>, u64, u64)>,
    cache: Option<(u64, Vec<(u32, Entry)>)>,
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

    /// The walk from `start`, whose own table (if it is a directory) is at
    /// `table`.
    pub(crate) fn from_entry(archive: &'a Archive<R>, tree: &'a TreeSection, start: PathEntry, table: u64) -> Self {
        TableWalk {
            archive,
            tree,
            first: Some((start, table)),
            pending: Vec::new(),
            current: None,
            below: Vec::new(),
            cache: None,
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
                match cursor.next_child(self.archive, self.tree, &mut self.cache) {
                    Some(Ok((item, table))) => {
                        if item.entry.kind == EntryKind::Directory && table != 0 {
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

/// The entry records read last, parsed, for lookups by id close to each
/// other: a few records, so memory stays bounded whatever the section holds.
#[derive(Default)]
pub(crate) struct RecordCache {
    /// Record offset and entries, the most recently used first.
    records: Vec<(u64, ParsedRecord)>,
}

/// The entries of one record, with their offsets in its body.
pub(crate) type ParsedRecord = std::rc::Rc<Vec<(u32, Entry)>>;

impl RecordCache {
    /// How many records are kept.
    const RECORDS: usize = 4;

    /// A record kept whose entry ids span `id` (from its first entry's to its
    /// last's).
    fn holding(&self, id: u64) -> Option<ParsedRecord> {
        self.records.iter().find_map(|(_, entries)| {
            let (first, last) = (entries.first()?.1.entry_id, entries.last()?.1.entry_id);
            (first..=last).contains(&id).then(|| entries.clone())
        })
    }

    /// The entries of the record at `offset`, read if they are not kept.
    pub(crate) fn get<R: ReadAt>(
        &mut self,
        archive: &Archive<R>,
        tree: &TreeSection,
        offset: u64,
    ) -> Result<ParsedRecord, Error> {
        if let Some(at) = self.records.iter().position(|(o, _)| *o == offset) {
            let found = self.records.remove(at);
            self.records.insert(0, found);
        } else {
            let entries = std::rc::Rc::new(archive.entries_at(tree, offset)?);
            self.records.truncate(Self::RECORDS - 1);
            self.records.insert(0, (offset, entries));
        }
        Ok(self.records[0].1.clone())
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
) -> Result<TreeSection, Error> {
    let read = |offset: u64| read_record_at(archive_source, size, offset, tag, limits.max_index_bytes);
    let begin_record = read(entry.begin_offset)?;
    let begin = FilesBegin::parse(expect_type(&begin_record, RecordType::FilesBegin)?)
        .map_err(|e| Error::from(e).at(entry.begin_offset))?;
    let name = begin.name_lossy();
    let end_record = read(entry.end_offset).map_err(|e| e.in_section(&name))?;
    let end_body: &[u8; FilesEnd::SIZE] = expect_type(&end_record, RecordType::FilesEnd)?
        .try_into()
        .map_err(|_| Error::new(ErrorClass::RecordMalformed, "FILES_END body", "not 64 bytes").at(entry.end_offset))?;
    let end = FilesEnd::decode(end_body);
    let index_record = read(entry.table_offset).map_err(|e| e.in_section(&name))?;
    let (head, entries_records) = files::parse_files_index(expect_type(&index_record, RecordType::FilesIndex)?)
        .map_err(|e| Error::from(e).at(entry.table_offset).in_section(&name))?;
    let consistent = begin.section_id == entry.section_id
        && end.section_id == entry.section_id
        && end.begin_offset == entry.begin_offset
        && head.section_id == entry.section_id
        && end.reserved == 0;
    if !consistent {
        return Err(Error::new(
            ErrorClass::IndexMismatch,
            "file-tree section",
            "FILES_BEGIN, FILES_END and FILES_INDEX disagree with the archive index",
        )
        .at(entry.begin_offset)
        .in_section(&name));
    }
    Ok(TreeSection {
        section_id: entry.section_id,
        name,
        begin,
        end,
        root_dir: head.root_dir,
        root_entries_record: head.root_entries_record,
        root_entry_offset: head.root_entry_offset,
        entries_records,
    })
}
