//! Writes Strata archives (`spec/FORMAT.md`) in one pass to any [`std::io::Write`].
//!
//! [`ArchiveWriter`] owns the output and the archive-wide state (the chunk store's
//! deduplication map, the section list, the index to write at the end);
//! [`ImageSource`] is where block-image bytes come from; [`ArchiveWriter::add_tree`]
//! walks a folder into a file-tree section. Choosing the output file,
//! atomic renames and progress display are the caller's policy.

mod archive;
mod chunker;
mod error;
mod files_cache;
mod source;
mod tree;

pub use archive::{ArchiveSummary, ArchiveWriter, ChainBase, ImageSummary, ParentFacts, WriterOptions};
pub use error::WriteError;
pub use files_cache::FilesCache;
pub use source::{FileSource, Hole, ImageSource, SliceSource, StreamSource, UsedBlocks, Window, WindowReader};
/// The format's types an [`EntrySource`] builds its entries from
/// (`spec/FORMAT.md` section 8), re-exported so that a caller needs only this
/// crate.
pub use strata_format::files::{entry_order, Captured, Entry, EntryFlags, EntryKind, Timestamp, Xattr, NO_PARENT};
pub use tree::{count_tree, EntrySource, SourceEntry, TreeOptions, TreeSummary, TreeTotals, TreeWarning};

/// Receives progress as bytes of source are consumed. The CLI draws bars with it.
pub trait Progress: Sync {
    /// `bytes` more bytes of the source have been processed.
    fn advance(&self, bytes: u64);
    /// One more entry of a file tree has been recorded (set against
    /// [`TreeTotals::entries`] for a file count).
    fn entry(&self) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
