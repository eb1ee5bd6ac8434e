//! File trees: generated trees and real files back up and extract with no
//! difference in any captured metadata.

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::manifest::{differences, manifest, Facts};
use common::*;
use proptest::prelude::*;
use strata_format::files::Captured;
use strata_reader::extract::{ExtractOptions, Owners};
use strata_reader::Archive;
use strata_writer::{ArchiveWriter, NoProgress, TreeOptions, WriterOptions};

#[derive(Clone, Debug)]
enum Piece {
    Hole(u64),
    Data(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Kind {
    Dir,
    File(Vec<Piece>),
    Symlink(Vec<u8>),
    /// A hard link to the n-th file made so far.
    Hardlink(usize),
    Fifo,
}

#[derive(Clone, Debug)]
struct Node {
    parent: usize,
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    mtime_ns: i64,
    owner: (u32, u32),
    xattr: Option<(u8, Vec<u8>)>,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Short names, any bytes (non-UTF-8 included); '/' and NUL are replaced.
        proptest::collection::vec(any::<u8>(), 1..12),
        // The longest a name may be.
        Just(vec![b'n'; 255]),
        "[a-z]{1,8}".prop_map(|s| s.into_bytes()),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => Just(Kind::Dir),
        4 => proptest::collection::vec(
            prop_oneof![
                (1u64..40_000).prop_map(Piece::Hole),
                proptest::collection::vec(any::<u8>(), 0..9_000).prop_map(Piece::Data),
                (1usize..70_000).prop_map(|n| Piece::Data(vec![b'z'; n])),
            ],
            0..4
        )
        .prop_map(Kind::File),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Kind::Symlink),
        1 => (0usize..8).prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    (
        0usize..64,
        name(),
        kind(),
        0u32..0o7777,
        0i64..4_000_000_000_000_000_000,
        (0u32..3, 0u32..3),
        proptest::option::of((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64))),
    )
        .prop_map(|(parent, name, kind, mode, mtime_ns, (u, g), xattr)| Node {
            parent,
            name,
            kind,
            mode,
            mtime_ns,
            owner: (1000 + u, 1000 + g),
            xattr,
        })
}

fn set_mtime(path: &Path, ns: i64) {
    let time = filetime::FileTime::from_unix_time(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32);
    filetime::set_symlink_file_times(path, time, time).expect("set times");
}

fn xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    std::fs::remove_file(&probe).unwrap();
    ok
}

/// Builds the tree on disk. Returns nothing: the disk is the model.
fn build(root: &Path, nodes: &[Node], with_xattrs: bool) {
    let is_root = rustix::process::geteuid().is_root();
    std::fs::create_dir_all(root).unwrap();
    // A chain of directories with 255-byte names: paths over 1000 bytes.
    let mut deep = root.to_path_buf();
    for level in 0..5u8 {
        deep.push(std::ffi::OsStr::from_bytes(&[b'a' + level; 255]));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("deep-file"), b"at the bottom").unwrap();
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf(), deep];
    let mut files: Vec<PathBuf> = Vec::new();
    let mut made: Vec<(PathBuf, &Node)> = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let parent = dirs[node.parent % dirs.len()].clone();
        let mut name: Vec<u8> = node.name.iter().map(|&b| if b == b'/' || b == 0 { b'_' } else { b }).collect();
        if name == b"." || name == b".." {
            name.push(b'_');
        }
        let mut path = parent.join(std::ffi::OsStr::from_bytes(&name));
        if std::fs::symlink_metadata(&path).is_ok() {
            name.truncate(240);
            name.extend_from_slice(format!("-{index}").as_bytes());
            path = parent.join(std::ffi::OsStr::from_bytes(&name));
        }
        match &node.kind {
            Kind::Dir => {
                std::fs::create_dir(&path).unwrap();
                dirs.push(path.clone());
            }
            Kind::File(pieces) => {
                let file = std::fs::File::create(&path).unwrap();
                let mut at = 0u64;
                for piece in pieces {
                    match piece {
                        Piece::Hole(n) => at += n,
                        Piece::Data(bytes) => {
                            file.write_all_at(bytes, at).unwrap();
                            at += bytes.len() as u64;
                        }
                    }
                }
                file.set_len(at).unwrap();
                files.push(path.clone());
            }
            Kind::Symlink(target) => {
                let target: Vec<u8> = target.iter().map(|&b| if b == 0 { b'x' } else { b }).collect();
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path).unwrap();
            }
            Kind::Hardlink(n) => {
                if files.is_empty() {
                    continue;
                }
                std::fs::hard_link(&files[n % files.len()], &path).unwrap();
            }
            Kind::Fifo => rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap(),
        }
        made.push((path, node));
    }
    // Metadata after content, directories' times last, deepest first.
    for (path, node) in &made {
        let is_link = matches!(node.kind, Kind::Symlink(_));
        // user.* attributes exist only on regular files and directories.
        if with_xattrs && matches!(node.kind, Kind::Dir | Kind::File(_)) {
            if let Some((suffix, value)) = &node.xattr {
                xattr::set(path, format!("user.t{suffix}"), value).unwrap();
            }
        }
        if is_root {
            rustix::fs::chownat(
                rustix::fs::CWD,
                path,
                Some(rustix::fs::Uid::from_raw(node.owner.0)),
                Some(rustix::fs::Gid::from_raw(node.owner.1)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
        if !is_link {
            // Directories keep owner-write so the test can clean up.
            let mode = if matches!(node.kind, Kind::Dir) { node.mode | 0o700 } else { node.mode };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    for (path, node) in made.iter().rev() {
        if !matches!(node.kind, Kind::Hardlink(_)) {
            set_mtime(path, node.mtime_ns);
        }
    }
    for dir in dirs.iter().skip(1).rev() {
        if !made.iter().any(|(p, _)| p == dir) {
            set_mtime(dir, 1_700_000_000_123_456_789);
        }
    }
}

fn archive_tree(root: &Path, threads: usize, capture: u64) -> Vec<u8> {
    let mut options = WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    options.threads = threads;
    options.chunk_size = 16 << 10;
    options.batch_bytes = 64 << 10;
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    let tree_options = TreeOptions { capture, ..TreeOptions::default() };
    let summary = writer.add_tree("tree", root, &tree_options, &NoProgress).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    writer.finish().unwrap().0
}

fn extract_all(archive: Vec<u8>, dest: &Path) {
    let archive = Archive::new(archive).unwrap();
    let options = ExtractOptions { owners: Owners::Auto, ..ExtractOptions::default() };
    let report = archive.tree("tree").unwrap().extract_to(dest, &options).unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

/// Hard-link groups are named by their first path, which depends on the walk
/// order: compare them as groups of paths instead.
fn normalise(mut m: BTreeMap<Vec<u8>, Facts>) -> BTreeMap<Vec<u8>, Facts> {
    let mut groups: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (path, facts) in &m {
        if facts.kind == '-' {
            let first = groups.entry(facts.link_group.clone()).or_insert_with(|| path.clone());
            if path < first {
                *first = path.clone();
            }
        }
    }
    for facts in m.values_mut() {
        if facts.kind == '-' {
            facts.link_group = groups[&facts.link_group].clone();
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_trees_extract_identically(nodes in proptest::collection::vec(node(), 0..40)) {
        let work = temp_dir();
        let source = work.path().join("source");
        let with_xattrs = xattrs_supported(work.path());
        build(&source, &nodes, with_xattrs);
        let archive = archive_tree(&source, 0, Captured::KNOWN);
        // Same input and options, byte-identical archive, whatever the threads.
        // Without access times: reading a symbolic link sets its atime, and
        // Linux has no O_NOATIME for readlink, so the input would change.
        let still = Captured::KNOWN & !Captured::ATIME;
        prop_assert!(archive_tree(&source, 1, still) == archive_tree(&source, 2, still), "--threads 1 and 2 differ");
        let report = strata_reader::verify::verify(&archive, strata_reader::Limits::default(), &|_| {}).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
        let dest = work.path().join("dest");
        extract_all(archive, &dest);
        let (want, got) = (normalise(manifest(&source)), normalise(manifest(&dest)));
        let diff = differences(&want, &got);
        prop_assert!(diff.is_empty(), "{} differences:\n{}", diff.len(), diff.join("\n"));
    }
}

#[test]
fn a_real_tree_matches_the_source_and_gnu_tar() {
    let work = temp_dir();
    let dir = work.path();
    // Real files of this machine: documentation (compressed and plain text,
    // symlinks, many small files).
    let source = dir.join("doc");
    sh(&format!("cp -a /usr/share/doc {}", path_str(&source)));
    let archive = dir.join("doc.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("doc={}", path_str(&source)), "--quiet"]);
    run_ok(&["verify", path_str(&archive)]);
    let ours = dir.join("ours");
    run_ok(&["extract", path_str(&archive), "--files", "doc", path_str(&ours), "--quiet"]);
    let want = normalise(manifest(&source));
    assert!(want.len() > 100, "the test tree is too small: {} entries", want.len());
    let diff = differences(&want, &normalise(manifest(&ours)));
    assert!(diff.is_empty(), "{} differences:\n{}", diff.len(), diff[..diff.len().min(20)].join("\n"));

    if !require_tool("tar") {
        return;
    }
    let theirs = dir.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    sh(&format!(
        "tar --format=posix --xattrs --xattrs-include='*' -C {} -cf - . | tar --xattrs --xattrs-include='*' -C {} -xpf -",
        path_str(&source),
        path_str(&theirs)
    ));
    // GNU tar keeps holes only with --sparse and by its own detection: compare all
    // else with what tar extracts.
    let strip = |m: BTreeMap<Vec<u8>, Facts>| -> BTreeMap<Vec<u8>, Facts> {
        m.into_iter().map(|(p, f)| (p, Facts { data_ranges: Vec::new(), ..f })).collect()
    };
    let diff = differences(&strip(normalise(manifest(&theirs))), &strip(normalise(manifest(&ours))));
    assert!(diff.is_empty(), "strata and GNU tar differ:\n{}", diff[..diff.len().min(20)].join("\n"));
}

#[test]
fn a_backup_does_not_change_the_access_times_it_records() {
    let work = temp_dir();
    let root = work.path().join("tree");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/file"), b"content").unwrap();
    // Access times older than the modification times: what a listing or a read
    // would update under the default relatime mount option.
    for path in [root.join("a/b/file"), root.join("a/b"), root.join("a"), root.clone()] {
        let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_atime(&path, old).unwrap();
    }
    let first = archive_tree(&root, 1, Captured::KNOWN);
    let second = archive_tree(&root, 1, Captured::KNOWN);
    assert!(first == second, "the first backup changed the access times the second one recorded");
}
