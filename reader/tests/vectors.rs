//! Every vector of spec/vectors gives the outcome its manifest states.

use std::io::Write;
use std::path::PathBuf;

use strata_reader::sink::ImageSink;
use strata_reader::{stream, verify, Archive, ErrorClass, Limits, Section};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(vectors_dir().join("manifest.json")).expect("manifest.json is committed");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

/// Hashes what a restore writes, in order, holes included.
struct HashSink {
    hasher: blake3::Hasher,
    position: u64,
}

impl ImageSink for HashSink {
    fn start(&mut self, _: Option<u64>) -> std::io::Result<()> {
        Ok(())
    }
    fn write_data(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        assert_eq!(offset, self.position, "a stream restore writes in order");
        self.hasher.write_all(data)?;
        self.position += data.len() as u64;
        Ok(())
    }
    fn write_hole(&mut self, offset: u64, length: u64) -> std::io::Result<()> {
        assert_eq!(offset, self.position);
        let zeros = vec![0u8; 1 << 16];
        let mut left = length;
        while left > 0 {
            let take = left.min(zeros.len() as u64) as usize;
            self.hasher.write_all(&zeros[..take])?;
            left -= take as u64;
        }
        self.position += length;
        Ok(())
    }
    fn read_back(&mut self, _: u64, _: &mut [u8]) -> std::io::Result<bool> {
        Ok(false)
    }
    fn finish(&mut self, size: u64) -> std::io::Result<()> {
        assert_eq!(size, self.position);
        Ok(())
    }
}

fn check_valid(name: &str, bytes: Vec<u8>, expected: &[serde_json::Value]) {
    let report = verify::verify(&bytes, Limits::default(), &|_| {}).expect("reading memory cannot fail");
    assert!(report.is_clean(), "{name}: verify found {:?}", report.problems);
    let archive = Archive::open(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(archive.sections().len(), expected.len(), "{name}: section count");
    for (section, want) in archive.sections().iter().zip(expected) {
        let Section::Image(image) = section else { panic!("{name}: expected an image section") };
        assert_eq!(want["kind"], "image");
        assert_eq!(image.name, want["name"].as_str().expect("name"), "{name}");
        assert_eq!(image.logical_size, want["logical_size"].as_u64().expect("size"), "{name}");
        assert_eq!(image.end.data_bytes, want["data_bytes"].as_u64().expect("data"), "{name}");
        assert_eq!(image.end.lost_bytes, want["lost_bytes"].as_u64().expect("lost"), "{name}");
        let blake3 = want["blake3"].as_str().expect("blake3");
        // Random access, in uneven pieces so reads straddle extents.
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 7_777];
        let mut at = 0u64;
        while at < image.logical_size {
            let n = archive.read_image_at(image, at, &mut buf).expect("valid vectors read");
            assert!(n > 0);
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        assert_eq!(hasher.finalize().to_hex().as_str(), blake3, "{name}: random-access content");
        // Front to back, as from a pipe.
        let mut sink = HashSink { hasher: blake3::Hasher::new(), position: 0 };
        let size = stream::restore_image(bytes.as_slice(), &image.name, &mut sink, Limits::default(), &|_| {})
            .unwrap_or_else(|e| panic!("{name}: stream restore: {e}"));
        assert_eq!(size, image.logical_size);
        assert_eq!(sink.hasher.finalize().to_hex().as_str(), blake3, "{name}: front-to-back content");
    }
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let manifest = manifest();
    let vectors = manifest["vectors"].as_array().expect("vectors array");
    assert!(vectors.len() >= 30, "the manifest lists {} vectors", vectors.len());
    for vector in vectors {
        let name = vector["name"].as_str().expect("name");
        let bytes = std::fs::read(vectors_dir().join(vector["file"].as_str().expect("file"))).expect("vector file");
        if vector["valid"].as_bool().expect("valid") {
            check_valid(name, bytes, vector["sections"].as_array().expect("sections"));
            continue;
        }
        let class = ErrorClass::from_name(vector["error"].as_str().expect("error")).expect("a known class");
        let report = verify::verify(&bytes, Limits::default(), &|_| {}).expect("reading memory cannot fail");
        assert!(
            report.problems.iter().any(|p| p.class == class),
            "{name}: expected {class}, verify reported {:?}",
            report.problems.iter().map(|p| (p.class, p.detail.as_str())).collect::<Vec<_>>()
        );
        // Opening may fail, but never panics; nor does reading what opens.
        if let Ok(archive) = Archive::open(bytes.clone()) {
            for section in archive.sections() {
                let Section::Image(image) = section else { panic!("{name}: expected an image section") };
                let mut buf = vec![0u8; 4096];
                let mut at = 0;
                while at < image.logical_size.min(1 << 20) {
                    match archive.read_image_at(image, at, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => at += n as u64,
                    }
                }
            }
        }
    }
}

/// An index that points a range at another valid chunk reads without a checksum
/// error; the map digest is what stops a whole restore from writing it.
#[test]
fn a_swapped_index_fails_the_restore_by_its_map_digest() {
    let bytes = std::fs::read(vectors_dir().join("index-extents-differ.strata")).expect("vector");
    let archive = Archive::open(bytes).expect("the index itself is well formed");
    let Section::Image(image) = &archive.sections()[0] else { panic!("an image section") };
    let mut sink = HashSink { hasher: blake3::Hasher::new(), position: 0 };
    let error = archive.restore_image(image, &mut sink, &|_| {}).expect_err("the restore must fail");
    assert_eq!(error.class(), Some(ErrorClass::IndexMismatch), "{error}");
    assert!(error.to_string().contains("map digest"), "{error}");
}
