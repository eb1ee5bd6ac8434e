//! A child's image window written against its parent's (`spec/FORMAT.md`
//! 15.5): the blocks that did not change refer to the parent's chunks, in
//! part if need be, and only the changed blocks are stored, in one chunk per
//! window. Rewriting 1% of a disk's blocks at random touches nearly every
//! 4 MiB window; without this each such window would be stored whole again.

use crate::chunker::{is_all_zero, prepare_chunk, KnownChunks, PreparedChunk, SparePool};

/// What a child's image sees of its parent's image of the same name: its
/// bytes and what holds them, window by window. The writer knows no archive
/// reader; the caller adapts one (the reference CLI does, from
/// `strata_reader`).
pub trait ParentImage: Sync {
    /// Fills `buf` (resized to `len`) with the parent's image bytes
    /// `offset..offset + len` and returns the parts that hold them, in image
    /// order, covering the range exactly. `None` when the parent cannot give
    /// them (the range lies past its end, in lost ranges, or in damage): the
    /// window is then stored as any other.
    fn window(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Option<Vec<ParentPart>>;
}

/// A range of a parent's image window and what holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentPart {
    /// Bytes of the image, at least 1.
    pub length: u64,
    /// The chunk bytes that hold them, or `None` for zeros (a zero or free extent).
    pub chunk: Option<ParentChunk>,
}

/// Where a child finds a part of its parent's image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentChunk {
    /// The `chunk_ref` as the child writes it: the parent's (0, o) as (1, o),
    /// an ancestor's (k, o) as (k + 1, o) (`spec/FORMAT.md` 15.1).
    pub chunk_ref: u64,
    /// Where the part starts in the chunk's raw bytes.
    pub chunk_offset: u32,
    /// The chunk's BLAKE3 (its identity in the map digest, 7.3).
    pub blake3: [u8; 32],
}

/// One part of a window written against the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeltaPart {
    /// Zeros.
    Zero { length: u64 },
    /// Unchanged: bytes of a chunk of the chain.
    Parent { length: u64, chunk: ParentChunk },
    /// Changed: bytes `pack_offset..` of the window's own new chunk.
    Changed { length: u64, pack_offset: u32 },
}

impl DeltaPart {
    /// The image bytes the part covers.
    pub(crate) fn length(&self) -> u64 {
        match *self {
            DeltaPart::Zero { length } | DeltaPart::Parent { length, .. } | DeltaPart::Changed { length, .. } => length,
        }
    }
}

/// A window written against the parent: its parts in image order, and the
/// chunk holding its changed blocks (none when only zeros changed).
pub(crate) struct DeltaWindow {
    pub parts: Vec<DeltaPart>,
    pub pack: Option<PreparedChunk>,
}

/// The block the comparison works in: 4 KiB, the block of the file systems
/// people image, or an eighth of a smaller window (at least the 512-byte
/// grain of extents, 7.2).
pub(crate) fn delta_block(chunk_size: usize) -> usize {
    (chunk_size / 8).clamp(512, 4096)
}

/// Writes `window` (image bytes from `offset`) against the parent's bytes of
/// the same range, when at most half its blocks changed; `None` otherwise, or
/// when the parent cannot give the range, and the window is stored whole.
#[allow(clippy::too_many_arguments)]
pub(crate) fn delta_window(
    window: &[u8],
    offset: u64,
    block: usize,
    parent: &dyn ParentImage,
    parent_bytes: &mut Vec<u8>,
    level: i32,
    spares: &SparePool,
    known: &KnownChunks,
) -> Option<DeltaWindow> {
    let parent_parts = parent.window(offset, window.len(), parent_bytes)?;
    if parent_bytes.len() != window.len() || parent_parts.iter().map(|p| p.length).sum::<u64>() != window.len() as u64 {
        return None;
    }
    let blocks = window.len().div_ceil(block);
    let changed: Vec<bool> = window.chunks(block).zip(parent_bytes.chunks(block)).map(|(a, b)| a != b).collect();
    let changed_count = changed.iter().filter(|&&c| c).count();
    if changed_count * 2 > blocks {
        return None;
    }
    let mut parts = Vec::new();
    let mut pack = Vec::new();
    let mut at = 0usize;
    for run in changed.chunk_by(|a, b| a == b) {
        let end = (at + run.len() * block).min(window.len());
        if run[0] {
            let bytes = &window[at..end];
            if is_all_zero(bytes) {
                parts.push(DeltaPart::Zero { length: bytes.len() as u64 });
            } else {
                let pack_offset = u32::try_from(pack.len()).expect("a window is at most 16 MiB");
                parts.push(DeltaPart::Changed { length: bytes.len() as u64, pack_offset });
                pack.extend_from_slice(bytes);
            }
        } else {
            unchanged(&parent_parts, at as u64, end as u64, &mut parts);
        }
        at = end;
    }
    let pack = (!pack.is_empty()).then(|| prepare_chunk(&pack, level, spares, known));
    Some(DeltaWindow { parts, pack })
}

/// The parts of the parent's window that hold window bytes `from..to`.
fn unchanged(parent_parts: &[ParentPart], from: u64, to: u64, out: &mut Vec<DeltaPart>) {
    let mut start = 0u64;
    for part in parent_parts {
        let end = start + part.length;
        let (a, b) = (from.max(start), to.min(end));
        if a < b {
            let length = b - a;
            out.push(match part.chunk {
                None => DeltaPart::Zero { length },
                Some(chunk) => {
                    // Inside the part, whose chunk range fits a u32 (16 MiB chunks at most).
                    let chunk_offset = chunk.chunk_offset + (a - start) as u32;
                    DeltaPart::Parent { length, chunk: ParentChunk { chunk_offset, ..chunk } }
                }
            });
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::noise;

    /// A parent whose window is one chunk holding `bytes`.
    struct OneChunk(Vec<u8>);

    impl ParentImage for OneChunk {
        fn window(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Option<Vec<ParentPart>> {
            let bytes = self.0.get(offset as usize..offset as usize + len)?;
            buf.clear();
            buf.extend_from_slice(bytes);
            let chunk = ParentChunk { chunk_ref: 1 << 56 | 128, chunk_offset: offset as u32, blake3: [9; 32] };
            Some(vec![ParentPart { length: len as u64, chunk: Some(chunk) }])
        }
    }

    fn delta(child: &[u8], parent: &OneChunk) -> Option<DeltaWindow> {
        let mut buf = Vec::new();
        delta_window(child, 0, 4096, parent, &mut buf, 3, &SparePool::default(), &KnownChunks::new())
    }

    #[test]
    fn changed_blocks_are_stored_and_the_rest_refers_to_the_parent() {
        let parent = OneChunk(noise(64 << 10, 1));
        let mut child = parent.0.clone();
        child[5000] ^= 1; // block 1
        child[40_000..40_010].fill(7); // block 9
        let window = delta(&child, &parent).expect("2 of 16 blocks changed");
        let pack = window.pack.expect("changed bytes are stored");
        assert_eq!(pack.raw_length, 8192, "only the two changed blocks");
        // The parts tile the window, and read back the child's bytes.
        let mut rebuilt = Vec::new();
        let raw = [&child[4096..8192], &child[36_864..40_960]].concat();
        for part in &window.parts {
            match *part {
                DeltaPart::Parent { length, chunk } => {
                    let from = chunk.chunk_offset as usize;
                    rebuilt.extend_from_slice(&parent.0[from..from + length as usize]);
                }
                DeltaPart::Changed { length, pack_offset } => {
                    rebuilt.extend_from_slice(&raw[pack_offset as usize..pack_offset as usize + length as usize]);
                }
                DeltaPart::Zero { length } => rebuilt.resize(rebuilt.len() + length as usize, 0),
            }
        }
        assert_eq!(rebuilt, child);
        assert_eq!(window.parts.len(), 5, "unchanged, changed, unchanged, changed, unchanged");
    }

    #[test]
    fn a_window_mostly_changed_is_stored_whole() {
        let parent = OneChunk(noise(64 << 10, 1));
        let child = noise(64 << 10, 2);
        assert!(delta(&child, &parent).is_none());
        // An unchanged window refers to the parent alone.
        let same = delta(&parent.0, &parent).expect("nothing changed");
        assert!(same.pack.is_none());
        assert_eq!(same.parts.len(), 1);
    }

    #[test]
    fn the_block_is_4_kib_or_an_eighth_of_a_small_window() {
        assert_eq!(delta_block(4 << 20), 4096);
        assert_eq!(delta_block(16 << 10), 2048);
        assert_eq!(delta_block(4096), 512);
    }
}
