//! A file-tree section as a handle: its entries in order
//! ([`Tree::entries`]), a path looked up through the directory tables
//! ([`Tree::lookup`]), a directory's children ([`Tree::read_dir`]), a file's
//! content through [`std::io::Read`] and [`std::io::Seek`] ([`Tree::open`]),
//! and an extraction ([`Tree::extract_to`]).
//!
//! Everything here goes through the section-level functions of
//! [`crate::tree`] (entry records, directory tables) and the archive's chunk
//! reads; the handle adds the typed [`Entry`] and the bounds on what is read.

#[cfg(feature = "extract")]
use std::path::Path;

use strata_format::files::{self, EntryKind, NO_PARENT};
use strata_format::ErrorClass;

#[cfg(feature = "extract")]
use crate::extract::{self, ExtractOptions, ExtractReport};
use crate::tree::{normal_path, DirCursor, EntryWalk, TableWalk};
use crate::{Archive, Entry, Error, ErrorKind, FileReader, ReadAt, Section, TreeSection};

impl<R: ReadAt> Archive<R> {
    /// The file-tree section called `name`, as a handle to read it by. An
    /// archive without such a tree (none by that name, or an image by that
    /// name) gives an error of kind
    /// [`ErrorKind::NoSuchSection`](crate::ErrorKind::NoSuchSection).
    ///
    /// ```
    /// use strata_reader::{Archive, ErrorKind};
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/image-and-tree.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// assert_eq!(tree.name(), "tree");
    /// // "disk" is an image: no file tree by that name.
    /// assert_eq!(archive.tree("disk").unwrap_err().kind(), ErrorKind::NoSuchSection);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tree(&self, name: &str) -> Result<Tree<'_, R>, Error> {
        if let Some(section) = self.tree_section(name) {
            return Ok(Tree { archive: self, section });
        }
        let trees: Vec<String> = self
            .sections()
            .iter()
            .filter_map(|s| match s {
                Section::Tree(tree) => Some(format!("{:?}", tree.name)),
                Section::Image(_) => None,
            })
            .collect();
        let detail = if self.sections().iter().any(|s| s.name() == name) {
            "the section of that name is an image, not a file tree".to_string()
        } else if trees.is_empty() {
            "the archive holds no file-tree section".to_string()
        } else {
            format!("the archive has none of that name; its file trees: {}", trees.join(", "))
        };
        Err(Error::no_such_section("file-tree section", name, detail))
    }
}

/// A file-tree section of an opened archive, ready to read: the handle
/// [`Archive::tree`] gives. It borrows the archive, and is cheap to copy.
///
/// Nothing is read until asked for, and what is asked for is bounded:
/// [`Tree::entries`] reads the entry groups (`FILES_ENTRIES` records) one at
/// a time (memory holds one group and the directories' names, however many
/// entries there are), [`Tree::lookup`] one `FILES_DIR` and one group per
/// path component (FORMAT.md 8.5), [`Tree::open`] the file's
/// `FILES_EXTENTS` record(s) and its own chunks, one at a time.
///
/// ```
/// use std::io::Read;
/// use strata_reader::{Archive, EntryKind};
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
/// let tree = archive.tree("tree")?;
///
/// // Every entry, in the archive's order, without reading any content.
/// for entry in tree.entries() {
///     let entry = entry?;
///     println!("{:?} {:>6} {}", entry.kind(), entry.size(), String::from_utf8_lossy(entry.path()));
/// }
///
/// // One file by its path, through std::io.
/// let entry = tree.lookup("docs/hard")?.expect("in the archive");
/// let mut content = Vec::new();
/// tree.open(&entry)?.read_to_end(&mut content)?;
/// assert_eq!(content.len() as u64, entry.size());
///
/// // A hard link reads as its file.
/// let link = tree.lookup("docs/readme.txt")?.expect("in the archive");
/// assert_eq!(link.kind(), EntryKind::Hardlink);
/// let mut again = Vec::new();
/// tree.open(&link)?.read_to_end(&mut again)?;
/// assert_eq!(again, content);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Tree<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    section: &'a TreeSection,
}

impl<R: ReadAt> Clone for Tree<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: ReadAt> Copy for Tree<'_, R> {}

impl<R: ReadAt> std::fmt::Debug for Tree<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("name", &self.section.name).field("entries", &self.entry_count()).finish()
    }
}

impl<'a, R: ReadAt> Tree<'a, R> {
    /// The section's name.
    pub fn name(&self) -> &'a str {
        &self.section.name
    }

    /// The section's records as the archive holds them: `FILES_BEGIN`,
    /// `FILES_END` totals, where its tables are.
    pub fn section(&self) -> &'a TreeSection {
        self.section
    }

    /// The archive the tree is read from.
    pub fn archive(&self) -> &'a Archive<R> {
        self.archive
    }

    /// How many entries the section holds, the root included, as its
    /// `FILES_END` records it ([`Tree::entries`] checks it).
    pub fn entry_count(&self) -> u64 {
        self.section.end.entry_count
    }

    /// What the writer captured for every entry: the bits of
    /// [`Captured`](crate::Captured) (owner names, extended attributes,
    /// atime, ctime, birth times, holes). A field not captured is unknown,
    /// not empty: the accessors of [`Entry`] give `None` for the times.
    pub fn captured(&self) -> u64 {
        self.section.begin.captured
    }

    /// The root directory's entry (its path is empty).
    pub fn root(&self) -> Result<Entry, Error> {
        let (root, dir_record) = self.archive.root_of(self.section)?;
        Ok(Entry::located(Vec::new(), root, self.captured(), dir_record))
    }

    /// Every entry, in the order of the archive: entry ids 0, 1, 2, ...,
    /// each after its directory (the root first; each directory's children
    /// one run, by name: FORMAT.md 8), with its path. Reads the groups the
    /// `FILES_INDEX` names one at a time and never file content; memory holds
    /// one group's entries and the names of the directories, whatever the
    /// number of entries. A damaged record ends the iteration with its error.
    ///
    /// ```
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// let paths = tree.entries().map(|e| e.map(|e| e.path().to_vec())).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(paths.len() as u64, tree.entry_count());
    /// assert_eq!((paths[0].as_slice(), paths[1].as_slice()), (&b""[..], &b"abc"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entries(&self) -> Entries<'a, R> {
        Entries { walk: EntryWalk::new(self.archive, self.section), captured: self.captured() }
    }

    /// The entry at `path` (relative to the root; `""` and `"."` are the root,
    /// empty and `.` components are skipped), as FORMAT.md 8.5 says: one
    /// `FILES_DIR` and one group per path component, a binary search of the
    /// fences' names then of the run's names in the group, every table and
    /// entry reached checked against the way that led to it
    /// (`index-mismatch` otherwise), so the bytes read grow with the path's
    /// depth, not with the tree. `None` when no entry has
    /// that path. Symbolic links on the way are not followed: a path through
    /// one is not found.
    ///
    /// ```
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// let link = tree.lookup("docs/link")?.expect("in the archive");
    /// assert_eq!(link.symlink_target(), Some(&b"readme.txt"[..]));
    /// assert!(tree.lookup("docs/nothing")?.is_none());
    /// // Names are bytes: a name that is not UTF-8 is looked up as it is.
    /// assert!(tree.lookup(b"docs/caf\xe9")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lookup(&self, path: impl AsRef<[u8]>) -> Result<Option<Entry>, Error> {
        let path = path.as_ref();
        Ok(self
            .archive
            .find(self.section, path)?
            .map(|(entry, table)| Entry::located(normal_path(path), entry, self.captured(), table)))
    }

    /// The children of the directory `dir`, in name order (bytewise), through
    /// its run: its group's `FILES_DIR` (its locator and fences), then each
    /// group holding part of the run as it is reached. An entry that is not a directory gives an error of kind
    /// [`ErrorKind::NotADirectory`](crate::ErrorKind::NotADirectory). A
    /// directory given by [`Tree::entries`], [`Tree::entry`],
    /// [`Tree::lookup`], [`Tree::read_dir`] or [`Tree::subtree`] is listed at
    /// once (it knows its group's `FILES_DIR`); one made elsewhere
    /// ([`Entry::from_raw`]) is first looked up by its path.
    ///
    /// ```
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// let root = tree.root()?;
    /// let names = tree.read_dir(&root)?.map(|e| e.map(|e| e.name().to_vec())).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(names, [&b"abc"[..], b"d1", b"d2", b"docs", b"empty-dir", b"esc", b"esd", b"zz"]);
    /// // Each child is ready to be listed in turn.
    /// let docs = tree.lookup("docs")?.expect("in the archive");
    /// assert_eq!(tree.read_dir(&docs)?.count(), 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_dir(&self, dir: &Entry) -> Result<ReadDir<'a, R>, Error> {
        if !dir.is_dir() {
            return Err(Error::of_entry(
                ErrorKind::NotADirectory,
                shown_path(dir.path()),
                format!("a {}, not a directory", dir.kind().name()),
            )
            .in_section(self.name()));
        }
        let table = match dir.dir_table() {
            Some(table) => table,
            // An entry made elsewhere: looked up by its path, which must
            // lead to it (its children's paths are made from it).
            None => match self.archive.find(self.section, dir.path())? {
                Some((found, table)) if found.entry_id == dir.id() && found.kind == EntryKind::Directory => table,
                _ => {
                    return Err(Error::new(
                        ErrorClass::IndexMismatch,
                        format!("FILES_DIR of {}", shown_path(dir.path())),
                        format!("the directory tables do not lead to entry {} by its path", dir.id()),
                    )
                    .in_section(self.name()))
                }
            },
        };
        let cursor = DirCursor::open(self.archive, self.section, table, dir.id(), dir.path().to_vec())?;
        Ok(ReadDir { tree: *self, cursor })
    }

    /// The entry at `path` and everything below it, through the directory
    /// tables alone (no walk of the whole tree): a directory's children in
    /// name order, then those of each child directory in turn. `None` when
    /// no entry has that path. Each table is read once and must belong to
    /// the directory that leads to it (FORMAT.md 8.5), so the iteration ends
    /// whatever the tables hold; a table that breaks the rule ends it with
    /// its error.
    ///
    /// ```
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// let below = tree.subtree("esd")?.expect("in the archive");
    /// let paths = below.map(|e| e.map(|e| e.path().to_vec())).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(paths, [&b"esd"[..], b"esd/pwned"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subtree(&self, path: impl AsRef<[u8]>) -> Result<Option<Subtree<'a, R>>, Error> {
        Ok(TableWalk::new(self.archive, self.section, path.as_ref())?
            .map(|walk| Subtree { walk, captured: self.captured() }))
    }

    /// The entry numbered `id` ([`Entry::id`]), with its path, without a
    /// walk of the tree: the group holding it is found by a binary search of
    /// the `FILES_INDEX` `first_id`s (in memory: one group read), and its path
    /// by climbing its directories the same way (one group per level at
    /// most; a few groups are kept, so directories written together cost one
    /// read). `None`
    /// when the section has no such entry.
    ///
    /// ```
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// let hard = tree.lookup("docs/hard")?.expect("in the archive");
    /// assert_eq!(tree.entry(hard.id())?, Some(hard));
    /// assert_eq!(tree.entry(tree.entry_count())?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entry(&self, id: u64) -> Result<Option<Entry>, Error> {
        let Some((raw, dir_record)) = self.archive.entry_by_id(self.section, id)? else {
            return Ok(None);
        };
        let path = self.path_of(&raw)?;
        Ok(Some(Entry::located(path, raw, self.captured(), dir_record)))
    }

    /// The path of `entry`, from its directories found by id: each is an
    /// earlier directory entry (FORMAT.md 8.3), so the climb ends, after at
    /// most as many steps as the entry has directories above it.
    fn path_of(&self, entry: &files::Entry) -> Result<Vec<u8>, Error> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let (mut id, mut parent, mut name) = (entry.entry_id, entry.parent_id, entry.name.clone());
        let malformed = |detail: String| {
            Error::new(ErrorClass::RecordMalformed, "parent_id", detail).in_section(&self.section.name)
        };
        while parent != NO_PARENT {
            if parent >= id {
                return Err(malformed(format!(
                    "entry {id} names entry {parent}, not an earlier one, as its directory"
                )));
            }
            names.push(name);
            let (dir, _) = self.archive.entry_by_id(self.section, parent)?.ok_or_else(|| {
                Error::new(
                    ErrorClass::IndexMismatch,
                    "parent_id",
                    format!("entry {id} is in entry {parent}, which no entry record holds"),
                )
                .in_section(&self.section.name)
            })?;
            if dir.kind != EntryKind::Directory {
                return Err(malformed(format!("entry {id} is in entry {parent}, a {}", dir.kind.name())));
            }
            (id, parent, name) = (dir.entry_id, dir.parent_id, dir.name);
        }
        // Only entry 0 is the root (FORMAT.md 8.3).
        if id != 0 {
            return Err(malformed(format!("entry {id} has no directory, and only entry 0 is the root")));
        }
        names.reverse();
        Ok(names.join(&b'/'))
    }

    /// The regular file a hard link shares its content with, found by its id
    /// as [`Tree::entry`] finds it (no walk); `None` when `link` is not a hard
    /// link. A link to anything but an earlier regular file is a defect of
    /// the archive (FORMAT.md 8.3), and an error.
    ///
    /// ```
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// let link = tree.lookup("docs/readme.txt")?.expect("in the archive");
    /// let file = tree.link_target(&link)?.expect("a hard link");
    /// assert_eq!(file.path(), b"docs/hard");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn link_target(&self, link: &Entry) -> Result<Option<Entry>, Error> {
        if !link.is_hard_link() {
            return Ok(None);
        }
        let file = self.linked_file(link)?;
        let path = self.path_of(&file)?;
        Ok(Some(Entry::from_raw(path, file, self.captured())))
    }

    /// The regular file whose content `entry` gives: itself, or the file a
    /// hard link names, which must be an earlier regular file.
    fn linked_file(&self, entry: &Entry) -> Result<files::Entry, Error> {
        match entry.kind() {
            EntryKind::File => Ok(entry.raw().clone()),
            EntryKind::Hardlink => {
                let link_id = entry.raw().link_id;
                match self.archive.entry_by_id(self.section, link_id)?.map(|(file, _)| file) {
                    Some(file) if file.kind == EntryKind::File && file.entry_id < entry.id() => Ok(file),
                    found => Err(Error::new(
                        ErrorClass::RecordMalformed,
                        format!("hard link {}", shown_path(entry.path())),
                        format!(
                            "a hard link to entry {link_id}, which is {}, not an earlier regular file",
                            match found {
                                None => "in no entry record".to_string(),
                                Some(found) if found.entry_id >= entry.id() => "not an earlier entry".to_string(),
                                Some(found) => format!("a {}", found.kind.name()),
                            }
                        ),
                    )
                    .in_section(self.name())),
                }
            }
            other => Err(Error::of_entry(
                ErrorKind::NotAFile,
                shown_path(entry.path()),
                format!("a {}, not a regular file", other.name()),
            )
            .in_section(self.name())),
        }
    }

    /// A reader of a regular file's content, implementing [`Read`] and
    /// [`Seek`](std::io::Seek); a hard link reads as its file (found by id, no walk).
    /// Holes read as zeros.
    ///
    /// What is read is checked (FORMAT.md 8.3, 10.1 step 5): a file held in
    /// one extent is decoded, at the first read, only as far as its last
    /// byte and checked against the file's digest before any byte is given;
    /// a file of several extents is read a chunk at a time, each checked by
    /// its BLAKE3, and the file's digest is checked when the reads went from
    /// byte 0 to the end without a seek elsewhere (the read that reaches the
    /// end fails if it does not match).
    ///
    /// An entry that is not a regular file nor a hard link gives an error of
    /// kind [`ErrorKind::NotAFile`](crate::ErrorKind::NotAFile); a file whose
    /// content the archive does not hold (it could not be read at backup, or
    /// a salvage lost it) one of kind
    /// [`ErrorKind::NotStored`](crate::ErrorKind::NotStored): such content
    /// never reads as zeros, nor as an empty file.
    ///
    /// ```
    /// use std::io::{Read, Seek, SeekFrom};
    /// use strata_reader::{Archive, ErrorKind};
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-salvaged.strata")[..])?;
    /// let tree = archive.tree("tree")?;
    /// let sparse = tree.lookup("docs/sparse")?.expect("in the archive");
    /// let mut file = tree.open(&sparse)?;
    /// assert_eq!(file.len(), 20480);
    /// file.seek(SeekFrom::End(-16))?;
    /// let mut tail = Vec::new();
    /// file.read_to_end(&mut tail)?;
    /// assert_eq!(tail.len(), 16);
    ///
    /// // A salvage lost this one's content: an error, not an empty file.
    /// let lost = tree.lookup("docs/big.bin")?.expect("its entry survived");
    /// assert!(lost.lost_in_salvage());
    /// assert_eq!(tree.open(&lost).unwrap_err().kind(), ErrorKind::NotStored);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`Read`]: std::io::Read
    pub fn open(&self, entry: &Entry) -> Result<FileReader<'a, R>, Error> {
        let mut file = self.linked_file(entry)?;
        let missing = if file.flags & files::EntryFlags::UNREADABLE != 0 {
            Some("its content could not be read when the archive was written: the archive holds none")
        } else if file.flags & files::EntryFlags::LOST_IN_SALVAGE != 0 {
            Some("its content was lost in salvage: the archive holds none")
        } else {
            None
        };
        if let Some(why) = missing {
            return Err(Error::of_entry(ErrorKind::NotStored, shown_path(entry.path()), why).in_section(self.name()));
        }
        file.extents = self.archive.file_extents(self.section, &file)?;
        FileReader::new(*self, file)
    }

    /// Extracts the whole section, or the paths `options.select` names, into
    /// `dest` (created if missing): safely (nothing is written outside
    /// `dest`; unsafe names and links are refused by path) and in the
    /// restore order of FORMAT.md 8.7. The same as [`extract::extract`].
    ///
    /// ```
    /// use strata_reader::extract::{ExtractOptions, Owners};
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
    /// let dest = tempfile::tempdir()?;
    /// let options = ExtractOptions { owners: Owners::Never, select: vec![b"docs".to_vec()], ..Default::default() };
    /// let report = archive.tree("tree")?.extract_to(dest.path(), &options)?;
    /// assert!(report.refused.is_empty());
    /// assert_eq!(std::fs::read(dest.path().join("docs/hard"))?.len(), 300);
    /// assert!(!dest.path().join("abc").exists(), "not selected");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Only with the `extract` feature (on by default).
    #[cfg(feature = "extract")]
    pub fn extract_to(&self, dest: impl AsRef<Path>, options: &ExtractOptions) -> Result<ExtractReport, Error> {
        extract::extract(self.archive, self.section, dest.as_ref(), options)
    }
}

/// Every entry of a tree in the archive's order: made by [`Tree::entries`].
/// Yields `Err` once, for a damaged record, and then ends.
///
/// ```
/// use strata_reader::Archive;
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
/// let tree = archive.tree("tree")?;
/// let mut bytes = 0u64;
/// for entry in tree.entries() {
///     let entry = entry?;
///     if entry.is_file() {
///         // Sizes are the archive's word: a hostile one can make them add up
///         // past u64::MAX.
///         bytes = bytes.saturating_add(entry.size());
///     }
/// }
/// assert_eq!(bytes, tree.section().end.content_bytes);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Entries<'a, R: ReadAt> {
    walk: EntryWalk<'a, R>,
    captured: u64,
}

impl<R: ReadAt> Iterator for Entries<'_, R> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let captured = self.captured;
        self.walk.next().map(|item| item.map(|(item, dir)| Entry::located(item.path, item.entry, captured, dir)))
    }
}

impl<R: ReadAt> std::iter::FusedIterator for Entries<'_, R> {}

impl<R: ReadAt> std::fmt::Debug for Entries<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").finish_non_exhaustive()
    }
}

/// The children of one directory in name order: made by [`Tree::read_dir`].
/// Yields `Err` once, for a child whose entry does not match its table, and
/// then ends.
///
/// ```
/// use strata_reader::Archive;
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
/// let tree = archive.tree("tree")?;
/// // Directories first, depth first, as a file manager opens them.
/// let mut pending = vec![tree.root()?];
/// let mut seen = 0;
/// while let Some(dir) = pending.pop() {
///     for child in tree.read_dir(&dir)? {
///         let child = child?;
///         seen += 1;
///         if child.is_dir() {
///             pending.push(child);
///         }
///     }
/// }
/// assert_eq!(seen + 1, tree.entry_count());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadDir<'a, R: ReadAt> {
    tree: Tree<'a, R>,
    cursor: DirCursor,
}

impl<R: ReadAt> Iterator for ReadDir<'_, R> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let child = self.cursor.next_child(self.tree.archive, self.tree.section)?;
        Some(child.map(|(item, table)| Entry::located(item.path, item.entry, self.tree.captured(), table)))
    }
}

impl<R: ReadAt> std::iter::FusedIterator for ReadDir<'_, R> {}

impl<R: ReadAt> std::fmt::Debug for ReadDir<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDir").field("tree", &self.tree).finish_non_exhaustive()
    }
}

/// An entry and everything below it, through the directory tables: made by
/// [`Tree::subtree`]. Yields `Err` once, for a table or entry that breaks the
/// rules of FORMAT.md 8.5, and then ends.
///
/// ```
/// use strata_reader::Archive;
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
/// let tree = archive.tree("tree")?;
/// let docs = tree.subtree("docs")?.expect("in the archive");
/// let symlinks = docs.filter(|e| e.as_ref().is_ok_and(|e| e.is_symlink())).count();
/// assert_eq!(symlinks, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subtree<'a, R: ReadAt> {
    walk: TableWalk<'a, R>,
    captured: u64,
}

impl<R: ReadAt> Iterator for Subtree<'_, R> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let captured = self.captured;
        self.walk.next().map(|item| item.map(|(item, table)| Entry::located(item.path, item.entry, captured, table)))
    }
}

impl<R: ReadAt> std::iter::FusedIterator for Subtree<'_, R> {}

impl<R: ReadAt> std::fmt::Debug for Subtree<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subtree").finish_non_exhaustive()
    }
}

/// A path for messages: `.` for the root, escaped as everywhere.
pub(crate) fn shown_path(path: &[u8]) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        strata_format::escaped(path)
    }
}
