//! Turns one chunk window into what the archive stores for it: nothing (all
//! zeros), or a chunk with its identity and its stored bytes.

use std::cell::RefCell;

use strata_format::ChunkEncoding;

/// A window ready to be written.
pub(crate) enum PreparedWindow {
    /// A hole or all-zero window: becomes (part of) a zero extent.
    Zero { length: u64 },
    /// A window whose data was lost (salvage): becomes (part of) a lost extent.
    Lost { length: u64 },
    /// A window with data: becomes a data extent and, unless deduplicated, a chunk.
    Data(PreparedChunk),
}

impl PreparedWindow {
    /// The image bytes the window covers.
    pub(crate) fn length(&self) -> u64 {
        match self {
            PreparedWindow::Zero { length } | PreparedWindow::Lost { length } => *length,
            PreparedWindow::Data(chunk) => u64::from(chunk.raw_length),
        }
    }
}

pub(crate) struct PreparedChunk {
    pub blake3: [u8; 32],
    pub raw_length: u32,
    pub encoding: ChunkEncoding,
    /// The bytes after the chunk header: the zstd frame, or the raw bytes.
    pub stored: Vec<u8>,
}

/// Whether every byte is zero; the inner fold has no early exit so it vectorises.
pub(crate) fn is_all_zero(data: &[u8]) -> bool {
    data.chunks(4096).all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

thread_local! {
    /// One zstd context per worker thread, reused for every chunk it compresses.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Compresses `raw` into one zstd frame if that is smaller than `raw`; `None` if not.
fn compress(raw: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().map(|(l, _)| *l) != Some(level) {
            let mut compressor = zstd::bulk::Compressor::new(level).ok()?;
            use zstd::zstd_safe::CParameter;
            // The format requires the content size, forbids dictionaries, and needs
            // no frame checksum (BLAKE3 and the record CRC cover the data).
            compressor.set_parameter(CParameter::ContentSizeFlag(true)).ok()?;
            compressor.set_parameter(CParameter::ChecksumFlag(false)).ok()?;
            compressor.set_parameter(CParameter::DictIdFlag(false)).ok()?;
            *cell = Some((level, compressor));
        }
        let (_, compressor) = cell.as_mut().expect("compressor was just installed");
        // A destination one byte short of the input makes zstd fail exactly when
        // compression would not shrink the chunk, which then is stored raw.
        let mut out = Vec::with_capacity(raw.len() - 1);
        compressor.compress_to_buffer(raw, &mut out).ok()?;
        Some(out)
    })
}

/// Prepares one image window whose bytes were read (holes never reach here):
/// all-zero windows store nothing.
pub(crate) fn prepare(raw: &[u8], level: i32) -> PreparedWindow {
    if is_all_zero(raw) {
        return PreparedWindow::Zero { length: raw.len() as u64 };
    }
    PreparedWindow::Data(prepare_chunk(raw, level))
}

/// Hashes and compresses one chunk's raw bytes.
pub(crate) fn prepare_chunk(raw: &[u8], level: i32) -> PreparedChunk {
    let blake3 = *blake3::hash(raw).as_bytes();
    let raw_length = u32::try_from(raw.len()).expect("windows are at most 16 MiB");
    let (encoding, stored) = match compress(raw, level) {
        Some(frame) => (ChunkEncoding::Zstd, frame),
        None => (ChunkEncoding::Raw, raw.to_vec()),
    };
    PreparedChunk { blake3, raw_length, encoding, stored }
}
