//! Decoding a chunk: header rules, zstd frame rules, exact-size output, BLAKE3.

use std::cell::RefCell;

use strata_format::chunk::validate_zstd_frame;
use strata_format::{split_array, ChunkEncoding, ChunkHeader, ErrorClass, FormatError};

thread_local! {
    /// One zstd decompression context per thread, reused.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    /// One streaming context per thread, for partial decodes.
    static STREAM: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// How much stored input a partial decode hands zstd at a time: one maximal
/// block (section 6: blocks are at most 128 KiB).
const PARTIAL_INPUT_STEP: usize = 128 * 1024;

fn corrupt(what: &'static str, detail: impl Into<String>) -> FormatError {
    FormatError::new(ErrorClass::ChunkCorrupt, what, detail)
}

/// Splits a `CHUNK` body into its header and stored bytes, checking the header
/// and, for zstd, the frame's header rules and that it is exactly one frame.
fn split_checked(body: &[u8]) -> Result<(ChunkHeader, ChunkEncoding, &[u8]), FormatError> {
    let (head, stored) = split_array::<{ ChunkHeader::SIZE }>(body).ok_or_else(|| {
        FormatError::new(ErrorClass::RecordMalformed, "CHUNK body", "shorter than its 40-byte header")
    })?;
    let header = ChunkHeader::decode(head);
    let encoding = header.validate(stored.len() as u64)?;
    if encoding == ChunkEncoding::Zstd {
        validate_zstd_frame(stored, header.raw_length)?;
        match zstd::zstd_safe::find_frame_compressed_size(stored) {
            Ok(n) if n == stored.len() => {}
            Ok(n) => {
                return Err(corrupt(
                    "zstd frame",
                    format!("the frame takes {n} of the {} stored bytes; exactly one frame is allowed", stored.len()),
                ))
            }
            Err(code) => return Err(corrupt("zstd frame", zstd::zstd_safe::get_error_name(code).to_string())),
        }
    }
    Ok((header, encoding, stored))
}

/// Decodes the first `prefix` raw bytes of a `CHUNK` body whose record CRC was
/// checked: a read of part of a chunk stops decoding where the part ends. The
/// header and frame rules are checked; the BLAKE3, which covers the whole
/// chunk, is not (FORMAT.md 10.1 allows this for partial reads).
pub fn decode_chunk_prefix(body: &[u8], prefix: usize) -> Result<Vec<u8>, FormatError> {
    let (header, encoding, stored) = split_checked(body)?;
    let prefix = prefix.min(header.raw_length as usize);
    match encoding {
        ChunkEncoding::Raw => Ok(stored[..prefix].to_vec()),
        ChunkEncoding::Zstd => {
            use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};
            // Room for the whole chunk (the header's raw length, never a size from
            // the frame) lets zstd decode straight into `out` with a stable output
            // buffer instead of into a window of its own and then copying: a fresh
            // process touches half the pages, and the pages past the prefix are
            // allocated but never touched.
            let mut out: Vec<u8> = Vec::with_capacity(header.raw_length as usize);
            STREAM
                .with(|cell| {
                    let mut cell = cell.borrow_mut();
                    if cell.is_none() {
                        let mut d = DCtx::create();
                        d.set_parameter(DParameter::WindowLogMax(24)).map_err(zstd::zstd_safe::get_error_name)?;
                        d.set_parameter(DParameter::StableOutBuffer(true)).map_err(zstd::zstd_safe::get_error_name)?;
                        *cell = Some(d);
                    }
                    let d = cell.as_mut().expect("context was just installed");
                    d.reset(ResetDirective::SessionOnly).map_err(zstd::zstd_safe::get_error_name)?;
                    let mut output = OutBuffer::around(&mut out);
                    // Input is given a block's worth at a time: handed the whole
                    // frame and room for all of it, zstd would decode it all at once.
                    let mut fed = 0usize;
                    let mut pos = 0usize;
                    while output.pos() < prefix {
                        fed = (fed + PARTIAL_INPUT_STEP).min(stored.len());
                        let mut input = InBuffer { src: &stored[..fed], pos };
                        let before = (pos, output.pos());
                        let left =
                            d.decompress_stream(&mut output, &mut input).map_err(zstd::zstd_safe::get_error_name)?;
                        pos = input.pos();
                        if left == 0 || ((pos, output.pos()) == before && fed == stored.len()) {
                            break;
                        }
                    }
                    Ok(())
                })
                .map_err(|e: &str| corrupt("zstd frame", e.to_string()))?;
            // zstd stops at a block's end, which may lie past the prefix.
            if out.len() < prefix {
                return Err(corrupt("zstd frame", format!("decodes to fewer than the {prefix} bytes asked for")));
            }
            out.truncate(prefix);
            Ok(out)
        }
    }
}

/// Decodes the body of a `CHUNK` record (CRC already checked) into its raw bytes,
/// checking every rule of the format's chunk section. Returns the header too.
pub fn decode_chunk(body: &[u8]) -> Result<(ChunkHeader, Vec<u8>), FormatError> {
    let (header, encoding, stored) = split_checked(body)?;
    let raw_length = header.raw_length as usize;
    let raw = match encoding {
        ChunkEncoding::Raw => stored.to_vec(),
        ChunkEncoding::Zstd => {
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
