//! Test data and in-memory plumbing shared by the Strata benchmarks: a
//! reproducible image of zeros, text-like and random bytes, an [`ImageSource`]
//! over a byte slice, and an [`ImageSink`] into a `Vec`.

use std::io;

use strata_format::{ExtentKind, RecordHeader, RecordType};
use strata_reader::sink::ImageSink;
use strata_reader::{Archive, ImageSection};
use strata_writer::{ArchiveWriter, NoProgress, WriterOptions};

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

/// The name of the one image in the benchmark archives.
pub const IMAGE_NAME: &str = "disk";

/// A small, fast, reproducible generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for block in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            block.copy_from_slice(&word[..block.len()]);
        }
    }
}

const WORDS: [&str; 32] = [
    "the",
    "archive",
    "block",
    "image",
    "chunk",
    "extent",
    "record",
    "header",
    "index",
    "trailer",
    "zstd",
    "frame",
    "offset",
    "length",
    "section",
    "restore",
    "verify",
    "sector",
    "device",
    "partition",
    "window",
    "stream",
    "reader",
    "writer",
    "format",
    "checksum",
    "crc",
    "blake3",
    "data",
    "zero",
    "lost",
    "of",
];

/// Text-like bytes: words from a small vocabulary, in random order, with
/// punctuation and line breaks. zstd shrinks it to roughly a third.
pub fn text_like(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    while out.len() < end {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        out.push(match rng.below(16) {
            0 => b'\n',
            1 => b',',
            _ => b' ',
        });
    }
    out.truncate(end);
}

/// A reproducible image of `len` bytes (a multiple of 1 MiB works best): every
/// fourth MiB is zeros (a zero extent), the others interleave 64 KiB blocks of
/// text-like and random bytes (semi-compressible chunks).
pub fn sample_image(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(0x5354_5241_5441);
    let mut image = Vec::with_capacity(len);
    const BLOCK: usize = 64 * KIB;
    while image.len() < len {
        let take = BLOCK.min(len - image.len());
        let mib = image.len() / MIB;
        let block = image.len() / BLOCK;
        if mib % 4 == 3 {
            image.resize(image.len() + take, 0);
        } else if block % 3 == 2 {
            let start = image.len();
            image.resize(start + take, 0);
            rng.fill(&mut image[start..]);
        } else {
            text_like(&mut rng, &mut image, take);
        }
    }
    image
}

/// The writer's in-memory image source, re-exported for the targets.
pub use strata_writer::SliceSource;

/// A restore destination in memory. `start` keeps the allocation, so a sink
/// reused across iterations measures the restore, not the allocator.
#[derive(Default)]
pub struct VecSink {
    pub bytes: Vec<u8>,
}

impl ImageSink for VecSink {
    fn start(&mut self, logical_size: Option<u64>) -> io::Result<()> {
        self.bytes.clear();
        if let Some(size) = logical_size {
            self.bytes.reserve(size as usize);
        }
        Ok(())
    }

    fn write_data(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (start, end) = (offset as usize, offset as usize + data.len());
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(data);
        Ok(())
    }

    fn write_hole(&mut self, offset: u64, length: u64) -> io::Result<()> {
        let (start, end) = (offset as usize, (offset + length) as usize);
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].fill(0);
        Ok(())
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        let start = offset as usize;
        let bytes =
            self.bytes.get(start..start + buf.len()).ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(true)
    }

    fn finish(&mut self, logical_size: u64) -> io::Result<()> {
        self.bytes.resize(logical_size as usize, 0);
        Ok(())
    }
}

/// Writer options for reproducible benchmark archives: fixed UUID and time.
pub fn options(chunk_size: usize, threads: usize) -> WriterOptions {
    let mut options = WriterOptions::new(*b"strata-benchmark", 0);
    options.chunk_size = chunk_size as u32;
    options.threads = threads;
    options
}

/// Writes `image` as the one image of an archive in memory.
pub fn write_archive(image: &[u8], options: WriterOptions) -> Vec<u8> {
    let out = Vec::with_capacity(image.len() + MIB);
    let mut writer = ArchiveWriter::new(out, options).expect("valid writer options");
    writer.add_image(IMAGE_NAME, &mut SliceSource::new(image), &NoProgress).expect("writing to memory");
    writer.finish().expect("writing to memory").0
}

/// The one image section of an archive written by [`write_archive`].
pub fn image_section<R: strata_reader::ReadAt>(archive: &Archive<R>) -> ImageSection {
    archive.image(IMAGE_NAME).expect("the benchmark image").section().clone()
}

/// The body of the `CHUNK` record behind the `nth` data extent of the image, and
/// that chunk's raw length.
pub fn chunk_body(archive_bytes: &[u8], nth: usize) -> (&[u8], u64) {
    let archive = Archive::new(archive_bytes).expect("a valid archive");
    let image = image_section(&archive);
    let (chunk_ref, raw_length) = image
        .extents
        .iter()
        .filter_map(|extent| match extent.kind() {
            Ok(ExtentKind::Data(chunk_ref)) => Some((chunk_ref, extent.length)),
            _ => None,
        })
        .nth(nth)
        .expect("enough data extents");
    let start = chunk_ref as usize;
    let head: &[u8; RecordHeader::SIZE] =
        archive_bytes[start..start + RecordHeader::SIZE].try_into().expect("32 bytes");
    let header = RecordHeader::decode(head);
    assert_eq!(header.record_type, RecordType::Chunk.code());
    let body_start = start + RecordHeader::SIZE;
    let body = &archive_bytes[body_start..body_start + header.body_length as usize];
    (body, raw_length)
}

/// Image offsets of the first bytes of the data extents, in image order.
pub fn data_extent_offsets(image: &ImageSection) -> Vec<u64> {
    image
        .extents
        .iter()
        .filter(|extent| matches!(extent.kind(), Ok(ExtentKind::Data(_))))
        .map(|extent| extent.image_offset)
        .collect()
}
