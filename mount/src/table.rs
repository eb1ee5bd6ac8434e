//! The inode table of one file-tree section, built once from the section's
//! entry records (never from file content), kept compact.
//!
//! # Memory
//! One [`Node`] per entry: 128 bytes plus the entry's name on the heap, plus
//! 4 bytes in the children index, so about 110 bytes and the name's length
//! per entry (a million entries with 20-byte names: about 130 MB), whatever
//! the files hold. Owner names, symlink targets, xattrs and extents stay in
//! the archive and are read when asked for (`readlink`, `getxattr`, `open`).

use strata_format::files::{Entry, EntryKind, Timestamp, NO_PARENT};
use strata_reader::{Archive, ReadAt, TreeSection};

/// What the mount keeps of one entry.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: Box<[u8]>,
    pub size: u64,
    /// Bytes stored in extents (the rest of `size` is holes), for `st_blocks`.
    pub stored: u64,
    pub mtime: Timestamp,
    pub atime: Timestamp,
    pub ctime: Timestamp,
    /// Entry id of the parent directory (`u32::MAX` for the root).
    pub parent: u32,
    /// A hard link's target entry id; for a directory, where its children
    /// start in [`Table::children`].
    pub link_or_first: u32,
    /// A directory's number of children in [`Table::children`].
    pub child_count: u32,
    pub nlink: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number in the kernel's `new_encode_dev` form.
    pub rdev: u32,
    /// Where the whole entry is: index into the section's entry records, and
    /// the entry's row in that group.
    pub record: u32,
    pub offset: u32,
    pub kind: EntryKind,
    pub has_xattrs: bool,
}

/// The compact entries of a section and, per directory, its children by name.
#[derive(Debug)]
pub(crate) struct Table {
    pub nodes: Vec<Node>,
    /// Entry ids grouped by directory, each group sorted by name.
    pub children: Vec<u32>,
    /// Entries that are not reachable (no directory before them, a name no
    /// directory may hold, a hard link to no earlier file): not listed.
    pub unreachable: u64,
}

impl Node {
    pub(crate) fn from_entry(entry: &Entry, record: u32, offset: u32, captured: u64) -> Node {
        use strata_format::files::Captured;
        let atime = if captured & Captured::ATIME != 0 { entry.atime } else { entry.mtime };
        let ctime = if captured & Captured::CTIME != 0 { entry.ctime } else { entry.mtime };
        let size = match entry.kind {
            EntryKind::File | EntryKind::Hardlink => entry.size,
            EntryKind::Symlink => entry.target.len() as u64,
            _ => entry.size,
        };
        Node {
            name: entry.name.clone().into_boxed_slice(),
            size,
            stored: entry.extents.iter().map(|e| e.length).sum(),
            mtime: entry.mtime,
            atime,
            ctime,
            parent: u32::try_from(entry.parent_id).unwrap_or(u32::MAX),
            link_or_first: if entry.kind == EntryKind::Hardlink {
                u32::try_from(entry.link_id).unwrap_or(u32::MAX)
            } else {
                0
            },
            child_count: 0,
            nlink: 1,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            rdev: encode_dev(entry.rdev_major, entry.rdev_minor),
            record,
            offset,
            kind: entry.kind,
            has_xattrs: !entry.xattrs.is_empty(),
        }
    }
}

/// The kernel's `new_encode_dev`: what FUSE's `attr.rdev` carries.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

impl Table {
    /// Reads every entry record of `tree` once, in order.
    /// A damaged record or inconsistent count fails the whole section, with why.
    pub(crate) fn load<R: ReadAt>(archive: &Archive<R>, tree: &TreeSection) -> Result<Table, String> {
        let count = tree.end.entry_count;
        // Entry ids are kept as u32 to keep nodes small.
        if count >= u64::from(u32::MAX) {
            return Err(format!("{count} entries; a mount holds at most {} per section", u32::MAX - 1));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(count.min(1 << 20) as usize);
        for (index, group) in tree.groups.iter().enumerate() {
            let record = group.entries_record;
            for (offset, entry) in archive.entries_at(tree, record).map_err(|e| e.to_string())? {
                if entry.entry_id != nodes.len() as u64 {
                    return Err(format!(
                        "entry record at byte {record}: entry_id {}, expected {}",
                        entry.entry_id,
                        nodes.len()
                    ));
                }
                nodes.push(Node::from_entry(&entry, index as u32, offset, tree.begin.captured));
            }
        }
        if nodes.len() as u64 != count || nodes.first().is_none_or(|root| root.kind != EntryKind::Directory) {
            return Err(format!(
                "FILES_END counts {count} entries, the entry records hold {} (or no root directory)",
                nodes.len()
            ));
        }
        Ok(Table::index(nodes))
    }

    /// Links the nodes: children per directory, link counts.
    pub(crate) fn index(mut nodes: Vec<Node>) -> Table {
        nodes[0].parent = u32::MAX;
        let mut reachable = vec![false; nodes.len()];
        reachable[0] = true;
        let mut children = Vec::new();
        for id in 1..nodes.len() {
            let node = &nodes[id];
            let parent = node.parent as usize;
            // Parents come first (FORMAT.md 8.3), so one pass finds what hangs
            // from the root; anything else has no place in the tree.
            let placed = parent < id
                && reachable[parent]
                && nodes[parent].kind == EntryKind::Directory
                && u64::from(node.parent) != NO_PARENT
                && valid_name(&node.name)
                && (node.kind != EntryKind::Hardlink
                    || ((node.link_or_first as usize) < id
                        && nodes[node.link_or_first as usize].kind == EntryKind::File
                        && reachable[node.link_or_first as usize]));
            if placed {
                reachable[id] = true;
                children.push(id as u32);
                match node.kind {
                    EntryKind::Directory => nodes[parent].nlink += 1,
                    EntryKind::Hardlink => {
                        let target = node.link_or_first as usize;
                        nodes[target].nlink += 1;
                    }
                    _ => {}
                }
            }
        }
        for node in nodes.iter_mut().filter(|n| n.kind == EntryKind::Directory) {
            node.nlink += 1; // its own "."
        }
        children.sort_by(|&a, &b| {
            let (a, b) = (&nodes[a as usize], &nodes[b as usize]);
            (a.parent, &a.name).cmp(&(b.parent, &b.name))
        });
        let mut at = 0;
        while at < children.len() {
            let parent = nodes[children[at] as usize].parent as usize;
            let start = at;
            while at < children.len() && nodes[children[at] as usize].parent as usize == parent {
                at += 1;
            }
            nodes[parent].link_or_first = start as u32;
            nodes[parent].child_count = (at - start) as u32;
        }
        let unreachable = reachable.iter().filter(|r| !**r).count() as u64;
        Table { nodes, children, unreachable }
    }

    /// The children of directory `dir`, sorted by name.
    pub(crate) fn children_of(&self, dir: u32) -> &[u32] {
        match self.nodes.get(dir as usize) {
            Some(node) if node.kind == EntryKind::Directory => {
                let start = node.link_or_first as usize;
                &self.children[start..start + node.child_count as usize]
            }
            _ => &[],
        }
    }

    /// The child of `dir` called `name`.
    pub(crate) fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let kids = self.children_of(dir);
        kids.binary_search_by(|&id| (*self.nodes[id as usize].name).cmp(name)).ok().map(|i| kids[i])
    }

    /// The entry that holds the inode of `id`: a hard link's target, else itself.
    pub(crate) fn inode_of(&self, id: u32) -> u32 {
        match self.nodes.get(id as usize) {
            Some(node) if node.kind == EntryKind::Hardlink => node.link_or_first,
            _ => id,
        }
    }

    /// The path of `id` from the section's root, for messages.
    pub(crate) fn path_of(&self, id: u32) -> String {
        let mut parts = Vec::new();
        let mut at = id;
        while at != 0 && parts.len() < self.nodes.len() {
            let Some(node) = self.nodes.get(at as usize) else { break };
            parts.push(String::from_utf8_lossy(&node.name).into_owned());
            at = node.parent;
        }
        if parts.is_empty() {
            return ".".to_string();
        }
        parts.reverse();
        parts.join("/")
    }
}

/// A name a directory can hold.
pub(crate) fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_stays_small() {
        assert!(std::mem::size_of::<Node>() <= 128, "{}", std::mem::size_of::<Node>());
    }

    #[test]
    fn children_sorted_and_links_counted() {
        let mut root = Entry::bare(EntryKind::Directory, b"");
        root.parent_id = NO_PARENT;
        let mut dir = Entry::bare(EntryKind::Directory, b"d");
        dir.entry_id = 1;
        let mut file = Entry::bare(EntryKind::File, b"b");
        file.entry_id = 2;
        let mut link = Entry::bare(EntryKind::Hardlink, b"a");
        (link.entry_id, link.link_id) = (3, 2);
        let mut stray = Entry::bare(EntryKind::File, b"x");
        (stray.entry_id, stray.parent_id) = (4, 2);
        let nodes = [root, dir, file, link, stray].iter().map(|e| Node::from_entry(e, 0, 0, 0)).collect();
        let table = Table::index(nodes);
        let names: Vec<&[u8]> = table.children_of(0).iter().map(|&i| &*table.nodes[i as usize].name).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"d"]);
        assert_eq!(table.nodes[0].nlink, 3);
        assert_eq!(table.nodes[2].nlink, 2);
        assert_eq!(table.inode_of(3), 2);
        assert_eq!(table.child(0, b"d"), Some(1));
        assert_eq!(table.child(0, b"x"), None);
        assert_eq!(table.unreachable, 1);
    }
}
