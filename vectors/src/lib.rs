//! The generator of `spec/vectors/`: golden Strata archives, valid and invalid,
//! with the outcome a conforming reader must give for each.
//!
//! Valid vectors are written by the reference writer from image models held here;
//! their expected content (sizes, BLAKE3 of each image) is computed from the
//! models, not by reading the archives back. Invalid vectors are valid ones with
//! one deliberate defect, their checksums fixed up so that the defect is the one a
//! reader meets; the expected error class is stated here, never observed.

mod chain;
pub mod hostile;
mod partial;
mod patch;
mod trees;
mod used_blocks;

use std::io;
use std::path::Path;

use serde_json::json;
use strata_format::files;
use strata_format::index::TRAILER_RECORD_SIZE;
use strata_format::record::RecordFlags;
use strata_format::{ArchiveHeader, ErrorClass, RecordHeader, RecordType};
use strata_writer::{ArchiveWriter, ImageSource, NoProgress, Window, WriterOptions};

/// Bytes of one `IMAGE_EXTENTS` / `IMAGE_INDEX` extent entry (FORMAT.md 7.2).
const EXTENT: usize = strata_format::Extent::SIZE;

/// Chunk size of every vector: small, so vectors stay a few KiB.
pub const CHUNK: usize = 4096;
pub(crate) const UUID: [u8; 16] = *b"strata-vectors-1";
pub(crate) const CREATED_NS: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

/// A piece of an image model.
#[derive(Clone, Copy, Debug)]
pub enum Segment {
    /// Zero bytes that the source reads out.
    Zero(usize),
    /// Zero bytes that the source reports as a hole, never read.
    Hole(usize),
    /// Pseudo-random (incompressible) bytes from a seed.
    Random(u64, usize),
    /// One byte repeated.
    Repeat(u8, usize),
    /// Compressible text-like bytes.
    Text(usize),
}

/// Pseudo-random (incompressible) bytes from a seed (splitmix64).
pub(crate) fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// An image as the generator knows it.
#[derive(Clone, Debug)]
pub struct ImageModel {
    pub name: &'static str,
    pub segments: Vec<Segment>,
    /// Whether the writer is told the size up front (false: read like a pipe).
    pub size_known: bool,
}

impl ImageModel {
    pub(crate) fn new(name: &'static str, segments: Vec<Segment>) -> Self {
        ImageModel { name, segments, size_known: true }
    }

    /// The image bytes and the byte ranges that are holes.
    pub fn materialise(&self) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut bytes = Vec::new();
        let mut holes = Vec::new();
        for segment in &self.segments {
            match *segment {
                Segment::Zero(n) => bytes.resize(bytes.len() + n, 0),
                Segment::Hole(n) => {
                    holes.push((bytes.len(), bytes.len() + n));
                    bytes.resize(bytes.len() + n, 0);
                }
                Segment::Random(seed, n) => bytes.extend(random_bytes(seed, n)),
                Segment::Repeat(byte, n) => bytes.resize(bytes.len() + n, byte),
                Segment::Text(n) => {
                    const WORDS: &[&str] = &["strata ", "image ", "backup ", "chunk ", "extent ", "zstd\n"];
                    let mut i = 0usize;
                    while bytes.len() < bytes.len() + n && i < n {
                        let word = WORDS[(i * 7 + i / 13) % WORDS.len()].as_bytes();
                        let take = word.len().min(n - i);
                        bytes.extend_from_slice(&word[..take]);
                        i += take;
                    }
                }
            }
        }
        (bytes, holes)
    }

    /// What a reader must report for this image, computed from the model and the
    /// format's rule that an all-zero chunk window is a zero extent.
    pub(crate) fn expectation(&self) -> SectionExpectation {
        let (bytes, _) = self.materialise();
        let data_bytes =
            bytes.chunks(CHUNK).filter(|window| window.iter().any(|&b| b != 0)).map(|window| window.len() as u64).sum();
        SectionExpectation {
            name: self.name,
            logical_size: bytes.len() as u64,
            data_bytes,
            free_bytes: 0,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        }
    }
}

/// An in-memory image source that reports the model's holes as holes.
pub(crate) struct ModelSource {
    pub(crate) bytes: Vec<u8>,
    pub(crate) holes: Vec<(usize, usize)>,
    pub(crate) position: usize,
    pub(crate) size_known: bool,
}

impl ImageSource for ModelSource {
    fn known_size(&self) -> Option<u64> {
        self.size_known.then_some(self.bytes.len() as u64)
    }

    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window> {
        buf.clear();
        let end = (self.position + len).min(self.bytes.len());
        if end == self.position {
            return Ok(Window::End);
        }
        let start = self.position;
        self.position = end;
        if self.holes.iter().any(|&(a, b)| a <= start && end <= b) {
            return Ok(Window::Hole(end - start));
        }
        buf.extend_from_slice(&self.bytes[start..end]);
        Ok(Window::Data(end - start))
    }
}

#[derive(Clone, Debug)]
pub struct SectionExpectation {
    pub name: &'static str,
    pub logical_size: u64,
    pub data_bytes: u64,
    /// Bytes of free extents (used-blocks images).
    pub free_bytes: u64,
    pub blake3: String,
}

impl SectionExpectation {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "kind": "image",
            "name": self.name,
            "logical_size": self.logical_size,
            "data_bytes": self.data_bytes,
            "lost_bytes": 0,
            "free_bytes": self.free_bytes,
            "blake3": self.blake3,
        })
    }
}

#[derive(Clone, Debug)]
pub enum Expectation {
    /// The sections a reader must list, as the manifest gives them.
    Valid(Vec<serde_json::Value>),
    /// The class the defect is, every problem `verify` must report (FORMAT.md
    /// section 11, "What a verifier reports"), and for hostile trees the paths
    /// that extraction must refuse.
    Invalid { class: ErrorClass, problems: Vec<Expected>, refused: Vec<String> },
}

/// A problem `verify` must report, as `conformance.md` makes it normative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub class: ErrorClass,
    pub offset: u64,
    pub affects: Vec<Affects>,
}

/// A range a problem costs: of an image, or of a file of a tree (`path`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Affects {
    pub section: String,
    pub path: Option<String>,
    pub start: u64,
    pub end: u64,
}

impl Expected {
    /// The manifest's form: `{class, offset, affects}`, `affects` as in
    /// `verify --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let affects: Vec<serde_json::Value> = self
            .affects
            .iter()
            .map(|a| match &a.path {
                Some(path) => json!({"section": a.section, "path": path, "start": a.start, "end": a.end}),
                None => json!({"section": a.section, "start": a.start, "end": a.end}),
            })
            .collect();
        json!({"class": self.class.name(), "offset": self.offset, "affects": affects})
    }
}

/// A problem at `offset` that affects `affects`.
pub(crate) fn problem(class: ErrorClass, offset: usize, affects: Vec<Affects>) -> Expected {
    Expected { class, offset: offset as u64, affects }
}

/// An image range of section `section`.
pub(crate) fn image_range(section: &str, start: u64, end: u64) -> Affects {
    Affects { section: section.to_string(), path: None, start, end }
}

/// The problem list as `verify` gives it: one problem per class and offset,
/// what it affects the union of theirs, touching ranges merged, empty ones
/// dropped; in increasing offset.
/// A regular file's digest, computed here from the definition of
/// `spec/FORMAT.md` 8.3 and not through `strata_format::files::FileDigest`, so
/// that the vectors check that code: `data` gives the file's data ranges
/// (offset, bytes) in increasing order, not touching each other; everything
/// else up to `size` is holes.
pub fn file_digest(data: &[(u64, &[u8])], size: u64) -> [u8; 16] {
    let mut items = Vec::new();
    let mut at = 0u64;
    let mut item = |offset: u64, length: u64, identity: [u8; 32]| {
        items.extend_from_slice(&offset.to_le_bytes());
        items.extend_from_slice(&length.to_le_bytes());
        items.extend_from_slice(&identity);
    };
    for &(offset, bytes) in data.iter().filter(|(_, bytes)| !bytes.is_empty()) {
        assert!(offset > at || (offset == 0 && at == 0), "data ranges apart and in order");
        if offset > at {
            item(at, offset - at, [0; 32]);
        }
        item(offset, bytes.len() as u64, *blake3::hash(bytes).as_bytes());
        at = offset + bytes.len() as u64;
    }
    if size > at {
        item(at, size - at, [0; 32]);
    }
    blake3::hash(&items).as_bytes()[..16].try_into().expect("16 bytes")
}

/// [`file_digest`] as the manifests give it: lowercase hex.
pub fn file_digest_hex(data: &[(u64, &[u8])], size: u64) -> String {
    file_digest(data, size).iter().map(|b| format!("{b:02x}")).collect()
}

/// The writer options of every vector: fixed UUID and time, one thread, and
/// tables stored plain, so that a vector's defect can be made by patching a
/// table's bytes in place. The vectors of compressed tables (5.2) compress
/// them on purpose. Large files are cut in windows aligned to file offset 0,
/// so that a file's pieces can be the chunks of an image (`image-and-tree`);
/// `tree-content-cuts` cuts them where their content says.
pub fn vector_options(chunk_size: usize) -> WriterOptions {
    let mut options = WriterOptions::new(UUID, CREATED_NS);
    options.chunk_size = chunk_size as u32;
    options.threads = 1;
    options.compress_tables = false;
    options.file_cuts = strata_writer::FileCuts::Windows;
    options
}

pub fn normalise(problems: Vec<Expected>) -> Vec<Expected> {
    let mut out: Vec<Expected> = Vec::new();
    for p in problems {
        match out.iter_mut().find(|q| q.class == p.class && q.offset == p.offset) {
            Some(q) => q.affects.extend(p.affects),
            None => out.push(p),
        }
    }
    for p in &mut out {
        let mut ranges: Vec<Affects> = p.affects.drain(..).filter(|a| a.start < a.end).collect();
        ranges.sort();
        for a in ranges {
            match p.affects.last_mut() {
                Some(last) if last.section == a.section && last.path == a.path && a.start <= last.end => {
                    last.end = last.end.max(a.end);
                }
                _ => p.affects.push(a),
            }
        }
    }
    out.sort_by_key(|p| (p.offset, p.class));
    out
}

#[derive(Clone, Debug)]
pub struct Vector {
    pub name: &'static str,
    pub description: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expectation,
}

/// Writes `images` with the reference writer.
pub fn build(images: &[ImageModel]) -> Vec<u8> {
    build_chunked(images, CHUNK)
}

/// Writes `images` with the reference writer and a chunk size of `chunk_size`.
fn build_chunked(images: &[ImageModel], chunk_size: usize) -> Vec<u8> {
    let options = crate::vector_options(chunk_size);
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("vector options are valid");
    for image in images {
        let (bytes, holes) = image.materialise();
        let mut source = ModelSource { bytes, holes, position: 0, size_known: image.size_known };
        writer.add_image(image.name, &mut source, &NoProgress).expect("writing to memory cannot fail");
    }
    writer.finish().expect("writing to memory cannot fail").0
}

/// A record found in a valid archive.
#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub offset: usize,
    pub record_type: u16,
    pub body_start: usize,
    pub body_end: usize,
}

/// The records of a valid archive, front to back.
pub fn records(bytes: &[u8]) -> Vec<Rec> {
    let header = ArchiveHeader::decode(bytes[..128].try_into().expect("a vector has a header"));
    let mut at = header.header_length as usize;
    let mut out = Vec::new();
    while at + 32 <= bytes.len() {
        let head = RecordHeader::decode(bytes[at..at + 32].try_into().expect("32 bytes"));
        let body_end = at + 32 + head.body_length as usize;
        out.push(Rec { offset: at, record_type: head.record_type, body_start: at + 32, body_end });
        at = body_end;
    }
    out
}

pub(crate) fn of_type(bytes: &[u8], t: RecordType) -> Vec<Rec> {
    records(bytes).into_iter().filter(|r| r.record_type == t.code()).collect()
}

/// Recomputes a record's body CRC and header CRC after its bytes were changed.
pub fn refix_record(bytes: &mut [u8], offset: usize) {
    let mut head = RecordHeader::decode(bytes[offset..offset + 32].try_into().expect("32 bytes"));
    let body = &bytes[offset + 32..offset + 32 + head.body_length as usize];
    head.body_crc = strata_format::crc32c(body);
    refix_record_header(bytes, offset, head);
}

/// Writes a record header with its header CRC recomputed (the body CRC kept).
fn refix_record_header(bytes: &mut [u8], offset: usize, mut head: RecordHeader) {
    head.header_crc = RecordHeader::compute_crc(&head.encode());
    bytes[offset..offset + 32].copy_from_slice(&head.encode());
}

fn edit_record_header(bytes: &mut [u8], offset: usize, edit: impl FnOnce(&mut RecordHeader)) {
    let mut head = RecordHeader::decode(bytes[offset..offset + 32].try_into().expect("32 bytes"));
    edit(&mut head);
    refix_record_header(bytes, offset, head);
}

/// Edits the header and recomputes its CRC.
fn edit_header(bytes: &mut [u8], edit: impl FnOnce(&mut ArchiveHeader)) {
    let mut header = ArchiveHeader::decode(bytes[..128].try_into().expect("128 bytes"));
    edit(&mut header);
    header.header_crc = 0;
    let fixed = header.encode();
    header.header_crc = ArchiveHeader::compute_crc(&fixed, &[]);
    bytes[..128].copy_from_slice(&header.encode());
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn add_u64(bytes: &mut [u8], at: usize, delta: i64) {
    let value = get_u64(bytes, at).wrapping_add_signed(delta);
    put_u64(bytes, at, value);
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Applies `edit` to extent number `n` of the archive's first image, in both the
/// `IMAGE_EXTENTS` record that holds it and the `IMAGE_INDEX`, fixing both CRCs.
fn edit_extent(bytes: &mut [u8], n: usize, edit: impl Fn(&mut [u8])) {
    let mut seen = 0usize;
    for rec in of_type(bytes, RecordType::ImageExtents) {
        let count = get_u64(bytes, rec.body_start + 8) as usize;
        if n < seen + count {
            let at = rec.body_start + 16 + (n - seen) * EXTENT;
            edit(&mut bytes[at..at + EXTENT]);
            refix_record(bytes, rec.offset);
            break;
        }
        seen += count;
    }
    let index = of_type(bytes, RecordType::ImageIndex)[0];
    let at = index.body_start + 16 + n * EXTENT;
    edit(&mut bytes[at..at + EXTENT]);
    refix_record(bytes, index.offset);
}

/// The n-th extent of the first image, from its `IMAGE_INDEX`: (offset, length, chunk_ref).
fn extent(bytes: &[u8], n: usize) -> (u64, u64, u64) {
    let e = image_extent_rows(bytes)[n];
    (e.image_offset, e.length, e.chunk_ref)
}

/// The extents of the first image, from its `IMAGE_INDEX` (decoded when
/// it is stored compressed).
pub(crate) fn image_extent_rows(bytes: &[u8]) -> Vec<strata_format::Extent> {
    let index = of_type(bytes, RecordType::ImageIndex)[0];
    let flags = u16::from_le_bytes([bytes[index.offset + 6], bytes[index.offset + 7]]);
    let stored = bytes[index.body_start..index.body_end].to_vec();
    let body = strata_reader::decode_table_body(RecordType::ImageIndex, flags, stored, 1 << 30)
        .expect("the vector's IMAGE_INDEX decodes");
    let count = get_u64(&body, 8) as usize;
    strata_format::image::extents_of(&body[16..16 + count * EXTENT]).collect()
}

/// The first chunk record with the given encoding.
fn chunk_with_encoding(bytes: &[u8], encoding: u8) -> Rec {
    *of_type(bytes, RecordType::Chunk)
        .iter()
        .find(|r| bytes[r.body_start + 36] == encoding)
        .expect("the base vector has chunks of both encodings")
}

fn small_image() -> ImageModel {
    ImageModel::new(
        "disk",
        vec![
            Segment::Text(10_000),
            Segment::Zero(8_192),
            Segment::Random(7, 10_000),
            Segment::Repeat(0xAB, 8_000),
            Segment::Text(13_808),
        ],
    )
}

fn valid(name: &'static str, description: &'static str, images: Vec<ImageModel>) -> Vector {
    Vector {
        name,
        description,
        bytes: build(&images),
        expect: Expectation::Valid(images.iter().map(|i| i.expectation().to_json()).collect()),
    }
}

/// The small image with one defect: `mutate` makes it and says, from the model
/// and the archive's layout, every problem `verify` must report.
fn invalid(
    name: &'static str,
    description: &'static str,
    class: ErrorClass,
    mutate: impl FnOnce(&mut Vec<u8>) -> Vec<Expected>,
) -> Vector {
    let mut bytes = build(&[small_image()]);
    let problems = normalise(mutate(&mut bytes));
    assert!(problems.iter().any(|p| p.class == class), "{name}: the defect's class is among its problems");
    Vector { name, description, bytes, expect: Expectation::Invalid { class, problems, refused: Vec::new() } }
}

/// The extents of the first image, from its `IMAGE_INDEX`: (offset, length, chunk_ref).
pub(crate) fn image_extents(bytes: &[u8]) -> Vec<(u64, u64, u64)> {
    image_extent_rows(bytes).iter().map(|e| (e.image_offset, e.length, e.chunk_ref)).collect()
}

/// The image ranges of the small image ("disk") whose data extents refer to a
/// chunk at an offset `refers` accepts: what losing those chunks costs.
pub(crate) fn disk_ranges(bytes: &[u8], refers: impl Fn(u64) -> bool) -> Vec<Affects> {
    image_extents(bytes)
        .into_iter()
        .filter(|&(_, _, chunk_ref)| chunk_ref >= 128 && refers(chunk_ref))
        .map(|(offset, length, _)| image_range("disk", offset, offset + length))
        .collect()
}

/// The small image's size, from its model.
fn disk_size() -> u64 {
    small_image().expectation().logical_size
}

/// The problems of a run of `CHUNK` records that an ancillary record inserted
/// at `at` cuts (FORMAT.md 7.2, "An ancillary record inside a run"): every
/// forward reference of the extent record `owner` to a `CHUNK` record after it
/// is `dangling-reference` there, affecting what `target` says the extents
/// that refer to it hold; every `CHUNK` record after it, up to the next record
/// of another type, is `record-malformed`. `bytes` is the archive after the
/// insertion.
pub(crate) fn cut_run(bytes: &[u8], owner: usize, at: usize, refs: &[(u64, Affects)]) -> Vec<Expected> {
    let mut out = Vec::new();
    for (chunk_ref, affected) in refs {
        if *chunk_ref as usize > at {
            out.push(problem(ErrorClass::DanglingReference, *chunk_ref as usize, vec![affected.clone()]));
        }
    }
    let all = records(bytes);
    let ancillary = all.iter().position(|r| r.offset == at).expect("the ancillary record is there");
    assert!(all[..ancillary].iter().any(|r| r.offset == owner), "the extent record comes before it");
    for rec in all[ancillary + 1..].iter().take_while(|r| r.record_type == RecordType::Chunk.code()) {
        out.push(problem(ErrorClass::RecordMalformed, rec.offset, Vec::new()));
    }
    out
}

/// Every vector, in manifest order.
pub fn all() -> Vec<Vector> {
    let mut vectors = vec![
        valid("empty-archive", "an archive with no section", vec![]),
        valid("image-empty", "one image of size 0", vec![ImageModel::new("empty", vec![])]),
        valid(
            "image-small",
            "one image, size not a multiple of the chunk size; text (zstd), random (raw), zero and repeated windows",
            vec![small_image()],
        ),
        valid(
            "image-sparse",
            "leading and inner holes never read, a short last window",
            vec![ImageModel::new(
                "sparse",
                vec![Segment::Hole(16_384), Segment::Text(4_096), Segment::Hole(12_288), Segment::Text(100)],
            )],
        ),
        valid(
            "image-trailing-zeros",
            "the image ends with a zero extent that ends off a chunk boundary",
            vec![ImageModel::new("disk", vec![Segment::Text(5_000), Segment::Zero(20_000)])],
        ),
        valid(
            "image-large-hole",
            "a 64 MiB hole stored as one zero extent, then a short data window",
            vec![ImageModel::new("disk", vec![Segment::Hole(64 << 20), Segment::Text(100)])],
        ),
        valid(
            "two-images-dedup",
            "two images sharing chunks: the second refers back to chunks of the first",
            vec![
                ImageModel::new(
                    "disk",
                    vec![Segment::Text(8_192), Segment::Repeat(1, 8_192), Segment::Random(3, 8_192)],
                ),
                ImageModel::new("part1", vec![Segment::Repeat(1, 8_192), Segment::Random(3, 8_192)]),
            ],
        ),
        {
            // The largest chunk, whose frame declares the largest window: the writer
            // gives a chunk a window covering it, and a single-segment frame's
            // window is its content size. Text, then one repeated byte, keep the
            // vector small.
            let image =
                ImageModel::new("disk", vec![Segment::Text(64 << 10), Segment::Repeat(7, (16 << 20) - (64 << 10))]);
            Vector {
                name: "image-chunk-16m",
                description: "one image in one 16 MiB chunk (the largest raw_length), a zstd frame with a 16 MiB Window_Size (the limit): readers must decode it",
                bytes: build_chunked(std::slice::from_ref(&image), 16 << 20),
                expect: Expectation::Valid(vec![image.expectation().to_json()]),
            }
        },
        valid(
            "image-unknown-size",
            "an image read from a pipe: IMAGE_BEGIN gives the unknown size, IMAGE_END the real one",
            vec![ImageModel { size_known: false, ..small_image() }],
        ),
    ];

    let mut compat = valid(
        "feature-compatible-unknown",
        "unknown compatible (bit 7) and autoclear (bit 3) feature bits: readers ignore them",
        vec![small_image()],
    );
    edit_header(&mut compat.bytes, |h| {
        h.compatible_features = 1 << 7;
        h.autoclear_features = 1 << 3;
    });
    vectors.push(compat);

    let mut minor =
        valid("version-minor-7", "format version 1.7: readers accept any minor version", vec![small_image()]);
    edit_header(&mut minor.bytes, |h| h.version_minor = 7);
    vectors.push(minor);

    let mut ancillary = valid(
        "ancillary-record",
        "an unknown record type marked ANCILLARY before the ARCHIVE_INDEX: readers skip it",
        vec![small_image()],
    );
    insert_ancillary(&mut ancillary.bytes);
    vectors.push(ancillary);

    vectors.extend(used_blocks::valid_vectors());
    vectors.extend(partial::vectors());
    vectors.extend(chain::vectors());
    vectors.extend(invalid_vectors());
    vectors.extend(trees::vectors());
    vectors
}

/// An unknown record type marked `ANCILLARY`, header and body, as a future
/// writer might add one (a comment).
/// A zstd frame of `content` in raw blocks, with `Frame_Content_Size` as an
/// 8-byte field saying `declared` (or absent, with a 1 MiB window): frames
/// the reference writer never makes, for the rules of FORMAT.md 5.2.
fn raw_block_frame(content: &[u8], declared: Option<u64>) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    match declared {
        // Frame_Content_Size_Flag 3 (8 bytes), Single_Segment_Flag.
        Some(size) => {
            frame.push(0xe0);
            frame.extend_from_slice(&size.to_le_bytes());
        }
        // No content size: a window descriptor instead (2^(10+10) bytes).
        None => frame.extend_from_slice(&[0x00, 10 << 3]),
    }
    let blocks: Vec<&[u8]> = content.chunks(128 << 10).collect();
    for (i, block) in blocks.iter().enumerate() {
        let last = u32::from(i + 1 == blocks.len());
        let header = (block.len() as u32) << 3 | last;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(block);
    }
    frame
}

/// Replaces the body of the archive's `IMAGE_INDEX` (the last table before
/// the `ARCHIVE_INDEX`) with `stored`, flags `flags`: the `ARCHIVE_INDEX` and
/// the trailer move, and the trailer says where.
fn replace_image_index(bytes: &mut Vec<u8>, flags: u16, stored: &[u8]) {
    let index = of_type(bytes, RecordType::ImageIndex)[0];
    let shift = stored.len() as i64 - (index.body_end - index.body_start) as i64;
    bytes.splice(index.body_start..index.body_end, stored.iter().copied());
    edit_record_header(bytes, index.offset, |h| {
        h.flags = flags;
        h.body_length = stored.len() as u64;
        h.body_crc = strata_format::crc32c(stored);
    });
    let trailer = of_type(bytes, RecordType::Trailer)[0];
    add_u64(bytes, trailer.body_start, shift);
    add_u64(bytes, trailer.body_start + 8, shift);
    refix_record(bytes, trailer.offset);
}

/// Archives whose tables are compressed (FORMAT.md 5.2): valid, and each rule
/// of 5.2 broken once in the `IMAGE_INDEX`, whose body alone is then unusable.
fn compressed_table_vectors() -> Vec<Vector> {
    use ErrorClass::*;
    let image = small_image();
    let mut options = vector_options(CHUNK);
    options.compress_tables = true;
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("vector options are valid");
    let (content, holes) = image.materialise();
    let mut source = ModelSource { bytes: content, holes, position: 0, size_known: image.size_known };
    writer.add_image(image.name, &mut source, &NoProgress).expect("writing to memory cannot fail");
    let base = writer.finish().expect("writing to memory cannot fail").0;
    let compressed: Vec<Rec> = records(&base)
        .into_iter()
        .filter(|r| {
            let flags = RecordHeader::decode(base[r.offset..r.offset + 32].try_into().expect("32 bytes")).flags;
            flags & RecordFlags::ZSTD != 0
        })
        .collect();
    assert!(
        compressed.iter().any(|r| r.record_type == RecordType::ImageIndex.code()),
        "the writer compresses the IMAGE_INDEX"
    );
    let index = of_type(&base, RecordType::ImageIndex)[0];
    let plain = zstd::bulk::decompress(&base[index.body_start..index.body_end], 1 << 20).expect("a valid frame");
    let mut v = vec![Vector {
        name: "table-zstd-image",
        description:
            "the image-small archive with its extent map and index stored compressed (flag ZSTD, FORMAT.md 5.2)",
        bytes: base.clone(),
        expect: Expectation::Valid(vec![image.expectation().to_json()]),
    }];
    let frame = zstd::bulk::compress(&plain, 3).expect("compressing in memory");
    let mut cases: Vec<(&'static str, &'static str, ErrorClass, Vec<u8>)> = vec![
        (
            "table-zstd-no-content-size",
            "a compressed IMAGE_INDEX whose frame header has no Frame_Content_Size (rule 1)",
            RecordMalformed,
            raw_block_frame(&plain, None),
        ),
        (
            "table-zstd-limit",
            "a compressed IMAGE_INDEX whose frame declares 1 TiB of content, past any reader's limit for tables (rule 2)",
            LimitExceeded,
            raw_block_frame(&plain, Some(1 << 40)),
        ),
        (
            "table-zstd-not-smaller",
            "a compressed IMAGE_INDEX stored in raw blocks: longer than the body it decodes to (rule 3)",
            RecordMalformed,
            raw_block_frame(&plain, Some(plain.len() as u64)),
        ),
        (
            "table-zstd-trailing-byte",
            "a compressed IMAGE_INDEX with one byte after its frame (rule 5)",
            RecordMalformed,
            [frame.clone(), vec![0]].concat(),
        ),
    ];
    // Frame_Content_Size one more than the frame holds: decoding gives fewer
    // bytes than declared (rule 5). The field's place follows the descriptor.
    let mut lie = frame.clone();
    let descriptor = lie[4];
    let (single, fcs_len) = (descriptor & 0x20 != 0, [0usize, 2, 4, 8][usize::from(descriptor >> 6)]);
    let fcs_len = if fcs_len == 0 && single { 1 } else { fcs_len };
    let at = 5 + usize::from(!single) + [0, 1, 2, 4][usize::from(descriptor & 3)];
    let mut field = [0u8; 8];
    field[..fcs_len].copy_from_slice(&lie[at..at + fcs_len]);
    let declared = u64::from_le_bytes(field) + if fcs_len == 2 { 256 } else { 0 };
    assert_eq!(declared, plain.len() as u64, "the frame declares the body's length");
    let more = declared + 1 - if fcs_len == 2 { 256 } else { 0 };
    lie[at..at + fcs_len].copy_from_slice(&more.to_le_bytes()[..fcs_len]);
    cases.push((
        "table-zstd-size-lie",
        "a compressed IMAGE_INDEX whose Frame_Content_Size is one more than its frame decodes to (rule 5)",
        RecordMalformed,
        lie,
    ));
    for (name, description, class, stored) in cases {
        let mut bytes = base.clone();
        replace_image_index(&mut bytes, RecordFlags::ZSTD, &stored);
        let offset = of_type(&bytes, RecordType::ImageIndex)[0].offset;
        let problems = normalise(vec![problem(class, offset, Vec::new())]);
        v.push(Vector {
            name,
            description,
            bytes,
            expect: Expectation::Invalid { class, problems, refused: Vec::new() },
        });
    }
    v
}

pub fn ancillary_record() -> Vec<u8> {
    let body = b"a comment a reader may skip".to_vec();
    let head = RecordHeader::for_body(
        0x7A01,
        strata_format::RecordFlags::ANCILLARY,
        UUID[..8].try_into().expect("8 bytes"),
        body.len() as u64,
        strata_format::crc32c(&body),
    );
    let mut record = head.encode().to_vec();
    record.extend_from_slice(&body);
    record
}

/// Inserts an ancillary record before the `ARCHIVE_INDEX`, fixing the trailer.
fn insert_ancillary(bytes: &mut Vec<u8>) {
    let index = of_type(bytes, RecordType::ArchiveIndex)[0];
    insert_record(bytes, index.offset, &ancillary_record());
}

/// The record offset of the `CHUNK` record number `n` (from 0) of the run that
/// follows the first extent record of type `extents`, checked to be one that
/// record refers forward to: an ancillary record inserted there stands inside
/// the run and leaves that reference unanswered (FORMAT.md 7.2 rule 6).
pub fn inside_chunk_run(bytes: &[u8], extents: RecordType, n: usize) -> usize {
    let all = records(bytes);
    let first = all.iter().position(|r| r.record_type == extents.code()).expect("the base vector has extent records");
    let owner = all[first];
    let chunk = all[first + 1 + n];
    assert!(
        all[first + 1..=first + 1 + n].iter().all(|r| r.record_type == RecordType::Chunk.code()),
        "the extent record is followed by at least {} CHUNK records",
        n + 1
    );
    let refers = if extents == RecordType::ImageExtents {
        let count = get_u64(bytes, owner.body_start + 8) as usize;
        (0..count).any(|i| get_u64(bytes, owner.body_start + 16 + i * EXTENT + 16) == chunk.offset as u64)
    } else {
        let parsed = files::parse_file_extents(&bytes[owner.body_start..owner.body_end]).expect("valid extents");
        parsed.extents.iter().any(|e| e.chunk_ref == chunk.offset as u64)
    };
    assert!(refers, "the extent record refers forward to the CHUNK record at {}", chunk.offset);
    chunk.offset
}

/// Inserts `record` (header and body) at record offset `at` of a valid archive
/// and moves every record offset the archive holds at or past `at` by the
/// record's length: chunk references of image and file extents (in extent
/// records, entries and the `IMAGE_INDEX`), the `begin_offset` of end records,
/// the offsets of `FILES_DIR` and `FILES_INDEX` tables, of the `ARCHIVE_INDEX`
/// and of the trailer, whose length and record count grow too. Every record it
/// changes gets its CRCs fixed, so the insertion is the only change a reader meets.
pub fn insert_record(bytes: &mut Vec<u8>, at: usize, record: &[u8]) {
    let shift = record.len() as u64;
    let moved = |value: u64| if value >= at as u64 { value + shift } else { value };
    let fix = |bytes: &mut [u8], field: usize| {
        let value = get_u64(bytes, field);
        put_u64(bytes, field, moved(value));
    };
    for rec in records(bytes) {
        let body = rec.body_start;
        let count_at = |bytes: &[u8], at: usize| get_u64(bytes, at) as usize;
        let changed = match RecordType::from_code(rec.record_type) {
            Some(RecordType::ImageExtents | RecordType::ImageIndex) => {
                for n in 0..count_at(bytes, body + 8) {
                    let chunk_ref = body + 16 + n * EXTENT + 16;
                    if get_u64(bytes, chunk_ref) >= 128 {
                        fix(bytes, chunk_ref);
                    }
                }
                true
            }
            Some(RecordType::FilesExtents) => {
                let parsed = files::parse_file_extents(&bytes[body..rec.body_end]).expect("valid extents");
                let extents: Vec<files::FileExtent> =
                    parsed.extents.iter().map(|e| files::FileExtent { chunk_ref: moved(e.chunk_ref), ..*e }).collect();
                let encoded = files::encode_file_extents(parsed.head.section_id, parsed.head.first_index, &extents);
                bytes[body..rec.body_end].copy_from_slice(&encoded);
                true
            }
            Some(RecordType::FilesEntries) => {
                // The extent list: the FILES_EXTENTS records holding the group's extents.
                let list_count = u32::from_le_bytes(bytes[body + 32..body + 36].try_into().expect("4 bytes")) as usize;
                for n in 0..list_count {
                    // Stored column by column: the records' offsets first, plain.
                    fix(bytes, body + 56 + n * 8);
                }
                true
            }
            Some(RecordType::ImageEnd | RecordType::FilesEnd) => {
                fix(bytes, body + 56);
                true
            }
            Some(RecordType::FilesDir) => {
                let mut table = files::GroupDir::parse(&bytes[body..rec.body_end]).expect("a valid FILES_DIR");
                table.entries_record = moved(table.entries_record);
                for (fence, _) in &mut table.fences {
                    fence.entries_record = moved(fence.entries_record);
                    if fence.dir_record != 0 {
                        fence.dir_record = moved(fence.dir_record);
                    }
                }
                bytes[body..rec.body_end].copy_from_slice(&table.encode());
                true
            }
            Some(RecordType::FilesIndex) => {
                let (head, mut rows) =
                    files::parse_files_index(&bytes[body..rec.body_end]).expect("a valid FILES_INDEX");
                for row in &mut rows {
                    row.entries_record = moved(row.entries_record);
                    if row.dir_record != 0 {
                        row.dir_record = moved(row.dir_record);
                    }
                }
                bytes[body..rec.body_end].copy_from_slice(&files::encode_files_index(head.section_id, &rows));
                true
            }
            Some(RecordType::ArchiveIndex) => {
                let count = u32::from_le_bytes(bytes[body..body + 4].try_into().expect("4 bytes")) as usize;
                for n in 0..count {
                    let entry = body + 8 + n * 32;
                    for field in [8, 16, 24] {
                        fix(bytes, entry + field);
                    }
                }
                true
            }
            Some(RecordType::Trailer) => {
                fix(bytes, body);
                add_u64(bytes, body + 8, shift as i64);
                add_u64(bytes, body + 16, 1);
                true
            }
            _ => false,
        };
        if changed {
            refix_record(bytes, rec.offset);
        }
    }
    bytes.splice(at..at, record.iter().copied());
}

fn invalid_vectors() -> Vec<Vector> {
    use ErrorClass::*;
    let mut v = Vec::new();
    // Nothing of Strata: exactly one problem, at offset 0 (FORMAT.md section 12).
    let not_strata = |name, description, bytes| Vector {
        name,
        description,
        bytes,
        expect: Expectation::Invalid {
            class: NotStrata,
            problems: vec![problem(NotStrata, 0, Vec::new())],
            refused: Vec::new(),
        },
    };
    v.push(not_strata(
        "not-strata-gzip",
        "a gzip stream",
        vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ));
    v.push(not_strata("empty-file", "zero bytes", Vec::new()));
    // A header problem is at offset 0 (FORMAT.md section 3); the records that
    // follow it are sound.
    let at_header = |class| vec![problem(class, 0, Vec::new())];
    v.push(invalid("header-crc", "one byte of the header's writer field changed", BadHeader, |b| {
        b[70] ^= 0x20;
        at_header(BadHeader)
    }));
    v.push(invalid("header-length-invalid", "header_length 100 (CRC fixed)", BadHeader, |b| {
        edit_header(b, |h| h.header_length = 100);
        at_header(BadHeader)
    }));
    v.push(invalid("version-major-2", "format version 2.0 (CRC fixed)", UnsupportedVersion, |b| {
        edit_header(b, |h| h.version_major = 2);
        at_header(UnsupportedVersion)
    }));
    v.push(invalid(
        "feature-encryption",
        "incompatible bit 0 (\"encryption\", reserved) set",
        UnsupportedFeature,
        |b| {
            edit_header(b, |h| h.incompatible_features = 1);
            at_header(UnsupportedFeature)
        },
    ));
    v.push(invalid(
        "feature-incremental",
        "incompatible bit 1 (\"incremental\") set, but the first record is not a CHAIN and the ARCHIVE_INDEX has no chain fields (FORMAT.md 15, 9.2)",
        RecordMalformed,
        |b| {
            edit_header(b, |h| h.incompatible_features = 1 << 1);
            let first = records(b)[0].offset;
            let index = of_type(b, RecordType::ArchiveIndex)[0].offset;
            vec![problem(RecordMalformed, first, Vec::new()), problem(RecordMalformed, index, Vec::new())]
        },
    ));
    v.push(invalid("feature-unknown-incompatible", "unknown incompatible bit 40 set", UnsupportedFeature, |b| {
        edit_header(b, |h| h.incompatible_features = 1 << 40);
        at_header(UnsupportedFeature)
    }));
    v.push(invalid(
        "record-header-crc",
        "a byte of the first IMAGE_EXTENTS record header changed",
        RecordChecksum,
        |b| {
            let all = of_type(b, RecordType::ImageExtents);
            assert_eq!(all.len(), 1, "one IMAGE_EXTENTS record holds the whole map");
            let rec = all[0];
            b[rec.offset + 16] ^= 0x01;
            // The record is lost in a damaged span (up to the next record): its
            // extents leave a gap in the map, up to the image's size (section 11).
            vec![problem(RecordChecksum, rec.offset, vec![image_range("disk", 0, disk_size())])]
        },
    ));
    // A damaged chunk costs the ranges of the extents that refer to it.
    let chunk_problem =
        |class, b: &[u8], rec: Rec| vec![problem(class, rec.offset, disk_ranges(b, |r| r == rec.offset as u64))];
    v.push(invalid("chunk-body-crc", "a stored byte of a zstd chunk changed", RecordChecksum, |b| {
        let rec = chunk_with_encoding(b, 1);
        b[rec.body_start + 50] ^= 0x01;
        chunk_problem(RecordChecksum, b, rec)
    }));
    v.push(invalid(
        "chunk-blake3-mismatch",
        "a byte of a raw chunk changed, CRC fixed: only BLAKE3 catches it",
        ChunkCorrupt,
        |b| {
            let rec = chunk_with_encoding(b, 0);
            b[rec.body_start + 100] ^= 0x01;
            refix_record(b, rec.offset);
            chunk_problem(ChunkCorrupt, b, rec)
        },
    ));
    v.push(invalid(
        "chunk-zstd-size-lie",
        "a zstd chunk declares one raw byte fewer than its frame holds (CRC fixed)",
        ChunkCorrupt,
        |b| {
            let rec = chunk_with_encoding(b, 1);
            let at = rec.body_start + 32;
            let raw = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
            b[at..at + 4].copy_from_slice(&(raw - 1).to_le_bytes());
            refix_record(b, rec.offset);
            chunk_problem(ChunkCorrupt, b, rec)
        },
    ));
    v.push(invalid("chunk-encoding-unknown", "chunk encoding 9 (CRC fixed)", RecordMalformed, |b| {
        let rec = chunk_with_encoding(b, 1);
        b[rec.body_start + 36] = 9;
        refix_record(b, rec.offset);
        chunk_problem(RecordMalformed, b, rec)
    }));
    v.push(invalid(
        "chunk-raw-length-limit",
        "a chunk declares 16 MiB + 1 raw bytes (CRC fixed)",
        LimitExceeded,
        |b| {
            let rec = chunk_with_encoding(b, 1);
            let at = rec.body_start + 32;
            b[at..at + 4].copy_from_slice(&((1u32 << 24) + 1).to_le_bytes());
            refix_record(b, rec.offset);
            chunk_problem(LimitExceeded, b, rec)
        },
    ));
    let extents_record = |b: &[u8]| of_type(b, RecordType::ImageExtents)[0].offset;
    v.push(invalid(
        "extent-dangling",
        "the first data extent refers to the IMAGE_BEGIN record (both tables, CRCs fixed)",
        DanglingReference,
        |b| {
            let begin = of_type(b, RecordType::ImageBegin)[0].offset as u64;
            edit_extent(b, 0, |e| e[16..24].copy_from_slice(&begin.to_le_bytes()));
            // At the offset it holds (7.2 rule 5). The chunk it referred to is
            // left unreferenced in the run, which breaks no rule; the map digest
            // is a summary check, and the problem at 128 comes before it.
            let (offset, length, _) = extent(b, 0);
            vec![problem(DanglingReference, begin as usize, vec![image_range("disk", offset, offset + length)])]
        },
    ));
    v.push(invalid(
        "extent-gap",
        "the second extent starts one chunk late, leaving a gap (both tables, CRCs fixed)",
        ExtentMap,
        |b| {
            let (offset, _, _) = extent(b, 1);
            edit_extent(b, 1, |e| e[0..8].copy_from_slice(&(offset + CHUNK as u64).to_le_bytes()));
            // Extent 1 starts elsewhere than extent 0 ended, and extent 2 elsewhere
            // than extent 1 (moved) ended: each affects its own range.
            let moved = extent(b, 1);
            let next = extent(b, 2);
            vec![problem(
                ExtentMap,
                extents_record(b),
                vec![image_range("disk", moved.0, moved.0 + moved.1), image_range("disk", next.0, next.0 + next.1)],
            )]
        },
    ));
    v.push(invalid(
        "extent-reserved-kind",
        "an extent's chunk_ref is 5, a reserved kind (both tables, CRCs fixed)",
        RecordMalformed,
        |b| {
            edit_extent(b, 0, |e| e[16..24].copy_from_slice(&5u64.to_le_bytes()));
            let (offset, length, _) = extent(b, 0);
            vec![problem(RecordMalformed, extents_record(b), vec![image_range("disk", offset, offset + length)])]
        },
    ));
    v.push(invalid("extent-1tib", "a data extent claims 1 TiB (both tables, CRCs fixed)", ExtentMap, |b| {
        edit_extent(b, 0, |e| e[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes()));
        // Longer than a chunk and past the size IMAGE_BEGIN declared (rules 3
        // and 4), and extent 1 no longer starts where it ends (rule 1), at the
        // extent record; its length is not its chunk's (rule 5), at the chunk.
        let (offset, length, chunk_ref) = extent(b, 0);
        let (next, next_length, _) = extent(b, 1);
        vec![
            problem(
                ExtentMap,
                extents_record(b),
                vec![image_range("disk", offset, offset + length), image_range("disk", next, next + next_length)],
            ),
            problem(ExtentMap, chunk_ref as usize, vec![image_range("disk", offset, offset + length)]),
        ]
    }));
    v.push(invalid("truncated-half", "the archive cut at half its length", Truncated, |b| {
        let half = b.len() / 2;
        let cut =
            *records(b).iter().find(|r| r.offset < half && half < r.body_end).expect("the cut falls inside a record");
        assert_eq!(cut.record_type, RecordType::Chunk.code(), "the cut falls inside a chunk");
        assert!(half - cut.offset >= 32, "the cut record's header is whole");
        // Its body runs past the end: a damaged span to the end of the file,
        // which holds every chunk from it on (section 11); no other problem.
        let lost = disk_ranges(b, |r| r >= cut.offset as u64);
        b.truncate(half);
        vec![problem(Truncated, cut.offset, lost)]
    }));
    v.push(invalid("truncated-trailer", "the archive without its last 64 bytes", Truncated, |b| {
        b.truncate(b.len() - TRAILER_RECORD_SIZE as usize);
        // The file ends between two records, before a trailer: at its size.
        vec![problem(Truncated, b.len(), Vec::new())]
    }));
    let trailer_at = |b: &[u8]| b.len() - TRAILER_RECORD_SIZE as usize;
    v.push(invalid(
        "trailer-index-offset",
        "the trailer points at the IMAGE_INDEX instead of the ARCHIVE_INDEX (CRC fixed)",
        IndexMismatch,
        |b| {
            let image_index = of_type(b, RecordType::ImageIndex)[0].offset as u64;
            let trailer = trailer_at(b);
            put_u64(b, trailer + 32, image_index);
            refix_record(b, trailer);
            vec![problem(IndexMismatch, trailer, Vec::new())]
        },
    ));
    v.push(invalid("trailer-record-count", "the trailer counts one record too many (CRC fixed)", IndexMismatch, |b| {
        let trailer = trailer_at(b);
        add_u64(b, trailer + 48, 1);
        refix_record(b, trailer);
        vec![problem(IndexMismatch, trailer, Vec::new())]
    }));
    v.push(invalid("image-end-totals", "IMAGE_END claims one chunk fewer (CRC fixed)", IndexMismatch, |b| {
        let end = of_type(b, RecordType::ImageEnd)[0];
        add_u64(b, end.body_start + 40, -1);
        refix_record(b, end.offset);
        // A summary check at the IMAGE_END; those after it (tables, index,
        // trailer) have a problem before them and are not made.
        vec![problem(IndexMismatch, end.offset, Vec::new())]
    }));
    v.push(invalid(
        "index-extents-differ",
        "the IMAGE_INDEX swaps the chunks of two data extents; the IMAGE_EXTENTS records do not",
        IndexMismatch,
        |b| {
            let index = of_type(b, RecordType::ImageIndex)[0];
            // Extents 0 and 1 hold the first two (different, full) text windows.
            let (a, c) = (index.body_start + 16 + 16, index.body_start + 16 + EXTENT + 16);
            let (ra, rc) = (get_u64(b, a), get_u64(b, c));
            put_u64(b, a, rc);
            put_u64(b, c, ra);
            refix_record(b, index.offset);
            vec![problem(IndexMismatch, index.offset, Vec::new())]
        },
    ));
    v.push(invalid(
        "index-count-lie",
        "the IMAGE_INDEX declares 2^32 extents in a body that holds far fewer (CRC fixed)",
        RecordMalformed,
        |b| {
            let index = of_type(b, RecordType::ImageIndex)[0];
            put_u64(b, index.body_start + 8, 1 << 32);
            refix_record(b, index.offset);
            vec![problem(RecordMalformed, index.offset, Vec::new())]
        },
    ));
    v.push(invalid(
        "body-length-limit",
        "an IMAGE_EXTENTS header declares a 1 TiB body (header CRC fixed)",
        LimitExceeded,
        |b| {
            let all = of_type(b, RecordType::ImageExtents);
            assert_eq!(all.len(), 1, "one IMAGE_EXTENTS record holds the whole map");
            edit_record_header(b, all[0].offset, |h| h.body_length = 1 << 40);
            // Its body runs past the end of the file, so the walk resynchronises:
            // the map has a gap from 0 to the image's size.
            vec![problem(LimitExceeded, all[0].offset, vec![image_range("disk", 0, disk_size())])]
        },
    ));
    v.push(invalid(
        "unknown-critical-record",
        "the IMAGE_END record's type changed to 0x0777, not ancillary (header CRC fixed)",
        UnknownRecord,
        |b| {
            let rec = of_type(b, RecordType::ImageEnd)[0];
            edit_record_header(b, rec.offset, |h| h.record_type = 0x0777);
            // Skipped: the map was whole, so the lost record costs no range; the
            // section left open at the IMAGE_INDEX is a summary check after it.
            vec![problem(UnknownRecord, rec.offset, Vec::new())]
        },
    ));
    v.push(invalid(
        "foreign-record",
        "a chunk record carries another archive's tag (header CRC fixed)",
        RecordMalformed,
        |b| {
            let rec = chunk_with_encoding(b, 1);
            edit_record_header(b, rec.offset, |h| h.archive_tag = *b"othertag");
            // A damaged span up to the next record: the chunk is lost with it.
            chunk_problem(RecordMalformed, b, rec)
        },
    ));
    // An IMAGE_BEGIN that fails opens no section (section 11, "Begin records"):
    // the records of the section are record-malformed, its IMAGE_INDEX is
    // index-mismatch, and the ARCHIVE_INDEX is not compared.
    let no_section = |b: &[u8], begin: usize| {
        let mut out = vec![problem(RecordMalformed, begin, Vec::new())];
        for t in [RecordType::ImageExtents, RecordType::ImageEnd] {
            out.extend(of_type(b, t).iter().map(|r| problem(RecordMalformed, r.offset, Vec::new())));
        }
        out.push(problem(IndexMismatch, of_type(b, RecordType::ImageIndex)[0].offset, Vec::new()));
        out
    };
    v.push(invalid(
        "record-flag-zstd-on-begin",
        "flag ZSTD on an IMAGE_BEGIN, a type that is never compressed (header CRC fixed)",
        RecordMalformed,
        |b| {
            let rec = of_type(b, RecordType::ImageBegin)[0];
            edit_record_header(b, rec.offset, |h| h.flags = RecordFlags::ZSTD);
            no_section(b, rec.offset)
        },
    ));
    v.extend(compressed_table_vectors());
    v.push(invalid(
        "record-flags-reserved",
        "reserved record flag bit 3 set (header CRC fixed)",
        RecordMalformed,
        |b| {
            let rec = of_type(b, RecordType::ImageBegin)[0];
            edit_record_header(b, rec.offset, |h| h.flags = 1 << 3);
            no_section(b, rec.offset)
        },
    ));
    v.push(invalid(
        "ancillary-in-chunk-run",
        "an ancillary record between the first and second CHUNK records after the IMAGE_EXTENTS record that refers forward to both: it ends the run, so the reference to the second is answered by no CHUNK record of the run (7.2 rule 6)",
        DanglingReference,
        |b| {
            let at = inside_chunk_run(b, RecordType::ImageExtents, 1);
            insert_record(b, at, &ancillary_record());
            let owner = extents_record(b);
            let refs: Vec<(u64, Affects)> = image_extents(b)
                .into_iter()
                .filter(|&(_, _, r)| r >= 128)
                .map(|(offset, length, r)| (r, image_range("disk", offset, offset + length)))
                .collect();
            cut_run(b, owner, at, &refs)
        },
    ));
    v.push(invalid("section-name-slash", "the image is named \"d/sk\" (CRC fixed)", RecordMalformed, |b| {
        let rec = of_type(b, RecordType::ImageBegin)[0];
        b[rec.body_start + 25] = b'/';
        refix_record(b, rec.offset);
        no_section(b, rec.offset)
    }));
    v.push(invalid(
        "image-flags-reserved",
        "IMAGE_BEGIN flags with reserved bit 1 set (CRC fixed)",
        RecordMalformed,
        |b| {
            let rec = of_type(b, RecordType::ImageBegin)[0];
            b[rec.body_start + 22] |= 2;
            refix_record(b, rec.offset);
            no_section(b, rec.offset)
        },
    ));
    v.push(invalid(
        "extent-free-not-used-blocks",
        "a zero extent made free (chunk_ref 2) in a section that is not used-blocks (both tables, CRCs fixed)",
        RecordMalformed,
        |b| {
            let n = image_extents(b).iter().position(|&(_, _, r)| r == 0).expect("the small image has a zero extent");
            edit_extent(b, n, |e| e[16..24].copy_from_slice(&2u64.to_le_bytes()));
            let (offset, length, _) = extent(b, n);
            vec![problem(RecordMalformed, extents_record(b), vec![image_range("disk", offset, offset + length)])]
        },
    ));
    v
}

/// The manifest (schema in `spec/conformance.md`).
pub fn manifest(vectors: &[Vector]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = vectors
        .iter()
        .map(|v| {
            let mut entry = json!({
                "name": v.name,
                "file": format!("{}.strata", v.name),
                "description": v.description,
            });
            match &v.expect {
                Expectation::Valid(sections) => {
                    entry["valid"] = json!(true);
                    entry["sections"] = json!(sections);
                }
                Expectation::Invalid { .. } => {}
            }
            let parents = chain::parents_of(v.name);
            if !parents.is_empty() {
                entry["parents"] = json!(parents);
            }
            match &v.expect {
                Expectation::Valid(_) => {}
                Expectation::Invalid { class, problems, refused } => {
                    entry["valid"] = json!(false);
                    entry["error"] = json!(class.name());
                    entry["problems"] = json!(problems.iter().map(Expected::to_json).collect::<Vec<_>>());
                    if !refused.is_empty() {
                        entry["refused"] = json!(refused);
                    }
                }
            }
            entry
        })
        .collect();
    json!({ "format_version": "1.0-draft", "vectors": entries })
}

/// The manifest's text as committed: pretty JSON with a final newline.
pub fn manifest_text(vectors: &[Vector]) -> String {
    let mut text = serde_json::to_string_pretty(&manifest(vectors)).expect("a Value always serialises");
    text.push('\n');
    text
}

/// Writes every vector and the manifest into `dir`.
pub fn write_all(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let vectors = all();
    for vector in &vectors {
        std::fs::write(dir.join(format!("{}.strata", vector.name)), &vector.bytes)?;
    }
    std::fs::write(dir.join("manifest.json"), manifest_text(&vectors))
}
