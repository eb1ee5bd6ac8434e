//! Block-image sections (`spec/FORMAT.md` section 7): the source read window
//! by window while workers hash and compress, the extents each batch makes,
//! and the `IMAGE_EXTENTS` records that announce them before their chunks.

use std::collections::HashMap;
use std::io::Write;

use strata_format::image::{self, ExtentMapCheck, ImageFlags, UNKNOWN_SIZE};
use strata_format::{Extent, ExtentKind, ImageBegin, ImageEnd, RecordType};

use crate::archive::{ArchiveWriter, SectionState, SectionTables};
use crate::chunker::{prepare_split, PreparedChunk, PreparedWindow};
use crate::image_delta::{delta_block, delta_window, DeltaPart, DeltaWindow, ParentImage};
use crate::source::{ImageSource, Window};
use crate::store::{ChunkLocation, ChunkTally};
use crate::{Progress, WriteError};

/// What one image section (`spec/FORMAT.md` section 7) holds, for the
/// summary a caller prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSummary {
    /// The section's name.
    pub name: String,
    /// The image's size in bytes (`IMAGE_END`'s `logical_size`, 7.3).
    pub logical_size: u64,
    /// Bytes of the image stored as data extents.
    pub data_bytes: u64,
    /// Bytes of the image recorded as zero extents (all-zero windows and
    /// holes of a sparse source), not stored.
    pub zero_bytes: u64,
    /// Bytes the source reported lost (salvage), recorded as lost extents.
    pub lost_bytes: u64,
    /// Free space of the image's file systems, not stored (used-blocks capture).
    pub free_bytes: u64,
    /// Chunks this section stored (`CHUNK` records, section 6).
    pub new_chunks: u64,
    /// Chunk windows found already stored in the archive (or, in a child,
    /// in its chain), referred to rather than stored again.
    pub deduplicated_chunks: u64,
    /// Bytes of chunk records this section added to the archive.
    pub stored_bytes: u64,
}

/// The content identity of a run that stores nothing (zero, lost, free) in the map digest.
fn run_id(run: &Extent) -> [u8; 32] {
    run.kind().ok().and_then(ExtentKind::hole_identity).unwrap_or(image::ZERO_ID)
}

/// An extent the writer plans, with where its chunk will be and its content identity.
type Planned = (Extent, Option<ChunkLocation>, [u8; 32]);

/// Adds `hole` (a zero, lost or free extent) to the open run of its kind, or
/// closes the open run into `planned` and opens one with it: neighbouring
/// holes of one kind become one extent, even across windows and batches.
fn extend_hole_run(open: &mut Option<Extent>, planned: &mut Vec<Planned>, hole: Extent) {
    match open {
        Some(run) if run.chunk_ref == hole.chunk_ref => run.length += hole.length,
        _ => {
            if let Some(run) = open.replace(hole) {
                planned.push((run, None, run_id(&run)));
            }
        }
    }
}

/// Closes the open run of holes, if any, into `planned`.
fn close_hole_run(open: &mut Option<Extent>, planned: &mut Vec<Planned>) {
    if let Some(run) = open.take() {
        planned.push((run, None, run_id(&run)));
    }
}

/// Why the image pipeline stopped.
enum PipelineError {
    Read(u64, std::io::Error),
    Write(WriteError),
}

impl PipelineError {
    fn into_write_error(self, read_error: &dyn Fn(u64, std::io::Error) -> WriteError) -> WriteError {
        match self {
            PipelineError::Read(offset, e) => read_error(offset, e),
            PipelineError::Write(e) => e,
        }
    }
}

/// What `add_image` carries from batch to batch.
struct ImageState {
    section_id: u32,
    /// A run of zero windows stays open until data or the end closes it, so that
    /// neighbouring zero windows become one extent even across batches.
    open_zero: Option<Extent>,
    extents: Vec<Extent>,
    summary: ImageSummary,
    digest: image::MapDigest,
}

impl ChunkTally for ImageSummary {
    fn add_chunk(&mut self, record_bytes: u64) {
        self.new_chunks += 1;
        self.stored_bytes += record_bytes;
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Adds a block-image section named `name` holding everything `source` yields.
    pub fn add_image(
        &mut self,
        name: &str,
        source: &mut dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<ImageSummary, WriteError> {
        self.add_image_over(name, source, None, progress)
    }

    /// Adds a block-image section as [`add_image`](Self::add_image) does; in
    /// a child, against `parent`, its parent's image of the same name: a
    /// window of which at most half the blocks changed refers to the parent's
    /// chunks for the rest, and stores only the changed blocks
    /// (`spec/FORMAT.md` 15.5). The parent's image must have this writer's
    /// chunk size, so that windows line up.
    pub fn add_image_over(
        &mut self,
        name: &str,
        source: &mut dyn ImageSource,
        parent: Option<&dyn ParentImage>,
        progress: &dyn Progress,
    ) -> Result<ImageSummary, WriteError> {
        let section_id = self.begin_section(name)?;
        let begin = ImageBegin {
            section_id,
            sector_size: source.sector_size(),
            logical_size: source.known_size().unwrap_or(UNKNOWN_SIZE),
            chunk_size: self.options.chunk_size,
            flags: if source.used_blocks() { ImageFlags::USED_BLOCKS } else { 0 },
            name: name.as_bytes().to_vec(),
        };
        begin.validate()?;
        let begin_offset = self.write_record(RecordType::ImageBegin, &[&begin.to_bytes()])?;
        let mut check = ExtentMapCheck::new(&begin);
        let mut state = ImageState {
            section_id,
            open_zero: None,
            extents: Vec::new(),
            summary: ImageSummary { name: name.to_string(), ..ImageSummary::default() },
            digest: image::MapDigest::new(),
        };

        let chunk_size = self.options.chunk_size as usize;
        // Half the batch is one group of windows (one IMAGE_EXTENTS record and its
        // chunks); the other half is read ahead and in the workers' hands.
        let windows_per_batch = (self.options.batch_bytes / 2 / chunk_size).clamp(1, 4096);
        let read_error = |offset: u64, source: std::io::Error| WriteError::Source {
            what: format!("image {name:?}"),
            offset,
            source,
        };
        let logical_size = self
            .pipeline(&mut state, source, parent, windows_per_batch, progress)
            .map_err(|e| e.into_write_error(&read_error))?;
        let ImageState { mut open_zero, mut extents, mut summary, mut digest, .. } = state;
        if let Some(run) = open_zero.take() {
            extents.push(run);
            digest.push(&run, &run_id(&run));
            self.write_record(RecordType::ImageExtents, &[&image::encode_extent_table(section_id, &[run])])?;
        }
        if let Some(expected) = source.known_size() {
            if expected != logical_size {
                return Err(read_error(
                    logical_size,
                    std::io::Error::other(format!("the source changed size from {expected} while it was read")),
                ));
            }
        }
        for extent in &extents {
            check.push(extent)?;
        }
        check.finish(logical_size)?;
        let end = ImageEnd {
            section_id,
            reserved: 0,
            logical_size,
            extent_count: extents.len() as u64,
            data_bytes: check.data_bytes,
            lost_bytes: check.lost_bytes,
            chunk_count: summary.new_chunks,
            chunk_bytes: summary.stored_bytes,
            begin_offset,
            map_blake3: digest.finish(),
        };
        let end_offset = self.write_record(RecordType::ImageEnd, &[&end.encode()])?;
        summary.logical_size = logical_size;
        summary.data_bytes = check.data_bytes;
        summary.zero_bytes = logical_size - check.data_bytes - check.lost_bytes - check.free_bytes;
        summary.lost_bytes = check.lost_bytes;
        summary.free_bytes = check.free_bytes;
        self.sections.push(SectionState { begin_offset, end_offset, tables: SectionTables::Image(extents) });
        self.summary.images.push(summary.clone());
        Ok(summary)
    }

    /// Reads `source` window by window on this thread while worker threads hash
    /// and compress, and writes the results in image order, `group` windows to an
    /// `IMAGE_EXTENTS` record. No batch waits for its slowest chunk before the next
    /// starts; memory holds at most `group` + 2 per worker windows. Returns the
    /// image's size.
    fn pipeline(
        &mut self,
        state: &mut ImageState,
        source: &mut dyn ImageSource,
        parent: Option<&dyn ParentImage>,
        group: usize,
        progress: &dyn Progress,
    ) -> Result<u64, PipelineError> {
        let block = delta_block(self.options.chunk_size as usize);
        let chunk_size = self.options.chunk_size as usize;
        let level = self.options.level;
        let workers = self.pool.current_num_threads().max(1);
        let slots = group + 2 * workers;
        // A job: sequence number, buffer, image offset, length, whether the
        // worker must read the bytes itself (sources with a window reader), and
        // the free ranges to split off and the cuts (used-blocks capture).
        type Job = (u64, Vec<u8>, u64, usize, bool, Vec<(std::ops::Range<usize>, crate::Hole)>, Vec<usize>);
        type Done = (u64, Result<PreparedWindow, (u64, std::io::Error)>, Vec<u8>);
        let (work_tx, work_rx) = std::sync::mpsc::channel::<Job>();
        let work_rx = std::sync::Mutex::new(work_rx);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Done>();
        let reader = source.window_reader();
        let spares = self.spares.clone();
        let known = self.chain_chunks.clone();
        std::thread::scope(|scope| {
            // Workers stop when `work_tx` is dropped, which the early returns do too.
            let work_tx = work_tx;
            for _ in 0..workers {
                let (work_rx, done_tx, reader, spares, known) =
                    (&work_rx, done_tx.clone(), reader.as_deref(), &*spares, &*known);
                let mut parent_bytes = Vec::new();
                scope.spawn(move || loop {
                    let job = work_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok((seq, mut buffer, offset, len, unread, free, cuts)) = job else { break };
                    let read = match (unread, reader) {
                        (true, Some(reader)) => reader.read_window(&mut buffer, offset, len),
                        _ => Ok(()),
                    };
                    let prepared = read
                        .map(|()| {
                            // A window split at free ranges or cuts (used-blocks
                            // capture) is not compared: its pieces are chunks of their own.
                            let delta = parent.filter(|_| free.is_empty() && cuts.is_empty()).and_then(|parent| {
                                let window = &buffer[..len];
                                delta_window(window, offset, block, parent, &mut parent_bytes, level, spares, known)
                            });
                            match delta {
                                Some(delta) => PreparedWindow::Delta(delta),
                                None => prepare_split(&mut buffer, len, &free, &cuts, level, spares, known),
                            }
                        })
                        .map_err(|e| (offset, e));
                    if done_tx.send((seq, prepared, buffer)).is_err() {
                        break;
                    }
                });
            }
            drop(done_tx);
            let mut free: Vec<Vec<u8>> = (0..slots).map(|_| Vec::new()).collect();
            let mut ready: std::collections::BTreeMap<u64, PreparedWindow> = std::collections::BTreeMap::new();
            let (mut next_seq, mut next_write, mut in_flight) = (0u64, 0u64, 0usize);
            let (mut image_offset, mut group_offset, mut read_offset) = (0u64, 0u64, 0u64);
            let mut pending: Vec<PreparedWindow> = Vec::with_capacity(group);
            let mut ended = false;
            loop {
                while !ended {
                    let Some(mut buffer) = free.pop() else { break };
                    let window = if reader.is_some() {
                        source.skip_window(chunk_size)
                    } else {
                        source.next_window(&mut buffer, chunk_size)
                    }
                    .map_err(|e| PipelineError::Read(read_offset, e))?;
                    let n = match window {
                        Window::End => {
                            free.push(buffer);
                            ended = true;
                            break;
                        }
                        Window::Data(n) => {
                            let free = source.holes_within(read_offset, n);
                            let cuts = source.cuts_within(read_offset, n);
                            work_tx
                                .send((next_seq, buffer, read_offset, n, reader.is_some(), free, cuts))
                                .expect("workers run until the sender is dropped");
                            in_flight += 1;
                            n
                        }
                        Window::Hole(n) | Window::Lost(n) | Window::Free(n) => {
                            let length = n as u64;
                            let prepared = match window {
                                Window::Lost(_) => PreparedWindow::Lost { length },
                                Window::Free(_) => PreparedWindow::Free { length },
                                _ => PreparedWindow::Zero { length },
                            };
                            ready.insert(next_seq, prepared);
                            free.push(buffer);
                            n
                        }
                    };
                    next_seq += 1;
                    read_offset += n as u64;
                    // A short window ends the image: nothing may follow it.
                    ended = n < chunk_size;
                }
                // Write what is ready, in order, a group at a time.
                while let Some(window) = ready.remove(&next_write) {
                    next_write += 1;
                    image_offset += window.length();
                    pending.push(window);
                    if pending.len() == group {
                        self.write_batch(state, group_offset, std::mem::take(&mut pending), progress)
                            .map_err(PipelineError::Write)?;
                        group_offset = image_offset;
                    }
                }
                if in_flight == 0 {
                    if ended {
                        break;
                    }
                    continue;
                }
                let (seq, prepared, buffer) = done_rx.recv().expect("a worker answers every job it took");
                let prepared = prepared.map_err(|(offset, e)| PipelineError::Read(offset, e))?;
                ready.insert(seq, prepared);
                free.push(buffer);
                in_flight -= 1;
            }
            if !pending.is_empty() {
                self.write_batch(state, group_offset, pending, progress).map_err(PipelineError::Write)?;
            }
            Ok(image_offset)
        })
    }

    /// Turns a prepared batch into extents, then writes its `IMAGE_EXTENTS` record
    /// followed by its new chunks, in the order their extents first use them.
    fn write_batch(
        &mut self,
        state: &mut ImageState,
        image_offset: u64,
        prepared: Vec<PreparedWindow>,
        progress: &dyn Progress,
    ) -> Result<(), WriteError> {
        let ImageState { section_id, open_zero, extents, summary, digest } = state;
        let section_id = *section_id;
        let mut planned: Vec<Planned> = Vec::new();
        let mut new_chunks: Vec<PreparedChunk> = Vec::new();
        let mut new_by_hash: HashMap<[u8; 32], usize> = HashMap::new();
        let mut offset = image_offset;
        let pieces = prepared.into_iter().flat_map(|window| match window {
            PreparedWindow::Pieces(pieces) => pieces,
            whole => vec![whole],
        });
        for window in pieces {
            match window {
                PreparedWindow::Zero { length } | PreparedWindow::Lost { length } | PreparedWindow::Free { length } => {
                    let kind = match window {
                        PreparedWindow::Lost { .. } => ExtentKind::Lost,
                        PreparedWindow::Free { .. } => ExtentKind::Free,
                        _ => ExtentKind::Zero,
                    };
                    extend_hole_run(open_zero, &mut planned, Extent::hole(offset, length, kind));
                    offset += length;
                    progress.advance(length);
                }
                PreparedWindow::Data(chunk) => {
                    close_hole_run(open_zero, &mut planned);
                    let length = u64::from(chunk.raw_length);
                    let content_id = chunk.blake3;
                    let (location, deduplicated) = self.locate_chunk(chunk, &mut new_chunks, &mut new_by_hash);
                    summary.deduplicated_chunks += u64::from(deduplicated);
                    planned.push((Extent::data(offset, length, 0, 0), Some(location), content_id));
                    offset += length;
                    progress.advance(length);
                }
                PreparedWindow::Delta(DeltaWindow { parts, pack }) => {
                    let pack = pack.map(|pack| {
                        let content_id = pack.blake3;
                        let (location, deduplicated) = self.locate_chunk(pack, &mut new_chunks, &mut new_by_hash);
                        summary.deduplicated_chunks += u64::from(deduplicated);
                        (location, content_id)
                    });
                    for part in parts {
                        let length = part.length();
                        match part {
                            DeltaPart::Zero { .. } => {
                                extend_hole_run(open_zero, &mut planned, Extent::hole(offset, length, ExtentKind::Zero))
                            }
                            DeltaPart::Parent { chunk, .. } => {
                                close_hole_run(open_zero, &mut planned);
                                if !self.note_reference(chunk.chunk_ref) {
                                    return Err(WriteError::Invalid {
                                        what: "parent image",
                                        detail: format!(
                                            "image byte {offset} refers to chunk {:#x}, which the parent's chain does not list",
                                            chunk.chunk_ref
                                        ),
                                    });
                                }
                                let extent = Extent::data(offset, length, chunk.chunk_ref, chunk.chunk_offset);
                                planned.push((extent, None, chunk.blake3));
                            }
                            DeltaPart::Changed { pack_offset, .. } => {
                                close_hole_run(open_zero, &mut planned);
                                let (location, content_id) =
                                    pack.as_ref().expect("changed parts come with the window's chunk");
                                let extent = Extent::data(offset, length, 0, pack_offset);
                                planned.push((extent, Some(*location), *content_id));
                            }
                        }
                        offset += length;
                        progress.advance(length);
                    }
                }
                PreparedWindow::Pieces(_) => unreachable!("pieces were flattened above and hold no pieces"),
            }
        }
        if planned.is_empty() {
            return Ok(());
        }
        let extents_written = self.write_announced(RecordType::ImageExtents, new_chunks, summary, |resolve| {
            let batch: Vec<Extent> = planned
                .iter()
                .map(|(extent, location, _)| Extent {
                    chunk_ref: location.as_ref().map_or(extent.chunk_ref, resolve),
                    ..*extent
                })
                .collect();
            (image::encode_extent_table(section_id, &batch), batch)
        })?;
        for (extent, (_, _, content_id)) in extents_written.iter().zip(&planned) {
            digest.push(extent, content_id);
        }
        extents.extend_from_slice(&extents_written);
        Ok(())
    }
}
