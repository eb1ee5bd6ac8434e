//! Turns one chunk window into what the archive stores for it: nothing (all
//! zeros), or a chunk with its identity and its stored bytes
//! (`spec/FORMAT.md` section 6, and section 14 on when a chunk is stored raw).

use std::cell::RefCell;

use strata_format::ChunkEncoding;

/// A window ready to be written.
pub(crate) enum PreparedWindow {
    /// A hole or all-zero window: becomes (part of) a zero extent.
    Zero { length: u64 },
    /// A window whose data was lost (salvage): becomes (part of) a lost extent.
    Lost { length: u64 },
    /// Free space of a file system (used-blocks capture): becomes (part of) a free extent.
    Free { length: u64 },
    /// A window split at free ranges (used-blocks capture): its pieces in
    /// image order, each data, zero or free, none itself split.
    Pieces(Vec<PreparedWindow>),
    /// A window with data: becomes a data extent and, unless deduplicated, a chunk.
    Data(PreparedChunk),
    /// A child's window written against its parent's: parts of the chain's
    /// chunks, and a chunk of its changed blocks (`spec/FORMAT.md` 15.5).
    Delta(crate::image_delta::DeltaWindow),
}

impl PreparedWindow {
    /// The image bytes the window covers.
    pub(crate) fn length(&self) -> u64 {
        match self {
            PreparedWindow::Zero { length } | PreparedWindow::Lost { length } | PreparedWindow::Free { length } => {
                *length
            }
            PreparedWindow::Pieces(pieces) => pieces.iter().map(PreparedWindow::length).sum(),
            PreparedWindow::Data(chunk) => u64::from(chunk.raw_length),
            PreparedWindow::Delta(delta) => delta.parts.iter().map(crate::image_delta::DeltaPart::length).sum(),
        }
    }
}

pub(crate) struct PreparedChunk {
    pub blake3: [u8; 32],
    pub raw_length: u32,
    pub encoding: ChunkEncoding,
    /// The bytes after the chunk header: the zstd frame, or the raw bytes;
    /// empty for a chunk the chain has, which is not compressed.
    pub stored: Vec<u8>,
}

impl PreparedChunk {
    /// Whether its bytes were prepared for writing: false for a chunk the
    /// chain has ([`prepare_chunk`]), which may only be referred to.
    pub(crate) fn is_stored(&self) -> bool {
        self.raw_length == 0 || !self.stored.is_empty()
    }
}

/// Whether every byte is zero, tested 4 KiB at a time so non-zero data stops early.
pub(crate) fn is_all_zero(data: &[u8]) -> bool {
    data.chunks(4096).all(strata_format::is_zero)
}

thread_local! {
    /// One zstd context per worker thread, reused for every chunk it compresses.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Compresses `raw` into one zstd frame in `out` if that is smaller than `raw`;
/// returns whether it did.
fn compress_into(raw: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().map(|(l, _)| *l) != Some(level) {
            let Ok(mut compressor) = zstd::bulk::Compressor::new(level) else { return false };
            use zstd::zstd_safe::CParameter;
            // The format requires the content size, forbids dictionaries, and needs
            // no frame checksum (BLAKE3 and the record CRC cover the data).
            let set = [
                compressor.set_parameter(CParameter::ContentSizeFlag(true)),
                compressor.set_parameter(CParameter::ChecksumFlag(false)),
                compressor.set_parameter(CParameter::DictIdFlag(false)),
            ];
            if set.iter().any(Result::is_err) {
                return false;
            }
            *cell = Some((level, compressor));
        }
        let Some((_, compressor)) = cell.as_mut() else { return false };
        // A window that covers the whole chunk: level 3 would keep 2 MiB of a
        // 4 MiB chunk, and matches further back are lost. Measured on the corpus
        // image: 0.6% smaller, same CPU time (alternating runs, one thread).
        // zstd lowers it again for an input shorter than its table's window (a
        // probe sample, a small chunk). Set before the probe, so the context's
        // state never depends on the chunk this thread compressed before.
        let window_log = (usize::BITS - raw.len().saturating_sub(1).leading_zeros()).clamp(10, 24);
        if compressor.set_parameter(zstd::zstd_safe::CParameter::WindowLog(window_log)).is_err() {
            return false;
        }
        if looks_incompressible(compressor, raw) {
            return false;
        }
        out.clear();
        // Room for any frame: with less, zstd takes another path whose output
        // can differ, so the result would depend on the capacity of the spare
        // buffer this thread happened to reuse, and archives on the thread
        // count (found by the property test). A frame that does not shrink
        // the chunk is refused, and the chunk is stored raw.
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        matches!(compressor.compress_to_buffer(raw, out), Ok(n) if n < raw.len())
    })
}

/// A table's body compressed under `spec/FORMAT.md` 5.2 (one frame, content
/// size present, no dictionary, a window that covers the body up to 16 MiB),
/// or `None` when that does not make it smaller. Tables are small and
/// deterministic input, so the same body always gives the same frame.
pub(crate) fn compress_table(body: &[u8], level: i32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    compress_into(body, level, &mut out).then_some(out)
}

/// A table's body compressed against `prefix`, a table of the parent
/// (`spec/FORMAT.md` 5.3): one frame under the rules of 5.2, whose matches
/// may reach into the prefix, with a window that covers the prefix and the
/// body (up to 16 MiB). `None` when it is not smaller than the body.
pub(crate) fn compress_table_with_prefix(body: &[u8], level: i32, prefix: &[u8]) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    let span = body.len().saturating_add(prefix.len());
    let window_log = (usize::BITS - span.saturating_sub(1).leading_zeros()).clamp(10, 24);
    for parameter in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        cctx.set_parameter(parameter).ok()?;
    }
    cctx.ref_prefix(prefix).ok()?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(body.len()));
    let n = cctx.compress2(&mut out, body).ok()?;
    (n < body.len()).then_some(out)
}

/// Whether a large chunk is already compressed (media, archives, encrypted or
/// random bytes): 256 samples of 256 bytes, one every 1/256 of the chunk,
/// compressed alone, save under 0.5% together, and the chunk has no more zero
/// bytes than random data. Such a chunk is stored raw without spending a full
/// compression on it. What a compressible stretch shorter than the sample
/// stride (16 KiB in a 4 MiB chunk) would have saved is lost; the decision
/// depends only on the bytes, so output stays deterministic.
fn looks_incompressible(compressor: &mut zstd::bulk::Compressor<'static>, raw: &[u8]) -> bool {
    const SAMPLES: usize = 256;
    const SAMPLE: usize = 256;
    if raw.len() < 256 << 10 {
        return false;
    }
    let stride = raw.len() / SAMPLES;
    let mut out = Vec::with_capacity(4 * SAMPLE);
    // Savings only grow sample by sample: once they reach 0.5% of all samples
    // the answer is "compressible" whatever the rest hold, so a compressible
    // chunk stops after a few samples with the answer the full probe gives.
    let enough = SAMPLES * SAMPLE * 5 / 1000;
    let mut saved = 0usize;
    for i in 0..SAMPLES {
        let sample = &raw[i * stride..i * stride + SAMPLE];
        out.clear();
        if let Ok(n) = compressor.compress_to_buffer(sample, &mut out) {
            saved += SAMPLE.saturating_sub(n);
        }
        if saved > enough {
            return false;
        }
    }
    // Compressed files on a file system end in zero padding that zstd still
    // saves: more zero bytes than random data has (1 in 256) means compress.
    let zeros: usize = raw.chunks(4096).map(|block| block.iter().filter(|&&b| b == 0).count()).sum();
    zeros * 128 < raw.len()
}

/// Prepares one image window whose bytes were read (holes never reach here):
/// all-zero windows store nothing.
///
/// A chunk stored raw takes `buffer` itself, and `buffer` becomes a spare: no copy.
pub(crate) fn prepare(
    buffer: &mut Vec<u8>,
    len: usize,
    level: i32,
    spares: &SparePool,
    known: &KnownChunks,
) -> PreparedWindow {
    let raw = &buffer[..len];
    if is_all_zero(raw) {
        return PreparedWindow::Zero { length: len as u64 };
    }
    let mut chunk = prepare_chunk(raw, level, spares, known);
    if chunk.encoding == ChunkEncoding::Raw && buffer.len() == len {
        std::mem::swap(buffer, &mut chunk.stored);
    }
    PreparedWindow::Data(chunk)
}

/// Prepares a window of a used-blocks source split at `holes`, ranges of
/// window bytes that hold free space or were lost: each stretch between them
/// becomes its own chunk (or zero extent), each hole an extent of its kind.
/// Without holes, as [`prepare`].
pub(crate) fn prepare_split(
    buffer: &mut Vec<u8>,
    len: usize,
    holes: &[(std::ops::Range<usize>, crate::Hole)],
    cuts: &[usize],
    level: i32,
    spares: &SparePool,
    known: &KnownChunks,
) -> PreparedWindow {
    if holes.is_empty() && cuts.is_empty() {
        return prepare(buffer, len, level, spares, known);
    }
    let mut pieces = Vec::with_capacity(2 * holes.len() + cuts.len() + 1);
    let mut used_from = 0;
    // The bytes `from..to` between holes: a chunk, or zeros, between each
    // two cuts.
    let used = |from: usize, to: usize, pieces: &mut Vec<PreparedWindow>| {
        let inside = cuts.iter().copied().filter(|&cut| cut > from && cut < to);
        let mut at = from;
        for end in inside.chain(std::iter::once(to)) {
            if at < end {
                let raw = &buffer[at..end];
                pieces.push(if is_all_zero(raw) {
                    PreparedWindow::Zero { length: (end - at) as u64 }
                } else {
                    PreparedWindow::Data(prepare_chunk(raw, level, spares, known))
                });
            }
            at = end;
        }
    };
    for (range, hole) in holes {
        used(used_from, range.start, &mut pieces);
        let length = (range.end - range.start) as u64;
        pieces.push(match hole {
            crate::Hole::Free => PreparedWindow::Free { length },
            crate::Hole::Lost => PreparedWindow::Lost { length },
        });
        used_from = range.end;
    }
    used(used_from, len, &mut pieces);
    PreparedWindow::Pieces(pieces)
}

/// The chunks of an incremental archive's chain, by BLAKE3, to their
/// `chunk_ref`s: fixed when the writer starts, shared with the workers.
pub(crate) type KnownChunks = std::collections::HashMap<[u8; 32], u64>;

/// Hashes and compresses one chunk's raw bytes. A chunk the chain already
/// has (`known`) is not compressed: it will be referred to, never written,
/// so its `stored` stays empty ([`PreparedChunk::is_stored`] is false).
pub(crate) fn prepare_chunk(raw: &[u8], level: i32, spares: &SparePool, known: &KnownChunks) -> PreparedChunk {
    let blake3 = *blake3::hash(raw).as_bytes();
    let raw_length = u32::try_from(raw.len()).expect("windows are at most 16 MiB");
    if known.contains_key(&blake3) {
        return PreparedChunk { blake3, raw_length, encoding: ChunkEncoding::Raw, stored: Vec::new() };
    }
    let mut stored = spares.take();
    let encoding = if compress_into(raw, level, &mut stored) {
        ChunkEncoding::Zstd
    } else {
        stored.clear();
        stored.extend_from_slice(raw);
        ChunkEncoding::Raw
    };
    PreparedChunk { blake3, raw_length, encoding, stored }
}

/// Buffers for stored chunk bytes, handed back once a chunk is written: memory
/// is reused instead of freshly faulted in for every chunk. The pool keeps at
/// most `KEPT_BYTES` of capacity, so it never holds more than a few chunks.
#[derive(Default)]
pub(crate) struct SparePool(std::sync::Mutex<(Vec<Vec<u8>>, usize)>);

impl SparePool {
    const KEPT_BYTES: usize = 24 << 20;

    pub(crate) fn take(&self) -> Vec<u8> {
        let Ok(mut pool) = self.0.lock() else { return Vec::new() };
        match pool.0.pop() {
            Some(buffer) => {
                pool.1 -= buffer.capacity();
                buffer
            }
            None => Vec::new(),
        }
    }

    pub(crate) fn give(&self, buffer: Vec<u8>) {
        if let Ok(mut pool) = self.0.lock() {
            if pool.1 + buffer.capacity() <= Self::KEPT_BYTES {
                pool.1 += buffer.capacity();
                pool.0.push(buffer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A chunk the chain has is hashed, not compressed: it is referred to and
    /// never written, and the store refuses to write one (`is_stored`).
    #[test]
    fn a_chunk_the_chain_has_is_not_compressed() {
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let fresh = prepare_chunk(&raw, 3, &SparePool::default(), &KnownChunks::default());
        assert!(fresh.is_stored() && fresh.encoding == ChunkEncoding::Zstd);
        let known: KnownChunks = [(fresh.blake3, 7u64)].into_iter().collect();
        let found = prepare_chunk(&raw, 3, &SparePool::default(), &known);
        assert_eq!((found.blake3, found.raw_length), (fresh.blake3, fresh.raw_length));
        assert!(!found.is_stored() && found.stored.is_empty(), "not compressed");
        let other = prepare_chunk(&raw[1..], 3, &SparePool::default(), &known);
        assert!(other.is_stored(), "other bytes are compressed as ever");
    }

    #[test]
    fn random_chunks_are_stored_raw_without_a_full_compression() {
        let raw = noise(4 << 20, 7);
        let chunk = prepare_chunk(&raw, 3, &SparePool::default(), &KnownChunks::default());
        assert_eq!(chunk.encoding, ChunkEncoding::Raw);
        assert_eq!(chunk.stored, raw);
    }

    #[test]
    fn compressed_data_with_zero_padding_is_still_compressed() {
        // Like .gz files on a file system: random blocks whose tails are zero.
        let mut raw = noise(4 << 20, 9);
        for block in raw.chunks_mut(4096) {
            block[3000..].fill(0);
        }
        let chunk = prepare_chunk(&raw, 3, &SparePool::default(), &KnownChunks::default());
        assert_eq!(chunk.encoding, ChunkEncoding::Zstd);
        assert!(chunk.stored.len() < raw.len() * 80 / 100, "{}", chunk.stored.len());
    }

    #[test]
    fn a_compressible_region_between_samples_is_not_missed() {
        let mut raw = noise(4 << 20, 11);
        // Text between two sample positions of a sparser probe (every 64 KiB).
        raw[70_000..120_000].copy_from_slice(&b"strata ".repeat(50_000 / 7 + 1)[..50_000]);
        let chunk = prepare_chunk(&raw, 3, &SparePool::default(), &KnownChunks::default());
        assert_eq!(chunk.encoding, ChunkEncoding::Zstd);
        assert!(chunk.stored.len() < raw.len());
    }

    /// The decision and the bytes depend on the chunk alone, not on the spare
    /// buffer it is compressed into (tight, large, or reused).
    #[test]
    fn a_chunk_compresses_the_same_whatever_buffer_it_gets() {
        let inputs: Vec<Vec<u8>> = (1..64)
            .map(|n| vec![198u8; n])
            .chain((1..64).map(|n| noise(n, n as u64)))
            .chain([b"strata ".repeat(40), noise(5000, 3)])
            .collect();
        for raw in &inputs {
            let fresh = prepare_chunk(raw, 3, &SparePool::default(), &KnownChunks::default());
            for capacity in [0, raw.len(), raw.len() + 1, 1 << 20] {
                let spares = SparePool::default();
                spares.give(Vec::with_capacity(capacity));
                let chunk = prepare_chunk(raw, 3, &spares, &KnownChunks::default());
                assert_eq!((chunk.encoding, &chunk.stored), (fresh.encoding, &fresh.stored), "{} bytes", raw.len());
            }
        }
    }

    #[test]
    fn a_raw_window_gives_its_buffer_to_the_chunk() {
        let mut buffer = noise(1 << 20, 5);
        let copy = buffer.clone();
        let PreparedWindow::Data(chunk) =
            prepare(&mut buffer, copy.len(), 3, &SparePool::default(), &KnownChunks::default())
        else {
            panic!("data")
        };
        assert_eq!(chunk.encoding, ChunkEncoding::Raw);
        assert_eq!(chunk.stored, copy);
    }
}
