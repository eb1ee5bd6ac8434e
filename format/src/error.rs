//! The closed list of error classes (`spec/FORMAT.md` section 12), shared by the
//! specification, the vectors' manifest, `verify --json` and every conforming
//! reader, and [`FormatError`], the error every check of this crate returns.

use core::fmt;

/// What kind of defect a reader found. The names (see [`ErrorClass::name`]) are
/// the ones `spec/FORMAT.md` ("Error classes") and `spec/vectors/manifest.json` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Nothing of Strata found: the magic is wrong and no record can be found.
    NotStrata,
    /// The header's major version is not one this reader implements.
    UnsupportedVersion,
    /// An incompatible feature bit is set that this reader does not implement.
    UnsupportedFeature,
    /// The header's CRC-32C does not match, or its fields are invalid.
    BadHeader,
    /// A record header's or body's CRC-32C does not match.
    RecordChecksum,
    /// A record is well framed and its checksums match, but its contents break a rule.
    RecordMalformed,
    /// A record type this reader does not know and that is not marked ancillary.
    UnknownRecord,
    /// A chunk's stored bytes do not decode to its raw bytes: zstd error, wrong
    /// length, or BLAKE3 mismatch.
    ChunkCorrupt,
    /// An extent refers to an offset that holds no valid chunk record.
    DanglingReference,
    /// A section's extents do not tile its image exactly.
    ExtentMap,
    /// The file ends before the structure it declares (trailer lost or cut short).
    Truncated,
    /// The index or trailer disagrees with the records it describes.
    IndexMismatch,
    /// A declared size or count exceeds a format limit or the reader's configured limit.
    LimitExceeded,
    /// An ancestor of an incremental archive cannot be found or opened.
    ParentMissing,
    /// A file found for an ancestor is not the archive the child was written
    /// from, or an ancestor chunk is not the one the child lists.
    ParentMismatch,
}

impl ErrorClass {
    /// Every class, in the order the specification lists them.
    pub const ALL: [ErrorClass; 15] = [
        ErrorClass::NotStrata,
        ErrorClass::UnsupportedVersion,
        ErrorClass::UnsupportedFeature,
        ErrorClass::BadHeader,
        ErrorClass::RecordChecksum,
        ErrorClass::RecordMalformed,
        ErrorClass::UnknownRecord,
        ErrorClass::ChunkCorrupt,
        ErrorClass::DanglingReference,
        ErrorClass::ExtentMap,
        ErrorClass::Truncated,
        ErrorClass::IndexMismatch,
        ErrorClass::LimitExceeded,
        ErrorClass::ParentMissing,
        ErrorClass::ParentMismatch,
    ];

    /// The stable kebab-case name used in JSON and in the vectors' manifest.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorClass::NotStrata => "not-strata",
            ErrorClass::UnsupportedVersion => "unsupported-version",
            ErrorClass::UnsupportedFeature => "unsupported-feature",
            ErrorClass::BadHeader => "bad-header",
            ErrorClass::RecordChecksum => "record-checksum",
            ErrorClass::RecordMalformed => "record-malformed",
            ErrorClass::UnknownRecord => "unknown-record",
            ErrorClass::ChunkCorrupt => "chunk-corrupt",
            ErrorClass::DanglingReference => "dangling-reference",
            ErrorClass::ExtentMap => "extent-map",
            ErrorClass::Truncated => "truncated",
            ErrorClass::IndexMismatch => "index-mismatch",
            ErrorClass::LimitExceeded => "limit-exceeded",
            ErrorClass::ParentMissing => "parent-missing",
            ErrorClass::ParentMismatch => "parent-mismatch",
        }
    }

    /// Looks a class up by its stable name.
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule of the format broken by one structure, found without I/O; its class is
/// one of `spec/FORMAT.md` section 12. The reader
/// adds where the structure was (byte offset, section).
///
/// ```
/// use strata_format::{ChunkHeader, ErrorClass, FormatError};
/// // Every check returns one: here a chunk that claims to hold no byte.
/// let header = ChunkHeader { raw_length: 0, ..ChunkHeader::default() };
/// let err: FormatError = header.validate(0).unwrap_err();
/// assert_eq!(err.class, ErrorClass::RecordMalformed);
/// assert_eq!(err.what, "chunk raw_length");
/// assert_eq!(err.to_string(), format!("{}: {}", err.what, err.detail));
/// assert_eq!(err.class.name(), "record-malformed");
/// assert_eq!(ErrorClass::from_name("record-malformed"), Some(err.class));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct FormatError {
    /// The class a conforming reader reports for it.
    pub class: ErrorClass,
    /// Which structure or field.
    pub what: &'static str,
    /// What was found and what was expected.
    pub detail: String,
}

impl FormatError {
    /// A defect of class `class` in the structure or field `what`, with `detail` saying what was found and what was expected.
    pub fn new(class: ErrorClass, what: &'static str, detail: impl Into<String>) -> Self {
        FormatError { class, what, detail: detail.into() }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorClass::RecordMalformed, what, detail)
    }
}
