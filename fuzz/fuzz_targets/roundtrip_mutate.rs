//! Structure-aware round trip. An arbitrary model of 1 to 3 images is written with
//! the writer (4 KiB chunks, one thread); the archive must open, verify clean and
//! read back equal to the model, by random access and front to back. Then a few
//! arbitrary byte mutations are applied: every reader must survive them without
//! panicking, and `verify` must not call a changed archive clean unless the change
//! left an archive with exactly the same content (the fuzzer re-forged the CRCs).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use strata_fuzz::{read_some, MemorySink, SliceSource};
use strata_reader::verify::verify;
use strata_reader::{stream, Archive, Limits, Section};
use strata_writer::{ArchiveWriter, NoProgress, WriterOptions};

const CHUNK_SIZE: u32 = 4096;
/// Most bytes of all the model's images together.
const MODEL_CAP: usize = 256 << 10;
const MAX_IMAGES: usize = 3;
const MAX_MUTATIONS: usize = 8;
const NAMES: [&str; MAX_IMAGES] = ["disk", "part1", "part2"];

#[derive(Arbitrary, Debug)]
enum Segment {
    /// Zeros: become zero extents when they fill whole windows.
    Zero(u16),
    /// Incompressible bytes from a seed: stored raw. Equal seeds at equal window
    /// alignment give deduplicated chunks.
    Random { seed: u64, len: u16 },
    /// One byte repeated: compresses well, and deduplicates across windows.
    Repeat { byte: u8, len: u16 },
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    /// XOR one byte with `mask`.
    Flip { at: u32, mask: u8 },
    /// Overwrite up to 8 bytes from `at`.
    Overwrite { at: u32, bytes: Vec<u8> },
    /// Cut the archive to `keep` bytes (modulo its length).
    Truncate { keep: u32 },
}

#[derive(Debug)]
struct Input {
    uuid: [u8; 16],
    /// Windows per batch, 1 to 16: small batches exercise batch boundaries.
    batch_windows: u8,
    images: Vec<Vec<Segment>>,
    mutations: Vec<Mutation>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let uuid = u.arbitrary()?;
        let batch_windows = u.int_in_range(1..=16)?;
        let image_count = u.int_in_range(1..=MAX_IMAGES)?;
        let mut images = Vec::with_capacity(image_count);
        for _ in 0..image_count {
            let segments = u.int_in_range(0..=8)?;
            let mut image = Vec::with_capacity(segments);
            for _ in 0..segments {
                image.push(u.arbitrary()?);
            }
            images.push(image);
        }
        let mutation_count = u.int_in_range(0..=MAX_MUTATIONS)?;
        let mut mutations = Vec::with_capacity(mutation_count);
        for _ in 0..mutation_count {
            mutations.push(u.arbitrary()?);
        }
        Ok(Input { uuid, batch_windows, images, mutations })
    }
}

/// splitmix64: cheap deterministic bytes from a seed.
fn random_bytes(seed: u64, len: usize, out: &mut Vec<u8>) {
    let mut state = seed;
    let mut left = len;
    while left > 0 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let take = left.min(8);
        out.extend_from_slice(&z.to_le_bytes()[..take]);
        left -= take;
    }
}

/// The images' bytes, all together at most `MODEL_CAP`.
fn build_images(model: &[Vec<Segment>]) -> Vec<Vec<u8>> {
    let mut budget = MODEL_CAP;
    model
        .iter()
        .map(|segments| {
            let mut image = Vec::new();
            for segment in segments {
                let len = match *segment {
                    Segment::Zero(len) | Segment::Random { len, .. } | Segment::Repeat { len, .. } => {
                        usize::from(len).min(budget)
                    }
                };
                budget -= len;
                match *segment {
                    Segment::Zero(_) => image.resize(image.len() + len, 0),
                    Segment::Random { seed, .. } => random_bytes(seed, len, &mut image),
                    Segment::Repeat { byte, .. } => image.resize(image.len() + len, byte),
                }
            }
            image
        })
        .collect()
}

fn write_archive(input: &Input, images: &[Vec<u8>]) -> Vec<u8> {
    let mut options = WriterOptions::new(input.uuid, 0);
    options.chunk_size = CHUNK_SIZE;
    options.threads = 1;
    options.batch_bytes = CHUNK_SIZE as usize * usize::from(input.batch_windows);
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("valid writer options");
    for (name, image) in NAMES.iter().zip(images) {
        writer
            .add_image(name, &mut SliceSource::new(image), &NoProgress)
            .unwrap_or_else(|e| panic!("writing image {name:?} failed: {e}"));
    }
    let (bytes, summary) = writer.finish().expect("finishing the archive");
    assert_eq!(summary.archive_length, bytes.len() as u64);
    assert_eq!(summary.images.len(), images.len());
    bytes
}

/// Whether `archive` opens and holds exactly `images`, read by random access.
fn holds_images(archive: &[u8], images: &[Vec<u8>]) -> Result<(), String> {
    let archive = Archive::new(archive).map_err(|e| format!("open: {e}"))?;
    if archive.sections().len() != images.len() {
        return Err(format!("{} sections for {} images", archive.sections().len(), images.len()));
    }
    for (name, expected) in NAMES.iter().zip(images) {
        let image = archive.image(name).map_err(|e| format!("{name:?}: {e}"))?;
        if image.len() != expected.len() as u64 {
            return Err(format!("{name:?}: logical size {}, expected {}", image.len(), expected.len()));
        }
        // One byte more than the image, to check the read stops at its end.
        let mut buf = vec![0xa5; expected.len() + 1];
        let n = image.read_at(0, &mut buf).map_err(|e| format!("{name:?}: read: {e}"))?;
        if n != expected.len() || buf[..n] != expected[..] {
            return Err(format!("{name:?}: read back {n} bytes that differ from the image"));
        }
        let mut streamed = Vec::new();
        std::io::Read::read_to_end(&mut image.reader(), &mut streamed)
            .map_err(|e| format!("{name:?}: read through Read: {e}"))?;
        if streamed != *expected {
            return Err(format!("{name:?}: Read gave {} bytes that differ from the image", streamed.len()));
        }
    }
    Ok(())
}

fn mutate(archive: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        if archive.is_empty() {
            return;
        }
        let len = archive.len();
        match mutation {
            Mutation::Flip { at, mask } => archive[*at as usize % len] ^= mask,
            Mutation::Overwrite { at, bytes } => {
                let at = *at as usize % len;
                for (slot, byte) in archive[at..].iter_mut().zip(bytes.iter().take(8)) {
                    *slot = *byte;
                }
            }
            Mutation::Truncate { keep } => archive.truncate(*keep as usize % len),
        }
    }
}

fuzz_target!(|input: Input| {
    let images = build_images(&input.images);
    let original = write_archive(&input, &images);

    // The archive as written is valid: a failure here is a writer or reader bug.
    if let Err(e) = holds_images(&original, &images) {
        panic!("the unmutated archive does not read back: {e}");
    }
    let report = verify(&original, Limits::default(), &|_| {}).expect("verify of a Vec");
    assert!(report.is_clean(), "verify found problems in the unmutated archive: {:?}", report.problems);
    assert_eq!(report.sections.len(), images.len());
    let archive = Archive::new(original.as_slice()).expect("opened above");
    for (name, expected) in NAMES.iter().zip(&images) {
        let Some(Section::Image(image)) = archive.sections().iter().find(|s| s.name() == *name) else {
            panic!("no section {name:?}");
        };
        let mut sink = MemorySink::new();
        archive
            .restore_image(image, &mut sink, &|_| {})
            .unwrap_or_else(|e| panic!("random-access restore of {name:?}: {e}"));
        assert!(sink.contents().as_ref() == Some(expected), "random-access restore of {name:?} differs");

        let mut sink = MemorySink::new();
        let size = stream::restore_image(original.as_slice(), name, &mut sink, Limits::default(), &|_| {})
            .unwrap_or_else(|e| panic!("front-to-back restore of {name:?}: {e}"));
        assert_eq!(size, expected.len() as u64);
        assert!(sink.contents().as_ref() == Some(expected), "front-to-back restore of {name:?} differs");
    }

    // Damage it: nothing may panic, and verify must notice.
    let mut damaged = original.clone();
    mutate(&mut damaged, &input.mutations);
    if let Ok(archive) = Archive::new(damaged.as_slice()) {
        read_some(&archive, 64 << 10);
        for section in archive.sections() {
            let Section::Image(image) = section else {
                continue;
            };
            if image.logical_size <= MODEL_CAP as u64 {
                let mut buf = vec![0; image.logical_size as usize];
                let _ = archive.read_image_at(image, 0, &mut buf);
                let _ = archive.restore_image(image, &mut MemorySink::new(), &|_| {});
            }
        }
    }
    for name in NAMES.iter().take(images.len()) {
        let _ = stream::restore_image(damaged.as_slice(), name, &mut MemorySink::new(), Limits::default(), &|_| {});
    }
    let report = verify(&damaged, Limits::default(), &|_| {})
        .expect("verify fails only when the source cannot be read, and a Vec can");
    if damaged != original && report.is_clean() {
        // A CRC is not a MAC: mutations that rewrite a field and its CRCs leave a
        // valid archive. That is only acceptable if it still holds the same images.
        if let Err(e) = holds_images(&damaged, &images) {
            panic!(
                "verify reported a changed archive ({} bytes, was {}) as clean, but it no longer holds the images: {e}",
                damaged.len(),
                original.len()
            );
        }
    }
});
