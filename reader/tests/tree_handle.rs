//! The tree handle (`Archive::tree`): entries in order, lookups, directory
//! listings, walks below a path, entries by id, hard links, files through
//! `Read` + `Seek`, and its errors, on the archives of spec/vectors, whose
//! manifest gives every entry and every file's BLAKE3. The examples that use
//! it (examples/tour.rs, list.rs, cat.rs) and info.rs run here too.
//!
//! The reader never depends on the writer, not even for tests: trees the
//! writer makes in memory (many entry records, damage, salvage) are in
//! cli/tests/tree_handle.rs.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use proptest::prelude::*;
use strata_format::{RecordHeader, RecordType};
use strata_reader::{Archive, Entry, EntryKind, ErrorClass, ErrorKind, ReadAt, Tree};

// `pub`, with `pub fn main`, so that the examples' `main`s are not dead code here.
#[path = "../examples/tour.rs"]
pub mod tour;

#[path = "../examples/list.rs"]
pub mod list;

#[path = "../examples/cat.rs"]
pub mod cat;

#[path = "../examples/info.rs"]
pub mod info;

/// The committed vectors, or those `STRATA_VECTORS` names (a folder
/// `strata-vectors DIR` wrote, to test before they are committed).
fn vectors_dir() -> PathBuf {
    std::env::var_os("STRATA_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors"))
}

fn vector_path(file: &str) -> String {
    vectors_dir().join(file).to_str().expect("a UTF-8 path").to_string()
}

fn vector(file: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(vectors_dir().join("manifest.json")).expect("manifest.json is committed");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blake3_of(reader: &mut impl Read) -> String {
    let mut hasher = blake3::Hasher::new();
    io::copy(reader, &mut hasher).expect("a valid vector reads");
    hasher.finalize().to_hex().to_string()
}

/// Every tree section of every valid vector: (file, the manifest's section).
fn valid_trees() -> Vec<(String, serde_json::Value)> {
    let manifest = manifest();
    let mut trees = Vec::new();
    for vector in manifest["vectors"].as_array().expect("a vectors array") {
        if vector["valid"] != true {
            continue;
        }
        for section in vector["sections"].as_array().expect("sections") {
            if section["kind"] == "files" {
                trees.push((vector["file"].as_str().expect("file").to_string(), section.clone()));
            }
        }
    }
    trees
}

/// The entry's fields against the manifest's.
fn check_entry(what: &str, entry: &Entry, want: &serde_json::Value) {
    assert_eq!(hex(entry.path()), want["path_hex"].as_str().expect("path_hex"), "{what}");
    assert_eq!(entry.kind().name(), want["kind"].as_str().expect("kind"), "{what}");
    assert_eq!(u64::from(entry.mode()), want["mode"].as_u64().expect("mode"), "{what}");
    assert_eq!(
        (u64::from(entry.uid()), u64::from(entry.gid())),
        (want["uid"].as_u64().unwrap(), want["gid"].as_u64().unwrap()),
        "{what}"
    );
    let name = |field: &str| want[field].as_str().filter(|n| !n.is_empty()).map(|n| n.as_bytes().to_vec());
    assert_eq!(entry.user().map(<[u8]>::to_vec), name("user"), "{what}");
    assert_eq!(entry.group().map(<[u8]>::to_vec), name("group"), "{what}");
    assert_eq!(entry.size(), want["size"].as_u64().expect("size"), "{what}");
    let mtime = entry.mtime();
    assert_eq!(
        (mtime.secs, u64::from(mtime.nsec)),
        (want["mtime_s"].as_i64().unwrap(), want["mtime_nsec"].as_u64().unwrap()),
        "{what}"
    );
    // A time the manifest leaves out was not captured, and is `None`, not 0.
    for (field, time) in [("atime", entry.atime()), ("ctime", entry.ctime()), ("btime", entry.birth_time())] {
        let listed = want
            .get(format!("{field}_s"))
            .map(|s| (s.as_i64().unwrap(), want[format!("{field}_nsec")].as_u64().unwrap()));
        assert_eq!(time.map(|t| (t.secs, u64::from(t.nsec))), listed, "{what}: {field}");
    }
    let xattrs: Vec<String> = entry.xattrs().iter().map(|x| String::from_utf8_lossy(&x.name).into_owned()).collect();
    assert_eq!(serde_json::json!(xattrs), want["xattrs"], "{what}");
    for x in entry.xattrs() {
        assert_eq!(entry.xattr(&x.name), Some(&x.value[..]), "{what}");
    }
    assert_eq!(entry.digest().map(|d| hex(&d)), want.get("digest").map(|d| d.as_str().unwrap().to_string()), "{what}");
    assert_eq!(
        entry.symlink_target().map(<[u8]>::to_vec),
        want.get("target").map(|t| t.as_str().unwrap().as_bytes().to_vec()),
        "{what}"
    );
    let rdev = want.get("rdev").map(|r| (r[0].as_u64().unwrap() as u32, r[1].as_u64().unwrap() as u32));
    assert_eq!(entry.device(), rdev, "{what}");
    assert_eq!(entry.lost_in_salvage(), want.get("lost_in_salvage") == Some(&serde_json::json!(true)), "{what}");
    assert!(!entry.is_unreadable() && !entry.changed_while_read(), "{what}: no vector has these");
    assert_eq!(entry.is_dir(), entry.kind() == EntryKind::Directory, "{what}");
    assert_eq!(entry.is_file(), entry.kind() == EntryKind::File, "{what}");
    assert_eq!(entry.is_symlink(), entry.kind() == EntryKind::Symlink, "{what}");
    assert_eq!(entry.is_hard_link(), entry.link_id().is_some(), "{what}");
    assert_eq!(entry.parent_id().is_none(), entry.path().is_empty(), "{what}: only the root has no directory");
}

/// A file listed by its data `ranges` (too large to read whole): each range
/// by seeking to it, and zeros just before and after.
fn check_ranges(what: &str, tree: Tree<'_, Vec<u8>>, entry: &Entry, ranges: &serde_json::Value) {
    let mut file = tree.open(entry).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(file.len(), entry.size(), "{what}");
    for range in ranges.as_array().expect("ranges") {
        let (offset, length) = (range["offset"].as_u64().unwrap(), range["length"].as_u64().unwrap());
        file.seek(SeekFrom::Start(offset)).unwrap();
        let mut bytes = vec![0; length as usize];
        file.read_exact(&mut bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), range["blake3"].as_str().unwrap(), "{what}");
        let mut around = [1u8; 100];
        file.seek(SeekFrom::Start(offset - 100)).unwrap();
        file.read_exact(&mut around).unwrap();
        assert_eq!(around, [0; 100], "{what}: the hole before {offset}");
    }
}

#[test]
fn every_valid_tree_reads_as_its_manifest_says() {
    let trees = valid_trees();
    assert!(trees.len() >= 7, "the vectors hold trees");
    for (file, want) in &trees {
        let bytes = vector(file);
        let archive = Archive::new(bytes).expect("a valid vector opens");
        // An incremental vector's ancestors are vectors beside it.
        archive.set_parent_search(strata_reader::ParentSearch::beside(&vectors_dir().join(file)));
        let name = want["name"].as_str().expect("name");
        let tree = archive.tree(name).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(tree.name(), name);
        let wanted = want["entries"].as_array().expect("entries");

        // Every entry in order, as the manifest lists them.
        let entries: Vec<Entry> = tree.entries().collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(entries.len(), wanted.len(), "{file}: entry count");
        assert_eq!(entries.len() as u64, tree.entry_count(), "{file}");
        assert_eq!(tree.root().unwrap(), entries[0], "{file}: the root");
        let by_path: BTreeMap<&[u8], &Entry> = entries.iter().map(|e| (e.path(), e)).collect();
        for (entry, w) in entries.iter().zip(wanted) {
            let what = format!("{file}: {}", String::from_utf8_lossy(entry.path()));
            check_entry(&what, entry, w);
            // The same entry by its path, through the directory tables, and by
            // its id, through a binary search of the entry records.
            assert_eq!(tree.lookup(entry.path()).unwrap().as_ref(), Some(entry), "{what}: lookup");
            assert_eq!(tree.entry(entry.id()).unwrap().as_ref(), Some(entry), "{what}: by id");
            if let Some(link) = w.get("link") {
                let target = tree.link_target(entry).unwrap().expect("a hard link");
                assert_eq!(target.path(), link.as_str().unwrap().as_bytes(), "{what}: link target");
                assert_eq!(Some(&&target), by_path.get(target.path()), "{what}");
            } else {
                assert_eq!(tree.link_target(entry).unwrap(), None, "{what}: not a hard link");
            }

            // Content: a hard link's is its file's.
            let content_of = w
                .get("link")
                .map_or(w, |link| wanted.iter().find(|o| o["path"] == *link).expect("the link's file is listed"));
            let lost = content_of.get("lost_in_salvage") == Some(&serde_json::json!(true));
            match entry.kind() {
                EntryKind::File | EntryKind::Hardlink if lost => {
                    let e = tree.open(entry).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::NotStored, "{what}: {e}");
                    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::Other);
                }
                EntryKind::File | EntryKind::Hardlink => match content_of.get("ranges") {
                    Some(ranges) => check_ranges(&what, tree, entry, ranges),
                    None => {
                        let mut reader = tree.open(entry).unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(reader.len(), content_of["size"].as_u64().unwrap(), "{what}");
                        assert_eq!(blake3_of(&mut reader), content_of["blake3"].as_str().unwrap(), "{what}");
                        assert_eq!(reader.read(&mut [0; 10]).unwrap(), 0, "{what}: at the end");
                    }
                },
                other => {
                    let e = tree.open(entry).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::NotAFile, "{what}: a {} opened: {e}", other.name());
                    assert_eq!(e.class(), None, "{what}: the caller's mistake, not the archive's");
                }
            }

            // A directory's children, through its table, in name order.
            if entry.is_dir() {
                let mut children: Vec<&Entry> = entries.iter().filter(|c| c.parent_id() == Some(entry.id())).collect();
                children.sort_by(|a, b| a.name().cmp(b.name()));
                // Given by `entries`, the directory is first looked up by its
                // path; its children then list at once.
                let listed: Vec<Entry> = tree.read_dir(entry).unwrap().collect::<Result<_, _>>().unwrap();
                assert_eq!(listed.iter().collect::<Vec<_>>(), children, "{what}: read_dir");
                for child in listed.iter().filter(|c| c.is_dir()) {
                    assert_eq!(
                        tree.read_dir(child).unwrap().count(),
                        entries.iter().filter(|c| c.parent_id() == Some(child.id())).count()
                    );
                }
            } else {
                let e = tree.read_dir(entry).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NotADirectory, "{what}: {e}");
            }
        }

        // The whole tree through the directory tables: every entry once.
        let walked: Vec<Entry> = tree.subtree("").unwrap().expect("the root").collect::<Result<_, _>>().unwrap();
        assert_eq!(walked[0], entries[0], "{file}: the walk starts at the root");
        let mut walked_paths: Vec<&[u8]> = walked.iter().map(Entry::path).collect();
        walked_paths.sort();
        assert_eq!(walked_paths, by_path.keys().copied().collect::<Vec<_>>(), "{file}: subtree");
        assert!(tree.subtree("no/such/path").unwrap().is_none());
        assert_eq!(tree.entry(u64::MAX).unwrap(), None);
        assert!(tree.lookup(b"no-such-name").unwrap().is_none());
    }
}

#[test]
fn a_missing_tree_is_a_typed_error_naming_what_there_is() {
    let archive = Archive::new(vector("image-and-tree.strata")).unwrap();
    let e = archive.tree("disk").unwrap_err();
    assert_eq!((e.kind(), e.class(), e.section()), (ErrorKind::NoSuchSection, None, Some("disk")));
    assert!(e.detail().contains("an image, not a file tree"), "{e}");
    let e = archive.tree("nothing").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchSection);
    assert!(e.detail().contains("its file trees: \"tree\""), "{e}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
    let images_only = Archive::new(vector("image-small.strata")).unwrap();
    assert!(images_only.tree("tree").unwrap_err().detail().contains("holds no file-tree section"));
    // And the other way round: a tree is no image.
    assert_eq!(archive.image("tree").unwrap_err().kind(), ErrorKind::NoSuchSection);
}

/// Reads of `file` at `offset` against the bytes read front to back.
fn read_at(tree: Tree<'_, Vec<u8>>, path: &str, offset: u64, length: usize) -> Vec<u8> {
    let entry = tree.lookup(path).unwrap().unwrap();
    let mut file = tree.open(&entry).unwrap();
    assert_eq!(file.seek(SeekFrom::Start(offset)).unwrap(), offset);
    let mut out = Vec::new();
    file.by_ref().take(length as u64).read_to_end(&mut out).unwrap();
    assert_eq!(file.position(), offset + out.len() as u64);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any range of a file of several extents, of a sparse file and of a
    /// packed one reads as the same range of the whole: holes as zeros.
    #[test]
    fn any_range_of_a_file_reads_as_the_whole_gives_it(offset in 0u64..21_000, length in 0usize..12_000) {
        let archive = Archive::new(vector("tree-small.strata")).unwrap();
        let tree = archive.tree("tree").unwrap();
        for path in ["docs/big.bin", "docs/sparse", "abc", "docs/readme.txt"] {
            let mut whole = Vec::new();
            tree.open(&tree.lookup(path).unwrap().unwrap()).unwrap().read_to_end(&mut whole).unwrap();
            let start = (offset as usize).min(whole.len());
            let end = (start + length).min(whole.len());
            prop_assert_eq!(read_at(tree, path, offset, length), &whole[start..end], "{} at {}", path, offset);
        }
    }
}

#[test]
fn a_file_reader_seeks_as_a_file_does() {
    let archive = Archive::new(vector("tree-small.strata")).unwrap();
    let tree = archive.tree("tree").unwrap();
    let sparse = tree.lookup("docs/sparse").unwrap().unwrap();
    let mut file = tree.open(&sparse).unwrap();
    assert_eq!((file.len(), file.is_empty(), file.changed_while_read()), (20480, false, false));
    assert_eq!(file.seek(SeekFrom::End(0)).unwrap(), 20480);
    assert_eq!(file.read(&mut [0; 10]).unwrap(), 0, "at the end");
    assert_eq!(file.seek(SeekFrom::Current(1000)).unwrap(), 21480, "past the end is allowed");
    assert_eq!(file.read(&mut [0; 10]).unwrap(), 0, "past the end");
    let e = file.seek(SeekFrom::Current(-30_000)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(file.stream_position().unwrap(), 21480, "a failed seek moves nothing");
    file.rewind().unwrap();
    assert_eq!(blake3_of(&mut file), blake3_of(&mut tree.open(&sparse).unwrap()));
    let empty = tree.open(&tree.lookup("docs/empty").unwrap().unwrap()).unwrap();
    assert!(empty.is_empty());
    assert!(format!("{file:?}").contains("FileReader"));
}

#[test]
fn content_that_does_not_match_its_digest_is_an_error_not_bytes() {
    let archive = Archive::new(vector("tree-content-digest.strata")).unwrap();
    let mut failed = Vec::new();
    for section in archive.sections() {
        let tree = archive.tree(section.name()).unwrap();
        for entry in tree.entries() {
            let entry = entry.unwrap();
            if !entry.is_file() {
                continue;
            }
            let mut file = tree.open(&entry).unwrap();
            let mut content = Vec::new();
            if let Err(e) = file.read_to_end(&mut content) {
                let inner = e.get_ref().and_then(|e| e.downcast_ref::<strata_reader::Error>()).expect("a strata error");
                assert_eq!(inner.class(), Some(ErrorClass::ChunkCorrupt), "{inner}");
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                // It stays an error, read again from where it stopped.
                assert!(file.read(&mut [0; 4096]).is_err());
                failed.push(entry.path().to_vec());
            }
        }
    }
    assert_eq!(failed.len(), 1, "the vector damages one file: {failed:?}");
}

#[test]
fn a_hard_link_to_what_is_not_an_earlier_file_is_an_error() {
    let archive = Archive::new(vector("tree-hardlink-escape.strata")).unwrap();
    let tree = archive.tree(archive.sections()[0].name()).unwrap();
    let links: Vec<Entry> = tree.entries().map_while(Result::ok).filter(Entry::is_hard_link).collect();
    assert!(!links.is_empty());
    for link in &links {
        let e = tree.open(link).unwrap_err();
        assert_eq!(e.class(), Some(ErrorClass::RecordMalformed), "{e}");
        assert!(e.detail().contains("not an earlier regular file"), "{e}");
        assert!(tree.link_target(link).is_err());
    }
}

/// Records every byte range read, to show what a walk costs.
struct Counting(Vec<u8>, std::sync::Mutex<Vec<(u64, u64)>>);

impl ReadAt for Counting {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.1.lock().unwrap().push((offset, buf.len() as u64));
        self.0.read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        self.0.size()
    }
}

/// (offset, end, type) of every record of a valid archive.
fn record_map(bytes: &[u8]) -> Vec<(u64, u64, Option<RecordType>)> {
    let mut at = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    while at + RecordHeader::SIZE <= bytes.len() {
        let head = RecordHeader::decode(bytes[at..at + RecordHeader::SIZE].try_into().unwrap());
        let end = at + RecordHeader::SIZE + head.body_length as usize;
        out.push((at as u64, end as u64, RecordType::from_code(head.record_type)));
        at = end;
    }
    out
}

#[test]
fn listing_and_looking_up_read_no_content_and_a_file_only_its_own() {
    let bytes = vector("tree-small.strata");
    let records = record_map(&bytes);
    let archive = Archive::new(Counting(bytes, Default::default())).unwrap();
    let tree = archive.tree("tree").unwrap();
    // The record types read since the last call.
    let read = || -> Vec<Option<RecordType>> {
        let reads = std::mem::take(&mut *archive.source().1.lock().unwrap());
        reads
            .iter()
            .map(|&(offset, _)| {
                records.iter().find(|(start, end, _)| (*start..*end).contains(&offset)).expect("a record").2
            })
            .collect()
    };
    archive.source().1.lock().unwrap().clear();
    assert_eq!(tree.entries().count(), 21);
    assert!(read().iter().all(|t| *t == Some(RecordType::FilesEntries)), "a listing reads the entry records only");
    let hard = tree.lookup("docs/hard").unwrap().unwrap();
    let kinds = read();
    assert!(!kinds.contains(&Some(RecordType::Chunk)), "a lookup reads no chunk: {kinds:?}");
    assert!(kinds.contains(&Some(RecordType::FilesDir)));
    let link = tree.lookup("docs/readme.txt").unwrap().unwrap();
    read();
    let mut content = Vec::new();
    tree.open(&link).unwrap().read_to_end(&mut content).unwrap();
    assert_eq!(content.len() as u64, hard.size());
    let reads = std::mem::take(&mut *archive.source().1.lock().unwrap());
    // Entries carry no extents (FORMAT.md 8.2): they are found in the FILES_EXTENTS records.
    let own: Vec<u64> = archive.file_extents(tree.section(), hard.raw()).unwrap().iter().map(|e| e.chunk_ref).collect();
    for (offset, _) in reads {
        let &(start, _, kind) = records.iter().find(|(start, end, _)| (*start..*end).contains(&offset)).unwrap();
        match kind {
            Some(RecordType::Chunk) => assert!(own.contains(&start), "a chunk that is not the file's"),
            Some(RecordType::FilesEntries | RecordType::FilesExtents) => {}
            other => panic!(
                "the link's file is found by id, in entry groups, its extents in FILES_EXTENTS: read a {other:?}"
            ),
        }
    }
}

#[test]
fn the_tour_lists_a_tree_prints_a_file_and_copies_16_kib_of_an_image() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("copy.bin");
    let mut said = Vec::new();
    let path = vector_path("image-and-tree.strata");
    let copied = tour::tour(&path, "tree", "docs/hard", "disk", 1000, out.to_str().unwrap(), &mut said).unwrap();
    assert_eq!(copied, 16 << 10);

    let archive = Archive::new(vector("image-and-tree.strata")).unwrap();
    let image = archive.image("disk").unwrap();
    let mut want = vec![0; 16 << 10];
    assert_eq!(image.read_at(1000, &mut want).unwrap(), want.len());
    assert!(std::fs::read(&out).unwrap() == want, "the copy is the image's bytes 1000..17384");

    let tree = archive.tree("tree").unwrap();
    let mut content = Vec::new();
    tree.open(&tree.lookup("docs/hard").unwrap().unwrap()).unwrap().read_to_end(&mut content).unwrap();
    let listing: Vec<u8> = tree
        .entries()
        .map(|e| e.unwrap())
        .flat_map(|e| format!("{:?} {} {}\n", e.kind(), e.size(), String::from_utf8_lossy(e.path())).into_bytes())
        .collect();
    let mut expected = listing;
    expected.extend(&content);
    expected.extend(format!("16384 bytes of image disk from byte 1000 copied to {}\n", out.display()).as_bytes());
    assert!(said == expected, "{}", String::from_utf8_lossy(&said));
    // Its errors are the reader's.
    let e = tour::tour(&path, "disk", "x", "disk", 0, out.to_str().unwrap(), &mut Vec::new()).unwrap_err();
    assert_eq!(e.downcast_ref::<strata_reader::Error>().map(|e| e.kind()), Some(ErrorKind::NoSuchSection));
}

#[test]
fn the_list_and_cat_examples_give_what_the_handle_gives() {
    let path = vector_path("tree-small.strata");
    let mut listed = Vec::new();
    list::list(&path, "tree", None, &mut listed).unwrap();
    let listed = String::from_utf8(listed.iter().map(|&b| if b.is_ascii() { b } else { b'?' }).collect()).unwrap();
    assert_eq!(listed.lines().count(), 21, "{listed}");
    assert!(listed.lines().any(|l| l.ends_with(" docs/readme.txt link to docs/hard")), "{listed}");
    assert!(listed.lines().any(|l| l.ends_with(" docs/link -> readme.txt")), "{listed}");
    let mut below = Vec::new();
    list::list(&path, "tree", Some("esd"), &mut below).unwrap();
    assert_eq!(String::from_utf8(below).unwrap().lines().count(), 2);
    let salvaged = vector_path("tree-salvaged.strata");
    let mut marked = Vec::new();
    list::list(&salvaged, "tree", Some("docs/big.bin"), &mut marked).unwrap();
    assert!(String::from_utf8(marked).unwrap().trim_end().ends_with("docs/big.bin [lost in salvage]"));

    let mut content = Vec::new();
    assert_eq!(cat::cat(&path, "tree", "docs/readme.txt", &mut content).unwrap(), 300);
    let archive = Archive::new(vector("tree-small.strata")).unwrap();
    let tree = archive.tree("tree").unwrap();
    let mut hard = Vec::new();
    tree.open(&tree.lookup("docs/hard").unwrap().unwrap()).unwrap().read_to_end(&mut hard).unwrap();
    assert_eq!(content, hard, "the link reads as its file");
    let e = cat::cat(&path, "tree", "docs", &mut Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "a directory, not a file");
    let e = cat::cat(&salvaged, "tree", "docs/big.bin", &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("lost in salvage"), "{e}");
}

#[test]
fn the_info_example_prints_each_section_as_the_manifest_gives_it() {
    let name = "image-and-tree";
    let manifest = manifest();
    let entry = manifest["vectors"].as_array().unwrap().iter().find(|v| v["name"] == name).expect("in the manifest");
    let path = vector_path(&format!("{name}.strata"));
    let mut expected = format!("{path}: {} bytes, 2 sections\n", vector(&format!("{name}.strata")).len());
    for section in entry["sections"].as_array().unwrap() {
        let (kind, size) = match section["kind"].as_str().unwrap() {
            "image" => ("image", section["logical_size"].as_u64().unwrap()),
            _ => {
                let files = section["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "file");
                ("tree", files.map(|e| e["size"].as_u64().unwrap()).sum())
            }
        };
        expected += &format!("{kind} {} {size} bytes\n", section["name"].as_str().unwrap());
    }
    let mut said = Vec::new();
    info::info(&path, &mut said).unwrap();
    assert_eq!(String::from_utf8(said).unwrap(), expected);
    assert!(expected.contains("image disk 18192 bytes\n") && expected.contains("tree tree 30981 bytes\n"));
    // Its errors are the reader's.
    let e = info::info(&vector_path("truncated-trailer.strata"), &mut Vec::new()).unwrap_err();
    assert_eq!(e.downcast_ref::<strata_reader::Error>().map(|e| e.class()), Some(Some(ErrorClass::Truncated)));
}

#[test]
fn entries_of_a_tree_compare_by_path_and_fields() {
    let archive = Archive::new(vector("tree-small.strata")).unwrap();
    let tree = archive.tree("tree").unwrap();
    let docs = tree.lookup("docs").unwrap().unwrap();
    let from_listing = tree.read_dir(&tree.root().unwrap()).unwrap().map(|e| e.unwrap()).find(|e| e.name() == b"docs");
    assert_eq!(Some(&docs), from_listing.as_ref());
    assert_eq!(tree.lookup("./docs/").unwrap().as_ref(), Some(&docs), "empty and . components are skipped");
    assert_eq!(docs.path(), b"docs");
    // Entries from elsewhere take the same shape.
    let raw = docs.raw().clone();
    let made = Entry::from_raw(b"docs".to_vec(), raw, tree.captured());
    assert_eq!(made, docs);
    assert_eq!(tree.read_dir(&made).unwrap().count(), 10, "listed through a lookup of its path");
    let moved = Entry::from_raw(b"elsewhere".to_vec(), docs.clone().into_raw(), tree.captured());
    let e = tree.read_dir(&moved).unwrap_err();
    assert_eq!(e.class(), Some(ErrorClass::IndexMismatch), "{e}");
}
