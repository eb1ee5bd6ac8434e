//! The record framing (`spec/FORMAT.md` section 5): one header type for everything
//! after the archive header, the closed list of record types (5.1) and the rules
//! for a compressed body (5.2).

use crate::layout::fixed_layout;
use crate::{ErrorClass, FormatError};

/// `D3 52 45 43` ("\xd3REC"): the resynchronisation marker that starts every record.
pub const RECORD_MAGIC: [u8; 4] = *b"\xd3REC";
/// Offset of `header_crc` inside a record header; the CRC covers the bytes before it.
pub const RECORD_HEADER_CRC_OFFSET: usize = 28;

fixed_layout! {
    /// The header of every record (`spec/FORMAT.md` section 5, "Record framing").
    ///
    /// ```
    /// use strata_format::{ErrorClass, RecordHeader, RecordType};
    /// let tag = [1; 8];
    /// let header = RecordHeader::new(RecordType::ImageEnd, 0, tag, &[0; 96]);
    /// let bytes = header.encode();
    /// assert_eq!(RecordHeader::decode(&bytes), header);
    /// assert_eq!(header.validate(&bytes, tag), Ok(Some(RecordType::ImageEnd)));
    ///
    /// // A damaged `body_length` fails the header CRC.
    /// let mut damaged = bytes;
    /// damaged[16] ^= 1;
    /// let err = RecordHeader::decode(&damaged).validate(&damaged, tag).unwrap_err();
    /// assert_eq!(err.class, ErrorClass::RecordChecksum);
    ///
    /// // A record of another archive is refused.
    /// assert_eq!(header.validate(&bytes, [2; 8]).unwrap_err().class, ErrorClass::RecordMalformed);
    /// ```
    pub struct RecordHeader : 32 bytes {
        /// [`RECORD_MAGIC`].
        pub magic: [u8; 4],
        /// A [`RecordType`] value.
        pub record_type: u16,
        /// [`RecordFlags`] bits.
        pub flags: u16,
        /// The first 8 bytes of the archive UUID: ties the record to its archive.
        pub archive_tag: [u8; 8],
        /// Length of the body that follows the header.
        pub body_length: u64,
        /// CRC-32C of the body.
        pub body_crc: u32,
        /// CRC-32C of header bytes 0 to 27.
        pub header_crc: u32,
    }
}

/// Record types (`spec/FORMAT.md` 5.1, "Record types").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// A chunk of stored data.
    Chunk,
    /// Opens a block-image section.
    ImageBegin,
    /// A run of a block-image section's extent map.
    ImageExtents,
    /// Closes a block-image section, with its totals.
    ImageEnd,
    /// The complete extent map of one image, written after all sections.
    ImageIndex,
    /// Opens a file-tree section.
    FilesBegin,
    /// File content announced before the chunks that hold it.
    FilesExtents,
    /// File-tree entries (metadata), after their content.
    FilesEntries,
    /// Closes a file-tree section, with its totals.
    FilesEnd,
    /// One directory's sorted children, written after all sections.
    FilesDir,
    /// A file-tree section's table record, written after all sections.
    FilesIndex,
    /// The ancestors of an incremental archive: its first record (15.2).
    Chain,
    /// The chain's copy and the ancestor chunks referred to (15.3).
    ChainIndex,
    /// The list of sections, written just before the trailer.
    ArchiveIndex,
    /// The fixed-size last record.
    Trailer,
}

impl RecordType {
    /// The code stored in `RecordHeader::record_type` (spec 5.1).
    pub const fn code(self) -> u16 {
        match self {
            RecordType::Chunk => 0x0001,
            RecordType::ImageBegin => 0x0010,
            RecordType::ImageExtents => 0x0011,
            RecordType::ImageEnd => 0x0012,
            RecordType::ImageIndex => 0x0013,
            RecordType::FilesBegin => 0x0020,
            RecordType::FilesExtents => 0x0021,
            RecordType::FilesEntries => 0x0022,
            RecordType::FilesEnd => 0x0023,
            RecordType::FilesDir => 0x0024,
            RecordType::FilesIndex => 0x0025,
            RecordType::Chain => 0x0002,
            RecordType::ChainIndex => 0x00F1,
            RecordType::ArchiveIndex => 0x00F0,
            RecordType::Trailer => 0x00FF,
        }
    }

    /// The type with code `code`, or `None` for a type this version does not define.
    pub const fn from_code(code: u16) -> Option<RecordType> {
        Some(match code {
            0x0001 => RecordType::Chunk,
            0x0010 => RecordType::ImageBegin,
            0x0011 => RecordType::ImageExtents,
            0x0012 => RecordType::ImageEnd,
            0x0013 => RecordType::ImageIndex,
            0x0020 => RecordType::FilesBegin,
            0x0021 => RecordType::FilesExtents,
            0x0022 => RecordType::FilesEntries,
            0x0023 => RecordType::FilesEnd,
            0x0024 => RecordType::FilesDir,
            0x0025 => RecordType::FilesIndex,
            0x0002 => RecordType::Chain,
            0x00F1 => RecordType::ChainIndex,
            0x00F0 => RecordType::ArchiveIndex,
            0x00FF => RecordType::Trailer,
            _ => return None,
        })
    }

    /// The specification's name for the type.
    pub const fn name(self) -> &'static str {
        match self {
            RecordType::Chunk => "CHUNK",
            RecordType::ImageBegin => "IMAGE_BEGIN",
            RecordType::ImageExtents => "IMAGE_EXTENTS",
            RecordType::ImageEnd => "IMAGE_END",
            RecordType::ImageIndex => "IMAGE_INDEX",
            RecordType::FilesBegin => "FILES_BEGIN",
            RecordType::FilesExtents => "FILES_EXTENTS",
            RecordType::FilesEntries => "FILES_ENTRIES",
            RecordType::FilesEnd => "FILES_END",
            RecordType::FilesDir => "FILES_DIR",
            RecordType::FilesIndex => "FILES_INDEX",
            RecordType::Chain => "CHAIN",
            RecordType::ChainIndex => "CHAIN_INDEX",
            RecordType::ArchiveIndex => "ARCHIVE_INDEX",
            RecordType::Trailer => "TRAILER",
        }
    }

    /// The largest body a valid record of this type can have, checked before any
    /// body is read so a lying length cannot make a reader allocate.
    pub const fn max_body_length(self) -> u64 {
        match self {
            RecordType::Chunk => crate::ChunkHeader::SIZE as u64 + crate::limits::MAX_CHUNK_RAW as u64,
            RecordType::ImageBegin => 24 + crate::limits::MAX_SECTION_NAME as u64,
            RecordType::ImageExtents => {
                crate::image::EXTENT_TABLE_HEAD as u64
                    + crate::limits::MAX_EXTENTS_PER_RECORD as u64 * crate::Extent::SIZE as u64
            }
            RecordType::ImageEnd => crate::ImageEnd::SIZE as u64,
            RecordType::FilesBegin => {
                crate::files::FilesBeginHead::SIZE as u64 + crate::limits::MAX_SECTION_NAME as u64
            }
            RecordType::FilesExtents => {
                crate::files::FileExtentsHead::SIZE as u64
                    + crate::limits::MAX_EXTENTS_PER_RECORD as u64 * crate::files::FileExtent::SIZE as u64
            }
            RecordType::FilesEntries => crate::files::MAX_ENTRIES_BODY,
            RecordType::FilesEnd => crate::files::FilesEnd::SIZE as u64,
            // Bounded by the file size and the reader's configured limit only.
            RecordType::ImageIndex | RecordType::FilesDir | RecordType::FilesIndex | RecordType::ChainIndex => u64::MAX,
            RecordType::Chain => crate::chain::MAX_CHAIN_BODY,
            RecordType::ArchiveIndex => {
                crate::index::ARCHIVE_INDEX_CHAIN_HEAD as u64
                    + crate::limits::MAX_SECTIONS as u64 * crate::SectionEntry::SIZE as u64
            }
            RecordType::Trailer => crate::Trailer::SIZE as u64,
        }
    }
}

/// Record flag bits: the `flags` field of a record header (`spec/FORMAT.md` 5).
#[derive(Debug)]
pub struct RecordFlags;

impl RecordFlags {
    /// A reader that does not know the record's type may skip the record.
    pub const ANCILLARY: u16 = 1 << 0;
    /// The body is stored as one zstd frame (`spec/FORMAT.md` 5.2).
    pub const ZSTD: u16 = 1 << 1;
    /// With `ZSTD`: the frame is decoded against a table of an ancestor, its
    /// prefix (`spec/FORMAT.md` 5.3); the body starts with a [`PrefixHead`].
    pub const PREFIXED: u16 = 1 << 3;
    /// Every bit this version defines; the others are reserved and must be zero.
    pub const KNOWN: u16 = Self::ANCILLARY | Self::ZSTD | Self::PREFIXED;
}

impl RecordType {
    /// Whether a body of this type may be stored compressed (`spec/FORMAT.md`
    /// 5.2): the tables, and nothing a reader must read before knowing how.
    pub const fn may_compress(self) -> bool {
        matches!(
            self,
            RecordType::ImageExtents
                | RecordType::ImageIndex
                | RecordType::FilesExtents
                | RecordType::FilesEntries
                | RecordType::FilesDir
                | RecordType::FilesIndex
                | RecordType::ChainIndex
        )
    }
}

/// Rules 1 to 4 of `spec/FORMAT.md` 5.2 for a body stored compressed, checked
/// on the stored bytes before anything is decoded: returns the decoded length,
/// which the caller may then allocate. `limit` is the reader's own bound for
/// the type (at most the type's maximum body length). Rule 5 (the frame decodes
/// to exactly that length and is the whole body) is the decoder's. The type's
/// own permission ([`RecordType::may_compress`]) is a header rule, checked
/// again here.
///
/// ```
/// use strata_format::record::check_compressed_body;
/// use strata_format::{ErrorClass, RecordType};
/// // A CHUNK is never compressed this way: it has its own encoding.
/// let e = check_compressed_body(RecordType::Chunk, b"", 1 << 20).unwrap_err();
/// assert_eq!(e.class, ErrorClass::RecordMalformed);
/// ```
pub fn check_compressed_body(record_type: RecordType, stored: &[u8], limit: u64) -> Result<u64, FormatError> {
    let malformed = |detail: String| FormatError::new(ErrorClass::RecordMalformed, "compressed body", detail);
    if !record_type.may_compress() {
        return Err(malformed(format!("flag ZSTD on a {} record, whose body is never compressed", record_type.name())));
    }
    let info = crate::chunk::parse_zstd_frame_header(stored).map_err(|e| malformed(e.detail))?;
    let Some(decoded) = info.content_size else {
        return Err(malformed("the zstd frame header has no Frame_Content_Size".to_string()));
    };
    let bound = limit.min(record_type.max_body_length());
    if decoded > bound {
        return Err(FormatError::new(
            ErrorClass::LimitExceeded,
            "compressed body",
            format!("decodes to {decoded} bytes; at most {bound} are accepted for a {} record", record_type.name()),
        ));
    }
    if stored.len() as u64 >= decoded {
        return Err(malformed(format!(
            "{} stored bytes for {decoded} decoded: a body is compressed only when that makes it smaller",
            stored.len()
        )));
    }
    if info.dictionary_id != 0 {
        return Err(malformed(format!("Dictionary_ID {} (dictionaries are not allowed)", info.dictionary_id)));
    }
    if info.window_size > crate::limits::MAX_ZSTD_WINDOW {
        return Err(malformed(format!(
            "Window_Size {} exceeds the limit {}",
            info.window_size,
            crate::limits::MAX_ZSTD_WINDOW
        )));
    }
    Ok(decoded)
}

/// The head of a prefixed body (`spec/FORMAT.md` 5.3): which ancestor record
/// the frame after it is decoded against, and what that record's decoded
/// body (the prefix) must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixHead {
    /// The prefix's record, split as a chunk reference (15.1): an ancestor
    /// and a record offset in its file.
    pub prefix_ref: crate::ChunkRef,
    /// The prefix's length.
    pub prefix_length: u64,
    /// BLAKE3 of the prefix.
    pub prefix_blake3: [u8; 32],
}

impl PrefixHead {
    /// Bytes of the head, before the frame.
    pub const SIZE: usize = 48;

    /// Splits a prefixed body of a record of `record_type` into its head and
    /// its frame, checking rule 2 of 5.3 against a chain of `depth` ancestors.
    ///
    /// ```
    /// use strata_format::record::PrefixHead;
    /// use strata_format::{ChunkRef, RecordType};
    /// let head = PrefixHead { prefix_ref: ChunkRef { archive: 1, offset: 4096 }, prefix_length: 100, prefix_blake3: [7; 32] };
    /// let mut body = head.encode().to_vec();
    /// body.extend_from_slice(b"frame");
    /// let (parsed, frame) = PrefixHead::split(&body, RecordType::FilesEntries, 1).unwrap();
    /// assert_eq!((parsed, frame), (head, &b"frame"[..]));
    /// // Ancestor 2 of a chain of one: no such ancestor.
    /// assert!(PrefixHead::split(&body, RecordType::FilesEntries, 0).is_err());
    /// ```
    pub fn split(body: &[u8], record_type: RecordType, depth: usize) -> Result<(PrefixHead, &[u8]), FormatError> {
        let malformed = |detail: String| FormatError::new(ErrorClass::RecordMalformed, "prefix head", detail);
        if body.len() < Self::SIZE {
            return Err(malformed(format!("a prefixed body of {} bytes, shorter than its 48-byte head", body.len())));
        }
        let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let head = PrefixHead {
            prefix_ref: crate::ChunkRef::split(word(0)),
            prefix_length: word(8),
            prefix_blake3: body[16..48].try_into().expect("32 bytes"),
        };
        let k = usize::from(head.prefix_ref.archive);
        if k == 0 || k > depth || head.prefix_ref.offset < 128 {
            return Err(malformed(format!(
                "prefix_ref names offset {} of archive {k}, not a record of one of the chain's {depth} ancestors",
                head.prefix_ref.offset
            )));
        }
        if head.prefix_length == 0 || head.prefix_length > record_type.max_body_length() {
            return Err(malformed(format!(
                "prefix_length {} is not 1 to {}, a {} body's most",
                head.prefix_length,
                record_type.max_body_length(),
                record_type.name()
            )));
        }
        Ok((head, &body[Self::SIZE..]))
    }

    /// The head's 48 bytes.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[..8].copy_from_slice(&self.prefix_ref.join().to_le_bytes());
        out[8..16].copy_from_slice(&self.prefix_length.to_le_bytes());
        out[16..].copy_from_slice(&self.prefix_blake3);
        out
    }
}

impl RecordHeader {
    /// A header for a body of `body` bytes, CRCs filled in.
    pub fn new(record_type: RecordType, flags: u16, archive_tag: [u8; 8], body: &[u8]) -> Self {
        Self::for_body(record_type.code(), flags, archive_tag, body.len() as u64, crate::crc32c(body))
    }

    /// A header from a body's length and CRC, for bodies written in pieces.
    pub fn for_body(code: u16, flags: u16, archive_tag: [u8; 8], body_length: u64, body_crc: u32) -> Self {
        let mut header = RecordHeader {
            magic: RECORD_MAGIC,
            record_type: code,
            flags,
            archive_tag,
            body_length,
            body_crc,
            header_crc: 0,
        };
        header.header_crc = Self::compute_crc(&header.encode());
        header
    }

    /// The header CRC-32C of encoded header `bytes`: over bytes 0 to 27, so the stored CRC itself is not covered.
    pub fn compute_crc(bytes: &[u8; 32]) -> u32 {
        crate::crc32c(&bytes[..RECORD_HEADER_CRC_OFFSET])
    }

    /// Whether `bytes` are a record header of some archive: its magic, and a
    /// header CRC that vouches for every other field (type, length, tag),
    /// whether or not their values are ones this reader accepts.
    ///
    /// ```
    /// use strata_format::{RecordHeader, RecordType};
    /// let bytes = RecordHeader::new(RecordType::ImageEnd, 0, [7; 8], &[0; 96]).encode();
    /// assert!(RecordHeader::is_intact(&bytes));
    /// let mut damaged = bytes;
    /// damaged[8] ^= 1;
    /// assert!(!RecordHeader::is_intact(&damaged));
    /// ```
    pub fn is_intact(bytes: &[u8; 32]) -> bool {
        let header = Self::decode(bytes);
        header.magic == RECORD_MAGIC && header.header_crc == Self::compute_crc(bytes)
    }

    /// Whether `bytes` start like a record of the archive with `archive_tag`: magic,
    /// tag and header CRC. Used to resynchronise after damage.
    pub fn looks_valid(bytes: &[u8; 32], archive_tag: [u8; 8]) -> bool {
        Self::is_intact(bytes) && Self::decode(bytes).archive_tag == archive_tag
    }

    /// Validates the header alone: magic, CRC, tag, flags, and the body length
    /// against the type's bound. Returns the type, or `None` for an unknown
    /// ancillary type that the reader should skip.
    pub fn validate(&self, bytes: &[u8; 32], archive_tag: [u8; 8]) -> Result<Option<RecordType>, FormatError> {
        if self.magic != RECORD_MAGIC {
            return Err(FormatError::new(
                ErrorClass::RecordChecksum,
                "record magic",
                format!("found {:02x?}, expected {:02x?}", self.magic, RECORD_MAGIC),
            ));
        }
        let computed = Self::compute_crc(bytes);
        if computed != self.header_crc {
            return Err(FormatError::new(
                ErrorClass::RecordChecksum,
                "record header CRC-32C",
                format!("stored {:08x}, computed {computed:08x}", self.header_crc),
            ));
        }
        if self.archive_tag != archive_tag {
            return Err(FormatError::new(
                ErrorClass::RecordMalformed,
                "record archive tag",
                format!("{:02x?} belongs to another archive (this one is {:02x?})", self.archive_tag, archive_tag),
            ));
        }
        if self.flags & !RecordFlags::KNOWN != 0 {
            return Err(FormatError::malformed("record flags", format!("reserved bits set in {:#06x}", self.flags)));
        }
        // After the type is known (an unknown one is `unknown-record` first), on
        // any type, ancillary ones included: a prefix is only read from a frame.
        let prefixed_without_zstd = || {
            let bad = self.flags & RecordFlags::PREFIXED != 0 && self.flags & RecordFlags::ZSTD == 0;
            if bad {
                Err(FormatError::malformed("record flags", "PREFIXED without ZSTD (FORMAT.md 5.3)"))
            } else {
                Ok(())
            }
        };
        let Some(record_type) = RecordType::from_code(self.record_type) else {
            if self.flags & RecordFlags::ANCILLARY != 0 {
                prefixed_without_zstd()?;
                return Ok(None);
            }
            return Err(FormatError::new(
                ErrorClass::UnknownRecord,
                "record type",
                format!("{:#06x} is unknown and not marked ancillary", self.record_type),
            ));
        };
        if self.flags & RecordFlags::ZSTD != 0 && !record_type.may_compress() {
            return Err(FormatError::malformed(
                "record flags",
                format!("ZSTD on a {} record, whose body is never compressed", record_type.name()),
            ));
        }
        prefixed_without_zstd()?;
        if self.flags & RecordFlags::PREFIXED != 0 && record_type == RecordType::ChainIndex {
            return Err(FormatError::malformed(
                "record flags",
                "PREFIXED on a CHAIN_INDEX, which finds the ancestors a prefix is read from (FORMAT.md 5.3)",
            ));
        }
        if self.body_length > record_type.max_body_length() {
            return Err(FormatError::new(
                ErrorClass::LimitExceeded,
                "record body_length",
                format!(
                    "{} for a {} record, whose limit is {}",
                    self.body_length,
                    record_type.name(),
                    record_type.max_body_length()
                ),
            ));
        }
        Ok(Some(record_type))
    }
}
