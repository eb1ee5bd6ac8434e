//! Writes Strata archives (`spec/FORMAT.md`) in one pass to any [`std::io::Write`].
//!
//! [`ArchiveWriter`] owns the output and the archive-wide state (the chunk store's
//! deduplication map, the section list, the index to write at the end);
//! [`ImageSource`] is where block-image bytes come from; [`ArchiveWriter::add_tree`]
//! walks a folder into a file-tree section, and [`ArchiveWriter::add_tree_from`]
//! writes one from entries given in the format's entry order ([`EntrySource`],
//! with [`entry_order`] to sort a tree built in memory). Choosing the output
//! file, atomic renames and progress display are the caller's policy.
//!
//! Section numbers in these docs are those of `spec/FORMAT.md`: the header
//! (3), chunks (6), block images (7), file trees (8), the index and trailer
//! (9), incremental archives (15), and what a conforming writer does (14).
//!
//! ```
//! use strata_writer::{ArchiveWriter, NoProgress, SliceSource, WriterOptions};
//!
//! // A fixed UUID and creation time make the output reproducible.
//! let options = WriterOptions::new([0x5a; 16], 0);
//! let mut writer = ArchiveWriter::new(Vec::new(), options)?;
//! writer.add_image("boot", &mut SliceSource::new(&[0u8; 4096]), &NoProgress)?;
//! let (archive, summary) = writer.finish()?;
//! assert_eq!(summary.images[0].zero_bytes, 4096, "zeros are recorded, not stored");
//! assert_eq!(archive.len() as u64, summary.archive_length);
//! # Ok::<(), strata_writer::WriteError>(())
//! ```
//!
//! `examples/tar2strata.rs` converts a tar stream into a file-tree section
//! through this API alone.

#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![forbid(unsafe_code)]

mod archive;
mod chunker;
mod error;
mod file_cuts;
mod files_cache;
mod fs_source;
mod image;
mod image_delta;
mod source;
mod store;
#[cfg(test)]
mod test_bytes;
mod tree;

pub use archive::{ArchiveSummary, ArchiveWriter, ChainBase, ParentFacts, WriterOptions};
pub use error::WriteError;
pub use file_cuts::FileCuts;
pub use files_cache::FilesCache;
pub use fs_source::{count_tree, FolderSource, TreeOptions, TreeTotals};
pub use image::ImageSummary;
pub use image_delta::{ParentChunk, ParentImage, ParentPart};
pub use source::{
    FileSource, Hole, ImageSource, SliceSource, StreamSource, UsedBlocks, Window, WindowReader, METADATA_CHUNK,
    METADATA_REACH,
};
/// The format's types an [`EntrySource`] builds its entries from
/// (`spec/FORMAT.md` section 8), re-exported so that a caller needs only this
/// crate.
pub use strata_format::files::{entry_order, Captured, Entry, EntryFlags, EntryKind, Timestamp, Xattr, NO_PARENT};
pub use tree::{EntrySource, ParentTables, ReusedContent, SourceEntry, TablePrefix, TreeSummary, TreeWarning};

/// The README's example runs as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Receives progress as bytes of source are consumed. The CLI draws bars with it.
pub trait Progress: Sync {
    /// `bytes` more bytes of the source have been processed.
    fn advance(&self, bytes: u64);
    /// One more entry of a file tree has been recorded (set against
    /// [`TreeTotals::entries`] for a file count).
    fn entry(&self) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
