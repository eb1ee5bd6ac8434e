//! Salvage of file trees: what survives damage comes back, at its path, with its
//! content; what does not is named.

use std::collections::BTreeMap;
use std::path::Path;

use strata_format::files::{EntryFlags, EntryKind};
use strata_format::{RecordHeader, RecordType};
use strata_reader::{Archive, Limits};
use strata_writer::{ArchiveWriter, NoProgress, TreeOptions, WriterOptions};

/// A tree with folders, small and large files, a hole, a symlink and a hard link.
fn make_tree(root: &Path, files_per_dir: usize) {
    for d in 0..4 {
        let dir = root.join(format!("dir{d}")).join("inner");
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files_per_dir {
            // Long names make many entries per record, so a tree spans several.
            let name = format!("file-{f:04}-{}", "n".repeat(120));
            let body: Vec<u8> = (0..(f * 37 + d * 1000) % 5000).map(|i| (i * 7 + f + d) as u8).collect();
            std::fs::write(dir.join(name), body).unwrap();
        }
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("big.bin", root.join("link")).unwrap();
    std::fs::hard_link(root.join("big.bin"), root.join("dir0/big-again")).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"middle", 500_000).unwrap();
}

fn archive_of(root: &Path) -> Vec<u8> {
    let mut options = WriterOptions::new([7; 16], 1_700_000_000_000_000_000);
    options.chunk_size = 64 << 10;
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    writer.add_tree("t", root, &TreeOptions::default(), &NoProgress).unwrap();
    writer.finish().unwrap().0
}

/// Every entry of an archive's tree: path to (kind, flags, content).
type Listing = BTreeMap<Vec<u8>, (EntryKind, u8, Vec<u8>)>;

fn listing(bytes: &[u8]) -> Listing {
    let archive = Archive::new(bytes).expect("the salvaged archive opens");
    let tree = archive.tree_section("t").expect("the tree survives").clone();
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    archive
        .walk_tree(&tree, |item| {
            if item.entry.kind == EntryKind::File {
                files.push((item.path.clone(), item.entry.clone()));
            }
            out.insert(item.path, (item.entry.kind, item.entry.flags, Vec::new()));
            Ok(())
        })
        .unwrap();
    for (path, entry) in files {
        let mut content = Vec::new();
        archive.read_file(&tree, &entry, &mut content).unwrap();
        out.get_mut(&path).unwrap().2 = content;
    }
    out
}

/// The archive of a fresh `make_tree`, and its listing.
fn sample(files_per_dir: usize) -> (Vec<u8>, Listing) {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), files_per_dir);
    let good = archive_of(dir.path());
    let original = listing(&good);
    (good, original)
}

fn salvage(bytes: &[u8]) -> (Vec<u8>, strata_salvage::Outcome) {
    let options = WriterOptions::new([9; 16], 1_700_000_000_000_000_000);
    strata_salvage::salvage(bytes, Vec::new(), options, Limits::default(), &|_| {}, &NoProgress).expect("salvage")
}

/// Offsets and ends of the records of `kind`.
fn records(bytes: &[u8], kind: RecordType) -> Vec<(usize, usize)> {
    let mut at = 128;
    let mut found = Vec::new();
    while at + 32 <= bytes.len() {
        let head = RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
        let end = at + 32 + head.body_length as usize;
        if head.record_type == kind.code() {
            found.push((at, end));
        }
        at = end;
    }
    found
}

fn assert_clean(bytes: &[u8]) {
    let report = strata_reader::verify::verify(bytes, Limits::default(), &|_| {}).unwrap();
    assert!(report.is_clean(), "the salvaged archive verifies clean: {:?}", report.problems);
}

#[test]
fn a_damaged_chunk_costs_only_the_files_that_use_it() {
    let (good, original) = sample(20);
    let chunks = records(&good, RecordType::Chunk);
    // Damage the third chunk's body.
    let mut bad = good.clone();
    let (start, end) = chunks[2];
    bad[(start + end) / 2] ^= 0x40;
    let (salvaged, outcome) = salvage(&bad);
    assert_clean(&salvaged);
    let tree = &outcome.trees[0];
    assert!(!tree.content_lost.is_empty(), "some file used that chunk");
    assert!(tree.lost.is_empty() && tree.relocated.is_empty(), "{tree:?}");
    let after = listing(&salvaged);
    assert_eq!(after.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>(), "every entry kept");
    for (path, (kind, flags, content)) in &after {
        let (_, _, was) = &original[path];
        if tree.content_lost.contains(path) {
            assert_eq!(*flags & EntryFlags::LOST_IN_SALVAGE, EntryFlags::LOST_IN_SALVAGE);
            assert!(content.is_empty());
        } else {
            assert!(content == was, "{} kept whole", String::from_utf8_lossy(path));
            assert_eq!(*kind, original[path].0);
        }
    }
}

#[test]
fn a_lost_entries_record_costs_its_entries_and_keeps_the_rest_in_place() {
    let (good, original) = sample(700);
    let entry_records = records(&good, RecordType::FilesEntries);
    assert!(entry_records.len() >= 3, "the tree spans several entry records: {}", entry_records.len());
    // Lose the first group: the root, its run and the first folders' runs go
    // with it.
    let mut bad = good.clone();
    let (start, _) = entry_records[0];
    bad[start + 40] ^= 0x01;
    let (salvaged, outcome) = salvage(&bad);
    assert_clean(&salvaged);
    let tree = &outcome.trees[0];
    assert!(tree.unnamed_lost > 0, "the entries lost with their group are counted");
    // Folders whose entries were lost are made up in lost+found as #ID (no
    // name is recovered for them, FORMAT.md 11).
    assert!(!tree.made_up.is_empty());
    assert!(tree.made_up.iter().all(|p| p.starts_with(b"lost+found/#")), "{:?}", tree.made_up);
    assert!(!tree.relocated.is_empty());
    assert!(tree.relocated.iter().all(|p| p.starts_with(b"lost+found/#")), "{:?}", tree.relocated);
    let after = listing(&salvaged);
    let mut kept_files = 0;
    for (path, (kind, flags, content)) in &after {
        if path.starts_with(b"lost+found") {
            if *kind == EntryKind::File && flags & EntryFlags::LOST_IN_SALVAGE == 0 {
                let name = path.rsplit(|&b| b == b'/').next().unwrap();
                let twin = original.iter().any(|(p, (k, _, c))| {
                    *k == EntryKind::File
                        && p.ends_with(name)
                        && p[..p.len() - name.len()].ends_with(b"/")
                        && c == content
                });
                assert!(twin, "{} is a file of the original tree", String::from_utf8_lossy(path));
                kept_files += 1;
            }
            continue;
        }
        let (was_kind, _, was) =
            original.get(path).unwrap_or_else(|| panic!("{} is not in the original", String::from_utf8_lossy(path)));
        if *kind == EntryKind::File && flags & EntryFlags::LOST_IN_SALVAGE == 0 {
            assert!(content == was, "{} keeps its content", String::from_utf8_lossy(path));
            kept_files += 1;
        }
        assert!(*kind == *was_kind || *kind == EntryKind::Directory || *was_kind == EntryKind::Hardlink);
    }
    assert!(kept_files > 1000, "the later groups' files are kept: {kept_files}");
}

#[test]
fn a_cut_keeps_every_entry_whose_records_came_before_it() {
    let (good, original) = sample(300);
    let entry_records = records(&good, RecordType::FilesEntries);
    let archive = Archive::new(good.as_slice()).unwrap();
    let tree = archive.tree_section("t").unwrap().clone();
    let mut paths = std::collections::HashMap::new();
    archive
        .walk_tree(&tree, |item| {
            paths.insert(item.entry.entry_id, item.path);
            Ok(())
        })
        .unwrap();
    let step = good.len() / 23;
    for cut in (200..good.len()).step_by(step) {
        let complete = entry_records.iter().filter(|(_, end)| *end <= cut).count();
        let bad = &good[..cut];
        if complete == 0 {
            // Nothing of the tree survives but its beginning: salvage may keep an empty tree.
            continue;
        }
        let (salvaged, outcome) = salvage(bad);
        assert_clean(&salvaged);
        let after = listing(&salvaged);
        // Every file listed in a complete record whose chunks came before the cut
        // is back with its content.
        for &(record, end) in &entry_records[..complete] {
            assert!(end <= cut);
            for (_, entry) in archive.entries_at(&tree, record as u64).unwrap() {
                let path = &paths[&entry.entry_id];
                let whole = entry.extents.iter().all(|e| (e.chunk_ref as usize) < cut);
                let (kind, _, content) = after
                    .get(path)
                    .unwrap_or_else(|| panic!("cut at {cut}: {} is back", String::from_utf8_lossy(path)));
                assert_eq!(*kind, entry.kind);
                if entry.kind == EntryKind::File && whole {
                    assert_eq!(
                        content,
                        &original[path].2,
                        "cut at {cut}: {} keeps its content",
                        String::from_utf8_lossy(path)
                    );
                }
            }
        }
        assert!(outcome.trees[0].entries >= complete as u64);
    }
}

#[test]
fn entries_whose_folders_nothing_names_go_to_lost_and_found() {
    let (good, original) = sample(700);
    let entry_records = records(&good, RecordType::FilesEntries);
    let tables = records(&good, RecordType::FilesDir);
    // Lose the first entries record, and cut before the directory tables.
    let mut bad = good[..tables[0].0].to_vec();
    bad[entry_records[0].0 + 40] ^= 0x01;
    let (salvaged, outcome) = salvage(&bad);
    assert_clean(&salvaged);
    let tree = &outcome.trees[0];
    assert!(!tree.relocated.is_empty());
    assert!(tree.relocated.iter().all(|p| p.starts_with(b"lost+found/#")), "{:?}", tree.relocated);
    let after = listing(&salvaged);
    let mut moved_files = 0;
    for (path, (kind, _, content)) in &after {
        if !path.starts_with(b"lost+found/") || *kind != EntryKind::File {
            continue;
        }
        let name = path.rsplit(|&b| b == b'/').next().unwrap();
        let twin = original.iter().any(|(p, (k, _, c))| {
            *k == EntryKind::File && p.ends_with(name) && p[..p.len() - name.len()].ends_with(b"/") && c == content
        });
        assert!(twin, "{} is a file of the original tree", String::from_utf8_lossy(path));
        moved_files += 1;
    }
    assert!(moved_files > 100, "{moved_files}");
}

/// Inputs the `salvage` fuzz target once found a fault with, kept as plain tests:
/// whatever salvage makes of them verifies clean.
#[test]
fn fuzz_regressions_salvage_to_clean_archives() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut seen = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let options = WriterOptions::new([1; 16], 0);
        if let Ok((salvaged, _)) =
            strata_salvage::salvage(bytes.as_slice(), Vec::new(), options, Limits::default(), &|_| {}, &NoProgress)
        {
            assert_clean(&salvaged);
        }
        seen += 1;
    }
    assert!(seen > 0, "no regression inputs in {}", dir.display());
}
