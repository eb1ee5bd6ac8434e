//! The export and the chunk cache, in process, on an archive built in memory.

use std::sync::atomic::{AtomicU64, Ordering};

use strata_reader::{Archive, ChunkCache, ReadAt};
use strata_serve::nbd::{Allocation, Export, Segment};
use strata_serve::ImageExport;
use strata_writer::{ArchiveWriter, NoProgress, SliceSource, WriterOptions};

const CHUNK: usize = 64 << 10;

/// A source that counts the bytes read from it.
struct Counted {
    bytes: Vec<u8>,
    read: AtomicU64,
}

impl ReadAt for Counted {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.bytes.read_exact_at(buf, offset)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

/// 16 chunks of noise, 8 of zeros, 8 of noise.
fn image() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes: Vec<u8> = (0..32 * CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    bytes[16 * CHUNK..24 * CHUNK].fill(0);
    bytes
}

fn archive(image: &[u8]) -> Archive<Counted> {
    let mut options = WriterOptions::new([7; 16], 0);
    options.chunk_size = CHUNK as u32;
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    writer.add_image("disk", &mut SliceSource::new(image), &NoProgress).unwrap();
    let (bytes, _) = writer.finish().unwrap();
    Archive::new(Counted { bytes, read: AtomicU64::new(0) }).unwrap()
}

#[test]
fn sequential_small_reads_decode_each_chunk_once() {
    let image = image();
    let archive = archive(&image);
    let stored = archive.size();
    let cache = ChunkCache::new(4 * CHUNK);
    let section = archive.image("disk").unwrap().section().clone();
    let mut buf = vec![0u8; 4096];
    for offset in (0..image.len()).step_by(4096) {
        assert_eq!(cache.read_image_at(&archive, &section, offset as u64, &mut buf).unwrap(), 4096);
        assert!(buf == image[offset..offset + 4096]);
    }
    // Each chunk record was read once: no more than the archive holds.
    assert!(archive.source().read.load(Ordering::Relaxed) <= stored, "chunks were read more than once");
    assert!(cache.held() <= cache.capacity());
    assert!(cache.held() > 0);
}

#[test]
fn the_cache_keeps_to_its_budget_and_the_most_recent_chunks() {
    let image = image();
    let archive = archive(&image);
    let cache = ChunkCache::new(2 * CHUNK);
    let section = archive.image("disk").unwrap().section().clone();
    let mut buf = vec![0u8; 10];
    for chunk in 0..4u64 {
        cache.read_image_at(&archive, &section, chunk * CHUNK as u64, &mut buf).unwrap();
        assert!(cache.held() <= 2 * CHUNK);
    }
    // Chunks 2 and 3 are held: reading them again reads nothing from the source.
    let before = archive.source().read.load(Ordering::Relaxed);
    cache.read_image_at(&archive, &section, 3 * CHUNK as u64, &mut buf).unwrap();
    cache.read_image_at(&archive, &section, 2 * CHUNK as u64, &mut buf).unwrap();
    assert_eq!(archive.source().read.load(Ordering::Relaxed), before);
    // A budget smaller than one chunk holds nothing, and still reads right.
    let none = ChunkCache::new(CHUNK - 1);
    none.read_image_at(&archive, &section, 5, &mut buf).unwrap();
    assert!(buf == image[5..15]);
    assert_eq!(none.held(), 0);
}

#[test]
fn threads_reading_one_chunk_at_once_decode_it_once() {
    let image = image();
    let archive = archive(&image);
    let cache = ChunkCache::new(64 * CHUNK);
    let section = archive.image("disk").unwrap().section().clone();
    let before = archive.source().read.load(Ordering::Relaxed);
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (archive, cache, section, image) = (&archive, &cache, &section, &image);
            scope.spawn(move || {
                let mut buf = vec![0u8; 1000];
                let offset = 3 * CHUNK as u64 + t * 1000;
                cache.read_image_at(archive, section, offset, &mut buf).unwrap();
                assert!(buf == image[offset as usize..offset as usize + 1000]);
            });
        }
    });
    let read = archive.source().read.load(Ordering::Relaxed) - before;
    assert!(read < 2 * CHUNK as u64, "{read} bytes read for one chunk");
}

#[test]
fn the_export_yields_data_holes_and_allocation() {
    let image = image();
    let export = ImageExport::new(archive(&image), "disk", 1 << 20, Box::new(|_, _| panic!("no damage here")))
        .expect("the section is there");
    assert!(ImageExport::new(archive(&image), "other", 1 << 20, Box::new(|_, _| {})).is_none());
    assert_eq!(export.size(), image.len() as u64);
    let (start, length) = (15 * CHUNK as u64 + 100, 10 * CHUNK as u64);
    let mut got = Vec::new();
    let mut zeros = 0;
    export
        .read(start, length, &mut |segment| {
            match segment {
                Segment::Data(bytes) => got.extend_from_slice(bytes),
                Segment::Zero(n) => {
                    zeros += n;
                    got.resize(got.len() + n as usize, 0)
                }
                Segment::Unreadable { .. } => panic!("nothing is damaged"),
            }
            Ok(())
        })
        .unwrap();
    assert!(got == image[start as usize..(start + length) as usize]);
    assert_eq!(zeros, 8 * CHUNK as u64);
    let runs = export.allocation(start, length, 100);
    let c = CHUNK as u64;
    assert_eq!(runs, vec![(c - 100, Allocation::Data), (8 * c, Allocation::Zero), (c + 100, Allocation::Data)]);
    assert_eq!(export.allocation(start, length, 1), vec![(c - 100, Allocation::Data)]);
}

/// A client that closes before its first byte (a probe of the socket, or one
/// the server's stop cut off) has just left: no failure for the log to show,
/// whereas one that stops in the middle of a message is told apart.
#[test]
fn a_client_that_closes_before_a_word_just_left() {
    let image = image();
    let export = ImageExport::new(archive(&image), "disk", 1 << 20, Box::new(|_, _| {})).unwrap();
    let (mut sent, mut input) = (Vec::new(), std::io::BufReader::new(&[][..]));
    let ended = strata_serve::nbd::serve_connection(&mut input, &mut sent, &export, Default::default(), &mut || {});
    assert!(matches!(ended, Ok(strata_serve::nbd::Ending::Left)), "{:?}", ended.err().map(|e| e.to_string()));
    assert_eq!(sent.len(), 18, "the greeting is all that was sent");
    // Two of the four bytes of the client's flags, then the end.
    let mut input = std::io::BufReader::new(&[0u8, 0][..]);
    let ended =
        strata_serve::nbd::serve_connection(&mut input, &mut Vec::new(), &export, Default::default(), &mut || {});
    assert!(matches!(ended, Err(strata_serve::nbd::Failure::Cut(_))));
}

/// Read-ahead decodes the chunk a reader in record order comes to next, once,
/// and starts nothing for a reader that jumps about.
#[test]
fn read_ahead_decodes_what_a_sequential_reader_needs_next_once() {
    use std::sync::Arc;
    use strata_format::ExtentKind;
    use strata_reader::ReadAhead;

    let image = image();
    let archive = Arc::new(archive(&image));
    let refs: Vec<u64> = archive
        .image("disk")
        .unwrap()
        .section()
        .extents
        .iter()
        .filter_map(|e| match e.kind() {
            Ok(ExtentKind::Data(chunk_ref)) => Some(chunk_ref),
            _ => None,
        })
        .collect();
    // One chunk ahead, so that what is read can be counted exactly.
    let ahead = ReadAhead::with_depth(archive.clone(), Arc::new(ChunkCache::new(8 * CHUNK)), 1, 1);
    let opened = archive.source().read.load(Ordering::Relaxed);
    let read = |chunk_ref| ahead.cache().chunk_whole(&archive, chunk_ref).unwrap();

    let first = read(refs[0]);
    assert_eq!(ahead.read_in_record_order(refs[0], &first), None, "one read says nothing of the next");
    assert_eq!(first.next_record, refs[1], "an image's chunks follow one another");
    let second = read(refs[1]);
    assert_eq!(ahead.read_in_record_order(refs[1], &second), Some(refs[2]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ahead.cache().holds(refs[2]) {
        assert!(std::time::Instant::now() < deadline, "the worker never took the request");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let third = read(refs[2]);
    assert_eq!(third.raw, image[2 * CHUNK..3 * CHUNK]);
    // Three records, each read once: the worker's decode served the reader.
    // Besides, the read-ahead read the record headers of the chunk after the
    // first and after the second (32 bytes each) to know what comes next.
    let records = third.next_record - refs[0];
    assert_eq!(archive.source().read.load(Ordering::Relaxed) - opened, records + 2 * 32);

    // A jump, then another: nothing is decoded ahead.
    for jump in [10, 4, 20] {
        let chunk = read(refs[jump]);
        assert_eq!(ahead.read_in_record_order(refs[jump], &chunk), None, "after a jump to chunk {jump}");
    }
    // An image reader asks for the stored chunks after its position, past zeros.
    let image = archive.image("disk").unwrap();
    let image_section = image.section();
    assert!(ahead.image_from(image_section, (15 * CHUNK) as u64) <= 2);
    let mut none = ReadAhead::new(archive.clone(), Arc::new(ChunkCache::new(8 * CHUNK)), 0);
    assert_eq!(none.workers(), 0);
    assert_eq!(none.image_from(image_section, 0), 0);
    none = ReadAhead::new(archive.clone(), Arc::new(ChunkCache::new(8 * CHUNK)), 2);
    // Up to one more than the workers, as far as the queue takes them.
    assert!((2..=3).contains(&none.image_from(image_section, 0)));
}

#[test]
fn read_ahead_keeps_its_depth_ahead_and_a_look_back_does_not_end_it() {
    use std::sync::Arc;
    use strata_format::ExtentKind;
    use strata_reader::ReadAhead;

    let image = image();
    let archive = Arc::new(archive(&image));
    let refs: Vec<u64> = archive
        .image("disk")
        .unwrap()
        .section()
        .extents
        .iter()
        .filter_map(|e| match e.kind() {
            Ok(ExtentKind::Data(chunk_ref)) => Some(chunk_ref),
            _ => None,
        })
        .collect();
    let ahead = ReadAhead::with_depth(archive.clone(), Arc::new(ChunkCache::new(12 * CHUNK)), 1, 3);
    assert_eq!(ahead.depth(), 3);
    let read = |chunk_ref| ahead.cache().chunk_whole(&archive, chunk_ref).unwrap();
    let held_soon = |chunk_ref| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !ahead.cache().holds(chunk_ref) {
            assert!(std::time::Instant::now() < deadline, "chunk at {chunk_ref} was never decoded ahead");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    };
    // One chunk ahead after the first move in order, one more after each
    // next: after chunk 1, chunk 2; after 2, chunks 3 and 4; after 3, 4 to 6.
    let expected = [None, Some(refs[2]), Some(refs[3]), Some(refs[5])];
    for (n, expected) in expected.into_iter().enumerate() {
        let chunk = read(refs[n]);
        assert_eq!(ahead.read_in_record_order(refs[n], &chunk), expected, "after reading chunk {n}");
        // What was asked for is decoded before the next read, so that the
        // next asks only for what is new.
        for &next in &refs[n + 1..n + 1 + n.min(3)] {
            held_soon(next);
        }
    }
    for &next in &refs[4..7] {
        held_soon(next);
    }
    assert!(!ahead.cache().holds(refs[7]), "no deeper than asked");
    // A look back at earlier chunks (a deduplicated file of two chunks), then
    // on in order: the run left is taken up again as it was.
    for back in [0, 1] {
        let chunk = read(refs[back]);
        assert_eq!(ahead.read_in_record_order(refs[back], &chunk), None, "the chunks ahead of it are held");
    }
    let fourth = read(refs[4]);
    assert_eq!(ahead.read_in_record_order(refs[4], &fourth), Some(refs[7]));
    held_soon(refs[7]);
    assert_eq!(read(refs[7]).raw, image[7 * CHUNK..8 * CHUNK]);
}
