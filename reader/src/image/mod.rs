//! An image section as a handle: its bytes by position ([`Image::read_at`]) or
//! through [`std::io::Read`] and [`std::io::Seek`] ([`Image::reader`]), its
//! extents, its lost ranges, and a restore.
//!
//! Every read of image bytes in this crate goes through [`read_image_range`],
//! whoever keeps the decoded chunks: the archive's last chunk
//! ([`Archive::read_image_at`]), a [`ChunkCache`]
//! ([`ChunkCache::read_image_at`]), or an [`ImageReader`]'s own chunk.

pub(crate) mod section;

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;

use strata_format::{Extent, ExtentKind};

use crate::archive::short_chunk;
use crate::sink::ImageSink;
use crate::{Archive, Chunk, ChunkCache, Error, ImageSection, ReadAt};

/// The part of a chunk one step of [`read_image_range`] needs.
pub(crate) struct ChunkPart {
    /// Archive offset of the chunk's record.
    pub chunk_ref: u64,
    /// Raw bytes the chunk must hold at least: where its data extent ends in
    /// it (`chunk_offset` + `length`, FORMAT.md 7.2 rule 5).
    pub raw_needed: u64,
    /// The bytes wanted, within the chunk's raw bytes (inside `0..raw_needed`).
    pub range: Range<usize>,
}

impl ChunkPart {
    /// Copies the part from `chunk`, the decoded chunk at `chunk_ref`, into
    /// `dest` (as long as the part).
    pub fn copy_from(&self, chunk: &Chunk, dest: &mut [u8]) -> Result<(), Error> {
        // The fetches check that a chunk holds at least `raw_needed` bytes,
        // which holds the range; a chunk that does not is an error, not a panic.
        let bytes = chunk
            .raw
            .get(self.range.clone())
            .ok_or_else(|| short_chunk(self.raw_needed, chunk.raw.len() as u64).at(self.chunk_ref))?;
        dest.copy_from_slice(bytes);
        Ok(())
    }
}

/// The one extent walk: reads image bytes at `offset` into `buf` and returns
/// how many were read (fewer than `buf.len()` only at the end of the image).
/// Zero extents, and ranges lost in salvage, read as zeros; a data extent's
/// bytes are copied by `copy_from_chunk` into the slice it is given (as long
/// as the part's range), so each caller decides how chunks are decoded and kept.
/// A failure is placed in the image: its section and the extent's byte range.
pub(crate) fn read_image_range(
    image: &ImageSection,
    offset: u64,
    buf: &mut [u8],
    mut copy_from_chunk: impl FnMut(&ChunkPart, &mut [u8]) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = offset + done as u64;
        let Some(index) = image.extent_at(at) else {
            break;
        };
        let extent = image.extents[index];
        // Below the extent's length, which `extent_at` found to hold `at`.
        let within = at - extent.image_offset;
        let take = (extent.length - within).min((buf.len() - done) as u64) as usize;
        let dest = &mut buf[done..done + take];
        match extent.kind().map_err(|e| Error::from(e).in_section(&image.name))? {
            ExtentKind::Zero | ExtentKind::Lost | ExtentKind::Free => dest.fill(0),
            ExtentKind::Data(chunk_ref) => {
                // A data extent lies in one chunk (16 MiB at most, FORMAT.md 7.2
                // rule 3): its range in the chunk fits a usize.
                let start = (u64::from(extent.chunk_offset) + within) as usize;
                let part = ChunkPart { chunk_ref, raw_needed: extent.chunk_range().end, range: start..start + take };
                copy_from_chunk(&part, dest)
                    .map_err(|e| e.in_section(&image.name).in_image_range(extent.image_offset..extent.end()))?;
            }
        }
        done += take;
    }
    Ok(done)
}

/// A piece of image bytes that [`Image::read_pieces`] read, and where it is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImagePiece {
    /// Bytes of the image, at least 1.
    pub length: u64,
    /// What holds them: a chunk (by record offset, FORMAT.md 15.1), or zeros
    /// (a zero, free or lost range).
    pub kind: ExtentKind,
    /// For data, where the piece starts in the chunk's raw bytes; 0 otherwise.
    pub chunk_offset: u64,
    /// For data, the chunk's BLAKE3 (checked); zeros otherwise.
    pub blake3: [u8; 32],
}

/// One extent of an image: a range of image bytes and what holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageExtent {
    /// Image offset of the first byte.
    pub offset: u64,
    /// Bytes covered (never 0).
    pub length: u64,
    /// Stored in a chunk, zeros, or lost in salvage (reads as zeros).
    pub kind: ExtentKind,
    /// For data, where the extent's bytes start in the chunk's raw bytes
    /// (FORMAT.md 7.2); 0 otherwise.
    pub chunk_offset: u32,
}

impl ImageExtent {
    /// Image offset just past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }

    /// The image bytes covered, `offset..end()`.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.end()
    }

    fn from_checked(extent: &Extent) -> Self {
        // `Archive::open` checked every extent of the map (`ExtentMapCheck`
        // refuses reserved kinds), so `kind` cannot fail for a section of an
        // opened archive; were it to, that range holds nothing to read, as a
        // lost one, and reading it reports the defect.
        let kind = extent.kind().unwrap_or(ExtentKind::Lost);
        ImageExtent { offset: extent.image_offset, length: extent.length, kind, chunk_offset: extent.chunk_offset }
    }
}

/// An image section of an opened archive, ready to read: the handle
/// [`Archive::image`] gives. It borrows the archive, and is cheap to copy.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom};
/// use strata_format::ExtentKind;
/// use strata_reader::Archive;
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/image-small.strata")[..])?;
/// let disk = archive.image("disk")?;
/// assert_eq!(disk.len(), 50_000);
///
/// // By position...
/// let mut first = [0u8; 512];
/// assert_eq!(disk.read_at(0, &mut first)?, 512);
///
/// // ...or through Read + Seek, as any parser of disks reads a file.
/// let mut reader = disk.reader();
/// let mut again = [0u8; 512];
/// reader.read_exact(&mut again)?;
/// assert_eq!(first, again);
/// reader.seek(SeekFrom::End(-100))?;
/// let mut tail = Vec::new();
/// assert_eq!(reader.read_to_end(&mut tail)?, 100);
///
/// // The map: what is stored, what is zeros.
/// let stored: u64 = disk.extents().filter(|e| matches!(e.kind, ExtentKind::Data(_))).map(|e| e.length).sum();
/// assert_eq!(stored, disk.section().end.data_bytes);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Image<'a, R: ReadAt> {
    archive: &'a Archive<R>,
    section: &'a ImageSection,
}

impl<R: ReadAt> Clone for Image<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: ReadAt> Copy for Image<'_, R> {}

impl<R: ReadAt> std::fmt::Debug for Image<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image").field("name", &self.section.name).field("len", &self.section.logical_size).finish()
    }
}

impl<'a, R: ReadAt> Image<'a, R> {
    pub(crate) fn new(archive: &'a Archive<R>, section: &'a ImageSection) -> Self {
        Image { archive, section }
    }

    /// The section's name.
    pub fn name(&self) -> &'a str {
        &self.section.name
    }

    /// The image's logical size in bytes.
    pub fn len(&self) -> u64 {
        self.section.logical_size
    }

    /// Whether the image holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The section's layout as the archive records it: sector and chunk size,
    /// `IMAGE_END` totals and digest, the raw extent map.
    pub fn section(&self) -> &'a ImageSection {
        self.section
    }

    /// The archive the image is read from.
    pub fn archive(&self) -> &'a Archive<R> {
        self.archive
    }

    /// Reads image bytes at `offset` into `buf`; returns how many were read,
    /// fewer than `buf.len()` only at the end of the image (0 from the end
    /// on). Ranges lost in salvage read as zeros ([`Image::lost_ranges`] lists
    /// them). The same as [`Archive::read_image_at`]: a single small read of a
    /// chunk decodes only as far as it needs.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.archive.read_image_at(self.section, offset, buf)
    }

    /// A reader of the image from its start, implementing [`Read`] and
    /// [`Seek`], for code that parses a disk through them (partition tables,
    /// file systems). It keeps the chunk it decoded last, so reading front to
    /// back decodes each chunk once, however small the reads. Each decode is
    /// of a whole chunk: for a few small reads far apart,
    /// [`Image::read_at`] decodes less.
    ///
    /// ```
    /// use std::io::{Read, Seek, SeekFrom};
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/image-small.strata")[..])?;
    /// let mut disk = archive.image("disk")?.reader();
    /// // The second sector, as a partition table parser would read it.
    /// let mut sector = [0u8; 512];
    /// disk.seek(SeekFrom::Start(512))?;
    /// disk.read_exact(&mut sector)?;
    /// // The whole image, through std::io.
    /// disk.rewind()?;
    /// let copied = std::io::copy(&mut disk, &mut std::io::sink())?;
    /// assert_eq!(copied, 50_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reader(&self) -> ImageReader<'a, R> {
        ImageReader { image: *self, position: 0, cache: None, held: None }
    }

    /// As [`Image::reader`], with chunks decoded through `cache`, shared with
    /// other readers of the archive (several readers at once, or readers that
    /// come back to the same chunks).
    pub fn reader_with_cache(&self, cache: &'a ChunkCache) -> ImageReader<'a, R> {
        ImageReader { image: *self, position: 0, cache: Some(cache), held: None }
    }

    /// Reads image bytes at `offset` into `buf`, as [`Image::read_at`], and
    /// says where each piece of them is held: a zero, free or lost range, or
    /// a range of a chunk with that chunk's identity. The pieces tile what was
    /// read, in image order. Each chunk is decoded whole and checked (its
    /// BLAKE3 included), once however many pieces it holds. For a writer of a
    /// child that refers to its parent's chunks (FORMAT.md 15.5), and for
    /// tools that show where an image's bytes live.
    ///
    /// ```
    /// use strata_format::ExtentKind;
    /// use strata_reader::Archive;
    ///
    /// let archive = Archive::new(&include_bytes!("../../../spec/vectors/image-small.strata")[..])?;
    /// let disk = archive.image("disk")?;
    /// let mut buf = vec![0u8; 10_000];
    /// let pieces = disk.read_pieces(3_000, &mut buf)?;
    /// assert_eq!(pieces.iter().map(|p| p.length).sum::<u64>(), 10_000);
    /// let mut first = vec![0u8; 10_000];
    /// disk.read_at(3_000, &mut first)?;
    /// assert_eq!(buf, first);
    /// assert!(pieces.iter().any(|p| matches!(p.kind, ExtentKind::Data(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_pieces(&self, offset: u64, buf: &mut [u8]) -> Result<Vec<ImagePiece>, Error> {
        let mut pieces: Vec<ImagePiece> = Vec::new();
        let mut chunks = section::WindowChunks::default();
        let archive = self.archive;
        let done = read_image_range(self.section, offset, buf, |part, dest| {
            let chunk = chunks.get(archive, part.chunk_ref, part.raw_needed)?;
            part.copy_from(&chunk, dest)?;
            pieces.push(ImagePiece {
                length: dest.len() as u64,
                kind: ExtentKind::Data(part.chunk_ref),
                chunk_offset: part.range.start as u64,
                blake3: chunk.blake3,
            });
            Ok(())
        })?;
        // The holes between the data pieces, from the map.
        let mut all = Vec::with_capacity(pieces.len() + 2);
        let mut data = pieces.into_iter();
        let (mut at, end) = (offset, offset + done as u64);
        while at < end {
            let Some(index) = self.section.extent_at(at) else { break };
            let extent = &self.section.extents[index];
            let length = extent.end().min(end) - at;
            match extent.kind().map_err(|e| Error::from(e).in_section(&self.section.name))? {
                ExtentKind::Data(_) => all.extend(data.next()),
                kind => all.push(ImagePiece { length, kind, chunk_offset: 0, blake3: [0; 32] }),
            }
            at += length;
        }
        Ok(all)
    }

    /// The extent map, in image order: extents tile `0..len()` without gaps.
    pub fn extents(&self) -> impl ExactSizeIterator<Item = ImageExtent> + DoubleEndedIterator + 'a {
        self.section.extents.iter().map(ImageExtent::from_checked)
    }

    /// The ranges recorded as lost in salvage, half-open, touching ones merged.
    /// They read as zeros here; a consumer that must not take those zeros for
    /// the image's bytes (as `strata serve` and `strata mount`, which answer
    /// EIO) checks reads against them.
    pub fn lost_ranges(&self) -> Vec<Range<u64>> {
        self.section.lost_ranges()
    }

    /// Restores the whole image into `sink` (a file, a device, a stream: see
    /// [`crate::sink`]), decoding chunks in parallel, and checks what was
    /// written against the map digest of `IMAGE_END`. `progress` is told each
    /// restored byte count. The same as [`Archive::restore_image`].
    pub fn restore_to(&self, sink: &mut dyn ImageSink, progress: &(dyn Fn(u64) + Sync)) -> Result<(), Error> {
        self.archive.restore_image(self.section, sink, progress)
    }
}

/// Reads an image through [`Read`] and [`Seek`]: made by [`Image::reader`]
/// or [`Image::reader_with_cache`].
///
/// Seeking past the end is allowed, and reads there return 0; seeking to a
/// negative position fails with [`io::ErrorKind::InvalidInput`]. A read that
/// meets damage fails with the archive's [`Error`] inside the `io::Error`
/// (see `From<Error> for io::Error`), and reads nothing.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom};
/// use strata_reader::Archive;
///
/// let archive = Archive::new(&include_bytes!("../../../spec/vectors/image-small.strata")[..])?;
/// let image = archive.image("disk")?;
/// let mut reader = image.reader();
/// // The whole image, as the vectors' manifest hashes it.
/// let mut hasher = blake3::Hasher::new();
/// assert_eq!(std::io::copy(&mut reader, &mut hasher)?, 50_000);
/// assert_eq!(hasher.finalize().to_hex().as_str(), "0ee37a2c2d092eef66594065f2afc6f0ba0cee0e0300e70d4c211c2f7b48eb7e");
/// // Any part again, after a seek: the same bytes as a positional read.
/// let mut part = [0u8; 1000];
/// reader.seek(SeekFrom::Start(4000))?;
/// reader.read_exact(&mut part)?;
/// let mut again = [0u8; 1000];
/// image.read_at(4000, &mut again)?;
/// assert_eq!(part, again);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ImageReader<'a, R: ReadAt> {
    image: Image<'a, R>,
    position: u64,
    cache: Option<&'a ChunkCache>,
    /// The chunk decoded last, and its record offset.
    held: Option<(u64, Arc<Chunk>)>,
}

impl<R: ReadAt> std::fmt::Debug for ImageReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageReader")
            .field("image", &self.image)
            .field("position", &self.position)
            .field("held_chunk", &self.held.as_ref().map(|(chunk_ref, _)| chunk_ref))
            .finish()
    }
}

impl<'a, R: ReadAt> ImageReader<'a, R> {
    /// The image read.
    pub fn image(&self) -> Image<'a, R> {
        self.image
    }

    /// The image offset the next read starts at (may lie past the end).
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl<R: ReadAt> Read for ImageReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let ImageReader { image, position, cache, held } = self;
        let read = read_image_range(image.section, *position, buf, |part, dest| {
            let chunk = match held {
                Some((chunk_ref, chunk)) if *chunk_ref == part.chunk_ref => chunk.clone(),
                _ => {
                    let chunk = match cache {
                        Some(cache) => cache.chunk(image.archive, part.chunk_ref, part.raw_needed)?,
                        None => image.archive.read_chunk(part.chunk_ref, part.raw_needed)?,
                    };
                    *held = Some((part.chunk_ref, chunk.clone()));
                    chunk
                }
            };
            part.copy_from(&chunk, dest)
        })?;
        *position += read as u64;
        Ok(read)
    }
}

impl<R: ReadAt> Seek for ImageReader<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(offset) => (offset, 0),
            SeekFrom::End(delta) => (self.image.len(), delta),
            SeekFrom::Current(delta) => (self.position, delta),
        };
        self.position = base.checked_add_signed(delta).ok_or_else(|| {
            let beyond = if delta < 0 { "before the image's start" } else { "past the largest offset, 2^64 - 1" };
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seeking image {:?} by {delta} bytes from byte {base} lands {beyond}", self.image.name()),
            )
        })?;
        Ok(self.position)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position)
    }
}
