//! Layout types, constants and validation of the Strata archive format.
//!
//! This crate is the code form of `spec/FORMAT.md`: every fixed structure, every
//! constant and every validity rule that can be checked on one structure alone.
//! It performs no I/O and holds no policy; the reader and the writer build on it.
//!
//! An archive is, in order: the [`ArchiveHeader`] at offset 0, then a sequence of
//! records, each a [`RecordHeader`] followed by its body, ending with the
//! [`RecordType::Trailer`] record whose fixed size lets a reader find the index
//! from the last bytes of the file.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

pub(crate) mod layout;

pub mod chain;
pub mod chunk;
pub mod error;
pub mod files;
pub mod header;
pub mod image;
pub mod index;
pub mod record;
pub mod table;
pub mod text;
pub mod tree_check;

pub use chain::{Ancestor, Chain, ChainIndex, ChainRef, ChunkRef};
pub use chunk::{ChunkEncoding, ChunkHeader};
pub use error::{ErrorClass, FormatError};
pub use header::{ArchiveHeader, Features};
pub use image::{Extent, ExtentKind, ImageBegin, ImageEnd, ImageFlags};
pub use index::{ArchiveIndex, SectionEntry, SectionKind, Trailer};
pub use layout::{split_array, LeField};
pub use record::{PrefixHead, RecordFlags, RecordHeader, RecordType};
pub use text::escaped;

/// The README's example runs as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// CRC-32C (Castagnoli), the one checksum of every header and record.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Continues a CRC-32C over more bytes: `crc32c_append(crc32c(a), b)` is the
/// CRC of `a` followed by `b`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

/// Whether every byte is zero. The fold has no early exit so it vectorises;
/// callers test long buffers block by block.
pub fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, &b| acc | b) == 0
}

/// Format limits (`spec/FORMAT.md` section 13): what a valid archive may contain. Implementation limits (how
/// much a given reader is willing to allocate) are the reader's, and are smaller.
pub mod limits {
    /// Largest raw (uncompressed) length of one chunk: 16 MiB.
    pub const MAX_CHUNK_RAW: u32 = 1 << 24;
    /// Smallest chunk size an image section may declare: 4 KiB.
    pub const MIN_CHUNK_SIZE: u32 = 1 << 12;
    /// Largest zstd Window_Size a chunk frame may declare: 16 MiB.
    pub const MAX_ZSTD_WINDOW: u64 = 1 << 24;
    /// Longest section name in bytes.
    pub const MAX_SECTION_NAME: usize = 255;
    /// Most sections in one archive.
    pub const MAX_SECTIONS: u32 = 65_536;
    /// Most extents in one `IMAGE_EXTENTS` record.
    pub const MAX_EXTENTS_PER_RECORD: u32 = 65_536;
    /// Largest logical image size: 2^63 - 1 bytes (offsets stay signed-safe).
    pub const MAX_IMAGE_SIZE: u64 = i64::MAX as u64;
    /// Largest header_length a reader must accept.
    pub const MAX_HEADER_LENGTH: u32 = 4096;
    /// Smallest sector size an image section may declare.
    pub const MIN_SECTOR_SIZE: u32 = 512;
    /// Largest sector size an image section may declare.
    pub const MAX_SECTOR_SIZE: u32 = 65_536;
    /// Most ancestors an incremental archive may list (section 15.2).
    pub const MAX_CHAIN_DEPTH: u32 = 64;
}
