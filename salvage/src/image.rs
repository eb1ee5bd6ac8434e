//! Images: every window whose extents and chunks survive keeps its data, zero
//! and free windows stay zero and free, everything else becomes a lost extent.

use std::io;

use strata_format::image::{ImageFlags, REF_FIRST_OFFSET, REF_FREE, REF_LOST, REF_ZERO};
use strata_format::Extent;
use strata_reader::recovery::{Recovered, RecoveredImage};
use strata_reader::{Limits, ReadAt};
use strata_writer::{ArchiveWriter, Hole, ImageSource, Progress, Window};

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
    recovered: &'a Recovered,
    limits: &'a Limits,
    position: u64,
    lost: Vec<(u64, u64)>,
    /// The free and lost ranges of the last window given, in a used-blocks section.
    holes: Vec<(std::ops::Range<u64>, Hole)>,
}

impl<'a, R: ReadAt + ?Sized> RecoveredSource<'a, R> {
    /// The extents that overlap `start..end`.
    fn covering(&self, start: u64, end: u64) -> &'a [Extent] {
        let image: &'a RecoveredImage = self.image;
        let extents = &image.extents;
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
        if covered && covering.iter().all(|e| e.chunk_ref == REF_FREE) {
            return Ok(Window::Free(n));
        }
        // In a used-blocks section a window of zero and free extents keeps
        // both kinds (below): as a hole, its free space would become zeros.
        if covered && !self.used_blocks() && covering.iter().all(|e| matches!(e.chunk_ref, REF_ZERO | REF_FREE)) {
            return Ok(Window::Hole(n));
        }
        self.holes.clear();
        if covered && self.used_blocks() {
            // Extents split windows here: each keeps its kind, and only a data
            // extent whose chunk is gone becomes lost.
            buf.resize(n, 0);
            let mut holes = Vec::new();
            let mut lost = Vec::new();
            for extent in covering {
                let (from, to) = (extent.image_offset.max(start), extent.end().min(end));
                let hole = match extent.chunk_ref {
                    REF_ZERO => None,
                    REF_FREE => Some(Hole::Free),
                    REF_LOST => Some(Hole::Lost),
                    _ => {
                        let intact = extent.image_offset >= start
                            && extent.end() <= end
                            && self.recovered.holds_chunk(extent.chunk_ref, extent.chunk_range().end);
                        let chunk = self.recovered.read_chunk(self.archive, extent.chunk_ref, self.limits);
                        match chunk.as_ref().ok().filter(|_| intact).and_then(|chunk| part_of(&chunk.raw, extent)) {
                            Some(part) => {
                                let at = (from - start) as usize;
                                buf[at..at + part.len()].copy_from_slice(part);
                                None
                            }
                            None => Some(Hole::Lost),
                        }
                    }
                };
                if let Some(hole) = hole {
                    if hole == Hole::Lost {
                        lost.push((from, to));
                    }
                    holes.push((from..to, hole));
                }
            }
            for (from, to) in lost {
                self.note_lost(from, to);
            }
            self.holes = holes;
            return Ok(Window::Data(n));
        }
        // Data extents (one per window, or in a used-blocks section several
        // with zero and free ones between) whose chunks survived: the window's
        // bytes, free space as zeros.
        if covered && covering.iter().all(|e| e.chunk_ref != REF_LOST) {
            buf.resize(n, 0);
            let whole = covering.iter().all(|extent| {
                if extent.chunk_ref < REF_FIRST_OFFSET {
                    let (from, to) = (extent.image_offset.max(start), extent.end().min(end));
                    buf[(from - start) as usize..(to - start) as usize].fill(0);
                    return true;
                }
                let intact = extent.image_offset >= start
                    && extent.end() <= end
                    && self.recovered.holds_chunk(extent.chunk_ref, extent.chunk_range().end);
                let chunk = self.recovered.read_chunk(self.archive, extent.chunk_ref, self.limits);
                match chunk.as_ref().ok().filter(|_| intact).and_then(|chunk| part_of(&chunk.raw, extent)) {
                    Some(part) => {
                        let from = (extent.image_offset - start) as usize;
                        buf[from..from + part.len()].copy_from_slice(part);
                        true
                    }
                    None => false,
                }
            });
            if whole {
                return Ok(Window::Data(n));
            }
            buf.clear();
        }
        self.note_lost(start, end);
        Ok(Window::Lost(n))
    }

    fn used_blocks(&self) -> bool {
        self.image.flags & ImageFlags::USED_BLOCKS != 0
    }

    /// The free and lost ranges of the window `next_window` gave last, in a
    /// used-blocks section: free extents stay free, and only the damaged
    /// extents of a window become lost.
    fn holes_within(&self, offset: u64, len: usize) -> Vec<(std::ops::Range<usize>, Hole)> {
        let end = offset + len as u64;
        self.holes
            .iter()
            .filter(|(r, _)| r.start < end && offset < r.end)
            .map(|(r, hole)| ((r.start.max(offset) - offset) as usize..(r.end.min(end) - offset) as usize, *hole))
            .collect()
    }
}

/// The raw bytes of a chunk a data extent reads, if the chunk holds them.
fn part_of<'c>(raw: &'c [u8], extent: &Extent) -> Option<&'c [u8]> {
    let range = extent.chunk_range();
    raw.get(usize::try_from(range.start).ok()?..usize::try_from(range.end).ok()?)
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
    let mut source =
        RecoveredSource { archive, image, recovered, limits, position: 0, lost: Vec::new(), holes: Vec::new() };
    let summary = writer.add_image(&image.name, &mut source, progress)?;
    Ok(ImageOutcome {
        name: image.name.clone(),
        logical_size: summary.logical_size,
        data_bytes: summary.data_bytes,
        lost: source.lost,
    })
}
