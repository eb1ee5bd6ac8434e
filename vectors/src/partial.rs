//! A vector whose data extents read parts of chunks (`spec/FORMAT.md` 7.2:
//! `chunk_offset`, extents on the 512-byte grain in a section without the
//! used-blocks flag, a chunk read by several extents at several offsets).
//! The reference writer makes such extents in a child written against its
//! parent (15.5); here the parent is an earlier section of the same archive,
//! so that a reader without chains meets them too.

use strata_reader::{Archive, ReadAt};
use strata_writer::{ArchiveWriter, NoProgress, ParentChunk, ParentImage, ParentPart, SliceSource};

use crate::{ImageModel, Segment, Vector, CHUNK};

/// The blocks the writer compares in a window of `CHUNK` bytes.
const BLOCK: usize = 512;

/// Windows of eight 512-byte random blocks; `changed` lists (window, block,
/// seed) of the blocks replaced by other random bytes. A short text window ends it.
fn image(name: &'static str, changed: &[(usize, usize, u64)]) -> ImageModel {
    let mut segments = Vec::new();
    for window in 0..4 {
        for block in 0..CHUNK / BLOCK {
            let seed = changed
                .iter()
                .find(|c| (c.0, c.1) == (window, block))
                .map_or(1000 + (window * 8 + block) as u64, |c| c.2);
            segments.push(Segment::Random(seed, BLOCK));
        }
    }
    segments.push(Segment::Text(1_000));
    ImageModel::new(name, segments)
}

/// An image section as what another image is written against: in a later
/// section of the same archive (its chunks as they are), or in a child of the
/// archive (`rebase`: its chunks one archive number further, 15.1).
pub(crate) struct SectionView<R: ReadAt> {
    pub archive: Archive<R>,
    pub name: &'static str,
    pub rebase: bool,
}

impl<R: ReadAt> ParentImage for SectionView<R>
where
    Archive<R>: Sync,
{
    fn window(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Option<Vec<ParentPart>> {
        let image = self.archive.image(self.name).ok()?;
        if offset + len as u64 > image.len() {
            return None;
        }
        buf.clear();
        buf.resize(len, 0);
        let pieces = image.read_pieces(offset, buf).ok()?;
        let part = |piece: strata_reader::ImagePiece| {
            let chunk = match piece.kind {
                strata_format::ExtentKind::Data(chunk_ref) => Some(ParentChunk {
                    chunk_ref: match self.rebase {
                        true => strata_format::ChunkRef::split(chunk_ref).rebased().join(),
                        false => chunk_ref,
                    },
                    chunk_offset: piece.chunk_offset as u32,
                    blake3: piece.blake3,
                }),
                _ => None,
            };
            ParentPart { length: piece.length, chunk }
        };
        Some(pieces.into_iter().map(part).collect())
    }
}

pub(crate) fn vectors() -> Vec<Vector> {
    let base = image("base", &[]);
    // Window 0: blocks 2, 3 and 6 changed (one stored chunk, read at two
    // offsets); window 1 unchanged; window 2: block 7; window 3: five of
    // eight blocks, stored whole; the short window unchanged.
    let mut changed = vec![(0, 2, 1), (0, 3, 2), (0, 6, 3), (2, 7, 4)];
    changed.extend((0..5).map(|b| (3, b, 10 + b as u64)));
    let disk = image("disk", &changed);
    let write = |over: Option<&dyn ParentImage>| {
        let mut writer =
            ArchiveWriter::new(Vec::new(), crate::vector_options(CHUNK)).expect("vector options are valid");
        let (bytes, _) = base.materialise();
        writer.add_image("base", &mut SliceSource::new(&bytes), &NoProgress).expect("writing to memory");
        if over.is_some() {
            let (bytes, _) = disk.materialise();
            writer.add_image_over("disk", &mut SliceSource::new(&bytes), over, &NoProgress).expect("writing to memory");
        }
        writer.finish().expect("writing to memory").0
    };
    // The same options write "base" to the same bytes: its chunks are where
    // the first archive has them.
    let earlier =
        SectionView { archive: Archive::new(write(None)).expect("a valid archive"), name: "base", rebase: false };
    let bytes = write(Some(&earlier));
    let archive = Archive::new(bytes.clone()).expect("the vector is valid");
    let extents: Vec<_> = archive.image("disk").expect("written").extents().collect();
    assert!(extents.iter().any(|e| e.chunk_offset > 0), "an extent reads a chunk from an offset");
    assert!(extents.iter().any(|e| e.length < CHUNK as u64 && e.offset % CHUNK as u64 != 0), "a window is split");
    vec![Vector {
        name: "image-partial-chunks",
        description: "two images; \"disk\" refers to parts of the chunks of \"base\" (chunk_offset, extents on the 512-byte grain in a section without the used-blocks flag) and stores its changed blocks in one chunk per window, read at several offsets",
        bytes,
        expect: crate::Expectation::Valid(vec![base.expectation().to_json(), disk.expectation().to_json()]),
    }]
}
