//! Decoding a chunk: header rules, zstd frame rules, exact-size output, BLAKE3.

use std::cell::RefCell;

use strata_format::chunk::validate_zstd_frame;
use strata_format::{split_array, ChunkEncoding, ChunkHeader, ErrorClass, FormatError};

thread_local! {
    /// One zstd decompression context per thread, reused.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn corrupt(what: &'static str, detail: impl Into<String>) -> FormatError {
    FormatError::new(ErrorClass::ChunkCorrupt, what, detail)
}

/// Decodes the body of a `CHUNK` record (CRC already checked) into its raw bytes,
/// checking every rule of the format's chunk section. Returns the header too.
pub fn decode_chunk(body: &[u8]) -> Result<(ChunkHeader, Vec<u8>), FormatError> {
    let (head, stored) = split_array::<{ ChunkHeader::SIZE }>(body).ok_or_else(|| {
        FormatError::new(ErrorClass::RecordMalformed, "CHUNK body", "shorter than its 40-byte header")
    })?;
    let header = ChunkHeader::decode(head);
    let encoding = header.validate(stored.len() as u64)?;
    let raw_length = header.raw_length as usize;
    let raw = match encoding {
        ChunkEncoding::Raw => stored.to_vec(),
        ChunkEncoding::Zstd => {
            validate_zstd_frame(stored, header.raw_length)?;
            match zstd::zstd_safe::find_frame_compressed_size(stored) {
                Ok(n) if n == stored.len() => {}
                Ok(n) => {
                    return Err(corrupt(
                        "zstd frame",
                        format!(
                            "the frame takes {n} of the {} stored bytes; exactly one frame is allowed",
                            stored.len()
                        ),
                    ))
                }
                Err(code) => return Err(corrupt("zstd frame", zstd::zstd_safe::get_error_name(code).to_string())),
            }
            // Capacity is the raw length from the chunk header, never a size from the
            // frame: a frame that expands further fails instead of allocating.
            let mut out = Vec::with_capacity(raw_length);
            DECOMPRESSOR
                .with(|cell| {
                    let mut cell = cell.borrow_mut();
                    if cell.is_none() {
                        let mut d = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
                        d.window_log_max(24).map_err(|e| e.to_string())?;
                        *cell = Some(d);
                    }
                    let d = cell.as_mut().expect("decompressor was just installed");
                    d.decompress_to_buffer(stored, &mut out).map_err(|e| e.to_string())
                })
                .map_err(|e| corrupt("zstd frame", e))?;
            if out.len() != raw_length {
                return Err(corrupt(
                    "zstd frame",
                    format!("decodes to {} bytes, the chunk declares {raw_length}", out.len()),
                ));
            }
            out
        }
    };
    let hash = blake3::hash(&raw);
    if hash.as_bytes() != &header.blake3 {
        return Err(corrupt("chunk BLAKE3", format!("stored {}, computed {}", hex(&header.blake3), hash.to_hex())));
    }
    Ok((header, raw))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
