//! Files a backup could not read, saw change while it read them, or a salvage
//! lost (FORMAT.md 8.3 flag bits 2, 1 and 3): every command that shows an
//! entry says so, `verify` still says ok, and `cat` and `extract` of such a
//! file exit 1 naming it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use strata_format::files::{Captured, Entry, EntryFlags, EntryKind, NO_PARENT};
use strata_writer::{ArchiveWriter, EntrySource, NoProgress, SourceEntry, WriterOptions};

const AS_READ: &[u8] = b"the bytes as they were read\n";

/// Entries as a writer took them, each with its content.
struct Entries(std::vec::IntoIter<(Entry, Vec<u8>)>, Vec<u8>);

impl EntrySource for Entries {
    fn next_entry(&mut self) -> std::io::Result<Option<SourceEntry>> {
        Ok(self.0.next().map(|(entry, content)| {
            let data_ranges = if content.is_empty() { Vec::new() } else { vec![(0, content.len() as u64)] };
            self.1 = content;
            SourceEntry { path: entry.name.clone(), entry, data_ranges }
        }))
    }

    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let rest = self.1.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// A tree "t" of: ok.txt; locked, which could not be read; growing.log, which
/// changed while it was read; gone, lost in salvage; locked-link, a hard link to
/// locked; a directory "d".
fn flagged_archive(dir: &Path) -> PathBuf {
    let entry = |id: u64, parent: u64, kind: EntryKind, name: &[u8], flags: u8| Entry {
        entry_id: id,
        parent_id: parent,
        mode: if kind == EntryKind::Directory { 0o755 } else { 0o644 },
        mtime: strata_format::files::Timestamp { secs: 1_767_225_600, nsec: 0 },
        flags,
        // A file without content carries the digest of no items (8.3).
        digest: if kind == EntryKind::File { strata_format::files::EMPTY_DIGEST } else { [0; 16] },
        ..Entry::bare(kind, name)
    };
    // In the entry order of FORMAT.md 8: d's children one run, by name.
    let mut ok = entry(6, 1, EntryKind::File, b"ok.txt", 0);
    ok.size = 5;
    let mut growing = entry(3, 1, EntryKind::File, b"growing.log", EntryFlags::CHANGED_WHILE_READ);
    growing.size = AS_READ.len() as u64;
    let mut link = entry(5, 1, EntryKind::Hardlink, b"locked-link", 0);
    link.link_id = 4;
    let model = vec![
        (entry(0, NO_PARENT, EntryKind::Directory, b"", 0), Vec::new()),
        (entry(1, 0, EntryKind::Directory, b"d", 0), Vec::new()),
        (entry(2, 1, EntryKind::File, b"gone", EntryFlags::LOST_IN_SALVAGE), Vec::new()),
        (growing, AS_READ.to_vec()),
        (entry(4, 1, EntryKind::File, b"locked", EntryFlags::UNREADABLE), Vec::new()),
        (link, Vec::new()),
        (ok, b"fine\n".to_vec()),
    ];
    let mut options = WriterOptions::new(*b"0123456789abcdef", 1_767_225_600_000_000_000);
    options.chunk_size = 4096;
    options.threads = 1;
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    let mut source = Entries(model.into_iter(), Vec::new());
    writer.add_tree_from("t", Captured::XATTRS | Captured::HOLES, &mut source, &NoProgress).unwrap();
    let path = dir.join("flags.strata");
    std::fs::write(&path, writer.finish().unwrap().0).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn list_long_marks_each_flag_and_json_names_them_on_every_entry() {
    let work = temp_dir();
    let archive = flagged_archive(work.path());
    let out = run_ok(&["list", path_str(&archive), "--files", "t", "--long"]);
    let listing = text(&out.stdout);
    // The path starts after the time; what follows it (a link's target, the
    // marks) after a space.
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| {
                let rest = l.split_once(" 00:00:00  ").map_or("", |(_, rest)| rest);
                rest == name || rest.starts_with(&format!("{name} "))
            })
            .unwrap_or_else(|| panic!("no line for {name}: {listing}"))
    };
    assert!(line("d/locked").ends_with("d/locked  [unreadable at backup]"), "{listing}");
    assert!(line("d/growing.log").ends_with("d/growing.log  [changed while read]"), "{listing}");
    assert!(line("d/gone").ends_with("d/gone  [lost in salvage]"), "{listing}");
    assert!(line("d/ok.txt").ends_with("d/ok.txt"), "{listing}");
    assert!(!line("d/locked-link").contains('['), "the link's own entry has no flag: {listing}");
    // Without --long, paths only, as scripts expect.
    let plain = text(&run_ok(&["list", path_str(&archive), "--files", "t"]).stdout);
    assert_eq!(plain, ".\nd\nd/gone\nd/growing.log\nd/locked\nd/locked-link\nd/ok.txt\n");

    let listing = json_of(&run_ok(&["list", path_str(&archive), "--files", "t", "--json"]));
    let entries = listing["sections"][0]["entries"].as_array().unwrap();
    let flags: Vec<(String, Value)> =
        entries.iter().map(|e| (e["path"].as_str().unwrap().to_string(), e["flags"].clone())).collect();
    assert_eq!(
        flags,
        [
            ("", serde_json::json!([])),
            ("d", serde_json::json!([])),
            ("d/gone", serde_json::json!(["lost_in_salvage"])),
            ("d/growing.log", serde_json::json!(["changed_while_read"])),
            ("d/locked", serde_json::json!(["unreadable"])),
            ("d/locked-link", serde_json::json!([])),
            ("d/ok.txt", serde_json::json!([])),
        ]
        .map(|(p, f)| (p.to_string(), f))
    );
    assert_eq!(entries[4]["unreadable"], true);
    assert_eq!(entries[3]["changed_while_read"], true);
    assert_eq!(entries[2]["lost_in_salvage"], true);
}

#[test]
fn info_counts_the_flagged_entries_and_says_so() {
    let work = temp_dir();
    let archive = flagged_archive(work.path());
    let out = run_ok(&["info", path_str(&archive)]);
    let said = text(&out.stdout);
    let summary = said.lines().find(|l| l.trim_start().starts_with("files  t")).expect("the section's line");
    assert!(
        summary.ends_with(
            "; 1 file could not be read when the archive was written, 1 file changed while it was read (kept as read), 1 entry recorded as lost in salvage"
        ),
        "{said}"
    );
    assert!(said.contains("could not be read: d/locked"), "{said}");
    assert!(said.contains("changed while read: d/growing.log"), "{said}");
    assert!(said.contains("lost in salvage: d/gone"), "{said}");

    let info = json_of(&run_ok(&["info", path_str(&archive), "--json"]));
    let section = &info["sections"][0];
    assert_eq!(
        section["flagged_entries"],
        serde_json::json!({"unreadable": 1, "changed_while_read": 1, "lost_in_salvage": 1})
    );
    assert_eq!(section["unreadable_entries"], serde_json::json!(["d/locked"]));
    assert_eq!(section["changed_entries"], serde_json::json!(["d/growing.log"]));
    assert_eq!(section["lost_entries"], serde_json::json!(["d/gone"]));
}

#[test]
fn verify_is_ok_and_counts_the_flagged_entries() {
    let work = temp_dir();
    let archive = flagged_archive(work.path());
    let out = run(&["verify", path_str(&archive)]);
    assert_eq!(out.status.code(), Some(0), "facts of the backup are not damage: {}", text(&out.stderr));
    let said = text(&out.stdout);
    let summary = said.lines().next().unwrap();
    assert!(summary.contains(": ok, "), "{said}");
    assert!(
        summary.ends_with(
            "; 1 file could not be read when the archive was written, 1 file changed while it was read (kept as read), 1 entry recorded as lost in salvage"
        ),
        "{said}"
    );
    assert!(said.contains("files t: d/locked"), "{said}");
    assert!(said.contains("files t: d/growing.log"), "{said}");

    let out = run(&["verify", path_str(&archive), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report = json_of(&out);
    assert_eq!(report["status"], "ok");
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(
        report["sections"][0]["flagged_entries"],
        serde_json::json!({"unreadable": 1, "changed_while_read": 1, "lost_in_salvage": 1})
    );
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let listed = |path: &str| serde_json::json!([{"section": "t", "path": path, "path_hex": hex(path)}]);
    assert_eq!(report["unreadable_entries"], listed("d/locked"));
    assert_eq!(report["changed_entries"], listed("d/growing.log"));
    assert_eq!(report["lost_entries"], listed("d/gone"));
}

#[test]
fn cat_of_a_file_without_content_prints_nothing_and_exits_1_naming_it() {
    let work = temp_dir();
    let archive = flagged_archive(work.path());
    for (path, why) in [
        ("d/locked", "could not be read when the archive was written"),
        ("d/locked-link", "could not be read when the archive was written"),
        ("d/gone", "lost in salvage"),
    ] {
        let out = run(&["cat", path_str(&archive), "--files", "t", path]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{path}: {stderr}");
        assert!(out.stdout.is_empty(), "{path}");
        assert!(stderr.contains(&format!("{path} in files t: ")) && stderr.contains(why), "{path}: {stderr}");
    }
    let ok = run_ok(&["cat", path_str(&archive), "--files", "t", "d/ok.txt"]);
    assert_eq!(ok.stdout, b"fine\n");
    assert!(ok.stderr.is_empty());
}

#[test]
fn cat_of_a_file_that_changed_while_read_gives_it_as_read_warns_and_exits_1() {
    let work = temp_dir();
    let archive = flagged_archive(work.path());
    let out = run(&["cat", path_str(&archive), "--files", "t", "d/growing.log"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(out.stdout, AS_READ);
    assert!(stderr.contains("warning: d/growing.log in files t: it changed while it was read"), "{stderr}");
}

#[test]
fn extract_of_a_file_that_changed_while_read_extracts_it_warns_and_exits_1() {
    let work = temp_dir();
    let archive = flagged_archive(work.path());
    let dest = work.path().join("x");
    let out = run(&["extract", path_str(&archive), "--files", "t", path_str(&dest), "d/growing.log", "--quiet"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("warning: d/growing.log in files t: it changed while it was read"), "{stderr}");
    assert_eq!(std::fs::read(dest.join("d/growing.log")).unwrap(), AS_READ, "extracted as read");
}

#[test]
fn extract_skips_an_unreadable_file_and_its_link_naming_them_and_exits_1() {
    let work = temp_dir();
    let archive = flagged_archive(work.path());
    let dest = work.path().join("x");
    let out = run(&["extract", path_str(&archive), "--files", "t", path_str(&dest), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json_of(&out);
    assert_eq!(report["refused"], serde_json::json!([]));
    let warned: Vec<(&str, &str)> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["path"].as_str().unwrap(), w["reason"].as_str().unwrap()))
        .collect();
    let paths: Vec<&str> = warned.iter().map(|w| w.0).collect();
    assert_eq!(paths, ["d/gone", "d/growing.log", "d/locked", "d/locked-link"], "{warned:?}");
    assert!(warned[2].1.contains("could not be read"), "{warned:?}");
    assert!(warned[1].1.contains("changed while it was read"), "{warned:?}");
    assert!(!dest.join("d/locked").exists() && !dest.join("d/gone").exists() && !dest.join("d/locked-link").exists());
    assert_eq!(std::fs::read(dest.join("d/ok.txt")).unwrap(), b"fine\n");
    assert_eq!(std::fs::read(dest.join("d/growing.log")).unwrap(), AS_READ);
}

#[test]
fn a_file_unreadable_at_backup_is_shown_by_every_command() {
    if !require_tool("setpriv") {
        return;
    }
    let work = temp_dir();
    let dir = work.path();
    let src = dir.join("src");
    sh(&format!(
        "mkdir -p {0} && echo fine > {0}/ok && echo secret > {0}/locked && chmod 000 {0}/locked && chmod 755 {0} && chmod 777 {1}",
        path_str(&src),
        path_str(dir)
    ));
    let archive = dir.join("w.strata");
    // Root reads anything: drop to nobody so the open fails as it would for a user.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_strata"), "create"])
        .arg(&archive)
        .args(["--files", &format!("s={}", path_str(&src)), "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    let listing = text(&run_ok(&["list", path_str(&archive), "--files", "s", "-l"]).stdout);
    assert!(listing.lines().any(|l| l.ends_with("locked  [unreadable at backup]")), "{listing}");
    let said = text(&run_ok(&["verify", path_str(&archive)]).stdout);
    assert!(said.contains("1 file could not be read when the archive was written"), "{said}");
    let said = text(&run_ok(&["info", path_str(&archive)]).stdout);
    assert!(said.contains("1 file could not be read when the archive was written"), "{said}");
    let out = run(&["cat", path_str(&archive), "--files", "s", "locked"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("locked in files s: its content could not be read"), "{}", text(&out.stderr));
    let dest = dir.join("x");
    let out = run(&["extract", path_str(&archive), "--files", "s", path_str(&dest), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("warning: locked in files s: its content could not be read"));
    assert_eq!(std::fs::read(dest.join("ok")).unwrap(), b"fine\n");
}
