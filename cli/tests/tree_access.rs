//! Random access into file trees: one path costs its directory tables, one
//! entry record and its own chunks, never a scan; sections stay independent.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::*;
use strata_format::{RecordHeader, RecordType};
use strata_reader::{Archive, ReadAt};

/// Records every byte range read.
struct Counting {
    file: std::fs::File,
    reads: Mutex<Vec<(u64, u64)>>,
}

impl ReadAt for Counting {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.reads.lock().unwrap().push((offset, buf.len() as u64));
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// (offset, end, type) of every record of a valid archive.
fn record_map(bytes: &[u8]) -> Vec<(u64, u64, u16)> {
    let mut at = 128usize;
    let mut out = Vec::new();
    while at + 32 <= bytes.len() {
        let head = RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
        let end = at + 32 + head.body_length as usize;
        out.push((at as u64, end as u64, head.record_type));
        at = end;
    }
    out
}

#[test]
fn one_file_reads_only_the_index_and_its_own_chunks() {
    let work = temp_dir();
    let dir = work.path();
    let archive_path = dir.join("doc.strata");
    run_ok(&["create", path_str(&archive_path), "--files", "doc=/usr/share/doc", "--quiet"]);
    let bytes = std::fs::read(&archive_path).unwrap();
    let records = record_map(&bytes);

    // The deepest regular file of the tree, found with a full listing first.
    let listing = Archive::new(std::fs::File::open(&archive_path).unwrap()).unwrap();
    let tree = listing.tree_section("doc").unwrap();
    let mut deepest: Option<(Vec<u8>, u64)> = None;
    listing
        .walk_tree(tree, |item| {
            if item.entry.kind == strata_format::files::EntryKind::File && item.entry.size > 0 {
                let depth = item.path.iter().filter(|&&b| b == b'/').count();
                if deepest.as_ref().is_none_or(|(p, _)| depth > p.iter().filter(|&&b| b == b'/').count()) {
                    deepest = Some((item.path.clone(), item.entry.size));
                }
            }
            Ok(())
        })
        .unwrap();
    let (path, size) = deepest.expect("the tree holds files");

    let counting = Counting { file: std::fs::File::open(&archive_path).unwrap(), reads: Mutex::new(Vec::new()) };
    let archive = Archive::new(counting).unwrap();
    let tree = archive.tree_section("doc").unwrap();
    let entry = archive.lookup(tree, &path).unwrap().expect("the file is found");
    let mut content = Vec::new();
    archive.read_file(tree, &entry, &mut content).unwrap();
    assert_eq!(content.len() as u64, size);

    let reads = std::mem::take(&mut *archive_reads(&archive));
    // Entries carry only their extent_count (FORMAT.md 8.2).
    let extents = archive.file_extents(tree, &entry).unwrap();
    let own_chunks: BTreeSet<u64> = extents.iter().map(|e| e.chunk_ref).collect();
    let mut extent_records = BTreeSet::new();
    let mut total = 0;
    let mut entry_records = BTreeSet::new();
    for (offset, length) in reads {
        total += length;
        if offset == 0 {
            continue; // the header
        }
        let &(start, end, kind) = records
            .iter()
            .find(|(start, end, _)| offset >= *start && offset < *end)
            .unwrap_or_else(|| panic!("read at {offset} is inside no record"));
        assert!(offset + length <= end, "a read crosses a record boundary");
        match RecordType::from_code(kind) {
            Some(RecordType::Chunk) => assert!(own_chunks.contains(&start), "read a chunk that is not the file's"),
            Some(RecordType::FilesEntries) => {
                entry_records.insert(start);
            }
            Some(RecordType::FilesExtents) => {
                extent_records.insert(start);
            }
            Some(
                RecordType::Trailer
                | RecordType::ArchiveIndex
                | RecordType::FilesBegin
                | RecordType::FilesEnd
                | RecordType::FilesIndex
                | RecordType::FilesDir,
            ) => {}
            other => panic!("read a {other:?} record for one path"),
        }
    }
    let depth = path.iter().filter(|&&b| b == b'/').count() + 1;
    // One group per component at most (FORMAT.md 8.5), the root's included.
    assert!(entry_records.len() <= depth + 1, "{} groups read for a path of depth {depth}", entry_records.len());
    assert!(extent_records.len() <= extents.len(), "{} FILES_EXTENTS records read", extent_records.len());
    eprintln!(
        "looked up {} (depth {depth}, {size} bytes): {total} bytes read of a {}-byte archive",
        String::from_utf8_lossy(&path),
        bytes.len()
    );
    assert!(total < bytes.len() as u64 / 10, "{total} bytes read of {}", bytes.len());
}

/// The counting source of an archive.
fn archive_reads(archive: &Archive<Counting>) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
    archive.source().reads.lock().unwrap()
}

#[test]
fn two_images_and_two_trees_are_independent_sections() {
    let work = temp_dir();
    let dir = work.path();
    let (disk, part) = (dir.join("disk.raw"), dir.join("part.raw"));
    sh(&format!("head -c 3000000 /dev/urandom > {0} && head -c 2097152 {0} > {1}", path_str(&disk), path_str(&part)));
    let (a, b) = (dir.join("a"), dir.join("b"));
    sh(&format!(
        "mkdir -p {0}/x {1}/y && cp {2} {0}/x/disk-copy && cp {2} {1}/y/disk-copy && echo one > {0}/one && echo two > {1}/y/two",
        path_str(&a),
        path_str(&b),
        path_str(&part)
    ));
    let archive = dir.join("all.strata");
    run_ok(&[
        "create",
        path_str(&archive),
        "--image",
        &format!("disk={}", path_str(&disk)),
        "--image",
        &format!("part={}", path_str(&part)),
        "--files",
        &format!("a={}", path_str(&a)),
        "--files",
        &format!("b={}", path_str(&b)),
        // 1 MiB windows: the partition is the disk's first two windows.
        "--chunk-size",
        "1M",
        "--quiet",
    ]);
    run_ok(&["verify", path_str(&archive)]);
    let info: serde_json::Value =
        serde_json::from_slice(&run_ok(&["info", path_str(&archive), "--json"]).stdout).unwrap();
    let kinds: Vec<(String, String)> = info["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap().to_string(), s["name"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        kinds,
        [("image", "disk"), ("image", "part"), ("files", "a"), ("files", "b")]
            .map(|(k, n)| (k.to_string(), n.to_string()))
    );
    for (name, source) in [("disk", &disk), ("part", &part)] {
        let out = dir.join(format!("{name}.out"));
        run_ok(&["restore", path_str(&archive), "--image", name, path_str(&out), "--quiet"]);
        assert_eq!(file_blake3(source), file_blake3(&out));
    }
    let list_b = run_ok(&["list", path_str(&archive), "--files", "b"]);
    assert_eq!(String::from_utf8_lossy(&list_b.stdout), ".\ny\ny/disk-copy\ny/two\n");
    for (name, source) in [("a", &a), ("b", &b)] {
        let out = dir.join(format!("{name}.out"));
        run_ok(&["extract", path_str(&archive), "--files", name, path_str(&out), "--quiet"]);
        sh(&format!("diff -r {} {}", path_str(source), path_str(&out)));
    }
    // One chunk store for all sections: the partition is the disk's first two
    // chunk windows, so the image holds them once; both trees hold a copy of
    // the partition as a file, cut where its content says (not in windows),
    // and the two copies are stored once.
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(size < 3_000_000 + 2_097_152 + 200_000, "{size} bytes: a section did not deduplicate against the others");
    let out = run_ok(&["cat", path_str(&archive), "--files", "a", "x/disk-copy"]);
    assert_eq!(blake3::hash(&out.stdout).to_hex().to_string(), file_blake3(&part));
}

#[test]
fn a_symlink_already_in_the_destination_is_never_followed() {
    let work = temp_dir();
    let dir = work.path();
    let source = dir.join("source");
    sh(&format!("mkdir -p {0}/sub && echo inside > {0}/sub/f && echo top > {0}/top", path_str(&source)));
    let archive = dir.join("t.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("t={}", path_str(&source)), "--quiet"]);
    let outside = dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dest = dir.join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();

    let out = run(&["extract", path_str(&archive), "--files", "t", path_str(&dest)]);
    assert_eq!(out.status.code(), Some(1), "refusals exit 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing sub in files t"), "{stderr}");
    assert!(stderr.contains("refusing sub/f"), "{stderr}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was written through the link");
    assert_eq!(std::fs::read(dest.join("top")).unwrap(), b"top\n", "the rest is extracted");

    // With --overwrite the link is replaced by the real directory; still nothing outside.
    let out = run(&["extract", path_str(&archive), "--files", "t", path_str(&dest), "--overwrite", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::symlink_metadata(dest.join("sub")).unwrap().is_dir());
    assert_eq!(std::fs::read(dest.join("sub/f")).unwrap(), b"inside\n");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn one_damaged_chunk_is_one_problem_naming_exactly_the_files_it_holds() {
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    sh(&format!(
        "mkdir -p {0}/d && for i in 1 2 3 4 5 6; do head -c 300000 /dev/urandom > {0}/d/f$i; done && head -c 3000000 /dev/urandom > {0}/big",
        path_str(&src)
    ));
    let archive = dir.join("t.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("t={}", path_str(&src)), "--quiet"]);
    let mut bytes = std::fs::read(&archive).unwrap();
    // The first chunk record: a pack of the small files.
    let records = record_map(&bytes);
    let &(chunk, _, _) = records.iter().find(|r| RecordType::from_code(r.2) == Some(RecordType::Chunk)).unwrap();
    bytes[chunk as usize + 32 + 40 + 1000] ^= 0x55;
    let damaged = dir.join("damaged.strata");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&["verify", path_str(&damaged), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "one damaged chunk is one problem: {problems:?}");
    let named: BTreeSet<String> = problems[0]["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().expect("a file path").to_string())
        .collect();
    assert!(!named.is_empty());
    for file in ["d/f1", "d/f2", "d/f3", "d/f4", "d/f5", "d/f6", "big"] {
        let cat = run(&["cat", path_str(&damaged), "--files", "t", file]);
        let readable = cat.status.success();
        assert_eq!(!readable, named.contains(file), "{file}: readable {readable}, named {named:?}");
    }
}

/// `cat` of a file packed with others decodes the pack only up to the file's end
/// (FORMAT.md 10.1, step 5) and checks the file by its own BLAKE3: a file before
/// damaged bytes of its pack is given back whole, one after them is refused.
#[test]
fn cat_of_a_packed_file_is_checked_by_its_own_digest() {
    let work = temp_dir();
    let dir = work.path();
    let source = dir.join("src");
    std::fs::create_dir(&source).unwrap();
    // Random bytes do not compress, so the pack is stored raw and a flipped byte
    // changes only the file it falls in.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut contents = Vec::new();
    for name in ["a", "b", "c"] {
        let bytes: Vec<u8> = (0..3000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(source.join(name), &bytes).unwrap();
        contents.push(bytes);
    }
    let archive_path = dir.join("t.strata");
    run_ok(&["create", path_str(&archive_path), "--files", &format!("t={}", path_str(&source)), "--quiet"]);
    let cat = |name: &str| run(&["cat", path_str(&archive_path), "--files", "t", name]);
    for (name, bytes) in ["a", "b", "c"].iter().zip(&contents) {
        let out = cat(name);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(&out.stdout, bytes, "cat {name}");
    }

    let archive = Archive::new(std::fs::File::open(&archive_path).unwrap()).unwrap();
    let tree = archive.tree_section("t").unwrap();
    let b = archive.lookup(tree, b"b").unwrap().unwrap();
    let a = archive.lookup(tree, b"a").unwrap().unwrap();
    let (a_extents, b_extents) = (archive.file_extents(tree, &a).unwrap(), archive.file_extents(tree, &b).unwrap());
    let (pack, b_offset) = (b_extents[0].chunk_ref, b_extents[0].chunk_offset);
    assert_eq!(a_extents[0].chunk_ref, pack, "the small files share one pack");
    assert!(a_extents[0].chunk_offset < b_offset, "a is packed before b");
    drop(archive);
    let mut bytes = std::fs::read(&archive_path).unwrap();
    let stored = pack as usize + 32 + strata_format::ChunkHeader::SIZE;
    assert_eq!(bytes[stored - 4], strata_format::ChunkEncoding::Raw.code(), "the pack is stored raw");
    bytes[stored + b_offset as usize + 100] ^= 1;
    fix_crcs(&mut bytes, pack as usize);
    std::fs::write(&archive_path, &bytes).unwrap();

    let out = cat("a");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, contents[0], "the file before the damage is given back whole");
    let out = cat("b");
    assert!(!out.status.success(), "a damaged file must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("digest") && stderr.contains("[chunk-corrupt]"), "{stderr}");
    // verify checks the pack's own BLAKE3 and names the damage.
    assert!(!run(&["verify", path_str(&archive_path)]).status.success());
}
