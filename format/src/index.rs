//! The archive index and the trailer: written last, they let a reader find every
//! section from the end of the file without walking the records.

use binrw::{binrw, BinRead, BinWrite};

use crate::layout::fixed_layout;
use crate::{limits, ErrorClass, FormatError};

/// The last 8 bytes of every archive: `STRATA` followed by `\r\n` (a newline
/// translation shows as a changed trailer magic).
pub const TRAILER_MAGIC: [u8; 8] = *b"STRATA\r\n";
/// Size of the trailer record, header included: the last bytes of the file.
pub const TRAILER_RECORD_SIZE: u64 = 32 + Trailer::SIZE as u64;

fixed_layout! {
    /// The body of the `TRAILER` record, the last record of an archive.
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

/// Section kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// A block image (`IMAGE_*` records).
    Image,
    /// A file tree (record types 0x0020 to 0x002F, reserved for it).
    FileTree,
}

impl SectionKind {
    pub const fn code(self) -> u8 {
        match self {
            SectionKind::Image => 1,
            SectionKind::FileTree => 2,
        }
    }
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
    /// One section in the `ARCHIVE_INDEX`.
    pub struct SectionEntry : 32 bytes {
        /// A [`SectionKind`] code.
        pub kind: u8,
        /// Zero.
        pub reserved: [u8; 3],
        pub section_id: u32,
        /// Archive offset of the section's first record (`IMAGE_BEGIN`).
        pub begin_offset: u64,
        /// Archive offset of the section's last record (`IMAGE_END`).
        pub end_offset: u64,
        /// Archive offset of the section's table record (`IMAGE_INDEX`).
        pub table_offset: u64,
    }
}

/// The body of `ARCHIVE_INDEX`.
#[binrw]
#[brw(little)]
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ArchiveIndex {
    #[bw(calc = sections.len() as u32)]
    section_count: u32,
    /// Zero.
    pub reserved: u32,
    /// Section entries in section-id order.
    #[br(count = section_count, map = |raw: Vec<[u8; 32]>| raw.iter().map(SectionEntry::decode).collect())]
    #[bw(map = |entries: &Vec<SectionEntry>| entries.iter().map(SectionEntry::encode).collect::<Vec<_>>())]
    pub sections: Vec<SectionEntry>,
}

impl ArchiveIndex {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = binrw::io::Cursor::new(Vec::with_capacity(8 + 32 * self.sections.len()));
        self.write(&mut out).expect("writing to a Vec cannot fail");
        out.into_inner()
    }

    /// Parses and validates a body whose CRC has been checked.
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
        if body.len() as u64 != 8 + u64::from(count) * SectionEntry::SIZE as u64 {
            return Err(FormatError::malformed(
                "ARCHIVE_INDEX body",
                format!("{} bytes for {count} sections", body.len()),
            ));
        }
        let index = ArchiveIndex::read(&mut binrw::io::Cursor::new(body))
            .map_err(|e| FormatError::malformed("ARCHIVE_INDEX body", e.to_string()))?;
        if index.reserved != 0 {
            return Err(FormatError::malformed("ARCHIVE_INDEX reserved", "not zero"));
        }
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
