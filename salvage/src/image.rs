//! Images: every window whose extent and chunk survive keeps its data, zero
//! windows stay zero, everything else becomes a lost extent.

use std::collections::HashMap;
use std::io;

use strata_format::image::{REF_FIRST_OFFSET, REF_ZERO};
use strata_format::Extent;
use strata_reader::verify::{Recovered, RecoveredImage};
use strata_reader::{chunk_at, Limits, ReadAt};
use strata_writer::{ArchiveWriter, ImageSource, Progress, Window};

use crate::SalvageError;

/// What salvage kept of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageOutcome {
    pub name: String,
    pub logical_size: u64,
    /// Bytes kept as data (zero ranges not counted).
    pub data_bytes: u64,
    /// The ranges lost, `start..end`, merged.
    pub lost: Vec<(u64, u64)>,
}

/// Serves a recovered image to the writer window by window.
struct RecoveredSource<'a, R: ReadAt + ?Sized> {
    archive: &'a R,
    image: &'a RecoveredImage,
    chunks: &'a HashMap<u64, u32>,
    tag: [u8; 8],
    limits: &'a Limits,
    position: u64,
    lost: Vec<(u64, u64)>,
}

impl<R: ReadAt + ?Sized> RecoveredSource<'_, R> {
    /// The extents that overlap `start..end`.
    fn covering(&self, start: u64, end: u64) -> &[Extent] {
        let extents = &self.image.extents;
        let first = extents.partition_point(|e| e.end() <= start);
        let last = extents.partition_point(|e| e.image_offset < end);
        &extents[first..last.max(first)]
    }

    fn note_lost(&mut self, start: u64, end: u64) {
        match self.lost.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => self.lost.push((start, end)),
        }
    }
}

impl<R: ReadAt + ?Sized> ImageSource for RecoveredSource<'_, R> {
    fn known_size(&self) -> Option<u64> {
        Some(self.image.logical_size)
    }

    fn sector_size(&self) -> u32 {
        self.image.sector_size
    }

    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window> {
        buf.clear();
        let start = self.position;
        let end = (start + len as u64).min(self.image.logical_size);
        if start >= end {
            return Ok(Window::End);
        }
        self.position = end;
        let n = (end - start) as usize;
        let covering = self.covering(start, end);
        let covered = covering.first().is_some_and(|e| e.image_offset <= start)
            && covering.last().is_some_and(|e| e.end() >= end)
            && covering.windows(2).all(|w| w[0].end() == w[1].image_offset);
        if covered && covering.iter().all(|e| e.chunk_ref == REF_ZERO) {
            return Ok(Window::Hole(n));
        }
        // One data extent holding exactly this window, whose chunk survived.
        if let [extent] = covering {
            let intact = extent.image_offset == start
                && extent.end() == end
                && self.chunks.get(&extent.chunk_ref).is_some_and(|&raw| u64::from(raw) == extent.length);
            if extent.chunk_ref >= REF_FIRST_OFFSET && intact {
                if let Ok(chunk) = chunk_at(self.archive, extent.chunk_ref, self.tag, self.limits) {
                    buf.extend_from_slice(&chunk.raw);
                    return Ok(Window::Data(n));
                }
            }
        }
        self.note_lost(start, end);
        Ok(Window::Lost(n))
    }
}

pub(crate) fn salvage_image<R: ReadAt + ?Sized, W: io::Write>(
    writer: &mut ArchiveWriter<W>,
    archive: &R,
    recovered: &Recovered,
    image: &RecoveredImage,
    limits: &Limits,
    progress: &dyn Progress,
) -> Result<ImageOutcome, SalvageError> {
    writer.set_chunk_size(image.chunk_size)?;
    let mut source = RecoveredSource {
        archive,
        image,
        chunks: &recovered.chunks,
        tag: recovered.tag,
        limits,
        position: 0,
        lost: Vec::new(),
    };
    let summary = writer.add_image(&image.name, &mut source, progress)?;
    Ok(ImageOutcome {
        name: image.name.clone(),
        logical_size: summary.logical_size,
        data_bytes: summary.data_bytes,
        lost: source.lost,
    })
}
