//! File trees (`spec/FORMAT.md` section 11): every entry whose group
//! survives keeps its metadata; it keeps its place when its folder survives,
//! and goes under `lost+found`, in a folder `#ID` made up for its lost
//! folder, otherwise. The new tree is written in the entry order of section 8.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;

use strata_format::files::{Entry, EntryFlags, EntryKind, FileExtent, NO_PARENT};
use strata_reader::recovery::{entries_record_at, EntryFacts, Recovered, RecoveredTree};
use strata_reader::{Limits, ReadAt};
use strata_writer::{ArchiveWriter, EntrySource, Progress, SourceEntry};

use crate::SalvageError;

/// An entry of the damaged tree that the new archive does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostEntry {
    /// Its path in the damaged tree, as far as the surviving entries name it;
    /// a folder nothing names shows as `#ID`.
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
    /// Folders the new tree holds in place of lost ones (`lost+found/#ID`,
    /// metadata unknown): paths in the new tree.
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
    /// A folder made up for a lost one, by its old id (`lost+found/#ID`).
    MadeUp(u64),
    /// The root, when entry 0 was lost.
    Root,
    /// `lost+found`.
    LostFound,
}

struct Node {
    origin: Origin,
    name: Vec<u8>,
    parent: usize,
    children: Vec<usize>,
    is_dir: bool,
}

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

    fn add(&mut self, origin: Origin, parent: usize, name: Vec<u8>, is_dir: bool) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node { origin, name: name.clone(), parent, children: Vec::new(), is_dir });
        self.nodes[parent].children.push(index);
        self.names.insert((parent, name), index);
        if let Origin::Kept(id) | Origin::MadeUp(id) = origin {
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
        let node = self.add(Origin::LostFound, 0, name, true);
        self.lost_found = Some(node);
        node
    }

    /// Under `lost+found`, as `#ID`.
    fn numbered(&mut self, origin: Origin, id: u64, is_dir: bool) -> usize {
        let lost_found = self.lost_found();
        self.add(origin, lost_found, format!("#{id}").into_bytes(), is_dir)
    }

    /// The node of the folder that had old id `id`, making it up in
    /// `lost+found` as `#ID` if it was lost (section 11: no name is
    /// recovered for a lost folder).
    fn folder(&mut self, id: u64) -> usize {
        match self.node_of.get(&id) {
            Some(&node) if self.nodes[node].is_dir => node,
            // Not a folder after all: the records disagree; keep the child apart.
            Some(_) => self.lost_found(),
            None => self.numbered(Origin::MadeUp(id), id, true),
        }
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

    /// The entry order of `spec/FORMAT.md` section 8, as the reference writer
    /// walks (section 14): the root, its run in name order, then each
    /// directory of the run in order, depth first.
    fn entry_order(&self) -> Vec<usize> {
        let children: Vec<Vec<usize>> = (0..self.nodes.len())
            .map(|node| {
                let mut children = self.nodes[node].children.clone();
                children.sort_by(|&a, &b| self.nodes[a].name.cmp(&self.nodes[b].name));
                children
            })
            .collect();
        strata_format::files::entry_order(&children, |n| self.nodes[n].is_dir)
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
        root_names: tree.entries.values().filter(|f| f.parent_id == 0).map(|f| f.name.clone()).collect(),
        lost_found: None,
        outcome: TreeOutcome { name: tree.name.clone(), ..TreeOutcome::default() },
    };
    let root_kept = plan.kept(0).is_some_and(|f| f.kind == EntryKind::Directory && f.parent_id == NO_PARENT);
    plan.nodes.push(Node {
        origin: if root_kept { Origin::Kept(0) } else { Origin::Root },
        name: Vec::new(),
        parent: usize::MAX,
        children: Vec::new(),
        is_dir: true,
    });
    plan.node_of.insert(0, 0);

    // Every surviving entry, in the old order (parents first), under its folder.
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
        let parent = plan.folder(facts.parent_id);
        let node = if plan.names.contains_key(&(parent, facts.name.clone())) {
            plan.numbered(Origin::Kept(id), id, is_dir)
        } else {
            plan.add(Origin::Kept(id), parent, facts.name.clone(), is_dir)
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

    let mut order = plan.entry_order();
    // A hard link needs its file kept and written before it.
    let mut dropped: HashSet<usize> = HashSet::new();
    {
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        for id in hard_links {
            let link_node = plan.node_of[&id];
            let target = tree.entries[&id].link_id;
            let file = plan.node_of.get(&target).copied().filter(|&t| {
                plan.nodes[t].origin == Origin::Kept(target)
                    && plan.kept(target).is_some_and(|f| f.kind == EntryKind::File)
            });
            let why = match file {
                None => Some("a hard link whose file was lost"),
                // The file moved after it (to lost+found, with its folder).
                Some(t) if position[&t] > position[&link_node] => {
                    Some("a hard link whose file now comes after it (moved to lost+found)")
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                dropped.insert(link_node);
                let path = tree.path_of(id);
                plan.outcome.lost.push(LostEntry { path, why });
                let new_path = plan.new_path(link_node);
                plan.outcome.relocated.retain(|p| p != &new_path);
            }
        }
    }
    order.retain(|n| !dropped.contains(n));
    let new_id: HashMap<usize, u64> = order.iter().enumerate().map(|(i, &node)| (node, i as u64)).collect();

    // Entries lost with their group: only counted (their names were in it).
    plan.outcome.end_lost = tree.entry_count.is_none();
    let known = tree.entries.len() as u64;
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
    /// The last `FILES_ENTRIES` record read, parsed, by entry id: entries of
    /// one run come from one or a few groups.
    record_cache: Option<(u64, HashMap<u64, Entry>)>,
    chunk_cache: Option<(u64, Arc<Vec<u8>>)>,
    /// The current file's extents in the damaged archive.
    extents: Vec<FileExtent>,
    content_lost: Vec<Vec<u8>>,
}

impl<R: ReadAt + ?Sized> PlanSource<'_, R> {
    fn entry(&mut self, id: u64, facts: &EntryFacts) -> io::Result<Entry> {
        if self.record_cache.as_ref().is_none_or(|(at, _)| *at != facts.record) {
            let entries = entries_record_at(self.archive, facts.record, self.recovered, self.limits)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.record_cache = Some((facts.record, entries.into_iter().map(|(_, e)| (e.entry_id, e)).collect()));
        }
        let (_, entries) = self.record_cache.as_ref().expect("filled above");
        entries
            .get(&id)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("no entry {id} in the group at byte {}", facts.record)))
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
                let mut entry = self.entry(old, facts)?;
                if entry.kind == EntryKind::File {
                    // The extents the walk found for it, all of them in
                    // surviving FILES_EXTENTS records, as many as its entry
                    // says, every chunk sound and the digest right.
                    let whole = facts.content_intact && facts.extents.len() as u64 == entry.extent_count;
                    if whole {
                        self.extents = facts.extents.clone();
                        data = data_ranges(&self.extents);
                    } else {
                        // Kept as an entry whose content was lost in salvage (8.3 flag bit 3).
                        entry.flags |= EntryFlags::LOST_IN_SALVAGE;
                        entry.size = 0;
                        entry.digest = strata_format::files::EMPTY_DIGEST;
                        self.content_lost.push(path.clone());
                    }
                    entry.extent_count = 0;
                    entry.extents.clear();
                }
                if entry.kind == EntryKind::Hardlink {
                    let target = plan.node_of[&entry.link_id];
                    entry.link_id = self.new_id[&target];
                }
                entry
            }
            Origin::MadeUp(_) | Origin::Root | Origin::LostFound => self.made_up_folder(node),
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
