//! The reader's image handle (`Archive::image`) on archives the writer makes in
//! memory: `Read` + `Seek` give back the source image, for several chunk
//! sizes, with zero runs and short tails; ranges lost in salvage read as zeros
//! and are listed. (The reader's own tests, in reader/tests/image_handle.rs,
//! use the committed vectors: the reader never depends on the writer.)

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Mutex;

use common::archive::MemorySink;
use proptest::prelude::*;
use strata_reader::{Archive, ChunkCache, ExtentKind, Limits, ReadAt};
use strata_writer::{ArchiveWriter, NoProgress, SliceSource, WriterOptions};

fn options(chunk_size: u32) -> WriterOptions {
    let mut options = WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    options.chunk_size = chunk_size;
    options.threads = 2;
    options
}

fn write(image: &[u8], chunk_size: u32) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new(), options(chunk_size)).expect("valid options");
    writer.add_image("disk", &mut SliceSource::new(image), &NoProgress).expect("writing to memory");
    writer.finish().expect("writing to memory").0
}

/// About 3.5 MiB: noise, a zero run starting off any chunk boundary and longer
/// than twice the largest chunk size tried (so every size has zero chunks),
/// repeated text, a short zero run, noise, and a zero tail off a boundary.
fn sample_image() -> Vec<u8> {
    let mut image = common::noise(1, 300_001);
    image.resize(image.len() + (2 << 20) + 70_000, 0);
    image.extend(b"a disk image, in a Strata archive. ".iter().cycle().take(200_000));
    image.resize(image.len() + 5_000, 0);
    image.extend(common::noise(2, 700_000));
    image.resize(image.len() + 4_321, 0);
    image
}

#[test]
fn the_reader_gives_back_the_source_for_several_chunk_sizes() {
    let source = sample_image();
    for chunk_size in [4 << 10, 16 << 10, 64 << 10, 1 << 20] {
        let archive = Archive::new(write(&source, chunk_size)).expect("the writer's archive opens");
        let image = archive.image("disk").expect("written above");
        assert_eq!(image.len(), source.len() as u64);
        let mut read = Vec::new();
        image.reader().read_to_end(&mut read).expect("reads");
        assert!(read == source, "chunk size {chunk_size}: read_to_end differs from the source");
        // Through a cache, 8 KiB at a time.
        let cache = ChunkCache::new(8 << 20);
        let mut copied = Vec::new();
        io::copy(&mut image.reader_with_cache(&cache), &mut copied).expect("reads");
        assert!(copied == source, "chunk size {chunk_size}: io::copy differs from the source");
        // The map has zero runs, and tiles the image in chunk windows.
        let extents: Vec<_> = image.extents().collect();
        assert!(extents.iter().any(|e| e.kind == ExtentKind::Zero), "chunk size {chunk_size}: no zero extent");
        assert_eq!(extents.first().map(|e| e.offset), Some(0));
        assert_eq!(extents.last().map(|e| e.end()), Some(image.len()));
        for pair in extents.windows(2) {
            assert_eq!(pair[0].end(), pair[1].offset, "chunk size {chunk_size}: the extents do not tile");
        }
        for extent in &extents {
            assert!(extent.offset % u64::from(chunk_size) == 0, "chunk size {chunk_size}: {extent:?}");
            let held = &source[extent.offset as usize..extent.end() as usize];
            if extent.kind == ExtentKind::Zero {
                assert!(held.iter().all(|&b| b == 0), "chunk size {chunk_size}: a zero extent over data");
            }
        }
        assert!(image.lost_ranges().is_empty());
    }
}

/// One step of a random walk through an image.
#[derive(Clone, Debug)]
enum Step {
    Seek(SeekFrom),
    ReadExact(usize),
}

fn step(reach: i64) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..reach as u64).prop_map(|o| Step::Seek(SeekFrom::Start(o))),
        (-reach..reach / 8).prop_map(|d| Step::Seek(SeekFrom::End(d))),
        (-reach..reach).prop_map(|d| Step::Seek(SeekFrom::Current(d))),
        (0usize..20_000).prop_map(Step::ReadExact),
    ]
}

/// Pieces of a generated image: zeros, noise, a repeated byte.
fn generated_image() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (1usize..40_000).prop_map(|n| vec![0; n]),
        (1usize..30_000, any::<u64>()).prop_map(|(n, seed)| common::noise(seed, n)),
        (any::<u8>(), 1usize..40_000).prop_map(|(b, n)| vec![b; n]),
    ];
    proptest::collection::vec(piece, 1..8).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Seeks anywhere and `read_exact`s of any length give the source's bytes,
    /// and fail exactly where they run past the end.
    #[test]
    fn random_seeks_read_the_source_bytes(
        source in generated_image(),
        chunk_size in prop_oneof![Just(4096u32), Just(8192), Just(65536)],
        steps in proptest::collection::vec(step(300_000), 1..48),
    ) {
        let archive = Archive::new(write(&source, chunk_size)).expect("the writer's archive opens");
        let image = archive.image("disk").expect("written above");
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
                    let fits = position + size as u64 <= len;
                    match reader.read_exact(&mut buf) {
                        Ok(()) => {
                            prop_assert!(fits, "read_exact of {} at {} of {}", size, position, len);
                            prop_assert!(buf[..] == source[position as usize..position as usize + size]);
                            position += size as u64;
                        }
                        Err(e) => {
                            prop_assert!(!fits);
                            prop_assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                            position = position.max(len);
                        }
                    }
                }
            }
            prop_assert_eq!(reader.stream_position().expect("never fails"), position);
        }
    }
}

#[test]
fn ranges_lost_in_salvage_read_as_zeros_and_are_listed() {
    let chunk_size = 4096u32;
    let source = common::noise(3, 20 * chunk_size as usize + 100);
    let archive = write(&source, chunk_size);
    // Damage the stored bytes of the chunk holding image bytes 8192..12288.
    let lost = 8192..12288u64;
    let chunk_ref = {
        let opened = Archive::new(archive.as_slice()).expect("opens");
        let image = opened.image("disk").expect("written above");
        let extent = image.extents().find(|e| e.offset == lost.start).expect("an extent starts there");
        let ExtentKind::Data(chunk_ref) = extent.kind else { panic!("noise is stored: {extent:?}") };
        chunk_ref
    };
    let mut damaged = archive.clone();
    damaged[chunk_ref as usize + 32 + 100] ^= 0x40;
    let (salvaged, outcome) = strata_salvage::salvage(
        damaged.as_slice(),
        Vec::new(),
        options(chunk_size),
        Limits::default(),
        &|_| {},
        &NoProgress,
    )
    .expect("salvage writes what survives");
    assert!(outcome.lost_anything());

    let archive = Archive::new(salvaged).expect("a salvaged archive opens");
    let image = archive.image("disk").expect("salvage keeps the section");
    assert_eq!(image.len(), source.len() as u64);
    assert_eq!(image.lost_ranges(), vec![lost.clone()]);
    let lost_extents: Vec<_> = image.extents().filter(|e| e.kind == ExtentKind::Lost).map(|e| e.range()).collect();
    assert_eq!(lost_extents, vec![lost.clone()]);
    // The reader gives zeros there, and the source everywhere else.
    let mut read = Vec::new();
    image.reader().read_to_end(&mut read).expect("a lost range is not an error");
    let mut expected = source.clone();
    expected[lost.start as usize..lost.end as usize].fill(0);
    assert!(read == expected);
    let mut sink = MemorySink::default();
    image.restore_to(&mut sink, &|_| {}).expect("restores");
    assert!(sink.bytes == expected);
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

#[test]
fn small_sequential_reads_decode_each_chunk_once() {
    // Distinct chunks only (noise), 64 KiB each, read 4 KiB at a time.
    let source = common::noise(4, 40 << 16);
    let archive =
        Archive::new(Recorded { bytes: write(&source, 64 << 10), reads: Mutex::new(Vec::new()) }).expect("opens");
    let image = archive.image("disk").expect("written above");
    let chunks: Vec<u64> = image
        .extents()
        .filter_map(|e| match e.kind {
            ExtentKind::Data(chunk_ref) => Some(chunk_ref),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 40);
    archive.source().reads.lock().expect("not poisoned").clear();
    let mut reader = image.reader();
    let mut buf = vec![0u8; 4096];
    let mut read = Vec::new();
    loop {
        let n = reader.read(&mut buf).expect("reads");
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buf[..n]);
    }
    assert!(read == source);
    let mut decodes: HashMap<u64, usize> = HashMap::new();
    for offset in archive.source().reads.lock().expect("not poisoned").iter() {
        *decodes.entry(*offset).or_default() += 1;
    }
    // A decode reads the chunk's record header at its reference, once.
    for chunk_ref in &chunks {
        assert_eq!(decodes.get(chunk_ref), Some(&1), "the chunk at {chunk_ref}");
    }
}
