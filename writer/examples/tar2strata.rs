//! Converts a POSIX tar stream (GNU or PAX, from a file or stdin) into a Strata
//! archive holding one file-tree section (`spec/FORMAT.md` section 8), through
//! the writer's public API alone: [`ArchiveWriter::add_tree_from`] fed by an
//! [`EntrySource`].
//!
//! ```text
//! cargo run -p strata-writer --example tar2strata -- INPUT.tar|- OUTPUT.strata [SECTION]
//! tar --format=gnu -C /usr/share/doc -cf - . | cargo run -p strata-writer --example tar2strata -- - doc.strata
//! ```
//!
//! A tar's members come in any order, while a file tree's entries come in the
//! entry order of section 8 (each directory's children one run, in bytewise
//! name order; parents and hard-link targets first). So the tar is read once:
//! regular files' content is spooled to a temporary file, the tree is built
//! in memory (metadata only), and then it is emitted in entry order, as
//! [`entry_order`] gives it.
//!
//! Decisions:
//! - Folders the tar implies (`a/b` without `a/`) are made with mode 0755,
//!   owner 0/0 and the newest mtime of the archive. A tar without a `.` member
//!   gets its root that way too.
//! - Of the members that share an inode (a file and its hard links), the one
//!   first in entry order holds the content (`spec/FORMAT.md` 8.3: a hard
//!   link names an *earlier* regular file), whichever the tar stored it
//!   under; every one of them gets the file's metadata. A hard link to a
//!   symbolic link, device or fifo becomes a copy of it; to a folder, an error.
//! - Owner numbers and names, and modification times with nanoseconds, come
//!   from the ustar header, overridden by PAX records (`uid`, `gid`, `uname`,
//!   `gname`, `mtime`). Access and change times are recorded (`captured`
//!   bits 2 and 3) only when every member has them (PAX `atime`, `ctime`);
//!   implied folders then get the newest mtime for them too.
//! - The output is deterministic: the archive UUID is the first 16 bytes of
//!   the BLAKE3 of the tar's bytes, the creation time the newest mtime.
//! - A member that appears twice replaces the earlier one, as `tar -x` does.
//! - PAX global headers, extended attributes and GNU sparse maps are not
//!   carried over (a sparse file's content is stored with its holes as zeros).
//!
//! # Security
//!
//! Member names (and hard-link targets) that are absolute or contain a `..`
//! component are refused with an error naming the member, and no archive is
//! left behind: the output is written to a temporary file in the destination's
//! folder and renamed into place only when complete.

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use strata_writer::{
    entry_order, ArchiveWriter, Captured, Entry, EntryKind, EntrySource, NoProgress, SourceEntry, Timestamp,
    TreeSummary, WriterOptions, NO_PARENT,
};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tar2strata: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output, name) = match &args[..] {
        [input, output] => (input, output, "tar"),
        [input, output, name] => (input, output, name.as_str()),
        _ => return Err("usage: tar2strata INPUT.tar|- OUTPUT.strata [SECTION]".into()),
    };
    let summary = if input == "-" {
        convert(&mut io::stdin().lock(), Path::new(output), name)?
    } else {
        let mut file = File::open(input).map_err(|e| format!("{input}: {e}"))?;
        convert(&mut file, Path::new(output), name)?
    };
    eprintln!(
        "{output}: {} entries ({} files, {} folders, {} symbolic links), {} bytes of content",
        summary.entries, summary.files, summary.directories, summary.symlinks, summary.content_bytes
    );
    Ok(())
}

/// Reads the tar stream `input` and writes `output` holding it as the
/// file-tree section `name`. On error nothing is left at `output`.
pub fn convert(input: &mut dyn Read, output: &Path, name: &str) -> Result<TreeSummary> {
    let mut hashed = HashingReader { inner: input, hasher: blake3::Hasher::new() };
    let mut tree = read_tar(&mut hashed)?;
    // Read what tar's end-of-archive blocks leave, so the UUID covers the stream.
    io::copy(&mut hashed, &mut io::sink())?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&hashed.hasher.finalize().as_bytes()[..16]);
    tree.finish_implied();

    let folder = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let options = WriterOptions::new(uuid, tree.newest.secs * 1_000_000_000 + i64::from(tree.newest.nsec));
    let mut writer = ArchiveWriter::new(io::BufWriter::new(temp), options)?;
    let captured = tree.captured();
    let mut source = tree.source()?;
    let summary = writer.add_tree_from(name, captured, &mut source, &NoProgress)?;
    let (out, _) = writer.finish()?;
    let temp = out.into_inner().map_err(|e| e.into_error())?;
    temp.as_file().sync_all()?;
    temp.persist(output).map_err(|e| format!("{}: {}", output.display(), e.error))?;
    Ok(summary)
}

/// Passes bytes through while hashing them.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: blake3::Hasher,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What a member (or an implied folder) records besides its kind.
#[derive(Clone, Debug)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    user: Vec<u8>,
    group: Vec<u8>,
    mtime: Timestamp,
    atime: Option<Timestamp>,
    ctime: Option<Timestamp>,
}

#[derive(Clone, Debug)]
enum Item {
    Dir,
    /// Content at `at` in the spool, `len` bytes.
    File {
        at: u64,
        len: u64,
    },
    Symlink(Vec<u8>),
    /// A hard link to the node of a regular file.
    Link(usize),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug)]
struct Node {
    name: Vec<u8>,
    parent: usize,
    /// By name: a `BTreeMap` of byte strings is bytewise order, a run's order.
    children: BTreeMap<Vec<u8>, usize>,
    item: Item,
    meta: Meta,
    /// Made up for a folder the tar implies but does not hold.
    implied: bool,
}

/// The tar as a tree, metadata only; content is in `spool`.
struct TarTree {
    nodes: Vec<Node>,
    spool: File,
    spooled: u64,
    newest: Timestamp,
    /// Whether every member had an atime, and a ctime.
    all_atime: bool,
    all_ctime: bool,
}

/// The components of a member name, or why it is refused.
fn components(name: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    let shown = String::from_utf8_lossy(name);
    if name.starts_with(b"/") {
        return Err(format!("member \"{shown}\": an absolute name; refused"));
    }
    let mut parts = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(format!("member \"{shown}\": a \"..\" component; refused")),
            part if part.contains(&0) => return Err(format!("member \"{shown}\": a NUL byte; refused")),
            part if part.len() > 255 => return Err(format!("member \"{shown}\": a component over 255 bytes")),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// A PAX time: decimal seconds, optionally negative, with up to 9 digits of
/// fraction kept.
fn pax_time(value: &str) -> Option<Timestamp> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let secs: i64 = whole.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nsec = 0u32;
    for i in 0..9 {
        nsec = nsec * 10 + fraction.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
    }
    if negative && nsec > 0 {
        Timestamp::new(-secs - 1, 1_000_000_000 - nsec)
    } else {
        Timestamp::new(if negative { -secs } else { secs }, nsec)
    }
}

fn implied_meta() -> Meta {
    Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: Vec::new(),
        group: Vec::new(),
        mtime: Timestamp::ZERO,
        atime: None,
        ctime: None,
    }
}

fn read_tar(input: &mut dyn Read) -> Result<TarTree> {
    let mut tree = TarTree {
        nodes: vec![Node {
            name: Vec::new(),
            parent: usize::MAX,
            children: BTreeMap::new(),
            item: Item::Dir,
            meta: implied_meta(),
            implied: true,
        }],
        spool: tempfile::tempfile()?,
        spooled: 0,
        newest: Timestamp::ZERO,
        all_atime: true,
        all_ctime: true,
    };
    let mut archive = tar::Archive::new(input);
    let mut spool = io::BufWriter::new(tree.spool.try_clone()?);
    for member in archive.entries()? {
        let mut member = member?;
        let path = member.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).into_owned();
        let kind = member.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let header = member.header();
        let number = |value: io::Result<u64>, what: &str| -> Result<u32> {
            let value = value.map_err(|e| format!("member \"{shown}\": {what}: {e}"))?;
            Ok(u32::try_from(value).map_err(|_| format!("member \"{shown}\": {what} {value} is too large"))?)
        };
        let mtime_secs = header.mtime().map_err(|e| format!("member \"{shown}\": mtime: {e}"))?;
        let mut meta = Meta {
            mode: number(header.mode().map(u64::from), "mode")? & 0o7777,
            uid: number(header.uid(), "uid")?,
            gid: number(header.gid(), "gid")?,
            user: header.username_bytes().unwrap_or_default().to_vec(),
            group: header.groupname_bytes().unwrap_or_default().to_vec(),
            mtime: Timestamp::new(i64::try_from(mtime_secs)?, 0).expect("nanoseconds 0 are in range"),
            atime: None,
            ctime: None,
        };
        // Read only for devices: GNU tar leaves the fields blank on others.
        let device = if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            let major = header.device_major().map(|d| d.unwrap_or(0).into());
            let minor = header.device_minor().map(|d| d.unwrap_or(0).into());
            (number(major, "device major")?, number(minor, "device minor")?)
        } else {
            (0, 0)
        };
        let link = member.link_name_bytes().map(|l| l.into_owned());
        if let Some(pax) = member.pax_extensions()? {
            for record in pax {
                let record = record?;
                let (Ok(key), Ok(value)) = (record.key(), record.value()) else { continue };
                let bad = || format!("member \"{shown}\": PAX {key}={value:?} is not valid");
                match key {
                    "uid" => meta.uid = value.parse().map_err(|_| bad())?,
                    "gid" => meta.gid = value.parse().map_err(|_| bad())?,
                    "uname" => meta.user = value.as_bytes().to_vec(),
                    "gname" => meta.group = value.as_bytes().to_vec(),
                    "mtime" => meta.mtime = pax_time(value).ok_or_else(bad)?,
                    "atime" => meta.atime = Some(pax_time(value).ok_or_else(bad)?),
                    "ctime" => meta.ctime = Some(pax_time(value).ok_or_else(bad)?),
                    _ => {}
                }
            }
        }
        tree.all_atime &= meta.atime.is_some();
        tree.all_ctime &= meta.ctime.is_some();
        tree.newest = tree.newest.max(meta.mtime);
        let parts = components(&path)?;
        let item = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let at = tree.spooled;
                let len = io::copy(&mut member, &mut spool)?;
                tree.spooled += len;
                Item::File { at, len }
            }
            tar::EntryType::Directory => Item::Dir,
            tar::EntryType::Symlink => {
                let target = link.ok_or_else(|| format!("member \"{shown}\": a symbolic link without a target"))?;
                Item::Symlink(target)
            }
            tar::EntryType::Link => {
                let target = link.ok_or_else(|| format!("member \"{shown}\": a hard link without a target"))?;
                let target_parts =
                    components(&target).map_err(|e| format!("member \"{shown}\": hard link target refused: {e}"))?;
                let node = tree.find(&target_parts).ok_or_else(|| {
                    format!(
                        "member \"{shown}\": hard link to \"{}\", not an earlier member",
                        String::from_utf8_lossy(&target)
                    )
                })?;
                match &tree.nodes[node].item {
                    Item::File { .. } => Item::Link(node),
                    Item::Link(file) => Item::Link(*file),
                    Item::Dir => return Err(format!("member \"{shown}\": a hard link to a folder").into()),
                    // The format links only to regular files: a copy restores the same thing.
                    other => {
                        meta = tree.nodes[node].meta.clone();
                        other.clone()
                    }
                }
            }
            tar::EntryType::Char => Item::Char(device.0, device.1),
            tar::EntryType::Block => Item::Block(device.0, device.1),
            tar::EntryType::Fifo => Item::Fifo,
            other => {
                return Err(format!(
                    "member \"{shown}\": tar entry type {:?} is not supported",
                    other.as_byte() as char
                )
                .into())
            }
        };
        tree.insert(&parts, item, meta, &shown)?;
    }
    spool.flush()?;
    Ok(tree)
}

impl TarTree {
    /// The path of `node` from the root.
    fn path(&self, mut node: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        while node != 0 {
            parts.push(self.nodes[node].name.as_slice());
            node = self.nodes[node].parent;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// The node at `parts`, if there is one.
    fn find(&self, parts: &[&[u8]]) -> Option<usize> {
        parts.iter().try_fold(0, |node, part| self.nodes[node].children.get(*part).copied())
    }

    /// Puts a member at `parts`, making the folders it implies.
    fn insert(&mut self, parts: &[&[u8]], item: Item, meta: Meta, shown: &str) -> Result<()> {
        let mut node = 0;
        for part in parts {
            if !matches!(self.nodes[node].item, Item::Dir) {
                return Err(format!("member \"{shown}\": below something that is not a folder").into());
            }
            node = match self.nodes[node].children.get(*part) {
                Some(&child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node {
                        name: part.to_vec(),
                        parent: node,
                        children: BTreeMap::new(),
                        item: Item::Dir,
                        meta: implied_meta(),
                        implied: true,
                    });
                    self.nodes[node].children.insert(part.to_vec(), child);
                    child
                }
            };
        }
        let target = &mut self.nodes[node];
        if !target.children.is_empty() && !matches!(item, Item::Dir) {
            return Err(format!("member \"{shown}\": replaces a folder that holds members").into());
        }
        target.item = item;
        target.meta = meta;
        target.implied = false;
        Ok(())
    }

    /// Gives implied folders the newest mtime (and atime and ctime).
    fn finish_implied(&mut self) {
        let newest = self.newest;
        for node in self.nodes.iter_mut().filter(|n| n.implied) {
            node.meta.mtime = newest;
            node.meta.atime = Some(newest);
            node.meta.ctime = Some(newest);
        }
    }

    fn captured(&self) -> u64 {
        let mut captured = Captured::OWNER_NAMES;
        if self.all_atime {
            captured |= Captured::ATIME;
        }
        if self.all_ctime {
            captured |= Captured::CTIME;
        }
        captured
    }

    /// The entries in entry order, hard links resolved.
    fn source(self) -> Result<TarSource> {
        let children: Vec<Vec<usize>> = self.nodes.iter().map(|n| n.children.values().copied().collect()).collect();
        let order = entry_order(&children, |n| matches!(self.nodes[n].item, Item::Dir));
        let mut entry_id = vec![0u64; self.nodes.len()];
        for (id, &node) in order.iter().enumerate() {
            entry_id[node] = id as u64;
        }
        // The entry holding each inode's content: the first in entry order.
        let mut leader: HashMap<usize, usize> = HashMap::new();
        for &node in &order {
            let file = match self.nodes[node].item {
                Item::File { .. } => node,
                Item::Link(file) if matches!(self.nodes[file].item, Item::File { .. }) => file,
                Item::Link(_) => {
                    let path = String::from_utf8_lossy(&self.path(node)).into_owned();
                    return Err(format!("member \"{path}\": a hard link to a file a later member replaced").into());
                }
                _ => continue,
            };
            leader.entry(file).or_insert(node);
        }
        Ok(TarSource { tree: self, order, entry_id, leader, next: 0, content: (0, 0) })
    }
}

/// Feeds a [`TarTree`] to the writer in entry order.
struct TarSource {
    tree: TarTree,
    order: Vec<usize>,
    entry_id: Vec<u64>,
    /// A file's node to the node of the entry that holds its content.
    leader: HashMap<usize, usize>,
    next: usize,
    /// The current file's content in the spool: start and length.
    content: (u64, u64),
}

impl EntrySource for TarSource {
    fn next_entry(&mut self) -> io::Result<Option<SourceEntry>> {
        let Some(&node) = self.order.get(self.next) else { return Ok(None) };
        self.next += 1;
        let n = &self.tree.nodes[node];
        // A file and its links share the file's metadata.
        let (item, meta) = match &n.item {
            Item::Link(file) => (&self.tree.nodes[*file].item, &self.tree.nodes[*file].meta),
            item => (item, &n.meta),
        };
        let file = match n.item {
            Item::Link(file) => Some(file),
            Item::File { .. } => Some(node),
            _ => None,
        };
        let leader = file.map(|file| self.leader[&file]);
        let kind = match item {
            Item::File { .. } if leader != Some(node) => EntryKind::Hardlink,
            Item::File { .. } => EntryKind::File,
            Item::Dir => EntryKind::Directory,
            Item::Symlink(_) => EntryKind::Symlink,
            Item::Char(..) => EntryKind::CharDevice,
            Item::Block(..) => EntryKind::BlockDevice,
            Item::Fifo => EntryKind::Fifo,
            Item::Link(_) => unreachable!("a link names its file, never another link"),
        };
        let mut entry = Entry::bare(kind, &n.name);
        entry.entry_id = self.entry_id[node];
        entry.parent_id = if node == 0 { NO_PARENT } else { self.entry_id[n.parent] };
        entry.mode = meta.mode;
        entry.uid = meta.uid;
        entry.gid = meta.gid;
        entry.user = meta.user.clone();
        entry.group = meta.group.clone();
        entry.mtime = meta.mtime;
        if self.tree.all_atime {
            entry.atime = meta.atime.unwrap_or(Timestamp::ZERO);
        }
        if self.tree.all_ctime {
            entry.ctime = meta.ctime.unwrap_or(Timestamp::ZERO);
        }
        match (kind, item) {
            (EntryKind::Hardlink, _) => entry.link_id = self.entry_id[leader.expect("a hard link has a file")],
            (_, &Item::File { len, .. }) => entry.size = len,
            (_, Item::Symlink(target)) => {
                entry.size = target.len() as u64;
                entry.target = target.clone();
            }
            (_, &Item::Char(major, minor) | &Item::Block(major, minor)) => {
                (entry.rdev_major, entry.rdev_minor) = (major, minor);
            }
            _ => {}
        }
        let mut data_ranges = Vec::new();
        if let (EntryKind::File, &Item::File { at, len }) = (kind, item) {
            self.content = (at, len);
            if len > 0 {
                data_ranges.push((0, len));
            }
        }
        Ok(Some(SourceEntry { path: self.tree.path(node), entry, data_ranges }))
    }

    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let (at, len) = self.content;
        let want = (buf.len() as u64).min(len.saturating_sub(offset)) as usize;
        if want == 0 {
            return Ok(0);
        }
        self.tree.spool.read_at(&mut buf[..want], at + offset)
    }
}
