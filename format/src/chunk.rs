//! Chunks (`spec/FORMAT.md` section 6): the unit of stored data, shared by every
//! section of an archive. This module owns the fixed head of a `CHUNK` body
//! ([`ChunkHeader`]), the chunk encodings, and the checks of a zstd frame header
//! that sections 5.2 and 6 require before anything is decompressed.

use crate::layout::fixed_layout;
use crate::{limits, ErrorClass, FormatError};

fixed_layout! {
    /// The fixed start of a `CHUNK` record's body (`spec/FORMAT.md` 6); the stored bytes follow it.
    ///
    /// ```
    /// use strata_format::{ChunkEncoding, ChunkHeader, ErrorClass};
    /// let header = ChunkHeader { blake3: [0xab; 32], raw_length: 5, encoding: ChunkEncoding::Raw.code(), reserved: [0; 3] };
    /// let bytes = header.encode();
    /// assert_eq!(ChunkHeader::decode(&bytes), header);
    /// assert_eq!(header.validate(5), Ok(ChunkEncoding::Raw));
    ///
    /// // A raw chunk stores exactly its raw length.
    /// assert_eq!(header.validate(4).unwrap_err().class, ErrorClass::RecordMalformed);
    /// // More than 16 MiB is past the format's limit.
    /// let huge = ChunkHeader { raw_length: (1 << 24) + 1, ..header };
    /// assert_eq!(huge.validate(5).unwrap_err().class, ErrorClass::LimitExceeded);
    /// ```
    pub struct ChunkHeader : 40 bytes {
        /// BLAKE3-256 of the raw bytes: the chunk's identity.
        pub blake3: [u8; 32],
        /// Length of the raw bytes, 1 to 16 MiB.
        pub raw_length: u32,
        /// A [`ChunkEncoding`] code.
        pub encoding: u8,
        /// Zero.
        pub reserved: [u8; 3],
    }
}

/// How a chunk's raw bytes are stored: the `encoding` byte of a `CHUNK` body (`spec/FORMAT.md` 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkEncoding {
    /// Stored as they are; used when zstd would not make them smaller.
    Raw,
    /// One zstd frame (RFC 8878) with Frame_Content_Size equal to the raw length.
    Zstd,
}

impl ChunkEncoding {
    /// The encoding code stored in `ChunkHeader::encoding` (spec 6).
    pub const fn code(self) -> u8 {
        match self {
            ChunkEncoding::Raw => 0,
            ChunkEncoding::Zstd => 1,
        }
    }
    /// The encoding with code `code`, or `None` for a value the spec does not define (a reader refuses it).
    pub const fn from_code(code: u8) -> Option<ChunkEncoding> {
        match code {
            0 => Some(ChunkEncoding::Raw),
            1 => Some(ChunkEncoding::Zstd),
            _ => None,
        }
    }
    /// The short name used in messages and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            ChunkEncoding::Raw => "raw",
            ChunkEncoding::Zstd => "zstd",
        }
    }
}

impl ChunkHeader {
    /// Validates the header against the length of the stored bytes that follow it,
    /// before they are decoded. Returns the encoding.
    pub fn validate(&self, stored_length: u64) -> Result<ChunkEncoding, FormatError> {
        if self.raw_length == 0 {
            return Err(FormatError::new(
                ErrorClass::RecordMalformed,
                "chunk raw_length",
                "0: a chunk holds at least one byte",
            ));
        }
        if self.raw_length > limits::MAX_CHUNK_RAW {
            return Err(FormatError::new(
                ErrorClass::LimitExceeded,
                "chunk raw_length",
                format!("{}, expected 1 to {}", self.raw_length, limits::MAX_CHUNK_RAW),
            ));
        }
        if self.reserved != [0; 3] {
            return Err(FormatError::new(ErrorClass::RecordMalformed, "chunk reserved bytes", "not zero"));
        }
        let encoding = ChunkEncoding::from_code(self.encoding).ok_or_else(|| {
            FormatError::new(
                ErrorClass::RecordMalformed,
                "chunk encoding",
                format!("unknown encoding {}", self.encoding),
            )
        })?;
        let raw = u64::from(self.raw_length);
        let fits = match encoding {
            ChunkEncoding::Raw => stored_length == raw,
            // A zstd chunk exists only because it is smaller than the raw bytes.
            ChunkEncoding::Zstd => stored_length < raw,
        };
        if !fits {
            return Err(FormatError::new(
                ErrorClass::RecordMalformed,
                "chunk stored length",
                format!("{stored_length} stored bytes for {raw} raw bytes in a {} chunk", encoding.name()),
            ));
        }
        Ok(encoding)
    }
}

/// The fields of a zstd frame header that the format constrains (`spec/FORMAT.md` 5.2 and 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZstdFrameInfo {
    /// `Frame_Content_Size`, if the frame header carries it (the format requires it).
    pub content_size: Option<u64>,
    /// `Window_Size`: at most [`crate::limits::MAX_ZSTD_WINDOW`] in a valid archive.
    pub window_size: u64,
    /// `Dictionary_ID`: 0 (absent) in a valid archive.
    pub dictionary_id: u32,
    /// Bytes from the magic to the first block header.
    pub header_length: u64,
    /// Whether a 4-byte content checksum follows the last block.
    pub has_checksum: bool,
}

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// The longest zstd frame header: magic, descriptor, window descriptor, a 4-byte
/// dictionary id and an 8-byte content size.
pub const MAX_ZSTD_FRAME_HEADER: usize = 4 + 1 + 1 + 4 + 8;

/// Parses a zstd frame header (RFC 8878, 3.1.1) far enough to check the format's
/// rules: content size present, no dictionary, bounded window.
pub fn parse_zstd_frame_header(bytes: &[u8]) -> Result<ZstdFrameInfo, FormatError> {
    let bad = |detail: &str| FormatError::new(ErrorClass::ChunkCorrupt, "zstd frame header", detail.to_string());
    if bytes.len() < 5 {
        return Err(bad("shorter than a frame header"));
    }
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != ZSTD_MAGIC {
        return Err(bad("does not start with the zstd frame magic"));
    }
    let descriptor = bytes[4];
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    if descriptor & 0x08 != 0 {
        return Err(bad("reserved bit set in Frame_Header_Descriptor"));
    }
    let dict_len = [0usize, 1, 2, 4][usize::from(descriptor & 0x03)];
    let fcs_len = match fcs_flag {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut at = 5usize;
    let mut window_size = 0u64;
    if !single_segment {
        let wd = *bytes.get(at).ok_or_else(|| bad("truncated Window_Descriptor"))?;
        at += 1;
        let exponent = u32::from(wd >> 3);
        let mantissa = u64::from(wd & 7);
        let base = 1u64 << (10 + exponent);
        window_size = base + (base / 8) * mantissa;
    }
    let field = |at: usize, len: usize| -> Result<u64, FormatError> {
        let slice = bytes.get(at..at + len).ok_or_else(|| bad("truncated frame header"))?;
        Ok(slice.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    let dictionary_id = field(at, dict_len)? as u32;
    at += dict_len;
    let content_size = if fcs_len == 0 {
        None
    } else {
        let value = field(at, fcs_len)?;
        Some(if fcs_len == 2 { value + 256 } else { value })
    };
    if single_segment {
        window_size = content_size.unwrap_or(0);
    }
    Ok(ZstdFrameInfo {
        content_size,
        window_size,
        dictionary_id,
        header_length: (at + fcs_len) as u64,
        has_checksum: descriptor & 0x04 != 0,
    })
}

/// Finds where a zstd frame ends from its block headers alone (RFC 8878,
/// 3.1.1.2), for a reader that streams the stored bytes instead of holding them:
/// it is told each 3-byte block header in turn and says where the next one is.
#[derive(Clone, Copy, Debug)]
pub struct ZstdBlockWalk {
    next_header: u64,
    end: Option<u64>,
    checksum_length: u64,
}

impl ZstdBlockWalk {
    /// Starts the walk at the first block header of the frame described by `info`.
    pub fn new(info: &ZstdFrameInfo) -> Self {
        ZstdBlockWalk {
            next_header: info.header_length,
            end: None,
            checksum_length: if info.has_checksum { 4 } else { 0 },
        }
    }

    /// Where, from the frame's start, the next block header lies; `None` once the
    /// last block was seen.
    pub fn next_header(&self) -> Option<u64> {
        self.end.is_none().then_some(self.next_header)
    }

    /// Takes the block header found at `next_header()`.
    pub fn take(&mut self, header: [u8; 3]) -> Result<(), FormatError> {
        let value = u32::from(header[0]) | u32::from(header[1]) << 8 | u32::from(header[2]) << 16;
        let last = value & 1 != 0;
        let size = u64::from(value >> 3);
        let content = match (value >> 1) & 3 {
            // Raw and compressed blocks store `size` bytes; an RLE block stores one.
            0 | 2 => size,
            1 => 1,
            _ => {
                return Err(FormatError::new(
                    ErrorClass::ChunkCorrupt,
                    "zstd block header",
                    format!("reserved block type at frame byte {}", self.next_header),
                ))
            }
        };
        self.next_header += 3 + content;
        if last {
            self.end = Some(self.next_header + self.checksum_length);
        }
        Ok(())
    }

    /// The frame's whole length, once the last block was taken.
    pub fn frame_length(&self) -> Option<u64> {
        self.end
    }
}

/// Checks a zstd chunk's frame header against the chunk's raw length and the
/// format's rules, before any decompression.
pub fn validate_zstd_frame(stored: &[u8], raw_length: u32) -> Result<(), FormatError> {
    let info = parse_zstd_frame_header(stored)?;
    let rule = |detail: String| Err(FormatError::new(ErrorClass::ChunkCorrupt, "zstd frame header", detail));
    if info.content_size != Some(u64::from(raw_length)) {
        return rule(format!(
            "Frame_Content_Size {:?}, expected the chunk's raw length {raw_length}",
            info.content_size
        ));
    }
    if info.dictionary_id != 0 {
        return rule(format!("Dictionary_ID {} (dictionaries are not allowed)", info.dictionary_id));
    }
    if info.window_size > limits::MAX_ZSTD_WINDOW {
        return rule(format!("Window_Size {} exceeds the limit {}", info.window_size, limits::MAX_ZSTD_WINDOW));
    }
    Ok(())
}
