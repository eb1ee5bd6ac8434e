//! File-tree sections by random access: listing from the entry records alone,
//! path lookup through the per-directory tables (O(depth × directory size) bytes
//! read), and file content through its extents.

use std::io::Write;

use strata_format::files::{self, DirTable, Entry, EntryKind, FilesBegin, FilesEnd, NO_PARENT};
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
    pub fn walk_tree(
        &self,
        tree: &TreeSection,
        mut visit: impl FnMut(PathEntry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        // Directory paths by entry id; other entries need none after their visit.
        let mut dir_paths: Vec<Option<Vec<u8>>> = Vec::new();
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
                let path = if entry.parent_id == NO_PARENT {
                    Vec::new()
                } else {
                    match dir_paths.get(entry.parent_id as usize).and_then(|p| p.as_ref()) {
                        Some(parent) => join(parent, &entry.name),
                        // Not a directory before it: a damaged or hostile entry.
                        // It is still listed (verify reports it) under a path that
                        // names the problem; extraction refuses it, having no
                        // directory to put it in.
                        None => join(format!("<entry {} is no directory>", entry.parent_id).as_bytes(), &entry.name),
                    }
                };
                dir_paths.push((entry.kind == EntryKind::Directory).then(|| path.clone()));
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

    /// Finds the entry at `path` (relative to the section's root; `""` is the
    /// root) through the directory tables: one table per path component.
    pub fn lookup(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<Entry>, Error> {
        let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
        if components.is_empty() {
            return self.entry_at(tree, tree.root_entries_record, tree.root_entry_offset).map(Some);
        }
        let mut table_offset = tree.root_dir;
        for (depth, component) in components.iter().enumerate() {
            let table = self.dir_table(tree, table_offset)?;
            let Some(child) = table.find(component) else {
                return Ok(None);
            };
            if depth + 1 == components.len() {
                return self.entry_at(tree, child.entries_record, child.entry_offset).map(Some);
            }
            if child.kind != EntryKind::Directory.code() || child.dir_table == 0 {
                return Ok(None);
            }
            table_offset = child.dir_table;
        }
        Ok(None)
    }

    /// The children of the directory at `path`, with their entries, sorted by name.
    pub fn list_dir(&self, tree: &TreeSection, path: &[u8]) -> Result<Option<Vec<PathEntry>>, Error> {
        let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
        let mut table_offset = tree.root_dir;
        for component in &components {
            let table = self.dir_table(tree, table_offset)?;
            match table.find(component) {
                Some(child) if child.kind == EntryKind::Directory.code() && child.dir_table != 0 => {
                    table_offset = child.dir_table
                }
                _ => return Ok(None),
            }
        }
        let table = self.dir_table(tree, table_offset)?;
        let base = components.join(&b'/');
        let mut out = Vec::with_capacity(table.children.len());
        let mut cached: Option<(u64, Vec<(u32, Entry)>)> = None;
        for (child, name) in &table.children {
            if cached.as_ref().map(|c| c.0) != Some(child.entries_record) {
                cached = Some((child.entries_record, self.entries_at(tree, child.entries_record)?));
            }
            let entries = &cached.as_ref().expect("just filled").1;
            let entry =
                entries.iter().find(|(at, _)| *at == child.entry_offset).map(|(_, e)| e.clone()).ok_or_else(|| {
                    Error::new(ErrorClass::IndexMismatch, "FILES_DIR child", "no entry at its location")
                        .at(child.entries_record)
                        .in_section(&tree.name)
                })?;
            out.push(PathEntry { path: join(&base, name), entry });
        }
        Ok(Some(out))
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
    /// with its file offset; then checks the whole against the entry's BLAKE3.
    /// Returns false when the check was skipped: the holes exceed
    /// [`crate::Limits::max_hole_hash_bytes`].
    pub fn file_content(
        &self,
        tree: &TreeSection,
        entry: &Entry,
        visit: impl FnMut(u64, Piece<'_>) -> Result<(), Error>,
    ) -> Result<bool, Error> {
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
    ) -> Result<bool, Error> {
        let check = crate::archive::hole_bytes(entry) <= self.limits().max_hole_hash_bytes;
        let mut hasher = blake3::Hasher::new();
        let hash_zeros = |hasher: &mut blake3::Hasher, n: u64| {
            if check {
                strata_format::files::hash_zeros(hasher, n)
            }
        };
        let mut at = 0u64;
        for extent in &entry.extents {
            if extent.file_offset > at {
                hash_zeros(&mut hasher, extent.file_offset - at);
                visit(at, Piece::Hole(extent.file_offset - at))?;
            }
            let start = extent.chunk_offset as usize;
            let end = start.saturating_add(extent.length as usize);
            // The file's BLAKE3 is checked below only when `check` holds: a partial
            // decode, which skips the chunk's BLAKE3, is used only then.
            let (whole, part);
            let raw: &[u8] = if partial && check && entry.extents.len() == 1 && self.first_read_of(extent.chunk_ref) {
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
            hasher.update(bytes);
            visit(extent.file_offset, Piece::Data(bytes))?;
            at = extent.end();
        }
        if entry.size > at {
            hash_zeros(&mut hasher, entry.size - at);
            visit(at, Piece::Hole(entry.size - at))?;
        }
        if !check {
            return Ok(false);
        }
        if hasher.finalize().as_bytes() != &entry.blake3 {
            return Err(Error::new(
                ErrorClass::ChunkCorrupt,
                "file content BLAKE3",
                format!("entry {}: the content does not match its BLAKE3", entry.entry_id),
            )
            .in_section(&tree.name));
        }
        Ok(true)
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
