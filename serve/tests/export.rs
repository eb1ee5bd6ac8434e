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
    Archive::open(Counted { bytes, read: AtomicU64::new(0) }).unwrap()
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
