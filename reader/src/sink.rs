//! Restore destinations. A regular file gets holes where the image has zeros, a
//! block device gets those ranges zeroed so it ends bit-identical, and a stream
//! gets every byte in order.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};

/// Where a restored image goes.
/// A destination that takes data at any offset from several threads at once:
/// restore decodes and writes each chunk on the same thread, while it is hot in
/// the cache, instead of handing it to one writer.
pub trait PositionalSink: Sync {
    fn write_data_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    fn write_hole_at(&self, offset: u64, length: u64) -> io::Result<()>;
}

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
pub struct FileSink {
    file: File,
    is_device: bool,
}

impl FileSink {
    pub fn new(file: File) -> io::Result<FileSink> {
        let is_device = file.metadata()?.file_type().is_block_device();
        Ok(FileSink { file, is_device })
    }

    pub fn into_file(self) -> File {
        self.file
    }
}

impl PositionalSink for FileSink {
    fn write_data_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.is_device {
            return self.file.write_all_at(data, offset);
        }
        const BLOCK: usize = 4096;
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
            self.file.write_all_at(&data[run_start..run_end], offset + run_start as u64)?;
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

impl<W: Write> StreamSink<W> {
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
