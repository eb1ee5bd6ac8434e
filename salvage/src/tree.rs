//! File trees: every entry whose record survives keeps its metadata; it keeps
//! its place when its folder survives or is named by a surviving directory
//! table, and goes under `lost+found` otherwise.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::Arc;

use strata_format::files::{Entry, EntryFlags, EntryKind, FileExtent, NO_PARENT};
use strata_reader::verify::{entries_record_at, EntryFacts, Recovered, RecoveredTree};
use strata_reader::{Limits, ReadAt};
use strata_writer::{ArchiveWriter, EntrySource, Progress, SourceEntry};

use crate::SalvageError;

/// An entry of the damaged tree that the new archive does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostEntry {
    /// Its path in the damaged tree, as far as the surviving records name it; a
    /// folder nothing names shows as `#ID`.
    pub path: Vec<u8>,
    pub why: &'static str,
}

/// What salvage kept of one file tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeOutcome {
    pub name: String,
    /// Entries written, folders made up for lost ones included.
    pub entries: u64,
    /// Regular files kept whose content was damaged: their entries say it was
    /// lost in salvage. Paths in the new tree.
    pub content_lost: Vec<Vec<u8>>,
    /// Entries not kept.
    pub lost: Vec<LostEntry>,
    /// Entries lost that no surviving record names, when `FILES_END` survived
    /// to tell how many there were.
    pub unnamed_lost: u64,
    /// `FILES_END` was lost (a cut, most often): how many entries followed the
    /// last surviving one is unknown.
    pub end_lost: bool,
    /// Entries kept under `lost+found` because their folder is not known: paths
    /// in the new tree.
    pub relocated: Vec<Vec<u8>>,
    /// Folders the new tree holds in place of lost ones (named by a directory
    /// table, metadata unknown): paths in the new tree.
    pub made_up: Vec<Vec<u8>>,
}

impl TreeOutcome {
    pub fn lost_anything(&self) -> bool {
        !self.content_lost.is_empty()
            || !self.lost.is_empty()
            || self.unnamed_lost > 0
            || self.end_lost
            || !self.relocated.is_empty()
    }
}

/// Where a node of the new tree comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A surviving entry, by its old id.
    Kept(u64),
    /// A folder made up for a lost one, by its old id (named by a table, or `#ID`).
    MadeUp(u64),
    /// The root, when entry 0 was lost.
    Root,
    /// A regular file (or hard link) whose entry was lost but which a table
    /// names: recorded as a file lost in salvage.
    LostFile(u64),
    /// `lost+found`.
    LostFound,
}

struct Node {
    origin: Origin,
    name: Vec<u8>,
    parent: usize,
    /// Children are written in this order: old ids keep the old order.
    key: u64,
    children: Vec<usize>,
    is_dir: bool,
}

/// Deep enough for any real tree; a longer chain of made-up folders is hostile
/// and ends in `lost+found`.
const MAX_DEPTH: usize = 4096;

struct Plan<'a> {
    tree: &'a RecoveredTree,
    nodes: Vec<Node>,
    /// Old id to its node.
    node_of: HashMap<u64, usize>,
    /// (parent node, name) to node: names are unique among siblings.
    names: HashMap<(usize, Vec<u8>), usize>,
    /// Names the damaged root's surviving children have, so `lost+found` avoids them.
    root_names: HashSet<Vec<u8>>,
    lost_found: Option<usize>,
    outcome: TreeOutcome,
}

impl<'a> Plan<'a> {
    fn kept(&self, id: u64) -> Option<&'a EntryFacts> {
        self.tree.entries.get(&id).filter(|f| f.sound)
    }

    fn add(&mut self, origin: Origin, parent: usize, name: Vec<u8>, key: u64, is_dir: bool) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node { origin, name: name.clone(), parent, key, children: Vec::new(), is_dir });
        self.nodes[parent].children.push(index);
        self.names.insert((parent, name), index);
        if let Origin::Kept(id) | Origin::MadeUp(id) | Origin::LostFile(id) = origin {
            self.node_of.insert(id, index);
        }
        index
    }

    fn lost_found(&mut self) -> usize {
        if let Some(node) = self.lost_found {
            return node;
        }
        let mut name = b"lost+found".to_vec();
        let mut n = 1;
        while self.root_names.contains(&name) || self.names.contains_key(&(0, name.clone())) {
            n += 1;
            name = format!("lost+found.{n}").into_bytes();
        }
        let node = self.add(Origin::LostFound, 0, name, u64::MAX, true);
        self.lost_found = Some(node);
        node
    }

    /// Under `lost+found`, as `#ID`.
    fn numbered(&mut self, origin: Origin, id: u64, is_dir: bool) -> usize {
        let lost_found = self.lost_found();
        self.add(origin, lost_found, format!("#{id}").into_bytes(), id, is_dir)
    }

    /// The node of the folder that had old id `id`, making it up if it was lost.
    fn folder(&mut self, id: u64, depth: usize) -> usize {
        if let Some(&node) = self.node_of.get(&id) {
            if self.nodes[node].is_dir {
                return node;
            }
            // Not a folder after all: the records disagree; keep the child apart.
            return self.lost_found();
        }
        if let Some(&(parent, ref name, kind)) = self.tree.listed.get(&id) {
            // A table's names are not checked as entries' are: a damaged or hostile
            // table may name a folder `..` or `a/b`, which then goes to lost+found.
            let usable = kind == EntryKind::Directory.code() && Entry::name_is_safe(name);
            if depth < MAX_DEPTH && usable && parent != id && parent < id {
                let parent_node = self.folder(parent, depth + 1);
                if !self.names.contains_key(&(parent_node, name.clone()))
                    && parent_node != self.lost_found.unwrap_or(usize::MAX)
                {
                    let node = self.add(Origin::MadeUp(id), parent_node, name.clone(), id, true);
                    return node;
                }
            }
        }
        self.numbered(Origin::MadeUp(id), id, true)
    }

    /// A path in the new tree.
    fn new_path(&self, mut node: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        while node != 0 {
            parts.push(self.nodes[node].name.as_slice());
            node = self.nodes[node].parent;
        }
        parts.reverse();
        parts.join(&b'/')
    }
}

pub(crate) fn salvage_tree<R: ReadAt + ?Sized, W: io::Write>(
    writer: &mut ArchiveWriter<W>,
    archive: &R,
    recovered: &Recovered,
    tree: &RecoveredTree,
    limits: &Limits,
    created_ns: i64,
    progress: &dyn Progress,
) -> Result<TreeOutcome, SalvageError> {
    writer.set_chunk_size(tree.chunk_size)?;
    let mut plan = Plan {
        tree,
        nodes: Vec::new(),
        node_of: HashMap::new(),
        names: HashMap::new(),
        root_names: tree
            .entries
            .values()
            .filter(|f| f.parent_id == 0)
            .map(|f| f.name.clone())
            .chain(tree.listed.values().filter(|l| l.0 == 0).map(|l| l.1.clone()))
            .collect(),
        lost_found: None,
        outcome: TreeOutcome { name: tree.name.clone(), ..TreeOutcome::default() },
    };
    let root_kept = plan.kept(0).is_some_and(|f| f.kind == EntryKind::Directory && f.parent_id == NO_PARENT);
    plan.nodes.push(Node {
        origin: if root_kept { Origin::Kept(0) } else { Origin::Root },
        name: Vec::new(),
        parent: usize::MAX,
        key: 0,
        children: Vec::new(),
        is_dir: true,
    });
    plan.node_of.insert(0, 0);

    // Every surviving entry, in the old order, under its folder.
    let mut hard_links = Vec::new();
    for (&id, facts) in &tree.entries {
        if id == 0 {
            if !root_kept {
                plan.outcome
                    .lost
                    .push(LostEntry { path: Vec::new(), why: "the root's entry breaks the format's rules" });
            }
            continue;
        }
        if !facts.sound {
            let path = tree.path_of(id);
            plan.outcome.lost.push(LostEntry { path, why: "its entry breaks the format's rules" });
            continue;
        }
        if facts.kind == EntryKind::Hardlink {
            hard_links.push(id);
        }
        let is_dir = facts.kind == EntryKind::Directory;
        let parent = plan.folder(facts.parent_id, 0);
        let node = if plan.names.contains_key(&(parent, facts.name.clone())) {
            plan.numbered(Origin::Kept(id), id, is_dir)
        } else {
            plan.add(Origin::Kept(id), parent, facts.name.clone(), id, is_dir)
        };
        let parent = plan.nodes[node].parent;
        let moved = Some(parent) == plan.lost_found
            || (matches!(plan.nodes[parent].origin, Origin::MadeUp(_))
                && plan.nodes[parent].parent == plan.lost_found.unwrap_or(usize::MAX));
        if moved {
            let path = plan.new_path(node);
            plan.outcome.relocated.push(path);
        }
    }

    // Files lost whole that a table names are recorded where they were, flagged.
    let mut named_files: Vec<u64> = tree
        .listed
        .iter()
        .filter(|(id, (_, name, kind))| {
            !tree.entries.contains_key(id)
                && (*kind == EntryKind::File.code() || *kind == EntryKind::Hardlink.code())
                && Entry::name_is_safe(name)
        })
        .map(|(&id, _)| id)
        .collect();
    named_files.sort_unstable();
    for id in named_files {
        let (parent, name, _) = &tree.listed[&id];
        let folder = plan.folder(*parent, 0);
        if !plan.names.contains_key(&(folder, name.clone())) {
            plan.add(Origin::LostFile(id), folder, name.clone(), id, false);
        }
    }

    // The new order: depth first, children in the old order, lost+found last.
    let mut order = Vec::with_capacity(plan.nodes.len());
    let mut stack = vec![0usize];
    while let Some(node) = stack.pop() {
        order.push(node);
        let mut children = plan.nodes[node].children.clone();
        children.sort_by_key(|&c| std::cmp::Reverse(plan.nodes[c].key));
        stack.extend(children);
    }
    let mut new_id: HashMap<usize, u64> = HashMap::with_capacity(order.len());
    // A hard link needs its file kept and written before it.
    let mut dropped: HashSet<usize> = HashSet::new();
    {
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        for id in hard_links {
            let link_node = plan.node_of[&id];
            let link_id = Some(tree.entries[&id].link_id);
            let ok = link_id.and_then(|t| plan.node_of.get(&t).copied()).is_some_and(|t| {
                matches!(plan.nodes[t].origin, Origin::Kept(_))
                    && !plan.nodes[t].is_dir
                    && position[&t] < position[&link_node]
                    && plan
                        .kept(match plan.nodes[t].origin {
                            Origin::Kept(old) => old,
                            _ => u64::MAX,
                        })
                        .is_some_and(|f| f.kind == EntryKind::File)
            });
            if !ok {
                dropped.insert(link_node);
                let path = tree.path_of(id);
                plan.outcome.lost.push(LostEntry { path, why: "a hard link whose file was lost" });
                let new_path = plan.new_path(link_node);
                plan.outcome.relocated.retain(|p| p != &new_path);
            }
        }
    }
    order.retain(|n| !dropped.contains(n));
    for (i, &node) in order.iter().enumerate() {
        new_id.insert(node, i as u64);
    }

    // Entries lost whole: the tables name some of them.
    let mut named_lost: Vec<u64> = tree.listed.keys().copied().filter(|id| !tree.entries.contains_key(id)).collect();
    named_lost.sort_unstable();
    for id in named_lost {
        let stands_in = plan.node_of.get(&id).map(|&n| plan.nodes[n].origin);
        let path = tree.path_of(id);
        plan.outcome.lost.push(LostEntry {
            path,
            why: match stands_in {
                Some(Origin::MadeUp(_)) => "its entry was lost; a folder of that name stands in",
                Some(Origin::LostFile(_)) => "its entry and content were lost; recorded as a file lost in salvage",
                _ => "its entry was lost",
            },
        });
    }
    let known = tree.entries.len() as u64
        + tree.listed.keys().filter(|id| !tree.entries.contains_key(id)).count() as u64
        + u64::from(!tree.entries.contains_key(&0) && !tree.listed.contains_key(&0));
    plan.outcome.end_lost = tree.entry_count.is_none();
    plan.outcome.unnamed_lost = tree.entry_count.map_or(0, |count| count.saturating_sub(known));
    for &node in &order {
        if let Origin::MadeUp(_) = plan.nodes[node].origin {
            let path = plan.new_path(node);
            plan.outcome.made_up.push(path);
        }
    }

    let mut source = PlanSource {
        archive,
        recovered,
        tree,
        limits,
        plan: &plan,
        order: &order,
        new_id: &new_id,
        next: 0,
        created_ns,
        record_cache: None,
        chunk_cache: None,
        extents: Vec::new(),
        content_lost: Vec::new(),
    };
    let summary = writer.add_tree_from(&tree.name, tree.captured, &mut source, progress)?;
    let content_lost = source.content_lost;
    plan.outcome.content_lost = content_lost;
    plan.outcome.entries = summary.entries;
    Ok(plan.outcome)
}

/// Feeds the planned tree to the writer.
struct PlanSource<'a, R: ReadAt + ?Sized> {
    archive: &'a R,
    recovered: &'a Recovered,
    tree: &'a RecoveredTree,
    limits: &'a Limits,
    plan: &'a Plan<'a>,
    order: &'a [usize],
    new_id: &'a HashMap<usize, u64>,
    next: usize,
    created_ns: i64,
    /// The last `FILES_ENTRIES` record read, parsed: entries come mostly in order.
    record_cache: Option<(u64, BTreeMap<u32, Entry>)>,
    chunk_cache: Option<(u64, Arc<Vec<u8>>)>,
    /// The current file's extents in the damaged archive.
    extents: Vec<FileExtent>,
    content_lost: Vec<Vec<u8>>,
}

impl<R: ReadAt + ?Sized> PlanSource<'_, R> {
    fn entry(&mut self, facts: &EntryFacts) -> io::Result<Entry> {
        if self.record_cache.as_ref().is_none_or(|(at, _)| *at != facts.record) {
            let entries = entries_record_at(self.archive, facts.record, self.recovered.tag, self.limits)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.record_cache = Some((facts.record, entries.into_iter().collect()));
        }
        let (_, entries) = self.record_cache.as_ref().expect("filled above");
        entries
            .get(&facts.offset)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("no entry at byte {} of record {}", facts.offset, facts.record)))
    }

    fn chunk(&mut self, chunk_ref: u64) -> io::Result<Arc<Vec<u8>>> {
        if let Some((at, raw)) = &self.chunk_cache {
            if *at == chunk_ref {
                return Ok(raw.clone());
            }
        }
        let chunk = self
            .recovered
            .read_chunk(self.archive, chunk_ref, self.limits)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let raw = Arc::new(chunk.raw);
        self.chunk_cache = Some((chunk_ref, raw.clone()));
        Ok(raw)
    }

    fn made_up_folder(&self, node: usize) -> Entry {
        let lost_found = self.plan.nodes[node].origin == Origin::LostFound;
        let mut entry = Entry::bare(EntryKind::Directory, b"");
        // lost+found stands for nothing that was lost; the others stand in for lost entries.
        entry.flags = if lost_found { 0 } else { EntryFlags::LOST_IN_SALVAGE };
        // As fsck makes lost+found: for its owner only.
        entry.mode = if lost_found { 0o700 } else { 0o755 };
        entry.mtime = strata_format::files::Timestamp::from_unix_nanos(self.created_ns);
        entry
    }
}

/// Adjacent extents joined: the data ranges of a file.
fn data_ranges(extents: &[FileExtent]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for e in extents {
        match ranges.last_mut() {
            Some(last) if last.1 == e.file_offset => last.1 = e.end(),
            _ => ranges.push((e.file_offset, e.end())),
        }
    }
    ranges
}

impl<R: ReadAt + ?Sized> EntrySource for PlanSource<'_, R> {
    fn next_entry(&mut self) -> io::Result<Option<SourceEntry>> {
        let Some(&node) = self.order.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        self.extents.clear();
        let plan = self.plan;
        let n = &plan.nodes[node];
        let path = plan.new_path(node);
        let mut data = Vec::new();
        let mut entry = match n.origin {
            Origin::Kept(old) => {
                let facts = &self.tree.entries[&old];
                let mut entry = self.entry(facts)?;
                if entry.kind == EntryKind::File {
                    if facts.content_intact {
                        data = data_ranges(&entry.extents);
                        self.extents = std::mem::take(&mut entry.extents);
                    } else {
                        // Kept as an entry whose content was lost in salvage (8.3 flag bit 3).
                        entry.flags |= EntryFlags::LOST_IN_SALVAGE;
                        entry.size = 0;
                        entry.digest = strata_format::files::EMPTY_DIGEST;
                        entry.extents.clear();
                        self.content_lost.push(path.clone());
                    }
                }
                if entry.kind == EntryKind::Hardlink {
                    let target = plan.node_of[&entry.link_id];
                    entry.link_id = self.new_id[&target];
                }
                entry
            }
            Origin::MadeUp(_) | Origin::Root | Origin::LostFound => self.made_up_folder(node),
            Origin::LostFile(_) => {
                let mut entry = self.made_up_folder(node);
                entry.kind = EntryKind::File;
                entry.mode = 0o644;
                entry.digest = strata_format::files::EMPTY_DIGEST;
                entry
            }
        };
        entry.entry_id = self.new_id[&node];
        entry.parent_id = if node == 0 { NO_PARENT } else { self.new_id[&n.parent] };
        entry.name = n.name.clone();
        Ok(Some(SourceEntry { entry, path, data_ranges: data }))
    }

    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let end = offset + buf.len() as u64;
        let first = self.extents.partition_point(|e| e.end() <= offset);
        let mut filled = 0usize;
        for i in first..self.extents.len() {
            let e = self.extents[i];
            if e.file_offset >= end {
                break;
            }
            let from = offset.max(e.file_offset);
            let to = end.min(e.end());
            if from != offset + filled as u64 {
                break;
            }
            let raw = self.chunk(e.chunk_ref)?;
            let start = e.chunk_offset as usize + (from - e.file_offset) as usize;
            let bytes = raw
                .get(start..start + (to - from) as usize)
                .ok_or_else(|| io::Error::other(format!("file extent runs past its chunk at {}", e.chunk_ref)))?;
            buf[filled..filled + bytes.len()].copy_from_slice(bytes);
            filled += bytes.len();
        }
        Ok(filled)
    }
}
