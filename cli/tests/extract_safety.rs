//! Extraction and listing against archives built to be hard on them: inherited
//! ACLs, an existing destination, cycles in the directory tables, very deep
//! nesting, a full disk and an interrupted run (issue 12, defects 1-4 and 10).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{path_str, run, run_ok, strata, temp_dir};
use strata_format::files::{Entry, EntryKind, GroupDir, NO_PARENT};
use strata_format::RecordType;
use strata_writer::{ArchiveWriter, EntrySource, NoProgress, SourceEntry, WriterOptions};

/// Entries given in order, with their content.
struct Entries {
    items: std::vec::IntoIter<(SourceEntry, Vec<u8>)>,
    current: Vec<u8>,
}

impl Entries {
    fn new(items: Vec<(SourceEntry, Vec<u8>)>) -> Self {
        Entries { items: items.into_iter(), current: Vec::new() }
    }
}

impl EntrySource for Entries {
    fn next_entry(&mut self) -> std::io::Result<Option<SourceEntry>> {
        Ok(self.items.next().map(|(entry, content)| {
            self.current = content;
            entry
        }))
    }
    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let rest = self.current.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

fn dir(id: u64, parent: u64, name: &[u8], mode: u32) -> (SourceEntry, Vec<u8>) {
    let mut entry = Entry::bare(EntryKind::Directory, name);
    entry.entry_id = id;
    entry.parent_id = parent;
    entry.mode = mode;
    entry.mtime = strata_format::files::Timestamp { secs: 1_600_000_000, nsec: 0 };
    (SourceEntry { entry, path: name.to_vec(), data_ranges: Vec::new() }, Vec::new())
}

fn file(id: u64, parent: u64, name: &[u8], content: &[u8]) -> (SourceEntry, Vec<u8>) {
    let mut entry = Entry::bare(EntryKind::File, name);
    entry.entry_id = id;
    entry.parent_id = parent;
    entry.mode = 0o644;
    entry.size = content.len() as u64;
    entry.mtime = strata_format::files::Timestamp { secs: 1_600_000_000, nsec: 0 };
    let ranges = if content.is_empty() { Vec::new() } else { vec![(0, content.len() as u64)] };
    (SourceEntry { entry, path: name.to_vec(), data_ranges: ranges }, content.to_vec())
}

/// An archive holding one file tree "t" made of `items` (entry 0 is the root).
fn archive_of(items: Vec<(SourceEntry, Vec<u8>)>) -> Vec<u8> {
    let mut options = WriterOptions::new(*b"0123456789abcdef", 1_700_000_000_000_000_000);
    options.chunk_size = 4096;
    options.threads = 1;
    // Tables stored plain: the tests patch their bytes in place.
    options.compress_tables = false;
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("valid options");
    writer.add_tree_from("t", 0, &mut Entries::new(items), &NoProgress).expect("a valid tree");
    writer.finish().expect("writing to memory").0
}

/// A chain of `depth` directories named `d` below the root, with `bottom.txt`
/// at the bottom.
fn deep_chain(depth: u64) -> Vec<(SourceEntry, Vec<u8>)> {
    let mut items = vec![dir(0, NO_PARENT, b"", 0o755)];
    for id in 1..=depth {
        items.push(dir(id, id - 1, b"d", 0o755));
    }
    items.push(file(depth + 1, depth, b"bottom.txt", b"at the bottom\n"));
    items
}

/// Runs strata with a hard time limit: a hang is a failure, not a stuck test.
fn run_within(args: &[&str], limit: Duration) -> std::process::Output {
    let child = strata()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let pid = child.id();
    let (send, receive) = std::sync::mpsc::channel();
    // The output is drained while the child runs, so a large listing cannot
    // fill the pipe and stall it.
    std::thread::spawn(move || send.send(child.wait_with_output()));
    match receive.recv_timeout(limit) {
        Ok(output) => output.expect("output collected"),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            panic!("strata {args:?} did not finish within {limit:?}");
        }
    }
}

/// Walks `depth` levels of `d` below `root` by handles (the path is longer than
/// PATH_MAX) and reads `bottom.txt` there.
fn read_deep_bottom(root: &Path, depth: u64) -> Vec<u8> {
    use rustix::fs::{openat, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(root, flags, Mode::empty()).expect("root opens");
    for level in 0..depth {
        fd = openat(&fd, "d", flags, Mode::empty()).unwrap_or_else(|e| panic!("level {level}: {e}"));
    }
    let file = openat(&fd, "bottom.txt", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).expect("bottom.txt");
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(file), &mut out).expect("readable");
    out
}

#[test]
fn extraction_sets_exactly_the_recorded_acls() {
    if !common::require_tool("setfacl") {
        return;
    }
    let work = temp_dir();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("d/sub")).unwrap();
    std::fs::write(src.join("d/f"), b"x").unwrap();
    std::fs::write(src.join("d/sub/g"), b"y").unwrap();
    common::sh(&format!("setfacl -d -m u:1234:rwx {}", path_str(&src.join("d"))));
    let archive = work.path().join("a.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("t={}", path_str(&src))]);
    let dest = work.path().join("out");
    run_ok(&["extract", path_str(&archive), "--files", "t", path_str(&dest)]);
    let acl = |p: &Path, flag: &str| {
        let out = Command::new("getfacl").args(["-cp", flag, path_str(p)]).output().expect("getfacl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The folder keeps its default ACL; nothing below it gains one it never had.
    assert!(acl(&dest.join("d"), "-d").contains("user:1234:rwx"), "the default ACL is restored");
    for entry in ["d/f", "d/sub/g"] {
        assert!(
            !acl(&dest.join(entry), "-a").contains("1234"),
            "{entry} gained an ACL entry: {}",
            acl(&dest.join(entry), "-a")
        );
    }
    // d/sub never had a default ACL of its own, nor an access ACL.
    assert!(!acl(&dest.join("d/sub"), "").contains("1234"), "d/sub inherited: {}", acl(&dest.join("d/sub"), ""));
    for entry in ["d", "d/f", "d/sub", "d/sub/g"] {
        let want = std::fs::metadata(src.join(entry)).unwrap().mode() & 0o7777;
        let got = std::fs::metadata(dest.join(entry)).unwrap().mode() & 0o7777;
        assert_eq!(got, want, "{entry}: mode {got:o}, source {want:o}");
    }
}

#[test]
fn extraction_into_an_existing_folder_keeps_its_metadata() {
    let work = temp_dir();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/passwd"), b"root:x:0:0\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
    filetime::set_file_mtime(&src, filetime::FileTime::from_unix_time(1_200_000_000, 0)).unwrap();
    let archive = work.path().join("a.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("t={}", path_str(&src))]);

    let existing = work.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o1777)).unwrap();
    filetime::set_file_mtime(&existing, filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    for select in [None, Some("etc/passwd")] {
        let mut args = vec!["extract", path_str(&archive), "--files", "t", path_str(&existing), "--overwrite"];
        args.extend(select);
        run_ok(&args);
        let meta = std::fs::metadata(&existing).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o1777, "the existing folder keeps its mode ({select:?})");
        // Its time changes as any folder's does when entries are added, but it
        // does not take the archive root's.
        assert_ne!(meta.mtime(), 1_200_000_000, "the existing folder does not take the root's time ({select:?})");
        assert_eq!(std::fs::read(existing.join("etc/passwd")).unwrap(), b"root:x:0:0\n");
    }
    // A destination the extraction creates takes the root's metadata.
    let fresh = work.path().join("fresh/below");
    run_ok(&["extract", path_str(&archive), "--files", "t", path_str(&fresh)]);
    assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(std::fs::metadata(&fresh).unwrap().mtime(), 1_200_000_000);
}

/// `a/b/c` and `a/b/f`, with the locator of `a/b/c` in its `FILES_DIR`
/// giving it a run of two entries from entry 2 (`a/b` itself): a way back up
/// the tree, with every checksum valid. The lookup's checks (FORMAT.md 8.5:
/// a run starts after its directory) stop it there.
fn cyclic_archive() -> Vec<u8> {
    let mut bytes = archive_of(vec![
        dir(0, NO_PARENT, b"", 0o755),
        dir(1, 0, b"a", 0o755),
        dir(2, 1, b"b", 0o755),
        dir(3, 2, b"c", 0o755),
        file(4, 2, b"f", b"secret\n"),
    ]);
    let tables: Vec<(usize, usize, usize, GroupDir)> = strata_vectors::records(&bytes)
        .into_iter()
        .filter(|r| r.record_type == RecordType::FilesDir.code())
        .map(|r| {
            let table = GroupDir::parse(&bytes[r.body_start..r.body_end]).expect("valid table");
            (r.offset, r.body_start, r.body_end, table)
        })
        .collect();
    let (offset, start, end, table) =
        tables.iter().find(|t| t.3.locator(3).is_some()).expect("every directory has a locator");
    let mut table = table.clone();
    let (i, _) = table.locator(3).unwrap();
    table.locators[i].child_count = 2;
    table.locators[i].first_child_id = 2;
    let body = table.encode();
    assert_eq!(body.len(), end - start, "the same counts, the same length");
    bytes[*start..*end].copy_from_slice(&body);
    strata_vectors::refix_record(&mut bytes, *offset);
    bytes
}

#[test]
fn a_cycle_in_the_directory_tables_is_bounded_and_named() {
    let work = temp_dir();
    let archive = work.path().join("cycle.strata");
    std::fs::write(&archive, cyclic_archive()).unwrap();
    let a = path_str(&archive);
    let list = run_within(&["list", a, "--files", "t", "a"], Duration::from_secs(30));
    assert_ne!(list.status.code(), Some(0), "a cycle is damage");
    let stderr = String::from_utf8_lossy(&list.stderr);
    assert!(stderr.contains("a/b/c"), "the message names where the table goes wrong: {stderr}");
    // A path no entry has is not found, however the tables loop.
    let cat = run_within(&["cat", a, "--files", "t", "a/b/c/b/f"], Duration::from_secs(30));
    assert_ne!(cat.status.code(), Some(0));
    assert!(cat.stdout.is_empty(), "nothing is printed for a path no entry has");
    // The real path still works.
    let cat = run_within(&["cat", a, "--files", "t", "a/b/f"], Duration::from_secs(30));
    assert_eq!(cat.status.code(), Some(0), "{}", String::from_utf8_lossy(&cat.stderr));
    assert_eq!(cat.stdout, b"secret\n");
    // Verify reports it.
    let verify = run_within(&["verify", a], Duration::from_secs(30));
    assert_eq!(verify.status.code(), Some(1), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn ten_thousand_nested_directories_extract_and_list() {
    let depth = 10_000;
    let work = temp_dir();
    let archive = work.path().join("deep.strata");
    std::fs::write(&archive, archive_of(deep_chain(depth))).unwrap();
    let a = path_str(&archive);
    // Generous bounds for a debug build: the release figures are in the
    // closing note; these catch a hang or a quadratic walk.
    let limit = Duration::from_secs(30);
    let dest = work.path().join("out");
    let out = run_within(&["extract", a, "--files", "t", path_str(&dest)], limit);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_deep_bottom(&dest, depth), b"at the bottom\n");
    let list = run_within(&["list", a, "--files", "t"], limit);
    assert_eq!(list.status.code(), Some(0), "{}", String::from_utf8_lossy(&list.stderr));
    let lines = list.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(lines as u64, depth + 2, "the root, every level and the file");
    let mut bottom = "d/".repeat(depth as usize);
    bottom.push_str("bottom.txt");
    let cat = run_within(&["cat", a, "--files", "t", &bottom], limit);
    assert_eq!(cat.stdout, b"at the bottom\n", "{}", String::from_utf8_lossy(&cat.stderr));
    let verify = run_within(&["verify", a], limit);
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
    let sub = run_within(&["list", a, "--files", "t", "d/d/d"], limit);
    assert_eq!(sub.status.code(), Some(0));
    let lines = sub.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(lines as u64, depth - 2 + 1, "d/d/d, the levels below it and the file");
}

#[test]
fn a_full_disk_stops_extraction_with_one_message() {
    let work = temp_dir();
    let mut items = vec![dir(0, NO_PARENT, b"", 0o755)];
    for i in 1..=40u64 {
        let content: Vec<u8> = (0..200_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i as u8).collect();
        items.push(file(i, 0, format!("f{i:02}").as_bytes(), &content));
    }
    let archive = work.path().join("big.strata");
    std::fs::write(&archive, archive_of(items)).unwrap();
    let mount = work.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    common::sh(&format!("mount -t tmpfs -o size=1m tmpfs {}", path_str(&mount)));
    let out = run(&["extract", path_str(&archive), "--files", "t", path_str(&mount.join("dest"))]);
    let listing: Vec<String> = std::fs::read_dir(mount.join("dest"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    common::sh(&format!("umount {}", path_str(&mount)));
    assert_eq!(out.status.code(), Some(2), "a full disk is an I/O failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No space left").count(), 1, "one message, not one per file: {stderr}");
    assert!(stderr.contains("small/dest"), "the message names the destination: {stderr}");
    assert!(!listing.iter().any(|n| n.ends_with(".tmp")), "no temporary file left: {listing:?}");
}

#[test]
fn an_interrupted_extraction_leaves_no_temporary_file() {
    let work = temp_dir();
    // 256 MiB that compress to little, so the extraction takes long enough to
    // be interrupted while a file is being written.
    let content: Vec<u8> = (0..256u32 << 20).map(|n| (n % 251) as u8 | 1).collect();
    let archive = work.path().join("long.strata");
    std::fs::write(&archive, archive_of(vec![dir(0, NO_PARENT, b"", 0o755), file(1, 0, b"big", &content)])).unwrap();
    drop(content);
    let dest = work.path().join("dest");
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let _ = std::fs::remove_dir_all(&dest);
        let mut child = strata()
            .args(["extract", path_str(&archive), "--files", "t", path_str(&dest)])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata runs");
        let start = Instant::now();
        let temp_seen = loop {
            let found = std::fs::read_dir(&dest)
                .map(|d| d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().ends_with(".tmp")))
                .unwrap_or(false);
            if found || child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
                break found;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(temp_seen, "the extraction was caught while writing");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal sent");
        let out = child.wait_with_output().unwrap();
        assert_ne!(out.status.code(), Some(0));
        let left: Vec<String> =
            std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(left.iter().all(|n| !n.ends_with(".tmp")), "temporary files left after {signal:?}: {left:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    }
}
