//! The archive header at offset 0 (`spec/FORMAT.md` section 3) and the feature
//! masks (section 4): its byte layout, the constants it holds and the checks a
//! reader makes before trusting it.

use crate::layout::fixed_layout;
use crate::{limits, ErrorClass, FormatError};

/// `89 53 54 52 41 54 41 0A`: a high byte catches 7-bit transfers, `\n` catches
/// newline translation (the idea is PNG's).
pub const MAGIC: [u8; 8] = *b"\x89STRATA\n";
/// The major version this crate reads and writes; a reader refuses any other.
pub const VERSION_MAJOR: u16 = 1;
/// The minor version this crate writes; a reader accepts any minor version.
pub const VERSION_MINOR: u16 = 0;
/// Offset of `header_crc` inside the header.
pub const HEADER_CRC_OFFSET: usize = 124;

fixed_layout! {
    /// The archive header (`spec/FORMAT.md` section 3, "Header").
    ///
    /// ```
    /// use strata_format::{ArchiveHeader, ErrorClass};
    /// let header = ArchiveHeader::new([7; 16], 0, "example 1.0");
    /// let bytes = header.encode();
    /// let back = ArchiveHeader::decode(&bytes);
    /// assert_eq!(back, header);
    /// back.validate(&bytes, &[]).expect("a fresh header is valid");
    /// assert_eq!(back.writer_name(), "example 1.0");
    ///
    /// // One flipped bit (in `compatible_features`) is caught by the CRC.
    /// let mut damaged = bytes;
    /// damaged[40] ^= 1;
    /// let err = ArchiveHeader::decode(&damaged).validate(&damaged, &[]).unwrap_err();
    /// assert_eq!(err.class, ErrorClass::BadHeader);
    ///
    /// // Only exactly 128 bytes decode.
    /// assert!(<&[u8; ArchiveHeader::SIZE]>::try_from(&bytes[..127]).is_err());
    /// ```
    pub struct ArchiveHeader : 128 bytes {
        /// [`MAGIC`].
        pub magic: [u8; 8],
        /// Major version: 1.
        pub version_major: u16,
        /// Minor version: 0 in this version of the format.
        pub version_minor: u16,
        /// Length of the header in bytes: 128 here; a later minor version may grow it.
        pub header_length: u32,
        /// Random per archive (or fixed for reproducible output). Its first 8 bytes
        /// are the archive tag every record carries.
        pub archive_uuid: [u8; 16],
        /// Bits a reader must understand to read the archive at all.
        pub incompatible_features: u64,
        /// Bits a reader may ignore.
        pub compatible_features: u64,
        /// Bits a writer that modifies the archive clears if it does not know them.
        pub autoclear_features: u64,
        /// Creation time, nanoseconds since 1970-01-01 00:00:00 UTC.
        pub created_ns: i64,
        /// The writing program's name and version, UTF-8, zero padded.
        pub writer: [u8; 32],
        /// Zero.
        pub reserved: [u8; 28],
        /// CRC-32C of the `header_length` header bytes with this field taken as zero.
        pub header_crc: u32,
    }
}

/// Feature bits and their names (`spec/FORMAT.md` section 4, "Feature bits").
#[derive(Debug)]
pub struct Features;

impl Features {
    /// Incompatible bit 0, reserved: section data is encrypted.
    pub const INCOMPAT_ENCRYPTION: u64 = 1 << 0;
    /// Incompatible bit 1: the archive refers to chunks of its ancestors
    /// (section 15).
    pub const INCOMPAT_INCREMENTAL: u64 = 1 << 1;
    /// Incompatible bits a reader of this version implements.
    pub const INCOMPAT_SUPPORTED: u64 = Self::INCOMPAT_INCREMENTAL;
    /// Compatible bits this version defines: none.
    pub const COMPAT_KNOWN: u64 = 0;
    /// Autoclear bits this version defines: none.
    pub const AUTOCLEAR_KNOWN: u64 = 0;

    /// The specification's name for an incompatible bit, if it has one.
    pub fn incompatible_name(bit: u32) -> Option<&'static str> {
        match bit {
            0 => Some("encryption"),
            1 => Some("incremental"),
            _ => None,
        }
    }

    /// Describes the unsupported incompatible bits of `mask`, naming each one.
    pub fn describe_unsupported(mask: u64) -> Vec<String> {
        (0..64)
            .filter(|bit| mask & !Self::INCOMPAT_SUPPORTED & (1u64 << bit) != 0)
            .map(|bit| match Self::incompatible_name(bit) {
                Some(name) => format!("\"{name}\" (incompatible bit {bit})"),
                None => format!("unknown incompatible bit {bit}"),
            })
            .collect()
    }
}

impl ArchiveHeader {
    /// The 8-byte tag every record of this archive carries.
    pub fn archive_tag(&self) -> [u8; 8] {
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&self.archive_uuid[..8]);
        tag
    }

    /// A header as this crate writes it, with its CRC filled in.
    pub fn new(archive_uuid: [u8; 16], created_ns: i64, writer: &str) -> Self {
        let mut name = [0u8; 32];
        let take = writer.len().min(32);
        name[..take].copy_from_slice(&writer.as_bytes()[..take]);
        let mut header = ArchiveHeader {
            magic: MAGIC,
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            header_length: Self::SIZE as u32,
            archive_uuid,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            created_ns,
            writer: name,
            reserved: [0; 28],
            header_crc: 0,
        };
        header.header_crc = Self::compute_crc(&header.encode(), &[]);
        header
    }

    /// CRC-32C over the fixed 128 bytes (with `header_crc` as zero) followed by any
    /// extension bytes up to `header_length`.
    pub fn compute_crc(fixed: &[u8; 128], extension: &[u8]) -> u32 {
        let mut bytes = *fixed;
        bytes[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].fill(0);
        crc32c::crc32c_append(crc32c::crc32c(&bytes), extension)
    }

    /// Checks the magic alone: is this a Strata archive at all?
    pub fn has_magic(bytes: &[u8]) -> bool {
        bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
    }

    /// Validates everything a reader checks before trusting the header, in the
    /// order the specification gives: magic, length, CRC, version, reserved bytes,
    /// incompatible features. The CRC comes before the version so that a damaged
    /// version byte reads as damage, not as a future format. `extension` holds the bytes from 128 to `header_length`.
    pub fn validate(&self, fixed: &[u8; 128], extension: &[u8]) -> Result<(), FormatError> {
        if self.magic != MAGIC {
            return Err(FormatError::new(
                ErrorClass::NotStrata,
                "header magic",
                format!("found {:02x?}, expected {:02x?}", self.magic, MAGIC),
            ));
        }
        self.validate_length()?;
        let computed = Self::compute_crc(fixed, extension);
        if computed != self.header_crc {
            return Err(FormatError::new(
                ErrorClass::BadHeader,
                "header CRC-32C",
                format!("stored {:08x}, computed {computed:08x}", self.header_crc),
            ));
        }
        if self.version_major != VERSION_MAJOR {
            return Err(FormatError::new(
                ErrorClass::UnsupportedVersion,
                "header version",
                format!(
                    "format version {}.{}, this reader reads {}.x",
                    self.version_major, self.version_minor, VERSION_MAJOR
                ),
            ));
        }
        if self.reserved != [0; 28] {
            return Err(FormatError::new(ErrorClass::BadHeader, "header reserved bytes", "not zero"));
        }
        let unsupported = self.incompatible_features & !Features::INCOMPAT_SUPPORTED;
        if unsupported != 0 {
            return Err(FormatError::new(
                ErrorClass::UnsupportedFeature,
                "header incompatible features",
                format!(
                    "needs {}, which this reader does not support",
                    Features::describe_unsupported(unsupported).join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Checks `header_length` alone, so a reader knows how many bytes to read.
    pub fn validate_length(&self) -> Result<(), FormatError> {
        let len = self.header_length;
        if len < Self::SIZE as u32 || len > limits::MAX_HEADER_LENGTH || !len.is_multiple_of(8) {
            return Err(FormatError::new(
                ErrorClass::BadHeader,
                "header_length",
                format!("{len}, expected a multiple of 8 from 128 to 4096"),
            ));
        }
        Ok(())
    }

    /// The writer field as text, for display.
    pub fn writer_name(&self) -> String {
        let end = self.writer.iter().position(|&b| b == 0).unwrap_or(32);
        String::from_utf8_lossy(&self.writer[..end]).into_owned()
    }
}
