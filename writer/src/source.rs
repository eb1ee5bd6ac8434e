//! Where block-image bytes come from: a seekable file or device, or a stream.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What the next chunk window of a source holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// This many bytes were read into the buffer.
    Data(usize),
    /// This many bytes are a hole in a sparse file: zeros, not read.
    Hole(usize),
    /// This many bytes were lost before they reached the writer (salvage of a
    /// damaged archive): recorded as a lost extent, read back as zeros.
    Lost(usize),
    /// The source has no more bytes.
    End,
}

/// A block-image source, read front to back one chunk window at a time.
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
/// regular file are found with `SEEK_DATA`/`SEEK_HOLE` and never read.
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

/// A source of unknown size read front to back, such as standard input.
pub struct StreamSource<R> {
    reader: R,
    ended: bool,
}

impl<R: Read + Send> StreamSource<R> {
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

/// An image held in memory, of known size.
pub struct SliceSource<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> SliceSource<'a> {
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
