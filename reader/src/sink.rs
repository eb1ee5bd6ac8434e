//! Restore destinations. A regular file gets holes where the image has zeros, a
//! block device gets those ranges zeroed so it ends bit-identical, and a stream
//! gets every byte in order.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::sync::atomic::{AtomicBool, Ordering};

/// A destination that takes data at any offset from several threads at once:
/// restore decodes and writes each chunk on the same thread, while it is hot in
/// the cache, instead of handing it to one writer.
pub trait PositionalSink: Sync {
    /// Writes image bytes at image byte `offset`.
    fn write_data_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Records that image bytes `offset..offset + length` read as zeros: a
    /// zero, free or lost extent (FORMAT.md 7.2).
    fn write_hole_at(&self, offset: u64, length: u64) -> io::Result<()>;
}

/// Where a restored image goes, in the calls' order: [`ImageSink::start`],
/// writes of data and holes, [`ImageSink::finish`].
pub trait ImageSink {
    /// Called once before anything is written, with the image size if known.
    fn start(&mut self, logical_size: Option<u64>) -> io::Result<()>;
    /// Writes image bytes at `offset`.
    fn write_data(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Records that `offset..offset + length` reads as zeros.
    fn write_hole(&mut self, offset: u64, length: u64) -> io::Result<()>;
    /// Reads back bytes written earlier, if the destination can (for front-to-back
    /// restores, whose deduplicated chunks refer back to data already restored).
    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<bool>;
    /// Called once after everything is written, with the final image size.
    fn finish(&mut self, logical_size: u64) -> io::Result<()>;
    /// The same destination written by offset from many threads, if it can be.
    fn positional(&self) -> Option<&dyn PositionalSink> {
        None
    }
}

static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// A regular file or a block device, written with positional writes.
#[derive(Debug)]
pub struct FileSink {
    file: File,
    is_device: bool,
    /// A second handle on the same regular file opened with `O_DIRECT`, through
    /// which whole aligned blocks go, and whether it still works.
    direct: Option<File>,
    direct_works: AtomicBool,
}

/// What direct writes are aligned to, in memory, in the file and in length: a
/// multiple of every logical block size in use (512 and 4096 bytes). It is also
/// the granularity of holes in a restored file.
pub const DIRECT_ALIGN: usize = 4096;
/// The most one direct write carries.
const DIRECT_STEP: usize = 4 << 20;

/// `len` bytes whose first byte is aligned to [`DIRECT_ALIGN`], as `O_DIRECT`
/// writes need.
pub struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuffer").field("len", &self.len).finish_non_exhaustive()
    }
}

impl AlignedBuffer {
    /// A buffer of `len` zero bytes, aligned to [`DIRECT_ALIGN`] (it allocates
    /// that much more, to find the aligned start in).
    pub fn new(len: usize) -> AlignedBuffer {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuffer { storage, start, len }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its bytes, starting at the aligned address.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// Its bytes to fill, starting at the aligned address.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

thread_local! {
    /// One aligned buffer per restoring thread for direct writes.
    static ALIGNED: RefCell<Option<AlignedBuffer>> = const { RefCell::new(None) };
}

impl FileSink {
    /// A sink writing to `file`, opened for writing: a block device is told
    /// apart by its metadata (holes zeroed, size checked), anything else is
    /// truncated at the start and gets holes.
    pub fn new(file: File) -> io::Result<FileSink> {
        let is_device = file.metadata()?.file_type().is_block_device();
        Ok(FileSink { file, is_device, direct: None, direct_works: AtomicBool::new(false) })
    }

    /// Writes whole aligned blocks of a regular file through `direct`, a handle
    /// on the same file opened with `O_DIRECT`: no copy into the page cache and
    /// nothing left for the final sync (restoring the corpus image copied 1 GB
    /// into the page cache, a fifth of its CPU time, and two writers waited on
    /// each other for the file's lock meanwhile). A direct write that fails is
    /// done again buffered, and the rest goes buffered.
    pub fn with_direct(mut self, direct: File) -> FileSink {
        if !self.is_device {
            self.direct = Some(direct);
            self.direct_works = AtomicBool::new(true);
        }
        self
    }

    /// Writes `data` at `offset` of the regular file, directly where it can.
    fn write_run(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let aligned = offset.is_multiple_of(DIRECT_ALIGN as u64) && data.len().is_multiple_of(DIRECT_ALIGN);
        if let (true, Some(direct)) = (aligned && self.direct_works.load(Ordering::Relaxed), &self.direct) {
            let written = ALIGNED.with(|cell| -> io::Result<()> {
                let mut cell = cell.borrow_mut();
                let buffer = cell.get_or_insert_with(|| AlignedBuffer::new(DIRECT_STEP));
                for (i, piece) in data.chunks(DIRECT_STEP).enumerate() {
                    let block = &mut buffer.as_mut_slice()[..piece.len()];
                    block.copy_from_slice(piece);
                    direct.write_all_at(block, offset + (i * DIRECT_STEP) as u64)?;
                }
                Ok(())
            });
            if written.is_ok() {
                return Ok(());
            }
            self.direct_works.store(false, Ordering::Relaxed);
        }
        self.file.write_all_at(data, offset)
    }

    /// The file written, once the restore is done.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl PositionalSink for FileSink {
    fn write_data_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.is_device {
            return self.file.write_all_at(data, offset);
        }
        const BLOCK: usize = DIRECT_ALIGN;
        let mut at = 0usize;
        while at < data.len() {
            let is_zero = |start: usize| {
                let end = (start + BLOCK).min(data.len());
                strata_format::is_zero(&data[start..end])
            };
            if is_zero(at) {
                at += BLOCK;
                continue;
            }
            let run_start = at;
            while at < data.len() && !is_zero(at) {
                at += BLOCK;
            }
            let run_end = at.min(data.len());
            self.write_run(&data[run_start..run_end], offset + run_start as u64)?;
        }
        Ok(())
    }

    fn write_hole_at(&self, offset: u64, length: u64) -> io::Result<()> {
        if !self.is_device {
            return Ok(());
        }
        let mut done = 0u64;
        while done < length {
            let take = (length - done).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..take], offset + done)?;
            done += take as u64;
        }
        Ok(())
    }
}

impl ImageSink for FileSink {
    fn start(&mut self, logical_size: Option<u64>) -> io::Result<()> {
        if self.is_device {
            let device_size = rustix::fs::seek(&self.file, rustix::fs::SeekFrom::End(0))?;
            if let Some(size) = logical_size {
                if device_size < size {
                    return Err(io::Error::other(format!(
                        "the device holds {device_size} bytes, the image needs {size}"
                    )));
                }
            }
        } else {
            // Start from an empty file so that holes read as zeros.
            self.file.set_len(0)?;
        }
        Ok(())
    }

    fn write_data(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_data_at(offset, data)
    }

    fn write_hole(&mut self, offset: u64, length: u64) -> io::Result<()> {
        self.write_hole_at(offset, length)
    }

    fn positional(&self) -> Option<&dyn PositionalSink> {
        Some(self)
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        self.file.read_exact_at(buf, offset)?;
        Ok(true)
    }

    fn finish(&mut self, logical_size: u64) -> io::Result<()> {
        if !self.is_device {
            // Trailing zeros are a hole too: the length makes them exist.
            self.file.set_len(logical_size)?;
        }
        self.file.sync_all()
    }
}

/// A stream (standard output, a pipe): bytes in order, zeros written out.
pub struct StreamSink<W: Write> {
    out: W,
    position: u64,
}

impl<W: Write> std::fmt::Debug for StreamSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink").field("position", &self.position).finish_non_exhaustive()
    }
}

impl<W: Write> StreamSink<W> {
    /// A sink writing every image byte to `out` in order; it cannot read back,
    /// so only a restore by positional reads can use it.
    pub fn new(out: W) -> Self {
        StreamSink { out, position: 0 }
    }

    fn expect_position(&self, offset: u64) -> io::Result<()> {
        if offset != self.position {
            return Err(io::Error::other(format!(
                "a stream is written in order: byte {offset} came while byte {} was next",
                self.position
            )));
        }
        Ok(())
    }
}

impl<W: Write> ImageSink for StreamSink<W> {
    fn start(&mut self, _logical_size: Option<u64>) -> io::Result<()> {
        Ok(())
    }

    fn write_data(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.expect_position(offset)?;
        self.out.write_all(data)?;
        self.position += data.len() as u64;
        Ok(())
    }

    fn write_hole(&mut self, offset: u64, length: u64) -> io::Result<()> {
        self.expect_position(offset)?;
        let mut done = 0u64;
        while done < length {
            let take = (length - done).min(ZEROS.len() as u64) as usize;
            self.out.write_all(&ZEROS[..take])?;
            done += take as u64;
        }
        self.position += length;
        Ok(())
    }

    fn read_back(&mut self, _offset: u64, _buf: &mut [u8]) -> io::Result<bool> {
        Ok(false)
    }

    fn finish(&mut self, logical_size: u64) -> io::Result<()> {
        if self.position != logical_size {
            return Err(io::Error::other(format!(
                "{} bytes were written for an image of {logical_size}",
                self.position
            )));
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    /// Restores `image` in two pieces (the second at an unaligned offset) into a
    /// new file, directly or not, and returns the file's bytes and allocation.
    fn restore(image: &[u8], direct: bool) -> (Vec<u8>, u64) {
        let temp = tempfile::NamedTempFile::new_in(std::env::temp_dir()).unwrap();
        let mut sink = FileSink::new(temp.as_file().try_clone().unwrap()).unwrap();
        if direct {
            let flags = rustix::fs::OFlags::DIRECT.bits() as i32;
            if let Ok(handle) = std::fs::OpenOptions::new().write(true).custom_flags(flags).open(temp.path()) {
                sink = sink.with_direct(handle);
            }
        }
        sink.start(Some(image.len() as u64)).unwrap();
        let cut = 3 * DIRECT_ALIGN + 100;
        sink.write_data_at(0, &image[..cut]).unwrap();
        sink.write_data_at(cut as u64, &image[cut..]).unwrap();
        sink.finish(image.len() as u64).unwrap();
        let meta = temp.as_file().metadata().unwrap();
        (std::fs::read(temp.path()).unwrap(), meta.blocks() * 512)
    }

    #[test]
    fn direct_and_buffered_restores_give_the_same_file_with_the_same_holes() {
        // Data blocks, zero blocks (holes), a run longer than one direct write,
        // and a last block that is not whole.
        let mut image = Vec::new();
        for (i, blocks) in [2usize, 0, 3, 0, 0, 1100, 0, 1].into_iter().enumerate() {
            image.extend(std::iter::repeat_n((i + 1) as u8, blocks * DIRECT_ALIGN));
            image.extend(std::iter::repeat_n(0u8, DIRECT_ALIGN));
        }
        image.extend_from_slice(&[9u8; 123]);
        let (buffered, buffered_allocated) = restore(&image, false);
        let (direct, direct_allocated) = restore(&image, true);
        assert!(buffered == image, "the buffered restore differs from the image");
        assert!(direct == image, "the direct restore differs from the image");
        assert_eq!(direct_allocated, buffered_allocated, "holes differ");
        assert!(direct_allocated < image.len() as u64, "zero blocks must stay holes");
    }
}
