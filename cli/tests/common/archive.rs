//! In-process archive building for property and damage tests.

use strata_reader::sink::ImageSink;
use strata_writer::{ArchiveWriter, ImageSource, NoProgress, SliceSource, StreamSource, WriterOptions};

/// Writes `images` with 4 KiB chunks (so small inputs hold many chunks).
pub fn write(images: &[(&str, &[u8])], threads: usize, size_known: bool) -> Vec<u8> {
    write_with_tree(images, None, threads, size_known)
}

/// Writes `images`, then the folder `tree` (if any) as the file tree "tree".
pub fn write_with_tree(
    images: &[(&str, &[u8])],
    tree: Option<&std::path::Path>,
    threads: usize,
    size_known: bool,
) -> Vec<u8> {
    let mut options = WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    options.chunk_size = 4096;
    options.threads = threads;
    options.batch_bytes = 8 * 4096;
    // Tables stored plain: the tests patch their bytes in place.
    options.compress_tables = false;
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("valid options");
    for (name, bytes) in images {
        let mut source: Box<dyn ImageSource> =
            if size_known { Box::new(SliceSource::new(bytes)) } else { Box::new(StreamSource::new(*bytes)) };
        writer.add_image(name, source.as_mut(), &NoProgress).expect("writing to memory");
    }
    if let Some(dir) = tree {
        let options = strata_writer::TreeOptions::default();
        writer.add_tree("tree", dir, &options, &NoProgress).expect("the test tree is readable");
    }
    writer.finish().expect("writing to memory").0
}

/// Collects a restore in memory, checking that writes come in order.
#[derive(Default)]
pub struct MemorySink {
    pub bytes: Vec<u8>,
}

impl ImageSink for MemorySink {
    fn start(&mut self, _: Option<u64>) -> std::io::Result<()> {
        Ok(())
    }
    fn write_data(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        assert_eq!(offset as usize, self.bytes.len(), "restores write in image order");
        self.bytes.extend_from_slice(data);
        Ok(())
    }
    fn write_hole(&mut self, offset: u64, length: u64) -> std::io::Result<()> {
        assert_eq!(offset as usize, self.bytes.len(), "restores write in image order");
        self.bytes.resize(self.bytes.len() + length as usize, 0);
        Ok(())
    }
    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<bool> {
        buf.copy_from_slice(&self.bytes[offset as usize..offset as usize + buf.len()]);
        Ok(true)
    }
    fn finish(&mut self, size: u64) -> std::io::Result<()> {
        assert_eq!(size as usize, self.bytes.len());
        Ok(())
    }
}
