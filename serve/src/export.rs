//! An image section of an archive as an NBD export: reads through a shared
//! decoded-chunk cache, zero extents as holes, damage as EIO.
//!
//! A client answers one request at a time per connection, so a client that
//! reads an image front to back would leave a core idle while its connection
//! sends a chunk and waits for the next request. [`ReadAhead`] workers decode
//! the next stored chunks after each read into the cache meanwhile; the cache
//! decodes a chunk that several ask for once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strata_format::ExtentKind;
use strata_reader::{Archive, ChunkCache, ImageSection, ReadAhead, ReadAt, Section};

use crate::nbd::{Allocation, Export, Segment};

/// Most stored chunks decoded ahead of the end of the last read (24 MiB of
/// 4 MiB chunks), as far as the cache holds them.
const READ_AHEAD_CHUNKS: usize = 6;

/// Told once about each range that cannot be read: the image byte range and why.
pub type DamageLog = Box<dyn Fn(std::ops::Range<u64>, &str) + Send + Sync>;

/// One image section of an opened archive, served read-only.
pub struct ImageExport<R: ReadAt> {
    /// The archive, the shared cache and the workers that decode ahead.
    ahead: ReadAhead<R>,
    /// Position of the section in `archive.sections()`.
    section: usize,
    description: String,
    /// Extents (by image offset) already reported as unreadable.
    reported: Mutex<HashSet<u64>>,
    unreadable_reads: AtomicU64,
    on_damage: DamageLog,
}

impl<R: ReadAt> std::fmt::Debug for ImageExport<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageExport").field("name", &self.image().name).field("read_ahead", &self.ahead).finish()
    }
}

impl<R: ReadAt + Send + 'static> ImageExport<R> {
    /// Serves the image section `name` of `archive`, keeping up to
    /// `cache_bytes` of decoded chunks, with read-ahead workers (one per core)
    /// when the cache has room for what they decode. `None` if there is no
    /// such image section.
    pub fn new(archive: Archive<R>, name: &str, cache_bytes: usize, on_damage: DamageLog) -> Option<Self> {
        let section =
            archive.sections().iter().position(|s| matches!(s, Section::Image(image) if image.name == name))?;
        let Section::Image(image) = &archive.sections()[section] else { return None };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
        // A chunk decoded ahead must still be held when the client reads it:
        // each worker's chunk, the one being read and one more must fit.
        let fit = (cache_bytes / (image.chunk_size.max(1) as usize)).saturating_sub(2);
        // Decoded ahead: as many stored chunks as the cache holds beside those,
        // up to READ_AHEAD_CHUNKS; a client such as `qemu-img convert` has
        // several requests of a few MiB in flight, all of them after the read
        // being answered.
        let ahead = ReadAhead::with_depth(
            Arc::new(archive),
            Arc::new(ChunkCache::new(cache_bytes)),
            cores.min(fit),
            fit.min(READ_AHEAD_CHUNKS),
        );
        Some(ImageExport {
            description: format!("image section {name:?} of a Strata archive, read-only"),
            ahead,
            section,
            reported: Mutex::new(HashSet::new()),
            unreadable_reads: AtomicU64::new(0),
            on_damage,
        })
    }
}

impl<R: ReadAt> ImageExport<R> {
    /// The image section served.
    pub fn image(&self) -> &ImageSection {
        match &self.ahead.archive().sections()[self.section] {
            Section::Image(image) => image,
            Section::Tree(_) => unreachable!("the section was chosen as an image in ImageExport::new"),
        }
    }

    /// The decoded-chunk cache.
    pub fn cache(&self) -> &ChunkCache {
        self.ahead.cache()
    }

    /// How many reads met a range that could not be read (answered EIO).
    pub fn unreadable_reads(&self) -> u64 {
        self.unreadable_reads.load(Ordering::Relaxed)
    }

    fn unreadable(&self, range: std::ops::Range<u64>, reason: &str) {
        self.unreadable_reads.fetch_add(1, Ordering::Relaxed);
        let first = self.reported.lock().map(|mut seen| seen.insert(range.start)).unwrap_or(true);
        if first {
            (self.on_damage)(range, reason);
        }
    }
}

impl<R: ReadAt + Send + 'static> Export for ImageExport<R> {
    fn name(&self) -> &str {
        &self.image().name
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn size(&self) -> u64 {
        self.image().logical_size
    }

    fn read(
        &self,
        offset: u64,
        length: u64,
        visit: &mut dyn FnMut(Segment<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let image = self.image();
        let end = offset.saturating_add(length).min(image.logical_size);
        let mut at = offset;
        while at < end {
            let Some(index) = image.extent_at(at) else { break };
            let extent = image.extents[index];
            let within = at - extent.image_offset;
            let take = (extent.length - within).min(end - at);
            match extent.kind() {
                // Free space of a used-blocks image reads as zeros, and is a hole to clients.
                Ok(ExtentKind::Zero | ExtentKind::Free) => visit(Segment::Zero(take))?,
                Ok(ExtentKind::Lost) => {
                    let reason = "lost in salvage: the archive this one was salvaged from was damaged here";
                    self.unreadable(extent.image_offset..extent.end(), reason);
                    visit(Segment::Unreadable { length: take, reason })?;
                }
                Ok(ExtentKind::Data(chunk_ref)) => {
                    match self.ahead.cache().chunk(self.ahead.archive(), chunk_ref, extent.chunk_range().end) {
                        Ok(chunk) => {
                            // The cache checked the chunk holds the extent's range.
                            let start = (u64::from(extent.chunk_offset) + within) as usize;
                            visit(Segment::Data(&chunk.raw[start..start + take as usize]))?;
                        }
                        Err(e) => {
                            let reason = e.to_string();
                            self.unreadable(extent.image_offset..extent.end(), &reason);
                            visit(Segment::Unreadable { length: take, reason: &reason })?;
                        }
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    self.unreadable(extent.image_offset..extent.end(), &reason);
                    visit(Segment::Unreadable { length: take, reason: &reason })?;
                }
            }
            at += take;
        }
        self.ahead.image_from(image, end);
        if at < offset.saturating_add(length) {
            // The map tiles the image (the reader checked it): only a caller
            // reading past the end gets here.
            visit(Segment::Unreadable { length: offset + length - at, reason: "past the end of the image" })?;
        }
        Ok(())
    }

    fn allocation(&self, offset: u64, length: u64, max_runs: usize) -> Vec<(u64, Allocation)> {
        let image = self.image();
        let end = offset.saturating_add(length).min(image.logical_size);
        let mut runs: Vec<(u64, Allocation)> = Vec::new();
        let mut at = offset;
        while at < end {
            let Some(index) = image.extent_at(at) else { break };
            let extent = image.extents[index];
            let take = (extent.end() - at).min(end - at);
            // Lost and damaged ranges are reported as data, so that a client
            // reads them and is told they fail, rather than taking them for zeros.
            let allocation = match extent.kind() {
                Ok(ExtentKind::Zero | ExtentKind::Free) => Allocation::Zero,
                _ => Allocation::Data,
            };
            let full = runs.len() >= max_runs;
            match runs.last_mut() {
                Some((run, kind)) if *kind == allocation => *run += take,
                _ if full => break,
                _ => runs.push((take, allocation)),
            }
            at += take;
        }
        runs
    }
}
