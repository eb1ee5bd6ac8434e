//! The image handle (`Archive::image`): reads by position and through
//! `Read` + `Seek`, its extents, and its errors, on the archives of
//! spec/vectors, whose manifest gives each image's BLAKE3.
//!
//! The reader never depends on the writer, not even for tests: round trips
//! of generated images, several chunk sizes and salvaged (lost) ranges are in
//! cli/tests/image_handle.rs.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use proptest::prelude::*;
use strata_reader::sink::ImageSink;
use strata_reader::{Archive, ChunkCache, ErrorClass, ErrorKind, ExtentKind, ReadAt};

/// The committed vectors, or those `STRATA_VECTORS` names (a folder
/// `strata-vectors DIR` wrote, to test before they are committed).
fn vectors_dir() -> PathBuf {
    std::env::var_os("STRATA_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors"))
}

fn vector(file: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A valid vector, opened; an incremental one finds its ancestors beside it.
fn open_vector(file: &str) -> Archive<Vec<u8>> {
    let archive = Archive::new(vector(file)).expect("a valid vector opens");
    archive.set_parent_search(strata_reader::ParentSearch::beside(&vectors_dir().join(file)));
    archive
}

/// An image of a valid vector, as the manifest describes it.
struct Expected {
    file: String,
    name: String,
    size: u64,
    blake3: String,
}

/// Every image section of every valid vector.
fn valid_images() -> Vec<Expected> {
    let text = std::fs::read_to_string(vectors_dir().join("manifest.json")).expect("manifest.json is committed");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let mut images = Vec::new();
    for vector in manifest["vectors"].as_array().expect("a vectors array") {
        if vector["valid"] != true {
            continue;
        }
        for section in vector["sections"].as_array().expect("sections") {
            if section["kind"] != "image" {
                continue;
            }
            images.push(Expected {
                file: vector["file"].as_str().expect("file").to_string(),
                name: section["name"].as_str().expect("name").to_string(),
                size: section["logical_size"].as_u64().expect("logical_size"),
                blake3: section["blake3"].as_str().expect("blake3").to_string(),
            });
        }
    }
    images
}

fn blake3_of(reader: &mut impl Read) -> String {
    let mut hasher = blake3::Hasher::new();
    io::copy(reader, &mut hasher).expect("a valid vector reads");
    hasher.finalize().to_hex().to_string()
}

#[test]
fn the_reader_gives_every_valid_image_whole() {
    let images = valid_images();
    let mut chunk_sizes = std::collections::BTreeSet::new();
    let mut with_zeros = 0;
    for want in &images {
        let archive = open_vector(&want.file);
        let image = archive.image(&want.name).expect("the manifest's image is there");
        let what = format!("{} {:?}", want.file, want.name);
        assert_eq!((image.name(), image.len(), image.is_empty()), (want.name.as_str(), want.size, want.size == 0));
        chunk_sizes.insert(image.section().chunk_size);
        with_zeros += usize::from(image.extents().any(|e| e.kind == ExtentKind::Zero));

        // `io::copy` reads 8 KiB at a time, across chunk and extent edges.
        assert_eq!(blake3_of(&mut image.reader()), want.blake3, "{what}: through Read");
        let cache = ChunkCache::new(64 << 20);
        assert_eq!(blake3_of(&mut image.reader_with_cache(&cache)), want.blake3, "{what}: through a cache");
        // Reads of uneven sizes, which rarely end on a chunk boundary.
        let mut reader = image.reader();
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 70_001];
        for size in [1, 4095, 511, 70_001, 3, 12_289].into_iter().cycle() {
            let n = reader.read(&mut buf[..size]).expect("a valid vector reads");
            if n == 0 {
                break;
            }
            // A read fills its buffer unless the image ends first.
            assert!(n == size || reader.position() == image.len(), "{what}: {n} of {size} bytes");
            hasher.update(&buf[..n]);
        }
        assert_eq!(hasher.finalize().to_hex().to_string(), want.blake3, "{what}: uneven reads");
        assert_eq!(reader.position(), image.len());
        // By position, and by restore, the same bytes.
        if want.size <= 1 << 20 {
            let mut whole = vec![0u8; want.size as usize];
            assert_eq!(image.read_at(0, &mut whole).expect("reads"), whole.len());
            assert_eq!(blake3::hash(&whole).to_hex().to_string(), want.blake3, "{what}: read_at");
            let mut sink = MemorySink::default();
            image.restore_to(&mut sink, &|_| {}).expect("restores");
            assert!(sink.bytes == whole, "{what}: restore_to");
        }
    }
    // What the test claims to cover is in the vectors.
    assert!(images.len() >= 8, "{} images", images.len());
    assert!(chunk_sizes.len() >= 2, "chunk sizes {chunk_sizes:?}");
    assert!(with_zeros >= 3, "{with_zeros} images with zero extents");
}

/// A vector image the seek tests use, with its bytes.
struct Seekable {
    archive: Archive<Vec<u8>>,
    name: String,
    /// Read whole and checked against the manifest's BLAKE3, so they stand
    /// for the source image.
    source: Vec<u8>,
}

fn seekable_images() -> &'static [Seekable] {
    static IMAGES: OnceLock<Vec<Seekable>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let wanted =
            ["image-small.strata", "image-sparse.strata", "image-trailing-zeros.strata", "two-images-dedup.strata"];
        valid_images()
            .into_iter()
            .filter(|want| wanted.contains(&want.file.as_str()))
            .map(|want| {
                let archive = open_vector(&want.file);
                archive.set_parent_search(strata_reader::ParentSearch::beside(&vectors_dir().join(&want.file)));
                let mut bytes = Vec::new();
                archive.image(&want.name).expect("there").reader().read_to_end(&mut bytes).expect("reads");
                assert_eq!(blake3::hash(&bytes).to_hex().to_string(), want.blake3, "{}", want.file);
                Seekable { archive, name: want.name, source: bytes }
            })
            .collect()
    })
}

/// One step of a random walk through an image.
#[derive(Clone, Debug)]
enum Step {
    Seek(SeekFrom),
    ReadExact(usize),
    Read(usize),
}

fn step() -> impl Strategy<Value = Step> {
    // Offsets reach past both ends of the images (the largest is 50 000 bytes).
    prop_oneof![
        (0u64..60_000).prop_map(|o| Step::Seek(SeekFrom::Start(o))),
        (-60_000i64..5_000).prop_map(|d| Step::Seek(SeekFrom::End(d))),
        (-60_000i64..60_000).prop_map(|d| Step::Seek(SeekFrom::Current(d))),
        (0usize..10_000).prop_map(Step::ReadExact),
        (0usize..10_000).prop_map(Step::Read),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Seeks and reads anywhere give the image's bytes at the position a
    /// model keeps, and fail exactly where the model says.
    #[test]
    fn random_seeks_read_the_image_bytes(which in 0usize..5, steps in proptest::collection::vec(step(), 1..40)) {
        let images = seekable_images();
        let Seekable { archive, name, source } = &images[which % images.len()];
        let image = archive.image(name).expect("there");
        let len = source.len() as u64;
        let mut reader = image.reader();
        let mut position = 0u64;
        for step in steps {
            match step {
                Step::Seek(to) => {
                    let target = match to {
                        SeekFrom::Start(o) => Some(o),
                        SeekFrom::End(d) => len.checked_add_signed(d),
                        SeekFrom::Current(d) => position.checked_add_signed(d),
                    };
                    match (reader.seek(to), target) {
                        (Ok(at), Some(target)) => {
                            prop_assert_eq!(at, target);
                            position = target;
                        }
                        (Err(e), None) => prop_assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
                        (got, want) => prop_assert!(false, "seek {:?} from {}: {:?}, expected {:?}", to, position, got, want),
                    }
                }
                Step::ReadExact(size) => {
                    let mut buf = vec![0u8; size];
                    // Reading nothing succeeds anywhere, past the end too (std's read_exact).
                    let fits = size == 0 || position + size as u64 <= len;
                    match reader.read_exact(&mut buf) {
                        Ok(()) => {
                            prop_assert!(fits, "read_exact of {} at {} of {}", size, position, len);
                            prop_assert!(size == 0 || buf[..] == source[position as usize..position as usize + size]);
                            position += size as u64;
                        }
                        Err(e) => {
                            prop_assert!(!fits);
                            prop_assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                            // What was there was read: the reader is at the end.
                            position = position.max(len);
                        }
                    }
                }
                Step::Read(size) => {
                    let mut buf = vec![0u8; size];
                    let n = reader.read(&mut buf).expect("a valid vector reads");
                    let expected = (size as u64).min(len.saturating_sub(position)) as usize;
                    prop_assert_eq!(n, expected);
                    let start = position.min(len) as usize;
                    prop_assert!(buf[..n] == source[start..start + n]);
                    position += n as u64;
                }
            }
            prop_assert_eq!(reader.stream_position().expect("never fails"), position);
        }
    }
}

#[test]
fn a_read_across_the_end_stops_there() {
    let Seekable { archive, name, source } = &seekable_images()[0];
    let image = archive.image(name).expect("there");
    let len = image.len();
    let mut reader = image.reader();
    assert_eq!(reader.seek(SeekFrom::End(-10)).expect("seeks"), len - 10);
    let mut buf = [0xa5u8; 100];
    assert_eq!(reader.read(&mut buf).expect("reads"), 10);
    assert_eq!(buf[..10], source[source.len() - 10..]);
    assert_eq!(reader.read(&mut buf).expect("reads"), 0, "at the end");
    reader.seek(SeekFrom::End(-10)).expect("seeks");
    assert_eq!(reader.read_exact(&mut buf).expect_err("10 bytes are left").kind(), io::ErrorKind::UnexpectedEof);
    // By position too.
    assert_eq!(image.read_at(len - 10, &mut buf).expect("reads"), 10);
    assert_eq!(buf[..10], source[source.len() - 10..]);
}

#[test]
fn seeking_past_the_end_is_allowed_and_reads_nothing() {
    let Seekable { archive, name, source } = &seekable_images()[0];
    let image = archive.image(name).expect("there");
    let len = image.len();
    let mut reader = image.reader();
    let mut buf = [0u8; 64];
    for past in [len, len + 1, len + 1_000_000, u64::MAX] {
        assert_eq!(reader.seek(SeekFrom::Start(past)).expect("past the end is allowed"), past);
        assert_eq!(reader.read(&mut buf).expect("reads nothing"), 0);
        assert_eq!(reader.stream_position().expect("never fails"), past);
        assert_eq!(image.read_at(past, &mut buf).expect("reads nothing"), 0);
    }
    assert_eq!(reader.seek(SeekFrom::End(1_000)).expect("past the end is allowed"), len + 1_000);
    assert_eq!(reader.read(&mut buf).expect("reads nothing"), 0);
    // And back: the image is there again.
    assert_eq!(reader.seek(SeekFrom::Current(-1_000 - len as i64)).expect("seeks"), 0);
    reader.read_exact(&mut buf).expect("reads");
    assert_eq!(buf[..], source[..64]);
    // No position beyond u64::MAX.
    reader.seek(SeekFrom::Start(u64::MAX)).expect("seeks");
    assert_eq!(reader.seek(SeekFrom::Current(1)).expect_err("overflows").kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_negative_position_is_invalid_input() {
    let Seekable { archive, name, source } = &seekable_images()[0];
    let image = archive.image(name).expect("there");
    let len = image.len() as i64;
    let mut reader = image.reader();
    reader.seek(SeekFrom::Start(100)).expect("seeks");
    for to in [SeekFrom::Current(-101), SeekFrom::End(-len - 1), SeekFrom::Current(i64::MIN)] {
        let error = reader.seek(to).expect_err("before the start");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{to:?}");
        assert!(error.to_string().contains("before the image's start"), "{error}");
        // A failed seek leaves the position where it was.
        assert_eq!(reader.stream_position().expect("never fails"), 100);
    }
    assert_eq!(reader.seek(SeekFrom::Current(-100)).expect("to the start exactly"), 0);
    assert_eq!(reader.seek(SeekFrom::End(-len)).expect("to the start exactly"), 0);
    let mut buf = [0u8; 16];
    reader.read_exact(&mut buf).expect("reads");
    assert_eq!(buf[..], source[..16]);
}

#[test]
fn extents_tile_the_image_and_say_what_holds_it() {
    for want in valid_images() {
        let archive = open_vector(&want.file);
        let image = archive.image(&want.name).expect("there");
        let what = format!("{} {:?}", want.file, want.name);
        let extents: Vec<_> = image.extents().collect();
        assert_eq!(extents.len(), image.extents().len(), "{what}: ExactSizeIterator");
        assert_eq!(extents.len(), image.section().extents.len(), "{what}");
        let mut next = 0;
        let mut stored = 0;
        for (extent, raw) in extents.iter().zip(&image.section().extents) {
            assert_eq!(extent.offset, next, "{what}: a gap or an overlap");
            assert!(extent.length > 0, "{what}");
            assert_eq!((extent.offset, extent.length, extent.end()), (raw.image_offset, raw.length, raw.end()));
            assert_eq!(extent.range(), extent.offset..extent.end());
            assert_eq!(Ok(extent.kind), raw.kind(), "{what}");
            match extent.kind {
                ExtentKind::Data(_) => stored += extent.length,
                ExtentKind::Zero | ExtentKind::Free => {
                    let mut zeros = vec![0xa5u8; extent.length.min(1 << 20) as usize];
                    image.read_at(extent.offset, &mut zeros).expect("reads");
                    assert!(zeros.iter().all(|&b| b == 0), "{what}: a zero extent reads as zeros");
                }
                ExtentKind::Lost => panic!("{what}: no vector holds a range lost in salvage"),
            }
            next = extent.end();
        }
        assert_eq!(next, image.len(), "{what}: the extents end where the image does");
        assert_eq!(stored, image.section().end.data_bytes, "{what}");
        assert!(image.lost_ranges().is_empty(), "{what}");
        // Backwards too.
        assert_eq!(
            image.extents().rev().map(|e| e.offset).collect::<Vec<_>>().first(),
            extents.last().map(|e| &e.offset)
        );
    }
}

#[test]
fn a_missing_image_is_a_typed_error() {
    let archive = Archive::new(vector("image-and-tree.strata")).expect("opens");
    let tree_name = archive.sections().iter().find(|s| s.name() != "disk").expect("a tree").name().to_string();
    for (name, says) in [("nope", "its images: \"disk\""), (tree_name.as_str(), "is a file tree, not an image")] {
        let error = archive.image(name).expect_err("not an image of the archive");
        assert_eq!(error.kind(), ErrorKind::NoSuchSection, "{error}");
        assert_eq!(error.class(), None, "nothing is wrong with the archive");
        assert_eq!(error.section(), Some(name));
        assert!(error.to_string().contains(says), "{error}");
        // Through std::io it is NotFound, and the strata error is still inside.
        let io_error = io::Error::from(error);
        assert_eq!(io_error.kind(), io::ErrorKind::NotFound);
        let inner = io_error.get_ref().and_then(|e| e.downcast_ref::<strata_reader::Error>()).expect("inside");
        assert_eq!(inner.kind(), ErrorKind::NoSuchSection);
    }
    let trees_only = Archive::new(vector("tree-small.strata")).expect("opens");
    let error = trees_only.image("disk").expect_err("no images at all");
    assert_eq!(error.kind(), ErrorKind::NoSuchSection);
    assert!(error.to_string().contains("holds no image"), "{error}");
    // The other kinds, for contrast.
    let damaged = Archive::new(vector("chunk-body-crc.strata")).expect("the index is intact");
    let image = damaged.image("disk").expect("there");
    let error = image.read_at(0, &mut [0u8; 16]).expect_err("its first chunk is damaged");
    assert_eq!(error.kind(), ErrorKind::Archive(ErrorClass::RecordChecksum));
    assert_eq!(error.class(), Some(ErrorClass::RecordChecksum));
}

#[test]
fn damage_read_through_read_is_invalid_data_with_the_archive_error_inside() {
    let archive = Archive::new(vector("chunk-body-crc.strata")).expect("the index is intact");
    let image = archive.image("disk").expect("there");
    let mut reader = image.reader();
    let error = reader.read(&mut [0u8; 100]).expect_err("the first chunk is damaged");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<strata_reader::Error>()).expect("inside");
    assert_eq!(inner.class(), Some(ErrorClass::RecordChecksum));
    assert_eq!(inner.section(), Some("disk"));
    assert_eq!(inner.image_range(), Some(0..4096), "{inner}");
    // A failed read reads nothing; the rest of the image still reads.
    assert_eq!(reader.stream_position().expect("never fails"), 0);
    reader.seek(SeekFrom::Start(4096)).expect("seeks");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("the other chunks are intact");
    assert_eq!(rest.len() as u64, image.len() - 4096);
}

/// A source that records the offset of every positional read.
struct Recorded {
    bytes: Vec<u8>,
    reads: Mutex<Vec<u64>>,
}

impl ReadAt for Recorded {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.reads.lock().expect("no test thread panicked holding it").push(offset);
        self.bytes.read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

impl Recorded {
    /// Reads since the last call, by offset.
    fn take_reads(&self) -> HashMap<u64, usize> {
        let mut counts = HashMap::new();
        for offset in self.reads.lock().expect("no test thread panicked holding it").drain(..) {
            *counts.entry(offset).or_default() += 1;
        }
        counts
    }
}

#[test]
fn sequential_reads_decode_each_chunk_once() {
    for file in ["image-small.strata", "two-images-dedup.strata", "image-sparse.strata"] {
        let archive = Archive::new(Recorded { bytes: vector(file), reads: Mutex::new(Vec::new()) }).expect("opens");
        for section in archive.sections() {
            let image = archive.image(section.name()).expect("there");
            // A chunk is decoded again only when the reader comes back to it
            // after another: count the runs of each chunk in image order.
            let mut runs: HashMap<u64, usize> = HashMap::new();
            let mut previous = None;
            for extent in image.extents() {
                if let ExtentKind::Data(chunk_ref) = extent.kind {
                    if previous != Some(chunk_ref) {
                        *runs.entry(chunk_ref).or_default() += 1;
                    }
                    previous = Some(chunk_ref);
                }
            }
            assert!(!runs.is_empty(), "{file}");
            // Once per run at most (the archive's own last chunk may spare one
            // decode more), and at least once: every chunk is read.
            let check = |reads: &HashMap<u64, usize>, how: &str| {
                for (chunk_ref, decodes) in &runs {
                    let read = reads.get(chunk_ref).copied().unwrap_or(0);
                    assert!(
                        (1..=*decodes).contains(&read),
                        "{file} {}, {how}: chunk at {chunk_ref} decoded {read} times",
                        image.name()
                    );
                }
            };
            let cache = ChunkCache::new(64 << 20);
            for (how, mut reader) in [("own chunk", image.reader()), ("cache", image.reader_with_cache(&cache))] {
                archive.source().take_reads();
                // Seeking decodes nothing.
                reader.seek(SeekFrom::End(-1)).expect("seeks");
                reader.seek(SeekFrom::Start(0)).expect("seeks");
                assert!(archive.source().take_reads().is_empty(), "{file}: a seek read the archive");
                // 1000-byte reads: several per chunk, and most straddle two.
                let mut buf = [0u8; 1000];
                while reader.read(&mut buf).expect("reads") > 0 {}
                // A chunk's record header is read at its reference once per decode.
                check(&archive.source().take_reads(), how);
            }
            // The cache keeps them: a second pass through it reads nothing.
            let mut again = image.reader_with_cache(&cache);
            io::copy(&mut again, &mut io::sink()).expect("reads");
            assert!(archive.source().take_reads().is_empty(), "{file}: the cache was not used");
        }
    }
}

/// Two readers taking turns on one archive each keep their own chunk: the
/// archive's last chunk alone would have each evict the other's.
#[test]
fn readers_taking_turns_each_decode_a_chunk_once() {
    let archive =
        Archive::new(Recorded { bytes: vector("image-small.strata"), reads: Mutex::new(Vec::new()) }).expect("opens");
    let image = archive.image("disk").expect("there");
    let chunks: Vec<u64> = image
        .extents()
        .filter_map(|e| match e.kind {
            ExtentKind::Data(chunk_ref) => Some(chunk_ref),
            _ => None,
        })
        .collect();
    let mut front = image.reader();
    let mut behind = image.reader();
    let (mut a, mut b) = ([0u8; 1000], [0u8; 1000]);
    // `behind` trails by a chunk and a half, so the two are never in one chunk.
    io::copy(&mut (&mut front).take(6000), &mut io::sink()).expect("reads");
    archive.source().take_reads();
    loop {
        let n = front.read(&mut a).expect("reads");
        let m = behind.read(&mut b).expect("reads");
        if n == 0 && m == 0 {
            break;
        }
    }
    let reads = archive.source().take_reads();
    for chunk_ref in &chunks {
        let read = reads.get(chunk_ref).copied().unwrap_or(0);
        assert!(read <= 2, "the chunk at {chunk_ref} was decoded {read} times by two readers");
    }
}

/// Collects a restore in memory.
#[derive(Default)]
struct MemorySink {
    bytes: Vec<u8>,
}

impl ImageSink for MemorySink {
    fn start(&mut self, _: Option<u64>) -> io::Result<()> {
        Ok(())
    }
    fn write_data(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        assert_eq!(offset, self.bytes.len() as u64, "a restore writes in image order");
        self.bytes.extend_from_slice(data);
        Ok(())
    }
    fn write_hole(&mut self, offset: u64, length: u64) -> io::Result<()> {
        assert_eq!(offset, self.bytes.len() as u64, "a restore writes in image order");
        self.bytes.resize(self.bytes.len() + length as usize, 0);
        Ok(())
    }
    fn read_back(&mut self, _: u64, _: &mut [u8]) -> io::Result<bool> {
        Ok(false)
    }
    fn finish(&mut self, size: u64) -> io::Result<()> {
        assert_eq!(size, self.bytes.len() as u64);
        Ok(())
    }
}

/// Reads in part through a cache (`read_image_at_partial`: reads in a chunk
/// decode it only up to what they need until another chunk is read in part,
/// a read in it after that decodes it whole) give
/// the image's bytes, whatever the order: scattered reads come back to chunks
/// begun, finished and begun by others.
#[test]
fn partial_reads_give_the_image_bytes() {
    for want in valid_images() {
        let archive = open_vector(&want.file);
        let image = archive.image(&want.name).expect("there");
        let mut whole = Vec::new();
        image.reader().read_to_end(&mut whole).expect("reads");
        let cache = ChunkCache::new(64 << 20);
        let len = image.len();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let offset = state % (len + 1);
            let length = (state >> 40) % 5000;
            let mut buf = vec![0u8; length as usize];
            let n = cache.read_image_at_partial(&archive, image.section(), offset, &mut buf).expect("reads");
            let end = (offset + length).min(len);
            assert_eq!(n as u64, end - offset, "{} {}: {offset}+{length}", want.file, want.name);
            assert_eq!(
                buf[..n],
                whole[offset as usize..end as usize],
                "{} {}: {offset}+{length}",
                want.file,
                want.name
            );
        }
    }
}

/// The record offset of the chunk holding image byte `offset` (a data extent's `chunk_ref`).
fn data_chunk_at<R: strata_reader::ReadAt>(image: &strata_reader::Image<'_, R>, offset: u64) -> u64 {
    let extent = image.extents().find(|e| e.range().contains(&offset)).expect("the image holds the byte");
    match extent.kind {
        ExtentKind::Data(chunk_ref) => chunk_ref,
        other => panic!("image byte {offset} is {other:?}, not data"),
    }
}

/// Reads in a chunk read in part are checked by the record CRC and the frame
/// rules only (FORMAT.md 10.1, step 4), as long as no other chunk is read in
/// part between them; a read in it after another chunk was decodes it whole
/// and checks its BLAKE3. In chunk-blake3-mismatch a stored byte of the raw
/// chunk holding image bytes 20480..24576 was changed and its CRC fixed: only
/// BLAKE3 sees it.
#[test]
fn a_read_in_a_chunk_after_another_checks_its_blake3() {
    let archive = Archive::new(vector("chunk-blake3-mismatch.strata")).expect("opens: chunks are read later");
    let image = archive.image("disk").expect("there");
    let chunk_ref = data_chunk_at(&image, 20480);
    let cache = ChunkCache::new(1 << 20);
    let mut buf = [0u8; 16];
    for offset in [20480, 20480 + 200, 20480] {
        let n = cache.read_image_at_partial(&archive, image.section(), offset, &mut buf).expect("the CRC passes");
        assert_eq!(n, 16);
        assert!(!cache.holds(chunk_ref), "a chunk read in part is not kept");
    }
    // Another chunk read in part, then this one again: decoded whole.
    cache.read_image_at_partial(&archive, image.section(), 0, &mut buf).expect("an intact chunk");
    for offset in [20480 + 200, 20480] {
        let e = cache.read_image_at_partial(&archive, image.section(), offset, &mut buf).unwrap_err();
        assert_eq!(e.class(), Some(ErrorClass::ChunkCorrupt), "{e}");
        assert_eq!(e.what(), "chunk BLAKE3", "{e}");
        assert_eq!(e.image_range(), Some(20480..24576), "{e}");
        assert!(!cache.holds(chunk_ref));
    }
    // A read that needs the chunk to its end decodes and checks it whole at once.
    let fresh = ChunkCache::new(1 << 20);
    let e = fresh.read_image_at_partial(&archive, image.section(), 24576 - 16, &mut buf).unwrap_err();
    assert_eq!(e.what(), "chunk BLAKE3", "{e}");
    // The other chunks read, in part or whole.
    for offset in [0, 100, 4096, 24576] {
        fresh.read_image_at_partial(&archive, image.section(), offset, &mut buf).expect("intact chunks read");
    }
}

/// A stored byte changed (chunk-body-crc): the first read in the chunk fails
/// on the record CRC, which covers every stored byte, however little it needs.
#[test]
fn a_damaged_chunk_read_in_part_is_an_error() {
    let archive = Archive::new(vector("chunk-body-crc.strata")).expect("opens: chunks are read later");
    let image = archive.image("disk").expect("there");
    let cache = ChunkCache::new(1 << 20);
    let mut buf = [0u8; 1];
    let e = cache.read_image_at_partial(&archive, image.section(), 0, &mut buf).unwrap_err();
    assert_eq!(e.class(), Some(ErrorClass::RecordChecksum), "{e}");
    assert_eq!(e.offset(), Some(data_chunk_at(&image, 0)), "{e}");
    assert_eq!(e.image_range(), Some(0..4096), "{e}");
}

/// A later read in the chunk read in part last goes on decoding from where
/// the last stopped: its record is not read again from its start, and the
/// chunk is not decoded whole. A chunk begun before another was is decoded
/// whole from its start.
#[test]
fn a_later_read_goes_on_from_the_last() {
    let archive =
        Archive::new(Recorded { bytes: vector("image-small.strata"), reads: Mutex::new(Vec::new()) }).expect("opens");
    let image = archive.image("disk").expect("there");
    let chunk_at = |offset: u64| match image.extents().find(|e| e.range().contains(&offset)).map(|e| e.kind) {
        Some(ExtentKind::Data(chunk_ref)) => chunk_ref,
        other => panic!("image byte {offset} is {other:?}"),
    };
    let (a, b, c) = (chunk_at(0), chunk_at(4096), chunk_at(8192));
    assert!(a != b && b != c && a != c);
    let cache = ChunkCache::new(1 << 20);
    let mut buf = [0u8; 10];
    let mut read = |offset| {
        cache.read_image_at_partial(&archive, image.section(), offset, &mut buf).expect("reads");
        archive.source().take_reads()
    };
    archive.source().take_reads();
    assert_eq!(read(0).get(&a), Some(&1), "the record header, once");
    assert_eq!(read(100).get(&a), None, "went on from the first read");
    assert!(!cache.holds(a), "still read in part");
    assert_eq!(read(4096).get(&b), Some(&1));
    assert_eq!(read(8192).get(&c), Some(&1));
    assert_eq!(read(4200).get(&b), Some(&1), "decoded again from its start");
    assert!(cache.holds(b) && !cache.holds(c));
    assert_eq!(read(200).get(&a), Some(&1), "read in part before another: decoded whole");
    assert!(cache.holds(a));
}
