//! Extracting a file tree to a folder, safely and in the specified restore order.
//!
//! # Security
//!
//! Nothing is created, written or changed outside the destination folder. Every
//! path is resolved component by component from a handle on the destination with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, so a symbolic link extracted earlier (or
//! already present) is never followed; names that are empty, `.`, `..` or hold
//! `/` are refused, as are duplicate names and hard links to anything but an
//! earlier regular file of the same section. A refused entry is reported by path
//! and the rest goes on; the entries below a refused directory are refused too.
//!
//! Files are written under a temporary name in their folder, given their owner,
//! extended attributes, mode and times, and only then renamed into place: an
//! interrupted extraction leaves no truncated file under a real name.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, XattrFlags};
use strata_format::files::{Entry, EntryKind, NO_PARENT};

use crate::{Archive, Error, PathEntry, ReadAt, TreeSection};

/// How owners are restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// As root: restore them (by name where the name exists here, else by number);
    /// otherwise leave files owned by the user extracting (GNU tar's default).
    Auto,
    /// Restore the stored numbers, ignoring names (`--numeric-owner`).
    Numeric,
    /// Never change owners.
    Never,
}

#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Replace files that already exist (never follows a symbolic link to do so).
    pub overwrite: bool,
    pub owners: Owners,
    /// Only these paths (and what is below them, and their parent directories).
    pub select: Vec<Vec<u8>>,
}

/// One entry that was not extracted, or not completely.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub path: Vec<u8>,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct ExtractReport {
    pub entries: u64,
    pub bytes: u64,
    /// Entries refused for safety or because they already exist.
    pub refused: Vec<Refusal>,
    /// Entries extracted with a problem (content that failed its check, metadata
    /// that could not be applied).
    pub warnings: Vec<Refusal>,
    /// Selected paths that the archive does not hold.
    pub not_found: Vec<Vec<u8>>,
}

fn ts(ns: i64) -> Timespec {
    Timespec { tv_sec: ns.div_euclid(1_000_000_000), tv_nsec: ns.rem_euclid(1_000_000_000) as _ }
}

fn times(entry: &Entry) -> Timestamps {
    Timestamps { last_access: ts(entry.atime_ns), last_modification: ts(entry.mtime_ns) }
}

/// User or group ids by name, from `/etc/passwd` or `/etc/group`.
type IdsByName = HashMap<Vec<u8>, u32>;

fn user_ids(path: &str) -> IdsByName {
    let Ok(text) = std::fs::read(path) else { return HashMap::new() };
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
            let id = std::str::from_utf8(fields.get(2)?).ok()?.parse().ok()?;
            Some((fields.first()?.to_vec(), id))
        })
        .collect()
}

struct Extractor<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    tree: &'a TreeSection,
    dest: OwnedFd,
    options: &'a ExtractOptions,
    report: ExtractReport,
    /// Owners to apply: `None` to leave them.
    owners: Option<(IdsByName, IdsByName)>,
    /// Entries that exist in the destination (by id): directories and files, with
    /// their path, for children and hard links.
    placed: HashMap<u64, Vec<u8>>,
    siblings: HashSet<(u64, Vec<u8>)>,
    /// Regular files skipped with a warning (no content to give): hard links to
    /// them are skipped with a warning too.
    skipped: HashSet<u64>,
    /// Directories created, deepest last, for their times at the end.
    directories: Vec<(Vec<u8>, Entry)>,
    temp_counter: u64,
    /// The directory the last entry went into: entries come depth first, so most
    /// share their parent with the one before and need no walk from DEST.
    last_parent: Option<(u64, std::rc::Rc<OwnedFd>)>,
}

/// Extracts the file-tree section `tree` into `dest` (created if missing).
pub fn extract<R: ReadAt>(
    archive: &Archive<R>,
    tree: &TreeSection,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport, Error> {
    std::fs::create_dir_all(dest).map_err(|e| Error::local_io(format!("creating {}", dest.display()), e))?;
    let dest_fd = rustix::fs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::local_io(format!("opening {}", dest.display()), e.into()))?;
    let is_root = rustix::process::geteuid().is_root();
    let owners = match options.owners {
        Owners::Never => None,
        Owners::Auto if !is_root => None,
        Owners::Auto => Some((user_ids("/etc/passwd"), user_ids("/etc/group"))),
        Owners::Numeric => Some((HashMap::new(), HashMap::new())),
    };
    let mut extractor = Extractor {
        archive,
        tree,
        dest: dest_fd,
        options,
        report: ExtractReport::default(),
        owners,
        placed: HashMap::new(),
        siblings: HashSet::new(),
        skipped: HashSet::new(),
        directories: Vec::new(),
        temp_counter: 0,
        last_parent: None,
    };
    let mut found: HashSet<Vec<u8>> = HashSet::new();
    archive.walk_tree(tree, |item| {
        if !options.select.is_empty() {
            let wanted = options.select.iter().any(|s| {
                let exact = item.path == *s;
                let below = item.path.len() > s.len() && item.path.starts_with(s) && item.path[s.len()] == b'/';
                let above = s.len() > item.path.len()
                    && s.starts_with(&item.path)
                    && (item.path.is_empty() || s[item.path.len()] == b'/');
                if exact {
                    found.insert(s.clone());
                }
                exact || below || above
            });
            if !wanted {
                return Ok(());
            }
        }
        extractor.entry(item)
    })?;
    extractor.report.not_found = options.select.iter().filter(|s| !found.contains(*s)).cloned().collect();
    extractor.finish_directories();
    Ok(extractor.report)
}

impl<R: ReadAt> Extractor<'_, R> {
    fn refuse(&mut self, path: &[u8], reason: impl Into<String>) {
        self.report.refused.push(Refusal { path: path.to_vec(), reason: reason.into() });
    }

    fn warn(&mut self, path: &[u8], reason: impl Into<String>) {
        self.report.warnings.push(Refusal { path: path.to_vec(), reason: reason.into() });
    }

    /// Opens the directory at `path` (relative to the destination) without
    /// following any symbolic link on the way.
    fn open_dir(&self, path: &[u8]) -> io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = rustix::fs::openat(&self.dest, ".", flags, Mode::empty())?;
        for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if !Entry::name_is_safe(component) {
                return Err(io::Error::other("unsafe path component"));
            }
            let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(component);
            fd = rustix::fs::openat(&fd, name, flags, Mode::empty())?;
        }
        Ok(fd)
    }

    /// A handle on the directory of entry `id` at `path`, opened without following
    /// links (or the same handle as for the previous entry).
    fn parent_dir(&mut self, id: u64, path: &[u8]) -> io::Result<std::rc::Rc<OwnedFd>> {
        if let Some((cached, fd)) = &self.last_parent {
            if *cached == id {
                return Ok(fd.clone());
            }
        }
        let fd = std::rc::Rc::new(self.open_dir(path)?);
        self.last_parent = Some((id, fd.clone()));
        Ok(fd)
    }

    fn entry(&mut self, item: PathEntry) -> Result<(), Error> {
        let PathEntry { path, entry } = item;
        if entry.parent_id == NO_PARENT {
            // The root is the destination itself: only its metadata applies.
            self.placed.insert(entry.entry_id, Vec::new());
            self.directories.push((Vec::new(), entry));
            return Ok(());
        }
        let parent_path = match self.placed.get(&entry.parent_id) {
            Some(p) => p.clone(),
            None => {
                self.refuse(&path, "its parent directory was refused or is not a directory");
                return Ok(());
            }
        };
        if !Entry::name_is_safe(&entry.name) {
            self.refuse(
                &path,
                "unsafe name (empty, `.`, `..`, or holds `/` or NUL): it could point outside the destination",
            );
            return Ok(());
        }
        if !self.siblings.insert((entry.parent_id, entry.name.clone())) {
            self.refuse(&path, "a second entry of the same name in one directory");
            return Ok(());
        }
        if let Err(e) = entry.validate_kind().and_then(|()| entry.check_captured(self.tree.begin.captured)) {
            self.refuse(&path, format!("it breaks a rule of the format: {}", e.detail));
            return Ok(());
        }
        let parent = match self.parent_dir(entry.parent_id, &parent_path) {
            Ok(fd) => fd,
            Err(e) => {
                self.refuse(&path, format!("its parent directory cannot be opened without following a link: {e}"));
                return Ok(());
            }
        };
        let name_bytes = entry.name.clone();
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&name_bytes);
        let existing = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let is_dir = existing
            .as_ref()
            .is_some_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory);
        // An existing real directory is extracted into; anything else in the way
        // (a file, or a symbolic link, which is never followed) is replaced only
        // with --overwrite.
        let reuse_dir = entry.kind == EntryKind::Directory && is_dir;
        if existing.is_some() {
            if !reuse_dir && !self.options.overwrite {
                self.refuse(&path, "already exists (use --overwrite to replace it)");
                return Ok(());
            }
            if !reuse_dir && is_dir {
                self.refuse(&path, "a directory exists there and is not replaced");
                return Ok(());
            }
            if !reuse_dir && entry.kind != EntryKind::File {
                let _ = rustix::fs::unlinkat(&parent, name, AtFlags::empty());
            }
        }
        if entry.kind == EntryKind::File {
            use strata_format::files::EntryFlags;
            if entry.flags & EntryFlags::UNREADABLE != 0 {
                self.skipped.insert(entry.entry_id);
                self.warn(&path, "its content could not be read when the archive was written: not extracted");
                return Ok(());
            }
            if entry.flags & EntryFlags::LOST_IN_SALVAGE != 0 {
                self.skipped.insert(entry.entry_id);
                self.warn(&path, "its content was lost in salvage: not extracted");
                return Ok(());
            }
        }
        if entry.kind == EntryKind::Hardlink && self.skipped.contains(&entry.link_id) {
            self.warn(&path, "a hard link to a file whose content is not in the archive: not extracted");
            return Ok(());
        }
        self.report.entries += 1;
        let (kind, entry_id) = (entry.kind, entry.entry_id);
        let changed =
            kind == EntryKind::File && entry.flags & strata_format::files::EntryFlags::CHANGED_WHILE_READ != 0;
        let result = match entry.kind {
            EntryKind::Directory => self.make_dir(&parent, name, &path, entry, reuse_dir),
            EntryKind::File => self.make_file(&parent, name, &path, &entry),
            EntryKind::Symlink => self.make_symlink(&parent, name, &path, &entry),
            EntryKind::Hardlink => self.make_hardlink(&parent, name, &path, &entry),
            _ => self.make_node(&parent, name, &path, &entry),
        };
        if let Err(e) = result {
            // A failure of the archive (corrupt chunk) is a warning for this file;
            // the extraction goes on, and hard links to the file are skipped with a
            // warning too (FORMAT.md 8.7).
            if kind == EntryKind::File {
                self.skipped.insert(entry_id);
            }
            self.warn(&path, e.to_string());
        } else if changed {
            // Extracted as the archive holds it, which may not be what the file
            // ever was: the writer saw it change while it read it (8.3 bit 1).
            self.warn(&path, "it changed while it was read when the archive was written: extracted as read");
        }
        Ok(())
    }

    fn make_dir(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        path: &[u8],
        entry: Entry,
        exists: bool,
    ) -> Result<(), Error> {
        if !exists {
            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                .map_err(|e| Error::local_io("creating the directory", e.into()))?;
        }
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::local_io("opening the new directory", e.into()))?;
        // Owner, xattrs and mode now; times after everything inside is written.
        self.apply_fd_metadata(&dir, path, &entry, false);
        self.placed.insert(entry.entry_id, path.to_vec());
        self.directories.push((path.to_vec(), entry));
        Ok(())
    }

    fn make_file(&mut self, parent: &OwnedFd, name: &std::ffi::OsStr, path: &[u8], entry: &Entry) -> Result<(), Error> {
        let (temp_name, fd) = self.temp_file(parent)?;
        let file = File::from(fd);
        match self.write_content(&file, entry) {
            Ok(true) => {}
            Ok(false) => self.warn(path, "content written but not checked: its holes exceed the hashing limit"),
            Err(e) => {
                let _ = rustix::fs::unlinkat(parent, temp_name.as_str(), AtFlags::empty());
                return Err(e);
            }
        }
        self.apply_fd_metadata(file.as_fd(), path, entry, true);
        if let Err(e) = rustix::fs::futimens(&file, &times(entry)) {
            self.warn(path, format!("times not set: {e}"));
        }
        let flags = if self.options.overwrite { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
        if let Err(e) = rustix::fs::renameat_with(parent, temp_name.as_str(), parent, name, flags) {
            let _ = rustix::fs::unlinkat(parent, temp_name.as_str(), AtFlags::empty());
            return Err(Error::local_io("renaming into place", e.into()));
        }
        self.report.bytes += entry.size;
        self.placed.insert(entry.entry_id, path.to_vec());
        Ok(())
    }

    fn temp_file(&mut self, parent: &OwnedFd) -> Result<(String, OwnedFd), Error> {
        loop {
            self.temp_counter += 1;
            let name = format!(".strata-{}-{}.tmp", std::process::id(), self.temp_counter);
            match rustix::fs::openat(
                parent,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => return Ok((name, fd)),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(Error::local_io("creating a temporary file", e.into())),
            }
        }
    }

    /// Writes a file's data extents at their offsets (holes stay holes), checking
    /// the whole content against the entry's BLAKE3.
    fn write_content(&self, file: &File, entry: &Entry) -> Result<bool, Error> {
        let checked = self.archive.file_content(self.tree, entry, |offset, piece| match piece {
            crate::tree::Piece::Data(bytes) => {
                file.write_all_at(bytes, offset).map_err(|e| Error::local_io("writing file content", e))
            }
            crate::tree::Piece::Hole(_) => Ok(()),
        })?;
        file.set_len(entry.size).map_err(|e| Error::local_io("setting the file size", e))?;
        Ok(checked)
    }

    fn make_symlink(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), Error> {
        let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&entry.target);
        rustix::fs::symlinkat(target, parent, name)
            .map_err(|e| Error::local_io("creating the symbolic link", e.into()))?;
        self.apply_at_metadata(parent, name, path, entry, true);
        Ok(())
    }

    fn make_hardlink(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), Error> {
        let Some(target_path) = self.placed.get(&entry.link_id).cloned() else {
            self.report.entries -= 1;
            self.refuse(
                path,
                format!("hard link to entry {}, which is not an extracted regular file of this tree", entry.link_id),
            );
            return Ok(());
        };
        let (dir, file_name) = match target_path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&target_path[..i], &target_path[i + 1..]),
            None => (&b""[..], &target_path[..]),
        };
        let source_dir = self.open_dir(dir).map_err(|e| Error::local_io("opening the link's target directory", e))?;
        let file_name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(file_name);
        rustix::fs::linkat(&source_dir, file_name, parent, name, AtFlags::empty())
            .map_err(|e| Error::local_io("creating the hard link", e.into()))?;
        Ok(())
    }

    fn make_node(&mut self, parent: &OwnedFd, name: &std::ffi::OsStr, path: &[u8], entry: &Entry) -> Result<(), Error> {
        let file_type = match entry.kind {
            EntryKind::CharDevice => rustix::fs::FileType::CharacterDevice,
            EntryKind::BlockDevice => rustix::fs::FileType::BlockDevice,
            EntryKind::Fifo => rustix::fs::FileType::Fifo,
            _ => rustix::fs::FileType::Socket,
        };
        let dev = rustix::fs::makedev(entry.rdev_major, entry.rdev_minor);
        rustix::fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev).map_err(|e| {
            let hint = if e == rustix::io::Errno::PERM { " (device nodes need root)" } else { "" };
            Error::local_io(format!("creating the {}{hint}", entry.kind.name()), e.into())
        })?;
        self.apply_at_metadata(parent, name, path, entry, false);
        Ok(())
    }

    fn owner_ids(&self, entry: &Entry) -> Option<(u32, u32)> {
        let (users, groups) = self.owners.as_ref()?;
        let uid = users.get(&entry.user).copied().unwrap_or(entry.uid);
        let gid = groups.get(&entry.group).copied().unwrap_or(entry.gid);
        Some((uid, gid))
    }

    /// Owner, then xattrs (capabilities last), then mode, on an open file or directory.
    /// `with_mode` is false for directories, whose mode is set at the end so that
    /// a read-only directory can still be filled by a user who is not root.
    fn apply_fd_metadata(&mut self, fd: impl AsFd, path: &[u8], entry: &Entry, with_mode: bool) {
        if let Some((uid, gid)) = self.owner_ids(entry) {
            if let Err(e) =
                rustix::fs::fchown(&fd, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
            {
                self.warn(path, format!("owner not set: {e}"));
            }
        }
        for xattr in ordered_xattrs(entry) {
            if let Err(e) = rustix::fs::fsetxattr(&fd, xattr_name(&xattr.name), &xattr.value, XattrFlags::empty()) {
                self.warn(path, format!("extended attribute {} not set: {e}", String::from_utf8_lossy(&xattr.name)));
            }
        }
        if with_mode {
            if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(entry.mode)) {
                self.warn(path, format!("mode not set: {e}"));
            }
        }
    }

    /// The same, by name in `parent`, for links and special files; then times.
    fn apply_at_metadata(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        path: &[u8],
        entry: &Entry,
        is_link: bool,
    ) {
        if let Some((uid, gid)) = self.owner_ids(entry) {
            let ids = (Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)));
            if let Err(e) = rustix::fs::chownat(parent, name, ids.0, ids.1, AtFlags::SYMLINK_NOFOLLOW) {
                self.warn(path, format!("owner not set: {e}"));
            }
        }
        if !entry.xattrs.is_empty() {
            // lsetxattr through the parent's /proc/self/fd link: the last component
            // is not followed.
            use std::os::fd::AsRawFd;
            let mut proc_path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
            proc_path.extend_from_slice(&entry.name);
            let proc_path = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&proc_path);
            for xattr in ordered_xattrs(entry) {
                if let Err(e) =
                    rustix::fs::lsetxattr(proc_path, xattr_name(&xattr.name), &xattr.value, XattrFlags::empty())
                {
                    self.warn(
                        path,
                        format!("extended attribute {} not set: {e}", String::from_utf8_lossy(&xattr.name)),
                    );
                }
            }
        }
        if !is_link {
            if let Err(e) = rustix::fs::chmodat(parent, name, Mode::from_raw_mode(entry.mode), AtFlags::empty()) {
                self.warn(path, format!("mode not set: {e}"));
            }
        }
        if let Err(e) = rustix::fs::utimensat(parent, name, &times(entry), AtFlags::SYMLINK_NOFOLLOW) {
            self.warn(path, format!("times not set: {e}"));
        }
    }

    /// Directory modes and times last, deepest first, once nothing more is written
    /// inside.
    fn finish_directories(&mut self) {
        let directories = std::mem::take(&mut self.directories);
        for (path, entry) in directories.iter().rev() {
            match self.open_dir(path) {
                Ok(fd) => {
                    if path.is_empty() {
                        // The destination itself gets the root's metadata too.
                        self.apply_fd_metadata(&fd, path, entry, false);
                    }
                    if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(entry.mode)) {
                        self.warn(path, format!("mode not set: {e}"));
                    }
                    if let Err(e) = rustix::fs::futimens(&fd, &times(entry)) {
                        self.warn(path, format!("times not set: {e}"));
                    }
                }
                Err(e) => self.warn(path, format!("times not set: {e}")),
            }
        }
    }
}

/// Extended attributes in restore order: file capabilities last, since changing
/// the owner clears them and some file systems reorder.
fn ordered_xattrs(entry: &Entry) -> Vec<&strata_format::files::Xattr> {
    let mut xattrs: Vec<_> = entry.xattrs.iter().collect();
    xattrs.sort_by_key(|x| x.name == b"security.capability");
    xattrs
}

fn xattr_name(name: &[u8]) -> &std::ffi::OsStr {
    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name)
}
