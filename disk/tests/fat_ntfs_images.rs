//! FAT12/16/32 images made by mkfs.vfat and mcopy, and an NTFS image made by
//! mkntfs and filled through ntfs-3g, read back by the crate and compared
//! with what the tools themselves list (mdir, ntfsls, ntfscat, ntfscluster)
//! and with the source files' bytes.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use strata_disk::{open_filesystem, scan, ErrorKind, FsKind, Node, NodeKind, TableKind};

/// Path to size (`None` for a directory), as a tool or the crate sees a tree.
type Listing = BTreeMap<String, Option<u64>>;

/// What the tools' listings show of `nodes`: each path below the root, with
/// a regular file's size.
fn listing(nodes: &[(String, Node)]) -> Listing {
    nodes
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, node)| (path.clone(), (node.kind == NodeKind::File).then_some(node.size)))
        .collect()
}

/// `line` split after `n` whitespace-separated fields: the fields and the rest.
fn fields(line: &str, n: usize) -> (Vec<&str>, &str) {
    let mut rest = line;
    let mut taken = Vec::new();
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        taken.push(&rest[..end]);
        rest = &rest[end..];
    }
    (taken, rest.trim())
}

/// What `mdir -/ -a` lists: the long name where there is one, else the 8.3
/// name as mtools shows it.
fn mdir(image: &Path) -> Listing {
    let text = output(&format!("mdir -/ -a -i {} ::/", quoted(image)));
    let mut listing = Listing::new();
    let mut dir = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Directory for ::/") {
            dir = rest.trim_end_matches('/').to_string();
            continue;
        }
        if line.len() < 13 || line.starts_with(' ') || !line.is_char_boundary(12) {
            continue;
        }
        let (base, ext) = (line[..8].trim_end(), line[9..12].trim_end());
        let (taken, long) = fields(&line[12..], 3);
        let date = taken[1];
        if date.len() != 10 || date.as_bytes()[4] != b'-' || base == "." || base == ".." {
            continue;
        }
        let name = match (long.is_empty(), ext.is_empty()) {
            (false, _) => long.to_string(),
            (true, true) => base.to_string(),
            (true, false) => format!("{base}.{ext}"),
        };
        let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        listing.insert(path, if taken[0] == "<DIR>" { None } else { Some(taken[0].parse().unwrap()) });
    }
    listing
}

/// What `ntfsls -l -F -R` lists (without `.` and `..`).
fn ntfsls(image: &Path) -> Listing {
    let text = output(&format!("ntfsls -l -F -R {}", quoted(image)));
    let mut listing = Listing::new();
    let mut dir = String::new();
    for line in text.lines() {
        if line.starts_with('/') && line.ends_with(':') {
            dir = line.trim_end_matches(':').trim_matches('/').to_string();
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (taken, name) = fields(line, 5);
        let (name, size) = match name.strip_suffix('/') {
            Some(name) => (name, None),
            None => (name, Some(taken[0].parse().unwrap())),
        };
        if name == "." || name == ".." {
            continue;
        }
        listing.insert(if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }, size);
    }
    listing
}

#[test]
fn fat12_fat16_and_fat32_read_as_mdir_lists_them() {
    if !["mkfs.vfat", "mcopy", "mdir", "mattrib"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    windows_tree(&src);
    for (options, kib, kind) in
        [("-F 12", 2048, FsKind::Fat12), ("-F 16 -s 2", 8192, FsKind::Fat16), ("-F 32 -s 1", 40960, FsKind::Fat32)]
    {
        let image = fat_image(dir.path(), &src, options, kib);
        run(&format!("mattrib -i {} +r ::/short.TXT", quoted(&image)));
        let disk = disk_of(&image);
        let layout = scan(&disk).unwrap();
        assert_eq!(layout.table, TableKind::None);
        let volume = layout.volume(None).unwrap();
        let info = volume.filesystem.as_ref().unwrap();
        assert_eq!((info.kind, info.label.as_str(), info.uuid.as_str()), (kind, "STRATA", "1234-ABCD"));
        let fs = open_filesystem(&disk, volume).unwrap();

        let nodes = all_nodes(fs.as_ref(), volume.length);
        let ours = listing(&nodes);
        assert_eq!(ours.len(), 7, "{ours:?}");
        assert_eq!(ours, mdir(&image), "{options}");

        for (path, node) in &nodes {
            let source = src.join(path);
            let meta = std::fs::metadata(&source).unwrap();
            match node.kind {
                NodeKind::Directory => assert_eq!(node.mode, 0o755, "{path}"),
                NodeKind::File => {
                    assert_eq!(content(fs.as_ref(), path), std::fs::read(&source).unwrap(), "{options} {path}");
                    assert_eq!(node.mode, if path == "short.TXT" { 0o444 } else { 0o644 }, "{path}");
                    // FAT keeps 2-second steps of local time; mtools was told UTC.
                    assert_eq!(node.mtime, (meta.mtime(), 0), "{options} {path}");
                    assert!(node.btime.is_some(), "{path}");
                    assert_eq!((node.uid, node.gid), (0, 0));
                }
                other => panic!("{other:?} at {path}"),
            }
        }
        // Names are found ignoring case, as FAT does; a missing one is NotFound.
        assert_eq!(fs.node(b"docs/README.TXT").unwrap().size, 32);
        let e = fs.node(b"Docs/nothing").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("/Docs/nothing"), "{e}");
        let e = fs.read_file(b"Docs", &mut |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
    }
}

#[test]
fn an_ntfs_volume_reads_as_ntfsls_and_ntfscat_show_it() {
    if !["mkntfs", "ntfs-3g", "ntfsls", "ntfscat", "ntfscluster", "setfattr"].iter().all(|t| tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    windows_tree(&src);
    let Some(image) = ntfs_image(dir.path(), &src, 16) else { return };
    let disk = disk_of(&image);
    let layout = scan(&disk).unwrap();
    let volume = layout.volume(None).unwrap();
    let info = volume.filesystem.as_ref().unwrap();
    assert_eq!((info.kind, info.label.as_str()), (FsKind::Ntfs, "Windows"));
    // Used bytes as ntfscluster counts them from $Bitmap.
    let text = output(&format!("ntfscluster -i {}", quoted(&image)));
    let field = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    assert_eq!(info.used, Some(field("bytes per volume") - field("bytes of free space")));

    let fs = open_filesystem(&disk, volume).unwrap();
    let nodes = all_nodes(fs.as_ref(), volume.length);
    let ours = listing(&nodes);
    // The DOS name given to the long one is not listed.
    assert_eq!(ours.len(), 7, "{ours:?}");
    assert_eq!(ours, ntfsls(&image));
    let dos = output(&format!("ntfsls -x -p /Docs/Deep/er {}", quoted(&image)));
    assert!(dos.contains("ALONGF~1.BIN"), "the DOS name is there to be left out: {dos}");
    assert!(!ours.keys().any(|p| p.contains('~')), "{ours:?}");

    for (path, node) in &nodes {
        let source = src.join(path);
        let meta = std::fs::metadata(&source).unwrap();
        match node.kind {
            NodeKind::Directory => {
                assert_eq!(node.mode, 0o755, "{path}");
                if !path.is_empty() {
                    assert_eq!(node.mtime, (1_612_325_106, 700_000_000), "{path}");
                }
            }
            NodeKind::File => {
                let bytes = content(fs.as_ref(), path);
                assert_eq!(bytes, std::fs::read(&source).unwrap(), "{path}");
                let cat = std::process::Command::new("ntfscat").arg(&image).arg(format!("/{path}")).output().unwrap();
                assert!(bytes == cat.stdout, "{path} differs from ntfscat's");
                assert_eq!(node.mode, 0o644, "{path}");
                // NTFS keeps 100 ns steps.
                assert_eq!(node.mtime, (meta.mtime(), meta.mtime_nsec() as u32 / 100 * 100), "{path}");
                assert!(node.btime.is_some() && node.ctime.is_some(), "{path}");
            }
            other => panic!("{other:?} at {path}"),
        }
    }
    // Looked up as Windows does, ignoring case; metafiles are not there.
    assert_eq!(fs.node(b"docs/deep/ER/a LONG file name with spaces.bin").unwrap().size, 300_000);
    assert_eq!(fs.node(b"$MFT").unwrap_err().kind(), ErrorKind::NotFound);
    let e = fs.node(b"Docs/nothing").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("/Docs/nothing"), "{e}");
    let e = fs.read_file(b"Docs", &mut |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
}
