//! Extraction with a pool of threads writing files (issue 14): the tree and the
//! report are the same whatever the number of threads, damage included.

mod common;

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use common::manifest::{differences, manifest};
use common::*;
use strata_format::RecordType;
use strata_writer::{ArchiveWriter, NoProgress, TreeOptions, WriterOptions};

const THREADS: [&str; 4] = ["1", "2", "4", "7"];

/// An extraction's exit code, JSON report and tree.
type Outcome = (Option<i32>, String, std::collections::BTreeMap<Vec<u8>, common::manifest::Facts>);

fn set_mtime(path: &Path, secs: i64, nsec: u32) {
    filetime::set_symlink_file_times(
        path,
        filetime::FileTime::from_unix_time(secs, nsec),
        filetime::FileTime::from_unix_time(secs, nsec),
    )
    .unwrap();
}

/// Many small files (packed many to a chunk) in many directories, a few large
/// ones, sparse files, hard links, symbolic links, modes, times and (where the
/// file system takes them) extended attributes.
fn build(root: &Path) -> bool {
    let xattrs = xattr::set(root, "user.strata.probe", b"1").is_ok();
    if xattrs {
        xattr::remove(root, "user.strata.probe").unwrap();
    }
    let mut dirs = Vec::new();
    for d in 0..24u64 {
        let dir = root.join(format!("d{d:02}/sub{}", d % 3));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..60u64 {
            let path = dir.join(format!("f{f:03}"));
            let len = ((d * 61 + f * 37) % 3000) as usize;
            std::fs::write(&path, noise(d * 1000 + f, len)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600 + (f as u32 % 8) * 0o10)).unwrap();
            if xattrs && f % 7 == 0 {
                xattr::set(&path, "user.strata.n", format!("{d}-{f}").as_bytes()).unwrap();
            }
            set_mtime(&path, 1_600_000_000 + (d * 100 + f) as i64, (f as u32) * 1_000_003);
        }
        dirs.push(dir);
    }
    for (i, dir) in dirs.iter().enumerate().step_by(5) {
        std::fs::hard_link(dir.join("f001"), dir.join("hard")).unwrap();
        std::fs::hard_link(dir.join("f002"), root.join(format!("hard-{i}"))).unwrap();
        std::os::unix::fs::symlink("f003", dir.join("link")).unwrap();
    }
    for i in 0..3u64 {
        std::fs::write(root.join(format!("large{i}")), noise(77 + i, (3 << 20) + i as usize * 12_345)).unwrap();
    }
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.write_all_at(&noise(5, 70_000), 1 << 20).unwrap();
    sparse.write_all_at(b"the end", 5 << 20).unwrap();
    std::fs::File::create(root.join("holes-only")).unwrap().set_len(3 << 20).unwrap();
    std::fs::hard_link(root.join("large1"), root.join("d03/large1-again")).unwrap();
    // A read-only directory: its mode is set only once it is filled.
    std::fs::create_dir(root.join("ro")).unwrap();
    std::fs::write(root.join("ro/inside"), b"written before the mode").unwrap();
    std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    for d in 0..24u64 {
        let top = root.join(format!("d{d:02}"));
        set_mtime(&top.join(format!("sub{}", d % 3)), 1_500_000_000 + d as i64, 7);
        set_mtime(&top, 1_400_000_000 + d as i64, 9);
    }
    set_mtime(&root.join("ro"), 1_300_000_000, 11);
    xattrs
}

/// The tree archived with small chunks, so that small files share them.
fn archive(root: &Path, file: &Path) -> Vec<u8> {
    let mut options = WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    options.threads = 2;
    options.chunk_size = 64 << 10;
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    writer.add_tree("tree", root, &TreeOptions::default(), &NoProgress).unwrap();
    let bytes = writer.finish().unwrap().0;
    std::fs::write(file, &bytes).unwrap();
    bytes
}

fn extract(archive: &Path, dest: &Path, threads: &str) -> std::process::Output {
    let out = run(&["extract", path_str(archive), path_str(dest), "--no-same-owner", "--json", "--threads", threads]);
    // Leave the read-only directory removable.
    let ro = dest.join("ro");
    if ro.exists() {
        let _ = std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755));
    }
    out
}

fn restore_ro_mode(dest: &Path) {
    let ro = dest.join("ro");
    if ro.exists() {
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
}

#[test]
fn every_thread_count_extracts_the_same_tree() {
    let work = temp_dir();
    let source = work.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let with_xattrs = build(&source);
    let file = work.path().join("a.strata");
    archive(&source, &file);
    restore_ro_mode(&source);
    let want = manifest(&source);
    if with_xattrs {
        assert!(want.values().any(|f| !f.xattrs.is_empty()), "the tree holds extended attributes");
    }
    let mut first: Option<String> = None;
    for threads in THREADS {
        let dest = work.path().join(format!("out-{threads}"));
        let out = extract(&file, &dest, threads);
        assert!(out.status.success(), "--threads {threads}: {}", String::from_utf8_lossy(&out.stderr));
        restore_ro_mode(&dest);
        let got = manifest(&dest);
        let diff = differences(&want, &got);
        assert!(diff.is_empty(), "--threads {threads}: {diff:#?}");
        let json = String::from_utf8(out.stdout).unwrap();
        match &first {
            None => first = Some(json),
            Some(first) => assert_eq!(first, &json, "--threads {threads}: the report differs"),
        }
        std::fs::set_permissions(dest.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The test tree under `work`, built and archived: its folder, the archive's
/// path and bytes.
fn built(work: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let source = work.join("source");
    std::fs::create_dir(&source).unwrap();
    build(&source);
    let file = work.join("a.strata");
    let bytes = archive(&source, &file);
    restore_ro_mode(&source);
    (source, file, bytes)
}

/// The `CHUNK` records of an archive: their offsets and body lengths.
fn chunk_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut chunks = Vec::new();
    let mut at = 128;
    while at + 32 <= bytes.len() {
        let head = strata_format::RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
        if head.record_type == RecordType::Chunk.code() {
            chunks.push((at, head.body_length as usize));
        }
        at += 32 + head.body_length as usize;
    }
    chunks
}

#[test]
fn a_damaged_chunk_gives_the_same_report_for_every_thread_count() {
    let work = temp_dir();
    let (_, file, mut bytes) = built(work.path());
    // Damage the body of chunks in the middle of the archive (their CRCs made
    // right again): their BLAKE3 fails, and so does every file in them.
    let chunks = chunk_records(&bytes);
    assert!(chunks.len() > 20, "{} chunks", chunks.len());
    for &(at, length) in [chunks[chunks.len() / 3], chunks[chunks.len() / 2]].iter() {
        bytes[at + 32 + length - 1] ^= 0x40;
        fix_crcs(&mut bytes, at);
    }
    std::fs::write(&file, &bytes).unwrap();
    let mut first: Option<Outcome> = None;
    for threads in THREADS {
        let dest = work.path().join(format!("out-{threads}"));
        let out = extract(&file, &dest, threads);
        let json = String::from_utf8(out.stdout).unwrap();
        assert!(json.contains("chunk") || json.contains("zstd"), "--threads {threads}: {json}");
        restore_ro_mode(&dest);
        let got = manifest(&dest);
        std::fs::set_permissions(dest.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
        match &first {
            None => first = Some((out.status.code(), json, got)),
            Some((code, first_json, first_tree)) => {
                assert_eq!(*code, out.status.code(), "--threads {threads}: exit code");
                assert_eq!(first_json, &json, "--threads {threads}: the report differs");
                let diff = differences(first_tree, &got);
                assert!(diff.is_empty(), "--threads {threads}: {diff:#?}");
            }
        }
    }
    let (code, _, _) = first.unwrap();
    assert_ne!(code, Some(0), "damage is not a success");
}

/// A chunk stored raw whose bytes are changed (its CRCs made right again)
/// fails only its BLAKE3: no frame rule or length catches it. Extraction
/// checks every byte it writes against the files' digests and keeps every
/// file that takes bytes from that chunk out of place, names the chunk by its
/// BLAKE3 failure, and gives back every other file exactly: whatever the
/// threads, never a file with wrong bytes.
#[test]
fn a_chunk_failing_only_its_blake3_keeps_its_files_out_and_is_named() {
    let work = temp_dir();
    let (source, file, mut bytes) = built(work.path());
    let want = manifest(&source);
    std::fs::set_permissions(source.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The raw chunks (the noise does not compress; the encoding is byte 36
    // of the chunk header): damage one in the middle.
    let raw = strata_format::ChunkEncoding::Raw.code();
    let raw_chunks: Vec<(usize, usize)> =
        chunk_records(&bytes).into_iter().filter(|&(at, _)| bytes[at + 32 + 36] == raw).collect();
    assert!(raw_chunks.len() > 10, "{} raw chunks", raw_chunks.len());
    let (damaged, length) = raw_chunks[raw_chunks.len() / 2];
    bytes[damaged + 32 + 40 + (length - 40) / 2] ^= 0x01;
    fix_crcs(&mut bytes, damaged);
    std::fs::write(&file, &bytes).unwrap();
    for threads in THREADS {
        let dest = work.path().join(format!("out-{threads}"));
        let out = extract(&file, &dest, threads);
        let json = String::from_utf8(out.stdout).unwrap();
        assert_ne!(out.status.code(), Some(0), "--threads {threads}: damage is not a success");
        assert!(json.contains("chunk BLAKE3"), "--threads {threads}: the chunk is not named: {json}");
        assert!(json.contains(&damaged.to_string()), "--threads {threads}: not at offset {damaged}: {json}");
        let got = manifest(&dest);
        let (mut missing, mut same) = (0, 0);
        for (path, facts) in &want {
            match got.get(path) {
                None => missing += 1,
                Some(got_facts) => {
                    assert_eq!(
                        got_facts.blake3,
                        facts.blake3,
                        "--threads {threads}: {} has wrong bytes",
                        String::from_utf8_lossy(path)
                    );
                    same += 1;
                }
            }
        }
        assert!(missing > 0, "--threads {threads}: no file was kept out");
        assert!(same > want.len() / 2, "--threads {threads}: only {same} of {} entries back", want.len());
    }
}

/// The same through an incremental chain: a child of an unchanged tree
/// refers to its parent's chunks, which extraction decodes without their
/// BLAKE3 (each file's digest checks every byte). A parent chunk whose bytes
/// changed with its CRCs made to match still keeps every file using it out,
/// is named with its offset in the parent, and the other files come back.
#[test]
fn an_ancestor_chunk_failing_only_its_blake3_keeps_its_files_out_and_is_named() {
    let work = temp_dir();
    let (source, parent, mut bytes) = built(work.path());
    let want = manifest(&source);
    std::fs::set_permissions(source.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let child = work.path().join("child.strata");
    let tree = format!("tree={}", path_str(&source));
    let args = ["create", path_str(&child), "--parent", path_str(&parent), "--reread", "--chunk-size", "64K"];
    run_ok(&[&args[..], &["--files", &tree, "-q"]].concat());
    restore_ro_mode(&source);
    assert!(std::fs::metadata(&child).unwrap().len() * 4 < bytes.len() as u64, "the child refers to its parent");
    let raw = strata_format::ChunkEncoding::Raw.code();
    let raw_chunks: Vec<(usize, usize)> =
        chunk_records(&bytes).into_iter().filter(|&(at, _)| bytes[at + 32 + 36] == raw).collect();
    let (damaged, length) = raw_chunks[raw_chunks.len() / 2];
    bytes[damaged + 32 + 40 + (length - 40) / 2] ^= 0x01;
    fix_crcs(&mut bytes, damaged);
    std::fs::write(&parent, &bytes).unwrap();
    for threads in THREADS {
        let dest = work.path().join(format!("out-{threads}"));
        let out = extract(&child, &dest, threads);
        let json = String::from_utf8(out.stdout).unwrap();
        assert_ne!(out.status.code(), Some(0), "--threads {threads}: damage is not a success");
        assert!(json.contains("chunk BLAKE3"), "--threads {threads}: the chunk is not named: {json}");
        assert!(json.contains(&format!("offset {damaged}")), "--threads {threads}: not at offset {damaged}: {json}");
        let got = manifest(&dest);
        let mut missing = 0;
        for (path, facts) in &want {
            match got.get(path) {
                None => missing += 1,
                Some(got) => assert_eq!(got.blake3, facts.blake3, "--threads {threads}: {:?}", path),
            }
        }
        assert!(missing > 0, "--threads {threads}: no file was kept out");
        assert!(got.len() > want.len() / 2, "--threads {threads}: only {} of {} entries back", got.len(), want.len());
    }
}
