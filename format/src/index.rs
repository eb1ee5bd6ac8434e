//! The archive index and the trailer (`spec/FORMAT.md` section 9.2 and 9.3):
//! written last, they let a reader find every section from the end of the file
//! without walking the records (section 10.1).

use crate::layout::fixed_layout;
use crate::{limits, ErrorClass, FormatError};

/// The last 8 bytes of every archive: `STRATA` followed by `\r\n` (a newline
/// translation shows as a changed trailer magic).
pub const TRAILER_MAGIC: [u8; 8] = *b"STRATA\r\n";
/// Size of the trailer record, header included: the last bytes of the file.
pub const TRAILER_RECORD_SIZE: u64 = 32 + Trailer::SIZE as u64;

fixed_layout! {
    /// The body of the `TRAILER` record (`spec/FORMAT.md` 9.3), the last record of an archive.
    pub struct Trailer : 32 bytes {
        /// Archive offset of the `ARCHIVE_INDEX` record.
        pub index_offset: u64,
        /// Length of the whole archive in bytes, this record included.
        pub archive_length: u64,
        /// Number of records before this one.
        pub record_count: u64,
        /// [`TRAILER_MAGIC`].
        pub magic: [u8; 8],
    }
}

impl Trailer {
    /// Checks the rules of spec 9.3 on the trailer alone: magic, and `index_offset` within the archive.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.magic != TRAILER_MAGIC {
            return Err(FormatError::malformed("TRAILER magic", format!("{:02x?}", self.magic)));
        }
        if self.index_offset < 128 || self.index_offset >= self.archive_length {
            return Err(FormatError::new(
                ErrorClass::IndexMismatch,
                "TRAILER index_offset",
                format!(
                    "{} lies outside the archive's records (archive length {})",
                    self.index_offset, self.archive_length
                ),
            ));
        }
        Ok(())
    }
}

/// Section kinds: the `kind` byte of a section entry (`spec/FORMAT.md` 9.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// A block image (`IMAGE_*` records).
    Image,
    /// A file tree (record types 0x0020 to 0x002F, reserved for it).
    FileTree,
}

impl SectionKind {
    /// The code stored in `SectionEntry::kind` (spec 9.2).
    pub const fn code(self) -> u8 {
        match self {
            SectionKind::Image => 1,
            SectionKind::FileTree => 2,
        }
    }
    /// The kind with code `code`, or `None` for a value the spec does not define (`record-malformed`).
    pub const fn from_code(code: u8) -> Option<SectionKind> {
        match code {
            1 => Some(SectionKind::Image),
            2 => Some(SectionKind::FileTree),
            _ => None,
        }
    }
    /// The name used in JSON output and the manifest.
    pub const fn name(self) -> &'static str {
        match self {
            SectionKind::Image => "image",
            SectionKind::FileTree => "files",
        }
    }
}

fixed_layout! {
    /// One section in the `ARCHIVE_INDEX` (`spec/FORMAT.md` 9.2).
    pub struct SectionEntry : 32 bytes {
        /// A [`SectionKind`] code.
        pub kind: u8,
        /// Zero.
        pub reserved: [u8; 3],
        /// The section's number: equal to the entry's position.
        pub section_id: u32,
        /// Archive offset of the section's first record (`IMAGE_BEGIN`).
        pub begin_offset: u64,
        /// Archive offset of the section's last record (`IMAGE_END`).
        pub end_offset: u64,
        /// Archive offset of the section's table record (`IMAGE_INDEX`).
        pub table_offset: u64,
    }
}

/// Bytes before the section entries of an incremental archive's
/// `ARCHIVE_INDEX` (9.2): the 8-byte head, `chain_index_offset` and
/// `chain_index_blake3`.
pub const ARCHIVE_INDEX_CHAIN_HEAD: usize = 48;

/// Where an incremental archive's `CHAIN_INDEX` is, and its BLAKE3 (9.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainIndexPointer {
    /// Record offset of the `CHAIN_INDEX`.
    pub offset: u64,
    /// BLAKE3 of its (decoded) body.
    pub blake3: [u8; 32],
}

/// The body of `ARCHIVE_INDEX` (`spec/FORMAT.md` 9.2).
///
/// ```
/// use strata_format::{ArchiveIndex, ErrorClass, SectionEntry, SectionKind};
/// let entry = SectionEntry {
///     kind: SectionKind::Image.code(),
///     reserved: [0; 3],
///     section_id: 0,
///     begin_offset: 128,
///     end_offset: 4096,
///     table_offset: 8192,
/// };
/// let index = ArchiveIndex { reserved: 0, chain_index: None, sections: vec![entry] };
/// let body = index.to_bytes();
/// assert_eq!(body.len(), 8 + 32);
/// assert_eq!(ArchiveIndex::parse(&body), Ok(index));
///
/// // A length that fits no section count is refused.
/// assert_eq!(ArchiveIndex::parse(&body[..39]).unwrap_err().class, ErrorClass::RecordMalformed);
/// // An entry whose id is not its position disagrees with the records.
/// let wrong = ArchiveIndex { reserved: 0, chain_index: None, sections: vec![SectionEntry { section_id: 1, ..entry }] };
/// assert_eq!(ArchiveIndex::parse(&wrong.to_bytes()).unwrap_err().class, ErrorClass::IndexMismatch);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ArchiveIndex {
    /// Zero.
    pub reserved: u32,
    /// Present exactly in an archive with feature bit 1 (`incremental`).
    pub chain_index: Option<ChainIndexPointer>,
    /// Section entries in section-id order.
    pub sections: Vec<SectionEntry>,
}

impl ArchiveIndex {
    /// Encodes the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ARCHIVE_INDEX_CHAIN_HEAD + 32 * self.sections.len());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.reserved.to_le_bytes());
        if let Some(pointer) = &self.chain_index {
            out.extend_from_slice(&pointer.offset.to_le_bytes());
            out.extend_from_slice(&pointer.blake3);
        }
        for entry in &self.sections {
            out.extend_from_slice(&entry.encode());
        }
        out
    }

    /// Parses and validates a body whose CRC has been checked. Its length says
    /// whether it has the chain fields (8 + 32n without, 48 + 32n with: the two
    /// never coincide); the caller checks that against feature bit 1.
    pub fn parse(body: &[u8]) -> Result<ArchiveIndex, FormatError> {
        let Some((count, _)) = crate::split_array::<4>(body) else {
            return Err(FormatError::malformed("ARCHIVE_INDEX body", "shorter than 8 bytes"));
        };
        let count = u32::from_le_bytes(*count);
        if count > limits::MAX_SECTIONS {
            return Err(FormatError::new(
                ErrorClass::LimitExceeded,
                "ARCHIVE_INDEX section_count",
                format!("{count} exceeds {}", limits::MAX_SECTIONS),
            ));
        }
        let entries_length = u64::from(count) * SectionEntry::SIZE as u64;
        let head = match body.len() as u64 {
            n if n == 8 + entries_length => 8,
            n if n == ARCHIVE_INDEX_CHAIN_HEAD as u64 + entries_length => ARCHIVE_INDEX_CHAIN_HEAD,
            _ => {
                return Err(FormatError::malformed(
                    "ARCHIVE_INDEX body",
                    format!("{} bytes for {count} sections", body.len()),
                ))
            }
        };
        let reserved = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
        if reserved != 0 {
            return Err(FormatError::malformed("ARCHIVE_INDEX reserved", "not zero"));
        }
        let chain_index = (head == ARCHIVE_INDEX_CHAIN_HEAD).then(|| ChainIndexPointer {
            offset: u64::from_le_bytes(body[8..16].try_into().expect("8 bytes")),
            blake3: body[16..48].try_into().expect("32 bytes"),
        });
        let sections: Vec<SectionEntry> = body[head..]
            .chunks_exact(SectionEntry::SIZE)
            .map(|raw| SectionEntry::decode(raw.try_into().expect("32 bytes")))
            .collect();
        let index = ArchiveIndex { reserved, chain_index, sections };
        for (position, entry) in index.sections.iter().enumerate() {
            if entry.section_id as usize != position {
                return Err(FormatError::new(
                    ErrorClass::IndexMismatch,
                    "ARCHIVE_INDEX section_id",
                    format!("entry {position} has section id {}", entry.section_id),
                ));
            }
            if SectionKind::from_code(entry.kind).is_none() || entry.reserved != [0; 3] {
                return Err(FormatError::malformed(
                    "ARCHIVE_INDEX section entry",
                    format!("entry {position}: unknown kind {} or reserved bytes set", entry.kind),
                ));
            }
            if !(entry.begin_offset < entry.end_offset && entry.end_offset < entry.table_offset) {
                return Err(FormatError::new(
                    ErrorClass::IndexMismatch,
                    "ARCHIVE_INDEX section entry",
                    format!("entry {position}: offsets out of order"),
                ));
            }
        }
        Ok(index)
    }
}
