//! The rules between the entries of one file-tree section (`spec/FORMAT.md`
//! section 8, "Entry order"), checked as the entries come, in one place for
//! the writer that must not break them and the verifier that reports them.
//! The rules one entry breaks on its own are [`Entry::faults`].

use std::collections::HashSet;

use crate::error::FormatError;
use crate::files::{Entry, EntryKind, NO_PARENT};

/// Checks each entry of a section against the entries before it: entry 0 is
/// the root directory (no parent, no name), every other entry's parent is an
/// earlier directory, a hard link's target an earlier regular file, and each
/// directory's children are one run in strictly increasing bytewise name
/// order. Holds a few bits per entry id.
///
/// ```
/// use strata_format::files::{Entry, EntryKind, TreeCheck, NO_PARENT};
/// let entry = |id: u64, parent: u64, kind: EntryKind, name: &[u8]| {
///     let mut e = Entry::bare(kind, name);
///     (e.entry_id, e.parent_id) = (id, parent);
///     e
/// };
/// let mut check = TreeCheck::new();
/// assert!(check.push(&entry(0, NO_PARENT, EntryKind::Directory, b"")).is_empty());
/// assert!(check.push(&entry(1, 0, EntryKind::Directory, b"b")).is_empty());
/// assert!(check.push(&entry(2, 1, EntryKind::File, b"x")).is_empty());
/// // Back in the root, whose run ended when entry 2 began the run of 1.
/// let faults = check.push(&entry(3, 0, EntryKind::File, b"c"));
/// assert_eq!(faults.len(), 1);
/// assert!(faults[0].detail.contains("ended before it"));
/// ```
#[derive(Debug, Default)]
pub struct TreeCheck {
    /// Ids of the entries read, of the directories, of the regular files.
    seen: IdSet,
    dirs: IdSet,
    files: IdSet,
    /// Directories whose run of children has ended.
    ended: IdSet,
    /// The directory whose run goes on, and the name of its last entry.
    run: Option<(u64, Vec<u8>)>,
    /// Entries before the next one may be missing (a lost record): it is not
    /// compared by name with the entry before it.
    gap: bool,
    /// Entries of the section may be missing: a parent or link target that
    /// was not read may be one of them, and is no fault of this entry's.
    lost: bool,
}

impl TreeCheck {
    /// A check of a section from its first entry.
    pub fn new() -> TreeCheck {
        TreeCheck::default()
    }

    /// Says that entries may be missing right before the next one (its id
    /// follows a run of lost ones, `spec/FORMAT.md` section 11): it is not
    /// compared by name with the entry before it. Implies
    /// [`TreeCheck::entries_lost`].
    pub fn gap(&mut self) {
        self.gap = true;
        self.lost = true;
    }

    /// Says that a record of the section was lost: from now on a parent or
    /// hard link target that was never read is taken as lost, not at fault.
    pub fn entries_lost(&mut self) {
        self.lost = true;
    }

    /// Checks `entry` against the entries pushed before it and records it;
    /// returns every rule between entries it breaks, as
    /// [`ErrorClass::RecordMalformed`](crate::ErrorClass::RecordMalformed)
    /// errors whose detail names the entry by id (the caller knows its path).
    pub fn push(&mut self, entry: &Entry) -> Vec<FormatError> {
        let id = entry.entry_id;
        let mut faults = Vec::new();
        let mut bad = |detail: String| faults.push(FormatError::malformed("entry", detail));
        // A reference to an entry that was never read, after a loss, is to a
        // lost entry.
        let lost = |other: u64| other < id && self.lost && !self.seen.contains(other);
        let earlier = |set: &IdSet, other: u64| other < id && set.contains(other);
        if id == 0 || entry.parent_id == NO_PARENT {
            if id != 0 || entry.parent_id != NO_PARENT || entry.kind != EntryKind::Directory || !entry.name.is_empty() {
                bad("only entry 0, the root directory, has no parent; it has no name".to_string());
            }
        } else {
            let parent = entry.parent_id;
            if !earlier(&self.dirs, parent) && !lost(parent) {
                bad(format!("entry {id}: parent {parent} is not an earlier directory"));
            }
            let gap = std::mem::take(&mut self.gap);
            match &self.run {
                Some((dir, last)) if *dir == parent && !gap && entry.name <= *last => {
                    bad(format!(
                        "entry {id}: its name is not greater than \"{}\", the one before it in its directory",
                        crate::escaped(last)
                    ));
                }
                Some((dir, _)) if *dir == parent => {}
                _ if self.ended.contains(parent) => {
                    bad(format!("entry {id}: its directory's run of entries ended before it"))
                }
                _ => {}
            }
            match &mut self.run {
                // The name buffer is reused: this runs once per entry.
                Some((dir, last)) => {
                    if *dir != parent {
                        self.ended.insert(*dir);
                        *dir = parent;
                    }
                    last.clear();
                    last.extend_from_slice(&entry.name);
                }
                None => self.run = Some((parent, entry.name.clone())),
            }
        }
        if entry.kind == EntryKind::Hardlink {
            let target = entry.link_id;
            if !earlier(&self.files, target) && !lost(target) {
                bad(format!("entry {id}: hard link to {target}, not an earlier regular file"));
            }
        }
        self.seen.insert(id);
        match entry.kind {
            EntryKind::Directory => self.dirs.insert(id),
            EntryKind::File => self.files.insert(id),
            _ => {}
        }
        faults
    }
}

/// A set of entry ids: a bitset over the dense ids that honest sections
/// have, and a hash set for ids far past the entries read (a hostile
/// `first_id`), so that memory follows the number of entries pushed, never
/// an id's value.
#[derive(Debug, Default)]
struct IdSet {
    dense: Vec<u64>,
    sparse: HashSet<u64>,
    count: u64,
}

impl IdSet {
    /// Adds `id`. The bitset covers at most twice the ids added and 64 Ki
    /// more (a run of lost entries); anything past it is hashed.
    fn insert(&mut self, id: u64) {
        self.count += 1;
        let word = id / 64;
        if word < self.count / 32 + 1024 {
            let word = word as usize;
            if word >= self.dense.len() {
                self.dense.resize(word + 1, 0);
            }
            self.dense[word] |= 1 << (id % 64);
        } else {
            self.sparse.insert(id);
        }
    }

    fn contains(&self, id: u64) -> bool {
        let word = id / 64;
        let dense =
            usize::try_from(word).ok().and_then(|w| self.dense.get(w)).is_some_and(|w| w & (1 << (id % 64)) != 0);
        dense || self.sparse.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, parent: u64, kind: EntryKind, name: &[u8]) -> Entry {
        let mut e = Entry::bare(kind, name);
        e.entry_id = id;
        e.parent_id = parent;
        e
    }

    fn root() -> Entry {
        entry(0, NO_PARENT, EntryKind::Directory, b"")
    }

    #[test]
    fn a_sound_tree_has_no_faults() {
        let mut check = TreeCheck::new();
        let mut link = entry(4, 3, EntryKind::Hardlink, b"l");
        link.link_id = 2;
        for e in [
            root(),
            entry(1, 0, EntryKind::File, b"a"),
            entry(2, 0, EntryKind::File, b"b"),
            entry(3, 0, EntryKind::Directory, b"c"),
            link,
            entry(5, 3, EntryKind::Symlink, b"m"),
        ] {
            assert_eq!(check.push(&e), vec![], "entry {}", e.entry_id);
        }
    }

    #[test]
    fn each_rule_between_entries_is_reported() {
        let cases: Vec<(Vec<Entry>, &str)> = vec![
            (vec![entry(0, NO_PARENT, EntryKind::File, b"")], "only entry 0"),
            (vec![root(), entry(1, NO_PARENT, EntryKind::Directory, b"")], "only entry 0"),
            (vec![root(), entry(1, 2, EntryKind::File, b"a")], "not an earlier directory"),
            (
                vec![root(), entry(1, 0, EntryKind::File, b"a"), entry(2, 1, EntryKind::File, b"b")],
                "not an earlier directory",
            ),
            (vec![root(), entry(1, 0, EntryKind::File, b"b"), entry(2, 0, EntryKind::File, b"a")], "not greater"),
            (vec![root(), entry(1, 0, EntryKind::File, b"a"), entry(2, 0, EntryKind::File, b"a")], "not greater"),
            (
                vec![
                    root(),
                    entry(1, 0, EntryKind::Directory, b"a"),
                    entry(2, 1, EntryKind::File, b"x"),
                    entry(3, 0, EntryKind::File, b"b"),
                ],
                "ended before it",
            ),
            (
                vec![root(), entry(1, 0, EntryKind::Directory, b"a"), {
                    let mut l = entry(2, 0, EntryKind::Hardlink, b"b");
                    l.link_id = 1;
                    l
                }],
                "not an earlier regular file",
            ),
        ];
        for (entries, expected) in cases {
            let mut check = TreeCheck::new();
            let (last, before) = entries.split_last().unwrap();
            for e in before {
                assert_eq!(check.push(e), vec![]);
            }
            let faults = check.push(last);
            assert_eq!(faults.len(), 1, "{expected}: {faults:?}");
            assert_eq!(faults[0].class, crate::ErrorClass::RecordMalformed);
            assert!(faults[0].detail.contains(expected), "{expected}: {}", faults[0].detail);
        }
    }

    #[test]
    fn after_a_gap_missing_references_are_lost_not_faults() {
        let mut check = TreeCheck::new();
        check.push(&root());
        check.push(&entry(1, 0, EntryKind::File, b"m"));
        check.gap();
        // Entries 2..10 were lost: 9 may have been a directory; the name may
        // be before the last one read.
        assert_eq!(check.push(&entry(10, 9, EntryKind::File, b"a")), vec![]);
        // Entry 1 was read and is no directory: still a fault.
        assert_eq!(check.push(&entry(11, 1, EntryKind::File, b"z")).len(), 1);
    }

    #[test]
    fn a_hostile_id_takes_no_memory_for_its_value() {
        let mut check = TreeCheck::new();
        check.push(&root());
        check.push(&entry(u64::MAX - 1, 0, EntryKind::Directory, b"a"));
        check.push(&entry(1 << 50, 0, EntryKind::Directory, b"b"));
        assert!(check.dirs.dense.len() < 64, "{}", check.dirs.dense.len());
        assert!(check.dirs.contains(1 << 50) && check.dirs.contains(u64::MAX - 1) && check.dirs.contains(0));
        assert!(!check.dirs.contains(1 << 49));
    }
}
