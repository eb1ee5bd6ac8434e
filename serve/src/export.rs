//! An image section of an archive as an NBD export: reads through a shared
//! decoded-chunk cache, zero extents as holes, damage as EIO.
//!
//! A client answers one request at a time per connection, so a client that
//! reads an image front to back would leave a core idle while its connection
//! sends a chunk and waits for the next request. A read-ahead thread decodes
//! the next stored chunk after each read into the cache meanwhile; the cache
//! decodes a chunk that both ask for once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use strata_format::ExtentKind;
use strata_reader::{Archive, ChunkCache, ImageSection, ReadAt, Section};

use crate::nbd::{Allocation, Export, Segment};

/// Told once about each range that cannot be read: the image byte range and why.
pub type DamageLog = Box<dyn Fn(std::ops::Range<u64>, &str) + Send + Sync>;

/// One image section of an opened archive, served read-only.
pub struct ImageExport<R: ReadAt> {
    shared: Arc<Shared<R>>,
    description: String,
    /// Extents (by image offset) already reported as unreadable.
    reported: Mutex<HashSet<u64>>,
    unreadable_reads: AtomicU64,
    on_damage: DamageLog,
    /// Chunks for the read-ahead thread to decode; it ends when this is dropped.
    read_ahead: Option<SyncSender<(u64, u64)>>,
}

/// What the read-ahead thread reads with the clients.
struct Shared<R: ReadAt> {
    archive: Archive<R>,
    /// Position of the section in `archive.sections()`.
    section: usize,
    cache: ChunkCache,
}

impl<R: ReadAt> Shared<R> {
    fn image(&self) -> &ImageSection {
        match &self.archive.sections()[self.section] {
            Section::Image(image) => image,
            Section::Tree(_) => unreachable!("the section was chosen as an image in ImageExport::new"),
        }
    }
}

impl<R: ReadAt> std::fmt::Debug for ImageExport<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageExport").field("name", &self.image().name).field("cache", &self.shared.cache).finish()
    }
}

impl<R: ReadAt + Send + 'static> ImageExport<R> {
    /// Serves the image section `name` of `archive`, keeping up to
    /// `cache_bytes` of decoded chunks, with one read-ahead thread. `None` if
    /// there is no such image section.
    pub fn new(archive: Archive<R>, name: &str, cache_bytes: usize, on_damage: DamageLog) -> Option<Self> {
        let section =
            archive.sections().iter().position(|s| matches!(s, Section::Image(image) if image.name == name))?;
        let shared = Arc::new(Shared { archive, section, cache: ChunkCache::new(cache_bytes) });
        // A chunk decoded ahead is kept only if the cache holds a chunk or more.
        let chunk_size = shared.image().chunk_size as usize;
        let read_ahead = (cache_bytes >= 2 * chunk_size)
            .then(|| {
                let (sender, receiver) = sync_channel::<(u64, u64)>(2);
                let worker = shared.clone();
                std::thread::Builder::new()
                    .name("nbd-read-ahead".into())
                    .spawn(move || {
                        for (chunk_ref, length) in receiver {
                            // A chunk that fails is reported when a client reads it.
                            let _ = worker.cache.chunk(&worker.archive, chunk_ref, length);
                        }
                    })
                    .ok()
                    .map(|_| sender)
            })
            .flatten();
        Some(ImageExport {
            description: format!("image section {name:?} of a Strata archive, read-only"),
            shared,
            reported: Mutex::new(HashSet::new()),
            unreadable_reads: AtomicU64::new(0),
            on_damage,
            read_ahead,
        })
    }
}

impl<R: ReadAt> ImageExport<R> {
    /// The image section served.
    pub fn image(&self) -> &ImageSection {
        self.shared.image()
    }

    /// The decoded-chunk cache.
    pub fn cache(&self) -> &ChunkCache {
        &self.shared.cache
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

    /// Asks the read-ahead thread for the next stored chunk from `offset` on
    /// that is not held yet (looking two stored chunks ahead, past zeros),
    /// unless the thread is busy.
    fn read_ahead_from(&self, offset: u64) {
        let Some(sender) = &self.read_ahead else { return };
        let image = self.image();
        let Some(first) = image.extent_at(offset) else { return };
        let mut stored = 0;
        // Zero extents cost nothing to serve; look past a few of them.
        for extent in image.extents[first..].iter().take(16) {
            if let Ok(ExtentKind::Data(chunk_ref)) = extent.kind() {
                if !self.shared.cache.holds(chunk_ref) {
                    // Busy or gone: the client reads the chunk itself, as without read-ahead.
                    let _ = sender.try_send((chunk_ref, extent.length));
                    return;
                }
                stored += 1;
                if stored == 2 {
                    return;
                }
            }
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
                Ok(ExtentKind::Zero) => visit(Segment::Zero(take))?,
                Ok(ExtentKind::Lost) => {
                    let reason = "lost in salvage: the archive this one was salvaged from was damaged here";
                    self.unreadable(extent.image_offset..extent.end(), reason);
                    visit(Segment::Unreadable { length: take, reason })?;
                }
                Ok(ExtentKind::Data(chunk_ref)) => {
                    match self.shared.cache.chunk(&self.shared.archive, chunk_ref, extent.length) {
                        Ok(chunk) => {
                            let within = within as usize;
                            visit(Segment::Data(&chunk.raw[within..within + take as usize]))?;
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
        self.read_ahead_from(end);
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
