//! Helpers shared by the fuzz targets: a bounded in-memory restore destination, an
//! in-memory image source for the writer, and bounded random reads of an opened
//! archive.

use std::io::{self, Read, Seek, SeekFrom};

use strata_reader::sink::ImageSink;
use strata_reader::{Archive, ImageSection, ReadAt, Section};

/// Most image bytes a [`MemorySink`] holds: a hostile archive may declare any size,
/// and the fuzzer must not run out of memory because of it.
pub const SINK_CAP: u64 = 64 << 20;

/// A restore destination in memory. Data beyond [`SINK_CAP`] (and a final size
/// beyond it) is refused with an I/O error; holes are never allocated, so a zero
/// extent of any length costs nothing.
#[derive(Default)]
pub struct MemorySink {
    /// Bytes written so far; everything past its end reads as zeros.
    data: Vec<u8>,
    /// The size given to `finish`, once called.
    finished: Option<u64>,
}

fn refused(what: &str, offset: u64, length: u64) -> io::Error {
    io::Error::other(format!(
        "{what} of {length} bytes at {offset} lies beyond the {SINK_CAP}-byte cap of the fuzz sink"
    ))
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// The image as restored: the written bytes, zero-extended to the size given to
    /// `finish`. `None` if `finish` was not called.
    pub fn contents(&self) -> Option<Vec<u8>> {
        let size = usize::try_from(self.finished?).ok()?;
        let mut out = self.data.clone();
        out.resize(size, 0);
        Some(out)
    }
}

impl ImageSink for MemorySink {
    fn start(&mut self, _logical_size: Option<u64>) -> io::Result<()> {
        self.data.clear();
        self.finished = None;
        Ok(())
    }

    fn write_data(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= SINK_CAP)
            .ok_or_else(|| refused("data", offset, data.len() as u64))?;
        let (start, end) = (offset as usize, end as usize);
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(data);
        Ok(())
    }

    fn write_hole(&mut self, offset: u64, length: u64) -> io::Result<()> {
        let end = offset.checked_add(length).ok_or_else(|| refused("hole", offset, length))?;
        // Only the part that overlaps bytes already held needs zeroing; the rest
        // reads as zeros anyway. Nothing is allocated.
        let held = self.data.len() as u64;
        if offset < held {
            let stop = end.min(held);
            self.data[offset as usize..stop as usize].fill(0);
        }
        Ok(())
    }

    fn read_back(&mut self, _offset: u64, _buf: &mut [u8]) -> io::Result<bool> {
        // Force the front-to-back reader down its spill-file path.
        Ok(false)
    }

    fn finish(&mut self, logical_size: u64) -> io::Result<()> {
        // Refused like data, so that `contents` never allocates more than the cap.
        if logical_size > SINK_CAP {
            return Err(refused("image", 0, logical_size));
        }
        if (self.data.len() as u64) > logical_size {
            return Err(io::Error::other(format!(
                "{} bytes were written for an image of {logical_size}",
                self.data.len()
            )));
        }
        self.finished = Some(logical_size);
        Ok(())
    }
}

/// The writer's in-memory image source, re-exported for the targets.
pub use strata_writer::SliceSource;

/// Reads a few ranges of every image of `archive` (start, middle, end, across the
/// end, past the end), by position and through `Read` + `Seek`, at most `budget`
/// bytes in all each way. Errors are fine; panics are not.
pub fn read_some<R: ReadAt>(archive: &Archive<R>, budget: usize) {
    let mut left = budget;
    for section in archive.sections() {
        let Section::Image(image) = section else {
            continue;
        };
        read_ranges(archive, image, &mut left);
        if left == 0 {
            break;
        }
    }
}

fn read_ranges<R: ReadAt>(archive: &Archive<R>, image: &ImageSection, left: &mut usize) {
    let size = image.logical_size;
    let piece = 16 << 10;
    let offsets = [
        0,
        size / 2,
        size.saturating_sub(piece as u64),
        size.saturating_sub(100),
        size,
        size.saturating_add(4096),
        u64::MAX - 10,
    ];
    let handle = archive.image(&image.name).expect("a section of the archive is found by its name");
    let mut reader = handle.reader();
    let mut buf = vec![0u8; piece];
    let mut again = vec![0u8; piece];
    for offset in offsets {
        let take = piece.min(*left);
        if take == 0 {
            return;
        }
        *left -= take;
        let by_position = archive.read_image_at(image, offset, &mut buf[..take]);
        if let Ok(n) = by_position {
            assert!(n <= take, "read_image_at returned {n} for a {take}-byte buffer");
            // Fewer bytes than asked only at the end of the image.
            let expected = (take as u64).min(size.saturating_sub(offset)) as usize;
            assert_eq!(
                n, expected,
                "read_image_at returned {n} bytes for {take} asked at {offset} of an image of {size}"
            );
        }
        // The same range through Seek + Read: the same bytes, where both read
        // (a whole-chunk decode checks more than a partial one, so it may fail alone).
        assert_eq!(reader.seek(SeekFrom::Start(offset)).expect("seeking from the start never fails"), offset);
        if let (Ok(n), Ok(m)) = (by_position, reader.read(&mut again[..take])) {
            assert_eq!(n, m, "Read gave {m} bytes at {offset}, read_image_at {n}");
            assert!(buf[..n] == again[..m], "Read and read_image_at differ at {offset}");
        }
    }
}
