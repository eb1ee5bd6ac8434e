//! The writer's tar2strata example (writer/examples/tar2strata.rs), issue 13
//! acceptance 2: a tar made by GNU tar becomes an archive whose
//! `strata list -l` agrees with `tar -tv` on names, sizes, modes, owners and
//! times, and whose `strata extract` gives the same tree as `tar -x`. Also
//! PAX times with nanoseconds, long link targets, and refused member names.
//!
//! The example is built here with the `cargo` that runs this test (the cli
//! crate cannot depend on another package's example), once per run; its
//! path comes from cargo's JSON messages, so no target folder is guessed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::manifest::{differences, manifest};
use common::{path_str, require_tool, run_ok, temp_dir};

/// The built example.
fn tar2strata_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new(env!("CARGO"))
            .args(["build", "-p", "strata-writer", "--example", "tar2strata", "--message-format=json"])
            .current_dir(&workspace)
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building the tar2strata example failed");
        let stdout = String::from_utf8(out.stdout).expect("cargo's messages are UTF-8");
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "tar2strata")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the example's executable")
    })
}

fn tar2strata(args: &[&Path]) -> Output {
    Command::new(tar2strata_bin()).args(args).stdin(Stdio::null()).output().expect("tar2strata runs")
}

fn tar2strata_ok(tar: &Path, archive: &Path) {
    let out = tar2strata(&[tar, archive]);
    assert!(out.status.success(), "tar2strata failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `strata list --json`'s entries of the one section, by path, and the section's `captured`.
fn listed(archive: &Path) -> (BTreeMap<String, serde_json::Value>, serde_json::Value) {
    let out = run_ok(&["list", "--long", "--json", path_str(archive)]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list --json is JSON");
    let sections = doc["sections"].as_array().expect("sections");
    assert_eq!(sections.len(), 1);
    let entries = sections[0]["entries"].as_array().expect("entries");
    let by_path = entries
        .iter()
        .map(|e| (e["path"].as_str().expect("a path").to_string(), e.clone()))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(by_path.len(), entries.len(), "no path twice");
    (by_path, sections[0]["captured"].clone())
}

/// One line of `tar -tv --full-time` in UTC.
#[derive(Debug)]
struct TarLine {
    mode: String,
    owner: String,
    size: String,
    time: String,
    /// `-> target` of a symbolic link, `link to target` of a hard link.
    target: Option<String>,
    hard: bool,
}

fn tar_tv(tar: &Path, numeric: bool) -> BTreeMap<String, TarLine> {
    let mut command = Command::new("tar");
    command.env("TZ", "UTC").args(["--full-time", "-tvf", path_str(tar)]);
    if numeric {
        command.arg("--numeric-owner");
    }
    let out = command.output().expect("tar runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("test names are UTF-8");
    let mut lines = BTreeMap::new();
    for line in text.lines() {
        // Sizes are right-aligned: split on runs of spaces.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, size, date, clock) = (fields[0], fields[1], fields[2], fields[3], fields[4]);
        let rest_at = line.find(clock).expect("the time is on the line") + clock.len() + 1;
        let rest = &line[rest_at..];
        let (name, target, hard) = if let Some((name, target)) = rest.split_once(" -> ") {
            (name, Some(target), false)
        } else if let Some((name, target)) = rest.split_once(" link to ") {
            (name, Some(target), true)
        } else {
            (rest, None, false)
        };
        lines.insert(
            normal(name),
            TarLine {
                mode: mode.to_string(),
                owner: owner.to_string(),
                size: size.to_string(),
                time: format!("{date} {clock}"),
                target: target.map(|t| if hard { normal(t) } else { t.to_string() }),
                hard,
            },
        );
    }
    lines
}

/// A tar member name as the archive holds it: no `./`, no trailing `/`.
fn normal(name: &str) -> String {
    name.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/")
}

fn utc(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).expect("a time in range").strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Copies up to `budget` bytes of regular files (and the folders holding
/// them) from `from` into `to`, in name order, keeping modes and mtimes.
fn copy_bounded(from: &Path, to: &Path, budget: &mut u64) {
    std::fs::create_dir_all(to).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(from).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let (src, dst) = (from.join(&name), to.join(&name));
        let Ok(meta) = std::fs::symlink_metadata(&src) else { continue };
        if meta.is_dir() {
            if *budget > 0 {
                copy_bounded(&src, &dst, budget);
                let mtime = filetime::FileTime::from_last_modification_time(&meta);
                filetime::set_file_mtime(&dst, mtime).unwrap();
            }
        } else if meta.is_file() && meta.len() <= *budget {
            std::fs::copy(&src, &dst).unwrap();
            *budget -= meta.len();
            filetime::set_file_mtime(&dst, filetime::FileTime::from_last_modification_time(&meta)).unwrap();
        }
    }
}

#[test]
fn a_gnu_tar_of_usr_share_doc_lists_and_extracts_as_tar_does() {
    assert!(require_tool("tar"));
    let dir = temp_dir();
    let src = dir.path().join("src");
    let mut budget = 8 << 20;
    copy_bounded(Path::new("/usr/share/doc"), &src.join("doc"), &mut budget);
    // What a tar of a real tree holds besides files and folders.
    std::fs::create_dir(src.join("empty")).unwrap();
    std::fs::write(src.join("first"), b"shared content\n").unwrap();
    std::fs::hard_link(src.join("first"), src.join("doc").join("second")).unwrap();
    std::os::unix::fs::symlink("../first", src.join("doc").join("to-first")).unwrap();
    let long = format!("{}.txt", "long-name-".repeat(12));
    assert!(long.len() > 100);
    std::fs::create_dir(src.join("deep")).unwrap();
    std::fs::write(src.join("deep").join(&long), b"a name over 100 bytes\n").unwrap();
    std::fs::set_permissions(src.join("first"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(src.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    filetime::set_file_mtime(src.join("empty"), filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    for name in ["first", "deep"] {
        filetime::set_file_mtime(src.join(name), filetime::FileTime::from_unix_time(1_600_000_000, 0)).unwrap();
    }
    filetime::set_file_mtime(src.join("doc"), filetime::FileTime::from_unix_time(1_500_000_000, 0)).unwrap();
    filetime::set_file_mtime(&src, filetime::FileTime::from_unix_time(1_400_000_000, 0)).unwrap();

    let tar = dir.path().join("doc.tar");
    let status =
        Command::new("tar").args(["--format=gnu", "-C", path_str(&src), "-cf", path_str(&tar), "."]).status().unwrap();
    assert!(status.success());
    let archive = dir.path().join("doc.strata");
    tar2strata_ok(&tar, &archive);

    // Listing: every member, with tar's names, sizes, modes, owners and times.
    let (entries, _) = listed(&archive);
    let named = tar_tv(&tar, false);
    let numeric = tar_tv(&tar, true);
    assert!(named.len() > 20, "a real tree: {} members", named.len());
    let tar_paths: BTreeSet<&String> = named.keys().collect();
    let strata_paths: BTreeSet<&String> = entries.keys().collect();
    assert_eq!(tar_paths, strata_paths);
    assert!(entries.contains_key(&format!("deep/{long}")), "the long name is kept whole");
    let mut tar_links = BTreeSet::new();
    let mut strata_links = BTreeSet::new();
    for (path, line) in &named {
        let e = &entries[path];
        let what = format!("{path}: tar {line:?}, strata {e}");
        // tar -tv shows a hard link's type as `h`, Strata as its file's `-`.
        assert_eq!(e["mode_string"].as_str().unwrap()[1..], line.mode[1..], "{what}");
        assert_eq!(format!("{}/{}", e["user"].as_str().unwrap(), e["group"].as_str().unwrap()), line.owner, "{what}");
        assert_eq!(format!("{}/{}", e["uid"], e["gid"]), numeric[path].owner, "{what}");
        assert_eq!(utc(e["mtime_s"].as_i64().unwrap()), line.time, "{what}");
        assert_eq!(e["mtime_nsec"], 0, "{what}: GNU tar keeps whole seconds");
        // A hard link's size is its file's in Strata and 0 in tar; which of the
        // two names holds the content may differ (checked below as pairs).
        if line.hard || e["kind"] == "hardlink" {
            let pair =
                |a: &str, b: &str| if a < b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) };
            if let Some(target) = &line.target {
                tar_links.insert(pair(path, target));
            }
            if let Some(link) = e["link"].as_str() {
                strata_links.insert(pair(path, link));
            }
        } else if e["kind"] == "symlink" {
            // tar -tv shows 0; a Strata symbolic link's size is its target's length.
            assert_eq!(e["size"].as_u64(), line.target.as_ref().map(|t| t.len() as u64), "{what}");
        } else {
            assert_eq!(e["size"].to_string(), line.size, "{what}");
        }
        if !line.hard {
            assert_eq!(e["target"].as_str(), line.target.as_deref(), "{what}");
        }
    }
    assert_eq!(tar_links, strata_links);
    assert_eq!(tar_links.len(), 1, "the one hard link");

    // Extraction: the same tree as tar's.
    let by_tar = dir.path().join("by-tar");
    std::fs::create_dir(&by_tar).unwrap();
    let status = Command::new("tar").args(["-C", path_str(&by_tar), "-xf", path_str(&tar)]).status().unwrap();
    assert!(status.success());
    let by_strata = dir.path().join("by-strata");
    run_ok(&["extract", path_str(&archive), path_str(&by_strata)]);
    let (a, b) = (manifest(&by_tar), manifest(&by_strata));
    assert!(a.len() > 20);
    let diff = differences(&a, &b);
    assert!(diff.is_empty(), "tar -x and strata extract differ:\n{}", diff.join("\n"));
    let first = std::fs::metadata(by_strata.join("first")).unwrap();
    let second = std::fs::metadata(by_strata.join("doc/second")).unwrap();
    assert_eq!((first.ino(), first.nlink()), (second.ino(), 2), "the hard link shares its inode");
    assert_eq!(std::fs::metadata(&by_strata).unwrap().mtime(), 1_400_000_000, "the root's own time");

    // Deterministic: the same tar gives the same archive.
    let again = dir.path().join("again.strata");
    tar2strata_ok(&tar, &again);
    assert!(std::fs::read(&archive).unwrap() == std::fs::read(&again).unwrap(), "same tar, same archive");
}

/// A ustar header block; `size` is the content's length.
fn ustar(name: &str, typeflag: u8, size: usize, mode: u32, mtime: i64, link: &str) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    let mut put = |at: usize, width: usize, value: &[u8]| {
        assert!(value.len() <= width, "a field of {width} bytes");
        h[at..at + value.len()].copy_from_slice(value);
    };
    put(0, 100, name.as_bytes());
    put(100, 8, format!("{mode:07o}\0").as_bytes());
    put(108, 8, b"0001750\0");
    put(116, 8, b"0001750\0");
    put(124, 12, format!("{size:011o}\0").as_bytes());
    put(136, 12, format!("{:011o}\0", mtime.max(0)).as_bytes());
    put(156, 1, &[typeflag]);
    put(157, 100, link.as_bytes());
    put(257, 8, b"ustar\x0000");
    put(265, 32, b"alice");
    put(297, 32, b"staff");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// `data` padded to whole blocks.
fn blocks(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(data.len().div_ceil(512) * 512, 0);
    out
}

/// A PAX extended header for the member that follows.
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        let line = format!(" {key}={value}\n");
        // The length counts its own digits.
        let mut length = line.len() + 1;
        while length.to_string().len() + line.len() != length {
            length += 1;
        }
        body.extend(format!("{length}{line}").as_bytes());
    }
    let mut out = ustar("PaxHeaders/x", b'x', body.len(), 0o644, 0, "");
    out.extend(blocks(&body));
    out
}

/// Appends one member, and its PAX header when `records` is not empty.
fn member(tar: &mut Vec<u8>, records: &[(&str, &str)], name: &str, typeflag: u8, mode: u32, link: &str, data: &[u8]) {
    if !records.is_empty() {
        tar.extend(pax(records));
    }
    tar.extend(ustar(name, typeflag, data.len(), mode, 1_000, link));
    tar.extend(blocks(data));
}

fn end(tar: &mut Vec<u8>) {
    tar.extend([0u8; 1024]);
}

#[test]
fn pax_times_keep_their_nanoseconds_and_gnu_long_link_targets_are_whole() {
    let dir = temp_dir();
    // Every member has an atime and a ctime, so both are recorded.
    let mut tar = Vec::new();
    let times = |m: &'static str| [("mtime", m), ("atime", "1700000001.5"), ("ctime", "1700000002.000000001")];
    member(&mut tar, &times("1700000000.123456789"), "./", b'5', 0o755, "", b"");
    let long_name = format!("pax/{}", "n".repeat(150));
    let mut with_path = times("1700000000.987654321").to_vec();
    with_path.push(("path", &long_name));
    with_path.push(("uname", "bob"));
    with_path.push(("uid", "2000000"));
    member(&mut tar, &with_path, "pax/short", b'0', 0o600, "", b"nanoseconds\n");
    member(&mut tar, &times("-1.25"), "pax/before-1970", b'0', 0o644, "", b"old\n");
    end(&mut tar);
    let tar_path = dir.path().join("pax.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let archive = dir.path().join("pax.strata");
    tar2strata_ok(&tar_path, &archive);
    let (entries, captured) = listed(&archive);
    let captured: Vec<&str> = captured.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(captured.contains(&"atime") && captured.contains(&"ctime"), "{captured:?}");
    let file = &entries[&long_name];
    assert_eq!((file["mtime_s"].as_i64(), file["mtime_nsec"].as_u64()), (Some(1_700_000_000), Some(987_654_321)));
    assert_eq!((file["atime_s"].as_i64(), file["atime_nsec"].as_u64()), (Some(1_700_000_001), Some(500_000_000)));
    assert_eq!((file["ctime_s"].as_i64(), file["ctime_nsec"].as_u64()), (Some(1_700_000_002), Some(1)));
    assert_eq!(
        (file["uid"].as_u64(), file["user"].as_str(), file["group"].as_str()),
        (Some(2_000_000), Some("bob"), Some("staff"))
    );
    assert_eq!((file["mode_octal"].as_str(), file["size"].as_u64()), (Some("0600"), Some(12)));
    let old = &entries["pax/before-1970"];
    assert_eq!((old["mtime_s"].as_i64(), old["mtime_nsec"].as_u64()), (Some(-2), Some(750_000_000)));
    // `pax/` is implied: 0755, root, the newest mtime.
    let implied = &entries["pax"];
    assert_eq!((implied["mode_octal"].as_str(), implied["uid"].as_u64()), (Some("0755"), Some(0)));
    assert_eq!((implied["mtime_s"].as_i64(), implied["mtime_nsec"].as_u64()), (Some(1_700_000_000), Some(987_654_321)));
    let root = &entries[""];
    assert_eq!(root["mtime_nsec"].as_u64(), Some(123_456_789));
    let out = dir.path().join("out");
    run_ok(&["extract", path_str(&archive), path_str(&out)]);
    let meta = std::fs::metadata(out.join(&long_name)).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_700_000_000, 987_654_321));
    assert_eq!(std::fs::read(out.join(&long_name)).unwrap(), b"nanoseconds\n");

    // GNU tar: a symbolic link whose target is over 100 bytes (a GNU long-link
    // member), and a hard link whose target's name is.
    assert!(require_tool("tar"));
    let src = dir.path().join("gnu");
    let target = format!("{}/end", "t".repeat(140));
    std::fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink(&target, src.join("link")).unwrap();
    let long = "f".repeat(130);
    std::fs::write(src.join(&long), b"x").unwrap();
    std::fs::hard_link(src.join(&long), src.join("a-hard")).unwrap();
    let gnu_tar = dir.path().join("gnu.tar");
    let status = Command::new("tar")
        .args(["--format=gnu", "-C", path_str(&src), "-cf", path_str(&gnu_tar), "link", &long, "a-hard"])
        .status()
        .unwrap();
    assert!(status.success());
    let gnu = dir.path().join("gnu.strata");
    tar2strata_ok(&gnu_tar, &gnu);
    let (entries, captured) = listed(&gnu);
    assert!(!captured.as_array().unwrap().iter().any(|c| c == "atime"), "GNU members have no atime");
    assert_eq!(entries["link"]["target"].as_str(), Some(target.as_str()));
    // The tar stored the content under the long name and "a-hard" as its
    // link; "a-hard" comes first in entry order, so it holds the content.
    assert_eq!(entries["a-hard"]["kind"], "file");
    assert_eq!((entries[&long]["kind"].as_str(), entries[&long]["link"].as_str()), (Some("hardlink"), Some("a-hard")));
    let out = dir.path().join("gnu-out");
    run_ok(&["extract", path_str(&gnu), path_str(&out)]);
    assert_eq!(std::fs::read_link(out.join("link")).unwrap(), Path::new(&target));
    assert_eq!(std::fs::metadata(out.join(&long)).unwrap().ino(), std::fs::metadata(out.join("a-hard")).unwrap().ino());
}

#[test]
fn unsafe_member_names_are_refused_and_leave_no_archive() {
    for name in ["../x", "/abs", "a/../../x"] {
        let dir = temp_dir();
        let mut tar = Vec::new();
        member(&mut tar, &[], "fine", b'0', 0o644, "", b"ok\n");
        member(&mut tar, &[], name, b'0', 0o644, "", b"escape\n");
        end(&mut tar);
        let tar_path = dir.path().join("bad.tar");
        std::fs::write(&tar_path, &tar).unwrap();
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let archive = out_dir.join("bad.strata");
        let out = tar2strata(&[&tar_path, &archive]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: refused");
        assert!(stderr.contains(&format!("member \"{name}\"")) && stderr.contains("refused"), "{name}: {stderr}");
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "{name}: nothing left behind: {left:?}");
    }
}
