//! Hostile archives: what a careful attacker who read the spec would hand a
//! reader, one class of attack per case, each with the outcome every command
//! must give.
//!
//! Like the invalid vectors, each case is built from a model held here (a tree
//! of entries, an image) by the reference writer, then given its defect with
//! every checksum fixed up, so that the defect is what a reader meets. Sizes and
//! counts too large to build (2^32 entries, a 4 GiB chunk, a 2^62-byte hole)
//! are lies told in a header or a field. The expected outcomes are stated here
//! from the model and the spec, never observed by running a reader.
//!
//! The cases cover: unsafe and repeated names; links out of the destination
//! (a symbolic link used as a parent, a hard link to a path outside or to a
//! symbolic link, a destination that already holds links pointing outside);
//! cycles and self-references in every table (entry parents, hard links,
//! directory tables, the section index, the archive index, the trailer, image
//! and file extents); 10,000-deep nesting; huge counts; lying sizes; zstd
//! bombs; ACL inheritance and metadata applied through links.
//!
//! A runner extracts into a fresh `DEST` inside a work folder that also holds
//! [`OUTSIDE`] (as `outside/`, the sibling the cases aim at: `DEST/../outside`),
//! and checks that nothing appears or changes outside `DEST`, nor at
//! [`ABSOLUTE_TARGET`].

use strata_format::files::{self, Captured, Entry, EntryKind, GroupDir, Timestamp, NO_PARENT};
use strata_format::image::{MapDigest, ZERO_ID};
use strata_format::{ErrorClass, RecordType};
use strata_writer::{ArchiveWriter, NoProgress};

use crate::patch::{self, row};
use crate::trees::{ModelEntries, ModelEntry};
use crate::{
    edit_extent, get_u64, of_type, put_u64, random_bytes, records, refix_record, ImageModel, ModelSource, Rec, Segment,
    CHUNK,
};

/// The file-tree section of every case.
pub const TREE: &str = "t";
/// The image section of the cases that have one.
pub const IMAGE: &str = "disk";
/// What a runner puts in `outside/`, beside `DEST`: directories (no content)
/// and files. The cases aim their links and names at these.
pub const OUTSIDE: &[(&str, Option<&[u8]>)] =
    &[("sub", None), ("secret", Some(b"outside secret\n")), ("sub/inner", Some(b"inner secret\n"))];
/// An absolute path some cases aim at: nothing may ever appear there.
pub const ABSOLUTE_TARGET: &str = "/tmp/strata-hostile-absolute";

/// One hostile archive and what each command must do with it.
#[derive(Clone, Debug)]
pub struct HostileCase {
    pub name: &'static str,
    /// The attack, in one line.
    pub description: &'static str,
    pub bytes: Vec<u8>,
    pub verify: Verify,
    /// One per file-tree section.
    pub trees: Vec<TreeChecks>,
    /// One per image section.
    pub images: Vec<ImageChecks>,
}

/// What `verify --json` must say.
#[derive(Clone, Debug)]
pub struct Verify {
    /// 0 clean, 1 damaged or unsupported, 2 unreadable.
    pub exit: i32,
    /// A class that must be among the problems (none for a valid archive).
    pub class: Option<ErrorClass>,
}

/// What the file-tree commands must do with one section.
#[derive(Clone, Debug)]
pub struct TreeChecks {
    pub section: &'static str,
    /// Exit status of `list --files SECTION`: the whole tree, from its entry records.
    pub list: i32,
    /// `list --files SECTION PATH`, which goes through the directory tables, and its exit status.
    pub list_paths: Vec<(Vec<u8>, i32)>,
    /// `cat --files SECTION PATH` and what it must give.
    pub cats: Vec<(Vec<u8>, Cat)>,
    /// Extractions, each into a fresh `DEST`.
    pub extracts: Vec<Extraction>,
}

#[derive(Clone, Debug)]
pub enum Cat {
    /// Exit 0 with exactly these bytes on standard output.
    Content(Vec<u8>),
    /// Exit 1 with exactly these bytes: the archive's index is damaged, and the
    /// file is read through what is intact (as salvage would keep it).
    Intact(Vec<u8>),
    /// Exit 1 (read through what is intact; the bytes are whatever salvage
    /// kept of a range whose map lies) or 2.
    Damaged,
    /// Exit 2.
    Fails,
}

/// One `extract --files SECTION DEST --json` and what must hold after it.
#[derive(Clone, Debug)]
pub struct Extraction {
    pub dest: DestSetup,
    pub overwrite: bool,
    /// The exit statuses allowed: several where the spec leaves a reader the
    /// choice (8.7: it may stop at an entry out of sequence, exit 2, or go on
    /// refusing, exit 1).
    pub exit: Vec<i32>,
    /// Paths (relative to `DEST`, as the `--json` report gives them) that must be refused.
    pub refused: Vec<Vec<u8>>,
    /// What must hold of paths below `DEST` afterwards (`""` is `DEST` itself).
    pub after: Vec<(Vec<u8>, PathState)>,
}

/// What `DEST` holds before an extraction.
#[derive(Clone, Debug)]
pub enum DestSetup {
    /// `DEST` does not exist.
    Fresh,
    /// `DEST` exists and holds these symbolic links: name, target (relative
    /// targets resolve from `DEST`, so `../outside` is the sibling folder).
    Links(Vec<(Vec<u8>, Vec<u8>)>),
    /// `DEST` exists and carries this default ACL (`system.posix_acl_default`).
    DefaultAcl(Vec<u8>),
}

/// One fact about a path below `DEST`, checked without following links.
#[derive(Clone, Debug)]
pub enum PathState {
    Absent,
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    /// The same inode as this other path (a hard link).
    SameFile(Vec<u8>),
    /// Permission bits (`st_mode & 07777`).
    Mode(u32),
    /// An extended attribute with exactly this value.
    Xattr(Vec<u8>, Vec<u8>),
    /// An extended attribute of any value.
    HasXattr(Vec<u8>),
    NoXattr(Vec<u8>),
}

/// What the image commands must do with one section.
#[derive(Clone, Debug)]
pub struct ImageChecks {
    pub section: &'static str,
    /// `restore --image SECTION FILE`.
    pub restore: Restore,
    /// `cat --image SECTION --offset O --length L`.
    pub cat: (u64, u64, Cat),
}

#[derive(Clone, Debug)]
pub enum Restore {
    /// Exit 0, and the file has this size and, when given, this BLAKE3 (hex).
    Image { size: u64, blake3: Option<String> },
    /// Exit 2, and no file at the destination.
    Fails,
    /// Either of the two: where only a table that fast access uses is damaged
    /// (a reader may read front to back instead), or where the destination's
    /// file system may refuse the size.
    ImageOrFails { size: u64, blake3: Option<String> },
}

// ---------------------------------------------------------------------------
// Models

const T0: i64 = 1_767_225_600_000_000_000;
const OK: &[u8] = b"an ordinary file\n";
const PWNED: &[u8] = b"written outside DEST\n";

/// A file tree as a list of entries in `entry_id` order, with their content
/// and its data ranges (the rest is holes).
#[derive(Clone)]
struct Tree {
    items: Vec<ModelEntry>,
    captured: u64,
}

impl Tree {
    /// A root directory and nothing else.
    fn new() -> Tree {
        let mut tree = Tree { items: Vec::new(), captured: Captured::XATTRS | Captured::HOLES };
        tree.push(NO_PARENT, EntryKind::Directory, b"");
        tree
    }

    fn push(&mut self, parent: u64, kind: EntryKind, name: &[u8]) -> u64 {
        let id = self.items.len() as u64;
        let mut entry = Entry::bare(kind, name);
        entry.entry_id = id;
        entry.parent_id = parent;
        entry.mode = match kind {
            EntryKind::Directory => 0o755,
            EntryKind::Symlink => 0o777,
            _ => 0o644,
        };
        entry.mtime = Timestamp::from_unix_nanos(T0 + id as i64);
        self.items.push((entry, Vec::new(), Vec::new()));
        id
    }

    fn dir(&mut self, parent: u64, name: &[u8]) -> u64 {
        self.push(parent, EntryKind::Directory, name)
    }

    fn file(&mut self, parent: u64, name: &[u8], content: &[u8]) -> u64 {
        let ranges = if content.is_empty() { Vec::new() } else { vec![(0, content.len() as u64)] };
        self.sparse_file(parent, name, content, ranges)
    }

    /// A file whose content is data only in `ranges`, holes elsewhere.
    fn sparse_file(&mut self, parent: u64, name: &[u8], content: &[u8], ranges: Vec<(u64, u64)>) -> u64 {
        let id = self.push(parent, EntryKind::File, name);
        self.items[id as usize].0.size = content.len() as u64;
        self.items[id as usize].1 = content.to_vec();
        self.items[id as usize].2 = ranges;
        id
    }

    fn symlink(&mut self, parent: u64, name: &[u8], target: &[u8]) -> u64 {
        let id = self.push(parent, EntryKind::Symlink, name);
        let entry = &mut self.items[id as usize].0;
        entry.target = target.to_vec();
        entry.size = target.len() as u64;
        id
    }

    fn hardlink(&mut self, parent: u64, name: &[u8], to: u64) -> u64 {
        let id = self.push(parent, EntryKind::Hardlink, name);
        self.items[id as usize].0.link_id = to;
        id
    }

    fn entry(&mut self, id: u64) -> &mut Entry {
        &mut self.items[id as usize].0
    }

    /// The entries in the entry order of FORMAT.md 8 (each directory's
    /// children one run in name order, runs depth first as the reference
    /// writer walks, section 14), renumbered, and the new id of each model
    /// id. A hard link that would come before its file takes the file's
    /// place, as a walk records them: the first seen holds the content.
    fn ordered(&self) -> (Vec<ModelEntry>, Vec<u64>) {
        let n = self.items.len();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, (entry, _, _)) in self.items.iter().enumerate().skip(1) {
            children[entry.parent_id as usize].push(i);
        }
        for list in &mut children {
            list.sort_by(|&a, &b| self.items[a].0.name.cmp(&self.items[b].0.name));
        }
        let order = strata_format::files::entry_order(&children, |c| self.items[c].0.kind == EntryKind::Directory);
        assert_eq!(order.len(), n, "every entry of a model is under the root");
        let mut map = vec![0u64; n];
        for (new, &old) in order.iter().enumerate() {
            map[old] = new as u64;
        }
        let mut items: Vec<ModelEntry> = order.iter().map(|&old| self.items[old].clone()).collect();
        for (entry, _, _) in &mut items {
            entry.entry_id = map[entry.entry_id as usize];
            if entry.parent_id != NO_PARENT {
                entry.parent_id = map[entry.parent_id as usize];
            }
            if entry.kind == EntryKind::Hardlink {
                entry.link_id = map[entry.link_id as usize];
            }
        }
        for i in 0..items.len() {
            let target = items[i].0.link_id as usize;
            if items[i].0.kind != EntryKind::Hardlink || target < i {
                continue;
            }
            let (content, ranges, size) = (items[target].1.clone(), items[target].2.clone(), items[target].0.size);
            items[i].0.kind = EntryKind::File;
            items[i].0.link_id = 0;
            items[i].0.size = size;
            items[i].1 = content;
            items[i].2 = ranges;
            items[target].0.kind = EntryKind::Hardlink;
            items[target].0.link_id = i as u64;
            items[target].0.size = 0;
            items[target].1 = Vec::new();
            items[target].2 = Vec::new();
            for (entry, _, _) in items.iter_mut() {
                if entry.kind == EntryKind::Hardlink && entry.link_id == target as u64 {
                    entry.link_id = i as u64;
                }
            }
        }
        (items, map)
    }

    /// The archive holding this tree alone, 4 KiB chunks.
    fn archive(&self) -> Vec<u8> {
        write(&[], Some(self), CHUNK, 32 << 20)
    }
}

/// Writes `images`, then `tree` as the section [`TREE`], with the reference
/// writer. `batch_bytes` bounds the content read ahead.
fn write(images: &[ImageModel], tree: Option<&Tree>, chunk_size: usize, batch_bytes: usize) -> Vec<u8> {
    write_groups(images, tree, chunk_size, batch_bytes, 1024)
}

/// [`write`], the tree cut into groups of at most `group_entries` entries
/// (the reference writer's choice of boundaries, FORMAT.md 14), so that a few
/// entries make several `FILES_ENTRIES` records.
fn write_groups(
    images: &[ImageModel],
    tree: Option<&Tree>,
    chunk_size: usize,
    batch_bytes: usize,
    group_entries: usize,
) -> Vec<u8> {
    let mut options = crate::vector_options(chunk_size);
    options.batch_bytes = batch_bytes;
    options.group_entries = group_entries;
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("case options are valid");
    for image in images {
        let (bytes, holes) = image.materialise();
        let mut source = ModelSource { bytes, holes, position: 0, size_known: image.size_known };
        writer.add_image(image.name, &mut source, &NoProgress).expect("writing to memory cannot fail");
    }
    if let Some(tree) = tree {
        let (items, map) = tree.ordered();
        ID_MAP.with(|m| *m.borrow_mut() = map);
        let mut source = ModelEntries::with_ranges(items);
        writer.add_tree_from(TREE, tree.captured, &mut source, &NoProgress).expect("the model is a valid tree");
    }
    writer.finish().expect("writing to memory cannot fail").0
}

thread_local! {
    /// The ids the last tree written gave the model's entries: a model
    /// numbers its entries as they were added, the archive in the entry
    /// order of FORMAT.md 8.
    static ID_MAP: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The id in the archive last written of the model's entry `id` (an id the
/// model does not have is kept as it is: a lie told on purpose).
fn aid(id: u64) -> u64 {
    ID_MAP.with(|m| m.borrow().get(id as usize).copied().unwrap_or(id))
}

/// The image most image cases start from: a zstd window that leaves room for
/// a crafted frame (3,000 random bytes, then repeats), a text window (zstd),
/// a random window (raw).
fn roomy_image() -> ImageModel {
    ImageModel::new(
        IMAGE,
        vec![Segment::Random(5, 3_000), Segment::Repeat(b'A', 1_096), Segment::Text(CHUNK), Segment::Random(6, CHUNK)],
    )
}

// ---------------------------------------------------------------------------
// Patching a built archive (every change fixes the CRCs of what it touches)

/// Offsets of fields inside an entry row (FORMAT.md 8.3).
mod field {
    pub use crate::patch::row::{DIGEST, EXTENT_COUNT, LINK_ID, PARENT_ID, SIZE, XATTR_COUNT};
}

/// Sets a field of the row of the model's entry `id`; a parent or hard-link
/// target given as a model id becomes the archive's.
fn set_entry(bytes: &mut [u8], id: u64, field: usize, value: &[u8]) {
    let value = if (field == row::PARENT_ID || field == row::LINK_ID) && value.len() == 8 {
        aid(u64::from_le_bytes(value.try_into().expect("8 bytes"))).to_le_bytes().to_vec()
    } else {
        value.to_vec()
    };
    patch::set_row(bytes, aid(id), field, &value);
}

/// Edits the extents of regular file `id` in the one place the archive holds
/// them: its `FILES_EXTENTS` records (FORMAT.md 8.2).
fn edit_file_extent(bytes: &mut [u8], id: u64, edit: impl Fn(&mut files::FileExtent)) {
    patch::edit_file_extents(bytes, aid(id), edit);
}

/// The `FILES_DIR` holding the locator of directory `id` (of the model).
fn table_of(bytes: &[u8], id: u64) -> (Rec, GroupDir) {
    patch::dir_table_of(bytes, aid(id))
}

/// Edits the `FILES_DIR` holding the locator of directory `id`; the table
/// keeps its length.
fn edit_table(bytes: &mut [u8], id: u64, edit: impl FnOnce(&mut GroupDir)) {
    let (rec, mut table) = table_of(bytes, id);
    edit(&mut table);
    patch::rewrite_dir(bytes, rec, &table);
}

/// Renames entry `id` (same length) in its group and in the fence naming
/// it: the tables agree with the entries.
fn rename(bytes: &mut [u8], id: u64, to: &[u8]) {
    patch::rename(bytes, aid(id), to);
}

/// The tree's `FILES_INDEX`: its record and rows.
fn files_index(bytes: &[u8]) -> (Rec, Vec<files::GroupRow>) {
    let rec = of_type(bytes, RecordType::FilesIndex)[0];
    let (_, rows) = files::parse_files_index(&bytes[rec.body_start..rec.body_end]).expect("a valid index");
    (rec, rows)
}

/// Edits the rows of the tree's `FILES_INDEX` in place.
fn edit_files_index(bytes: &mut [u8], edit: impl FnOnce(&mut Vec<files::GroupRow>)) {
    let (rec, mut rows) = files_index(bytes);
    let (head, _) = files::parse_files_index(&bytes[rec.body_start..rec.body_end]).expect("a valid index");
    edit(&mut rows);
    let body = files::encode_files_index(head.section_id, &rows);
    assert_eq!(body.len(), rec.body_end - rec.body_start);
    bytes[rec.body_start..rec.body_end].copy_from_slice(&body);
    refix_record(bytes, rec.offset);
}

/// The tree's groups and the model ids of the entries each holds.
fn entry_records(bytes: &[u8]) -> Vec<(Rec, Vec<u64>)> {
    let map = ID_MAP.with(|m| m.borrow().clone());
    patch::group_heads(bytes)
        .into_iter()
        .map(|(rec, head)| {
            let ids = (head.first_id..head.first_id + u64::from(head.count))
                .map(|id| map.iter().position(|&a| a == id).map_or(id, |model| model as u64))
                .collect();
            (rec, ids)
        })
        .collect()
}

/// Adds `delta` to the u64 at `field` of the body of record `rec`.
fn add_to_body_u64(bytes: &mut [u8], rec: Rec, field: usize, delta: u64) {
    let at = rec.body_start + field;
    let value = get_u64(bytes, at).wrapping_add(delta);
    put_u64(bytes, at, value);
    refix_record(bytes, rec.offset);
}

/// Sets the u64 at `field` of the body of record `rec`.
fn set_body_u64(bytes: &mut [u8], rec: Rec, field: usize, value: u64) {
    put_u64(bytes, rec.body_start + field, value);
    refix_record(bytes, rec.offset);
}

/// Recomputes the first image's map digest in its `IMAGE_END` from its index
/// (the content identities from the chunks' own headers).
fn refix_map_digest(bytes: &mut [u8]) {
    let mut digest = MapDigest::new();
    for extent in crate::image_extent_rows(bytes) {
        let id: [u8; 32] = if extent.chunk_ref >= 128 {
            let body = extent.chunk_ref as usize + 32;
            bytes[body..body + 32].try_into().expect("32 bytes")
        } else {
            ZERO_ID
        };
        digest.push(&extent, &id);
    }
    let end = of_type(bytes, RecordType::ImageEnd)[0];
    bytes[end.body_start + 64..end.body_start + 96].copy_from_slice(&digest.finish());
    refix_record(bytes, end.offset);
}

/// Sets the first image's `logical_size` in its `IMAGE_BEGIN` and `IMAGE_END`.
fn set_image_size(bytes: &mut [u8], size: u64) {
    let begin = of_type(bytes, RecordType::ImageBegin)[0];
    set_body_u64(bytes, begin, 8, size);
    let end = of_type(bytes, RecordType::ImageEnd)[0];
    set_body_u64(bytes, end, 8, size);
}

/// The `CHUNK` record the first image's extent `n` refers to.
fn chunk_of_extent(bytes: &[u8], n: usize) -> Rec {
    let chunk_ref = crate::image_extent_rows(bytes)[n].chunk_ref as usize;
    records(bytes).into_iter().find(|r| r.offset == chunk_ref).expect("a data extent refers to a record")
}

/// The `CHUNK` record holding the content of regular file `id` (its first extent).
fn chunk_of_file(bytes: &[u8], id: u64) -> Rec {
    let chunk_ref = patch::file_extents(bytes, aid(id))[0].chunk_ref as usize;
    records(bytes).into_iter().find(|r| r.offset == chunk_ref).expect("an extent refers to a record")
}

/// Replaces the stored bytes of a zstd `CHUNK` record with `frame` (the same
/// length), declaring `raw_length` bytes whose BLAKE3 is `blake3`.
fn set_chunk_frame(bytes: &mut [u8], rec: Rec, raw_length: u32, blake3: [u8; 32], frame: &[u8]) {
    let body = rec.body_start;
    assert_eq!(bytes[body + 36], 1, "the chunk is stored zstd");
    assert_eq!(frame.len(), rec.body_end - body - 40, "a crafted frame fills the stored bytes exactly");
    bytes[body..body + 32].copy_from_slice(&blake3);
    bytes[body + 32..body + 36].copy_from_slice(&raw_length.to_le_bytes());
    bytes[body + 40..rec.body_end].copy_from_slice(frame);
    refix_record(bytes, rec.offset);
}

// ---------------------------------------------------------------------------
// zstd frames made by hand (RFC 8878)

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// The largest block: 128 KiB.
const MAX_BLOCK: u32 = 128 << 10;

/// A frame header with a 4-byte `Frame_Content_Size` of `content_size` and a
/// single segment (the window is the content size).
fn single_segment_header(content_size: u32) -> Vec<u8> {
    let mut header = ZSTD_MAGIC.to_vec();
    header.push(0b1010_0000);
    header.extend_from_slice(&content_size.to_le_bytes());
    header
}

/// A frame header with a window of 2^`window_log` bytes and a 4-byte
/// `Frame_Content_Size` of `content_size`.
fn windowed_header(window_log: u8, content_size: u32) -> Vec<u8> {
    let mut header = ZSTD_MAGIC.to_vec();
    header.push(0b1000_0000);
    header.push((window_log - 10) << 3);
    header.extend_from_slice(&content_size.to_le_bytes());
    header
}

fn block_header(kind: u32, size: u32, last: bool) -> [u8; 3] {
    let value = (size << 3) | (kind << 1) | u32::from(last);
    [value as u8, (value >> 8) as u8, (value >> 16) as u8]
}

/// An RLE block: `size` copies of `byte`, stored in 4 bytes.
fn rle_block(byte: u8, size: u32, last: bool) -> Vec<u8> {
    let mut block = block_header(1, size, last).to_vec();
    block.push(byte);
    block
}

fn raw_block(content: &[u8], last: bool) -> Vec<u8> {
    let mut block = block_header(0, content.len() as u32, last).to_vec();
    block.extend_from_slice(content);
    block
}

/// A frame of exactly `length` bytes that decodes to exactly `size` bytes:
/// `header`, RLE blocks of `byte`, then a last raw block of `z`s that pads the
/// frame to its length. Returns the frame and what it decodes to.
fn exact_frame(header: &[u8], byte: u8, length: usize, size: usize) -> (Vec<u8>, Vec<u8>) {
    for blocks in 1..=size.div_ceil(MAX_BLOCK as usize) + 1 {
        let Some(tail) = length.checked_sub(header.len() + 4 * blocks + 3) else { break };
        let Some(rle) = size.checked_sub(tail) else { continue };
        if rle == 0 || rle.div_ceil(MAX_BLOCK as usize) != blocks || tail > MAX_BLOCK as usize {
            continue;
        }
        let mut frame = header.to_vec();
        let mut decoded = Vec::with_capacity(size);
        let mut left = rle;
        while left > 0 {
            let take = left.min(MAX_BLOCK as usize);
            frame.extend_from_slice(&rle_block(byte, take as u32, false));
            decoded.resize(decoded.len() + take, byte);
            left -= take;
        }
        frame.extend_from_slice(&raw_block(&vec![b'z'; tail], true));
        decoded.resize(size, b'z');
        assert_eq!(frame.len(), length);
        return (frame, decoded);
    }
    panic!("no frame of {length} bytes decodes to {size} bytes");
}

/// A bomb of exactly `length` bytes: `header`, then as many RLE blocks of
/// 128 KiB of `byte` as fit (at most `max_blocks`), then a last raw block
/// that pads the frame. Returns the frame and how many bytes it decodes to.
fn bomb_frame(header: &[u8], byte: u8, length: usize, max_blocks: usize) -> (Vec<u8>, u64) {
    let blocks = ((length - header.len() - 3) / 4).min(max_blocks);
    let mut frame = header.to_vec();
    for _ in 0..blocks {
        frame.extend_from_slice(&rle_block(byte, MAX_BLOCK, false));
    }
    let tail = length - frame.len() - 3;
    assert!(tail <= MAX_BLOCK as usize, "the padding fits one block");
    frame.extend_from_slice(&raw_block(&vec![b'z'; tail], true));
    (frame, blocks as u64 * u64::from(MAX_BLOCK) + tail as u64)
}

// ---------------------------------------------------------------------------
// Expectations, briefly

fn p(path: &[u8]) -> Vec<u8> {
    path.to_vec()
}

fn valid() -> Verify {
    Verify { exit: 0, class: None }
}

fn damaged(class: ErrorClass) -> Verify {
    Verify { exit: 1, class: Some(class) }
}

fn content(bytes: &[u8]) -> Cat {
    Cat::Content(bytes.to_vec())
}

fn extraction(exit: &[i32], refused: &[&[u8]], after: Vec<(&[u8], PathState)>) -> Extraction {
    Extraction {
        dest: DestSetup::Fresh,
        overwrite: false,
        exit: exit.to_vec(),
        refused: refused.iter().map(|r| r.to_vec()).collect(),
        after: after.into_iter().map(|(path, state)| (path.to_vec(), state)).collect(),
    }
}

/// A `DEST` that already holds symbolic links (name, target).
fn dest_links(links: &[(&[u8], &[u8])]) -> DestSetup {
    DestSetup::Links(links.iter().map(|(name, target)| (name.to_vec(), target.to_vec())).collect())
}

fn file(bytes: &[u8]) -> PathState {
    PathState::File(bytes.to_vec())
}

fn symlink(target: &[u8]) -> PathState {
    PathState::Symlink(target.to_vec())
}

/// Checks for a tree section named [`TREE`].
fn tree_checks(
    list: i32,
    list_paths: Vec<(&[u8], i32)>,
    cats: Vec<(&[u8], Cat)>,
    extracts: Vec<Extraction>,
) -> TreeChecks {
    TreeChecks {
        section: TREE,
        list,
        list_paths: list_paths.into_iter().map(|(path, exit)| (path.to_vec(), exit)).collect(),
        cats: cats.into_iter().map(|(path, cat)| (path.to_vec(), cat)).collect(),
        extracts,
    }
}

/// A case with one tree section.
fn tree_case(
    name: &'static str,
    description: &'static str,
    bytes: Vec<u8>,
    verify: Verify,
    tree: TreeChecks,
) -> HostileCase {
    HostileCase { name, description, bytes, verify, trees: vec![tree], images: Vec::new() }
}

/// A case with one image section.
fn image_case(
    name: &'static str,
    description: &'static str,
    bytes: Vec<u8>,
    verify: Verify,
    restore: Restore,
    cat: (u64, u64, Cat),
) -> HostileCase {
    HostileCase {
        name,
        description,
        bytes,
        verify,
        trees: Vec::new(),
        images: vec![ImageChecks { section: IMAGE, restore, cat }],
    }
}

/// What a restore of `image` gives when it succeeds.
fn restored(image: &ImageModel) -> (u64, Option<String>) {
    let (bytes, _) = image.materialise();
    (bytes.len() as u64, Some(blake3::hash(&bytes).to_hex().to_string()))
}

/// Bytes `start..start + length` of `image`.
fn image_bytes(image: &ImageModel, start: usize, length: usize) -> Vec<u8> {
    image.materialise().0[start..start + length].to_vec()
}

// ---------------------------------------------------------------------------
// The cases

/// Every hostile case.
pub fn cases() -> Vec<HostileCase> {
    let mut all = Vec::new();
    all.extend(names());
    all.extend(links());
    all.extend(cycles());
    all.extend(deep());
    all.extend(counts());
    all.extend(sizes());
    all.extend(zstd());
    all.extend(inheritance());
    all
}

/// Names that lead out of `DEST` or collide.
fn names() -> Vec<HostileCase> {
    use ErrorClass::RecordMalformed;
    use PathState::*;
    let mut v = Vec::new();

    // `..`, holding outside/pwned: followed, it would write DEST/../outside/pwned.
    let mut t = Tree::new();
    // Named to sort first in the root's run, before and after the rename, so
    // that the run keeps its name order (FORMAT.md 8): the name is the defect.
    let up = t.dir(0, b"--");
    let outside = t.dir(up, b"outside");
    t.file(outside, b"pwned", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, up, b"..");
    v.push(tree_case(
        "name-dotdot",
        "a directory named \"..\" holding outside/pwned: followed, it writes into the folder beside DEST",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK)), (b"outside/pwned", Cat::Fails)],
            vec![extraction(
                &[1],
                &[b"..", b"../outside", b"../outside/pwned"],
                vec![(b"ok.txt", file(OK)), (b"outside", Absent), (b"pwned", Absent)],
            )],
        ),
    ));

    // `.`, holding pwned: followed, it writes DEST/pwned.
    let mut t = Tree::new();
    let dot = t.dir(0, b"-");
    t.file(dot, b"pwned", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, dot, b".");
    v.push(tree_case(
        "name-dot",
        "a directory named \".\" holding a file: followed, it writes into DEST itself",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK)), (b"pwned", Cat::Fails)],
            vec![extraction(&[1], &[b".", b"./pwned"], vec![(b"ok.txt", file(OK)), (b"pwned", Absent)])],
        ),
    ));

    // Names holding `/`: a relative path out, and one into a real directory.
    let mut t = Tree::new();
    let sub = t.dir(0, b"sub");
    t.file(sub, b"real", OK);
    let out = t.file(0, b"..-outside-secret", PWNED);
    let inside = t.file(0, b"sub-evil", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, out, b"../outside/secret");
    rename(&mut bytes, inside, b"sub/evil");
    v.push(tree_case(
        "name-slash",
        "files named \"../outside/secret\" and \"sub/evil\": a name is one component, never a path",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK)), (b"sub/evil", Cat::Fails), (b"sub/real", content(OK))],
            vec![extraction(
                &[1],
                &[b"../outside/secret", b"sub/evil"],
                vec![(b"ok.txt", file(OK)), (b"sub/real", file(OK)), (b"sub/evil", Absent)],
            )],
        ),
    ));

    // An absolute name.
    let mut t = Tree::new();
    let absolute = t.file(0, &[b'-'; ABSOLUTE_TARGET.len()], PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, absolute, ABSOLUTE_TARGET.as_bytes());
    v.push(tree_case(
        "name-absolute",
        "a file whose name is an absolute path (/tmp/strata-hostile-absolute)",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK))],
            vec![extraction(&[1], &[ABSOLUTE_TARGET.as_bytes()], vec![(b"ok.txt", file(OK)), (b"tmp", Absent)])],
        ),
    ));

    // A NUL inside a name: a C path would end there.
    let mut t = Tree::new();
    let nul = t.file(0, b"ok.txtXpwned", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, nul, b"ok.txt\0pwned");
    v.push(tree_case(
        "name-nul",
        "a file named \"ok.txt\\0pwned\": cut at the NUL, it would overwrite ok.txt",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK))],
            vec![extraction(&[1], &[b"ok.txt\0pwned"], vec![(b"ok.txt", file(OK))])],
        ),
    ));

    // Two files of one name: the first is extracted, the second refused.
    let mut t = Tree::new();
    let dup = t.dir(0, b"dup");
    t.file(dup, b"d1", b"first\n");
    let second = t.file(dup, b"d2", b"second\n");
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, second, b"d1");
    v.push(tree_case(
        "name-duplicate",
        "two files named dup/d1: the second must not replace the first",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![(b"dup", 2)],
            // The table of dup repeats a name: it is malformed, lookups through it fail.
            vec![(b"ok.txt", content(OK)), (b"dup/d1", Cat::Fails)],
            vec![extraction(&[1], &[b"dup/d1"], vec![(b"dup/d1", file(b"first\n")), (b"ok.txt", file(OK))])],
        ),
    ));

    // A directory, then a symbolic link of the same name pointing outside.
    let mut t = Tree::new();
    let real = t.dir(0, b"esc");
    t.file(real, b"kept", OK);
    let link = t.symlink(0, b"esd", b"../outside");
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, link, b"esc");
    v.push(tree_case(
        "name-duplicate-dir-then-link",
        "a directory esc, then a symbolic link esc -> ../outside: the link must not replace the directory",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"esc/kept", Cat::Fails)],
            vec![extraction(&[1], &[b"esc"], vec![(b"esc", Dir), (b"esc/kept", file(OK)), (b"ok.txt", file(OK))])],
        ),
    ));
    v
}

/// Links that lead out of `DEST`.
fn links() -> Vec<HostileCase> {
    use ErrorClass::RecordMalformed;
    use PathState::*;
    let mut v = Vec::new();

    // A symbolic link used as the parent of a file: written through it, the
    // file lands in outside/ (and, through the absolute one, in /tmp).
    let mut t = Tree::new();
    t.symlink(0, b"esc", b"../outside");
    let abs = t.symlink(0, b"abs", b"/tmp");
    let tmp = t.dir(0, b"tmp");
    let pwned = t.file(tmp, b"pwned", PWNED);
    let absolute = t.file(tmp, b"strata-hostile-absolute", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    set_entry(&mut bytes, pwned, field::PARENT_ID, &1u64.to_le_bytes());
    set_entry(&mut bytes, absolute, field::PARENT_ID, &abs.to_le_bytes());
    v.push(tree_case(
        "link-symlink-as-parent",
        "files whose parent is a symbolic link (esc -> ../outside, abs -> /tmp): written through it, they land outside DEST",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![(b"tmp", 2)],
            vec![(b"ok.txt", content(OK)), (b"esc/pwned", Cat::Fails), (b"tmp/pwned", Cat::Fails)],
            vec![
                extraction(
                    &[1],
                    &[],
                    vec![
                        (b"esc", symlink(b"../outside")),
                        (b"abs", symlink(b"/tmp")),
                        (b"tmp", Dir),
                        (b"tmp/pwned", Absent),
                        (b"ok.txt", file(OK)),
                    ],
                ),
                // DEST already holds esc and tmp as links to outside/.
                Extraction {
                    dest: dest_links(&[(b"esc", b"../outside"), (b"tmp", b"../outside")]),
                    ..extraction(
                        &[1],
                        &[b"esc", b"tmp"],
                        vec![(b"esc", symlink(b"../outside")), (b"tmp", symlink(b"../outside")), (b"ok.txt", file(OK))],
                    )
                },
                Extraction {
                    dest: dest_links(&[(b"esc", b"../outside"), (b"tmp", b"../outside")]),
                    overwrite: true,
                    ..extraction(
                        &[1],
                        &[],
                        vec![(b"esc", symlink(b"../outside")), (b"tmp", Dir), (b"tmp/pwned", Absent), (b"ok.txt", file(OK))],
                    )
                },
            ],
        ),
    ));

    // A symbolic link, then a directory of the same name holding a file.
    let mut t = Tree::new();
    t.symlink(0, b"esc", b"../outside");
    let dir = t.dir(0, b"esd");
    t.file(dir, b"pwned", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, dir, b"esc");
    v.push(tree_case(
        "link-symlink-then-dir",
        "a symbolic link esc -> ../outside, then a directory esc holding pwned: extracted into, the link leads outside",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            // The root's run repeats a name: a lookup of it fails; ok.txt,
            // after both, is found.
            vec![(b"ok.txt", content(OK)), (b"esc/pwned", Cat::Fails)],
            vec![
                extraction(
                    &[1],
                    &[b"esc", b"esc/pwned"],
                    vec![(b"esc", symlink(b"../outside")), (b"ok.txt", file(OK))],
                ),
                // DEST already holds esc, a link to outside/.
                Extraction {
                    dest: dest_links(&[(b"esc", b"../outside")]),
                    ..extraction(&[1], &[b"esc", b"esc/pwned"], vec![(b"esc", symlink(b"../outside"))])
                },
                Extraction {
                    dest: dest_links(&[(b"esc", b"../outside")]),
                    overwrite: true,
                    ..extraction(&[1], &[b"esc", b"esc/pwned"], vec![(b"esc", symlink(b"../outside"))])
                },
            ],
        ),
    ));

    // A hard link to a file below `..`: outside/secret, the file beside DEST.
    // The link is in a folder whose run comes after the file's (a link comes
    // after its file, FORMAT.md 8); `--` sorts first before and after its
    // rename to `..`, so the root's run keeps its name order.
    let mut t = Tree::new();
    let up = t.dir(0, b"--");
    let outside = t.dir(up, b"outside");
    let secret = t.file(outside, b"secret", b"archive secret\n");
    let later = t.dir(0, b"zzz");
    t.hardlink(later, b"h", secret);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    rename(&mut bytes, up, b"..");
    v.push(tree_case(
        "link-hardlink-outside",
        "a hard link zzz/h to ../outside/secret: linked, DEST/zzz/h would be the file beside DEST",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK))],
            vec![
                extraction(
                    &[1],
                    &[b"..", b"../outside", b"../outside/secret", b"zzz/h"],
                    vec![(b"zzz/h", Absent), (b"ok.txt", file(OK))],
                ),
                // DEST already holds zzz/h, a link to outside/secret: the
                // refused hard link replaces nothing, even with --overwrite.
                Extraction {
                    dest: dest_links(&[(b"zzz", b"../outside")]),
                    overwrite: false,
                    ..extraction(&[1], &[b"zzz/h"], vec![(b"zzz", symlink(b"../outside")), (b"ok.txt", file(OK))])
                },
            ],
        ),
    ));

    // Hard links to what is not an earlier regular file: a symbolic link
    // pointing outside, a directory, a later file, no entry, itself.
    let mut t = Tree::new();
    let link = t.symlink(0, b"s", b"../outside/secret");
    let x = t.dir(0, b"x");
    // In the root's run, before the links (a file in x would come after them,
    // FORMAT.md 8, and a link must come after its file).
    let f = t.file(0, b"f", OK);
    let to_link = t.hardlink(0, b"h-symlink", f);
    let to_dir = t.hardlink(0, b"h-dir", f);
    let to_later = t.hardlink(0, b"h-later", f);
    let to_nothing = t.hardlink(0, b"h-nothing", f);
    let to_itself = t.hardlink(0, b"h-itself", f);
    let later = t.file(0, b"later", b"a later file\n");
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    for (id, target) in
        [(to_link, link), (to_dir, x), (to_later, later), (to_nothing, 1u64 << 62), (to_itself, to_itself)]
    {
        set_entry(&mut bytes, id, field::LINK_ID, &target.to_le_bytes());
    }
    v.push(tree_case(
        "link-hardlink-not-a-file",
        "hard links to a symbolic link pointing outside, to a directory, to a later file, to entry 2^62 and to themselves",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![
                (b"f", content(OK)),
                (b"h-symlink", Cat::Fails),
                (b"h-dir", Cat::Fails),
                (b"h-later", Cat::Fails),
                (b"h-nothing", Cat::Fails),
                (b"h-itself", Cat::Fails),
            ],
            vec![
                extraction(
                    &[1],
                    &[b"h-symlink", b"h-dir", b"h-later", b"h-nothing", b"h-itself"],
                    vec![
                        (b"s", symlink(b"../outside/secret")),
                        (b"f", file(OK)),
                        (b"h-symlink", Absent),
                        (b"h-dir", Absent),
                        (b"h-later", Absent),
                        (b"h-nothing", Absent),
                        (b"h-itself", Absent),
                        (b"later", file(b"a later file\n")),
                    ],
                ),
                // DEST already holds x, a link to outside/: nothing is written
                // through it, and with --overwrite the link itself is replaced.
                Extraction {
                    dest: dest_links(&[(b"x", b"../outside")]),
                    ..extraction(&[1], &[b"x", b"h-symlink"], vec![(b"x", symlink(b"../outside"))])
                },
                Extraction {
                    dest: dest_links(&[(b"x", b"../outside")]),
                    overwrite: true,
                    ..extraction(&[1], &[b"h-symlink"], vec![(b"x", Dir), (b"f", file(OK))])
                },
            ],
        ),
    ));

    // A valid tree, extracted into a DEST that already holds links pointing
    // outside, named as the tree's entries.
    let mut t = Tree::new();
    let dir = t.dir(0, b"link");
    let pwned = t.file(dir, b"pwned", PWNED);
    t.hardlink(0, b"h", pwned);
    t.file(0, b"f", b"replaces a link\n");
    t.file(0, b"ok.txt", OK);
    let links = DestSetup::Links(vec![(p(b"link"), p(b"../outside")), (p(b"f"), p(b"../outside/secret"))]);
    let fresh_after = || {
        vec![
            (&b"link"[..], Dir),
            (b"link/pwned", file(PWNED)),
            (b"h", SameFile(p(b"link/pwned"))),
            (b"f", file(b"replaces a link\n")),
            (b"ok.txt", file(OK)),
        ]
    };
    v.push(tree_case(
        "link-dest-holds-links",
        "a valid tree whose directory link and file f are already symbolic links to outside in DEST: extraction must not write through them",
        t.archive(),
        valid(),
        tree_checks(
            0,
            vec![(b"link", 0)],
            vec![(b"link/pwned", content(PWNED)), (b"h", content(PWNED)), (b"f", content(b"replaces a link\n"))],
            vec![
                extraction(&[0], &[], fresh_after()),
                Extraction {
                    dest: links.clone(),
                    // h comes before link/pwned in the entry order (FORMAT.md
                    // 8): it holds the content, and link/pwned is the hard link.
                    ..extraction(
                        &[1],
                        &[b"link", b"link/pwned", b"f"],
                        vec![
                            (b"link", symlink(b"../outside")),
                            (b"f", symlink(b"../outside/secret")),
                            (b"h", file(PWNED)),
                            (b"ok.txt", file(OK)),
                        ],
                    )
                },
                // --overwrite replaces the links themselves, never what they point at.
                Extraction { dest: links, overwrite: true, ..extraction(&[0], &[], fresh_after()) },
            ],
        ),
    ));
    v
}

/// Cycles and self-references in every table.
fn cycles() -> Vec<HostileCase> {
    use ErrorClass::{DanglingReference, IndexMismatch, RecordMalformed};
    use PathState::*;
    let mut v = Vec::new();

    // FILES_ENTRIES: a directory that is its own parent.
    let mut t = Tree::new();
    let looped = t.dir(0, b"loop");
    t.file(looped, b"f", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    set_entry(&mut bytes, looped, field::PARENT_ID, &looped.to_le_bytes());
    v.push(tree_case(
        "cycle-entry-own-parent",
        "a directory whose parent_id is its own entry_id, with a file in it",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![(b"loop", 2)],
            // A lookup checks that every entry it reads through a fence has
            // the directory as its parent (FORMAT.md 8.5): loop, in the
            // root's run, names itself, so lookups through that run stop.
            vec![(b"ok.txt", Cat::Fails), (b"loop/f", Cat::Fails)],
            vec![extraction(&[1], &[], vec![(b"loop", Absent), (b"ok.txt", file(OK))])],
        ),
    ));

    // FILES_ENTRIES: two directories, each the other's parent.
    let mut t = Tree::new();
    let a = t.dir(0, b"a");
    let b = t.dir(a, b"b");
    t.file(b, b"c", PWNED);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    set_entry(&mut bytes, a, field::PARENT_ID, &b.to_le_bytes());
    v.push(tree_case(
        "cycle-entry-parents",
        "directories a and b, each the other's parent, with a file in b",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            // a, in the root's run, names b as its parent: lookups through
            // that run stop (FORMAT.md 8.5).
            vec![(b"ok.txt", Cat::Fails), (b"a/b/c", Cat::Fails), (b"a", Cat::Fails)],
            vec![extraction(&[1], &[], vec![(b"a", Absent), (b"b", Absent), (b"ok.txt", file(OK))])],
        ),
    ));

    // FILES_ENTRIES: the root is its own parent: entry 0 is no root, and a
    // lookup, which starts there (8.5), finds nothing.
    let mut t = Tree::new();
    t.file(0, b"ok.txt", OK);
    let d = t.dir(0, b"d");
    t.file(d, b"f", OK);
    let mut bytes = t.archive();
    set_entry(&mut bytes, 0, field::PARENT_ID, &0u64.to_le_bytes());
    v.push(tree_case(
        "cycle-root-own-parent",
        "the root entry's parent_id is 0, itself: nothing has a root to be extracted into",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", Cat::Fails), (b"d/f", Cat::Fails)],
            vec![extraction(&[1], &[], vec![(b"ok.txt", Absent), (b"d", Absent)])],
        ),
    ));

    // FILES_ENTRIES: a second entry without a parent. Taken for the root, its
    // children land in DEST beside the real root's, under names already used.
    let mut t = Tree::new();
    t.file(0, b"ok.txt", OK);
    let second = t.dir(0, b"sub");
    t.file(second, b"ok.txt", PWNED);
    let mut bytes = t.archive();
    set_entry(&mut bytes, second, field::PARENT_ID, &NO_PARENT.to_le_bytes());
    let kept = || vec![(&b"ok.txt"[..], file(OK)), (b"sub", Absent)];
    v.push(tree_case(
        "cycle-second-root",
        "a directory sub whose parent_id is the root's (none), holding a second ok.txt: taken for the root, it writes into DEST",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            // sub, in the root's run, has no parent: lookups through that
            // run stop (FORMAT.md 8.5).
            vec![(b"ok.txt", Cat::Fails), (b"sub/ok.txt", Cat::Fails)],
            vec![
                extraction(&[1], &[], kept()),
                Extraction { overwrite: true, ..extraction(&[1], &[], kept()) },
            ],
        ),
    ));

    // FILES_DIR: the fence of b's run names an entry before b (its parent
    // a) as the run's first: a lookup following it would go back up the tree.
    // (A lookup checks that first_child_id exceeds the directory's id and
    // stops with index-mismatch, FORMAT.md 8.5.)
    let mut t = Tree::new();
    let a = t.dir(0, b"a");
    let b = t.dir(a, b"b");
    t.dir(b, b"c");
    t.file(b, b"f", b"secret\n");
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    edit_table(&mut bytes, b, |table| {
        let (index, _) = table.locator(aid(b)).expect("b's locator");
        let first = table.locators[index].first_fence as usize;
        table.fences[first].0.first_child_id = aid(a);
    });
    let after = vec![(&b"a/b/c"[..], Dir), (b"a/b/f", file(b"secret\n")), (b"ok.txt", file(OK))];
    v.push(tree_case(
        "cycle-dir-table-ancestor",
        "the FILES_DIR fence of a/b's run gives a's entry_id as the run's first entry: a lookup through it would go back up to a",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            0,
            // One FILES_DIR describes the one group: listing a reads it too.
            vec![(b"a/b", 2), (b"a", 2)],
            vec![(b"a/b/f", Cat::Fails), (b"a/b/c", Cat::Fails), (b"ok.txt", content(OK))],
            // Extraction reads the groups, not the tables.
            vec![extraction(&[0], &[], after)],
        ),
    ));

    // FILES_DIR: the locator of a says its run starts at a itself.
    let mut t = Tree::new();
    let a = t.dir(0, b"a");
    t.file(a, b"f", OK);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    edit_table(&mut bytes, a, |table| {
        let (index, _) = table.locator(aid(a)).expect("a's locator");
        table.locators[index].first_child_id = aid(a);
        let first = table.locators[index].first_fence as usize;
        table.fences[first].0.first_child_id = aid(a);
    });
    v.push(tree_case(
        "cycle-dir-child-self",
        "the FILES_DIR locator of a (and its fence) give a's own entry_id as the first of its children",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            0,
            vec![(b"a", 2)],
            vec![(b"ok.txt", content(OK)), (b"a/f", Cat::Fails)],
            vec![extraction(&[0], &[], vec![(b"a/f", file(OK)), (b"ok.txt", file(OK))])],
        ),
    ));

    // FILES_DIR: the root's fence gives the FILES_INDEX as the FILES_DIR of
    // the group holding a (one past the tables: not a FILES_DIR at all).
    let mut t = Tree::new();
    let a = t.dir(0, b"a");
    t.file(a, b"f", OK);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    let (index, _) = files_index(&bytes);
    edit_table(&mut bytes, 0, |table| {
        let (i, _) = table.locator(0).expect("the root's locator");
        let first = table.locators[i].first_fence as usize;
        table.fences[first].0.dir_record = index.offset as u64;
    });
    v.push(tree_case(
        "cycle-dir-table-self",
        "the root's FILES_DIR fence gives the FILES_INDEX as the FILES_DIR of the group holding a",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            0,
            vec![(b"a", 2)],
            vec![(b"ok.txt", content(OK)), (b"a/f", Cat::Fails)],
            vec![extraction(&[0], &[], vec![(b"a/f", file(OK)), (b"ok.txt", file(OK))])],
        ),
    ));

    // FILES_DIR: the root's fence gives the table itself as the group.
    let mut t = Tree::new();
    t.file(0, b"ok.txt", OK);
    let a = t.dir(0, b"a");
    t.file(a, b"f", OK);
    let mut bytes = t.archive();
    let (root_table, _) = table_of(&bytes, 0);
    edit_table(&mut bytes, 0, |table| {
        let (i, _) = table.locator(0).expect("the root's locator");
        let first = table.locators[i].first_fence as usize;
        table.fences[first].0.entries_record = root_table.offset as u64;
    });
    v.push(tree_case(
        "cycle-dir-entries-record-self",
        "the root's FILES_DIR fence says the root's run is in a FILES_ENTRIES record at the table's own offset",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            0,
            vec![(b"a", 2)],
            vec![(b"ok.txt", Cat::Fails), (b"a/f", Cat::Fails)],
            vec![extraction(&[0], &[], vec![(b"a/f", file(OK)), (b"ok.txt", file(OK))])],
        ),
    ));

    // FILES_INDEX: the root's group's FILES_DIR is the group itself.
    let mut t = Tree::new();
    let a = t.dir(0, b"a");
    t.file(a, b"f", OK);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    edit_files_index(&mut bytes, |rows| rows[0].dir_record = rows[0].entries_record);
    v.push(tree_case(
        "cycle-files-index-root",
        "the FILES_INDEX gives the root's FILES_ENTRIES record as its FILES_DIR",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            0,
            vec![(b"a", 2)],
            vec![(b"ok.txt", Cat::Fails), (b"a/f", Cat::Fails)],
            vec![extraction(&[0], &[], vec![(b"a/f", file(OK)), (b"ok.txt", file(OK))])],
        ),
    ));

    // FILES_INDEX: the first group listed twice, the second not at all.
    let mut t = Tree::new();
    let big = random_bytes(21, 6_000);
    let files: Vec<(u64, &[u8], Vec<u8>)> = vec![
        (t.file(0, b"big", &big), b"big", big.clone()),
        (t.file(0, b"ok.txt", OK), b"ok.txt", OK.to_vec()),
        (t.file(0, b"filler", &random_bytes(22, 5_000)), b"filler", random_bytes(22, 5_000)),
        (t.file(0, b"last", OK), b"last", OK.to_vec()),
    ];
    let mut bytes = write_groups(&[], Some(&t), CHUNK, 32 << 20, 2);
    let held = entry_records(&bytes);
    assert!(held.len() >= 2, "the writer cut the entries into several groups");
    edit_files_index(&mut bytes, |rows| rows[1] = rows[0]);
    // A FILES_INDEX that disagrees with the groups costs fast access only:
    // the commands walk the groups front to back, warn and exit 1 (as for a
    // damaged archive index).
    let after = files.iter().map(|(_, name, data)| (*name, file(data))).collect();
    v.push(tree_case(
        "cycle-files-index-records",
        "the FILES_INDEX lists the first group twice: a lookup by id meets entry 0 again",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            1,
            vec![],
            vec![
                (b"ok.txt", Cat::Intact(OK.to_vec())),
                (b"big", Cat::Intact(big.clone())),
                (b"last", Cat::Intact(OK.to_vec())),
            ],
            vec![extraction(&[1], &[], after)],
        ),
    ));

    // ARCHIVE_INDEX: the section's table is the archive index itself.
    let mut t = Tree::new();
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    let archive_index = of_type(&bytes, RecordType::ArchiveIndex)[0];
    set_body_u64(&mut bytes, archive_index, 8 + 24, archive_index.offset as u64);
    v.push(tree_case(
        "cycle-archive-index-self",
        "the ARCHIVE_INDEX gives its own offset as the tree's FILES_INDEX",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            1,
            vec![],
            vec![(b"ok.txt", Cat::Intact(OK.to_vec()))],
            vec![extraction(&[1], &[], vec![(b"ok.txt", PathState::File(OK.to_vec()))])],
        ),
    ));

    // TRAILER: the archive index is the trailer itself.
    let mut t = Tree::new();
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    let trailer = *records(&bytes).last().expect("a trailer");
    set_body_u64(&mut bytes, trailer, 0, trailer.offset as u64);
    v.push(tree_case(
        "cycle-trailer-self",
        "the TRAILER gives its own offset as the ARCHIVE_INDEX's",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            1,
            vec![],
            vec![(b"ok.txt", Cat::Intact(OK.to_vec()))],
            vec![extraction(&[1], &[], vec![(b"ok.txt", PathState::File(OK.to_vec()))])],
        ),
    ));

    // IMAGE_EXTENTS and IMAGE_INDEX: a data extent whose chunk is its own extent record.
    let image = roomy_image();
    let mut bytes = crate::build(std::slice::from_ref(&image));
    let extents = of_type(&bytes, RecordType::ImageExtents)[0].offset as u64;
    edit_extent(&mut bytes, 0, |e| e[16..24].copy_from_slice(&extents.to_le_bytes()));
    v.push(image_case(
        "cycle-image-extent-self",
        "an image's first data extent refers to the IMAGE_EXTENTS record that holds it (both tables)",
        bytes,
        damaged(DanglingReference),
        Restore::Fails,
        (0, CHUNK as u64, Cat::Fails),
    ));

    // FILES_EXTENTS and the entry: a file extent whose chunk is its own extent record.
    let mut t = Tree::new();
    let own = t.file(0, b"own", &random_bytes(22, 3_000));
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    let announced = of_type(&bytes, RecordType::FilesExtents)[0].offset as u64;
    edit_file_extent(&mut bytes, own, |e| e.chunk_ref = announced);
    v.push(tree_case(
        "cycle-file-extent-self",
        "a file's extent refers to the FILES_EXTENTS record that announces it",
        bytes,
        damaged(DanglingReference),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK)), (b"own", Cat::Fails)],
            vec![extraction(&[1], &[], vec![(b"own", Absent), (b"ok.txt", file(OK))])],
        ),
    ));

    // An entry_id used twice: the second group's first_id is one less than
    // the entries before it, so its first entry takes the id of the first
    // group's last (FORMAT.md 8.3: record-malformed, and none of the group's
    // entries is read).
    let mut t = Tree::new();
    t.file(0, b"a", OK);
    t.file(0, b"b", OK);
    t.dir(0, b"c");
    t.file(0, b"ok.txt", OK);
    let mut bytes = write_groups(&[], Some(&t), CHUNK, 32 << 20, 2);
    let (second, head) = patch::group_heads(&bytes)[1];
    set_body_u64(&mut bytes, second, 8, head.first_id - 1);
    v.push(tree_case(
        "cycle-entry-id-repeated",
        "two groups that both hold entry_id 1: a reader placing entries by id meets one out of sequence",
        bytes,
        damaged(RecordMalformed),
        tree_checks(2, vec![], vec![(b"a", content(OK))], vec![extraction(&[1, 2], &[], vec![(b"a", file(OK))])]),
    ));
    v
}

/// A very deep tree.
fn deep() -> Vec<HostileCase> {
    // 10,000 nested directories, then entries that go back and forth between
    // the deepest directory (files) and the root (symbolic links, cheap to
    // make), and files of many extents at the bottom: a reader that recurses,
    // holds a descriptor per level, walks the path from the root on every
    // change of directory, or builds the path of every extent it checks, runs
    // out of stack or descriptors or does depth × entries work (10^7 and more
    // steps here).
    let depth = 10_000;
    let mut t = Tree::new();
    let mut parent = 0;
    for _ in 0..depth {
        parent = t.dir(parent, b"d");
    }
    for i in 0..1_000 {
        t.file(parent, format!("deep{i}").as_bytes(), b"deep\n");
        t.symlink(0, format!("top{i}").as_bytes(), b"d");
    }
    // One data byte per 4 KiB window, holes between: an extent per window.
    let mut sparse = vec![0u8; 50 * CHUNK];
    let ranges = (0..50).map(|w| ((w * CHUNK) as u64, (w * CHUNK) as u64 + 1)).collect::<Vec<_>>();
    for &(start, _) in &ranges {
        sparse[start as usize] = b'x';
    }
    for i in 0..100 {
        t.sparse_file(parent, format!("sparse{i}").as_bytes(), &sparse, ranges.clone());
    }
    let at_bottom = |name: &[u8]| [b"d/".repeat(depth), name.to_vec()].concat();
    vec![tree_case(
        "deep-10000",
        "10,000 nested directories, then 1,000 files in the deepest one alternating with links at the root, and 100 files of 50 extents there",
        t.archive(),
        valid(),
        TreeChecks {
            section: TREE,
            list: 0,
            list_paths: vec![(p(b"d/d/d"), 0)],
            cats: vec![
                (at_bottom(b"deep999"), content(b"deep\n")),
                (at_bottom(b"sparse99"), content(&sparse)),
                (p(b"d/d/nothing"), Cat::Fails),
            ],
            extracts: vec![Extraction {
                after: vec![
                    (at_bottom(b"deep999"), file(b"deep\n")),
                    (at_bottom(b"sparse0"), file(&sparse)),
                    (p(b"top999"), symlink(b"d")),
                ],
                ..extraction(&[0], &[], vec![])
            }],
        },
    )]
}

/// Counts far beyond what the bytes hold.
fn counts() -> Vec<HostileCase> {
    use ErrorClass::{IndexMismatch, LimitExceeded, RecordMalformed};
    use PathState::*;
    let mut v = Vec::new();

    // A tree the writer cuts into groups of two entries, `last` in a later
    // one than `big` (entry order: the root, big, filler, last, ok.txt).
    let base = || {
        let mut t = Tree::new();
        let big = t.file(0, b"big", &random_bytes(23, 6_000));
        t.file(0, b"ok.txt", OK);
        t.file(0, b"filler", &random_bytes(24, 5_000));
        let last = t.file(0, b"last", b"the last file\n");
        let bytes = write_groups(&[], Some(&t), CHUNK, CHUNK, 2);
        let record_of = |id| entry_records(&bytes).into_iter().find(|(_, ids)| ids.contains(&id)).expect("held").0;
        let (record_of_big, record_of_last) = (record_of(big), record_of(last));
        assert_ne!(record_of_big.offset, record_of_last.offset, "the writer cut the entries between big and last");
        (bytes, last, record_of_last)
    };
    let big = random_bytes(23, 6_000);
    let later_record_broken = |bytes, name, description| {
        tree_case(
            name,
            description,
            bytes,
            damaged(RecordMalformed),
            tree_checks(
                2,
                vec![],
                vec![(b"big", content(&big)), (b"last", Cat::Fails)],
                vec![extraction(&[1, 2], &[], vec![(b"last", Absent)])],
            ),
        )
    };

    let (mut bytes, _, rec) = base();
    bytes[rec.body_start + 4..rec.body_start + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    refix_record(&mut bytes, rec.offset);
    v.push(later_record_broken(
        bytes,
        "count-entries-2e32",
        "a FILES_ENTRIES record whose head counts 2^32 - 1 entries in a body of a few hundred bytes",
    ));

    let (mut bytes, last, _) = base();
    set_entry(&mut bytes, last, field::XATTR_COUNT, &u16::MAX.to_le_bytes());
    v.push(later_record_broken(
        bytes,
        "count-xattrs-2e32",
        "an entry that counts 65,535 extended attributes in a strings area of a few bytes",
    ));

    // An extent_count that differs from the extents announced is
    // index-mismatch at the group (8.2): the entry is read, its content is
    // not (a reader never allocates by extent_count, 10.1 step 5).
    let (mut bytes, last, rec) = base();
    set_entry(&mut bytes, last, field::EXTENT_COUNT, &u64::from(u32::MAX).to_le_bytes());
    let _ = rec;
    v.push(tree_case(
        "count-entry-extents-2e32",
        "an entry that counts 2^32 - 1 file extents",
        bytes,
        damaged(IndexMismatch),
        tree_checks(
            0,
            vec![],
            vec![(b"big", content(&big)), (b"last", Cat::Damaged)],
            vec![extraction(&[1, 2], &[], vec![(b"big", file(&big))])],
        ),
    ));

    // A FILES_EXTENTS record that breaks its head: none of its extents is
    // read (8.2), and they are the only copy: big's content is lost (section
    // 11), the entries and every other file stay.
    let (mut bytes, _, _) = base();
    let extents = of_type(&bytes, RecordType::FilesExtents)[0];
    set_body_u64(&mut bytes, extents, 8, 1 << 40);
    let all_there = || {
        vec![
            (&b"big"[..], file(&big)),
            (b"ok.txt", file(OK)),
            (b"filler", file(&random_bytes(24, 5_000))),
            (b"last", file(b"the last file\n")),
        ]
    };
    v.push(tree_case(
        "count-files-extents-2e40",
        "a FILES_EXTENTS record that counts 2^40 extents",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            0,
            vec![],
            vec![(b"big", Cat::Fails), (b"ok.txt", content(OK))],
            vec![extraction(&[1], &[], all_there().into_iter().skip(1).chain([(&b"big"[..], Absent)]).collect())],
        ),
    ));

    let (mut bytes, _, _) = base();
    let (root_table, _) = table_of(&bytes, 0);
    set_body_u64(&mut bytes, root_table, 16, 1 << 40);
    v.push(tree_case(
        "count-dir-2e40",
        "the root's FILES_DIR counts 2^40 children",
        bytes,
        damaged(RecordMalformed),
        tree_checks(0, vec![(b".", 2)], vec![(b"ok.txt", Cat::Fails)], vec![extraction(&[0], &[], all_there())]),
    ));

    let (mut bytes, _, _) = base();
    let (index, _) = files_index(&bytes);
    set_body_u64(&mut bytes, index, 8, 1 << 61);
    v.push(tree_case(
        "count-files-index-2e61",
        "the FILES_INDEX counts 2^61 groups",
        bytes,
        damaged(RecordMalformed),
        tree_checks(
            1,
            vec![],
            vec![(b"ok.txt", Cat::Intact(OK.to_vec()))],
            vec![extraction(&[1], &[], vec![(b"ok.txt", PathState::File(OK.to_vec()))])],
        ),
    ));

    let (mut bytes, _, _) = base();
    let end = of_type(&bytes, RecordType::FilesEnd)[0];
    for (field, value) in [(8, 1u64 << 32), (16, 1 << 40), (24, 1 << 40), (32, 1 << 62)] {
        set_body_u64(&mut bytes, end, field, value);
    }
    v.push(tree_case(
        "count-files-end-2e32",
        "a FILES_END that counts 2^32 entries, 2^40 files and directories and 2^62 content bytes",
        bytes,
        damaged(IndexMismatch),
        tree_checks(2, vec![], vec![(b"ok.txt", content(OK))], vec![extraction(&[1, 2], &[], vec![])]),
    ));

    let (mut bytes, _, _) = base();
    let archive_index = of_type(&bytes, RecordType::ArchiveIndex)[0];
    bytes[archive_index.body_start..archive_index.body_start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    refix_record(&mut bytes, archive_index.offset);
    v.push(tree_case(
        "count-sections-2e32",
        "an ARCHIVE_INDEX that counts 2^32 - 1 sections",
        bytes,
        damaged(LimitExceeded),
        tree_checks(
            1,
            vec![],
            vec![(b"ok.txt", Cat::Intact(OK.to_vec()))],
            vec![extraction(&[1], &[], vec![(b"ok.txt", PathState::File(OK.to_vec()))])],
        ),
    ));

    // Images: the extent records, and the end record's totals.
    let image = roomy_image();
    let (size, blake3) = restored(&image);
    let first_window = image_bytes(&image, 0, CHUNK);
    let mut bytes = crate::build(std::slice::from_ref(&image));
    let extents = of_type(&bytes, RecordType::ImageExtents)[0];
    set_body_u64(&mut bytes, extents, 8, 1 << 40);
    v.push(image_case(
        "count-image-extents-2e40",
        "an IMAGE_EXTENTS record that counts 2^40 extents (the IMAGE_INDEX is sound)",
        bytes,
        damaged(RecordMalformed),
        Restore::Image { size, blake3: blake3.clone() },
        (0, CHUNK as u64, content(&first_window)),
    ));

    let mut bytes = crate::build(std::slice::from_ref(&image));
    let end = of_type(&bytes, RecordType::ImageEnd)[0];
    for field in [16, 40] {
        set_body_u64(&mut bytes, end, field, 1 << 40);
    }
    v.push(image_case(
        "count-image-end-2e40",
        "an IMAGE_END that counts 2^40 extents and 2^40 chunks",
        bytes,
        damaged(IndexMismatch),
        Restore::ImageOrFails { size, blake3 },
        (0, CHUNK as u64, Cat::Damaged),
    ));
    v
}

/// Sizes that lie.
fn sizes() -> Vec<HostileCase> {
    use ErrorClass::{ExtentMap, LimitExceeded};
    use PathState::*;
    let mut v = Vec::new();
    let image = roomy_image();

    // A chunk that declares 4 GiB.
    let mut bytes = crate::build(std::slice::from_ref(&image));
    let chunk = chunk_of_extent(&bytes, 0);
    bytes[chunk.body_start + 32..chunk.body_start + 36].copy_from_slice(&u32::MAX.to_le_bytes());
    refix_record(&mut bytes, chunk.offset);
    v.push(image_case(
        "size-chunk-4gib",
        "an image's CHUNK record declares a raw_length of 4 GiB - 1",
        bytes,
        damaged(LimitExceeded),
        Restore::Fails,
        (0, CHUNK as u64, Cat::Fails),
    ));

    let mut t = Tree::new();
    let big = t.file(0, b"big", &random_bytes(24, 3_000));
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    let chunk = chunk_of_file(&bytes, big);
    bytes[chunk.body_start + 32..chunk.body_start + 36].copy_from_slice(&u32::MAX.to_le_bytes());
    refix_record(&mut bytes, chunk.offset);
    v.push(tree_case(
        "size-chunk-4gib-file",
        "the CHUNK record holding a file declares a raw_length of 4 GiB - 1",
        bytes,
        damaged(LimitExceeded),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK)), (b"big", Cat::Fails)],
            vec![extraction(&[1], &[], vec![(b"big", Absent), (b"ok.txt", file(OK))])],
        ),
    ));

    // An image extent of 2^62 bytes.
    let mut bytes = crate::build(std::slice::from_ref(&image));
    edit_extent(&mut bytes, 0, |e| e[8..16].copy_from_slice(&(1u64 << 62).to_le_bytes()));
    v.push(image_case(
        "size-image-extent-2e62",
        "an image's first data extent claims 2^62 bytes (both tables)",
        bytes,
        damaged(ExtentMap),
        Restore::Fails,
        (0, CHUNK as u64, Cat::Damaged),
    ));

    // A file extent of 2^62 bytes in a file of 2^62 + 3,000 bytes.
    let mut t = Tree::new();
    let big = t.file(0, b"big", &random_bytes(25, 3_000));
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    let length = 1u64 << 62;
    set_entry(&mut bytes, big, field::SIZE, &(length + 3_000).to_le_bytes());
    edit_file_extent(&mut bytes, big, |e| e.length = length);
    v.push(tree_case(
        "size-file-extent-2e62",
        "a file extent of 2^62 bytes (its only copy, in FILES_EXTENTS), in a file of 2^62 + 3,000 bytes",
        bytes,
        damaged(ExtentMap),
        // The extent runs past its chunk (extent-map at its FILES_EXTENTS
        // record, 8.2); the entries are sound and listed, the file's content
        // cannot be read.
        tree_checks(0, vec![], vec![(b"big", Cat::Fails)], vec![extraction(&[1, 2], &[], vec![(b"big", Absent)])]),
    ));

    // A file of 2^62 bytes, nearly all hole, with the digest that size gives
    // (FORMAT.md 8.3): valid, and checked at the cost of its 29 stored bytes.
    // Extraction writes it sparse, or fails on the destination's file size
    // limit with a warning; cat of it would write 2^62 bytes, so it is not run.
    let mut t = Tree::new();
    let data = b"data before a very long hole\n";
    let sparse = t.file(0, b"sparse", data);
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    set_entry(&mut bytes, sparse, field::SIZE, &(1u64 << 62).to_le_bytes());
    set_entry(&mut bytes, sparse, field::DIGEST, &crate::file_digest(&[(0, data)], 1 << 62));
    let end = of_type(&bytes, RecordType::FilesEnd)[0];
    add_to_body_u64(&mut bytes, end, 32, (1u64 << 62) - 29);
    v.push(tree_case(
        "size-file-hole-2e62",
        "a file of 2^62 bytes whose 29 bytes of data are followed by a hole: no archive byte pays for the hole, and checking it costs 29 bytes of hashing",
        bytes,
        valid(),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK))],
            vec![extraction(&[0, 1], &[], vec![(b"ok.txt", file(OK))])],
        ),
    ));

    // Many files, each with a hole of 1 GiB: the holes cost no archive bytes,
    // and their digests cost no hashing of them (FORMAT.md 8.3), so verify and
    // extraction take as long as 300 small files do.
    let mut t = Tree::new();
    let data = b"data before a hole\n";
    let (files_count, hole) = (300u64, 1u64 << 30);
    let ids: Vec<u64> = (0..files_count).map(|i| t.file(0, format!("sparse{i:03}").as_bytes(), data)).collect();
    t.file(0, b"ok.txt", OK);
    let mut bytes = t.archive();
    let digest = crate::file_digest(&[(0, data)], hole);
    for id in ids {
        set_entry(&mut bytes, id, field::SIZE, &hole.to_le_bytes());
        set_entry(&mut bytes, id, field::DIGEST, &digest);
    }
    let end = of_type(&bytes, RecordType::FilesEnd)[0];
    add_to_body_u64(&mut bytes, end, 32, files_count * (hole - data.len() as u64));
    v.push(tree_case(
        "size-file-holes-many",
        "300 files of 1 GiB, each 19 bytes of data and a hole: 300 GiB of holes, in 82 KiB, which no reader needs to hash",
        bytes,
        valid(),
        tree_checks(
            0,
            vec![],
            // cat of a sparse file would write its whole GiB: not run.
            vec![(b"ok.txt", content(OK))],
            vec![extraction(&[0], &[], vec![(b"ok.txt", file(OK))])],
        ),
    ));

    // An image with a hole of 2^62 bytes: valid. A restore to a file makes a
    // sparse file of 2^62 bytes where the file system allows it.
    let hole_image = ImageModel::new(IMAGE, vec![Segment::Text(CHUNK), Segment::Hole(CHUNK)]);
    let mut bytes = crate::build(std::slice::from_ref(&hole_image));
    let size = 1u64 << 62;
    edit_extent(&mut bytes, 1, |e| e[8..16].copy_from_slice(&(size - CHUNK as u64).to_le_bytes()));
    set_image_size(&mut bytes, size);
    refix_map_digest(&mut bytes);
    v.push(image_case(
        "size-image-hole-2e62",
        "a valid image of 2^62 bytes: one data window, then a zero extent of 2^62 - 4 KiB",
        bytes,
        valid(),
        Restore::ImageOrFails { size, blake3: None },
        (0, CHUNK as u64, content(&image_bytes(&hole_image, 0, CHUNK))),
    ));

    // The same hole in an image that declares 8 KiB.
    let mut bytes = crate::build(std::slice::from_ref(&hole_image));
    edit_extent(&mut bytes, 1, |e| e[8..16].copy_from_slice(&((1u64 << 62) - CHUNK as u64).to_le_bytes()));
    v.push(image_case(
        "size-image-hole-lie",
        "an image of 8 KiB whose zero extent claims 2^62 - 4 KiB bytes (both tables)",
        bytes,
        damaged(ExtentMap),
        Restore::Fails,
        (0, CHUNK as u64, Cat::Damaged),
    ));

    // An image of 2^63 bytes, beyond the format's limit.
    let mut bytes = crate::build(std::slice::from_ref(&image));
    let total = 1u64 << 63;
    set_image_size(&mut bytes, total);
    v.push(image_case(
        "size-image-2e63",
        "IMAGE_BEGIN and IMAGE_END declare an image of 2^63 bytes, beyond the format's limit",
        bytes,
        damaged(LimitExceeded),
        Restore::Fails,
        (0, CHUNK as u64, Cat::Fails),
    ));
    v
}

/// zstd frames that lie or explode.
fn zstd() -> Vec<HostileCase> {
    use ErrorClass::ChunkCorrupt;
    use PathState::*;
    let mut v = Vec::new();
    let image = roomy_image();
    let raw = CHUNK as u32;
    // What a reader that decodes only the declared 4 KiB of an RLE frame sees.
    let a4k = *blake3::hash(&[b'A'; CHUNK]).as_bytes();

    // Each case replaces the stored bytes of the image's first chunk (zstd,
    // about 3 KiB) with a frame made to fit them exactly. `frame` gives the
    // frame and the BLAKE3 the chunk declares.
    let crafted = |name, description, frame: &dyn Fn(usize) -> (Vec<u8>, [u8; 32])| {
        let mut bytes = crate::build(std::slice::from_ref(&image));
        let chunk = chunk_of_extent(&bytes, 0);
        let (frame, blake3) = frame(chunk.body_end - chunk.body_start - 40);
        set_chunk_frame(&mut bytes, chunk, raw, blake3, &frame);
        image_case(name, description, bytes, damaged(ChunkCorrupt), Restore::Fails, (0, CHUNK as u64, Cat::Fails))
    };
    let hashed = |(frame, decoded): (Vec<u8>, Vec<u8>)| (frame, *blake3::hash(&decoded).as_bytes());

    // Each frame below decodes to bytes whose BLAKE3 the chunk declares: only
    // the rule of section 6 that it breaks tells it apart from a sound one.
    v.push(crafted(
        "zstd-content-size-lie",
        "a zstd frame of the chunk's 4 KiB whose Frame_Content_Size says 1 MiB",
        &|length| hashed(exact_frame(&single_segment_header(1 << 20), b'A', length, CHUNK)),
    ));
    v.push(crafted("zstd-window-2gib", "a zstd frame of the chunk's 4 KiB whose Window_Size is 2 GiB", &|length| {
        hashed(exact_frame(&windowed_header(31, raw), b'A', length, CHUNK))
    }));
    v.push(crafted(
        "zstd-skippable-frame",
        "a chunk whose stored bytes are a skippable frame, then a frame of the chunk's 4 KiB",
        &|length| {
            let mut frame = 0x184D_2A50u32.to_le_bytes().to_vec();
            frame.extend_from_slice(&4u32.to_le_bytes());
            frame.extend_from_slice(b"skip");
            let (rest, decoded) = exact_frame(&single_segment_header(raw), b'A', length - frame.len(), CHUNK);
            frame.extend_from_slice(&rest);
            (frame, *blake3::hash(&decoded).as_bytes())
        },
    ));
    v.push(crafted(
        "zstd-two-frames",
        "a chunk whose stored bytes are a frame of the chunk's 4 KiB, then a second frame",
        &|length| {
            let mut frame = single_segment_header(raw);
            frame.extend_from_slice(&rle_block(b'A', raw, true));
            // The second frame: one RLE byte and a raw block filling the rest.
            let rest = length - frame.len();
            let size = rest - 9 - 4 - 3 + 1;
            frame.extend_from_slice(&exact_frame(&single_segment_header(size as u32), b'z', rest, size).0);
            (frame, a4k)
        },
    ));
    // A bomb: its header is honest (4 KiB), its blocks decode to about 90 MiB;
    // the chunk declares the BLAKE3 of their first 4 KiB.
    v.push(crafted(
        "zstd-bomb",
        "a zstd frame that declares 4 KiB and decodes to about 90 MiB of RLE blocks",
        &|length| {
            let (frame, decoded) = bomb_frame(&windowed_header(24, raw), b'A', length, usize::MAX);
            assert!(decoded > 64 << 20, "the bomb decodes to more than 64 MiB");
            (frame, a4k)
        },
    ));

    // A bomb of 1 GiB in a file's 16 MiB chunk.
    let mut t = Tree::new();
    let mut data = random_bytes(26, 40 << 10);
    data.resize(16 << 20, b'A');
    let bomb = t.file(0, b"bomb", &data);
    t.file(0, b"ok.txt", OK);
    let mut bytes = write(&[], Some(&t), 16 << 20, 32 << 20);
    let chunk = chunk_of_file(&bytes, bomb);
    let length = chunk.body_end - chunk.body_start - 40;
    let raw_length = 16u32 << 20;
    let (frame, decoded) = bomb_frame(&single_segment_header(raw_length), b'A', length, 8_192);
    assert!(decoded >= 1 << 30, "the frame decodes to 1 GiB or more");
    let first = *blake3::hash(&vec![b'A'; raw_length as usize]).as_bytes();
    set_chunk_frame(&mut bytes, chunk, raw_length, first, &frame);
    v.push(tree_case(
        "zstd-bomb-file",
        "a file's 16 MiB chunk is a zstd frame that declares 16 MiB and decodes to 1 GiB",
        bytes,
        damaged(ChunkCorrupt),
        tree_checks(
            0,
            vec![],
            vec![(b"ok.txt", content(OK)), (b"bomb", Cat::Fails)],
            vec![extraction(&[1], &[], vec![(b"bomb", Absent), (b"ok.txt", file(OK))])],
        ),
    ));
    v
}

/// The binary form of a POSIX ACL (`system.posix_acl_*`): the owner, named
/// users with rwx, the group, the mask and others.
pub fn acl(users: &[u32]) -> Vec<u8> {
    let mut value = 2u32.to_le_bytes().to_vec();
    let mut entry = |tag: u16, perm: u16, id: u32| {
        value.extend_from_slice(&tag.to_le_bytes());
        value.extend_from_slice(&perm.to_le_bytes());
        value.extend_from_slice(&id.to_le_bytes());
    };
    const UNDEFINED: u32 = u32::MAX;
    entry(0x01, 7, UNDEFINED);
    for &user in users {
        entry(0x02, 7, user);
    }
    entry(0x04, 5, UNDEFINED);
    entry(0x10, 7, UNDEFINED);
    entry(0x20, 5, UNDEFINED);
    value
}

/// ACLs and metadata a new entry must not take from elsewhere, nor give to
/// what it points at.
fn inheritance() -> Vec<HostileCase> {
    use PathState::*;
    let mut v = Vec::new();
    const ACCESS: &[u8] = b"system.posix_acl_access";
    const DEFAULT: &[u8] = b"system.posix_acl_default";

    // A directory whose default ACL names user 1234, with entries that record
    // no ACL: none of them may end with one.
    let mut t = Tree::new();
    let shared = t.dir(0, b"shared");
    t.entry(shared).xattrs = vec![files::Xattr { name: DEFAULT.to_vec(), value: acl(&[1234]) }];
    let f = t.file(shared, b"f", OK);
    t.entry(f).mode = 0o640;
    let sub = t.dir(shared, b"sub");
    t.file(sub, b"g", OK);
    let no_acl = |dest_acl: Option<Vec<u8>>| {
        let mut after = vec![
            (p(b"shared"), Xattr(p(DEFAULT), acl(&[1234]))),
            (p(b"shared"), NoXattr(p(ACCESS))),
            (p(b"shared/f"), file(OK)),
            (p(b"shared/f"), NoXattr(p(ACCESS))),
            (p(b"shared/f"), Mode(0o640)),
            (p(b"shared/sub"), NoXattr(p(ACCESS))),
            (p(b"shared/sub"), NoXattr(p(DEFAULT))),
            (p(b"shared/sub/g"), NoXattr(p(ACCESS))),
            (p(b"shared/sub/g"), Mode(0o644)),
        ];
        if let Some(value) = dest_acl {
            // An existing destination keeps its own ACLs (FORMAT.md 8.7).
            after.push((p(b""), Xattr(p(DEFAULT), value)));
        }
        after
    };
    v.push(tree_case(
        "acl-default-not-inherited",
        "a directory with a default ACL, and entries in it that record none: nothing extracted may inherit one, from it or from DEST",
        t.archive(),
        valid(),
        tree_checks(
            0,
            vec![],
            vec![(b"shared/f", content(OK))],
            vec![
                Extraction { after: no_acl(None), ..extraction(&[0], &[], vec![]) },
                Extraction {
                    dest: DestSetup::DefaultAcl(acl(&[4321])),
                    after: no_acl(Some(acl(&[4321]))),
                    ..extraction(&[0], &[], vec![])
                },
            ],
        ),
    ));

    // Without captured extended attributes nothing is known of the entries'
    // ACLs: what the destination gives stays (FORMAT.md 8.7).
    let mut t = Tree::new();
    t.captured = 0;
    let f = t.file(0, b"f", OK);
    t.entry(f).mode = 0o640;
    v.push(tree_case(
        "acl-not-captured",
        "a tree that did not capture extended attributes, extracted into a DEST with a default ACL: the inherited ACL stays",
        t.archive(),
        valid(),
        tree_checks(
            0,
            vec![],
            vec![(b"f", content(OK))],
            vec![Extraction {
                dest: DestSetup::DefaultAcl(acl(&[4321])),
                after: vec![(p(b"f"), file(OK)), (p(b"f"), HasXattr(p(ACCESS)))],
                ..extraction(&[0], &[], vec![])
            }],
        ),
    ));

    // A hard link whose own entry carries other metadata than its target's:
    // applied, it would change the target (FORMAT.md 8.7).
    let mut t = Tree::new();
    let target = t.file(0, b"target", OK);
    t.entry(target).mode = 0o640;
    t.entry(target).xattrs = vec![files::Xattr { name: b"user.who".to_vec(), value: b"target".to_vec() }];
    let link = t.hardlink(0, b"z-link", target);
    t.entry(link).mode = 0o6777;
    t.entry(link).mtime = Timestamp::from_unix_nanos(T0 - 1_000_000_000);
    t.entry(link).xattrs = vec![files::Xattr { name: b"user.who".to_vec(), value: b"link".to_vec() }];
    v.push(tree_case(
        "hardlink-own-metadata",
        "a hard link whose entry gives mode 6777 and another user.who than its target's: the inode keeps the target's",
        t.archive(),
        valid(),
        tree_checks(
            0,
            vec![],
            vec![(b"z-link", content(OK))],
            vec![extraction(
                &[0],
                &[],
                vec![
                    (b"z-link", SameFile(p(b"target"))),
                    (b"target", Mode(0o640)),
                    (b"target", Xattr(p(b"user.who"), p(b"target"))),
                ],
            )],
        ),
    ));

    // A symbolic link pointing outside, with an owner, extended attributes and
    // an ACL of its own: applied through the link, they would change outside/secret.
    let mut t = Tree::new();
    let s = t.symlink(0, b"s", b"../outside/secret");
    let entry = t.entry(s);
    entry.uid = 4321;
    entry.gid = 4321;
    entry.xattrs = vec![
        files::Xattr { name: ACCESS.to_vec(), value: acl(&[4321]) },
        files::Xattr { name: b"trusted.evil".to_vec(), value: b"x".to_vec() },
        files::Xattr { name: b"user.evil".to_vec(), value: b"x".to_vec() },
    ];
    t.file(0, b"ok.txt", OK);
    v.push(tree_case(
        "symlink-own-metadata",
        "a symbolic link to ../outside/secret with an owner, an ACL and extended attributes: none may reach the file it points at",
        t.archive(),
        valid(),
        tree_checks(
            0,
            vec![],
            vec![(b"s", Cat::Fails)],
            // Linux refuses user.* attributes and ACLs on a symbolic link: a
            // warning, exit 1; a system that takes them, exit 0.
            vec![extraction(&[0, 1], &[], vec![(b"s", symlink(b"../outside/secret")), (b"ok.txt", file(OK))])],
        ),
    ));
    v
}
