//! An image section of an archive as an NBD export: reads through a shared
//! decoded-chunk cache, zero extents as holes, damage as EIO.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use strata_format::ExtentKind;
use strata_reader::{Archive, ChunkCache, ImageSection, ReadAt, Section};

use crate::nbd::{Allocation, Export, Segment};

/// Told once about each range that cannot be read: the image byte range and why.
pub type DamageLog = Box<dyn Fn(std::ops::Range<u64>, &str) + Send + Sync>;

/// One image section of an opened archive, served read-only.
pub struct ImageExport<R: ReadAt> {
    archive: Archive<R>,
    /// Position of the section in `archive.sections()`.
    section: usize,
    cache: ChunkCache,
    description: String,
    /// Extents (by image offset) already reported as unreadable.
    reported: Mutex<HashSet<u64>>,
    unreadable_reads: AtomicU64,
    on_damage: DamageLog,
}

impl<R: ReadAt> std::fmt::Debug for ImageExport<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageExport").field("name", &self.image().name).field("cache", &self.cache).finish()
    }
}

impl<R: ReadAt> ImageExport<R> {
    /// Serves the image section `name` of `archive`, keeping up to
    /// `cache_bytes` of decoded chunks. `None` if there is no such image section.
    pub fn new(archive: Archive<R>, name: &str, cache_bytes: usize, on_damage: DamageLog) -> Option<Self> {
        let section =
            archive.sections().iter().position(|s| matches!(s, Section::Image(image) if image.name == name))?;
        Some(ImageExport {
            description: format!("image section {name:?} of a Strata archive, read-only"),
            archive,
            section,
            cache: ChunkCache::new(cache_bytes),
            reported: Mutex::new(HashSet::new()),
            unreadable_reads: AtomicU64::new(0),
            on_damage,
        })
    }

    /// The image section served.
    pub fn image(&self) -> &ImageSection {
        match &self.archive.sections()[self.section] {
            Section::Image(image) => image,
            Section::Tree(_) => unreachable!("the section was chosen as an image in ImageExport::new"),
        }
    }

    /// The decoded-chunk cache.
    pub fn cache(&self) -> &ChunkCache {
        &self.cache
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

impl<R: ReadAt + Send> Export for ImageExport<R> {
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
                Ok(ExtentKind::Zero) => visit(Segment::Zero(take))?,
                Ok(ExtentKind::Lost) => {
                    let reason = "lost in salvage: the archive this one was salvaged from was damaged here";
                    self.unreadable(extent.image_offset..extent.end(), reason);
                    visit(Segment::Unreadable { length: take, reason })?;
                }
                Ok(ExtentKind::Data(chunk_ref)) => match self.cache.chunk(&self.archive, chunk_ref, extent.length) {
                    Ok(chunk) => {
                        let within = within as usize;
                        visit(Segment::Data(&chunk.raw[within..within + take as usize]))?;
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        self.unreadable(extent.image_offset..extent.end(), &reason);
                        visit(Segment::Unreadable { length: take, reason: &reason })?;
                    }
                },
                Err(e) => {
                    let reason = e.to_string();
                    self.unreadable(extent.image_offset..extent.end(), &reason);
                    visit(Segment::Unreadable { length: take, reason: &reason })?;
                }
            }
            at += take;
        }
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
                Ok(ExtentKind::Zero) => Allocation::Zero,
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
