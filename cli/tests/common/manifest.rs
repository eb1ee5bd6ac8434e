//! A metadata walk of a folder, to compare a tree with its extraction: type,
//! mode, owner, size, nanosecond mtime (and atime), xattrs (ACLs included),
//! link targets, hard-link groups, holes and a BLAKE3 of content. The walk
//! opens what it reads with `O_NOATIME`: it leaves access times alone.
//!
//! The walk goes by directory handles, so it reads trees deeper than PATH_MAX
//! with a bounded number of descriptors, and it hashes a file by its data
//! ranges, so a 1 TiB sparse file costs what its data costs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Nanoseconds since 1970, exact whatever the year (i64 holds 1677-2262 only).
    pub mtime_ns: i128,
    /// The same for the access time, where asked for ([`manifest_all`]) and
    /// not of a symbolic link: Linux sets a link's access time when it is
    /// read, and offers no way around it.
    pub atime_ns: Option<i128>,
    /// Every extended attribute, `system.posix_acl_access` and
    /// `system.posix_acl_default` included, by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub target: Vec<u8>,
    /// The smallest path of the inode's hard-link group: the same in a tree and
    /// its extraction, whatever order each was walked in.
    pub link_group: Vec<u8>,
    /// BLAKE3 of the content read as a reader sees it (holes as zeros), in a
    /// form that does not depend on where the holes are: every 4 KiB block that
    /// is not all zeros, with its offset, then the size.
    pub blake3: String,
    /// Data ranges as the file system reports them (SEEK_DATA/SEEK_HOLE).
    pub data_ranges: Vec<(u64, u64)>,
    pub rdev: u64,
}

impl Facts {
    /// The fields that differ, as `field: a != b`.
    pub fn differences(&self, other: &Facts) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: {a} != {b}"));
            }
        };
        field("kind", self.kind.to_string(), other.kind.to_string());
        field("mode", format!("{:o}", self.mode), format!("{:o}", other.mode));
        field("uid", self.uid.to_string(), other.uid.to_string());
        field("gid", self.gid.to_string(), other.gid.to_string());
        field("size", self.size.to_string(), other.size.to_string());
        field("mtime_ns", self.mtime_ns.to_string(), other.mtime_ns.to_string());
        field("atime_ns", format!("{:?}", self.atime_ns), format!("{:?}", other.atime_ns));
        field("xattrs", format!("{:?}", shown_xattrs(&self.xattrs)), format!("{:?}", shown_xattrs(&other.xattrs)));
        field("target", shown(&self.target), shown(&other.target));
        field("link_group", shown(&self.link_group), shown(&other.link_group));
        field("blake3", self.blake3.clone(), other.blake3.clone());
        field("data_ranges", format!("{:?}", self.data_ranges), format!("{:?}", other.data_ranges));
        field("rdev", self.rdev.to_string(), other.rdev.to_string());
        out
    }
}

/// A path for a message: escaped as the CLI shows it, and the middle of a
/// very long one left out.
pub fn shown(path: &[u8]) -> String {
    let text = strata_format::escaped(path);
    if text.chars().count() <= 160 {
        return text;
    }
    let head: String = text.chars().take(80).collect();
    let tail: String = text.chars().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}…({} bytes)…{tail}", path.len())
}

fn shown_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(String, String)> {
    let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    xattrs.iter().map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), hex(v))).collect()
}

fn data_ranges(file: &std::fs::File, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < size {
        let Ok(start) = rustix::fs::seek(file, rustix::fs::SeekFrom::Data(at)) else { break };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(start)).unwrap_or(size).min(size);
        ranges.push((start, end));
        at = end;
    }
    ranges
}

/// The content hash of [`Facts::blake3`], reading only the data ranges.
fn content_hash(file: &std::fs::File, size: u64, ranges: &[(u64, u64)]) -> String {
    const BLOCK: u64 = 4096;
    let mut hasher = blake3::Hasher::new();
    let mut next_block = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for &(start, end) in ranges {
        let mut at = (start / BLOCK * BLOCK).max(next_block);
        let end = end.div_ceil(BLOCK) * BLOCK;
        let end = end.min(size);
        while at < end {
            let want = (end - at).min(buf.len() as u64) as usize;
            let mut got = 0;
            while got < want {
                match file.read_at(&mut buf[got..want], at + got as u64).expect("content readable") {
                    0 => break,
                    n => got += n,
                }
            }
            for (i, block) in buf[..got].chunks(BLOCK as usize).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    hasher.update(&(at + i as u64 * BLOCK).to_le_bytes());
                    hasher.update(block);
                }
            }
            if got < want {
                break;
            }
            at += got as u64;
        }
        next_block = next_block.max(end);
    }
    hasher.update(&size.to_le_bytes());
    hasher.finalize().to_hex().to_string()
}

fn kind_of(file_type: FileType) -> char {
    match file_type {
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::Fifo => 'p',
        FileType::CharacterDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Socket => 's',
        _ => '-',
    }
}

/// The extended attributes of `path` itself (its last component not followed:
/// a link's own, not its target's), sorted by name.
pub fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(path)
        .map(|names| {
            names.filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n.as_bytes().to_vec(), v))).collect()
        })
        .unwrap_or_default();
    xattrs.sort();
    xattrs
}

/// Opens `name` in `dir` with `flags`, and `O_NOATIME` where permitted, so
/// that the walk leaves access times as they were.
fn open_at(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags) -> OwnedFd {
    let flags = flags | OFlags::RDONLY | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        other => other,
    }
    .unwrap_or_else(|e| panic!("opening {}: {e}", shown(name.as_bytes())))
}

/// The facts of `name` in `dir` (the root itself when `name` is None); the
/// hard-link group is filled in at the end of the walk.
fn facts_at(dir: BorrowedFd<'_>, name: Option<&[u8]>, root: &Path, atimes: bool) -> (Facts, (u64, u64)) {
    let st = match name {
        Some(name) => rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW),
        None => rustix::fs::fstat(dir),
    }
    .expect("lstat");
    let kind = kind_of(FileType::from_raw_mode(st.st_mode));
    // The parent's /proc/self/fd link reaches the name by a short path however
    // deep it lies.
    let xattrs = match name {
        Some(name) => {
            let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            path.extend_from_slice(name);
            xattrs(Path::new(OsStr::from_bytes(&path)))
        }
        None => xattrs(root),
    };
    let size = st.st_size as u64;
    let (blake3, ranges) = if kind == '-' {
        let name = name.expect("the root is a directory");
        let file = std::fs::File::from(open_at(dir, OsStr::from_bytes(name), OFlags::NOFOLLOW));
        let ranges = data_ranges(&file, size);
        (content_hash(&file, size, &ranges), ranges)
    } else {
        (String::new(), Vec::new())
    };
    let target = match (kind, name) {
        ('l', Some(name)) => {
            rustix::fs::readlinkat(dir, OsStr::from_bytes(name), Vec::new()).expect("link").into_bytes()
        }
        _ => Vec::new(),
    };
    #[allow(clippy::unnecessary_cast)]
    let facts = Facts {
        kind,
        mode: st.st_mode as u32 & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if kind == 'd' { 0 } else { size },
        mtime_ns: i128::from(st.st_mtime as i64) * 1_000_000_000 + i128::from(st.st_mtime_nsec as i64),
        atime_ns: (atimes && kind != 'l')
            .then(|| i128::from(st.st_atime as i64) * 1_000_000_000 + i128::from(st.st_atime_nsec as i64)),
        xattrs,
        target,
        link_group: Vec::new(),
        blake3,
        data_ranges: ranges,
        rdev: if matches!(kind, 'c' | 'b') { st.st_rdev as u64 } else { 0 },
    };
    #[allow(clippy::unnecessary_cast)]
    (facts, (st.st_dev as u64, st.st_ino as u64))
}

/// Directory handles the walk keeps open at most; deeper, the shallowest are
/// closed and reopened through `..` on the way back up.
const OPEN_DIRS: usize = 64;

struct Frame {
    fd: Option<OwnedFd>,
    relative: Vec<u8>,
    /// Subdirectories still to walk, largest name first.
    subdirs: Vec<Vec<u8>>,
}

/// Walks `root`; paths are relative, as bytes. The root itself and access
/// times are left out.
pub fn manifest(root: &Path) -> BTreeMap<Vec<u8>, Facts> {
    walk(root, false)
}

/// As [`manifest`], with the root itself under the empty path and the access
/// times (but those of symbolic links).
pub fn manifest_all(root: &Path) -> BTreeMap<Vec<u8>, Facts> {
    walk(root, true)
}

fn walk(root: &Path, all: bool) -> BTreeMap<Vec<u8>, Facts> {
    let dir_flags = OFlags::DIRECTORY;
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    let root_fd = open_at(rustix::fs::CWD, root.as_os_str(), dir_flags);
    if all {
        let (facts, _) = facts_at(root_fd.as_fd(), None, root, all);
        out.insert(Vec::new(), facts);
    }
    let mut visit = |fd: &OwnedFd, relative: &[u8]| -> Vec<Vec<u8>> {
        // `read_from` opens the directory again with the handle's flags,
        // O_NOATIME included.
        let mut names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(fd)
            .expect("directory lists")
            .map(|e| e.expect("entry").file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let (facts, id) = facts_at(fd.as_fd(), Some(&name), root, all);
            let mut path = relative.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            if facts.kind == '-' {
                inodes.entry(id).or_default().push(path.clone());
            }
            if facts.kind == 'd' {
                subdirs.push(name);
            }
            out.insert(path, facts);
        }
        subdirs.reverse();
        subdirs
    };
    let subdirs = visit(&root_fd, b"");
    let mut stack = vec![Frame { fd: Some(root_fd), relative: Vec::new(), subdirs }];
    // Frames below this index have had their handles closed.
    let mut open_from = 0;
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.subdirs.pop() else {
            let done = stack.pop().expect("not empty");
            if let Some(parent) = stack.last_mut() {
                if parent.fd.is_none() {
                    let fd = done.fd.expect("the deepest frame is open");
                    parent.fd = Some(open_at(fd.as_fd(), OsStr::new(".."), dir_flags));
                    open_from -= 1;
                }
            }
            continue;
        };
        let parent = top.fd.as_ref().expect("the deepest frame is open");
        let fd = open_at(parent.as_fd(), OsStr::from_bytes(&name), dir_flags | OFlags::NOFOLLOW);
        let mut relative = top.relative.clone();
        if !relative.is_empty() {
            relative.push(b'/');
        }
        relative.extend_from_slice(&name);
        let subdirs = visit(&fd, &relative);
        stack.push(Frame { fd: Some(fd), relative, subdirs });
        if stack.len() - open_from > OPEN_DIRS {
            stack[open_from].fd = None;
            open_from += 1;
        }
    }
    for paths in inodes.into_values() {
        let first = paths.iter().min().expect("a group has a path").clone();
        for path in paths {
            out.get_mut(&path).expect("walked").link_group = first.clone();
        }
    }
    out
}

/// Lists every difference between two manifests, field by field, for
/// assertion messages.
pub fn differences(a: &BTreeMap<Vec<u8>, Facts>, b: &BTreeMap<Vec<u8>, Facts>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, fa) in a {
        match b.get(path) {
            None => out.push(format!("{}: missing", shown(path))),
            Some(fb) if fa != fb => out.push(format!("{}: {}", shown(path), fa.differences(fb).join("; "))),
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{}: unexpected", shown(path)));
    }
    out
}
