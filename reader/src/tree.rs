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
    /// The file-tree section called `name`.
    pub fn tree(&self, name: &str) -> Option<&TreeSection> {
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
        let mut paths = PathBuilder::default();
        let mut next_id = 0u64;
        for &record in &tree.entries_records {
            for (_, entry) in self.entries_at(tree, record)? {
                if entry.entry_id != next_id {
                    return Err(Error::new(
                        ErrorClass::RecordMalformed,
                        "entry_id",
                        format!("{}, expected {next_id}", entry.entry_id),
                    )
                    .at(record)
                    .in_section(&tree.name));
                }
                next_id += 1;
                let path = paths.place(&entry);
                visit(PathEntry { path, entry })?;
            }
        }
        if next_id != tree.end.entry_count {
            return Err(Error::new(
                ErrorClass::IndexMismatch,
                "FILES_END entry_count",
                format!("{}, but the entry records hold {next_id}", tree.end.entry_count),
            )
            .in_section(&tree.name));
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
    fn table_of(&self, tree: &TreeSection, offset: u64, dir_id: u64, dir_path: &[u8]) -> Result<DirTable, Error> {
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
    fn child_entry(
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
    fn find(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<(Entry, u64)>, Error> {
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
        let table = self.table_of(tree, table_offset, dir_id, dir_path)?;
        for (child, name) in &table.children {
            let path = join(dir_path, name);
            let entry = self.child_entry(tree, cache, child, dir_id, &path)?;
            visit(PathEntry { path, entry }, child.dir_table)?;
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
        let Some((entry, table_offset)) = self.find(tree, path)? else {
            return Ok(false);
        };
        let base = normal_path(path);
        let is_dir = entry.kind == EntryKind::Directory;
        let dir_id = entry.entry_id;
        visit(PathEntry { path: base.clone(), entry })?;
        if !is_dir {
            return Ok(true);
        }
        // Directories still to list: (path, table, entry id). Children are
        // pushed in reverse so the smallest name is listed first.
        let mut pending = vec![(base, table_offset, dir_id)];
        let mut cache = None;
        while let Some((dir_path, table_offset, dir_id)) = pending.pop() {
            let mut below = Vec::new();
            self.dir_children(tree, table_offset, dir_id, &dir_path, &mut cache, |item, table| {
                if item.entry.kind == EntryKind::Directory && table != 0 {
                    below.push((item.path.clone(), table, item.entry.entry_id));
                }
                visit(item)
            })?;
            pending.extend(below.into_iter().rev());
        }
        Ok(true)
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
fn normal_path(path: &[u8]) -> Vec<u8> {
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

/// Builds entry paths in one pass over entries in id order, in time and memory
/// linear in the entries whatever the depth: the path of the current directory
/// chain is one buffer, and each directory keeps only its parent and name.
#[derive(Default)]
struct PathBuilder {
    /// Per entry id: a directory's parent and name (`None` for other entries).
    dirs: Vec<Option<(u64, Box<[u8]>)>>,
    /// Per entry id: a directory's depth, which is its place in any chain.
    depths: Vec<usize>,
    /// The current chain of directories: entry id and the path length up to it.
    chain: Vec<(u64, usize)>,
    path: Vec<u8>,
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
            self.dirs.push(Some((entry.parent_id, entry.name.clone().into_boxed_slice())));
            self.depths.push(self.chain.len());
            self.path.clone_from(&path);
            self.chain.push((entry.entry_id, path.len()));
        } else {
            self.dirs.push(None);
            self.depths.push(0);
        }
        path
    }

    /// Where `dir` is in the current chain, making it the chain's end when it
    /// is not on it; `None` if it is not a directory seen before.
    fn find(&mut self, dir: u64) -> Option<usize> {
        let depth = self.depths.get(dir as usize).copied().unwrap_or(0);
        if self.chain.get(depth).is_some_and(|c| c.0 == dir) {
            return Some(depth);
        }
        // Entries did not come depth first: rebuild the chain from the parents.
        // Each parent is an earlier entry, so the climb ends.
        let mut ids = Vec::new();
        let mut at = dir;
        loop {
            match self.dirs.get(at as usize) {
                Some(Some((parent, _))) => {
                    ids.push(at);
                    if *parent == NO_PARENT {
                        break;
                    }
                    if *parent >= at {
                        return None;
                    }
                    at = *parent;
                }
                _ => return None,
            }
        }
        self.chain.clear();
        self.path.clear();
        for &id in ids.iter().rev() {
            if let Some(Some((parent, name))) = self.dirs.get(id as usize) {
                if *parent != NO_PARENT {
                    if !self.path.is_empty() {
                        self.path.push(b'/');
                    }
                    self.path.extend_from_slice(name);
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
