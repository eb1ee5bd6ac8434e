//! A volume as the stream that file-system crates (fatfs, ntfs) read through.
//!
//! Three things sit between such a crate and the image: a [`Window`] that
//! keeps every read inside the volume, a small cache of blocks (both crates
//! read a few bytes at a time: one field of a directory entry, one FAT
//! entry), and a budget of bytes that the adapter grants before each
//! operation from what that operation can need (a directory's stated size, a
//! file's length). A damaged file system whose structures loop (a cluster
//! chain, an index node pointing at itself) spends the budget and stops with
//! an error instead of reading forever. The budget counts the bytes the crate
//! asks for, cached or not, so a loop inside the cache is stopped as well.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use crate::Window;

/// Size of a cached block; reads this large or larger bypass the cache.
const BLOCK: u64 = 4096;
/// Blocks kept: 1 MiB, enough for a FAT's hot part, a directory and the
/// records around it.
const BLOCKS: usize = 256;

/// The error a read answers once the budget is spent; adapters recognise it
/// through [`VolumeReader::spent`] and say what looped.
const SPENT: &str = "the file system's structures ask for more reads than any valid one needs (read budget spent)";

/// Cached blocks by number, each with when it was last used.
type Blocks = HashMap<u64, (Rc<[u8]>, u64)>;

/// The volume, shared by the crate's stream and the adapter that checks
/// what the crate does not (FAT cluster chains).
pub(crate) struct VolumeReader {
    window: RefCell<Window>,
    cache: RefCell<Blocks>,
    /// Use counter, for evicting the least recently used block.
    clock: Cell<u64>,
    budget: Cell<u64>,
    spent: Cell<bool>,
    last_read_end: Cell<u64>,
}

impl VolumeReader {
    /// Reads through `window` (unlimited itself: the budget is kept here),
    /// with no budget granted yet.
    pub(crate) fn new(window: Window) -> Rc<Self> {
        Rc::new(VolumeReader {
            window: RefCell::new(window),
            cache: RefCell::new(HashMap::new()),
            clock: Cell::new(0),
            budget: Cell::new(0),
            spent: Cell::new(false),
            last_read_end: Cell::new(0),
        })
    }

    /// Length of the volume.
    pub(crate) fn len(&self) -> u64 {
        self.window.borrow().len()
    }

    /// Allows the next reads `bytes` in all (replacing what was left).
    pub(crate) fn grant(&self, bytes: u64) {
        self.budget.set(bytes);
        self.spent.set(false);
    }

    /// Allows `bytes` more.
    pub(crate) fn allow(&self, bytes: u64) {
        self.budget.set(self.budget.get().saturating_add(bytes));
    }

    /// Whether a read failed because the budget was spent.
    pub(crate) fn spent(&self) -> bool {
        self.spent.get()
    }

    /// Where the last read ended, in bytes from the volume's start.
    pub(crate) fn last_read_end(&self) -> u64 {
        self.last_read_end.get()
    }

    /// Fills `buf` from byte `offset` of the volume, within the budget.
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let length = self.len();
        let end = offset.checked_add(buf.len() as u64).filter(|&end| end <= length).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a read at byte {offset} of the volume runs past its end ({length} bytes)"),
            )
        })?;
        let left = self.budget.get().checked_sub(buf.len() as u64).ok_or_else(|| {
            self.spent.set(true);
            io::Error::other(SPENT)
        })?;
        self.budget.set(left);
        if buf.len() as u64 >= BLOCK {
            self.window.borrow_mut().read_exact_at(offset, buf).map_err(image_error)?;
        } else {
            let mut at = offset;
            let mut filled = 0;
            while filled < buf.len() {
                let block = self.block(at / BLOCK)?;
                let inside = (at % BLOCK) as usize;
                let n = (buf.len() - filled).min(block.len().saturating_sub(inside));
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a block of the volume is short"));
                }
                buf[filled..filled + n].copy_from_slice(&block[inside..inside + n]);
                filled += n;
                at += n as u64;
            }
        }
        self.last_read_end.set(end);
        Ok(())
    }

    /// Block `number`, from the cache or read (the last one may be short).
    fn block(&self, number: u64) -> io::Result<Rc<[u8]>> {
        let now = self.clock.get() + 1;
        self.clock.set(now);
        if let Some((block, used)) = self.cache.borrow_mut().get_mut(&number) {
            *used = now;
            return Ok(block.clone());
        }
        let start = number * BLOCK;
        let n = BLOCK.min(self.len() - start) as usize;
        let mut bytes = vec![0u8; n];
        self.window.borrow_mut().read_exact_at(start, &mut bytes).map_err(image_error)?;
        let block: Rc<[u8]> = bytes.into();
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= BLOCKS {
            if let Some(oldest) = cache.iter().min_by_key(|(_, (_, used))| *used).map(|(&k, _)| k) {
                cache.remove(&oldest);
            }
        }
        cache.insert(number, (block.clone(), now));
        Ok(block)
    }
}

/// A failure to read the image itself (a damaged archive range), as opposed
/// to a file system that points outside its volume or breaks its own rules.
#[derive(Debug)]
struct ImageError(io::Error);

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ImageError {}

fn image_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), ImageError(e))
}

/// Whether `e` (as a file-system crate passes it on) is a failure to read
/// the image, rather than damage in the file system.
pub(crate) fn is_image_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ImageError>())
}

/// A position over a [`VolumeReader`]: `Read + Seek`, and `Write` that
/// always fails, for crates that ask for writable storage (fatfs) although
/// only reading is asked of them. Nothing in this crate writes to an image.
pub(crate) struct Stream {
    reader: Rc<VolumeReader>,
    position: u64,
}

impl Stream {
    /// A stream at the start of the volume.
    pub(crate) fn new(reader: Rc<VolumeReader>) -> Self {
        Stream { reader, position: 0 }
    }
}

impl Read for Stream {
    /// A read that starts at or past the end of the volume is an error, not
    /// the end of a file: the crate was sent there by a structure that points
    /// outside the volume.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let length = self.reader.len();
        if self.position >= length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a read at byte {} of the volume lies past its end ({length} bytes)", self.position),
            ));
        }
        let n = (length - self.position).min(buf.len() as u64) as usize;
        self.reader.read_at(self.position, &mut buf[..n])?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for Stream {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.reader.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

impl Write for Stream {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, "the volume is read-only: nothing writes to an image"))
    }

    /// Nothing was written, so there is nothing to flush (fatfs flushes
    /// when a file or the file system is dropped).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Disk;

    fn reader(bytes: Vec<u8>) -> Rc<VolumeReader> {
        let disk: Rc<dyn Disk> = Rc::new(bytes);
        let length = disk.len();
        VolumeReader::new(Window::new(disk, 0, length))
    }

    #[test]
    fn reads_across_blocks_and_counts_every_byte_asked() {
        let bytes: Vec<u8> = (0..3 * BLOCK as usize + 100).map(|i| (i % 251) as u8).collect();
        let r = reader(bytes.clone());
        r.grant(100);
        let mut buf = [0u8; 40];
        r.read_at(BLOCK - 20, &mut buf).unwrap();
        assert_eq!(&buf[..], &bytes[BLOCK as usize - 20..BLOCK as usize + 20]);
        r.read_at(BLOCK - 20, &mut buf).unwrap();
        // Cached or not, the third read of 40 bytes passes the budget of 100.
        let e = r.read_at(BLOCK - 20, &mut buf).unwrap_err();
        assert!(r.spent() && e.to_string().contains("budget"), "{e}");
        // The short last block, and a read past the end.
        r.grant(1 << 20);
        let mut tail = [0u8; 100];
        r.read_at(3 * BLOCK, &mut tail).unwrap();
        assert_eq!(&tail[..], &bytes[3 * BLOCK as usize..]);
        assert_eq!(r.read_at(3 * BLOCK + 1, &mut tail).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(r.last_read_end(), 3 * BLOCK + 100);
    }

    #[test]
    fn the_stream_never_writes() {
        let mut s = Stream::new(reader(vec![7u8; 1000]));
        s.reader.grant(1 << 20);
        assert!(s.write(b"x").is_err());
        s.seek(SeekFrom::End(-10)).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).unwrap(), 10);
        assert!(s.read(&mut buf).unwrap_err().to_string().contains("past its end"));
    }
}
