//! Files inside image sections: what an image holds (partition table, file
//! systems; `info`), and one file or folder back out of it without a restore
//! (`list`, `cat`, `extract` with `--image NAME [--partition N]`).
//!
//! The image is read through the archive's index, so only the chunks that
//! hold the partition table, the file system's metadata and the files asked
//! for are read and decoded. The file system becomes entries and content for
//! the same listing and extraction code as file-tree sections, under the same
//! rules (nothing outside DEST, temporary names, unsafe names refused).

use std::collections::HashMap;
use std::fs::File;
use std::rc::Rc;

use serde_json::json;
use strata_disk::filesystems::{join, walk};
use strata_disk::{Disk, FileSystem, Layout, Node, NodeKind, Volume};
use strata_format::files::{Entry, EntryKind, Timestamp, NO_PARENT};
use strata_reader::extract::FileContent;
use strata_reader::{Archive, ChunkCache, ImageSection, PathEntry, Piece, Section};

use crate::files::{pick_section, SectionKind};
use crate::{output, Failure};

/// Decoded chunks kept while a file system is read: its metadata (bitmaps,
/// inode tables, directories) is read again and again from a few chunks.
const CACHE_BYTES: usize = 32 << 20;

/// How the chunks under a file system's reads are decoded and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checks {
    /// Every chunk is decoded whole and checked by its BLAKE3: extraction.
    Whole,
    /// Reads in a chunk decode it only up to the end of the bytes they need,
    /// each going on from where the last stopped, checked by the record CRC
    /// and the zstd frame rules but not by the chunk's BLAKE3; a read that
    /// comes back to a chunk after reads in another decodes it whole and
    /// checks its BLAKE3 (FORMAT.md 10.1, step 4): `cat` and `list` of files
    /// inside an image, `info`. A file system's metadata and one small file are
    /// spread over a few chunks read once each; decoding them whole, most of
    /// what a one-file `cat` costs, gives nothing back.
    Partial,
}

/// An image section of an archive as a [`Disk`].
pub struct ImageDisk {
    archive: Rc<Archive<File>>,
    section: usize,
    cache: ChunkCache,
    checks: Checks,
    /// The ranges lost in salvage, found once: every read checks them.
    lost: Vec<std::ops::Range<u64>>,
}

impl ImageDisk {
    fn image(&self) -> &ImageSection {
        match &self.archive.sections()[self.section] {
            Section::Image(image) => image,
            Section::Tree(_) => unreachable!("ImageDisk is made for image sections only"),
        }
    }
}

impl Disk for ImageDisk {
    fn len(&self) -> u64 {
        self.image().logical_size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let image = self.image();
        let end = offset.checked_add(buf.len() as u64).filter(|&end| end <= image.logical_size);
        let Some(end) = end else {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end of the image"));
        };
        // A range lost in salvage reads as zeros in the reader; a file system
        // must not take zeros for its metadata or a file's bytes.
        if let Some(lost) = self.lost.iter().find(|r| r.start < end && offset < r.end) {
            return Err(std::io::Error::other(format!(
                "image bytes {} were lost in salvage",
                output::byte_range(lost)
            )));
        }
        let n = match self.checks {
            Checks::Whole => self.cache.read_image_at(&self.archive, image, offset, buf),
            Checks::Partial => self.cache.read_image_at_partial(&self.archive, image, offset, buf),
        }
        .map_err(std::io::Error::other)?;
        if n < buf.len() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end of the image"));
        }
        Ok(())
    }
}

/// An image section as a disk, by name (the only one when `name` is `None`).
pub fn image_disk(
    archive: &Rc<Archive<File>>,
    name: Option<&str>,
    checks: Checks,
    label: &str,
) -> Result<Rc<dyn Disk>, Failure> {
    let name = pick_section(archive, name, SectionKind::Image, label)?;
    let section = archive
        .sections()
        .iter()
        .position(|s| matches!(s, Section::Image(i) if i.name == name))
        .expect("picked among the archive's images");
    let lost = match &archive.sections()[section] {
        Section::Image(image) => image.lost_ranges(),
        Section::Tree(_) => Vec::new(),
    };
    Ok(Rc::new(ImageDisk { archive: archive.clone(), section, cache: ChunkCache::new(CACHE_BYTES), checks, lost }))
}

/// A file system chosen by `--image NAME [--partition N]`, opened.
pub struct Opened {
    pub image: String,
    pub volume: Volume,
    pub fs: Box<dyn FileSystem>,
}

impl Opened {
    /// How messages name it: `image disk partition 2 (ext4)`.
    pub fn shown(&self) -> String {
        let place = match self.volume.number() {
            Some(n) => format!("image {} partition {n}", self.image),
            None => format!("image {}", self.image),
        };
        format!("{place} ({})", self.fs.info().kind.name())
    }
}

pub fn open(
    archive: &Rc<Archive<File>>,
    image: Option<&str>,
    partition: Option<u32>,
    checks: Checks,
    label: &str,
) -> Result<Opened, Failure> {
    let name = pick_section(archive, image, SectionKind::Image, label)?;
    let disk = image_disk(archive, Some(&name), checks, label)?;
    let fail = |e: strata_disk::Error| Failure::fatal(format!("{label}: image {name}: {e}"));
    let layout = strata_disk::scan(&disk).map_err(fail)?;
    let volume = layout.volume(partition).map_err(fail)?.clone();
    let fs = strata_disk::open_filesystem(&disk, &volume).map_err(fail)?;
    Ok(Opened { image: name, volume, fs })
}

/// A node as an entry of the tree model, for the listing and extraction code.
fn entry_of(node: &Node, entry_id: u64, parent_id: u64) -> Entry {
    let kind = match node.kind {
        NodeKind::File => EntryKind::File,
        NodeKind::Directory => EntryKind::Directory,
        NodeKind::Symlink => EntryKind::Symlink,
        NodeKind::CharDevice => EntryKind::CharDevice,
        NodeKind::BlockDevice => EntryKind::BlockDevice,
        NodeKind::Fifo => EntryKind::Fifo,
        NodeKind::Socket => EntryKind::Socket,
    };
    let time = |(secs, nsec): (i64, u32)| Timestamp { secs, nsec: nsec.min(999_999_999) };
    Entry {
        kind,
        flags: 0,
        entry_id,
        parent_id,
        mode: node.mode & 0o7777,
        uid: node.uid,
        gid: node.gid,
        rdev_major: 0,
        rdev_minor: 0,
        mtime: time(node.mtime),
        // Modification times only, as tar restores them: access and change
        // times are not restored from a file system inside an image.
        atime: Timestamp::default(),
        ctime: Timestamp::default(),
        btime: Timestamp::default(),
        size: if matches!(kind, EntryKind::File | EntryKind::Symlink) { node.size } else { 0 },
        link_id: 0,
        digest: [0; strata_format::files::DIGEST_LEN],
        extent_count: 0,
        ino: 0,
        dev: (0, 0),
        name: node.name.clone(),
        user: Vec::new(),
        group: Vec::new(),
        target: node.target.clone(),
        xattrs: Vec::new(),
        extents: Vec::new(),
    }
}

/// Walks the file system as a tree of entries: the root (entry 0), then with
/// no `paths` everything, else each path with the folders that lead to it and
/// everything below it. Ids grow, a folder comes before what it holds.
/// Device nodes are left out with a warning: the crate reading the file
/// system does not give their numbers, and a wrong device is worse than none.
pub fn walk_entries(
    opened: &Opened,
    paths: &[Vec<u8>],
    visit: &mut dyn FnMut(PathEntry) -> Result<(), strata_reader::Error>,
) -> Result<Vec<Vec<u8>>, Failure> {
    let shown = opened.shown();
    let fs = opened.fs.as_ref();
    let mut ids: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut next = 0u64;
    let mut missing = Vec::new();
    let mut failed: Option<strata_reader::Error> = None;
    let mut emit = |path: &[u8], node: &Node, ids: &mut HashMap<Vec<u8>, u64>| -> Result<bool, strata_disk::Error> {
        if failed.is_some() || ids.contains_key(path) {
            return Ok(failed.is_none());
        }
        if matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
            eprintln!(
                "warning: {} in {shown}: a device node; its numbers are not read from this file system, so it is left out",
                crate::files::shown(path)
            );
            return Ok(false);
        }
        let parent = if path.is_empty() {
            NO_PARENT
        } else {
            let dir = parent_of(path);
            *ids.get(dir).unwrap_or(&0)
        };
        let id = next;
        next += 1;
        if node.kind == NodeKind::Directory {
            ids.insert(path.to_vec(), id);
        }
        if let Err(e) = visit(PathEntry { path: path.to_vec(), entry: entry_of(node, id, parent) }) {
            failed = Some(e);
            return Ok(false);
        }
        Ok(true)
    };
    let fail = |e: strata_disk::Error| Failure::fatal(format!("{shown}: {e}"));
    let root = fs.node(b"").map_err(fail)?;
    emit(b"", &root, &mut ids).map_err(fail)?;
    let wanted: Vec<Vec<u8>> = if paths.is_empty() { vec![Vec::new()] } else { paths.to_vec() };
    for path in wanted {
        // The folders that lead to the path, then the path and what it holds.
        let mut at = Vec::new();
        let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
        let mut found = true;
        for component in components.iter().take(components.len().saturating_sub(1)) {
            at = join(&at, component);
            match fs.node(&at) {
                Ok(node) if node.kind == NodeKind::Directory => {
                    emit(&at, &node, &mut ids).map_err(fail)?;
                }
                Ok(_) | Err(_) => {
                    found = false;
                    break;
                }
            }
        }
        if !found || fs.node(&path).is_err() {
            missing.push(path);
            continue;
        }
        walk(fs, &path, opened.volume.length, &mut |p, node| emit(p, node, &mut ids)).map_err(fail)?;
    }
    if let Some(e) = failed {
        return Err(Failure::fatal(format!("{shown}: {e}")));
    }
    Ok(missing)
}

/// The part of `path` before its last `/` (empty for a name at the root).
fn parent_of(path: &[u8]) -> &[u8] {
    path.iter().rposition(|&b| b == b'/').map_or(&[], |at| &path[..at])
}

/// File content read from the file system, for extraction.
pub struct FsContent<'a>(pub &'a dyn FileSystem);

impl FileContent for FsContent<'_> {
    fn content(
        &self,
        path: &[u8],
        entry: &Entry,
        piece: &mut dyn FnMut(u64, Piece<'_>) -> Result<(), strata_reader::Error>,
    ) -> Result<(), strata_reader::Error> {
        let mut at = 0u64;
        let mut failed = None;
        let read = self.0.read_file(path, &mut |bytes| {
            if let Err(e) = piece(at, Piece::Data(bytes)) {
                failed = Some(e);
                return Err(strata_disk::Error::new(strata_disk::ErrorKind::Io, "writing", "stopped"));
            }
            at += bytes.len() as u64;
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        read.map_err(|e| strata_reader::Error::local_io("reading the file from the image", std::io::Error::other(e)))?;
        if at != entry.size {
            return Err(strata_reader::Error::local_io(
                "reading the file from the image",
                std::io::Error::other(format!("it gave {at} bytes of its {}", entry.size)),
            ));
        }
        Ok(())
    }
}

/// `info` for one image section: its partition table and file systems, as
/// lines of text and as JSON.
pub fn describe(archive: &Rc<Archive<File>>, image: &str, label: &str) -> (Vec<String>, serde_json::Value) {
    let disk = match image_disk(archive, Some(image), Checks::Partial, label) {
        Ok(disk) => disk,
        Err(e) => return (vec![format!("cannot be read: {}", e.message)], json!({"error": e.message})),
    };
    match strata_disk::scan(&disk) {
        Ok(layout) => (layout_lines(&layout), layout_json(&layout)),
        Err(e) => (vec![format!("partition table: {e}")], json!({"error": e.to_string()})),
    }
}

fn volume_words(volume: &Volume) -> String {
    match &volume.filesystem {
        Some(fs) => {
            let label = if fs.label.is_empty() { String::new() } else { format!(" {:?}", fs.label) };
            let used = fs.used.map_or_else(String::new, |u| format!(", {} used", output::size(u)));
            format!("{}{label} {}, {}{used}", fs.kind.name(), fs.uuid, output::size(fs.size))
        }
        None => match &volume.unreadable {
            Some(why) => format!("unreadable ({why})"),
            None => "no file system recognised (stored whole)".to_string(),
        },
    }
}

fn layout_lines(layout: &Layout) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(whole) = &layout.whole {
        lines.push(format!("no partition table; {}", volume_words(whole)));
        return lines;
    }
    lines.push(format!("{} partition table, {} partitions:", layout.table.name(), layout.partitions.len()));
    for volume in &layout.partitions {
        let partition = volume.partition.as_ref().expect("partitions have one");
        let name = if partition.name.is_empty() { String::new() } else { format!(" {:?}", partition.name) };
        lines.push(format!(
            "  {:>2}  {} at {}, {}{name}: {}",
            partition.number,
            output::size(volume.length),
            output::size(volume.start),
            partition.type_name,
            volume_words(volume)
        ));
    }
    lines
}

fn volume_json(volume: &Volume) -> serde_json::Value {
    let mut value = json!({
        "start": volume.start,
        "length": volume.length,
        "unreadable": volume.unreadable,
        "filesystem": volume.filesystem.as_ref().map(|fs| json!({
            "type": fs.kind.name(),
            "label": fs.label,
            "uuid": fs.uuid,
            "size": fs.size,
            "used_bytes": fs.used,
        })),
    });
    if let Some(p) = &volume.partition {
        value["number"] = json!(p.number);
        value["type"] = json!(p.type_name);
        value["name"] = json!(p.name);
        value["uuid"] = json!(p.uuid);
    }
    value
}

fn layout_json(layout: &Layout) -> serde_json::Value {
    json!({
        "partition_table": layout.table.name(),
        "partitions": layout.partitions.iter().map(volume_json).collect::<Vec<_>>(),
        "whole": layout.whole.as_ref().map(volume_json),
    })
}

/// What `create --used-blocks` needs to know of the file systems inside an
/// image: where they are free, and where their metadata is.
pub struct UsedBlocksMap {
    /// Free space: not stored.
    pub free: Vec<std::ops::Range<u64>>,
    /// Metadata a lookup reads: cut into small chunks (a hint).
    pub metadata: Vec<std::ops::Range<u64>>,
}

/// The free space and metadata of the file systems inside the image at
/// `path`, for `create --used-blocks`, saying on stderr what each volume
/// becomes. A volume whose file system is not known, or whose allocation map
/// cannot be read or trusted, is stored whole: the safe side of every doubt.
pub fn used_blocks_map(path: &std::path::Path, name: &str, quiet: bool) -> Result<UsedBlocksMap, Failure> {
    let file = File::open(path).map_err(|e| Failure::fatal(format!("cannot read {}: {e}", path.display())))?;
    let disk: Rc<dyn Disk> = Rc::new(file);
    let layout = match strata_disk::scan(&disk) {
        Ok(layout) => layout,
        Err(e) => {
            eprintln!("warning: image {name}: {e}; stored whole");
            return Ok(UsedBlocksMap { free: Vec::new(), metadata: Vec::new() });
        }
    };
    let (mut free, mut metadata) = (Vec::new(), Vec::new());
    for volume in layout.volumes() {
        let place = match volume.number() {
            Some(n) => format!("image {name} partition {n}"),
            None => format!("image {name}"),
        };
        let Some(fs) = &volume.filesystem else {
            if !quiet && volume.partition.is_some() {
                eprintln!("{place}: no file system recognised: stored whole");
            }
            continue;
        };
        match strata_disk::allocation::free_ranges(&disk, volume) {
            Ok(Some(ranges)) => {
                let bytes: u64 = ranges.iter().map(|r| r.end - r.start).sum();
                if !quiet {
                    eprintln!("{place}: {}, {} free: not stored", fs.kind.name(), output::size(bytes));
                }
                free.extend(ranges);
                // Each volume's list is bounded; so is the image's, over all of them.
                strata_disk::allocation::limit_free_ranges(&mut free, strata_disk::allocation::MAX_FREE_RANGES);
                metadata.extend(strata_disk::metadata::metadata_ranges(&disk, volume));
            }
            Ok(None) => {
                if !quiet {
                    eprintln!("{place}: {}: its allocation map is not read here: stored whole", fs.kind.name());
                }
            }
            Err(e) => eprintln!("warning: {place}: {}: {e}; stored whole", fs.kind.name()),
        }
    }
    Ok(UsedBlocksMap { free, metadata })
}
