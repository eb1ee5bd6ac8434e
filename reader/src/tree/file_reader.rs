//! A regular file of a file-tree section through [`std::io::Read`] and
//! [`std::io::Seek`]: what [`crate::Tree::open`] gives.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use strata_format::files::{self, FileDigest, FileExtent};
use strata_format::ErrorClass;

use crate::{Chunk, Error, ReadAt, Tree};

/// Reads a regular file's content through [`Read`] and [`Seek`]: made by
/// [`Tree::open`], which says how what is read is checked.
///
/// Holes read as zeros. Seeking past the end is allowed, and reads there
/// return 0; seeking to a negative position fails with
/// [`io::ErrorKind::InvalidInput`]. A read that meets damage (a chunk that
/// fails its checks, content that does not match the file's digest) fails
/// with the archive's [`Error`] inside the `io::Error` (see
/// `From<Error> for io::Error`), and reads nothing; a digest that did not
/// match fails every later read too.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom};
/// use strata_reader::Archive;
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/tree-small.strata")[..])?;
/// let tree = archive.tree("tree")?;
/// let mut big = tree.open(&tree.lookup("docs/big.bin")?.expect("in the archive"))?;
/// // Front to back, as std::io::copy reads: checked against the file's digest.
/// let copied = std::io::copy(&mut big, &mut std::io::sink())?;
/// assert_eq!(copied, big.len());
/// // Or any range.
/// let mut middle = [0u8; 100];
/// big.seek(SeekFrom::Start(5000))?;
/// big.read_exact(&mut middle)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileReader<'a, R: ReadAt> {
    tree: Tree<'a, R>,
    /// The regular file read: the entry opened, or the file a hard link names.
    file: files::Entry,
    position: u64,
    /// The chunk decoded last, whole (its BLAKE3 checked), and its record offset.
    held: Option<(u64, Arc<Chunk>)>,
    /// A file held in one extent: the chunk's bytes up to the file's end at
    /// least, checked against the file's digest when they were decoded.
    single: Option<Decoded>,
    /// The digest of the bytes read from byte 0 on without a gap, and where
    /// they end; `None` once a read went elsewhere.
    running: Option<(FileDigest, u64)>,
    /// Set when the content did not match its digest: every read fails.
    corrupt: bool,
}

/// A chunk's raw bytes, whole or decoded only in part.
enum Decoded {
    Whole(Arc<Chunk>),
    Prefix(Vec<u8>),
}

impl Decoded {
    fn raw(&self) -> &[u8] {
        match self {
            Decoded::Whole(chunk) => &chunk.raw,
            Decoded::Prefix(bytes) => bytes,
        }
    }
}

impl<R: ReadAt> std::fmt::Debug for FileReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("tree", &self.tree)
            .field("entry_id", &self.file.entry_id)
            .field("len", &self.file.size)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl<'a, R: ReadAt> FileReader<'a, R> {
    /// A reader of `file`, a regular file of `tree` that has content.
    pub(crate) fn new(tree: Tree<'a, R>, file: files::Entry) -> Result<Self, Error> {
        let reader = FileReader { tree, file, position: 0, held: None, single: None, running: None, corrupt: false };
        // Without extents, the content is holes alone: its digest is known
        // now, and no read needs checking.
        if reader.file.extents.is_empty() && FileDigest::new().finish(reader.file.size) != reader.file.digest {
            return Err(reader.digest_mismatch());
        }
        Ok(reader)
    }

    /// How many extents the file's content is stored in (FORMAT.md 8.2).
    pub fn extent_count(&self) -> usize {
        self.file.extents.len()
    }

    /// The file's length in bytes, holes included.
    pub fn len(&self) -> u64 {
        self.file.size
    }

    /// Whether the file holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.file.size == 0
    }

    /// The file offset the next read starts at (may lie past the end).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether the file changed while the writer read it (its content is
    /// kept as read): for a hard link, that of its file.
    pub fn changed_while_read(&self) -> bool {
        self.file.flags & files::EntryFlags::CHANGED_WHILE_READ != 0
    }

    /// The tree the file is read from.
    pub fn tree(&self) -> Tree<'a, R> {
        self.tree
    }

    fn digest_mismatch(&self) -> Error {
        super::digest_mismatch(self.tree.name(), self.file.entry_id)
    }

    /// A file extent that runs past its chunk's end.
    fn past_chunk(&self, extent: &FileExtent, start: usize, end: usize, raw_length: usize) -> Error {
        Error::new(
            ErrorClass::ExtentMap,
            "file extent",
            format!("bytes {start}..{end}, past the chunk's end at byte {raw_length}"),
        )
        .at(extent.chunk_ref)
        .in_section(self.tree.name())
    }

    /// The whole chunk at `chunk_ref`, from the one held or decoded now.
    fn chunk(&mut self, chunk_ref: u64) -> Result<Arc<Chunk>, Error> {
        if let Some((held_ref, chunk)) = &self.held {
            if *held_ref == chunk_ref {
                return Ok(chunk.clone());
            }
        }
        let chunk = self.tree.archive().read_chunk_whole(chunk_ref).map_err(|e| e.in_section(self.tree.name()))?;
        self.held = Some((chunk_ref, chunk.clone()));
        Ok(chunk)
    }

    /// Decodes the chunk of a file held in one extent, only as far as the
    /// file's last byte when it is the first read of that chunk (FORMAT.md
    /// 10.1 step 5: the chunk's BLAKE3 is then not checked), and checks the
    /// file's digest over it, which covers every byte the reader gives.
    fn decode_single(&self) -> Result<Decoded, Error> {
        let extent = self.file.extents[0];
        let archive = self.tree.archive();
        let start = extent.chunk_offset as usize;
        let end = start.saturating_add(extent.length as usize);
        let decoded = if archive.first_read_of(extent.chunk_ref) {
            archive.read_chunk_prefix(extent.chunk_ref, end).map(Decoded::Prefix)
        } else {
            archive.read_chunk_whole(extent.chunk_ref).map(Decoded::Whole)
        }
        .map_err(|e| e.in_section(self.tree.name()))?;
        let raw = decoded.raw();
        let bytes = raw.get(start..end).ok_or_else(|| self.past_chunk(&extent, start, end, raw.len()))?;
        let mut digest = FileDigest::new();
        digest.data(extent.file_offset, bytes);
        if digest.finish(self.file.size) != self.file.digest {
            return Err(self.digest_mismatch());
        }
        Ok(decoded)
    }

    /// Fills `buf` with the file's bytes from `self.position` (all inside
    /// the file), and gives each stored piece to `data` with its offset. A
    /// file of one extent is read from `single`, decoded before.
    fn fill(&mut self, buf: &mut [u8], mut data: impl FnMut(u64, &[u8])) -> Result<(), Error> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = self.position + done as u64;
            let left = (buf.len() - done) as u64;
            // The first extent that ends after `at`: extents are in file
            // order and do not overlap (FORMAT.md 8.2, checked when parsed).
            let index = self.file.extents.partition_point(|e| e.end() <= at);
            let take = match self.file.extents.get(index).copied() {
                Some(extent) if extent.file_offset <= at => {
                    let within = at - extent.file_offset;
                    let take = (extent.length - within).min(left) as usize;
                    // Parsed extents lie inside 16 MiB of their chunk; one
                    // made up by a caller ([`crate::Entry::from_raw`]) may
                    // not, and then fails below rather than overflowing.
                    let start =
                        usize::try_from(u64::from(extent.chunk_offset).saturating_add(within)).unwrap_or(usize::MAX);
                    let end = start.saturating_add(take);
                    let dest = &mut buf[done..done + take];
                    if let Some(single) = &self.single {
                        let raw = single.raw();
                        let bytes =
                            raw.get(start..end).ok_or_else(|| self.past_chunk(&extent, start, end, raw.len()))?;
                        dest.copy_from_slice(bytes);
                    } else {
                        let chunk = self.chunk(extent.chunk_ref)?;
                        let bytes = chunk
                            .raw
                            .get(start..end)
                            .ok_or_else(|| self.past_chunk(&extent, start, end, chunk.raw.len()))?;
                        dest.copy_from_slice(bytes);
                    }
                    data(at, dest);
                    take
                }
                // A hole, up to the next extent or the end of the file.
                next => {
                    let hole_end = next.map_or(self.file.size, |e| e.file_offset);
                    let take = (hole_end - at).min(left) as usize;
                    buf[done..done + take].fill(0);
                    take
                }
            };
            done += take;
        }
        Ok(())
    }
}

impl<R: ReadAt> Read for FileReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.corrupt {
            return Err(self.digest_mismatch().into());
        }
        if buf.is_empty() || self.position >= self.file.size {
            return Ok(0);
        }
        let take = (self.file.size - self.position).min(buf.len() as u64) as usize;
        let buf = &mut buf[..take];
        if self.file.extents.len() == 1 && self.single.is_none() {
            self.single = Some(self.decode_single()?);
        }
        // A file of one extent is checked whole before its first byte is
        // given; one of several, by its digest over a read from byte 0 to the
        // end, kept up across reads that follow each other.
        let mut running = match self.running.take() {
            _ if self.file.extents.len() < 2 => None,
            _ if self.position == 0 => Some(FileDigest::new()),
            Some((digest, end)) if end == self.position => Some(digest),
            _ => None,
        };
        self.fill(buf, |at, bytes| {
            if let Some(digest) = &mut running {
                digest.data(at, bytes);
            }
        })?;
        let end = self.position + take as u64;
        if let Some(digest) = running {
            if end < self.file.size {
                self.running = Some((digest, end));
            } else if digest.finish(self.file.size) != self.file.digest {
                self.corrupt = true;
                return Err(self.digest_mismatch().into());
            }
        }
        self.position = end;
        Ok(take)
    }
}

impl<R: ReadAt> Seek for FileReader<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(offset) => (offset, 0),
            SeekFrom::End(delta) => (self.file.size, delta),
            SeekFrom::Current(delta) => (self.position, delta),
        };
        self.position = base.checked_add_signed(delta).ok_or_else(|| {
            let beyond = if delta < 0 { "before the file's start" } else { "past the largest offset, 2^64 - 1" };
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seeking entry {} by {delta} bytes from byte {base} lands {beyond}", self.file.entry_id),
            )
        })?;
        Ok(self.position)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position)
    }
}
