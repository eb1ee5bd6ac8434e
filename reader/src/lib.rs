//! Reads Strata archives (`spec/FORMAT.md`).
//!
//! - [`Archive`] opens an archive through positional reads ([`ReadAt`]: a file, a
//!   byte slice, anything), finds the index from the trailer, and reads any byte
//!   range of any image with an O(log n) extent lookup; a [`ChunkCache`] keeps
//!   decoded chunks for readers that come back to them (a server, a mount).
//! - [`Archive::image`] gives an [`Image`] handle: bytes by position, or through
//!   [`std::io::Read`] and [`std::io::Seek`] ([`Image::reader`]) for crates that
//!   parse a disk that way; its extents, lost ranges, and a restore.
//! - [`Archive::tree`] gives a [`Tree`] handle on a file-tree section: its
//!   [`Entry`]s in order ([`Tree::entries`]), a path looked up through the
//!   directory tables ([`Tree::lookup`]), a directory's children
//!   ([`Tree::read_dir`]), a file's content through [`std::io::Read`] and
//!   [`std::io::Seek`] ([`Tree::open`], hard links followed), an extraction
//!   (`Tree::extract_to`, with the `extract` feature).
//! - [`stream`] reads an archive front to back from a pipe, without the index.
//! - [`verify`] walks every record, resynchronises past damage, and reports every
//!   problem with its location and the image byte ranges it affects.
//! - [`sink`] holds the restore destinations: a regular file (holes stay holes),
//!   a block device (holes are zeroed), or a stream.
//! - [`recovery`] is for salvage: what a walk of a damaged archive found sound.
//!
//! Inside, image and tree code are peers: `image/` and `tree/` each hold
//! their section's loading and its handle, `verify/` its walk and one file of
//! checks per section kind; `record` is the one place records are read
//! (`spec/FORMAT.md` sections 5 and 11).
//!
//! Nothing here trusts a size from the archive before checking it against the
//! format's limits and the caller's [`Limits`].
//!
//! Features, both on by default: `parallel` decodes the chunks of
//! [`Archive::restore_image`] on several threads (rayon; without it, the same
//! batches on the calling thread, with the same results), and `extract` gives
//! the `extract` module and `Tree::extract_to`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod archive;
mod cache;
mod chain;
mod chunk;
mod error;
#[cfg(feature = "extract")]
pub mod extract;
mod image;
mod read_at;
mod record;
pub mod recovery;
pub mod sink;
pub mod stream;
pub mod tree;
pub mod verify;

pub use archive::{Archive, Chunk, Limits, Section};
pub use cache::{ChunkCache, ReadAhead};
pub use chain::{ParentSearch, MAX_OPEN_ANCESTORS};
pub use chunk::{decode_chunk, decode_chunk_prefix};
pub use error::{Error, ErrorKind};
pub use image::section::ImageSection;
pub use image::{Image, ImageExtent, ImagePiece, ImageReader};
pub use read_at::ReadAt;
pub use record::decode_table_body;
pub use strata_format::files::{Captured, EntryKind, Timestamp, Xattr};
pub use strata_format::{ErrorClass, ExtentKind};
pub use tree::entry::Entry;
pub use tree::file_reader::FileReader;
pub use tree::handle::{Entries, ReadDir, Subtree, Tree};
pub use tree::{PathEntry, Piece, TreeSection};

/// The README's example runs as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
