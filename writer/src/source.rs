//! Where block-image bytes come from (`spec/FORMAT.md` section 7): a seekable
//! file or device ([`FileSource`]), a stream ([`StreamSource`]), memory
//! ([`SliceSource`]), or any of them with free space left out
//! ([`UsedBlocks`]). The writer asks a source for one chunk window at a time
//! ([`ImageSource::next_window`]), so a source never holds more than a window.
//!
//! ```
//! use strata_writer::{ImageSource, SliceSource, StreamSource, Window};
//!
//! let mut buf = Vec::new();
//! let mut memory = SliceSource::new(b"twelve bytes");
//! assert_eq!(memory.known_size(), Some(12));
//! assert_eq!(memory.next_window(&mut buf, 8)?, Window::Data(8));
//! assert_eq!(memory.next_window(&mut buf, 8)?, Window::Data(4));
//! assert_eq!(memory.next_window(&mut buf, 8)?, Window::End);
//!
//! // A pipe's size is not known; short reads still fill a window.
//! let mut pipe = StreamSource::new(&b"from a pipe"[..]);
//! assert_eq!(pipe.known_size(), None);
//! assert_eq!(pipe.next_window(&mut buf, 4096)?, Window::Data(11));
//! assert_eq!(buf, b"from a pipe");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What the next chunk window of a source holds: each kind becomes an extent
/// of its kind in the image's extent map (`spec/FORMAT.md` 7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// This many bytes were read into the buffer.
    Data(usize),
    /// This many bytes are a hole in a sparse file: zeros, not read.
    Hole(usize),
    /// This many bytes were lost before they reached the writer (salvage of a
    /// damaged archive): recorded as a lost extent, read back as zeros.
    Lost(usize),
    /// This many bytes are free space of a file system (used-blocks capture):
    /// not read, recorded as a free extent, read back as zeros.
    Free(usize),
    /// The source has no more bytes.
    End,
}

/// A block-image source (`spec/FORMAT.md` section 7), read front to back one
/// chunk window at a time; windows are aligned to image offset 0 (section 14).
pub trait ImageSource: Send {
    /// The size in bytes, if known before reading (not for a pipe).
    fn known_size(&self) -> Option<u64>;
    /// The source's sector size (512 unless a device says otherwise).
    fn sector_size(&self) -> u32 {
        512
    }
    /// Reads the next window of `len` bytes (fewer only at the end) into `buf`,
    /// which is cleared first, unless the whole window is a hole.
    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window>;
    /// For a source that any thread can read at any offset: a reader for its data
    /// windows. The writer then calls [`ImageSource::skip_window`] instead of
    /// `next_window` and its worker threads read the data themselves, so reading
    /// is spread over every core instead of one.
    fn window_reader(&self) -> Option<Box<dyn WindowReader>> {
        None
    }
    /// Like `next_window`, but leaves a data window's bytes for a
    /// [`WindowReader`] to read. Only called when `window_reader` gave one.
    fn skip_window(&mut self, len: usize) -> io::Result<Window> {
        let _ = len;
        Err(io::Error::other("this source cannot be read out of order"))
    }
    /// Whether the source leaves out free space (used-blocks capture): the
    /// section is then marked used-blocks (`spec/FORMAT.md` 7.1).
    fn used_blocks(&self) -> bool {
        false
    }
    /// The ranges inside the data window of `len` bytes at image `offset`
    /// that hold no data, as window byte ranges in order, each free space
    /// (used-blocks capture) or lost (salvage of a used-blocks section): each
    /// becomes an extent of its kind, and the stretches between them chunks of
    /// their own. Only a used-blocks source may give any: its extents may
    /// split a window (`spec/FORMAT.md` 7.2).
    fn holes_within(&self, offset: u64, len: usize) -> Vec<(std::ops::Range<usize>, Hole)> {
        let _ = (offset, len);
        Vec::new()
    }
    /// Where inside the data window of `len` bytes at image `offset` a chunk
    /// must end, as window byte offsets in increasing order (each a multiple
    /// of 512, between 0 and `len`): a used-blocks source cuts its file
    /// systems' metadata into small chunks, so that finding a file in the
    /// archive decodes little (`spec/FORMAT.md` 14). Only a used-blocks
    /// source may give any: its extents may split a window (7.2).
    fn cuts_within(&self, offset: u64, len: usize) -> Vec<usize> {
        let _ = (offset, len);
        Vec::new()
    }
}

/// What a range inside a data window holds instead of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hole {
    /// Free space of a file system: a free extent.
    Free,
    /// Lost before it reached the writer (salvage): a lost extent.
    Lost,
}

/// A source of which only the blocks in use by the file systems inside it
/// are stored (a used-blocks section, `spec/FORMAT.md` 7.1 and 7.2): `free` lists the free ranges (sorted, not overlapping). A window
/// wholly inside free space is a free window, neither read nor stored; in a
/// window that holds used blocks, the free bytes are stored as zeros (they
/// compress to almost nothing, and a restore writes zeros there either way).
#[derive(Debug)]
pub struct UsedBlocks<S> {
    inner: S,
    free: std::sync::Arc<Vec<std::ops::Range<u64>>>,
    position: u64,
    /// Free ranges inside a window shorter than this are stored as zeros
    /// rather than split off: each split costs two extents and a chunk.
    min_gap: u64,
    /// File-system metadata (sorted, merged): cut into chunks of at most
    /// [`METADATA_CHUNK`] bytes.
    metadata: std::sync::Arc<Vec<std::ops::Range<u64>>>,
}

/// The largest chunk a used-blocks source cuts file-system metadata into: a
/// lookup that needs one inode or directory block decodes at most this much
/// of its chunk, where a whole window's chunk would cost up to `chunk_size`.
/// Small enough that a path of ten components decodes well under a
/// megabyte; large enough that the inode tables still compress (measured in
/// `benches/RESULTS.md`, issue 16).
pub const METADATA_CHUNK: u64 = 64 << 10;

/// The most a used-blocks source lets a lookup decode of a chunk before a
/// directory's blocks: a directory begins a chunk of its own unless the
/// chunk it would be in starts less than this before it. A cut at every
/// directory cost 3.4% of stored bytes on the benchmark corpus; this costs
/// about 1%, for most of the lookup's gain (`benches/RESULTS.md`, issue 16).
pub const METADATA_REACH: u64 = 1 << 20;

/// The default shortest free range split off inside a window.
pub const USED_BLOCKS_MIN_GAP: u64 = 32 << 10;

impl<S: ImageSource> UsedBlocks<S> {
    /// `inner` with the free ranges `free` (in any order; overlaps merged).
    pub fn new(inner: S, free: Vec<std::ops::Range<u64>>) -> Self {
        let merged = merge(free);
        UsedBlocks {
            inner,
            free: std::sync::Arc::new(merged),
            position: 0,
            min_gap: USED_BLOCKS_MIN_GAP,
            metadata: std::sync::Arc::new(Vec::new()),
        }
    }

    /// The same source, cutting the file systems' metadata `ranges` (image
    /// byte ranges, in any order, from `strata_disk::metadata`) into chunks
    /// of at most [`METADATA_CHUNK`] bytes. A hint: it changes how the image
    /// is cut into chunks, never what it holds.
    pub fn with_metadata(mut self, ranges: Vec<std::ops::Range<u64>>) -> Self {
        self.metadata = std::sync::Arc::new(merge(ranges));
        self
    }

    /// The same source, splitting off free ranges of at least `bytes` (a
    /// multiple of 512) inside windows.
    pub fn with_min_gap(mut self, bytes: u64) -> Self {
        self.min_gap = bytes.max(image_grain());
        self
    }

    /// Bytes of the image listed as free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.end - r.start).sum()
    }

    /// What a window becomes: free when the free ranges cover it whole.
    fn classify(&mut self, window: Window) -> Window {
        let start = self.position;
        let length = match window {
            Window::Data(n) | Window::Hole(n) | Window::Lost(n) | Window::Free(n) => n,
            Window::End => return window,
        };
        self.position += length as u64;
        if matches!(window, Window::Data(_)) && covered(&self.free, start, start + length as u64) {
            Window::Free(length)
        } else {
            window
        }
    }
}

/// `ranges` sorted, without empty ones, overlapping and touching ones merged.
fn merge(mut ranges: Vec<std::ops::Range<u64>>) -> Vec<std::ops::Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// Whether `start..end` lies inside one of the sorted, merged `ranges`.
fn covered(ranges: &[std::ops::Range<u64>], start: u64, end: u64) -> bool {
    let at = ranges.partition_point(|r| r.end <= start);
    ranges.get(at).is_some_and(|r| r.start <= start && end <= r.end)
}

/// Zeroes the bytes of `buf` (image bytes `offset..`) that the free ranges cover.
fn zero_free(ranges: &[std::ops::Range<u64>], buf: &mut [u8], offset: u64) {
    let end = offset + buf.len() as u64;
    let mut at = ranges.partition_point(|r| r.end <= offset);
    while let Some(range) = ranges.get(at).filter(|r| r.start < end) {
        let (from, to) = (range.start.max(offset), range.end.min(end));
        buf[(from - offset) as usize..(to - offset) as usize].fill(0);
        at += 1;
    }
}

impl<S: ImageSource> ImageSource for UsedBlocks<S> {
    fn known_size(&self) -> Option<u64> {
        self.inner.known_size()
    }

    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }

    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window> {
        let start = self.position;
        let window = self.inner.next_window(buf, len)?;
        let window = self.classify(window);
        if let Window::Data(n) = window {
            zero_free(&self.free, &mut buf[..n], start);
        }
        Ok(window)
    }

    fn window_reader(&self) -> Option<Box<dyn WindowReader>> {
        let inner = self.inner.window_reader()?;
        Some(Box::new(UsedBlocksReader { inner, free: self.free.clone() }))
    }

    fn skip_window(&mut self, len: usize) -> io::Result<Window> {
        let window = self.inner.skip_window(len)?;
        Ok(self.classify(window))
    }

    fn used_blocks(&self) -> bool {
        true
    }

    fn holes_within(&self, offset: u64, len: usize) -> Vec<(std::ops::Range<usize>, Hole)> {
        let end = offset + len as u64;
        let grain = image_grain();
        let mut out = Vec::new();
        let mut at = self.free.partition_point(|r| r.end <= offset);
        while let Some(range) = self.free.get(at).filter(|r| r.start < end) {
            // Extents of a used-blocks section start and end on 512-byte
            // boundaries: a free range is cut inwards to them.
            let from = range.start.max(offset).next_multiple_of(grain);
            let to = range.end.min(end) / grain * grain;
            let to = if range.end >= end { end } else { to };
            if to > from && to - from >= self.min_gap {
                out.push(((from - offset) as usize..(to - offset) as usize, Hole::Free));
            }
            at += 1;
        }
        out
    }

    fn cuts_within(&self, offset: u64, len: usize) -> Vec<usize> {
        let end = offset + len as u64;
        let grain = image_grain();
        // A small range (a directory's blocks) begins a chunk only when the
        // last cut is METADATA_REACH or more behind it: each cut costs the
        // compression of what follows it (the bytes before it are out of
        // zstd's reach), and directories sit among small files, dozens to a
        // window.
        let min_piece = METADATA_REACH;
        let mut cuts = Vec::new();
        let mut last = offset;
        let mut push = |at: u64, always: bool| {
            // Inwards to the 512-byte grain of used-blocks extents.
            let at = at / grain * grain;
            if at > last && at < end && (always || at - last >= min_piece) {
                cuts.push((at - offset) as usize);
                last = at;
            }
        };
        let mut at = self.metadata.partition_point(|r| r.end <= offset);
        while let Some(range) = self.metadata.get(at).filter(|r| r.start < end) {
            // A large range (an inode table) is cut at both ends and into
            // pieces aligned to image offsets, so that a child cuts an
            // unchanged table as its parent did and finds its chunks.
            let large = range.end - range.start > METADATA_CHUNK;
            push(range.start, large);
            if large {
                let mut cut = range.start.max(offset) / METADATA_CHUNK * METADATA_CHUNK + METADATA_CHUNK;
                while cut < range.end.min(end) {
                    push(cut, true);
                    cut += METADATA_CHUNK;
                }
                push(range.end, true);
            }
            at += 1;
        }
        cuts
    }
}

/// The granularity of extents in a used-blocks section.
fn image_grain() -> u64 {
    strata_format::image::EXTENT_GRAIN
}

/// Reads data windows of a used-blocks source: free bytes come back as zeros.
struct UsedBlocksReader {
    inner: Box<dyn WindowReader>,
    free: std::sync::Arc<Vec<std::ops::Range<u64>>>,
}

impl WindowReader for UsedBlocksReader {
    fn read_window(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> io::Result<()> {
        self.inner.read_window(buf, offset, len)?;
        zero_free(&self.free, &mut buf[..len], offset);
        Ok(())
    }
}

/// Reads the data windows of a source at their image offsets, from any thread.
pub trait WindowReader: Send + Sync {
    /// Fills `buf` with the `len` bytes at `offset`.
    fn read_window(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> io::Result<()>;
}

/// Fills `buf` with `len` bytes of `file` at `offset`; a file that ends first
/// has shrunk since it was measured at `size` bytes.
fn read_file_window(file: &File, size: u64, buf: &mut Vec<u8>, offset: u64, len: usize) -> io::Result<()> {
    // Buffers come back for reuse: keep their bytes (the read overwrites them)
    // rather than zero 4 MiB before every read.
    buf.truncate(len);
    buf.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                    "the source ended at byte {} while {size} bytes were expected (did it shrink while it was read?)",
                    offset + filled as u64,
                ),
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct FileWindowReader {
    file: File,
    size: u64,
}

impl WindowReader for FileWindowReader {
    fn read_window(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> io::Result<()> {
        read_file_window(&self.file, self.size, buf, offset, len)
    }
}

/// A regular file or a block device, read with positional reads. Holes of a sparse
/// regular file are found with `SEEK_DATA`/`SEEK_HOLE` and never read: they
/// become zero extents (`spec/FORMAT.md` 7.2 and 14).
///
/// ```no_run
/// use strata_writer::{ArchiveWriter, FileSource, NoProgress, WriterOptions};
///
/// let mut disk = FileSource::open(std::path::Path::new("disk.img"))?;
/// let out = std::fs::File::create("disk.strata")?;
/// let mut writer = ArchiveWriter::new(out, WriterOptions::new([0; 16], 0))?;
/// writer.add_image("disk", &mut disk, &NoProgress)?;
/// writer.finish()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileSource {
    file: File,
    size: u64,
    sector_size: u32,
    position: u64,
    sparse: bool,
    /// The data range `[start, end)` that holds or follows `position`, as the file
    /// system reported it last; `None` once no data is left.
    data_range: Option<(u64, u64)>,
    data_range_valid_until: u64,
}

impl FileSource {
    /// Opens a file or block device for imaging, with `O_NOATIME` where permitted so
    /// the backup does not change what it backs up.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let noatime = rustix::fs::OFlags::NOATIME.bits() as i32;
        let file = match File::options().read(true).custom_flags(noatime).open(path) {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => File::open(path)?,
            Err(e) => return Err(e),
        };
        FileSource::new(file)
    }

    /// Wraps an open file or block device.
    pub fn new(mut file: File) -> io::Result<FileSource> {
        let file_type = file.metadata()?.file_type();
        // A block device reports length 0 in its metadata: its size is where its end is.
        let size = file.seek(SeekFrom::End(0))?;
        let sector_size =
            if file_type.is_block_device() { rustix::fs::ioctl_blksszget(&file).unwrap_or(512) } else { 512 };
        Ok(FileSource {
            file,
            size,
            sector_size,
            position: 0,
            sparse: file_type.is_file(),
            data_range: Some((0, 0)),
            data_range_valid_until: 0,
        })
    }

    /// Asks the file system where data lies at or after `position`.
    fn refresh_data_range(&mut self) {
        if !self.sparse {
            self.data_range = Some((0, self.size));
            self.data_range_valid_until = self.size;
            return;
        }
        let from = self.position;
        match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Data(from)) {
            Ok(start) => {
                let end = rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Hole(start)).unwrap_or(self.size);
                self.data_range = Some((start, end.min(self.size)));
                self.data_range_valid_until = end;
            }
            // No data after `from`: the rest is one hole.
            Err(rustix::io::Errno::NXIO) => {
                self.data_range = None;
                self.data_range_valid_until = self.size;
            }
            // A file system without SEEK_DATA: read everything.
            Err(_) => {
                self.sparse = false;
                self.refresh_data_range();
            }
        }
    }
}

impl ImageSource for FileSource {
    fn known_size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window> {
        let position = self.position;
        let window = self.skip_window(len)?;
        if let Window::Data(n) = window {
            read_file_window(&self.file, self.size, buf, position, n)?;
        }
        Ok(window)
    }

    fn window_reader(&self) -> Option<Box<dyn WindowReader>> {
        let file = self.file.try_clone().ok()?;
        Some(Box::new(FileWindowReader { file, size: self.size }))
    }

    fn skip_window(&mut self, len: usize) -> io::Result<Window> {
        let remaining = self.size - self.position;
        if remaining == 0 {
            return Ok(Window::End);
        }
        let len = (len as u64).min(remaining) as usize;
        let window_end = self.position + len as u64;
        if self.position >= self.data_range_valid_until {
            self.refresh_data_range();
        }
        let is_hole = match self.data_range {
            None => true,
            Some((start, _)) => start >= window_end,
        };
        self.position = window_end;
        Ok(if is_hole { Window::Hole(len) } else { Window::Data(len) })
    }
}

/// A source of unknown size read front to back, such as standard input; its
/// image's `logical_size` is known only at its end (`spec/FORMAT.md` 7.1,
/// 7.3).
#[derive(Debug)]
pub struct StreamSource<R> {
    reader: R,
    ended: bool,
}

impl<R: Read + Send> StreamSource<R> {
    /// Reads the image from `reader` until it ends.
    pub fn new(reader: R) -> Self {
        StreamSource { reader, ended: false }
    }
}

impl<R: Read + Send> ImageSource for StreamSource<R> {
    fn known_size(&self) -> Option<u64> {
        None
    }

    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window> {
        buf.clear();
        if self.ended {
            return Ok(Window::End);
        }
        buf.resize(len, 0);
        let mut filled = 0;
        // A pipe returns short reads: fill the window unless the stream ends.
        while filled < len {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.ended = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(if filled == 0 { Window::End } else { Window::Data(filled) })
    }
}

/// An image held in memory, of known size (tests, and images built in memory).
pub struct SliceSource<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl std::fmt::Debug for SliceSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes themselves would flood a log.
        f.debug_struct("SliceSource").field("len", &self.bytes.len()).field("position", &self.position).finish()
    }
}

impl<'a> SliceSource<'a> {
    /// The image `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        SliceSource { bytes, position: 0 }
    }
}

impl ImageSource for SliceSource<'_> {
    fn known_size(&self) -> Option<u64> {
        Some(self.bytes.len() as u64)
    }

    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window> {
        buf.clear();
        let end = (self.position + len).min(self.bytes.len());
        if end == self.position {
            return Ok(Window::End);
        }
        buf.extend_from_slice(&self.bytes[self.position..end]);
        let n = end - self.position;
        self.position = end;
        Ok(Window::Data(n))
    }
}

#[cfg(test)]
mod used_blocks_tests {
    use super::*;

    #[test]
    fn free_ranges_are_merged_and_zeroed_and_whole_free_windows_found() {
        let ranges = UsedBlocks::new(SliceSource::new(&[]), vec![10..20, 15..30, 40..50, 50..60]).free;
        assert_eq!(*ranges, vec![10..30, 40..60]);
        assert!(covered(&ranges, 12, 30) && covered(&ranges, 40, 60));
        assert!(!covered(&ranges, 5, 12) && !covered(&ranges, 25, 45));
        let mut buf = vec![1u8; 50];
        zero_free(&ranges, &mut buf, 20);
        // Image bytes 20..30 and 40..60 of 20..70 are free.
        assert!(buf[..10].iter().all(|&b| b == 0) && buf[10..20].iter().all(|&b| b == 1));
        assert!(buf[20..40].iter().all(|&b| b == 0) && buf[40..].iter().all(|&b| b == 1));
    }

    /// For any metadata ranges: cuts lie inside the window in increasing
    /// order on the 512-byte grain; a large range is cut at its ends and at
    /// every 64 KiB boundary inside it; a small range starts less than
    /// METADATA_REACH after the last cut before it (the most a lookup decodes).
    #[test]
    fn metadata_is_cut_into_small_chunks_and_directories_within_reach() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |bound: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        let window = 4u64 << 20;
        for _ in 0..300 {
            let mut ranges = Vec::new();
            for _ in 0..next(40) {
                let start = next(8 * window) / 1024 * 1024;
                let length = if next(4) == 0 { 1024 * (1 + next(4096)) } else { 1024 * (1 + next(8)) };
                ranges.push(start..start + length);
            }
            let source = UsedBlocks::new(SliceSource::new(&[]), Vec::new()).with_metadata(ranges);
            let metadata = source.metadata.clone();
            for w in 0..8 {
                let offset = w * window;
                let len = if w == 7 { window as usize - 4096 } else { window as usize };
                let cuts = source.cuts_within(offset, len);
                assert!(cuts.windows(2).all(|p| p[0] < p[1]), "{cuts:?}");
                assert!(cuts.iter().all(|&c| c > 0 && c < len && c % 512 == 0), "{cuts:?}");
                let last_cut = |at: u64| {
                    let inside = (at - offset) as usize;
                    cuts.iter().rev().find(|&&c| c <= inside).map_or(offset, |&c| offset + c as u64)
                };
                let end = offset + len as u64;
                for range in metadata.iter().filter(|r| r.start < end && r.end > offset) {
                    if range.end - range.start > METADATA_CHUNK {
                        let mut must = vec![range.start, range.end];
                        let mut at = range.start / METADATA_CHUNK * METADATA_CHUNK + METADATA_CHUNK;
                        while at < range.end {
                            must.push(at);
                            at += METADATA_CHUNK;
                        }
                        for at in must.into_iter().filter(|&at| at > offset && at < end) {
                            assert!(cuts.contains(&((at - offset) as usize)), "large {range:?}: no cut at {at}");
                        }
                    } else if range.start >= offset {
                        let from = last_cut(range.start);
                        assert!(range.start - from < METADATA_REACH, "small {range:?}: last cut at {from}");
                    }
                }
            }
        }
    }
}
