//! Reading one framed record: header checks first, then a bounded body read, then
//! the body CRC. Nothing is allocated for a body before its header has passed.

use std::io::{self, Read};

use strata_format::record::{check_compressed_body, RecordFlags};
use strata_format::{ErrorClass, RecordHeader, RecordType};

use crate::{Error, ReadAt};

/// A record whose header and body CRC have been checked, its body decoded
/// when it was stored compressed.
pub(crate) struct Record {
    pub offset: u64,
    /// `None` for an unknown ancillary type.
    pub record_type: Option<RecordType>,
    /// The body the type's section describes (decoded bytes, FORMAT.md 5.2).
    pub body: Vec<u8>,
}

/// The body a record's type describes: `stored` itself, or, with flag `ZSTD`,
/// its one zstd frame decoded under the rules of FORMAT.md 5.2 (the decoded
/// length checked before it is allocated). Call after the body CRC passed.
/// An unknown ancillary body is returned as stored: it is never decoded.
pub(crate) fn decode_body(
    header: &RecordHeader,
    record_type: Option<RecordType>,
    stored: Vec<u8>,
    offset: u64,
    index_limit: u64,
) -> Result<Vec<u8>, Error> {
    let Some(record_type) = record_type else { return Ok(stored) };
    decode_table_body(record_type, header.flags, stored, index_limit).map_err(|e| e.at(offset))
}

/// The body a record of `record_type` with header `flags` describes, from its
/// `stored` bytes (whose CRC passed): as stored, or decoded when `ZSTD` is set,
/// under the rules of `spec/FORMAT.md` 5.2 (nothing larger than the type's
/// maximum or `index_limit` is allocated). For tools that read records
/// themselves, and the fuzzer.
///
/// ```
/// use strata_format::{record::RecordFlags, ErrorClass, RecordType};
/// let body = vec![7u8; 4096];
/// let stored = zstd::bulk::compress(&body, 3).unwrap();
/// let decoded = strata_reader::decode_table_body(RecordType::FilesDir, RecordFlags::ZSTD, stored.clone(), 1 << 20);
/// assert_eq!(decoded.unwrap(), body);
/// // A frame is never longer than the body it gives.
/// let e = strata_reader::decode_table_body(RecordType::FilesDir, RecordFlags::ZSTD, stored, 100).unwrap_err();
/// assert_eq!(e.class(), Some(ErrorClass::LimitExceeded));
/// ```
pub fn decode_table_body(
    record_type: RecordType,
    flags: u16,
    stored: Vec<u8>,
    index_limit: u64,
) -> Result<Vec<u8>, Error> {
    if flags & RecordFlags::ZSTD == 0 {
        return Ok(stored);
    }
    let limit = body_limit(Some(record_type), index_limit);
    let decoded = check_compressed_body(record_type, &stored, limit).map_err(Error::from)?;
    let malformed = |detail: String| Error::new(ErrorClass::RecordMalformed, "compressed body", detail);
    crate::chunk::one_frame(&stored).map_err(malformed)?;
    crate::chunk::decompress_exact(&stored, decoded as usize).map_err(malformed)
}

/// The largest body the reader accepts for `record_type`: the format's bound,
/// lowered by the caller's limit for unbounded types.
pub(crate) fn body_limit(record_type: Option<RecordType>, index_limit: u64) -> u64 {
    match record_type {
        // Every table is loaded into memory: the reader's limit (FORMAT.md 13).
        Some(RecordType::ImageIndex | RecordType::FilesDir | RecordType::FilesIndex | RecordType::ChainIndex) => {
            index_limit
        }
        Some(t) => t.max_body_length(),
        // Unknown ancillary records are skipped, but never read larger than an index.
        None => index_limit,
    }
}

/// Checks a record header read at `offset`.
pub(crate) fn check_header(
    bytes: &[u8; 32],
    offset: u64,
    tag: [u8; 8],
    index_limit: u64,
) -> Result<(RecordHeader, Option<RecordType>), Error> {
    let header = RecordHeader::decode(bytes);
    let record_type = header.validate(bytes, tag).map_err(|e| Error::from(e).at(offset))?;
    let limit = body_limit(record_type, index_limit);
    if header.body_length > limit {
        return Err(Error::new(
            ErrorClass::LimitExceeded,
            "record body_length",
            format!(
                "{} bytes for a {} record; this reader accepts at most {limit}",
                header.body_length,
                record_type.map_or("ancillary", |t| t.name())
            ),
        )
        .at(offset));
    }
    Ok((header, record_type))
}

/// Reads and checks the header of the record at `offset` of a positional source
/// of `size` bytes, and that its body lies inside the source.
pub(crate) fn read_record_header_at<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    index_limit: u64,
) -> Result<(RecordHeader, Option<RecordType>), Error> {
    if offset.checked_add(RecordHeader::SIZE as u64).is_none_or(|end| end > size) {
        return Err(Error::new(
            ErrorClass::Truncated,
            "record header",
            format!("the archive ends at byte {size}, before the 32-byte record header"),
        )
        .at(offset));
    }
    let mut raw = [0u8; 32];
    source.read_exact_at(&mut raw, offset).map_err(|e| Error::io("record header", offset, e))?;
    let (header, record_type) = check_header(&raw, offset, tag, index_limit)?;
    let body_start = offset + RecordHeader::SIZE as u64;
    if body_start.checked_add(header.body_length).is_none_or(|end| end > size) {
        return Err(Error::new(
            ErrorClass::Truncated,
            "record body",
            format!("a {}-byte body runs past the end of the archive at byte {size}", header.body_length),
        )
        .at(offset));
    }
    Ok((header, record_type))
}

/// Reads and checks the record at `offset` of a positional source of `size` bytes.
pub(crate) fn read_record_at<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    index_limit: u64,
) -> Result<Record, Error> {
    let (header, record_type) = read_record_header_at(source, size, offset, tag, index_limit)?;
    let body = read_checked_body(source, offset, &header)?;
    let body = decode_body(&header, record_type, body, offset, index_limit)?;
    Ok(Record { offset, record_type, body })
}

/// Reads the body of the record at `offset` whose header passed
/// [`read_record_header_at`], and checks its CRC.
pub(crate) fn read_checked_body<R: ReadAt + ?Sized>(
    source: &R,
    offset: u64,
    header: &RecordHeader,
) -> Result<Vec<u8>, Error> {
    let body_start = offset + RecordHeader::SIZE as u64;
    let mut body = vec![0u8; header.body_length as usize];
    source.read_exact_at(&mut body, body_start).map_err(|e| Error::io("record body", body_start, e))?;
    check_body(header, &body, offset)?;
    Ok(body)
}

/// The `what` of a body that fails its CRC, told apart from header faults.
pub(crate) const BODY_CRC_WHAT: &str = "record body CRC-32C";

pub(crate) fn check_body(header: &RecordHeader, body: &[u8], offset: u64) -> Result<(), Error> {
    check_body_crc(header, strata_format::crc32c(body), offset)
}

/// Compares a body CRC computed elsewhere (a body read in pieces) with the header's.
pub(crate) fn check_body_crc(header: &RecordHeader, crc: u32, offset: u64) -> Result<(), Error> {
    if crc != header.body_crc {
        return Err(Error::new(
            ErrorClass::RecordChecksum,
            BODY_CRC_WHAT,
            format!("stored {:08x}, computed {crc:08x} over {} bytes", header.body_crc, header.body_length),
        )
        .at(offset));
    }
    Ok(())
}

/// Reads records front to back from a stream (a pipe), tracking the offset.
pub(crate) struct RecordStream<R> {
    input: R,
    pub position: u64,
    tag: [u8; 8],
    index_limit: u64,
}

impl<R: Read> RecordStream<R> {
    pub fn new(input: R, position: u64, tag: [u8; 8], index_limit: u64) -> Self {
        RecordStream { input, position, tag, index_limit }
    }

    /// The next record, or `None` at a clean end of input between records.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        let offset = self.position;
        let mut raw = [0u8; 32];
        let got = read_full(&mut self.input, &mut raw).map_err(|e| Error::io("record header", offset, e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < raw.len() {
            return Err(Error::new(
                ErrorClass::Truncated,
                "record header",
                format!("the input ends after {got} of its 32 bytes"),
            )
            .at(offset));
        }
        let (header, record_type) = check_header(&raw, offset, self.tag, self.index_limit)?;
        let mut body = vec![0u8; header.body_length as usize];
        let got = read_full(&mut self.input, &mut body).map_err(|e| Error::io("record body", offset, e))?;
        if got < body.len() {
            return Err(Error::new(
                ErrorClass::Truncated,
                "record body",
                format!("the input ends after {got} of its {} bytes", body.len()),
            )
            .at(offset));
        }
        check_body(&header, &body, offset)?;
        self.position += RecordHeader::SIZE as u64 + header.body_length;
        let body = decode_body(&header, record_type, body, offset, self.index_limit)?;
        Ok(Some(Record { offset, record_type, body }))
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
