//! An ancillary record inside a run of `CHUNK` records (FORMAT.md section 2 and
//! 7.2, "An ancillary record inside a run"): `verify` reports a
//! `dangling-reference` at every forward reference the run left unanswered and a
//! `record-malformed` at every `CHUNK` record after the ancillary one; a
//! front-to-back restore fails; an ancillary record after the run is allowed.

use strata_format::{ErrorClass, RecordType};
use strata_reader::sink::ImageSink;
use strata_reader::{stream, verify, Limits};
use strata_vectors::{ancillary_record, build, insert_record, inside_chunk_run, records, ImageModel, Segment};

fn image() -> Vec<u8> {
    let model = ImageModel {
        name: "disk",
        segments: vec![Segment::Text(10_000), Segment::Random(7, 10_000), Segment::Text(8_000)],
        size_known: true,
    };
    build(&[model])
}

/// The record offsets of the `CHUNK` records after `at` up to the next record
/// of another type.
fn chunks_after(bytes: &[u8], at: usize) -> Vec<u64> {
    records(bytes)
        .into_iter()
        .skip_while(|r| r.offset <= at)
        .take_while(|r| r.record_type == RecordType::Chunk.code())
        .map(|r| r.offset as u64)
        .collect()
}

fn problems(bytes: &[u8], class: ErrorClass) -> Vec<verify::Problem> {
    let report = verify::verify(bytes, Limits::default(), &|_| {}).expect("reading memory cannot fail");
    // verified_bytes leaves out the records at whose offsets problems are
    // reported (conformance.md): here the CHUNK records after the ancillary one.
    let at_fault: u64 = records(bytes)
        .iter()
        .filter(|r| report.problems.iter().any(|p| p.offset == r.offset as u64))
        .map(|r| (r.body_end - r.offset) as u64)
        .sum();
    assert_eq!(report.verified_bytes, report.archive_size - at_fault);
    report.problems.into_iter().filter(|p| p.class == class).collect()
}

struct NullSink;

impl ImageSink for NullSink {
    fn start(&mut self, _: Option<u64>) -> std::io::Result<()> {
        Ok(())
    }
    fn write_data(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn write_hole(&mut self, _: u64, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn read_back(&mut self, _: u64, _: &mut [u8]) -> std::io::Result<bool> {
        Ok(false)
    }
    fn finish(&mut self, _: u64) -> std::io::Result<()> {
        Ok(())
    }
}

/// Inserts an ancillary record before the `CHUNK` record number `n` of the run
/// after the first `IMAGE_EXTENTS` record and checks what both readers of the
/// crate say.
fn check_image_run_broken_at(n: usize) {
    let mut bytes = image();
    let at = inside_chunk_run(&bytes, RecordType::ImageExtents, n);
    insert_record(&mut bytes, at, &ancillary_record());
    let ancillary = at;
    let after: Vec<u64> = chunks_after(&bytes, ancillary);
    assert!(!after.is_empty());
    let dangling = problems(&bytes, ErrorClass::DanglingReference);
    let at_offsets: Vec<u64> = dangling.iter().map(|p| p.offset).collect();
    assert_eq!(at_offsets, after, "one dangling-reference at each chunk after the ancillary record: {dangling:?}");
    for p in &dangling {
        assert_eq!(p.affects.len(), 1, "{p:?}");
        assert_eq!(p.affects[0].section, "disk");
        assert_eq!(p.affects[0].range.end - p.affects[0].range.start, 4096.min(28_000 - p.affects[0].range.start));
    }
    let malformed: Vec<u64> = problems(&bytes, ErrorClass::RecordMalformed).iter().map(|p| p.offset).collect();
    assert_eq!(malformed, after, "record-malformed at each chunk after the ancillary record");
    let report = verify::verify(&bytes, Limits::default(), &|_| {}).expect("memory");
    assert_eq!(report.problems.len(), 2 * after.len(), "nothing else: {:?}", report.problems);

    let restored = stream::restore_image(bytes.as_slice(), "disk", &mut NullSink, Limits::default(), &|_| {});
    let e = restored.expect_err("a front-to-back restore cannot answer the reference");
    assert_eq!(e.class(), Some(ErrorClass::DanglingReference), "{e}");
    assert_eq!(e.offset(), Some(after[0]), "{e}");
}

#[test]
fn an_ancillary_record_between_an_extent_record_and_its_chunks_breaks_the_references() {
    check_image_run_broken_at(0);
}

#[test]
fn an_ancillary_record_in_the_middle_of_a_run_breaks_the_references_after_it() {
    check_image_run_broken_at(1);
}

#[test]
fn an_ancillary_record_after_the_run_is_allowed() {
    let mut bytes = image();
    let end = records(&bytes).into_iter().find(|r| r.record_type == RecordType::ImageEnd.code()).expect("IMAGE_END");
    insert_record(&mut bytes, end.offset, &ancillary_record());
    let report = verify::verify(&bytes, Limits::default(), &|_| {}).expect("memory");
    assert!(report.is_clean(), "{:?}", report.problems);
    stream::restore_image(bytes.as_slice(), "disk", &mut NullSink, Limits::default(), &|_| {})
        .expect("the run ended with every reference answered");
}

#[test]
fn an_ancillary_record_inside_a_run_of_a_tree_names_the_files() {
    let vectors = strata_vectors::all();
    let vector = vectors.iter().find(|v| v.name == "tree-ancillary-in-chunk-run").expect("the vector");
    let bytes = &vector.bytes;
    let ancillary = records(bytes).into_iter().find(|r| r.record_type == 0x7A01).expect("the ancillary record");
    let after = chunks_after(bytes, ancillary.offset);
    let dangling = problems(bytes, ErrorClass::DanglingReference);
    assert_eq!(dangling.iter().map(|p| p.offset).collect::<Vec<_>>(), after);
    let paths: Vec<String> = dangling
        .iter()
        .flat_map(|p| &p.affects)
        .map(|a| String::from_utf8_lossy(a.path.as_deref().expect("a file path")).into_owned())
        .collect();
    assert_eq!(paths, ["docs/big.bin", "docs/big.bin", "docs/sparse"]);
    let malformed: Vec<u64> = problems(bytes, ErrorClass::RecordMalformed).iter().map(|p| p.offset).collect();
    assert_eq!(malformed, after);
}
