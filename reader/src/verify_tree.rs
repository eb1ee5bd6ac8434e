//! Verification of file-tree sections: the walk's handlers for the `FILES_*`
//! records and the cross-checks that tie entries, directory tables, the section
//! index and chunk references together. Damage is reported by file path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use strata_format::files::{
    self, DirTable, Entry, EntryKind, FileExtent, FilesBegin, FilesEnd, FilesIndexHead, NO_PARENT,
};
use strata_format::image::ExtentTableHead;
use strata_format::ErrorClass;

use crate::verify::{Affected, ForwardTarget, Summary, Walk};
use crate::ReadAt;

/// What the walk keeps of each entry, and salvage starts from.
#[derive(Clone, Debug)]
pub struct EntryFacts {
    pub parent_id: u64,
    pub name: Vec<u8>,
    pub kind: EntryKind,
    /// A hard link's `link_id`; else 0.
    pub link_id: u64,
    pub record: u64,
    pub offset: u32,
    /// The entry broke no rule of its table (8.3).
    pub sound: bool,
    /// A regular file whose every chunk is valid and whose content matches its BLAKE3.
    pub content_intact: bool,
}

/// A file-tree section as the walk finds it.
pub(crate) struct WalkTree {
    pub begin_offset: u64,
    pub section_id: u32,
    pub name: String,
    pub chunk_count: u64,
    pub chunk_bytes: u64,
    pub files: u64,
    pub directories: u64,
    pub content_bytes: u64,
    pub chunk_size: u32,
    pub captured: u64,
    pub end: Option<(u64, FilesEnd)>,
    /// By `entry_id`: after damage, ids have gaps where entries were lost.
    pub entries: BTreeMap<u64, EntryFacts>,
    /// The id the next entry should have.
    next_id: u64,
    /// A record was lost since the last entry read: the next may skip ids
    /// (FORMAT.md section 11, "What a verifier reports").
    jump_ok: bool,
    /// A record of the section was lost: entries may name lost ones, and their
    /// extents are no longer compared with those announced.
    lost: bool,
    siblings: HashSet<(u64, Vec<u8>)>,
    /// Extents announced by `FILES_EXTENTS` for entries not seen yet.
    announced: HashMap<u64, Vec<FileExtent>>,
    /// Every extent of the `FILES_EXTENTS` records read, for the reference check.
    file_extents: Vec<FileExtent>,
    entries_records: Vec<u64>,
    /// The first `FILES_DIR` read of each directory.
    pub dir_tables: HashMap<u64, (u64, DirTable)>,
    /// Every `FILES_DIR` read, in archive order.
    dirs: Vec<(u64, DirTable)>,
    /// How many entries read name each directory as their parent.
    children: HashMap<u64, usize>,
    /// Every `FILES_INDEX` read, in archive order.
    pub(crate) indexes: Vec<(u64, FilesIndexHead, Vec<u64>)>,
}

impl WalkTree {
    /// A record of the section was lost (or could not be read).
    pub(crate) fn note_lost(&mut self) {
        self.jump_ok = true;
        self.lost = true;
    }

    /// The path of an entry, from its parents.
    pub fn path_of(&self, entry_id: u64) -> Vec<u8> {
        self.path_with(entry_id, &HashMap::new())
    }

    /// The path of an entry, from its parents' entries or, for entries whose
    /// records were lost, from what the directory tables say of them.
    pub fn path_with(&self, entry_id: u64, listed: &Listed) -> Vec<u8> {
        tree_path(&self.entries, &|id| listed.get(&id).map(|(parent, name, _)| (*parent, name.as_slice())), entry_id)
    }

    /// What the surviving `FILES_DIR` tables say of each child: its `entry_id` to
    /// its parent's id, its name and its kind code.
    pub fn listed(&self) -> Listed {
        self.dir_tables
            .values()
            .flat_map(|(_, table)| {
                table.children.iter().map(|(child, name)| (child.entry_id, (table.entry_id, name.clone(), child.kind)))
            })
            .collect()
    }
}

/// The path of `entry` (not yet in the tree's entries), from its parent's.
fn entry_path(tree: &WalkTree, entry: &Entry) -> Vec<u8> {
    let parent = if entry.parent_id == NO_PARENT { Vec::new() } else { tree.path_of(entry.parent_id) };
    if parent.is_empty() {
        entry.name.clone()
    } else {
        [parent, entry.name.clone()].join(&b'/')
    }
}

/// Child id to (parent id, name, kind code), from the directory tables.
pub type Listed = HashMap<u64, (u64, Vec<u8>, u8)>;

/// The path of entry `entry_id` of a tree whose surviving entries are
/// `entries`; `listed` names the entries whose records were lost (parent id and
/// name). A part nothing names shows as `#ID`. Entry 0 is the root, named by
/// nothing: paths start below it.
pub(crate) fn tree_path<'a>(
    entries: &'a BTreeMap<u64, EntryFacts>,
    listed: &dyn Fn(u64) -> Option<(u64, &'a [u8])>,
    entry_id: u64,
) -> Vec<u8> {
    let mut parts = Vec::new();
    let mut id = entry_id;
    // A parent comes before its child: a parent id not below the child's names
    // no entry read before it (conformance.md, `affects`).
    let mut below = u64::MAX;
    while id != 0 {
        let known = match entries.get(&id) {
            Some(facts) if id < below => Some((facts.parent_id, facts.name.as_slice())),
            Some(_) => None,
            None => listed(id),
        };
        match known {
            Some((NO_PARENT, name)) => {
                parts.push(name.to_vec());
                break;
            }
            // A chain longer than the tree has entries is a loop in damaged tables.
            Some((parent, name)) if parts.len() <= entries.len() + 4096 => {
                parts.push(name.to_vec());
                below = id;
                id = parent;
            }
            _ => {
                parts.push(format!("#{id}").into_bytes());
                break;
            }
        }
    }
    parts.reverse();
    parts.join(&b'/')
}

impl<R: ReadAt + ?Sized> Walk<'_, R> {
    pub(crate) fn handle_files_begin(&mut self, pos: u64, body: &[u8]) {
        let begin = match FilesBegin::parse(body) {
            Ok(begin) => begin,
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
                return;
            }
        };
        let name = begin.name_lossy();
        self.open_new_section(pos, begin.section_id, &name, "FILES_BEGIN");
        self.open_tree = Some(self.trees.len());
        self.order.push((strata_format::SectionKind::FileTree, self.trees.len()));
        self.trees.push(WalkTree {
            begin_offset: pos,
            section_id: begin.section_id,
            name,
            chunk_size: begin.chunk_size,
            captured: begin.captured,
            chunk_count: 0,
            chunk_bytes: 0,
            files: 0,
            directories: 0,
            content_bytes: 0,
            end: None,
            entries: BTreeMap::new(),
            next_id: 0,
            jump_ok: false,
            lost: false,
            siblings: HashSet::new(),
            announced: HashMap::new(),
            file_extents: Vec::new(),
            entries_records: Vec::new(),
            dir_tables: HashMap::new(),
            dirs: Vec::new(),
            children: HashMap::new(),
            indexes: Vec::new(),
        });
    }

    /// The open file-tree section, if `section_id` is its; else the problem
    /// reported.
    fn open_tree_for(&mut self, pos: u64, section_id: u32, what: &str) -> Result<usize, usize> {
        match self.open_tree.filter(|&i| self.trees[i].section_id == section_id) {
            Some(open) => Ok(open),
            None => Err(self.problem(
                ErrorClass::RecordMalformed,
                pos,
                format!("{what} section_id"),
                format!("section {section_id} is not the open file-tree section"),
            )),
        }
    }

    pub(crate) fn handle_files_extents(&mut self, pos: u64, body: &[u8]) {
        // The head as for IMAGE_EXTENTS, with 40-byte extents; each extent's own
        // rules are checked below, one by one (FORMAT.md 8.2), and the record is
        // read whatever they say.
        let head = body.get(..16).map(|raw| ExtentTableHead::decode(raw.try_into().expect("16 bytes")));
        let max = u64::from(strata_format::limits::MAX_EXTENTS_PER_RECORD);
        let fault = match head {
            None => Some("a body shorter than 16 bytes".to_string()),
            Some(h) if h.reserved != 0 => Some("reserved field set".to_string()),
            Some(h) if h.count == 0 || h.count > max => Some(format!("count {}, expected 1 to 65536", h.count)),
            Some(h) if h.count * FileExtent::SIZE as u64 != body.len() as u64 - 16 => {
                Some(format!("count {} does not match {} bytes of extents", h.count, body.len() - 16))
            }
            Some(_) => None,
        };
        let (Some(head), None) = (head, fault.clone()) else {
            let p = self.problem(ErrorClass::RecordMalformed, pos, "FILES_EXTENTS head", fault.unwrap_or_default());
            self.lost(p);
            return;
        };
        let table = &body[16..];
        let open = match self.open_tree_for(pos, head.section_id, "FILES_EXTENTS") {
            Ok(open) => open,
            Err(p) => {
                self.lost(p);
                return;
            }
        };
        let extents: Vec<FileExtent> = table
            .chunks_exact(FileExtent::SIZE)
            .map(|raw| FileExtent::decode(raw.try_into().expect("40 bytes")))
            .collect();
        for extent in extents {
            let range = extent.file_offset..extent.file_offset.saturating_add(extent.length);
            let mut faults: Vec<(ErrorClass, &str)> = Vec::new();
            if extent.length == 0 {
                faults.push((ErrorClass::ExtentMap, "empty"));
            }
            if extent.file_offset.checked_add(extent.length).is_none()
                || u64::from(extent.chunk_offset) + extent.length > u64::from(strata_format::limits::MAX_CHUNK_RAW)
            {
                faults.push((ErrorClass::ExtentMap, "runs past the end of any file or chunk"));
            }
            if extent.chunk_ref < strata_format::image::REF_FIRST_OFFSET {
                faults.push((ErrorClass::RecordMalformed, "its chunk_ref is not a record offset"));
            }
            if extent.reserved != 0 {
                faults.push((ErrorClass::RecordMalformed, "reserved field set"));
            }
            if extent.entry_id < self.trees[open].next_id {
                faults.push((ErrorClass::RecordMalformed, "its entry came already (an entry comes after its extents)"));
            }
            let before = self.trees[open].announced.get(&extent.entry_id).and_then(|l| l.last()).map(FileExtent::end);
            if extent.length > 0 && before.is_some_and(|end| extent.file_offset < end) {
                faults.push((ErrorClass::ExtentMap, "starts before the file's extent before it ends"));
            }
            for (class, detail) in faults {
                let p = self.problem(
                    class,
                    pos,
                    "file extent",
                    format!("entry {} at file offset {}: {detail}", extent.entry_id, extent.file_offset),
                );
                self.file_affects.push((p, open, extent.entry_id, range.clone()));
            }
            if self.is_ancestor_ref(extent.chunk_ref) {
                let target = ForwardTarget::File { tree: open, entry_id: extent.entry_id, range: range.clone() };
                let needs = u64::from(extent.chunk_offset) + extent.length;
                self.note_ancestor_ref(pos, extent.chunk_ref, target, needs, false);
            } else if extent.chunk_ref >= strata_format::image::REF_FIRST_OFFSET {
                self.trees[open].file_extents.push(extent);
                if extent.chunk_ref > pos {
                    let target = ForwardTarget::File { tree: open, entry_id: extent.entry_id, range };
                    self.expect_forward(pos, extent.chunk_ref, target);
                }
            }
            self.trees[open].announced.entry(extent.entry_id).or_default().push(extent);
        }
    }

    pub(crate) fn handle_files_entries(&mut self, pos: u64, body: &[u8]) {
        let (section_id, entries) = match read_entries(body) {
            Ok(parsed) => parsed,
            Err(detail) => {
                let p = self.problem(ErrorClass::RecordMalformed, pos, "FILES_ENTRIES body", detail);
                self.lost(p);
                return;
            }
        };
        let open = match self.open_tree_for(pos, section_id, "FILES_ENTRIES") {
            Ok(open) => open,
            Err(p) => {
                self.lost(p);
                return;
            }
        };
        self.trees[open].entries_records.push(pos);
        for entry in entries {
            self.check_entry(open, pos, entry);
        }
    }

    fn check_entry(&mut self, open: usize, pos: u64, read: ReadEntry) {
        let ReadEntry { offset, entry, kind_code, reserved } = read;
        let tree = &mut self.trees[open];
        let expected_id = tree.next_id;
        let id = entry.entry_id;
        let lost_before = id > expected_id && tree.jump_ok;
        let section_lost = tree.lost;
        // An entry whose parent or link target was in a lost record is not at
        // fault itself: salvage keeps it elsewhere (FORMAT.md section 11).
        let lost = |other: u64| other < id && !tree.entries.contains_key(&other) && section_lost;
        // The path is built only for a message: building it for every entry
        // would cost its depth each time, quadratic in a deep tree.
        let shown = |tree: &WalkTree| strata_format::escaped(&entry_path(tree, &entry));
        let mut faults: Vec<(ErrorClass, String)> = entry_faults(&entry, kind_code, reserved, tree.captured);
        if id != expected_id && !lost_before {
            faults.push((ErrorClass::RecordMalformed, format!("entry_id {id}, expected {expected_id}")));
        }
        tree.jump_ok = false;
        match entry.kind {
            EntryKind::File => {
                tree.files += 1;
                tree.content_bytes += entry.size;
            }
            EntryKind::Directory => tree.directories += 1,
            _ => {}
        }
        // A repeated id keeps the first entry that had it; the later one is
        // checked by its own rules and its id only.
        let first = !tree.entries.contains_key(&id);
        let mut extents_differ = false;
        let misplaced = entry.kind == EntryKind::File && extents_misplaced(&entry);
        if first {
            tree.next_id = tree.next_id.max(id.saturating_add(1));
            if misplaced {
                faults.push((
                    ErrorClass::ExtentMap,
                    format!("\"{}\": extents out of order, overlapping, or past its size", shown(tree)),
                ));
            }
            if id == 0 {
                if entry.parent_id != NO_PARENT || entry.kind != EntryKind::Directory || !entry.name.is_empty() {
                    faults.push((ErrorClass::RecordMalformed, "entry 0 is not a root directory".into()));
                }
            } else {
                let parent_ok = entry.parent_id < id
                    && tree.entries.get(&entry.parent_id).is_some_and(|p| p.kind == EntryKind::Directory);
                if !parent_ok && !lost(entry.parent_id) {
                    faults.push((
                        ErrorClass::RecordMalformed,
                        format!("\"{}\": parent {} is not an earlier directory", shown(tree), entry.parent_id),
                    ));
                }
            }
            if entry.kind == EntryKind::Hardlink {
                let target_ok =
                    entry.link_id < id && tree.entries.get(&entry.link_id).is_some_and(|t| t.kind == EntryKind::File);
                if !target_ok && !lost(entry.link_id) {
                    faults.push((
                        ErrorClass::RecordMalformed,
                        format!("\"{}\": hard link to {}, not an earlier file", shown(tree), entry.link_id),
                    ));
                }
            }
            if entry.parent_id != NO_PARENT && id != 0 {
                if !tree.siblings.insert((entry.parent_id, entry.name.clone())) {
                    faults.push((
                        ErrorClass::RecordMalformed,
                        format!("\"{}\": a second entry of that name in one directory", shown(tree)),
                    ));
                }
                *tree.children.entry(entry.parent_id).or_default() += 1;
            }
            let announced = tree.announced.remove(&id).unwrap_or_default();
            // After a lost record, what was announced may be lost too: not compared.
            extents_differ = !section_lost && announced != entry.extents;
            if extents_differ {
                faults.push((
                    ErrorClass::IndexMismatch,
                    format!("\"{}\": its extents differ from those its FILES_EXTENTS records announced", shown(tree)),
                ));
            }
            let sound = faults.iter().all(|(class, _)| *class != ErrorClass::RecordMalformed);
            tree.entries.insert(
                id,
                EntryFacts {
                    parent_id: entry.parent_id,
                    name: entry.name.clone(),
                    kind: entry.kind,
                    link_id: entry.link_id,
                    record: pos,
                    offset,
                    sound,
                    content_intact: false,
                },
            );
        }
        let name = tree.name.clone();
        for (class, detail) in faults {
            let p = self.problem(class, pos, "entry", detail);
            if class == ErrorClass::IndexMismatch {
                // The content is in doubt, all of it.
                let path = entry_path(&self.trees[open], &entry);
                let affected = Affected { section: name.clone(), path: Some(path), range: 0..entry.size };
                self.report.problems[p].affects.push(affected);
            }
        }
        let flagged = |bit: u8| entry.flags & bit != 0;
        // Flag bits 1 and 2 mean something on regular files only (8.3).
        let is_file = entry.kind == EntryKind::File;
        let lost = flagged(files::EntryFlags::LOST_IN_SALVAGE);
        let unreadable = is_file && flagged(files::EntryFlags::UNREADABLE);
        let changed = is_file && flagged(files::EntryFlags::CHANGED_WHILE_READ);
        if lost || unreadable || changed {
            let (section, path) = (self.trees[open].name.clone(), entry_path(&self.trees[open], &entry));
            for (list, set) in [
                (&mut self.report.lost_entries, lost),
                (&mut self.report.unreadable_entries, unreadable),
                (&mut self.report.changed_entries, changed),
            ] {
                if set {
                    list.push((section.clone(), path.clone()));
                }
            }
        }
        let no_content = entry.flags & (files::EntryFlags::UNREADABLE | files::EntryFlags::LOST_IN_SALVAGE) != 0;
        if first && is_file && !extents_differ && !misplaced {
            let intact = no_content || self.check_content(open, pos, &entry);
            if let Some(facts) = self.trees[open].entries.get_mut(&id) {
                facts.content_intact = intact;
            }
        }
    }

    /// Rebuilds a file's data from its chunks and checks its digest (holes are
    /// not hashed). Damaged chunks are reported where the walk met them; this
    /// adds the file's path. Returns whether every chunk is valid and the
    /// content matches.
    fn check_content(&mut self, open: usize, pos: u64, entry: &Entry) -> bool {
        // Paths only for messages (see check_entry).
        let path_of = |walk: &Self| entry_path(&walk.trees[open], entry);
        let mut digest = files::FileDigest::new();
        let name = self.trees[open].name.clone();
        for extent in &entry.extents {
            let Some(data) = self.chunk_data(extent.chunk_ref) else {
                // Unreadable chunk: the reference check names this file.
                return false;
            };
            let start = extent.chunk_offset as usize;
            let Some(bytes) = data.get(start..start + extent.length as usize) else {
                // Past its chunk: the reference check names this file.
                return false;
            };
            digest.data(extent.file_offset, bytes);
        }
        if digest.finish(entry.size) != entry.digest {
            let path = path_of(self);
            let p = self.problem(
                ErrorClass::ChunkCorrupt,
                pos,
                "file content digest",
                format!("\"{}\": the content does not match its digest", strata_format::escaped(&path)),
            );
            self.report.problems[p].affects.push(Affected { section: name, path: Some(path), range: 0..entry.size });
            return false;
        }
        true
    }

    /// A valid chunk's raw bytes, decoded again (one cached): `None` if the walk
    /// did not find a valid chunk there.
    fn chunk_data(&mut self, chunk_ref: u64) -> Option<Arc<Vec<u8>>> {
        if self.is_ancestor_ref(chunk_ref) {
            return self.ancestor_chunk(chunk_ref).map(|(raw, _)| raw);
        }
        self.chunks.get(&chunk_ref)?;
        if let Some((cached, data)) = &self.chunk_cache {
            if *cached == chunk_ref {
                return Some(data.clone());
            }
        }
        let chunk =
            crate::archive::decode_chunk_record(self.source, self.size, chunk_ref, self.tag, &self.limits).ok()?;
        let raw = Arc::new(chunk.raw);
        self.chunk_cache = Some((chunk_ref, raw.clone()));
        Some(raw)
    }

    pub(crate) fn handle_files_end(&mut self, pos: u64, body: &[u8]) {
        let Ok(raw) = <&[u8; FilesEnd::SIZE]>::try_from(body) else {
            self.problem(ErrorClass::RecordMalformed, pos, "FILES_END body", "not 64 bytes");
            return;
        };
        let end = FilesEnd::decode(raw);
        let Ok(open) = self.open_tree_for(pos, end.section_id, "FILES_END") else {
            return;
        };
        // It ends its section; one that breaks a rule of its body is not used.
        self.open_tree = None;
        if end.reserved != 0 {
            self.problem(ErrorClass::RecordMalformed, pos, "FILES_END reserved", "not zero");
            return;
        }
        self.trees[open].end = Some((pos, end));
        self.summaries.push((pos, Summary::FilesEnd(open)));
    }

    /// The summary checks of a `FILES_END` (FORMAT.md 8.4): its totals, content
    /// announced for entries that never came, and the root entry.
    pub(crate) fn summary_files_end(&mut self, t: usize) {
        let tree = &self.trees[t];
        let Some((pos, end)) = tree.end else { return };
        let counts = (
            tree.next_id,
            tree.files,
            tree.directories,
            tree.content_bytes,
            tree.chunk_count,
            tree.chunk_bytes,
            tree.begin_offset,
        );
        let declared = (
            end.entry_count,
            end.file_count,
            end.directory_count,
            end.content_bytes,
            end.chunk_count,
            end.chunk_bytes,
            end.begin_offset,
        );
        let orphans = tree.announced.len();
        let rootless = !tree.entries.contains_key(&0);
        if counts != declared {
            self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "FILES_END totals",
                format!("entries, files, directories, content bytes, chunks, chunk bytes, begin offset: records give {counts:?}, FILES_END says {declared:?}"),
            );
        }
        if orphans > 0 {
            self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "FILES_EXTENTS",
                format!("content was announced for {orphans} entries that never came"),
            );
        }
        if rootless {
            self.problem(ErrorClass::RecordMalformed, pos, "FILES_END", "the section has no root entry");
        }
    }

    pub(crate) fn handle_files_dir(&mut self, pos: u64, body: &[u8]) {
        match DirTable::parse(body) {
            Ok(table) => match self.trees.iter().position(|t| t.section_id == table.section_id) {
                Some(t) => {
                    let tree = &mut self.trees[t];
                    tree.dir_tables.entry(table.entry_id).or_insert_with(|| (pos, table.clone()));
                    self.summaries.push((pos, Summary::FilesDir(t, tree.dirs.len())));
                    tree.dirs.push((pos, table));
                }
                None => {
                    self.problem(
                        ErrorClass::RecordMalformed,
                        pos,
                        "FILES_DIR section_id",
                        format!("{}", table.section_id),
                    );
                }
            },
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
            }
        }
    }

    pub(crate) fn handle_files_index(&mut self, pos: u64, body: &[u8]) {
        match files::parse_files_index(body) {
            Ok((head, records)) => match self.trees.iter().position(|t| t.section_id == head.section_id) {
                Some(t) => {
                    let tree = &mut self.trees[t];
                    self.summaries.push((pos, Summary::FilesIndex(t, tree.indexes.len())));
                    tree.indexes.push((pos, head, records));
                }
                None => {
                    self.problem(
                        ErrorClass::RecordMalformed,
                        pos,
                        "FILES_INDEX section_id",
                        format!("{}", head.section_id),
                    );
                }
            },
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
            }
        }
    }

    /// Every extent of the `FILES_EXTENTS` records read must resolve to a valid
    /// chunk holding its bytes; damage is named by file path.
    pub(crate) fn check_tree_references(&mut self) {
        for t in 0..self.trees.len() {
            let extents = std::mem::take(&mut self.trees[t].file_extents);
            for extent in &extents {
                // The path only for a problem: building it costs the file's depth,
                // quadratic over many files deep in a tree.
                let affected = |walk: &Self| Affected {
                    section: walk.trees[t].name.clone(),
                    path: Some(walk.trees[t].path_of(extent.entry_id)),
                    range: extent.file_offset..extent.end(),
                };
                match self.chunks.get(&extent.chunk_ref) {
                    Some(&(raw, _)) if u64::from(extent.chunk_offset) + extent.length <= u64::from(raw) => {}
                    Some(_) => {
                        let affected = affected(self);
                        let p = self.problem(
                            ErrorClass::ExtentMap,
                            extent.chunk_ref,
                            "file extent",
                            "runs past the end of its chunk",
                        );
                        self.report.problems[p].affects.push(affected);
                    }
                    None => {
                        let affected = affected(self);
                        self.attach_or_dangling(extent.chunk_ref, affected);
                    }
                }
            }
            self.trees[t].file_extents = extents;
        }
    }

    /// A `FILES_DIR` compared with the entries (FORMAT.md 8.5): the table of a
    /// directory of the section that no earlier table named, listing exactly
    /// its children where they are.
    pub(crate) fn summary_files_dir(&mut self, t: usize, i: usize) {
        let tree = &self.trees[t];
        let (offset, table) = &tree.dirs[i];
        let id = table.entry_id;
        let first = tree.dir_tables.get(&id).is_some_and(|(o, _)| o == offset);
        let is_dir = tree.entries.get(&id).is_some_and(|d| d.kind == EntryKind::Directory);
        let children = tree.children.get(&id).copied().unwrap_or(0);
        let agrees = first
            && is_dir
            && table.children.len() == children
            && table.children.iter().all(|(child, child_name)| {
                tree.entries.get(&child.entry_id).is_some_and(|c| {
                    c.parent_id == id
                        && &c.name == child_name
                        && c.kind.code() == child.kind
                        && c.record == child.entries_record
                        && c.offset == child.entry_offset
                        && if c.kind == EntryKind::Directory {
                            tree.dir_tables.get(&child.entry_id).map(|(o, _)| *o) == Some(child.dir_table)
                        } else {
                            child.dir_table == 0
                        }
                })
            });
        if !agrees {
            let detail = format!(
                "section {:?}: the FILES_DIR of \"{}\" disagrees with the entries",
                tree.name,
                strata_format::escaped(&tree.path_of(id))
            );
            let offset = *offset;
            self.problem(ErrorClass::IndexMismatch, offset, "FILES_DIR", detail);
        }
    }

    /// A `FILES_INDEX` compared with its section (FORMAT.md 8.6).
    pub(crate) fn summary_files_index(&mut self, t: usize, i: usize) {
        let tree = &self.trees[t];
        let (offset, head, records) = &tree.indexes[i];
        let root = tree.entries.get(&0).map(|r| (r.record, r.offset));
        let agrees = records == &tree.entries_records
            && root == Some((head.root_entries_record, head.root_entry_offset))
            && tree.dir_tables.get(&0).map(|(o, _)| *o) == Some(head.root_dir)
            && tree
                .entries
                .iter()
                .all(|(id, facts)| facts.kind != EntryKind::Directory || tree.dir_tables.contains_key(id));
        if !agrees {
            let detail = format!("section {:?}: FILES_INDEX disagrees with the section's records", tree.name);
            let offset = *offset;
            self.problem(ErrorClass::IndexMismatch, offset, "FILES_INDEX", detail);
        }
    }
}

/// An entry as a verifier reads it (FORMAT.md section 11): its fields, with
/// what the `Entry` type cannot hold kept apart.
pub(crate) struct ReadEntry {
    /// Byte offset of the entry in its record's body.
    pub offset: u32,
    /// The entry; a `kind` this version does not know reads as a fifo, which
    /// is neither a file nor a directory, and is reported by `kind_code`.
    pub entry: Entry,
    pub kind_code: u8,
    /// A reserved field of the entry is not zero.
    pub reserved: bool,
}

/// Reads a `FILES_ENTRIES` body: its `section_id` and entries, or why it
/// cannot be read (FORMAT.md section 11: its head breaks a rule, or the lengths
/// of its entries do not fill it exactly). Every other rule of 8.3 is the
/// caller's, entry by entry.
pub(crate) fn read_entries(body: &[u8]) -> Result<(u32, Vec<ReadEntry>), String> {
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if body.len() < 16 {
        return Err(format!("a body of {} bytes, shorter than its 16-byte head", body.len()));
    }
    let (section_id, reserved, count) = (u32_at(0), u32_at(4), u64_at(8));
    if reserved != 0 {
        return Err("reserved field of the head set".into());
    }
    if count == 0 || count > ((body.len() - 16) / files::ENTRY_HEAD) as u64 {
        return Err(format!("count {count}: at least 1, and entries of {} bytes do not fit", body.len() - 16));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut p = 16usize;
    for _ in 0..count {
        if body.len() - p < files::ENTRY_HEAD {
            return Err(format!("entry at body offset {p}: shorter than its 144-byte head"));
        }
        let head = files::EntryHead::decode(body[p..p + files::ENTRY_HEAD].try_into().expect("144 bytes"));
        let length = head.entry_length as usize;
        if length < files::ENTRY_HEAD || length > body.len() - p {
            return Err(format!("entry at body offset {p}: entry_length {length}, {} bytes left", body.len() - p));
        }
        let stop = p + length;
        let mut q = p + files::ENTRY_HEAD;
        let strings =
            [head.name_length as usize, head.user_length.into(), head.group_length.into(), head.target_length as usize];
        if strings.iter().sum::<usize>() > stop - q {
            return Err(format!("entry {}: its names and target exceed entry_length {length}", head.entry_id));
        }
        let mut take = |n: usize| {
            let bytes = body[q..q + n].to_vec();
            q += n;
            bytes
        };
        let (name, user, group, target) = (take(strings[0]), take(strings[1]), take(strings[2]), take(strings[3]));
        let mut xattrs = Vec::new();
        for _ in 0..head.xattr_count {
            if stop - q < 5 {
                return Err(format!("entry {}: its xattrs do not fit in entry_length {length}", head.entry_id));
            }
            let name_length = body[q] as usize;
            let value_length = u32_at(q + 1) as usize;
            q += 5;
            if name_length + value_length > stop - q {
                return Err(format!("entry {}: an xattr does not fit in entry_length {length}", head.entry_id));
            }
            let name = body[q..q + name_length].to_vec();
            let value = body[q + name_length..q + name_length + value_length].to_vec();
            q += name_length + value_length;
            xattrs.push(files::Xattr { name, value });
        }
        if head.extent_count as usize * FileExtent::SIZE != stop - q {
            return Err(format!(
                "entry {}: entry_length {length} is not 144 plus the lengths that follow",
                head.entry_id
            ));
        }
        let extents = body[q..stop]
            .chunks_exact(FileExtent::SIZE)
            .map(|raw| FileExtent::decode(raw.try_into().expect("40 bytes")))
            .collect();
        let kind = EntryKind::from_code(head.kind).unwrap_or(EntryKind::Fifo);
        let entry = Entry { name, user, group, target, xattrs, extents, ..head.entry_fields(kind) };
        let reserved = head.reserved != 0 || head.reserved2 != 0;
        entries.push(ReadEntry { offset: p as u32, entry, kind_code: head.kind, reserved });
        p = stop;
    }
    if p != body.len() {
        return Err(format!("{count} entries end at body offset {p}, the body has {} bytes", body.len()));
    }
    Ok((section_id, entries))
}

/// The rules of 8.3 that one entry can be checked against on its own, with
/// its section's `captured` bits: `record-malformed`, and `extent-map` for an
/// extent that is empty or runs past the end of any file or chunk.
fn entry_faults(e: &Entry, kind_code: u8, reserved: bool, captured: u64) -> Vec<(ErrorClass, String)> {
    use files::{Captured, EntryFlags};
    use EntryKind::*;
    let mut out: Vec<(ErrorClass, String)> = Vec::new();
    let mut bad = |detail: &str| out.push((ErrorClass::RecordMalformed, format!("entry {}: {detail}", e.entry_id)));
    let known = EntryKind::from_code(kind_code);
    let is = |k: EntryKind| known == Some(k);
    let missing = |bit: u64| captured & bit == 0;
    if known.is_none() {
        bad("unknown kind");
    }
    if e.flags & !EntryFlags::KNOWN != 0 {
        bad("reserved flag bits set");
    }
    if e.flags & EntryFlags::LOST_IN_SALVAGE != 0 && known.is_some() && !is(File) && !is(Directory) {
        bad("flag bit 3 (lost in salvage) on an entry that is neither a file nor a directory");
    }
    if reserved {
        bad("reserved field set");
    }
    if e.mode & !0o7777 != 0 {
        bad("mode has bits beyond 07777");
    }
    if !is(CharDevice) && !is(BlockDevice) && (e.rdev_major != 0 || e.rdev_minor != 0) {
        bad("device numbers on an entry that is not a device");
    }
    if [e.mtime, e.atime, e.ctime, e.btime].iter().any(|t| !t.is_valid()) {
        bad("a time's nanoseconds are 1,000,000,000 or more");
    }
    if missing(Captured::ATIME) && e.atime != files::Timestamp::ZERO {
        bad("an atime, but atimes were not captured");
    }
    if missing(Captured::CTIME) && e.ctime != files::Timestamp::ZERO {
        bad("a ctime, but ctimes were not captured");
    }
    if missing(Captured::BTIME) && e.flags & EntryFlags::BTIME != 0 {
        bad("a birth time, but birth times were not captured");
    }
    if e.flags & EntryFlags::BTIME == 0 && e.btime != files::Timestamp::ZERO {
        bad("a birth time without flag bit 0");
    }
    if is(Symlink) {
        if e.size != e.target.len() as u64 {
            bad("a symbolic link's size is not its target's length");
        }
    } else if !is(File) && e.size != 0 {
        bad("a size on an entry that is neither a file nor a symbolic link");
    }
    if !is(Hardlink) && e.link_id != 0 {
        bad("link_id on an entry that is not a hard link");
    }
    if !is(File) && e.digest != [0; files::DIGEST_LEN] {
        bad("a digest on an entry that is not a regular file");
    }
    if e.entry_id != 0 || e.parent_id != NO_PARENT {
        if !Entry::name_is_safe(&e.name) {
            bad("unsafe name (empty, `.`, `..`, or holds `/` or NUL)");
        } else if e.name.len() > 255 {
            bad("a name longer than 255 bytes");
        }
    }
    if missing(Captured::OWNER_NAMES) && (!e.user.is_empty() || !e.group.is_empty()) {
        bad("owner names, but owner names were not captured");
    }
    if is(Symlink) {
        if e.target.is_empty() || e.target.len() > files::MAX_TARGET as usize || e.target.contains(&0) {
            bad("a symbolic link's target is 1 to 4095 bytes, none of them NUL");
        }
    } else if !e.target.is_empty() {
        bad("only symbolic links have a target");
    }
    if missing(Captured::XATTRS) && !e.xattrs.is_empty() {
        bad("extended attributes, but they were not captured");
    }
    for (i, x) in e.xattrs.iter().enumerate() {
        if x.name.is_empty() || x.value.len() > files::MAX_XATTR_VALUE as usize {
            bad("an xattr with an empty name or a value over 64 KiB");
        }
        if i > 0 && e.xattrs[i - 1].name >= x.name {
            bad("xattr names not in increasing order");
        }
    }
    if !e.extents.is_empty() && !is(File) {
        bad("extents on an entry that is not a regular file");
    }
    if is(File)
        && e.flags & (EntryFlags::UNREADABLE | EntryFlags::LOST_IN_SALVAGE) != 0
        && (e.size != 0 || !e.extents.is_empty() || e.digest != files::EMPTY_DIGEST)
    {
        bad("content on a file whose flag bit 2 or 3 says it has none");
    }
    for x in &e.extents {
        if x.entry_id != e.entry_id || x.reserved != 0 || x.chunk_ref < strata_format::image::REF_FIRST_OFFSET {
            bad("an extent of another entry, with a reserved field set, or whose chunk_ref is not an offset");
        }
    }
    for x in &e.extents {
        if x.length == 0
            || x.file_offset.checked_add(x.length).is_none()
            || u64::from(x.chunk_offset) + x.length > u64::from(strata_format::limits::MAX_CHUNK_RAW)
        {
            out.push((
                ErrorClass::ExtentMap,
                format!("entry {}: an extent that is empty or runs past any file or chunk", e.entry_id),
            ));
        }
    }
    out
}

/// A regular file's extents are not in increasing order, overlap, or end
/// past its size (FORMAT.md 8.2).
fn extents_misplaced(e: &Entry) -> bool {
    let mut end = 0u64;
    for x in &e.extents {
        if x.file_offset < end {
            return true;
        }
        end = end.max(x.file_offset.saturating_add(x.length));
    }
    end > e.size
}
