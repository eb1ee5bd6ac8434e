//! Damaged archives: every flipped byte is found and located, every truncation
//! gives a clear error, never a panic.

mod common;

use common::archive::{write, MemorySink};
use common::fix_crcs;
use strata_format::{RecordHeader, RecordType};
use strata_reader::{stream, verify, Archive, Limits, Section};

/// A small archive holding every record type: two images (zstd and raw chunks,
/// zero extents, a deduplicated chunk) and a file tree (packed and windowed files,
/// a hole, a symlink, a hard link, nested directories).
fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut disk = Vec::new();
    disk.extend((0..12_000u32).map(|i| (i % 251) as u8)); // compressible
    disk.resize(disk.len() + 9_000, 0); // zeros
    let mut x = 99u32;
    disk.extend((0..8_192).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (x >> 16) as u8
    })); // incompressible
    disk.extend(std::iter::repeat_n(b'r', 5_000));
    let part = disk[4096..12_288].to_vec(); // deduplicates against the disk
    let tree = tempfile::tempdir().expect("a temporary directory");
    let root = tree.path();
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/small.txt"), b"a small file, packed with others\n").unwrap();
    std::fs::write(root.join("a/b/other.txt"), vec![b'o'; 3_000]).unwrap();
    std::fs::write(root.join("big.bin"), &disk[..10_000]).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"after a hole", 16_384).unwrap();
    std::os::unix::fs::symlink("a/small.txt", root.join("link")).unwrap();
    std::fs::hard_link(root.join("a/small.txt"), root.join("hard")).unwrap();
    let archive = common::archive::write_with_tree(&[("disk", &disk), ("part", &part)], Some(root), 1, true);
    (archive, disk, part)
}

/// Record offsets and types of a valid archive.
fn records(bytes: &[u8]) -> Vec<(usize, u16, usize)> {
    let mut at = 128;
    let mut out = Vec::new();
    while at + 32 <= bytes.len() {
        let head = RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
        let end = at + 32 + head.body_length as usize;
        out.push((at, head.record_type, end));
        at = end;
    }
    out
}

#[test]
fn every_flipped_byte_is_reported_and_chunk_damage_names_the_image_range() {
    let (archive, _, _) = sample();
    assert!(archive.len() < 64 << 10, "the sample is small: {} bytes", archive.len());
    let clean = verify::verify(&archive, Limits::default(), &|_| {}).unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    let opened = Archive::new(archive.clone()).unwrap();
    let chunk_records: Vec<(usize, usize)> =
        records(&archive).into_iter().filter(|r| r.1 == RecordType::Chunk.code()).map(|r| (r.0, r.2)).collect();
    let mut damaged = archive.clone();
    for i in 0..archive.len() {
        damaged[i] ^= 0x40;
        let report = verify::verify(&damaged, Limits::default(), &|_| {}).unwrap();
        assert!(!report.is_clean(), "flipping byte {i} went unnoticed");
        assert!(report.recognised || i < 8, "byte {i}: a damaged archive is still recognised");
        // A flip inside a chunk's body must name every image range that uses it.
        if let Some(&(start, _)) = chunk_records.iter().find(|(start, end)| i >= start + 32 && i < *end) {
            for section in opened.sections() {
                let Section::Image(image) = section else { continue };
                for extent in image.extents.iter().filter(|e| e.chunk_ref == start as u64) {
                    let named = report.problems.iter().any(|p| {
                        p.affects.iter().any(|a| {
                            a.section == image.name
                                && a.range.start <= extent.image_offset
                                && a.range.end >= extent.end()
                        })
                    });
                    assert!(
                        named,
                        "byte {i} in the chunk at {start}: image {} range {}..{} not named: {:?}",
                        image.name,
                        extent.image_offset,
                        extent.end(),
                        report.problems
                    );
                }
            }
        }
        damaged[i] ^= 0x40;
    }
}

#[test]
fn every_truncation_gives_a_clear_error_and_no_panic() {
    let (archive, disk, _) = sample();
    for cut in 0..archive.len() {
        let truncated = &archive[..cut];
        let report = verify::verify(truncated, Limits::default(), &|_| {}).unwrap();
        assert!(!report.is_clean(), "a cut at {cut} went unnoticed");
        let error = Archive::new(truncated.to_vec()).err().unwrap_or_else(|| panic!("cut at {cut} opened"));
        assert!(!error.to_string().is_empty());
        let mut sink = MemorySink::default();
        let streamed = stream::restore_image(truncated, "disk", &mut sink, Limits::default(), &|_| {});
        // A cut after the disk's IMAGE_END still restores the disk, identically.
        if let Ok(size) = streamed {
            assert_eq!(size as usize, disk.len());
            assert_eq!(sink.bytes, disk);
        }
    }
}

#[test]
fn a_damaged_trailer_is_told_apart_from_a_cut() {
    use strata_format::ErrorClass;
    let (archive, _, _) = sample();
    let trailer = archive.len() - 64;
    // A header that passes says a trailer is there: damage to its body is damage.
    let mut body_flipped = archive.clone();
    body_flipped[trailer + 40] ^= 1;
    let error = Archive::new(body_flipped).expect_err("a trailer whose body fails its CRC is refused");
    assert_eq!((error.class(), error.offset()), (Some(ErrorClass::RecordChecksum), Some(trailer as u64)));
    // Without a sound record header in the last 64 bytes there is no trailer at all.
    let mut header_flipped = archive.clone();
    header_flipped[trailer + 2] ^= 1;
    let error = Archive::new(header_flipped).expect_err("a trailer whose header fails its CRC is refused");
    assert_eq!((error.class(), error.offset()), (Some(ErrorClass::Truncated), Some(trailer as u64)));
}

#[test]
fn damage_to_end_and_begin_records_is_reported_as_spec_section_11_says() {
    use strata_format::ErrorClass;
    let (archive, disk, _) = sample();
    let layout = records(&archive);
    let find = |t: RecordType| layout.iter().find(|r| r.1 == t.code()).copied().unwrap();
    let classes = |r: &verify::Report| r.problems.iter().map(|p| p.class).collect::<Vec<_>>();

    // IMAGE_END and every extent record lost: the size IMAGE_BEGIN declared
    // still gives the image's size.
    let (end_at, _, _) = find(RecordType::ImageEnd);
    let mut bytes = archive.clone();
    bytes[end_at + 40] ^= 1;
    for &(at, _, _) in layout.iter().filter(|r| r.1 == RecordType::ImageExtents.code() && r.0 < end_at) {
        bytes[at + 40] ^= 1;
    }
    let report = verify::verify(&bytes, Limits::default(), &|_| {}).unwrap();
    assert_eq!(report.sections[0].logical_size, disk.len() as u64, "{:?}", report.problems);

    // IMAGE_BEGIN broken: no section is opened, and its IMAGE_INDEX describes none.
    let (begin_at, _, _) = find(RecordType::ImageBegin);
    let mut bytes = archive.clone();
    bytes[begin_at + 40] ^= 1;
    let report = verify::verify(&bytes, Limits::default(), &|_| {}).unwrap();
    assert!(report.sections.iter().all(|s| s.name != "disk"), "{:?}", report.sections.iter().map(|s| &s.name));
    let (index_at, _, _) = find(RecordType::ImageIndex);
    assert!(
        report.problems.iter().any(|p| p.class == ErrorClass::IndexMismatch && p.offset == index_at as u64),
        "the orphaned IMAGE_INDEX is reported: {:?}",
        report.problems
    );

    // A trailer whose body fails its CRC is that, not a missing trailer.
    let mut bytes = archive.clone();
    let trailer = bytes.len() - 64;
    bytes[trailer + 40] ^= 1;
    let report = verify::verify(&bytes, Limits::default(), &|_| {}).unwrap();
    assert_eq!(classes(&report), [ErrorClass::RecordChecksum], "{:?}", report.problems);
}

#[test]
fn rules_of_files_dir_and_files_end_fields_are_checked() {
    use strata_format::ErrorClass;
    let (archive, _, _) = sample();
    let layout = records(&archive);
    let problems_at = |bytes: &[u8], at: usize| {
        let report = verify::verify(bytes, Limits::default(), &|_| {}).unwrap();
        report.problems.iter().filter(|p| p.offset == at as u64).map(|p| p.class).collect::<Vec<_>>()
    };

    // A FILES_DIR child that is not a directory must have dir_table 0.
    let (dir_at, child) = layout
        .iter()
        .filter(|r| r.1 == RecordType::FilesDir.code())
        .find_map(|&(at, _, _)| {
            let count = u64::from_le_bytes(archive[at + 48..at + 56].try_into().unwrap()) as usize;
            (0..count).map(|i| at + 56 + i * 32).find(|&c| archive[c + 22] != 2).map(|c| (at, c))
        })
        .expect("the sample has a directory holding a file");
    let mut bytes = archive.clone();
    bytes[child + 24] = 0x80;
    fix_crcs(&mut bytes, dir_at);
    assert_eq!(problems_at(&bytes, dir_at), [ErrorClass::IndexMismatch]);

    // FILES_END reserved must be zero.
    let (end_at, _, _) = *layout.iter().find(|r| r.1 == RecordType::FilesEnd.code()).unwrap();
    let mut bytes = archive.clone();
    bytes[end_at + 32 + 4] = 1;
    fix_crcs(&mut bytes, end_at);
    assert_eq!(problems_at(&bytes, end_at), [ErrorClass::RecordMalformed]);
}

#[test]
fn short_reads_from_a_pipe_do_not_change_the_result() {
    /// Returns at most 1 to 7 bytes per read, like a slow pipe.
    struct Trickle<'a>(&'a [u8], usize);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let (archive, disk, part) = sample();
    for (name, want) in [("disk", &disk), ("part", &part)] {
        let mut sink = MemorySink::default();
        stream::restore_image(Trickle(&archive, 0), name, &mut sink, Limits::default(), &|_| {}).unwrap();
        assert_eq!(&sink.bytes, want);
    }
    // The writer reading its source through short reads writes the same archive.
    let mut options = strata_writer::WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    options.compress_tables = false; // as the archives it is compared with
    options.chunk_size = 4096;
    options.batch_bytes = 8 * 4096;
    let mut writer = strata_writer::ArchiveWriter::new(Vec::new(), options).unwrap();
    let mut source = strata_writer::StreamSource::new(Trickle(&disk, 3));
    writer.add_image("disk", &mut source, &strata_writer::NoProgress).unwrap();
    let bytes = writer.finish().unwrap().0;
    let opened = Archive::new(bytes).unwrap();
    let image = opened.image("disk").unwrap();
    let mut out = vec![0u8; disk.len()];
    image.read_at(0, &mut out).unwrap();
    assert_eq!(out, disk);
}

#[test]
fn short_writes_do_not_change_the_archive() {
    /// Takes 1 to 7 bytes per write, like a slow pipe.
    struct Dribble(Vec<u8>, usize);
    impl std::io::Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = self.1.min(buf.len());
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (expected, disk, part) = sample_images_only();
    let mut options = strata_writer::WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    options.compress_tables = false; // as the archives it is compared with
    options.chunk_size = 4096;
    options.threads = 1;
    options.batch_bytes = 8 * 4096;
    let mut writer = strata_writer::ArchiveWriter::new(Dribble(Vec::new(), 0), options).unwrap();
    for (name, bytes) in [("disk", &disk), ("part", &part)] {
        writer.add_image(name, &mut strata_writer::SliceSource::new(bytes), &strata_writer::NoProgress).unwrap();
    }
    let written = writer.finish().unwrap().0 .0;
    assert_eq!(written, expected);
}

/// The sample's images alone, written normally.
fn sample_images_only() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (_, disk, part) = sample();
    (write(&[("disk", &disk), ("part", &part)], 1, true), disk, part)
}
