//! Every vector of spec/vectors gives the outcome its manifest states. The
//! extraction of the trees is checked too when the `extract` feature is on.

use std::io::Write;
use std::path::PathBuf;

#[cfg(feature = "extract")]
use std::os::unix::ffi::OsStrExt;
#[cfg(feature = "extract")]
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use strata_reader::sink::ImageSink;

#[cfg(feature = "extract")]
use strata_reader::extract::{self, ExtractOptions, Owners};
use strata_reader::{stream, verify, Archive, ErrorClass, Limits, ParentSearch, Section, TreeSection};

/// The committed vectors, or those `STRATA_VECTORS` names (a folder
/// `strata-vectors DIR` wrote, to test before they are committed).
fn vectors_dir() -> PathBuf {
    std::env::var_os("STRATA_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors"))
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

fn check_valid(name: &str, bytes: Vec<u8>, expected: &[serde_json::Value], parents: &ParentSearch) {
    let report =
        verify::verify_with_parents(&bytes, Limits::default(), parents, &|_| {}).expect("reading memory cannot fail");
    assert!(report.is_clean(), "{name}: verify found {:?}", report.problems);
    let archive = Archive::new(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    archive.set_parent_search(parents.clone());
    assert_eq!(archive.sections().len(), expected.len(), "{name}: section count");
    for (section, want) in archive.sections().iter().zip(expected) {
        let image = match section {
            Section::Image(image) => image,
            Section::Tree(tree) => {
                check_tree(name, &archive, tree, want);
                continue;
            }
        };
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
        let size = stream::restore_image_with_parents(
            bytes.as_slice(),
            &image.name,
            &mut sink,
            Limits::default(),
            parents,
            &|_| {},
        )
        .unwrap_or_else(|e| panic!("{name}: stream restore: {e}"));
        assert_eq!(size, image.logical_size);
        assert_eq!(sink.hasher.finalize().to_hex().as_str(), blake3, "{name}: front-to-back content");
    }
}

/// A problem of the report in the manifest's form: class, offset, affects.
fn problem_json(p: &verify::Problem) -> serde_json::Value {
    let affects: Vec<serde_json::Value> = p
        .affects
        .iter()
        .map(|a| match &a.path {
            Some(path) => serde_json::json!({
                "section": a.section, "path": String::from_utf8_lossy(path), "start": a.range.start, "end": a.range.end,
            }),
            None => serde_json::json!({"section": a.section, "start": a.range.start, "end": a.range.end}),
        })
        .collect();
    serde_json::json!({"class": p.class.name(), "offset": p.offset, "affects": affects})
}

/// A problem of the manifest, with only the normative fields.
fn normal_problem(p: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"class": p["class"], "offset": p["offset"], "affects": p["affects"]})
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let manifest = manifest();
    let vectors = manifest["vectors"].as_array().expect("vectors array");
    assert!(vectors.len() >= 30, "the manifest lists {} vectors", vectors.len());
    for vector in vectors {
        let name = vector["name"].as_str().expect("name");
        let path = vectors_dir().join(vector["file"].as_str().expect("file"));
        let bytes = std::fs::read(&path).expect("vector file");
        // An incremental vector's ancestors are vectors beside it (conformance.md).
        let parents = ParentSearch::beside(&path);
        if vector["valid"].as_bool().expect("valid") {
            check_valid(name, bytes, vector["sections"].as_array().expect("sections"), &parents);
            continue;
        }
        let class = ErrorClass::from_name(vector["error"].as_str().expect("error")).expect("a known class");
        let report = verify::verify_with_parents(&bytes, Limits::default(), &parents, &|_| {})
            .expect("reading memory cannot fail");
        assert!(
            report.problems.iter().any(|p| p.class == class),
            "{name}: expected {class}, verify reported {:?}",
            report.problems.iter().map(|p| (p.class, p.detail.as_str())).collect::<Vec<_>>()
        );
        // The whole list, as conformance.md makes it normative: one problem per
        // class and offset, in increasing offset, with what it affects.
        let got: Vec<serde_json::Value> = report.problems.iter().map(problem_json).collect();
        let want: Vec<serde_json::Value> =
            vector["problems"].as_array().expect("problems").iter().map(normal_problem).collect();
        assert_eq!(got, want, "{name}: verify's problems are not the manifest's");
        #[cfg(feature = "extract")]
        if let Some(refused) = vector.get("refused") {
            check_hostile(name, &bytes, refused.as_array().expect("refused is a list"));
        } else if class == ErrorClass::RecordMalformed && name.starts_with("tree-") {
            check_hostile(name, &bytes, &[]);
        }
        // Opening may fail, but never panics; nor does reading what opens.
        if let Ok(archive) = Archive::new(bytes.clone()) {
            for section in archive.sections() {
                let Section::Image(image) = section else { continue };
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
    let archive = Archive::new(bytes).expect("the index itself is well formed");
    let Section::Image(image) = &archive.sections()[0] else { panic!("an image section") };
    let mut sink = HashSink { hasher: blake3::Hasher::new(), position: 0 };
    let error = archive.restore_image(image, &mut sink, &|_| {}).expect_err("the restore must fail");
    assert_eq!(error.class(), Some(ErrorClass::IndexMismatch), "{error}");
    assert!(error.to_string().contains("map digest"), "{error}");
}

#[cfg(feature = "extract")]
fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tree section lists exactly the manifest's entries, and extracts to them.
fn check_tree(name: &str, archive: &Archive<Vec<u8>>, tree: &TreeSection, want: &serde_json::Value) {
    assert_eq!(want["kind"], "files", "{name}");
    assert_eq!(tree.name, want["name"].as_str().expect("name"), "{name}");
    #[cfg(feature = "extract")]
    let section = want;
    let want = want["entries"].as_array().expect("entries");
    let mut paths_by_id = Vec::new();
    let mut got = Vec::new();
    archive
        .walk_tree(tree, |item| {
            paths_by_id.push(String::from_utf8_lossy(&item.path).into_owned());
            got.push(item);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got.len(), want.len(), "{name}: entry count");
    for (item, w) in got.iter().zip(want) {
        let e = &item.entry;
        let path = String::from_utf8_lossy(&item.path).into_owned();
        assert_eq!(hex(&item.path), w["path_hex"].as_str().expect("path_hex"), "{name}: {path}");
        assert_eq!(e.kind.name(), w["kind"].as_str().expect("kind"), "{name}: {path}");
        assert_eq!(u64::from(e.mode), w["mode"].as_u64().expect("mode"), "{name}: {path}");
        assert_eq!(e.size, w["size"].as_u64().expect("size"), "{name}: {path}");
        assert_eq!(e.mtime.secs, w["mtime_s"].as_i64().expect("mtime_s"), "{name}: {path}");
        assert_eq!(u64::from(e.mtime.nsec), w["mtime_nsec"].as_u64().expect("mtime_nsec"), "{name}: {path}");
        let times = [("atime", e.atime), ("ctime", e.ctime), ("btime", e.btime)];
        for (field, time) in times {
            if let Some(secs) = w.get(format!("{field}_s")) {
                let nsec = &w[format!("{field}_nsec")];
                assert_eq!(
                    (time.secs, u64::from(time.nsec)),
                    (secs.as_i64().unwrap(), nsec.as_u64().unwrap()),
                    "{name}: {path} {field}"
                );
            }
        }
        if let Some(d) = w.get("digest") {
            assert_eq!(hex(&e.digest), d.as_str().expect("digest"), "{name}: {path}");
        }
        if let Some(t) = w.get("target") {
            assert_eq!(String::from_utf8_lossy(&e.target), t.as_str().expect("target"), "{name}: {path}");
        }
        if let Some(l) = w.get("link") {
            assert_eq!(paths_by_id[e.link_id as usize], l.as_str().expect("link"), "{name}: {path}");
        }
        let lost = e.flags & strata_format::files::EntryFlags::LOST_IN_SALVAGE != 0;
        assert_eq!(lost, w.get("lost_in_salvage") == Some(&serde_json::json!(true)), "{name}: {path}");
    }
    #[cfg(feature = "extract")]
    check_extracted(name, archive, tree, section);
}

/// A tree section extracts to the manifest's entries: content, links, kinds,
/// modes and times.
#[cfg(feature = "extract")]
fn check_extracted(name: &str, archive: &Archive<Vec<u8>>, tree: &TreeSection, section: &serde_json::Value) {
    // Files lost in salvage: extraction skips exactly these, with a warning.
    let warned: Vec<String> = section
        .get("warned")
        .and_then(|w| w.as_array())
        .map(|w| w.iter().map(|p| p.as_str().expect("a path").to_string()).collect())
        .unwrap_or_default();
    let want = section["entries"].as_array().expect("entries");
    // Extract and look at what landed.
    let dest = tempfile::tempdir().expect("temp dir");
    let options = ExtractOptions { owners: Owners::Never, ..ExtractOptions::default() };
    let report = extract::extract(archive, tree, dest.path(), &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let devices_skipped = !rustix::process::geteuid().is_root()
        && want.iter().any(|w| matches!(w["kind"].as_str(), Some("char-device" | "block-device")));
    // A time the destination's file system cannot hold is kept as another,
    // with a warning naming the path (FORMAT.md 8.7): accepted, and then the
    // time is not compared.
    let time_warned = |rel: &str| {
        report.warnings.iter().any(|w| w.path == rel.as_bytes() && w.reason.contains("the destination keeps"))
    };
    let warnings: Vec<String> = report
        .warnings
        .iter()
        .filter(|w| !w.reason.contains("the destination keeps"))
        .map(|w| String::from_utf8_lossy(&w.path).into_owned())
        .collect();
    assert!(
        report.refused.is_empty() && (warnings == warned || devices_skipped),
        "{name}: {:?} {:?}",
        report.refused,
        report.warnings
    );
    for w in want.iter().skip(1) {
        let rel = w["path"].as_str().expect("path");
        if warned.iter().any(|p| p == rel) {
            let full = dest.path().join(rel);
            assert!(!full.exists(), "{name}: {rel} lost in salvage is not extracted");
            continue;
        }
        let raw = unhex(w["path_hex"].as_str().expect("path_hex"));
        let full = dest.path().join(std::ffi::OsStr::from_bytes(&raw));
        let device = matches!(w["kind"].as_str(), Some("char-device" | "block-device"));
        if device && !rustix::process::geteuid().is_root() {
            continue; // making a device takes root; extraction warned instead
        }
        let meta = std::fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{name}: {rel}: {e}"));
        match w["kind"].as_str().expect("kind") {
            "file" => match w.get("ranges") {
                // Too large to read whole: its ranges, and zeros elsewhere.
                Some(ranges) => check_ranges(&full, ranges, &format!("{name}: {rel}")),
                None => {
                    let content = std::fs::read(&full).expect("readable");
                    assert_eq!(
                        blake3::hash(&content).to_hex().as_str(),
                        w["blake3"].as_str().expect("blake3"),
                        "{name}: {rel}"
                    );
                }
            },
            "hardlink" => {
                let first =
                    std::fs::metadata(dest.path().join(w["link"].as_str().expect("link"))).expect("link target");
                assert_eq!(meta.ino(), first.ino(), "{name}: {rel} is not a hard link");
            }
            "symlink" => {
                let target = std::fs::read_link(&full).expect("a link");
                assert_eq!(target.to_string_lossy(), w["target"].as_str().expect("target"), "{name}: {rel}");
            }
            "fifo" => assert!(meta.file_type().is_fifo(), "{name}: {rel}"),
            "socket" => assert!(meta.file_type().is_socket(), "{name}: {rel}"),
            "char-device" | "block-device" => {
                let want = if w["kind"] == "char-device" {
                    meta.file_type().is_char_device()
                } else {
                    meta.file_type().is_block_device()
                };
                assert!(want, "{name}: {rel} is a {}", w["kind"]);
                let rdev = (rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev()));
                assert_eq!(serde_json::json!([rdev.0, rdev.1]), w["rdev"], "{name}: {rel}");
            }
            "directory" => assert!(meta.is_dir(), "{name}: {rel}"),
            other => panic!("{name}: unexpected kind {other}"),
        }
        if !matches!(w["kind"].as_str(), Some("symlink" | "hardlink")) {
            assert_eq!(
                u64::from(meta.permissions().mode() & 0o7777),
                w["mode"].as_u64().expect("mode"),
                "{name}: {rel}"
            );
            if !time_warned(rel) {
                assert_eq!(
                    (meta.mtime(), meta.mtime_nsec() as u64),
                    (w["mtime_s"].as_i64().expect("mtime_s"), w["mtime_nsec"].as_u64().expect("mtime_nsec")),
                    "{name}: {rel}"
                );
            }
        }
    }
}

/// Checks a file listed by its data `ranges` (offset, length, BLAKE3): each
/// range, and zeros in whatever else the file stores (found by `SEEK_DATA`,
/// so its holes are never read).
#[cfg(feature = "extract")]
fn check_ranges(path: &std::path::Path, ranges: &serde_json::Value, what: &str) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{what}: {e}"));
    let size = file.metadata().expect("metadata").len();
    let mut listed = Vec::new();
    for range in ranges.as_array().expect("ranges") {
        let (offset, length) = (range["offset"].as_u64().expect("offset"), range["length"].as_u64().expect("length"));
        let mut bytes = vec![0; length as usize];
        file.read_exact_at(&mut bytes, offset).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), range["blake3"].as_str().expect("blake3"), "{what}");
        listed.push((offset, offset + length));
    }
    let mut at = 0;
    while at < size {
        let data = match rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(at)) {
            Ok(data) => data,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("{what}: SEEK_DATA: {e}"),
        };
        let hole = rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(data)).expect("SEEK_HOLE");
        let mut pos = data;
        while pos < hole {
            if let Some(&(_, end)) = listed.iter().find(|(start, end)| (*start..*end).contains(&pos)) {
                pos = end;
                continue;
            }
            let next = listed.iter().map(|r| r.0).filter(|&s| s > pos).min().unwrap_or(hole).min(hole);
            let mut bytes = vec![0; (next - pos).min(1 << 20) as usize];
            file.read_exact_at(&mut bytes, pos).expect("stored bytes");
            assert!(bytes.iter().all(|&b| b == 0), "{what}: a non-zero byte at {pos}, outside the listed ranges");
            pos += bytes.len() as u64;
        }
        at = hole;
    }
}

/// A hostile tree extracts without writing outside its destination, refusing
/// (at least) the entries the manifest names.
#[cfg(feature = "extract")]
fn check_hostile(name: &str, bytes: &[u8], refused: &[serde_json::Value]) {
    let sandbox = tempfile::tempdir().expect("temp dir");
    let canary = sandbox.path().join("canary");
    std::fs::write(&canary, b"untouched").expect("canary");
    let dest = sandbox.path().join("a/b/c/dest");
    let outside_tmp = std::path::Path::new("/tmp/pwned");
    let existed = outside_tmp.exists();
    let Ok(archive) = Archive::new(bytes.to_vec()) else {
        return; // nothing to extract from
    };
    for section in archive.sections() {
        let Section::Tree(tree) = section else { continue };
        let options = ExtractOptions { owners: Owners::Never, ..ExtractOptions::default() };
        let report = extract::extract(&archive, tree, &dest, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let refused_paths: Vec<String> =
            report.refused.iter().map(|r| String::from_utf8_lossy(&r.path).into_owned()).collect();
        assert!(!refused_paths.is_empty(), "{name}: nothing was refused");
        for want in refused {
            let want = want.as_str().expect("a path");
            assert!(refused_paths.iter().any(|p| p == want), "{name}: {want} not refused: {refused_paths:?}");
        }
    }
    // Nothing beside the destination changed.
    let mut beside: Vec<_> =
        std::fs::read_dir(sandbox.path()).expect("sandbox").map(|e| e.expect("entry").file_name()).collect();
    beside.sort();
    assert_eq!(beside, ["a", "canary"], "{name}: something was written beside the destination");
    assert_eq!(std::fs::read(&canary).expect("canary"), b"untouched");
    assert_eq!(outside_tmp.exists(), existed, "{name}: /tmp/pwned appeared");
    for dir in ["a", "a/b", "a/b/c"] {
        let count = std::fs::read_dir(sandbox.path().join(dir)).expect("dir").count();
        assert_eq!(count, 1, "{name}: {dir} holds more than the way to the destination");
    }
}

/// Regression (found by the independent reader): a file declaring a terabyte of
/// holes made verify hash zeros for hours. Holes are not hashed (FORMAT.md
/// 8.3): the size no longer matches the digest, and verify says so at once.
#[test]
fn a_file_declaring_a_terabyte_of_holes_is_not_hashed() {
    let mut bytes = std::fs::read(vectors_dir().join("tree-small.strata")).expect("vector");
    // The group (FILES_ENTRIES record) holding "abc", and the size field of
    // that entry: row i's value in the `size` column (row offset 47), stored
    // column by column after the head and the extent list (FORMAT.md 8.3).
    let header_length = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut record = header_length;
    let size_field = loop {
        let head = strata_format::RecordHeader::decode(bytes[record..record + 32].try_into().unwrap());
        let body = &bytes[record + 32..record + 32 + head.body_length as usize];
        if head.record_type == strata_format::RecordType::FilesEntries.code() {
            assert_eq!(head.flags & strata_format::RecordFlags::ZSTD, 0, "a small vector's groups are stored plain");
            let group = strata_format::files::parse_group(body).expect("a valid group");
            let found = group.entries.iter().position(|e| e.as_ref().is_ok_and(|e| e.name == b"abc"));
            if let Some(row) = found {
                let count = group.head.count as usize;
                let table = 56 + 16 * group.head.list_count as usize;
                break record + 32 + table + 47 * count + 8 * row;
            }
        }
        record += 32 + head.body_length as usize;
    };
    let body_length = u64::from_le_bytes(bytes[record + 16..record + 24].try_into().unwrap()) as usize;
    let body = record + 32;
    bytes[size_field..size_field + 8].copy_from_slice(&((1u64 << 40) + 40).to_le_bytes());
    let body_crc = crc32c::crc32c(&bytes[body..body + body_length]);
    bytes[record + 24..record + 28].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&bytes[record..record + 28]);
    bytes[record + 28..record + 32].copy_from_slice(&header_crc.to_le_bytes());
    let started = std::time::Instant::now();
    let report = verify::verify(&bytes, Limits::default(), &|_| {}).unwrap();
    assert!(
        report.problems.iter().any(|p| p.class == ErrorClass::ChunkCorrupt && p.what.contains("digest")),
        "{:?}",
        report.problems
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "verify took {:?}", started.elapsed());
}

/// The records of a valid archive: (offset, type, body range).
fn record_list(bytes: &[u8]) -> Vec<(usize, strata_format::RecordType, std::ops::Range<usize>)> {
    let header_length = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut at = header_length;
    let mut out = Vec::new();
    while at + 32 <= bytes.len() {
        let head = strata_format::RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
        let end = at + 32 + head.body_length as usize;
        if let Some(t) = strata_format::RecordType::from_code(head.record_type) {
            assert_eq!(head.flags & strata_format::RecordFlags::ZSTD, 0, "a small vector's records are plain");
            out.push((at, t, at + 32..end));
        }
        at = end;
    }
    out
}

/// Replaces a record's body by one of the same length, its CRCs fixed.
fn rewrite_body(bytes: &mut [u8], offset: usize, body: &[u8]) {
    let start = offset + 32;
    bytes[start..start + body.len()].copy_from_slice(body);
    let body_crc = crc32c::crc32c(body);
    bytes[offset + 24..offset + 28].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&bytes[offset..offset + 28]);
    bytes[offset + 28..offset + 32].copy_from_slice(&header_crc.to_le_bytes());
}

/// tree-small with one group changed by `edit` (same body length), and the
/// group's record offset.
fn with_group_edited(edit: impl Fn(&mut strata_format::files::EntryGroup) -> bool) -> (Vec<u8>, u64) {
    use strata_format::files;
    let mut bytes = std::fs::read(vectors_dir().join("tree-small.strata")).expect("vector");
    for (offset, t, body) in record_list(&bytes) {
        if t != strata_format::RecordType::FilesEntries {
            continue;
        }
        let mut group = files::parse_group(&bytes[body.clone()]).unwrap();
        if !edit(&mut group) {
            continue;
        }
        let entries: Vec<files::Entry> = group.entries.iter().map(|e| e.clone().unwrap()).collect();
        let h = group.head;
        let new =
            files::encode_group(h.section_id, h.first_id, h.captured, h.extent_base, &group.extent_list, &entries);
        assert_eq!(new.len(), body.len());
        rewrite_body(&mut bytes, offset, &new);
        return (bytes, offset as u64);
    }
    panic!("no group to edit");
}

fn problems_of(bytes: &[u8]) -> Vec<(ErrorClass, u64)> {
    let report = verify::verify(bytes, Limits::default(), &|_| {}).unwrap();
    report.problems.iter().map(|p| (p.class, p.offset)).collect()
}

#[test]
fn a_group_whose_extent_base_is_off_is_an_index_mismatch_at_it() {
    let (bytes, at) = with_group_edited(|g| {
        let holds = g.entries.iter().any(|e| e.as_ref().is_ok_and(|e| e.extent_count > 0));
        g.head.extent_base += u64::from(holds);
        holds
    });
    assert_eq!(problems_of(&bytes), [(ErrorClass::IndexMismatch, at)]);
    // A reader locating a file's extents from it (FORMAT.md 10.1 step 5)
    // meets another entry's extent, or the end of the list: never its bytes.
    let archive = Archive::new(bytes).unwrap();
    let tree = archive.tree("tree").unwrap();
    let abc = tree.lookup("abc").unwrap().unwrap();
    let e = archive.file_extents(tree.section(), abc.raw()).unwrap_err();
    assert_eq!(e.class(), Some(ErrorClass::IndexMismatch), "{e}");
}

#[test]
fn an_extent_count_other_than_announced_is_an_index_mismatch_at_the_group() {
    let (bytes, at) = with_group_edited(|g| {
        let Some(file) = g.entries.iter_mut().flatten().find(|e| e.extent_count == 1) else { return false };
        file.extent_count = 2;
        true
    });
    let problems = problems_of(&bytes);
    assert!(problems.contains(&(ErrorClass::IndexMismatch, at)), "{problems:?}");
    assert!(problems.iter().all(|p| p.1 == at), "{problems:?}");
}

#[test]
fn a_name_out_of_its_runs_order_is_record_malformed_at_its_group() {
    // The root's first child, renamed past every other name of the same length.
    let (bytes, at) = with_group_edited(|g| {
        let Some(first) = g.entries.iter_mut().flatten().find(|e| e.parent_id == 0 && e.entry_id > 0) else {
            return false;
        };
        first.name = vec![b'~'; first.name.len()];
        true
    });
    let problems = problems_of(&bytes);
    assert!(problems.contains(&(ErrorClass::RecordMalformed, at)), "{problems:?}");
}

#[test]
fn a_files_extents_first_index_off_is_an_index_mismatch_at_it() {
    use strata_format::files;
    let mut bytes = std::fs::read(vectors_dir().join("tree-small.strata")).expect("vector");
    let (offset, _, body) = record_list(&bytes)
        .into_iter()
        .find(|r| r.1 == strata_format::RecordType::FilesExtents)
        .expect("a FILES_EXTENTS record");
    let parsed = files::parse_file_extents(&bytes[body]).unwrap();
    let new = files::encode_file_extents(parsed.head.section_id, parsed.head.first_index + 1, &parsed.extents);
    rewrite_body(&mut bytes, offset, &new);
    let problems = problems_of(&bytes);
    assert_eq!(problems.first(), Some(&(ErrorClass::IndexMismatch, offset as u64)), "{problems:?}");
}

#[test]
fn a_files_index_naming_another_dir_table_is_an_index_mismatch_at_it() {
    use strata_format::files;
    let mut bytes = std::fs::read(vectors_dir().join("tree-small.strata")).expect("vector");
    let (offset, _, body) =
        record_list(&bytes).into_iter().find(|r| r.1 == strata_format::RecordType::FilesIndex).expect("a FILES_INDEX");
    let (head, mut rows) = files::parse_files_index(&bytes[body]).unwrap();
    rows[0].dir_record += 1;
    rewrite_body(&mut bytes, offset, &files::encode_files_index(head.section_id, &rows));
    assert_eq!(problems_of(&bytes), [(ErrorClass::IndexMismatch, offset as u64)]);
}
