//! One entry of a file tree, with typed accessors for every field of
//! `spec/FORMAT.md` 8.3: what [`crate::Tree`] gives.

use strata_format::files::{self, Captured, EntryFlags, EntryKind, Timestamp, Xattr, DIGEST_LEN, NO_PARENT};

/// A file, directory, link, device, fifo or socket of a file-tree section,
/// with its path relative to the section's root (empty for the root itself).
///
/// Every field of the format's entry has an accessor, typed: the kind as an
/// [`EntryKind`], times as [`Timestamp`]s with their nanoseconds, and what a
/// field holds only for some kinds or only when the writer captured it as an
/// `Option` (`None` rather than a zero that would pass for a value). Names,
/// paths, link targets and extended attributes are bytes, as the archive
/// keeps them: a name that is not UTF-8 comes back exactly.
///
/// ```
/// use strata_reader::{Archive, EntryKind};
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-devices.strata")[..])?;
/// let tree = archive.tree("devices")?;
/// let null = tree.lookup("dev/null")?.expect("in the archive");
/// assert_eq!(null.kind(), EntryKind::CharDevice);
/// assert_eq!(null.device(), Some((1, 3)));
/// assert_eq!(null.mode(), 0o666);
/// // This section captured access and change times: they are there.
/// assert!(null.atime().is_some() && null.ctime().is_some());
/// println!("{} modified {}", String::from_utf8_lossy(null.path()), null.mtime());
///
/// let readme = tree.lookup("dev/readme")?.expect("in the archive");
/// assert!(readme.is_file() && readme.size() == 32);
/// assert_eq!((readme.uid(), readme.user()), (1234, Some(&b"strata-vector-user-1234"[..])));
/// assert_eq!(readme.xattr("user.empty"), Some(&b""[..]));
/// assert!(!readme.is_unreadable() && !readme.changed_while_read() && !readme.lost_in_salvage());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Entry {
    path: Vec<u8>,
    raw: files::Entry,
    /// The section's `captured` bits (FORMAT.md 8.1): which fields mean something.
    captured: u64,
    /// Record offset of the entry's `FILES_DIR`, when the way it was reached
    /// gave it (a lookup, a directory's children): a directory met otherwise
    /// is looked up by its path to list it.
    dir_table: Option<u64>,
}

/// Two entries are equal when their paths and fields are: the same entry
/// reached through [`crate::Tree::entries`] and through
/// [`crate::Tree::lookup`] compares equal.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.raw == other.raw && self.captured == other.captured
    }
}

impl Eq for Entry {}

impl Entry {
    /// An entry at `path` holding the format's fields `raw`, from a source
    /// whose `captured` bits (`FILES_BEGIN`, FORMAT.md 8.1) say which fields
    /// it holds: for code that gives entries of other trees (a file system
    /// inside an image) in the same shape. [`crate::Tree`] makes its own.
    ///
    /// ```
    /// use strata_reader::{Entry, EntryKind};
    /// use strata_format::files::Entry as RawEntry;
    ///
    /// let mut raw = RawEntry::bare(EntryKind::Symlink, b"link");
    /// raw.target = b"elsewhere".to_vec();
    /// let entry = Entry::from_raw(b"dir/link".to_vec(), raw, 0);
    /// assert_eq!(entry.symlink_target(), Some(&b"elsewhere"[..]));
    /// assert_eq!(entry.atime(), None, "not captured");
    /// ```
    pub fn from_raw(path: Vec<u8>, raw: files::Entry, captured: u64) -> Entry {
        Entry { path, raw, captured, dir_table: None }
    }

    pub(crate) fn located(path: Vec<u8>, raw: files::Entry, captured: u64, dir_table: u64) -> Entry {
        let dir_table = (raw.kind == EntryKind::Directory && dir_table != 0).then_some(dir_table);
        Entry { path, raw, captured, dir_table }
    }

    pub(crate) fn dir_table(&self) -> Option<u64> {
        self.dir_table
    }

    /// The path relative to the section's root: names joined by `/`, empty
    /// for the root.
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// The entry's own name, the last component of its path (empty for the
    /// root).
    pub fn name(&self) -> &[u8] {
        &self.raw.name
    }

    /// The entry's number in its section: 0 for the root, then in the order
    /// the writer met them. A hard link names its file by it
    /// ([`Entry::link_id`]).
    pub fn id(&self) -> u64 {
        self.raw.entry_id
    }

    /// The id of the directory holding the entry; `None` for the root.
    pub fn parent_id(&self) -> Option<u64> {
        (self.raw.parent_id != NO_PARENT).then_some(self.raw.parent_id)
    }

    /// What the entry is.
    pub fn kind(&self) -> EntryKind {
        self.raw.kind
    }

    /// Whether it is a regular file (a hard link is not: see
    /// [`Entry::is_hard_link`]).
    pub fn is_file(&self) -> bool {
        self.raw.kind == EntryKind::File
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.raw.kind == EntryKind::Directory
    }

    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.raw.kind == EntryKind::Symlink
    }

    /// Whether it is a hard link to an earlier regular file of the section,
    /// whose content it shares ([`crate::Tree::open`] reads it).
    pub fn is_hard_link(&self) -> bool {
        self.raw.kind == EntryKind::Hardlink
    }

    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`);
    /// the kind is [`Entry::kind`].
    pub fn mode(&self) -> u32 {
        self.raw.mode
    }

    /// The owner's user id.
    pub fn uid(&self) -> u32 {
        self.raw.uid
    }

    /// The owner's group id.
    pub fn gid(&self) -> u32 {
        self.raw.gid
    }

    /// The owner's user name, when the writer captured owner names and knew
    /// this one.
    pub fn user(&self) -> Option<&[u8]> {
        (!self.raw.user.is_empty()).then_some(&self.raw.user[..])
    }

    /// The owner's group name, when the writer captured owner names and knew
    /// this one.
    pub fn group(&self) -> Option<&[u8]> {
        (!self.raw.group.is_empty()).then_some(&self.raw.group[..])
    }

    /// The modification time.
    pub fn mtime(&self) -> Timestamp {
        self.raw.mtime
    }

    /// The source's inode number, when the section captured source
    /// identity (FORMAT.md 8.1 bit 6).
    pub fn ino(&self) -> Option<u64> {
        (self.captured & Captured::IDENTITY != 0).then_some(self.raw.ino)
    }

    /// The source's device (major, minor), when the section captured source
    /// identity (FORMAT.md 8.1 bit 6).
    pub fn dev(&self) -> Option<(u32, u32)> {
        (self.captured & Captured::IDENTITY != 0).then_some(self.raw.dev)
    }

    /// How many extents hold a regular file's content (FORMAT.md 8.3
    /// `extent_count`); 0 for other entries.
    pub fn extent_count(&self) -> u64 {
        self.raw.extent_count
    }

    /// The access time, when the section captured access times.
    pub fn atime(&self) -> Option<Timestamp> {
        (self.captured & Captured::ATIME != 0).then_some(self.raw.atime)
    }

    /// The change time, when the section captured change times (a restore
    /// cannot set it: it is there to be read).
    pub fn ctime(&self) -> Option<Timestamp> {
        (self.captured & Captured::CTIME != 0).then_some(self.raw.ctime)
    }

    /// The birth time, when the source had one for this entry and the
    /// section captured birth times.
    pub fn birth_time(&self) -> Option<Timestamp> {
        (self.raw.flags & EntryFlags::BTIME != 0).then_some(self.raw.btime)
    }

    /// A regular file's length in bytes, holes included; a symbolic link's
    /// target length; 0 for every other kind (a hard link's content is its
    /// file's: [`crate::FileReader::len`] after [`crate::Tree::open`]).
    pub fn size(&self) -> u64 {
        self.raw.size
    }

    /// A symbolic link's target, as recorded (not resolved, and not checked
    /// to stay inside the tree).
    pub fn symlink_target(&self) -> Option<&[u8]> {
        (self.raw.kind == EntryKind::Symlink).then_some(&self.raw.target[..])
    }

    /// A hard link's file: the id of the earlier regular-file entry whose
    /// inode it shares ([`crate::Tree::link_target`] gives that entry).
    pub fn link_id(&self) -> Option<u64> {
        (self.raw.kind == EntryKind::Hardlink).then_some(self.raw.link_id)
    }

    /// A character or block device's numbers, `(major, minor)`.
    pub fn device(&self) -> Option<(u32, u32)> {
        matches!(self.raw.kind, EntryKind::CharDevice | EntryKind::BlockDevice)
            .then_some((self.raw.rdev_major, self.raw.rdev_minor))
    }

    /// The extended attributes, in increasing name order: POSIX ACLs and
    /// file capabilities among them (`system.posix_acl_access`,
    /// `security.capability`). Empty when the entry has none, and when the
    /// section did not capture them ([`crate::Tree::captured`] tells which).
    pub fn xattrs(&self) -> &[Xattr] {
        &self.raw.xattrs
    }

    /// The value of the extended attribute `name`, if the entry has it.
    pub fn xattr(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let name = name.as_ref();
        self.raw.xattrs.binary_search_by(|x| x.name.as_slice().cmp(name)).ok().map(|at| &self.raw.xattrs[at].value[..])
    }

    /// A regular file's digest (FORMAT.md 8.3): what its content is checked
    /// against as it is read.
    pub fn digest(&self) -> Option<[u8; DIGEST_LEN]> {
        (self.raw.kind == EntryKind::File).then_some(self.raw.digest)
    }

    /// Whether the file's content could not be read when the archive was
    /// written: the archive holds none of it (its size is 0), and
    /// [`crate::Tree::open`] fails with
    /// [`ErrorKind::NotStored`](crate::ErrorKind::NotStored). Only regular
    /// files carry it.
    pub fn is_unreadable(&self) -> bool {
        self.raw.kind == EntryKind::File && self.raw.flags & EntryFlags::UNREADABLE != 0
    }

    /// Whether the file changed while the writer read it: its content is
    /// kept as read, which may mix before and after. Only regular files
    /// carry it.
    pub fn changed_while_read(&self) -> bool {
        self.raw.kind == EntryKind::File && self.raw.flags & EntryFlags::CHANGED_WHILE_READ != 0
    }

    /// Whether a salvage lost this entry's content (a regular file: size 0,
    /// and [`crate::Tree::open`] fails with
    /// [`ErrorKind::NotStored`](crate::ErrorKind::NotStored)), or the entry
    /// itself (a directory the salvager made up to hold what survived it).
    pub fn lost_in_salvage(&self) -> bool {
        self.raw.flags & EntryFlags::LOST_IN_SALVAGE != 0
    }

    /// The entry as the format parses it, every field raw (`strata_format`'s
    /// types), for code that works at that level.
    pub fn raw(&self) -> &files::Entry {
        &self.raw
    }

    /// The format's entry, without the path.
    pub fn into_raw(self) -> files::Entry {
        self.raw
    }
}
