//! Hard sources (issue 12): every case of `common::hard_tree` is backed up
//! with `strata create`, verified, listed and extracted, and the extraction is
//! compared with the source field by field (type, mode with the set-id and
//! sticky bits, owner, size, content, mtime to the nanosecond, link targets,
//! hard-link groups, xattrs and ACLs). The backup must not change its source.
//!
//! CI runs the cases at `Size::ci`; `scripts/hard-sources.sh` runs them at
//! full size (`STRATA_HARD_SIZE=full`) with the release build, each step timed
//! (`STRATA_HARD_TIMING=1`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::hard_tree::{self, Case, RemoveDeep, Size};
use common::manifest::{differences, manifest_all, shown};
use common::{path_str, require_tool, temp_dir};

/// Runs `strata ARGS` as step `what` of `case`. With `STRATA_HARD_TIMING` set,
/// under `/usr/bin/time`, printing the step's wall time and peak RSS.
fn step(case: Case, what: &str, args: &[&str]) -> Output {
    let timing = std::env::var_os("STRATA_HARD_TIMING").is_some();
    let times = tempfile::NamedTempFile::new().expect("a file for /usr/bin/time");
    let mut command = if timing {
        let mut command = Command::new("/usr/bin/time");
        command.args(["-f", "%e s %M KB", "-o", path_str(times.path()), env!("CARGO_BIN_EXE_strata")]);
        command
    } else {
        Command::new(env!("CARGO_BIN_EXE_strata"))
    };
    let out = command.args(args).stdin(Stdio::null()).output().expect("strata runs");
    if timing {
        let line = std::fs::read_to_string(times.path()).unwrap_or_default();
        // The last line: /usr/bin/time puts a note of the exit status before it.
        let line = line.lines().last().unwrap_or("?").to_string();
        println!("hard-sources {:<16} {what:<8} {line}", case.name());
    }
    out
}

/// Times a step done in this process (no RSS of its own: the process's peak
/// is printed at the end of the case).
fn timed<T>(case: Case, what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    if std::env::var_os("STRATA_HARD_TIMING").is_some() {
        println!("hard-sources {:<16} {what:<8} {:.2} s", case.name(), started.elapsed().as_secs_f64());
    }
    value
}

fn peak_rss_kb() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map_or_else(|| "?".to_string(), |v| v.trim().trim_end_matches(" kB").to_string())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

/// `list --json`: every entry's path (from `path_hex`) with its JSON.
fn listed(case: Case, archive: &Path) -> Vec<(Vec<u8>, serde_json::Value)> {
    let out = step(case, "list", &["list", path_str(archive), "--files", "t", "--json"]);
    assert!(out.status.success(), "list failed with {:?}: {}", out.status.code(), stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list --json is JSON");
    let entries = json["sections"][0]["entries"].as_array().expect("one section of entries").clone();
    entries.into_iter().map(|e| (unhex(e["path_hex"].as_str().expect("path_hex")), e)).collect()
}

/// What a case expects beyond a clean round trip.
struct Expect {
    /// Entries `list --json` must show as hard links.
    hardlinks: Option<usize>,
}

/// Builds `case` at the size the environment says, then: `create` (exit 0
/// and no warning), the source unchanged, `verify` exit 0, `list --json`
/// naming every path once with its exact mtime (years past 2262 included),
/// `extract` into a new folder with no warning, and the extraction equal to
/// the source in every field.
fn round_trip(case: Case, expect: Expect) {
    let size = Size::from_env();
    let work = temp_dir();
    let _cleanup = RemoveDeep(work.path().to_path_buf());
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let built = timed(case, "build", || hard_tree::build(case, &src, &size));
    for note in &built.notes {
        eprintln!("{}: {note}", case.name());
    }
    let before = timed(case, "manifest", || manifest_all(&src));

    let archive = work.path().join("hard.strata");
    let source = format!("t={}", path_str(&src));
    let out = step(case, "create", &["create", path_str(&archive), "--files", &source, "--quiet"]);
    assert!(out.status.success(), "create failed with {:?}: {}", out.status.code(), stderr(&out));
    assert!(!stderr(&out).contains("warning"), "create warned: {}", stderr(&out));
    let after = timed(case, "manifest", || manifest_all(&src));
    let changed = differences(&before, &after);
    assert!(changed.is_empty(), "the backup changed its source:\n{}", changed.join("\n"));

    let out = step(case, "verify", &["verify", path_str(&archive)]);
    assert!(out.status.success(), "verify failed with {:?}: {}", out.status.code(), stdout(&out));

    let entries = timed(case, "json", || listed(case, &archive));
    let mut seen = BTreeSet::new();
    for (path, _) in &entries {
        assert!(seen.insert(path.clone()), "listed twice: {}", shown(path));
    }
    let want: BTreeSet<Vec<u8>> = before.keys().cloned().collect();
    let missing: Vec<String> = want.difference(&seen).map(|p| shown(p)).collect();
    let extra: Vec<String> = seen.difference(&want).map(|p| shown(p)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "list: missing {missing:?}, not in the source {extra:?}");
    if let Some(links) = expect.hardlinks {
        let got = entries.iter().filter(|(_, e)| e["kind"] == "hardlink").count();
        assert_eq!(got, links, "hard-link entries in the archive");
    }
    let by_path: BTreeMap<&[u8], &serde_json::Value> = entries.iter().map(|(p, e)| (p.as_slice(), e)).collect();
    // Every time as the source holds it, whatever the year.
    for (path, facts) in &before {
        let json = by_path[path.as_slice()];
        let recorded = i128::from(json["mtime_s"].as_i64().expect("mtime_s")) * 1_000_000_000
            + i128::from(json["mtime_nsec"].as_u64().expect("mtime_nsec"));
        assert_eq!(recorded, facts.mtime_ns, "{}: recorded mtime", shown(path));
    }

    let dest = work.path().join("dest");
    let out = step(case, "extract", &["extract", path_str(&archive), "--files", "t", path_str(&dest), "--quiet"]);
    assert!(out.status.success(), "extract failed with {:?}: {}", out.status.code(), stderr(&out));
    assert!(!stderr(&out).contains("warning"), "extract warned: {}", stderr(&out));
    let expected = before;
    let got = timed(case, "compare", || manifest_all(&dest));
    let diff = differences(&expected, &got);
    assert!(
        diff.is_empty(),
        "{}: {} differences between the source and its extraction:\n{}",
        case.name(),
        diff.len(),
        diff[..diff.len().min(40)].join("\n")
    );
    if std::env::var_os("STRATA_HARD_TIMING").is_some() {
        println!(
            "hard-sources {:<16} {:<8} {} entries, test process peak {} KB",
            case.name(),
            "done",
            got.len(),
            peak_rss_kb()
        );
    }
}

const NONE: Expect = Expect { hardlinks: None };

#[test]
fn many_entries_in_one_folder() {
    round_trip(Case::ManyEntries, NONE);
}

#[test]
fn a_chain_deeper_than_path_max() {
    round_trip(Case::DeepChain, NONE);
}

#[test]
fn a_huge_sparse_file() {
    round_trip(Case::Sparse, NONE);
}

#[test]
fn modes_applied_last_and_set_id_bits() {
    round_trip(Case::Modes, NONE);
}

#[test]
fn hard_links_across_folders() {
    round_trip(Case::HardLinks, Expect { hardlinks: Some(Size::from_env().links) });
}

#[test]
fn times_before_1970_to_the_nanosecond() {
    round_trip(Case::OldTimes, NONE);
}

/// The archive holds i64 nanoseconds (1677-09-21 to 2262-04-11). Until the
/// format holds more, a later time is recorded as the latest it holds, with a
/// warning naming the path, and `create` exits 1.
#[test]
fn times_after_2262_are_a_warning_and_the_nearest_time() {
    round_trip(Case::FutureTimes, NONE);
}

#[test]
fn names_with_newlines_and_invalid_utf8() {
    round_trip(Case::Names, NONE);
}

#[test]
fn default_acls_access_acls_and_xattrs() {
    if !require_tool("setfacl") {
        return;
    }
    round_trip(Case::AclsAndXattrs, NONE);
}
