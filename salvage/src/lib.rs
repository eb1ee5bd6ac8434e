//! Salvage: everything intact in a damaged archive, written into a new valid one
//! (`spec/FORMAT.md` section 11).
//!
//! The reader's walk ([`strata_reader::recovery::scan`]) finds what survives,
//! resynchronising past damage; this crate decides what the new archive holds
//! and feeds it to the writer. Image ranges whose data is gone become lost
//! extents. File-tree entries whose records survive keep their metadata and
//! place; a file whose content is damaged keeps its entry, flagged as content
//! that could not be read; entries whose folder was lost are kept under a
//! `lost+found` folder at the tree's root, as `fsck` does.

mod image;
mod tree;

use std::io::Write;

use strata_reader::verify::Report;
use strata_reader::{Limits, ParentSearch, ReadAt};
use strata_writer::{ArchiveWriter, Progress, WriteError, WriterOptions};

pub use image::ImageOutcome;
pub use tree::{LostEntry, TreeOutcome};

/// Why salvage wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error("nothing of a Strata archive was found")]
    NotStrata,
    #[error("no section survives")]
    NothingSurvives,
    #[error("{0}")]
    Read(#[from] strata_reader::Error),
    #[error("{0}")]
    Write(#[from] WriteError),
}

/// What salvage kept and lost.
#[derive(Debug)]
pub struct Outcome {
    /// The walk's report on the damaged archive.
    pub report: Report,
    pub images: Vec<ImageOutcome>,
    pub trees: Vec<TreeOutcome>,
    /// Length of the new archive.
    pub archive_length: u64,
}

impl Outcome {
    /// Whether anything at all was lost (or the input had problems).
    pub fn lost_anything(&self) -> bool {
        !self.report.problems.is_empty()
            || self.images.iter().any(|i| !i.lost.is_empty())
            || self.trees.iter().any(TreeOutcome::lost_anything)
    }
}

/// Reads the damaged archive `damaged`, writes everything intact to `out` as a
/// new archive, and says what was kept and lost. `scanned` is called with the
/// bytes walked, `progress` with the bytes written anew.
pub fn salvage<R: ReadAt + ?Sized, W: Write>(
    damaged: &R,
    out: W,
    options: WriterOptions,
    limits: Limits,
    scanned: &dyn Fn(u64),
    progress: &dyn Progress,
) -> Result<(W, Outcome), SalvageError> {
    salvage_with_parents(damaged, out, options, limits, &ParentSearch::default(), scanned, progress)
}

/// [`salvage`] of an archive whose ancestors (an incremental archive,
/// `spec/FORMAT.md` 15) are looked for as `parents` says. The new archive is
/// self-contained: every ancestor chunk that can be read and checked is
/// stored in it, and what needs an ancestor that cannot is lost. Of an intact
/// child, that is its flattened copy (15.7).
pub fn salvage_with_parents<R: ReadAt + ?Sized, W: Write>(
    damaged: &R,
    out: W,
    options: WriterOptions,
    limits: Limits,
    parents: &ParentSearch,
    scanned: &dyn Fn(u64),
    progress: &dyn Progress,
) -> Result<(W, Outcome), SalvageError> {
    let (report, recovered) = strata_reader::recovery::scan_with_parents(damaged, limits, parents, scanned)?;
    if !report.recognised {
        return Err(SalvageError::NotStrata);
    }
    if recovered.images.is_empty() && recovered.trees.is_empty() {
        return Err(SalvageError::NothingSurvives);
    }
    let created_ns = options.created_ns;
    let mut writer = ArchiveWriter::new(out, options)?;
    let mut images = Vec::new();
    for image in &recovered.images {
        images.push(image::salvage_image(&mut writer, damaged, &recovered, image, &limits, progress)?);
    }
    let mut trees = Vec::new();
    for tree in &recovered.trees {
        trees.push(tree::salvage_tree(&mut writer, damaged, &recovered, tree, &limits, created_ns, progress)?);
    }
    let (out, summary) = writer.finish()?;
    Ok((out, Outcome { report, images, trees, archive_length: summary.archive_length }))
}
