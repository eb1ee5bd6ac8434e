//! Verification of file-tree sections: the walk's handlers for the `FILES_*`
//! records and the cross-checks that tie entries, directory tables, the section
//! index and chunk references together. Damage is reported by file path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use strata_format::files::{
    self, Entry, EntryKind, ExtentListRow, FileExtent, FilesBegin, FilesEnd, FilesIndexHead, GroupDir, GroupRow,
    TreeCheck, NO_PARENT,
};
use strata_format::ErrorClass;

use crate::verify::{Affected, ForwardTarget, Summary, Walk};
use crate::ReadAt;

/// What the walk keeps of each entry, and salvage starts from.
#[derive(Clone, Debug)]
pub struct EntryFacts {
    /// The `entry_id` of its directory (8.3).
    pub parent_id: u64,
    /// Its name in that directory, as stored (not checked to be UTF-8).
    pub name: Vec<u8>,
    /// Its kind (8.3).
    pub kind: EntryKind,
    /// A hard link's `link_id`; else 0.
    pub link_id: u64,
    /// Record offset of its group (`FILES_ENTRIES`).
    pub record: u64,
    /// Its row in the group.
    pub offset: u32,
    /// The entry broke no rule of its table (8.3).
    pub sound: bool,
    /// A regular file whose every chunk is valid and whose content matches its BLAKE3.
    pub content_intact: bool,
    /// A regular file's extents as the `FILES_EXTENTS` records read announced
    /// them (FORMAT.md 8.2), in order; empty for other entries.
    pub extents: Vec<FileExtent>,
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
    /// Extents announced by `FILES_EXTENTS` for entries not seen yet, with
    /// the record offset of each.
    announced: HashMap<u64, Vec<(u64, FileExtent)>>,
    /// Every extent of the `FILES_EXTENTS` records read, for the reference check.
    file_extents: Vec<FileExtent>,
    /// The `FILES_EXTENTS` records read: offset, `first_index`, `count`.
    extent_records: Vec<(u64, u64, u64)>,
    /// The index the next `FILES_EXTENTS` record's first extent should have.
    next_extent: u64,
    /// The last extent read of the section: its entry and where it ends, for
    /// the order of 8.2.
    last_extent: Option<(u64, u64, u64)>,
    /// The sum of the `extent_count` of the groups read.
    extents_counted: u64,
    /// The groups read: offset, `first_id`, whether it holds a directory.
    groups: Vec<(u64, u64, bool)>,
    /// The rules between entries (section 8), the entry order among them.
    check: TreeCheck,
    /// The first `FILES_DIR` read of each group, by the group's offset.
    pub dir_tables: HashMap<u64, (u64, GroupDir)>,
    /// Every `FILES_DIR` read, in archive order.
    dirs: Vec<(u64, GroupDir)>,
    /// What the tables should hold, made at the first summary check.
    expected_dirs: Option<HashMap<u64, GroupDir>>,
    /// Every `FILES_INDEX` read, in archive order.
    pub(crate) indexes: Vec<(u64, FilesIndexHead, Vec<GroupRow>)>,
}

impl WalkTree {
    /// A record of the section was lost (or could not be read).
    pub(crate) fn note_lost(&mut self) {
        self.jump_ok = true;
        self.lost = true;
        self.check.entries_lost();
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

    /// What the surviving `FILES_DIR` tables say of entries: each fence
    /// names the first entry of a directory's run in a group, with its
    /// directory's id and its name; its kind code is that of a directory when
    /// a table has a locator for it, else 0 (the tables do not say).
    pub fn listed(&self) -> Listed {
        let dirs: HashSet<u64> =
            self.dir_tables.values().flat_map(|(_, table)| table.locators.iter().map(|l| l.entry_id)).collect();
        let mut out = Listed::new();
        for (_, table) in self.dir_tables.values() {
            for (i, locator) in table.locators.iter().enumerate() {
                for (fence, name) in table.fences_of(i).unwrap_or_default() {
                    let kind = if dirs.contains(&fence.first_child_id) { EntryKind::Directory.code() } else { 0 };
                    out.entry(fence.first_child_id).or_insert((locator.entry_id, name.clone(), kind));
                }
            }
        }
        out
    }
}

/// The path of `entry` (not yet in the tree's entries), from its parent's.
fn entry_path(tree: &WalkTree, entry: &Entry) -> Vec<u8> {
    child_path(tree, entry.parent_id, &entry.name)
}

/// The path of the entry named `name` in directory `parent_id`.
fn child_path(tree: &WalkTree, parent_id: u64, name: &[u8]) -> Vec<u8> {
    let parent = if parent_id == NO_PARENT { Vec::new() } else { tree.path_of(parent_id) };
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent.as_slice(), name].join(&b'/')
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
            announced: HashMap::new(),
            file_extents: Vec::new(),
            extent_records: Vec::new(),
            next_extent: 0,
            last_extent: None,
            extents_counted: 0,
            groups: Vec::new(),
            check: TreeCheck::new(),
            dir_tables: HashMap::new(),
            dirs: Vec::new(),
            expected_dirs: None,
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
        // The head's rules first (FORMAT.md 8.2): a head that breaks one costs
        // the record's extents. Each extent's own rules are checked below, one
        // by one, and the record is read whatever they say.
        let parsed = match files::parse_file_extents(body) {
            Ok(parsed) => parsed,
            Err(e) => {
                let p = self.problem(ErrorClass::RecordMalformed, pos, "FILES_EXTENTS head", e.detail);
                self.lost(p);
                return;
            }
        };
        let open = match self.open_tree_for(pos, parsed.head.section_id, "FILES_EXTENTS") {
            Ok(open) => open,
            Err(p) => {
                self.lost(p);
                return;
            }
        };
        let (first_index, count) = (parsed.head.first_index, parsed.head.count);
        let tree = &self.trees[open];
        // After a lost record, the sequence may go on further (section 11, point 3).
        let expected = tree.next_extent;
        if first_index != expected && !(tree.lost && first_index > expected) {
            self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "FILES_EXTENTS first_index",
                format!("{first_index}, but the section's earlier FILES_EXTENTS records hold {expected} extents"),
            );
        }
        let tree = &mut self.trees[open];
        tree.extent_records.push((pos, first_index, count));
        tree.next_extent = first_index.saturating_add(count);
        for extent in parsed.extents {
            let range = extent.file_offset..extent.file_offset.saturating_add(extent.length);
            let mut faults: Vec<(ErrorClass, &str)> = Vec::new();
            if extent.length == 0 {
                faults.push((ErrorClass::ExtentMap, "empty"));
            }
            // Past its chunk: charged at the chunk (7.2 rule 5, in
            // check_tree_references); past its file's size: when the entry
            // comes (check_entry).
            if extent.chunk_ref < strata_format::image::REF_FIRST_OFFSET {
                faults.push((ErrorClass::RecordMalformed, "its chunk_ref is not a record offset"));
            }
            let tree = &mut self.trees[open];
            if extent.entry_id < tree.next_id {
                faults.push((ErrorClass::RecordMalformed, "its entry came already (an entry comes after its extents)"));
            }
            // The order of 8.2: increasing (entry_id, file_offset), a file's
            // extents not overlapping.
            match tree.last_extent {
                Some((id, _, _)) if extent.entry_id < id => {
                    faults.push((ErrorClass::ExtentMap, "out of order: after an extent of a later entry"))
                }
                Some((id, offset, end)) if extent.entry_id == id && extent.file_offset < end => faults.push((
                    ErrorClass::ExtentMap,
                    if extent.file_offset <= offset {
                        "out of order: not after the file's extent before it"
                    } else {
                        "overlaps the file's extent before it"
                    },
                )),
                _ => {}
            }
            tree.last_extent = Some((extent.entry_id, extent.file_offset, extent.end()));
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
                self.note_ancestor_ref(pos, extent.chunk_ref, target, needs);
            } else if extent.chunk_ref >= strata_format::image::REF_FIRST_OFFSET {
                self.trees[open].file_extents.push(extent);
                if extent.chunk_ref > pos {
                    let target = ForwardTarget::File { tree: open, entry_id: extent.entry_id, range };
                    self.expect_forward(pos, extent.chunk_ref, target);
                }
            }
            self.trees[open].announced.entry(extent.entry_id).or_default().push((pos, extent));
        }
    }

    pub(crate) fn handle_files_entries(&mut self, pos: u64, body: &[u8]) {
        let group = match files::parse_group(body) {
            Ok(group) => group,
            Err(e) => {
                let p = self.problem(ErrorClass::RecordMalformed, pos, "FILES_ENTRIES body", e.detail);
                self.lost(p);
                return;
            }
        };
        let head = group.head;
        let open = match self.open_tree_for(pos, head.section_id, "FILES_ENTRIES") {
            Ok(open) => open,
            Err(p) => {
                self.lost(p);
                return;
            }
        };
        let tree = &self.trees[open];
        let fault = if head.captured != tree.captured {
            Some(format!("captured {:#x}, the section's FILES_BEGIN says {:#x}", head.captured, tree.captured))
        } else if head.first_id != tree.next_id && !(tree.lost && head.first_id > tree.next_id) {
            Some(format!("first_id {}, expected {}", head.first_id, tree.next_id))
        } else {
            None
        };
        if let Some(detail) = fault {
            let p = self.problem(ErrorClass::RecordMalformed, pos, "FILES_ENTRIES head", detail);
            self.lost(p);
            return;
        }
        // The group's extents: extent_base and the extent list, checked when
        // every earlier group and FILES_EXTENTS record was read (8.3).
        let counts: u64 =
            group.entries.iter().filter_map(|e| e.as_ref().ok()).fold(0u64, |n, e| n.saturating_add(e.extent_count));
        let tree = &self.trees[open];
        if !tree.lost {
            let base = tree.extents_counted;
            let expected_list: Vec<ExtentListRow> = if counts == 0 {
                Vec::new()
            } else {
                let last = base.saturating_add(counts);
                tree.extent_records
                    .iter()
                    .filter(|&&(_, first, count)| first < last && first.saturating_add(count) > base)
                    .map(|&(record, first, _)| ExtentListRow { extents_record: record, first_index: first })
                    .collect()
            };
            let detail = if head.extent_base != base {
                Some(format!("extent_base {}, but the earlier groups announce {base} extents", head.extent_base))
            } else if group.extent_list != expected_list {
                Some("its extent list disagrees with the FILES_EXTENTS records that hold the group's extents".into())
            } else {
                None
            };
            if let Some(detail) = detail {
                self.problem(ErrorClass::IndexMismatch, pos, "FILES_ENTRIES extents", detail);
            }
        }
        let tree = &mut self.trees[open];
        tree.extents_counted = tree.extents_counted.saturating_add(counts);
        if head.first_id > tree.next_id {
            // Entries lost with a damaged record: the order is not checked
            // across them (section 11, point 3).
            tree.check.gap();
        }
        tree.next_id = tree.next_id.max(head.first_id);
        let has_dir = group.entries.iter().any(|e| e.as_ref().is_ok_and(|e| e.kind == EntryKind::Directory));
        tree.groups.push((pos, head.first_id, has_dir));
        let mut broken_rows = group.broken_rows.into_iter();
        for (row, entry) in group.entries.into_iter().enumerate() {
            match entry {
                Ok(entry) => self.check_entry(open, pos, row as u32, entry),
                Err(e) => {
                    // A row that cannot be read as an entry (an unknown kind,
                    // attributes out of order): reported, and placed by its id.
                    self.problem(ErrorClass::RecordMalformed, pos, "entry", e.detail);
                    let tree = &mut self.trees[open];
                    let id = head.first_id + row as u64;
                    tree.next_id = tree.next_id.max(id + 1);
                    tree.jump_ok = false;
                    if let Some(broken) = broken_rows.next() {
                        self.check_broken_row(open, pos, &broken);
                    }
                }
            }
        }
    }

    /// The rules a row that breaks one of its own still answers to (8.3: a
    /// verifier checks every entry of a sound group): content announced for
    /// it when its kind is not a regular file's is `index-mismatch` at its
    /// record, affecting `0..size` (8.2).
    fn check_broken_row(&mut self, open: usize, pos: u64, broken: &files::BrokenRow) {
        if EntryKind::from_code(broken.kind) == Some(EntryKind::File) {
            return;
        }
        let tree = &mut self.trees[open];
        let Some(announced) = tree.announced.remove(&broken.entry_id) else { return };
        let path = child_path(tree, broken.parent_id, &broken.name);
        let section = tree.name.clone();
        let p = self.problem(
            ErrorClass::IndexMismatch,
            pos,
            "entry",
            format!(
                "\"{}\": {} extents announced for an entry of kind {}, not a regular file",
                strata_format::escaped(&path),
                announced.len(),
                broken.kind
            ),
        );
        self.report.problems[p].affects.push(Affected { section, path: Some(path), range: 0..broken.size });
    }

    fn check_entry(&mut self, open: usize, pos: u64, row: u32, entry: Entry) {
        let tree = &mut self.trees[open];
        let id = entry.entry_id;
        let section_lost = tree.lost;
        // The path is built only for a message: building it for every entry
        // would cost its depth each time, quadratic in a deep tree.
        let shown = |tree: &WalkTree| strata_format::escaped(&entry_path(tree, &entry));
        let mut faults: Vec<(ErrorClass, String)> =
            entry.faults(tree.captured).into_iter().map(|e| (e.class, e.detail)).collect();
        tree.jump_ok = false;
        match entry.kind {
            EntryKind::File => {
                tree.files += 1;
                tree.content_bytes = tree.content_bytes.saturating_add(entry.size);
            }
            EntryKind::Directory => tree.directories += 1,
            _ => {}
        }
        tree.next_id = tree.next_id.max(id.saturating_add(1));
        // An entry whose parent or link target was in a lost record is not at
        // fault itself: salvage keeps it elsewhere (FORMAT.md section 11).
        let between = tree.check.push(&entry);
        if !between.is_empty() {
            let path = shown(tree);
            faults.extend(between.into_iter().map(|e| (e.class, format!("\"{path}\": {}", e.detail))));
        }
        let announced = tree.announced.remove(&id).unwrap_or_default();
        // Content announced for an entry that is not a regular file (8.2).
        let mut extents_differ = false;
        if entry.kind != EntryKind::File && !announced.is_empty() {
            faults.push((
                ErrorClass::IndexMismatch,
                format!("\"{}\": content announced for a {}", shown(tree), entry.kind.name()),
            ));
        }
        // After a lost record, what was announced may be lost too: not
        // compared, and the content is not checked (section 11, point 3).
        if entry.kind == EntryKind::File && announced.len() as u64 != entry.extent_count {
            extents_differ = true;
            if !section_lost {
                faults.push((
                    ErrorClass::IndexMismatch,
                    format!(
                        "\"{}\": extent_count {}, but {} extents were announced for it",
                        shown(tree),
                        entry.extent_count,
                        announced.len()
                    ),
                ));
            }
        }
        // Extents past the file's size: extent-map at their record.
        let mut past_size = false;
        if entry.kind == EntryKind::File {
            for (at, extent) in &announced {
                // The sum itself, not the end taken at most 2^64 - 1: an extent
                // that passes 2^64 - 1 always runs past (8.2).
                if extent.file_offset.checked_add(extent.length).is_none_or(|end| end > entry.size) {
                    past_size = true;
                    let p = self.problem(
                        ErrorClass::ExtentMap,
                        *at,
                        "file extent",
                        format!(
                            "entry {id} at file offset {}: runs past the file's size {}",
                            extent.file_offset, entry.size
                        ),
                    );
                    self.file_affects.push((p, open, id, extent.file_offset..extent.end()));
                }
            }
        }
        let tree = &mut self.trees[open];
        let sound = faults.iter().all(|(class, _)| *class != ErrorClass::RecordMalformed);
        let first = !tree.entries.contains_key(&id);
        if first {
            tree.entries.insert(
                id,
                EntryFacts {
                    parent_id: entry.parent_id,
                    name: entry.name.clone(),
                    kind: entry.kind,
                    link_id: entry.link_id,
                    record: pos,
                    offset: row,
                    sound,
                    content_intact: false,
                    extents: Vec::new(),
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
        let extents: Vec<FileExtent> = announced.into_iter().map(|(_, e)| e).collect();
        if first && is_file && !extents_differ && !past_size && !extents_misplaced(&extents, entry.size) {
            let intact = no_content || self.check_content(open, pos, &entry, &extents);
            if let Some(facts) = self.trees[open].entries.get_mut(&id) {
                facts.content_intact = intact;
                facts.extents = extents;
            }
        } else if first && is_file {
            if let Some(facts) = self.trees[open].entries.get_mut(&id) {
                facts.extents = extents;
            }
        }
    }

    /// Rebuilds a file's data from its chunks and checks its digest (holes are
    /// not hashed). Damaged chunks are reported where the walk met them; this
    /// adds the file's path. Returns whether every chunk is valid and the
    /// content matches.
    fn check_content(&mut self, open: usize, pos: u64, entry: &Entry, extents: &[FileExtent]) -> bool {
        // Paths only for messages (see check_entry).
        let path_of = |walk: &Self| entry_path(&walk.trees[open], entry);
        let mut digest = files::FileDigest::new();
        let name = self.trees[open].name.clone();
        for extent in extents {
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
            crate::archive::decode_chunk_record(self.source, self.size, chunk_ref, self.tag, &self.limits, true)
                .ok()?;
        let raw = Arc::new(chunk.raw);
        self.chunk_cache = Some((chunk_ref, raw.clone()));
        Some(raw)
    }

    pub(crate) fn handle_files_end(&mut self, pos: u64, body: &[u8]) {
        let end = match FilesEnd::decode_exact(body, "FILES_END body") {
            Ok(end) => end,
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
                return;
            }
        };
        let Ok(open) = self.open_tree_for(pos, end.section_id, "FILES_END") else {
            return;
        };
        // It ends its section; one that breaks a rule of its body is not used.
        self.open_tree = None;
        if let Err(e) = end.validate() {
            self.problem(e.class, pos, e.what, e.detail);
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
            tree.next_extent,
        );
        let declared = (
            end.entry_count,
            end.file_count,
            end.directory_count,
            end.content_bytes,
            end.chunk_count,
            end.chunk_bytes,
            end.begin_offset,
            end.extent_count,
        );
        let orphans = tree.announced.len();
        let rootless = !tree.entries.contains_key(&0);
        if counts != declared {
            self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "FILES_END totals",
                format!("entries, files, directories, content bytes, chunks, chunk bytes, begin offset, extents: records give {counts:?}, FILES_END says {declared:?}"),
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
        match GroupDir::parse(body) {
            Ok(table) => match self.trees.iter().position(|t| t.section_id == table.section_id) {
                Some(t) => {
                    let tree = &mut self.trees[t];
                    tree.dir_tables.entry(table.entries_record).or_insert_with(|| (pos, table.clone()));
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
            Ok((head, rows)) => match self.trees.iter().position(|t| t.section_id == head.section_id) {
                Some(t) => {
                    let tree = &mut self.trees[t];
                    self.summaries.push((pos, Summary::FilesIndex(t, tree.indexes.len())));
                    tree.indexes.push((pos, head, rows));
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

    /// The `FILES_DIR` tables the section's groups call for (FORMAT.md 8.5),
    /// by group offset: for each group holding a directory, a locator per
    /// directory in entry order, and per run a fence for each group holding
    /// part of it, with that group's `FILES_DIR` (the first read naming it)
    /// or 0, the run's first entry in it and that entry's name.
    fn expected_dirs(tree: &WalkTree) -> HashMap<u64, GroupDir> {
        // The runs, from the entries in id order: directory id to its first
        // child's id and count (runs are consecutive: the summary checks are
        // made only when no entry broke the order).
        let mut runs: HashMap<u64, (u64, u64)> = HashMap::new();
        for (&id, facts) in &tree.entries {
            if id == 0 {
                continue;
            }
            let run = runs.entry(facts.parent_id).or_insert((id, 0));
            run.1 += 1;
        }
        let group_of = |id: u64| -> Option<(u64, u64)> {
            // (group offset, group end id)
            let at = tree.groups.partition_point(|g| g.1 <= id).checked_sub(1)?;
            let end = tree.groups.get(at + 1).map_or(tree.next_id, |g| g.1);
            Some((tree.groups[at].0, end))
        };
        let dir_of = |group: u64| -> u64 {
            let has_dir = tree.groups.iter().find(|g| g.0 == group).is_some_and(|g| g.2);
            if has_dir {
                tree.dir_tables.get(&group).map_or(0, |(o, _)| *o)
            } else {
                0
            }
        };
        let mut out: HashMap<u64, GroupDir> = HashMap::new();
        for (&id, facts) in &tree.entries {
            if facts.kind != EntryKind::Directory {
                continue;
            }
            let table = out.entry(facts.record).or_insert_with(|| GroupDir {
                section_id: tree.section_id,
                entries_record: facts.record,
                locators: Vec::new(),
                fences: Vec::new(),
            });
            let (first_child_id, child_count) = runs.get(&id).copied().unwrap_or((0, 0));
            table.locators.push(files::Locator {
                entry_id: id,
                child_count,
                first_child_id,
                first_fence: table.fences.len() as u64,
            });
            let mut child = first_child_id;
            let end = first_child_id + child_count;
            while child < end {
                let Some((group, group_end)) = group_of(child) else { break };
                let name = tree.entries.get(&child).map(|f| f.name.clone()).unwrap_or_default();
                table.fences.push((
                    files::Fence {
                        entries_record: group,
                        dir_record: dir_of(group),
                        first_child_id: child,
                        name_length: name.len() as u8,
                    },
                    name,
                ));
                child = group_end.max(child + 1);
            }
        }
        out
    }

    /// A `FILES_DIR` compared with the groups (FORMAT.md 8.5): the first
    /// table naming a group that holds a directory, holding what its
    /// directories' runs call for.
    pub(crate) fn summary_files_dir(&mut self, t: usize, i: usize) {
        if self.trees[t].expected_dirs.is_none() {
            let expected = Self::expected_dirs(&self.trees[t]);
            self.trees[t].expected_dirs = Some(expected);
        }
        let tree = &self.trees[t];
        let (offset, table) = &tree.dirs[i];
        let first = tree.dir_tables.get(&table.entries_record).is_some_and(|(o, _)| o == offset);
        let expected = tree.expected_dirs.as_ref().and_then(|e| e.get(&table.entries_record));
        let agrees = first && expected == Some(table);
        if !agrees {
            let detail = format!(
                "section {:?}: the FILES_DIR of the group at {} disagrees with the groups",
                tree.name, table.entries_record
            );
            let offset = *offset;
            self.problem(ErrorClass::IndexMismatch, offset, "FILES_DIR", detail);
        }
    }

    /// A `FILES_INDEX` compared with its section (FORMAT.md 8.6): a row per
    /// group in order, each with its `FILES_DIR` (which must have been read
    /// for a group holding a directory) and its `first_id`.
    pub(crate) fn summary_files_index(&mut self, t: usize, i: usize) {
        let tree = &self.trees[t];
        let (offset, _, rows) = &tree.indexes[i];
        let agrees = rows.len() == tree.groups.len()
            && rows.iter().zip(&tree.groups).all(|(row, &(group, first_id, has_dir))| {
                let dir = if has_dir { tree.dir_tables.get(&group).map(|(o, _)| *o) } else { Some(0) };
                row.entries_record == group && row.first_id == first_id && Some(row.dir_record) == dir
            });
        if !agrees {
            let detail = format!("section {:?}: FILES_INDEX disagrees with the section's records", tree.name);
            let offset = *offset;
            self.problem(ErrorClass::IndexMismatch, offset, "FILES_INDEX", detail);
        }
    }
}

/// The rules of 8.3 that one entry can be checked against on its own, with
/// its section's `captured` bits: `record-malformed`. (An unknown kind and
/// attributes out of order make the row unreadable: `files::parse_group`
/// reports them.)
/// A regular file's extents are not in increasing order, overlap, or end
/// past its size (FORMAT.md 8.2).
fn extents_misplaced(extents: &[FileExtent], size: u64) -> bool {
    let mut end = 0u64;
    for x in extents {
        if x.file_offset < end || x.length == 0 {
            return true;
        }
        // An end past 2^64 - 1 is past any size (8.2).
        let Some(x_end) = x.file_offset.checked_add(x.length) else { return true };
        end = end.max(x_end);
    }
    end > size
}
