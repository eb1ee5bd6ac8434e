//! A byte range of a disk as `Read + Seek`, for crates that parse through
//! those traits, with a budget on what it may read.

use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

use crate::Disk;

/// Bytes `start..start + length` of a disk, read through `Read + Seek`. With a
/// budget, a read beyond it fails with an error that says so: what keeps a
/// parser of hostile tables bounded.
pub struct Window {
    disk: Rc<dyn Disk>,
    start: u64,
    length: u64,
    position: u64,
    /// Bytes that may still be read; `None` for no limit.
    budget: Option<u64>,
}

impl Window {
    /// Bytes `start..start + length` of `disk` (cut to its end), unlimited.
    pub fn new(disk: Rc<dyn Disk>, start: u64, length: u64) -> Self {
        let start = start.min(disk.len());
        let length = length.min(disk.len() - start);
        Window { disk, start, length, position: 0, budget: None }
    }

    /// The same window, allowed to read at most `bytes` in all.
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// Length of the window.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Reads exactly `buf.len()` bytes at `offset` of the window, within the
    /// budget.
    pub fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&end| end <= self.length);
        if end.is_none() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the volume"));
        }
        self.spend(buf.len() as u64)?;
        self.disk.read_exact_at(self.start + offset, buf)
    }

    fn spend(&mut self, bytes: u64) -> io::Result<()> {
        if let Some(left) = &mut self.budget {
            *left = left.checked_sub(bytes).ok_or_else(|| {
                io::Error::other("the structure asks for more reads than any valid one needs (read budget spent)")
            })?;
        }
        Ok(())
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.length.saturating_sub(self.position)).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.spend(n as u64)?;
        self.disk.read_exact_at(self.start + self.position, &mut buf[..n])?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.length.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}
