//! A metadata walk of a folder, to compare a tree with its extraction: type,
//! mode, owner, size, nanosecond mtime, xattrs, link targets, hard-link groups,
//! holes and BLAKE3 of content.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub target: Vec<u8>,
    /// The first path (in walk order) of the inode's hard-link group.
    pub link_group: Vec<u8>,
    pub blake3: String,
    /// Data ranges as the file system reports them (SEEK_DATA/SEEK_HOLE).
    pub data_ranges: Vec<(u64, u64)>,
    pub rdev: u64,
}

fn data_ranges(path: &Path, size: u64) -> Vec<(u64, u64)> {
    let Ok(file) = std::fs::File::open(path) else { return Vec::new() };
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < size {
        let Ok(start) = rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(at)) else { break };
        let end = rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(start)).unwrap_or(size);
        ranges.push((start, end));
        at = end;
    }
    ranges
}

/// The extended attributes of `path` itself (a link's own, not its target's),
/// sorted by name.
pub fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(path)
        .map(|names| {
            names.filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n.as_bytes().to_vec(), v))).collect()
        })
        .unwrap_or_default();
    xattrs.sort();
    xattrs
}

/// Walks `root`; paths are relative, as bytes. `with_times` includes the mtime.
pub fn manifest(root: &Path) -> BTreeMap<Vec<u8>, Facts> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut children: Vec<_> =
            std::fs::read_dir(&dir).expect("readable").map(|e| e.expect("entry").path()).collect();
        children.sort();
        for path in children {
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("below root").as_os_str().as_bytes().to_vec();
            let t = meta.file_type();
            let kind = if t.is_dir() {
                'd'
            } else if t.is_symlink() {
                'l'
            } else if t.is_fifo() {
                'p'
            } else if t.is_char_device() {
                'c'
            } else if t.is_block_device() {
                'b'
            } else if t.is_socket() {
                's'
            } else {
                '-'
            };
            let xattrs = xattrs(&path);
            let link_group = if kind == '-' {
                inodes.entry((meta.dev(), meta.ino())).or_insert_with(|| rel.clone()).clone()
            } else {
                Vec::new()
            };
            let (blake3, ranges) = if kind == '-' {
                let bytes = std::fs::read(&path).expect("readable");
                (blake3::hash(&bytes).to_hex().to_string(), data_ranges(&path, meta.len()))
            } else {
                (String::new(), Vec::new())
            };
            let target = if kind == 'l' {
                std::fs::read_link(&path).expect("link").as_os_str().as_bytes().to_vec()
            } else {
                Vec::new()
            };
            out.insert(
                rel,
                Facts {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: if kind == 'd' { 0 } else { meta.len() },
                    mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                    xattrs,
                    target,
                    link_group,
                    blake3,
                    data_ranges: ranges,
                    rdev: if matches!(kind, 'c' | 'b') { meta.rdev() } else { 0 },
                },
            );
            if kind == 'd' {
                stack.push(path);
            }
        }
    }
    out
}

/// Lists every difference between two manifests, for assertion messages.
pub fn differences(a: &BTreeMap<Vec<u8>, Facts>, b: &BTreeMap<Vec<u8>, Facts>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, fa) in a {
        match b.get(path) {
            None => out.push(format!("{}: missing", String::from_utf8_lossy(path))),
            Some(fb) if fa != fb => out.push(format!("{}: {fa:?} != {fb:?}", String::from_utf8_lossy(path))),
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{}: unexpected", String::from_utf8_lossy(path)));
    }
    out
}
