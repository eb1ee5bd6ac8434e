//! Vectors of used-blocks image sections (`spec/FORMAT.md` 7): free extents,
//! data extents inside a window at 512-byte granularity, the `IMAGE_BEGIN` flag.

use strata_writer::{ArchiveWriter, NoProgress, UsedBlocks};

use crate::{ImageModel, ModelSource, Segment, Vector, CHUNK};

/// A 26,576-byte image (six 4 KiB windows and a short one) whose free space is:
/// window 1 whole, 1,024..3,072 of window 2, windows 3 and 4 whole and the
/// first 512 bytes of window 5 (one free extent across three windows).
fn model() -> (ImageModel, Vec<std::ops::Range<u64>>) {
    let image = ImageModel::new(
        "disk",
        vec![
            Segment::Text(4096),
            Segment::Random(11, 4096),
            Segment::Text(4096),
            Segment::Random(12, 8192),
            Segment::Text(4096),
            Segment::Repeat(0xAB, 2000),
        ],
    );
    let free = vec![4096..8192, 9216..11264, 12288..20480, 20480..20992];
    (image, free)
}

pub(crate) fn valid_vectors() -> Vec<Vector> {
    let (image, free) = model();
    let (mut bytes, holes) = image.materialise();
    let mut options = crate::vector_options(CHUNK);
    options.chunk_size = CHUNK as u32;
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("vector options are valid");
    let source = ModelSource { bytes: bytes.clone(), holes, position: 0, size_known: true };
    let mut source = UsedBlocks::new(source, free.clone()).with_min_gap(512);
    writer.add_image(image.name, &mut source, &NoProgress).expect("writing to memory cannot fail");
    let archive = writer.finish().expect("writing to memory cannot fail").0;
    // What a reader gives back: the free bytes as zeros. No used stretch of
    // the model is all zeros, so every byte that is not free is data.
    let free_bytes: u64 = free.iter().map(|r| r.end - r.start).sum();
    for range in &free {
        bytes[range.start as usize..range.end as usize].fill(0);
    }
    let expectation = crate::SectionExpectation {
        name: image.name,
        logical_size: bytes.len() as u64,
        data_bytes: bytes.len() as u64 - free_bytes,
        free_bytes,
        blake3: blake3::hash(&bytes).to_hex().to_string(),
    };
    vec![Vector {
        name: "image-used-blocks",
        description: "a used-blocks image (IMAGE_BEGIN flag bit 0): free extents (one whole window, one across three windows), data extents inside windows at 512-byte granularity; free bytes read as zeros",
        bytes: archive,
        expect: crate::Expectation::Valid(vec![expectation.to_json()]),
    }]
}
