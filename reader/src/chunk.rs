//! Decoding a chunk: header rules, zstd frame rules, exact-size output, BLAKE3.

use std::cell::RefCell;

use strata_format::chunk::{parse_zstd_frame_header, validate_zstd_frame, ZstdBlockWalk, MAX_ZSTD_FRAME_HEADER};
use strata_format::{split_array, ChunkEncoding, ChunkHeader, ErrorClass, FormatError, RecordHeader};
use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};

use crate::record::check_body_crc;
use crate::{Error, ReadAt};

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
    let (header, encoding) = check_chunk_header(body, body.len() as u64)?;
    let stored = &body[ChunkHeader::SIZE..];
    if encoding == ChunkEncoding::Zstd {
        validate_zstd_frame(stored, header.raw_length)?;
        one_frame(stored).map_err(|e| corrupt("zstd frame", e))?;
    }
    Ok((header, encoding, stored))
}

/// Checks the 40-byte header at the start of a `CHUNK` body of `body_length`
/// bytes (`head` holds at least the header, or the whole shorter body).
fn check_chunk_header(head: &[u8], body_length: u64) -> Result<(ChunkHeader, ChunkEncoding), FormatError> {
    let (bytes, _) = split_array::<{ ChunkHeader::SIZE }>(head).ok_or_else(|| {
        FormatError::new(ErrorClass::RecordMalformed, "CHUNK body", "shorter than its 40-byte header")
    })?;
    let header = ChunkHeader::decode(bytes);
    let encoding = header.validate(body_length - ChunkHeader::SIZE as u64)?;
    Ok((header, encoding))
}

/// Decodes the first `prefix` raw bytes of a `CHUNK` body whose record CRC was
/// checked: a read of part of a chunk stops decoding where the part ends. The
/// header and frame rules are checked; the BLAKE3, which covers the whole
/// chunk, is not (FORMAT.md 10.1 allows this for partial reads).
pub fn decode_chunk_prefix(body: &[u8], prefix: usize) -> Result<Vec<u8>, Error> {
    decode_prefix_streamed(body, 0, body.len() as u64, None, prefix)
}

/// Decodes the first `prefix` raw bytes of the `CHUNK` body of `body_length`
/// bytes at `body_start` of `source`, without holding the body: it goes through
/// one piece-sized buffer twice, once for the CRC (when the record header's
/// `body_crc` is given) and the frame's structure, once to decode. A fresh
/// process pays for every page it touches, and this keeps a small read's pages
/// to the decoded prefix and one piece.
pub(crate) fn decode_prefix_streamed<R: ReadAt + ?Sized>(
    source: &R,
    body_start: u64,
    body_length: u64,
    record: Option<(&RecordHeader, u64)>,
    prefix: usize,
) -> Result<Vec<u8>, Error> {
    decode_prefix_in_pieces(source, body_start, body_length, record, prefix, PARTIAL_INPUT_STEP)
}

fn decode_prefix_in_pieces<R: ReadAt + ?Sized>(
    source: &R,
    body_start: u64,
    body_length: u64,
    record: Option<(&RecordHeader, u64)>,
    prefix: usize,
    piece_size: usize,
) -> Result<Vec<u8>, Error> {
    let read = |buf: &mut [u8], at: u64| {
        source.read_exact_at(buf, body_start + at).map_err(|e| Error::io("record body", body_start + at, e))
    };
    let mut piece = vec![0u8; usize::try_from(body_length).map_or(piece_size, |n| n.min(piece_size))];
    const HEAD: usize = ChunkHeader::SIZE + MAX_ZSTD_FRAME_HEADER;
    let mut head = [0u8; HEAD];
    let head_len = usize::try_from(body_length).map_or(HEAD, |n| n.min(HEAD));
    read(&mut head[..head_len], 0)?;
    let zstd_frame = (head_len > ChunkHeader::SIZE
        && ChunkHeader::decode(split_array(&head).expect("head holds a chunk header").0).encoding
            == ChunkEncoding::Zstd.code())
    .then(|| parse_zstd_frame_header(&head[ChunkHeader::SIZE..head_len]).ok())
    .flatten();

    // Pass 1: the CRC over every stored byte and, for a zstd chunk, the block
    // headers up to the frame's end. A structure fault is told only once the CRC
    // has passed, as for a body read whole.
    let mut crc = 0u32;
    let mut walk: Option<Result<ZstdBlockWalk, FormatError>> = zstd_frame.map(|info| Ok(ZstdBlockWalk::new(&info)));
    let stored_start = ChunkHeader::SIZE as u64;
    let mut at = 0u64;
    while at < body_length {
        let n = (body_length - at).min(piece_size as u64) as usize;
        let buf = &mut piece[..n];
        read(buf, at)?;
        crc = strata_format::crc32c_append(crc, buf);
        let end = at + n as u64;
        while let Some(Ok(state)) = walk.as_mut() {
            let Some(next) = state.next_header() else { break };
            let pos = stored_start.saturating_add(next);
            if pos.saturating_add(3) > end {
                break;
            }
            let mut block = [0u8; 3];
            if pos >= at {
                let from = (pos - at) as usize;
                block.copy_from_slice(&buf[from..from + 3]);
            } else {
                // The header straddles the previous piece's end.
                read(&mut block, pos)?;
            }
            if let Err(e) = state.take(block) {
                walk = Some(Err(e));
            }
        }
        at = end;
    }
    if let Some((header, offset)) = record {
        check_body_crc(header, crc, offset)?;
    }

    let (header, encoding) = check_chunk_header(&head[..head_len], body_length)?;
    let stored_length = body_length - stored_start;
    let prefix = prefix.min(header.raw_length as usize);
    match encoding {
        ChunkEncoding::Raw => {
            let mut out = vec![0u8; prefix];
            read(&mut out, stored_start)?;
            Ok(out)
        }
        ChunkEncoding::Zstd => {
            validate_zstd_frame(&head[ChunkHeader::SIZE..head_len], header.raw_length)?;
            match walk {
                Some(Ok(state)) => match state.frame_length() {
                    Some(n) if n == stored_length => {}
                    Some(n) => return Err(one_frame_rule(n, stored_length).into()),
                    None => {
                        return Err(corrupt(
                            "zstd frame",
                            format!("its blocks run past the {stored_length} stored bytes"),
                        )
                        .into())
                    }
                },
                Some(Err(e)) => return Err(e.into()),
                None => return Err(corrupt("zstd frame", "the frame header did not parse").into()),
            }
            // Pass 2: room for the whole chunk (the header's raw length, never a
            // size from the frame) lets zstd decode straight into `out` with a
            // stable output buffer instead of into a window of its own and then
            // copying; the pages past the prefix are never touched.
            let mut out: Vec<u8> = Vec::with_capacity(header.raw_length as usize);
            let decoded = STREAM.with(|cell| -> Result<(), Error> {
                let mut cell = cell.borrow_mut();
                if cell.is_none() {
                    let mut d = DCtx::create();
                    d.set_parameter(DParameter::WindowLogMax(24)).map_err(zstd_error)?;
                    d.set_parameter(DParameter::StableOutBuffer(true)).map_err(zstd_error)?;
                    *cell = Some(d);
                }
                let d = cell.as_mut().expect("context was just installed");
                d.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
                let mut output = OutBuffer::around(&mut out);
                // Input is given a piece at a time: handed the whole frame and room
                // for all of it, zstd would decode it all at once.
                let mut at = 0u64;
                'feed: while output.pos() < prefix && at < stored_length {
                    let n = (stored_length - at).min(piece_size as u64) as usize;
                    read(&mut piece[..n], stored_start + at)?;
                    at += n as u64;
                    let mut input = InBuffer::around(&piece[..n]);
                    loop {
                        let before = (input.pos(), output.pos());
                        if d.decompress_stream(&mut output, &mut input).map_err(zstd_error)? == 0 {
                            break 'feed;
                        }
                        if output.pos() >= prefix || input.pos() == n {
                            break;
                        }
                        if (input.pos(), output.pos()) == before {
                            break 'feed;
                        }
                    }
                }
                Ok(())
            });
            decoded?;
            // zstd stops at a block's end, which may lie past the prefix.
            if out.len() < prefix {
                return Err(corrupt("zstd frame", format!("decodes to fewer than the {prefix} bytes asked for")).into());
            }
            out.truncate(prefix);
            Ok(out)
        }
    }
}

fn zstd_error(code: usize) -> Error {
    corrupt("zstd frame", zstd::zstd_safe::get_error_name(code).to_string()).into()
}

fn one_frame_rule(frame: u64, stored: u64) -> FormatError {
    corrupt("zstd frame", format!("the frame takes {frame} of the {stored} stored bytes; exactly one frame is allowed"))
}

/// Decodes the body of a `CHUNK` record (CRC already checked) into its raw bytes,
/// checking every rule of the format's chunk section. Returns the header too.
pub fn decode_chunk(body: &[u8]) -> Result<(ChunkHeader, Vec<u8>), FormatError> {
    let (header, encoding, stored) = split_checked(body)?;
    let raw_length = header.raw_length as usize;
    let raw = match encoding {
        ChunkEncoding::Raw => stored.to_vec(),
        ChunkEncoding::Zstd => decompress_exact(stored, raw_length).map_err(|e| corrupt("zstd frame", e))?,
    };
    let hash = blake3::hash(&raw);
    if hash.as_bytes() != &header.blake3 {
        return Err(corrupt("chunk BLAKE3", format!("stored {}, computed {}", hex(&header.blake3), hash.to_hex())));
    }
    Ok((header, raw))
}

/// Decodes one zstd frame, whose frame rules were checked, into exactly
/// `length` bytes: the capacity is the length the caller checked, never a size
/// from the frame, so a frame that expands further fails instead of
/// allocating. The caller has checked that the frame is the whole input.
pub(crate) fn decompress_exact(stored: &[u8], length: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(length);
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let mut d = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
            d.window_log_max(24).map_err(|e| e.to_string())?;
            *cell = Some(d);
        }
        let d = cell.as_mut().expect("decompressor was just installed");
        d.decompress_to_buffer(stored, &mut out).map_err(|e| e.to_string())
    })?;
    if out.len() != length {
        return Err(format!("decodes to {} bytes, {length} declared", out.len()));
    }
    Ok(out)
}

/// The length of the one zstd frame at the start of `stored`, when it is the
/// whole of `stored`: no second frame, no skippable frame, nothing after it.
pub(crate) fn one_frame(stored: &[u8]) -> Result<(), String> {
    match zstd::zstd_safe::find_frame_compressed_size(stored) {
        Ok(n) if n == stored.len() => Ok(()),
        Ok(n) => Err(format!("the frame takes {n} of the {} stored bytes; exactly one frame is allowed", stored.len())),
        Err(code) => Err(zstd::zstd_safe::get_error_name(code).to_string()),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zstd `CHUNK` body of `len` bytes of low-entropy noise: it compresses to
    /// about half, so its stored bytes span several pieces and block headers
    /// fall across piece ends.
    fn zstd_body(len: usize) -> (Vec<u8>, Vec<u8>) {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let raw: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 16) as u8
            })
            .collect();
        let stored = zstd::bulk::compress(&raw, 3).unwrap();
        assert!(stored.len() > 2 * PARTIAL_INPUT_STEP, "the test needs several pieces");
        let header = ChunkHeader {
            blake3: *blake3::hash(&raw).as_bytes(),
            raw_length: len as u32,
            encoding: ChunkEncoding::Zstd.code(),
            reserved: [0; 3],
        };
        let mut body = header.encode().to_vec();
        body.extend_from_slice(&stored);
        (raw, body)
    }

    #[test]
    fn a_prefix_is_the_start_of_the_whole_decode() {
        let (raw, body) = zstd_body(1 << 20);
        let (_, whole) = decode_chunk(&body).unwrap();
        assert_eq!(whole, raw);
        for prefix in [0, 1, 16 << 10, 300_001, (1 << 20) - 1, 1 << 20, 2 << 20] {
            let part = decode_chunk_prefix(&body, prefix).unwrap();
            assert_eq!(part, raw[..prefix.min(raw.len())], "prefix {prefix}");
        }
    }

    #[test]
    fn any_piece_size_gives_the_same_prefix() {
        let (raw, body) = zstd_body(1 << 20);
        let len = body.len() as u64;
        // Pieces shorter than a block header put headers across piece ends.
        for piece in [1, 2, 3, 5, 4096, 65_537] {
            for prefix in [1, 200_000, 1 << 20] {
                let part = decode_prefix_in_pieces(&body[..], 0, len, None, prefix, piece).unwrap();
                assert_eq!(part, raw[..prefix], "piece {piece}, prefix {prefix}");
            }
        }
    }

    #[test]
    fn a_streamed_prefix_checks_the_crc_and_the_one_frame_rule() {
        let (raw, body) = zstd_body(1 << 20);
        let tag = [7u8; 8];
        let good = RecordHeader::for_body(1, 0, tag, body.len() as u64, strata_format::crc32c(&body));
        let part = decode_prefix_streamed(&body, 0, body.len() as u64, Some((&good, 99)), 4096).unwrap();
        assert_eq!(part, raw[..4096]);

        let bad = RecordHeader::for_body(1, 0, tag, body.len() as u64, strata_format::crc32c(&body) ^ 1);
        let e = decode_prefix_streamed(&body, 0, body.len() as u64, Some((&bad, 99)), 4096).unwrap_err();
        assert_eq!(e.class(), Some(ErrorClass::RecordChecksum));
        assert_eq!(e.offset(), Some(99));

        // A byte after the frame breaks the one-frame rule even for a read that
        // needs only the first bytes; the whole decode says the same.
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(decode_chunk(&trailing).unwrap_err().class, ErrorClass::ChunkCorrupt);
        let e = decode_chunk_prefix(&trailing, 4096).unwrap_err();
        assert_eq!(e.class(), Some(ErrorClass::ChunkCorrupt));
        assert!(e.detail().contains("exactly one frame"), "{}", e.detail());

        // A frame cut short: its blocks run past the stored bytes.
        let cut = &body[..body.len() - 10];
        let e = decode_chunk_prefix(cut, 4096).unwrap_err();
        assert_eq!(e.class(), Some(ErrorClass::ChunkCorrupt));
    }
}
