//! The files cache of an incremental archive (`spec/FORMAT.md` 15.5): the
//! regular files of the parent's section of the same name, so that a file
//! whose size and times have not changed is not read again and its entry
//! refers to the parent's chunks.

use std::collections::HashMap;

use strata_format::files::{Captured, Entry, EntryFlags, EntryKind, FileExtent, Timestamp, DIGEST_LEN};
use strata_format::ChunkRef;

/// A parent's file, as the child may take it over.
#[derive(Clone, Debug)]
pub(crate) struct CachedFile {
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub digest: [u8; DIGEST_LEN],
    /// The parent's source identity (inode, device major and minor), when its
    /// section captured it (`captured` bit 6).
    pub identity: Option<(u64, (u32, u32))>,
    /// The parent's extents, their `chunk_ref`s as the child refers to them.
    pub extents: Vec<FileExtent>,
}

/// The files of one parent section that may be taken over, by path relative
/// to the section's root (`spec/FORMAT.md` 15.5); given to a tree walk in
/// [`TreeOptions::files_cache`](crate::TreeOptions::files_cache).
#[derive(Clone, Debug, Default)]
pub struct FilesCache {
    files: HashMap<Vec<u8>, CachedFile>,
    /// The parent's files held in one extent, by size and digest, wherever
    /// they are now: a small file that moved (a renamed folder) or was copied
    /// has the content of one of them, and its entry can refer to that
    /// extent instead of packing the bytes again (borg and restic find such
    /// files by their chunks). Their first extent, `chunk_ref` as the child
    /// refers to it.
    copies: HashMap<(u64, [u8; DIGEST_LEN]), FileExtent>,
    /// The parent's `created_ns`: a file whose ctime is not at least a second
    /// before it may have changed while the parent read it.
    parent_created_ns: i64,
}

impl FilesCache {
    /// An empty cache for a parent archive created at `parent_created_ns`.
    pub fn new(parent_created_ns: i64) -> FilesCache {
        FilesCache { files: HashMap::new(), copies: HashMap::new(), parent_created_ns }
    }

    /// Offers the parent's entry at `path` (its section captured `captured`):
    /// kept when the rules of 15.5 let a child take it over, its extents
    /// rebased to the child's numbering (`entry.extents` must hold the
    /// file's extents, as the reader locates them). Returns whether it was
    /// kept. A whole file held in one extent is also kept as a copy by
    /// content ([`copy_of`](Self::copy_of)), whether kept by path or not.
    pub fn offer(&mut self, path: &[u8], entry: &Entry, captured: u64) -> bool {
        let whole =
            entry.flags & (EntryFlags::CHANGED_WHILE_READ | EntryFlags::UNREADABLE | EntryFlags::LOST_IN_SALVAGE) == 0;
        let ctime_ns = i128::from(entry.ctime.secs) * 1_000_000_000 + i128::from(entry.ctime.nsec);
        let settled = ctime_ns <= i128::from(self.parent_created_ns) - 1_000_000_000;
        if entry.kind != EntryKind::File || !whole {
            return false;
        }
        let extents: Vec<FileExtent> = entry
            .extents
            .iter()
            .map(|e| FileExtent { chunk_ref: ChunkRef::split(e.chunk_ref).rebased().join(), ..*e })
            .collect();
        // Content found by digest is read and hashed first, so neither the
        // file's times nor its path need to vouch for it.
        if let [extent] = extents[..] {
            if extent.file_offset == 0 && extent.length == entry.size && entry.size > 0 {
                self.copies.entry((entry.size, entry.digest)).or_insert(extent);
            }
        }
        if captured & Captured::CTIME == 0 || !settled {
            return false;
        }
        self.files.insert(
            path.to_vec(),
            CachedFile {
                size: entry.size,
                mtime: entry.mtime,
                ctime: entry.ctime,
                digest: entry.digest,
                identity: (captured & Captured::IDENTITY != 0).then_some((entry.ino, entry.dev)),
                extents,
            },
        );
        true
    }

    /// Number of files that may be taken over.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file may be taken over.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// An extent of the parent holding a whole file of `size` bytes whose
    /// digest is `digest`, wherever that file was: the content of a file read
    /// now and found to be the same, to refer to rather than store again.
    pub fn copy_of(&self, size: u64, digest: &[u8; DIGEST_LEN]) -> Option<FileExtent> {
        self.copies.get(&(size, *digest)).copied()
    }

    /// The parent's file at `path`, if the file now there has the same size,
    /// mtime and ctime (borg's test; ctime changes on any write, rename or
    /// change of metadata, and no one can set it), and, when the parent's
    /// section captured source identity, the same inode `ino` and device
    /// `dev` (as `st_dev`; a file replaced by another keeps neither).
    pub(crate) fn unchanged(
        &self,
        path: &[u8],
        size: u64,
        mtime: Timestamp,
        ctime: Timestamp,
        ino: u64,
        dev: u64,
    ) -> Option<&CachedFile> {
        let identity = (ino, (rustix::fs::major(dev), rustix::fs::minor(dev)));
        self.files.get(path).filter(|f| {
            f.size == size && f.mtime == mtime && f.ctime == ctime && f.identity.is_none_or(|id| id == identity)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ctime_secs: i64, flags: u8) -> Entry {
        let mut entry = Entry::bare(EntryKind::File, b"f");
        entry.size = 10;
        entry.flags = flags;
        entry.mtime = Timestamp { secs: 100, nsec: 5 };
        entry.ctime = Timestamp { secs: ctime_secs, nsec: 0 };
        entry.ino = 77;
        entry.dev = (8, 1);
        entry.extents = vec![FileExtent { entry_id: 0, file_offset: 0, length: 10, chunk_ref: 4096, chunk_offset: 0 }];
        entry
    }

    const DEV: u64 = (8 << 8) | 1;

    #[test]
    fn only_settled_whole_files_with_ctime_are_kept() {
        let created = 1_000 * 1_000_000_000;
        let mut cache = FilesCache::new(created);
        assert!(cache.offer(b"a", &file(998, 0), Captured::KNOWN));
        // Exactly one second before the parent was made is settled; any later
        // change may have raced the parent's read, so it is read again.
        assert!(cache.offer(b"b", &file(999, 0), Captured::KNOWN));
        assert!(!cache.offer(b"c", &file(999, 0).clone_with_nsec(1), Captured::KNOWN));
        assert!(!cache.offer(b"d", &file(10, EntryFlags::CHANGED_WHILE_READ), Captured::KNOWN));
        assert!(!cache.offer(b"e", &file(10, 0), Captured::KNOWN & !Captured::CTIME));
        let kept =
            cache.unchanged(b"a", 10, Timestamp { secs: 100, nsec: 5 }, Timestamp { secs: 998, nsec: 0 }, 77, DEV);
        assert_eq!(kept.unwrap().extents[0].chunk_ref, (1u64 << 56) | 4096, "rebased to the parent's number");
        assert!(cache
            .unchanged(b"a", 11, Timestamp { secs: 100, nsec: 5 }, Timestamp { secs: 998, nsec: 0 }, 77, DEV)
            .is_none());
        assert!(cache
            .unchanged(b"a", 10, Timestamp { secs: 100, nsec: 6 }, Timestamp { secs: 998, nsec: 0 }, 77, DEV)
            .is_none());
        // Another file put in its place (another inode, or another device)
        // is read again when the parent captured identity, and only then.
        let same = |ino, dev| {
            cache.unchanged(b"a", 10, Timestamp { secs: 100, nsec: 5 }, Timestamp { secs: 998, nsec: 0 }, ino, dev)
        };
        assert!(same(78, DEV).is_none());
        assert!(same(77, rustix::fs::makedev(8, 2)).is_none());
        let mut blind = FilesCache::new(created);
        assert!(blind.offer(b"a", &file(998, 0), Captured::KNOWN & !Captured::IDENTITY));
        assert!(blind
            .unchanged(b"a", 10, Timestamp { secs: 100, nsec: 5 }, Timestamp { secs: 998, nsec: 0 }, 78, 0)
            .is_some());
    }

    trait WithNsec {
        fn clone_with_nsec(self, nsec: u32) -> Self;
    }
    impl WithNsec for Entry {
        fn clone_with_nsec(mut self, nsec: u32) -> Self {
            self.ctime.nsec = nsec;
            self
        }
    }
}
