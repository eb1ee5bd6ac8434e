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
    /// A spare streaming context per thread, for [`ChunkStream`].
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
/// bytes at `body_start` of `source`, without holding the body (see
/// [`ChunkStream`]).
pub(crate) fn decode_prefix_streamed<R: ReadAt + ?Sized>(
    source: &R,
    body_start: u64,
    body_length: u64,
    record: Option<(&RecordHeader, u64)>,
    prefix: usize,
) -> Result<Vec<u8>, Error> {
    let mut stream = ChunkStream::open(source, body_start, body_length, record, Vec::new())?;
    stream.decode_to(source, prefix)?;
    Ok(stream.into_prefix(prefix))
}

/// A `CHUNK` body decoded front to back only as far as its readers need, from
/// a positional source, without holding its stored bytes.
///
/// [`ChunkStream::open`] reads the body once, through one piece-sized buffer,
/// for its record CRC and the frame's structure (the header and frame rules,
/// one frame); [`ChunkStream::decode_to`] decodes on to a raw length, and a
/// later call goes on from where the last stopped; [`ChunkStream::finish`]
/// decodes the rest and checks the chunk's BLAKE3. Until then the decoded bytes
/// are checked by the CRC and the frame rules only (FORMAT.md 10.1, step 4).
///
/// A fresh process pays for every page it touches: a small read's pages are
/// the decoded part and one piece.
pub(crate) struct ChunkStream {
    body_start: u64,
    body_length: u64,
    header: ChunkHeader,
    /// The raw bytes decoded so far, with room for the whole chunk: zstd
    /// decodes straight into it (a stable output buffer) instead of into a
    /// window of its own, and the pages past what was decoded are not touched.
    out: Vec<u8>,
    piece: Vec<u8>,
    /// The stored bytes `piece` holds: `held` of them from frame byte `held_at`.
    held_at: u64,
    held: usize,
    /// Stored bytes handed to the decoder so far.
    fed: u64,
    /// The decoder of a zstd chunk; `None` for a raw one.
    zstd: Option<ZstdStream>,
}

impl std::fmt::Debug for ChunkStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStream")
            .field("body_start", &self.body_start)
            .field("raw_length", &self.header.raw_length)
            .field("decoded", &self.out.len())
            .finish()
    }
}

struct ZstdStream {
    dctx: DCtx<'static>,
    /// Where the next block starts: the decoder is given one block at a time.
    blocks: ZstdBlockWalk,
    /// The decoder said the frame is complete.
    ended: bool,
}

impl ChunkStream {
    /// Reads the body of `body_length` bytes at `body_start` of `source` once
    /// and checks its CRC (when the record header is given, with the record's
    /// offset), its chunk header and, for zstd, its frame rules; then decodes
    /// nothing yet. `out` is a buffer to decode into (emptied; its room kept).
    pub(crate) fn open<R: ReadAt + ?Sized>(
        source: &R,
        body_start: u64,
        body_length: u64,
        record: Option<(&RecordHeader, u64)>,
        out: Vec<u8>,
    ) -> Result<Self, Error> {
        Self::open_in_pieces(source, body_start, body_length, record, out, PARTIAL_INPUT_STEP)
    }

    fn open_in_pieces<R: ReadAt + ?Sized>(
        source: &R,
        body_start: u64,
        body_length: u64,
        record: Option<(&RecordHeader, u64)>,
        mut out: Vec<u8>,
        piece_size: usize,
    ) -> Result<Self, Error> {
        out.clear();
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

        // The CRC over every stored byte and, for a zstd chunk, the block
        // headers up to the frame's end. A structure fault is told only once the
        // CRC has passed, as for a body read whole.
        let mut crc = 0u32;
        let mut walk: Option<Result<ZstdBlockWalk, FormatError>> =
            zstd_frame.as_ref().map(|info| Ok(ZstdBlockWalk::new(info)));
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
        let zstd = match encoding {
            ChunkEncoding::Raw => None,
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
                let info = zstd_frame.as_ref().expect("a block walk was made from the frame header");
                let mut dctx = STREAM.with(|cell| cell.borrow_mut().take()).map_or_else(stream_context, Ok)?;
                dctx.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
                Some(ZstdStream { dctx, blocks: ZstdBlockWalk::new(info), ended: false })
            }
        };
        // Room for the whole chunk: the header's raw length, never a size from
        // the frame.
        out.reserve(header.raw_length as usize);
        Ok(ChunkStream { body_start, body_length, header, out, piece, held_at: 0, held: 0, fed: 0, zstd })
    }

    /// The chunk's raw length, as its header says.
    pub(crate) fn raw_length(&self) -> u64 {
        self.header.raw_length.into()
    }

    /// The raw bytes decoded so far.
    pub(crate) fn decoded(&self) -> &[u8] {
        &self.out
    }

    /// The offset just past the chunk's record.
    pub(crate) fn end(&self) -> u64 {
        self.body_start + self.body_length
    }

    /// Decodes on until at least `want` raw bytes are decoded (all of them
    /// when the chunk is shorter). The decoder is given the stored bytes up to
    /// the end of one block at a time: zstd decodes a block as soon as its
    /// input is whole and goes on while it has input, so it stops within a
    /// block (128 KiB at most) past `want`. Handed many blocks, it would
    /// decode them all, and a chunk of zeros stores megabytes in kilobytes.
    pub(crate) fn decode_to<R: ReadAt + ?Sized>(&mut self, source: &R, want: usize) -> Result<(), Error> {
        self.feed(source, want.min(self.header.raw_length as usize), false)
    }

    fn feed<R: ReadAt + ?Sized>(&mut self, source: &R, want: usize, to_the_end: bool) -> Result<(), Error> {
        let stored_start = self.body_start + ChunkHeader::SIZE as u64;
        let stored_length = self.body_length - ChunkHeader::SIZE as u64;
        let read = |buf: &mut [u8], at: u64| {
            source.read_exact_at(buf, stored_start + at).map_err(|e| Error::io("record body", stored_start + at, e))
        };
        let ChunkStream { out, piece, held_at, held, fed, zstd, .. } = self;
        let Some(z) = zstd else {
            // Stored raw: the bytes themselves.
            let from = out.len();
            if from < want {
                out.resize(want, 0);
                read(&mut out[from..], from as u64)?;
            }
            return Ok(());
        };
        // On from what was decoded: the same buffer at the same position, as
        // a stable output buffer must be.
        let decoded = out.len();
        let mut output = OutBuffer::around_pos(out, decoded);
        'feed: while (output.pos() < want || to_the_end) && !z.ended && *fed < stored_length {
            let until = match z.blocks.next_header() {
                Some(next) if next > *fed => next,
                Some(_) => {
                    // The next block's header: where that block ends.
                    let mut block = [0u8; 3];
                    let within = fed.checked_sub(*held_at).map(|from| from as usize).filter(|&from| from + 3 <= *held);
                    match within {
                        Some(from) => block.copy_from_slice(&piece[from..from + 3]),
                        None => read(&mut block, *fed)?,
                    }
                    z.blocks.take(block)?;
                    z.blocks.next_header().or(z.blocks.frame_length()).unwrap_or(stored_length)
                }
                None => stored_length,
            }
            .min(stored_length);
            while *fed < until {
                if !(*held_at..*held_at + *held as u64).contains(fed) {
                    *held_at = *fed;
                    *held = (stored_length - *fed).min(piece.len() as u64) as usize;
                    read(&mut piece[..*held], *fed)?;
                }
                let from = (*fed - *held_at) as usize;
                let to = (until.min(*held_at + *held as u64) - *held_at) as usize;
                let mut input = InBuffer::around(&piece[from..to]);
                let stuck = loop {
                    let before = (input.pos(), output.pos());
                    if z.dctx.decompress_stream(&mut output, &mut input).map_err(zstd_error)? == 0 {
                        z.ended = true;
                        break false;
                    }
                    if input.pos() == to - from {
                        break false;
                    }
                    if (input.pos(), output.pos()) == before {
                        break true;
                    }
                };
                *fed += input.pos() as u64;
                if stuck || z.ended {
                    break 'feed;
                }
            }
        }
        if out.len() < want {
            return Err(corrupt("zstd frame", format!("decodes to fewer than the {want} bytes asked for")).into());
        }
        Ok(())
    }

    /// Decodes the rest of the chunk and checks it whole: its length and its
    /// BLAKE3. Returns its header and raw bytes.
    pub(crate) fn finish<R: ReadAt + ?Sized>(mut self, source: &R) -> Result<(ChunkHeader, Vec<u8>), Error> {
        let raw_length = self.header.raw_length as usize;
        self.feed(source, raw_length, true)?;
        if let Some(z) = &self.zstd {
            if !z.ended || self.fed != self.body_length - ChunkHeader::SIZE as u64 {
                return Err(corrupt("zstd frame", "it does not end where its blocks do").into());
            }
        }
        if self.out.len() != raw_length {
            return Err(
                corrupt("zstd frame", format!("decodes to {} bytes, {raw_length} declared", self.out.len())).into()
            );
        }
        let hash = blake3::hash(&self.out);
        if hash.as_bytes() != &self.header.blake3 {
            return Err(corrupt(
                "chunk BLAKE3",
                format!("stored {}, computed {}", hex(&self.header.blake3), hash.to_hex()),
            )
            .into());
        }
        Ok((self.header, std::mem::take(&mut self.out)))
    }

    /// The first `prefix` bytes decoded (fewer if fewer were).
    pub(crate) fn into_prefix(mut self, prefix: usize) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.truncate(prefix);
        out
    }

    /// The buffer decoded into, for the next stream to decode into.
    pub(crate) fn into_buffer(mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

impl Drop for ChunkStream {
    fn drop(&mut self) {
        // The decoder goes back to the thread's spare, for the next stream.
        if let Some(z) = self.zstd.take() {
            let _ = STREAM.try_with(|cell| {
                if let Ok(mut cell) = cell.try_borrow_mut() {
                    cell.get_or_insert(z.dctx);
                }
            });
        }
    }
}

/// A zstd context for [`ChunkStream`]: a window no larger than the format
/// allows, and a stable output buffer.
fn stream_context() -> Result<DCtx<'static>, Error> {
    let mut d = DCtx::create();
    d.set_parameter(DParameter::WindowLogMax(24)).map_err(zstd_error)?;
    d.set_parameter(DParameter::StableOutBuffer(true)).map_err(zstd_error)?;
    Ok(d)
}

fn zstd_error(code: usize) -> Error {
    corrupt("zstd frame", zstd::zstd_safe::get_error_name(code).to_string()).into()
}

fn one_frame_rule(frame: u64, stored: u64) -> FormatError {
    corrupt("zstd frame", format!("the frame takes {frame} of the {stored} stored bytes; exactly one frame is allowed"))
}

/// Decodes the body of a `CHUNK` record (CRC already checked) into its raw bytes,
/// checking every rule of the format's chunk section (FORMAT.md 6): encoding,
/// lengths, the zstd frame and the BLAKE3 of the raw bytes. Returns the header too.
pub fn decode_chunk(body: &[u8]) -> Result<(ChunkHeader, Vec<u8>), FormatError> {
    let (header, raw) = decode_chunk_unhashed(body)?;
    let hash = blake3::hash(&raw);
    if hash.as_bytes() != &header.blake3 {
        return Err(corrupt("chunk BLAKE3", format!("stored {}, computed {}", hex(&header.blake3), hash.to_hex())));
    }
    Ok((header, raw))
}

/// Decodes the body of a `CHUNK` record (CRC already checked) as
/// [`decode_chunk`] does, every rule but the BLAKE3 of the raw bytes: for a
/// caller that checks every byte it uses some other way (extraction checks
/// each file's digest, FORMAT.md 10.1 step 5).
pub(crate) fn decode_chunk_unhashed(body: &[u8]) -> Result<(ChunkHeader, Vec<u8>), FormatError> {
    let (header, encoding, stored) = split_checked(body)?;
    let raw_length = header.raw_length as usize;
    let raw = match encoding {
        ChunkEncoding::Raw => stored.to_vec(),
        ChunkEncoding::Zstd => decompress_exact(stored, raw_length).map_err(|e| corrupt("zstd frame", e))?,
    };
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

/// Decodes `stored`, one zstd frame, against `prefix` as its dictionary of
/// raw content (`spec/FORMAT.md` 5.3), to exactly `length` bytes.
pub(crate) fn decompress_exact_with_prefix(stored: &[u8], length: usize, prefix: &[u8]) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::{get_error_name, DCtx};
    let mut dctx = DCtx::create();
    dctx.ref_prefix(prefix).map_err(|code| get_error_name(code).to_string())?;
    let mut out = Vec::with_capacity(length);
    dctx.decompress(&mut out, stored).map_err(|code| get_error_name(code).to_string())?;
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

    /// A `CHUNK` body of `raw` in `encoding` (zstd level 3, or stored raw).
    fn body_of(raw: &[u8], encoding: ChunkEncoding) -> Vec<u8> {
        let stored = match encoding {
            ChunkEncoding::Zstd => zstd::bulk::compress(raw, 3).unwrap(),
            _ => raw.to_vec(),
        };
        let header = ChunkHeader {
            blake3: *blake3::hash(raw).as_bytes(),
            raw_length: raw.len() as u32,
            encoding: encoding.code(),
            reserved: [0; 3],
        };
        let mut body = header.encode().to_vec();
        body.extend_from_slice(&stored);
        body
    }

    fn stream(body: &[u8]) -> ChunkStream {
        ChunkStream::open(body, 0, body.len() as u64, None, Vec::new()).unwrap()
    }

    #[test]
    fn a_stream_goes_on_where_it_stopped_and_finishes_checked() {
        let (raw, zstd) = zstd_body(1 << 20);
        let stored = body_of(&raw, ChunkEncoding::Raw);
        for body in [&zstd, &stored] {
            for steps in [&[1usize, 2, 100_000, 100_001, 700_000][..], &[0, 1 << 20], &[], &[5 << 20]] {
                let mut s = stream(body);
                for &want in steps {
                    s.decode_to(&body[..], want).unwrap();
                    let decoded = s.decoded();
                    assert!(decoded.len() >= want.min(raw.len()), "{steps:?}: {want}");
                    assert_eq!(decoded, &raw[..decoded.len()], "{steps:?}: {want}");
                }
                let (header, whole) = s.finish(&body[..]).unwrap();
                assert_eq!(whole, raw, "{steps:?}");
                assert_eq!(header.blake3, *blake3::hash(&raw).as_bytes());
            }
        }
    }

    #[test]
    fn a_stream_decodes_at_most_a_block_past_what_is_asked() {
        // Zeros store 4 MiB in a few bytes per block: handed all of them,
        // zstd would decode the chunk whole for its first byte.
        let zeros = vec![0u8; 4 << 20];
        let body = body_of(&zeros, ChunkEncoding::Zstd);
        assert!(body.len() < PARTIAL_INPUT_STEP, "the test needs many blocks in one piece");
        let mut s = stream(&body);
        s.decode_to(&body[..], 1).unwrap();
        assert!(s.decoded().len() <= 128 << 10, "decoded {} bytes for one", s.decoded().len());
        s.decode_to(&body[..], (1 << 20) + 1).unwrap();
        assert!(s.decoded().len() <= (1 << 20) + (128 << 10), "decoded {} bytes", s.decoded().len());
        // A raw chunk reads what is asked, no more.
        let body = body_of(&zeros[..1 << 20], ChunkEncoding::Raw);
        let mut s = stream(&body);
        s.decode_to(&body[..], 1000).unwrap();
        assert_eq!(s.decoded().len(), 1000);
    }

    #[test]
    fn a_stream_checks_the_blake3_once_decoded_whole() {
        let (raw, zstd) = zstd_body(1 << 20);
        for mut body in [zstd, body_of(&raw, ChunkEncoding::Raw)] {
            body[0] ^= 1; // the header's BLAKE3
            let mut s = stream(&body);
            // The start decodes: only the whole chunk can be checked.
            s.decode_to(&body[..], 4096).unwrap();
            assert_eq!(s.decoded()[..4096], raw[..4096]);
            let e = s.finish(&body[..]).unwrap_err();
            assert_eq!(e.class(), Some(ErrorClass::ChunkCorrupt));
            assert_eq!(e.what(), "chunk BLAKE3");
            assert_eq!(decode_chunk(&body).unwrap_err().what, "chunk BLAKE3");
        }
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
                let mut stream = ChunkStream::open_in_pieces(&body[..], 0, len, None, Vec::new(), piece).unwrap();
                stream.decode_to(&body[..], prefix).unwrap();
                let part = stream.into_prefix(prefix);
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
