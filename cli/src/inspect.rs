//! `strata info`, `strata verify`, `strata cat`: reading without restoring.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use strata_format::{ErrorClass, Features};
use strata_reader::verify::{self, Report};
use strata_reader::{Archive, ErrorKind, Limits, Section};

use crate::files::SectionKind;
use crate::output::say;
use crate::{output, Failure};

#[derive(Args)]
pub struct InfoArgs {
    /// The archive.
    archive: PathBuf,
    /// Print JSON (schema in spec/conformance.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The archive.
    archive: PathBuf,
    /// Print JSON (schema in spec/conformance.md); with `--chain`, a JSON
    /// array of such reports, the archive's first, then each ancestor's.
    #[arg(long)]
    json: bool,
    /// Also verify each ancestor of an incremental archive in full, parent
    /// first (without it, only the chunks the archive takes from them are checked).
    #[arg(long)]
    chain: bool,
}

#[derive(Args)]
pub struct CatArgs {
    /// The archive.
    archive: PathBuf,
    /// A file to write, relative to the file tree's root (the tree may be left
    /// out when the archive holds one); with --image, a file of the image's
    /// file system. Bytes: a name that is not UTF-8 is given as it is.
    path: Option<std::ffi::OsString>,
    /// Write bytes of this image section; with PATH, a file of the file
    /// system inside it.
    #[arg(long, conflicts_with = "files")]
    image: Option<String>,
    /// With --image and PATH: the partition whose file system to read, numbered
    /// as /dev/sdb2 is (may be left out when the image holds one file system).
    #[arg(long, value_name = "N", requires_all = ["image", "path"])]
    partition: Option<u32>,
    /// The file-tree section to read PATH from.
    #[arg(long, requires = "path")]
    files: Option<String>,
    /// With --image: the first byte to write (K, M, G suffixes).
    #[arg(long, default_value = "0", value_parser = crate::parse_bytes, conflicts_with = "path")]
    offset: u64,
    /// With --image: how many bytes to write (default: to the end of the image).
    #[arg(long, value_parser = crate::parse_bytes, conflicts_with = "path")]
    length: Option<u64>,
}

pub fn open_file(path: &Path) -> Result<File, Failure> {
    File::open(path).map_err(|e| Failure::fatal(format!("cannot open {}: {e}", path.display())))
}

pub fn open_archive(path: &Path) -> Result<Archive<File>, Failure> {
    if crate::is_stdio(path) {
        return Err(Failure::fatal(
            "this command needs random access: give the archive as a file (only `restore` reads from a pipe)",
        ));
    }
    if path.is_dir() {
        return Err(Failure::fatal(format!("{} is a folder, not an archive", path.display())));
    }
    let file = open_file(path)?;
    Archive::new_with_parents(file, strata_reader::Limits::default(), crate::chain::search_for(path))
        .map_err(|e| Failure::fatal(open_error(path, &e)))
}

/// Opens an archive for reading its content; one whose end is cut or whose
/// index is damaged is read through what is intact: salvaged first into an
/// unnamed temporary file (gone when the process ends), with a warning. The
/// flag says so, and the command then exits 1.
pub fn open_intact(path: &Path) -> Result<(Archive<File>, bool), Failure> {
    if crate::is_stdio(path) || path.is_dir() {
        return open_archive(path).map(|a| (a, false));
    }
    let file = open_file(path)?;
    let error = match Archive::new_with_parents(file, Limits::default(), crate::chain::search_for(path)) {
        Ok(archive) => return Ok((archive, false)),
        Err(e) if matches!(e.class(), None | Some(ErrorClass::NotStrata | ErrorClass::UnsupportedFeature)) => {
            return Err(Failure::fatal(open_error(path, &e)))
        }
        Err(e) => e,
    };
    let shown = path.display();
    eprintln!(
        "warning: {shown} {}; reading what is intact, as `strata salvage` would recover it (`strata verify {shown}` lists what is lost)",
        if error.class() == Some(ErrorClass::Truncated) { "ends early" } else { "has a damaged index" }
    );
    let source = open_file(path)?;
    let temp =
        tempfile::tempfile().map_err(|e| Failure::fatal(format!("a temporary file to read {shown} through: {e}")))?;
    let created_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let (temp, _) = strata_salvage::salvage(
        &source,
        temp,
        strata_writer::WriterOptions::new(crate::create::random_uuid()?, created_ns),
        Limits::default(),
        &|_| {},
        &strata_writer::NoProgress,
    )
    .map_err(|e| Failure::fatal(format!("{shown}: nothing could be read ({e}); {}", open_error(path, &error))))?;
    let archive = Archive::new(temp).map_err(|e| Failure::fatal(format!("{shown}: reading what is intact: {e}")))?;
    Ok((archive, true))
}

/// An archive that cannot be opened, in plain words first: what is wrong and
/// what to do, then the detail a bug report needs.
pub fn open_error(path: &Path, e: &strata_reader::Error) -> String {
    let shown = path.display();
    match e.class() {
        Some(ErrorClass::NotStrata) if e.detail().contains("empty") => {
            format!("{shown} is empty: not a Strata archive")
        }
        Some(ErrorClass::NotStrata) => format!("{shown} is {}", e.detail()),
        Some(ErrorClass::Truncated) => format!(
            "{shown} ends early (it is {} bytes; its end is cut or damaged): `strata salvage {shown} OUT` recovers \
             everything complete, and `strata verify` lists what is lost\n  detail: {e}",
            std::fs::metadata(path).map_or_else(|_| "?".to_string(), |m| output::grouped(m.len())),
        ),
        Some(ErrorClass::UnsupportedFeature) => format!("{shown}: {}", e.detail()),
        _ => format!("{shown}: {e}"),
    }
}

pub fn info(args: InfoArgs) -> Result<u8, Failure> {
    let archive = std::rc::Rc::new(open_archive(&args.archive)?);
    let label = args.archive.display().to_string();
    // What each image holds: its partition table and file systems (a few
    // chunks of each image are read).
    let volumes: Vec<Option<(Vec<String>, serde_json::Value)>> = archive
        .sections()
        .iter()
        .map(|section| match section {
            Section::Image(image) => Some(crate::volumes::describe(&archive, &image.name, &label)),
            Section::Tree(_) => None,
        })
        .collect();
    let header = archive.header();
    // Entries flagged unreadable, changed while read or lost in salvage, per
    // section: a walk of each tree's entry records.
    let flagged: Vec<Flagged> = archive
        .sections()
        .iter()
        .map(|section| match section {
            Section::Tree(tree) => flagged_entries(&archive, &tree.name),
            Section::Image(_) => Flagged::default(),
        })
        .collect();
    let sections: Vec<serde_json::Value> = archive
        .sections()
        .iter()
        .zip(&flagged)
        .zip(&volumes)
        .map(|((section, flagged), volumes)| match section {
            Section::Image(image) => {
                let free = image.free_bytes();
                let zero = (image.logical_size - image.end.data_bytes - image.end.lost_bytes).saturating_sub(free);
                json!({
                    "volumes": volumes.as_ref().map(|(_, json)| json.clone()),
                    "kind": "image",
                    "name": image.name,
                    "image": {
                        "logical_size": image.logical_size,
                        "sector_size": image.sector_size,
                        "chunk_size": image.chunk_size,
                        "data_bytes": image.end.data_bytes,
                        "zero_bytes": zero,
                        "free_bytes": free,
                        "used_blocks": image.used_blocks(),
                        "lost_bytes": image.end.lost_bytes,
                        "extents": image.end.extent_count,
                        "chunks": image.end.chunk_count,
                        "stored_bytes": image.end.chunk_bytes,
                        "lost_ranges": image.lost_ranges().iter().map(|r| json!([r.start, r.end])).collect::<Vec<_>>(),
                    }
                })
            }
            Section::Tree(tree) => json!({
                "kind": "files",
                "name": tree.name,
                "lost_entries": flagged.lost.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                "unreadable_entries": flagged.unreadable.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                "changed_entries": flagged.changed.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                "flagged_entries": flagged.counts_json(),
                "files": {
                    "entries": tree.end.entry_count,
                    "regular_files": tree.end.file_count,
                    "directories": tree.end.directory_count,
                    "content_bytes": tree.end.content_bytes,
                    "chunk_size": tree.begin.chunk_size,
                    "chunks": tree.end.chunk_count,
                    "stored_bytes": tree.end.chunk_bytes,
                    "captured": tree.begin.captured,
                }
            }),
        })
        .collect();
    // An incremental archive's ancestors (FORMAT.md 15): each is looked for
    // and bound (three small reads), so `info` says whether the chain is whole.
    let chain: Vec<(String, String, Result<String, strata_reader::Error>)> = archive
        .chain()
        .map(|chain| {
            chain
                .ancestors
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let status = archive.ancestor_status(i + 1).expect("listed").map(|p| p.display().to_string());
                    (a.name_lossy(), a.uuid_text(), status)
                })
                .collect()
        })
        .unwrap_or_default();
    let chain_json: Vec<serde_json::Value> = chain
        .iter()
        .enumerate()
        .map(|(i, (name, uuid, status))| {
            json!({
                "depth": i + 1,
                "name": name,
                "uuid": uuid,
                "found": status.as_ref().ok(),
                "problem": status.as_ref().err().map(|e| json!({
                    "class": e.class().map(|c| c.name()),
                    "detail": e.detail(),
                })),
            })
        })
        .collect();
    if args.json {
        output::print_json(&json!({
            "archive": args.archive.display().to_string(),
            "incremental": archive.chain().is_some(),
            "chain": chain_json,
            "format_version": format!("{}.{}", header.version_major, header.version_minor),
            "uuid": output::uuid(&header.archive_uuid),
            "created_ns": header.created_ns,
            "writer": header.writer_name(),
            "archive_size": archive.size(),
            "features": {
                "incompatible": header.incompatible_features,
                "compatible": header.compatible_features,
                "autoclear": header.autoclear_features,
            },
            "sections": sections,
        }));
        return Ok(0);
    }
    say!(
        "{}: Strata {}.{} archive, uuid {}, written {} by {}",
        args.archive.display(),
        header.version_major,
        header.version_minor,
        output::uuid(&header.archive_uuid),
        output::utc(header.created_ns),
        header.writer_name()
    );
    let required = Features::describe_unsupported(header.incompatible_features);
    say!(
        "required features: {}",
        if required.is_empty() { "none beyond 1.0".to_string() } else { required.join(", ") }
    );
    if !chain.is_empty() {
        say!(
            "incremental: stores only what its {} ancestor{} lack (the parent first):",
            chain.len(),
            if chain.len() == 1 { "" } else { "s" }
        );
        for (i, (name, uuid, status)) in chain.iter().enumerate() {
            match status {
                Ok(path) => say!("  {} {name} (uuid {uuid}), found at {path}", i + 1),
                Err(e) => {
                    say!("  {} {name} (uuid {uuid}): {} [{}]", i + 1, e.detail(), e.class().map_or("i/o", |c| c.name()))
                }
            }
        }
    }
    let given_back: u64 = archive
        .sections()
        .iter()
        .map(|s| match s {
            Section::Image(image) => image.logical_size,
            Section::Tree(tree) => tree.end.content_bytes,
        })
        .sum();
    say!(
        "{} section{}: {} stored for {} ({}: what restore and extract give back, over the archive's size)",
        archive.sections().len(),
        if archive.sections().len() == 1 { "" } else { "s" },
        output::size(archive.size()),
        output::size(given_back),
        output::ratio(given_back, archive.size())
    );
    for ((section, flagged), volumes) in archive.sections().iter().zip(&flagged).zip(&volumes) {
        match section {
            Section::Image(image) => {
                let ratio = format!(" ({})", output::ratio(image.logical_size, image.end.chunk_bytes));
                say!(
                    "  image  {:8} {}, {}-byte sectors, {} chunks of {}, {} data, {} stored{ratio}{}",
                    image.name,
                    output::size(image.logical_size),
                    image.sector_size,
                    output::grouped(image.end.chunk_count),
                    output::size(u64::from(image.chunk_size)),
                    output::size(image.end.data_bytes),
                    output::size(image.end.chunk_bytes),
                    if image.end.lost_bytes > 0 {
                        format!(", {} LOST in salvage", output::size(image.end.lost_bytes))
                    } else {
                        String::new()
                    }
                );
                for range in image.lost_ranges() {
                    say!("         lost in salvage: {}", output::byte_range(&range));
                }
                if image.used_blocks() {
                    say!(
                        "         used blocks only: {} free in its file systems was not stored (restores as zeros)",
                        output::size(image.free_bytes())
                    );
                }
                for line in volumes.iter().flat_map(|(lines, _)| lines) {
                    say!("         {line}");
                }
            }
            Section::Tree(tree) => {
                let words = flagged.words();
                say!(
                    "  files  {:8} {} entries ({} files, {} dirs), {}, {} stored ({}){}",
                    tree.name,
                    output::grouped(tree.end.entry_count),
                    output::grouped(tree.end.file_count),
                    output::grouped(tree.end.directory_count),
                    output::size(tree.end.content_bytes),
                    output::size(tree.end.chunk_bytes),
                    output::ratio(tree.end.content_bytes, tree.end.chunk_bytes),
                    if words.is_empty() { String::new() } else { format!("; {}", words.join(", ")) }
                );
                for (paths, what) in
                    [(&flagged.unreadable, "could not be read"), (&flagged.changed, "changed while read")]
                {
                    for path in paths.iter().take(50) {
                        say!("         {what}: {}", shown_path(path));
                    }
                    if paths.len() > 50 {
                        say!("         and {} more (info --json lists them all)", paths.len() - 50);
                    }
                }
                let lost = &flagged.lost;
                if !lost.is_empty() {
                    say!("         {} LOST in salvage:", output::grouped(lost.len() as u64));
                    for path in lost.iter().take(50) {
                        say!("         lost in salvage: {}", shown_path(path));
                    }
                    if lost.len() > 50 {
                        say!("         and {} more (info --json lists them all)", lost.len() - 50);
                    }
                }
            }
        }
    }
    Ok(0)
}

/// The entries of one tree that carry a flag recorded at backup time or by a
/// salvage (FORMAT.md 8.3), by path.
#[derive(Default)]
struct Flagged {
    /// Regular files whose content could not be read (flag bit 2).
    unreadable: Vec<Vec<u8>>,
    /// Regular files that changed while they were read, kept as read (bit 1).
    changed: Vec<Vec<u8>>,
    /// Entries lost in salvage (bit 3).
    lost: Vec<Vec<u8>>,
}

impl Flagged {
    /// The counts as `info --json` and `verify --json` give them (conformance.md).
    fn counts_json(&self) -> serde_json::Value {
        json!({
            "unreadable": self.unreadable.len(),
            "changed_while_read": self.changed.len(),
            "lost_in_salvage": self.lost.len(),
        })
    }

    /// The counts in plain words, for a summary line; empty when there are none.
    fn words(&self) -> Vec<String> {
        flag_words(self.unreadable.len(), self.changed.len(), self.lost.len())
    }
}

/// "2 files could not be read when the archive was written", and so on.
fn flag_words(unreadable: usize, changed: usize, lost: usize) -> Vec<String> {
    let files = |n: usize| if n == 1 { "1 file".to_string() } else { format!("{} files", output::grouped(n as u64)) };
    let mut words = Vec::new();
    if unreadable > 0 {
        words.push(format!("{} could not be read when the archive was written", files(unreadable)));
    }
    if changed > 0 {
        let verb = if changed == 1 { "it was" } else { "they were" };
        words.push(format!("{} changed while {verb} read (kept as read)", files(changed)));
    }
    if lost > 0 {
        let entries =
            if lost == 1 { "1 entry".to_string() } else { format!("{} entries", output::grouped(lost as u64)) };
        words.push(format!("{entries} recorded as lost in salvage"));
    }
    words
}

/// Entries of a tree flagged unreadable, changed while read (regular files
/// only: the bits mean nothing elsewhere) or lost in salvage, by path. Reads
/// the entry records, never file content.
fn flagged_entries(archive: &Archive<File>, name: &str) -> Flagged {
    let mut flagged = Flagged::default();
    let Ok(tree) = archive.tree(name) else {
        return flagged;
    };
    for entry in tree.entries().map_while(Result::ok) {
        if entry.is_unreadable() {
            flagged.unreadable.push(entry.path().to_vec());
        }
        if entry.changed_while_read() {
            flagged.changed.push(entry.path().to_vec());
        }
        if entry.lost_in_salvage() {
            flagged.lost.push(entry.path().to_vec());
        }
    }
    flagged
}

/// Section name and path, as `verify --json` lists flagged entries.
fn entries_json(entries: &[(String, Vec<u8>)]) -> Vec<serde_json::Value> {
    entries
        .iter()
        .map(|(section, path)| {
            json!({
                "section": section,
                "path": String::from_utf8_lossy(path),
                "path_hex": path.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            })
        })
        .collect()
}

/// How many entries of section `name` a list of flagged entries holds.
fn count_in(entries: &[(String, Vec<u8>)], name: &str) -> usize {
    entries.iter().filter(|(section, _)| section == name).count()
}

/// The JSON form of a verify report (spec/conformance.md).
pub fn report_json(path: &Path, report: &Report) -> serde_json::Value {
    let unsupported = report
        .problems
        .iter()
        .any(|p| matches!(p.class, ErrorClass::UnsupportedVersion | ErrorClass::UnsupportedFeature));
    let status = if report.is_clean() {
        "ok"
    } else if unsupported {
        "unsupported"
    } else if report.recognised {
        "damaged"
    } else {
        "unreadable"
    };
    json!({
        "archive": path.display().to_string(),
        "status": status,
        "problems": report.problems.iter().map(|p| json!({
            "class": p.class.name(),
            "offset": p.offset,
            "what": p.what,
            "detail": p.detail,
            "affects": p.affects.iter().map(|a| {
                let mut affected = json!({
                    "section": a.section,
                    "start": a.range.start,
                    "end": a.range.end,
                });
                if let Some(path) = &a.path {
                    affected["path"] = json!(String::from_utf8_lossy(path));
                }
                affected
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "sections": report.sections.iter().map(|s| {
            let mut section = json!({
                "kind": s.kind,
                "name": s.name,
                "logical_size": s.logical_size,
                "data_bytes": s.data_bytes,
                "lost_bytes": s.lost_bytes,
            });
            if s.kind == "image" {
                section["free_bytes"] = json!(s.free_bytes);
            }
            if s.kind == "files" {
                section["flagged_entries"] = json!({
                    "unreadable": count_in(&report.unreadable_entries, &s.name),
                    "changed_while_read": count_in(&report.changed_entries, &s.name),
                    "lost_in_salvage": count_in(&report.lost_entries, &s.name),
                });
            }
            section
        }).collect::<Vec<_>>(),
        "records": report.records,
        "chunks": report.chunks,
        "verified_bytes": report.verified_bytes,
        "archive_size": report.archive_size,
        "lost_entries": entries_json(&report.lost_entries),
        "unreadable_entries": entries_json(&report.unreadable_entries),
        "changed_entries": entries_json(&report.changed_entries),
    })
}

/// A tree path for people: the root, whose path is empty, says so.
fn shown_path(path: &[u8]) -> String {
    if path.is_empty() {
        "(the root folder)".to_string()
    } else {
        strata_format::escaped(path)
    }
}

/// The files a backup could not read or saw change, as `verify` lists them.
fn print_backup_flags(report: &Report) {
    const SHOWN: usize = 50;
    let (unreadable, changed) = (report.unreadable_entries.len(), report.changed_entries.len());
    for (entries, words) in [
        (&report.unreadable_entries, flag_words(unreadable, 0, 0)),
        (&report.changed_entries, flag_words(0, changed, 0)),
    ] {
        let count = entries.len();
        let Some(what) = words.first() else {
            continue;
        };
        say!("  {what}:");
        for (section, path) in entries.iter().take(SHOWN) {
            say!("    files {section}: {}", shown_path(path));
        }
        if count > SHOWN {
            say!("    and {} more (verify --json lists them all)", count - SHOWN);
        }
    }
}

/// The entries a salvage recorded as lost, as `verify` and `info` list them.
fn print_lost_entries(report: &Report) {
    const SHOWN: usize = 50;
    if report.lost_entries.is_empty() {
        return;
    }
    let count = report.lost_entries.len();
    say!("  {count} entr{} recorded as lost in salvage:", if count == 1 { "y" } else { "ies" });
    for (section, path) in report.lost_entries.iter().take(SHOWN) {
        say!("    files {section}: {}", shown_path(path));
    }
    if count > SHOWN {
        say!("    and {} more (verify --json lists them all)", count - SHOWN);
    }
}

pub fn verify(args: VerifyArgs) -> Result<u8, Failure> {
    if crate::is_stdio(&args.archive) {
        return Err(Failure::fatal("verify needs the archive as a file"));
    }
    let mut reports = Vec::new();
    let mut code = verify_one(&args.archive, args.json.then_some(&mut reports))?;
    if args.chain {
        code = code.max(verify_ancestors(&args.archive, args.json.then_some(&mut reports)));
    }
    match reports.len() {
        0 => {}
        1 if !args.chain => output::print_json(&reports[0]),
        _ => output::print_json(&serde_json::Value::Array(reports)),
    }
    Ok(code)
}

/// `verify --chain` after the archive itself: each ancestor it records, found
/// as every read verb finds it, verified in full as an archive of its own
/// (its own references into deeper ancestors included). Returns the worst
/// exit status.
fn verify_ancestors(archive: &Path, mut json: Option<&mut Vec<serde_json::Value>>) -> u8 {
    let ancestors = match open_archive(archive) {
        Ok(child) => match child.chain() {
            None => {
                say!("{}: not incremental: no ancestor to verify", archive.display());
                return 0;
            }
            Some(chain) => chain
                .ancestors
                .iter()
                .enumerate()
                .map(|(i, a)| (i + 1, a.name_lossy(), a.uuid_text(), child.ancestor_status(i + 1).expect("listed")))
                .collect::<Vec<_>>(),
        },
        Err(e) => {
            eprintln!(
                "strata: {}: its chain cannot be read, so no ancestor is verified: {}",
                archive.display(),
                e.message
            );
            return 2;
        }
    };
    let mut code = 0;
    for (depth, name, uuid, status) in ancestors {
        // A missing or different ancestor is damage to the chain, as the
        // archive's own report counts it (1); one that is found but cannot be
        // read as an archive is 2.
        let outcome = match status {
            Ok(path) => verify_one(&path, json.as_deref_mut()),
            Err(e) => Err(Failure {
                code: 1,
                message: format!(
                    "ancestor {depth} {name} (uuid {uuid}): {} [{}]",
                    e.detail(),
                    e.class().map_or("i/o", |c| c.name())
                ),
            }),
        };
        match outcome {
            Ok(c) => code = code.max(c),
            Err(failure) => {
                eprintln!("strata: {}", failure.message);
                if let Some(reports) = json.as_deref_mut() {
                    reports.push(json!({ "archive": name, "uuid": uuid, "error": failure.message }));
                }
                code = code.max(failure.code);
            }
        }
    }
    code
}

/// Verifies the archive at `path`: prints what it found, or, when `json` is
/// given, adds its report there instead. Returns the exit status (0 clean, 1
/// damaged, 2 not recognised).
fn verify_one(path: &Path, json: Option<&mut Vec<serde_json::Value>>) -> Result<u8, Failure> {
    let file = open_file(path)?;
    let size = file.metadata().map(|m| m.len()).ok();
    let bar = output::bar("verify", size, output::quiet() || json.is_some());
    let parents = crate::chain::search_for(path);
    let report = verify::verify_with_parents(&file, Limits::default(), &parents, &|n| bar.inc(n))
        .map_err(|e| Failure::fatal(format!("{}: {e}", path.display())))?;
    bar.finish_and_clear();
    let code = if report.is_clean() {
        0
    } else if report.recognised {
        1
    } else {
        2
    };
    if let Some(reports) = json {
        reports.push(report_json(path, &report));
        return Ok(code);
    }
    let name = path.display();
    // Facts the archive records about its entries: not damage.
    let mut facts =
        flag_words(report.unreadable_entries.len(), report.changed_entries.len(), report.lost_entries.len());
    // Used-blocks images are complete as recorded: their free space was never stored.
    for section in report.sections.iter().filter(|s| s.free_bytes > 0) {
        facts.push(format!(
            "image {} is used blocks only ({} free space not stored)",
            section.name,
            output::size(section.free_bytes)
        ));
    }
    if report.is_clean() {
        let lost: u64 = report.sections.iter().map(|s| s.lost_bytes).sum();
        if lost > 0 {
            facts.insert(0, format!("{} recorded as lost in salvage", output::size(lost)));
        }
        say!(
            "{name}: ok, {} section{}, {} records, {} chunks, {} verified{}",
            report.sections.len(),
            if report.sections.len() == 1 { "" } else { "s" },
            output::grouped(report.records),
            output::grouped(report.chunks),
            output::size(report.verified_bytes),
            if facts.is_empty() { String::new() } else { format!("; {}", facts.join(", ")) }
        );
        print_backup_flags(&report);
        print_lost_entries(&report);
        return Ok(0);
    }
    if !report.recognised {
        let detail = report.problems.first().map_or("not a Strata archive".to_string(), |p| p.detail.clone());
        return Err(Failure::fatal(format!("{name}: {detail}")));
    }
    let count = report.problems.len();
    say!(
        "{name}: damaged, {count} problem{}{}",
        if count == 1 { "" } else { "s" },
        if facts.is_empty() { String::new() } else { format!("; {}", facts.join(", ")) }
    );
    for problem in &report.problems {
        say!("  byte {}: {}: {} [{}]", output::grouped(problem.offset), problem.what, problem.detail, problem.class);
        for affected in &problem.affects {
            let (start, end) = (affected.range.start, affected.range.end);
            match &affected.path {
                None => say!(
                    "      image {}: bytes {}-{} unreadable ({})",
                    affected.section,
                    output::grouped(start),
                    output::grouped(end.saturating_sub(1)),
                    output::size(end - start)
                ),
                Some(path) if start == end => {
                    say!("      files {}: {} (its entry is lost)", affected.section, shown_path(path))
                }
                Some(path) => say!(
                    "      files {}: {}, bytes {}-{}",
                    affected.section,
                    shown_path(path),
                    output::grouped(start),
                    output::grouped(end.saturating_sub(1))
                ),
            }
        }
    }
    if report.archive_size > 0 {
        say!("everything else ({:.3}%) verified", 100.0 * report.verified_bytes as f64 / report.archive_size as f64);
    }
    // A cut loses more than the problems show: what came after it, sections
    // included, which only the index at the end could have named.
    if report.problems.iter().any(|p| p.class == ErrorClass::Truncated) {
        let open: Vec<&str> = report
            .problems
            .iter()
            .filter(|p| p.class == ErrorClass::Truncated)
            .filter_map(|p| p.affects.first().map(|a| a.section.as_str()))
            .filter(|s| !s.is_empty())
            .collect();
        say!(
            "the archive ends early at byte {}: {}any section written after that point is lost too, and cannot be named (the index that lists the sections is at the end); `strata salvage` keeps everything before the cut",
            output::grouped(report.archive_size),
            if open.is_empty() { String::new() } else { format!("the end of {} is lost, ", open.join(", ")) }
        );
    }
    print_backup_flags(&report);
    print_lost_entries(&report);
    Ok(code)
}

pub fn cat(args: CatArgs) -> Result<u8, Failure> {
    let (archive, damaged) = open_intact(&args.archive)?;
    let label = args.archive.display().to_string();
    if let (Some(image), Some(path)) = (&args.image, &args.path) {
        return cat_image_file(archive, &label, image, args.partition, path).map(|code| code.max(u8::from(damaged)));
    }
    if let Some(path) = &args.path {
        let files = crate::files::pick_section(&archive, args.files.as_deref(), SectionKind::Files, &label)?;
        return cat_file(&archive, &args.archive, &files, path).map(|code| code.max(u8::from(damaged)));
    }
    if args.image.is_none() {
        return Err(Failure::fatal(
            "say what to write: a file (strata cat ARCHIVE PATH) or an image's bytes (strata cat ARCHIVE --image NAME)",
        ));
    }
    let name = crate::files::pick_section(&archive, args.image.as_deref(), SectionKind::Image, &label)?;
    let image = archive.image(&name).map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
    if args.offset > image.len() {
        return Err(Failure::fatal(format!(
            "--offset {} is past the end of image {} ({} bytes)",
            args.offset,
            image.name(),
            image.len()
        )));
    }
    let end = match args.length {
        Some(length) => args.offset.checked_add(length).filter(|&e| e <= image.len()).ok_or_else(|| {
            Failure::fatal(format!(
                "--offset {} --length {length} runs past the end of image {} ({} bytes)",
                args.offset,
                image.name(),
                image.len()
            ))
        })?,
        None => image.len(),
    };
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = args.offset;
    while at < end {
        let take = (end - at).min(buf.len() as u64) as usize;
        let n = image
            .read_at(at, &mut buf[..take])
            .map_err(|e| Failure::fatal(format!("{}: {e}", args.archive.display())))?;
        out.write_all(&buf[..n]).map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
        at += n as u64;
        if n == 0 {
            break;
        }
    }
    out.flush().map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
    Ok(u8::from(damaged))
}

/// `cat --image NAME [--partition N] PATH`: a file of the file system inside
/// an image section; only the chunks holding its metadata and blocks are read.
///
/// They are read with [`Checks::Partial`](crate::volumes::Checks::Partial): a
/// chunk read once (most of them, for one file) is decoded only up to the
/// bytes needed, so its BLAKE3 is not checked. What guarantees the file's
/// bytes then is the chunk's record CRC, which covers every stored byte of the
/// chunk, and the zstd frame rules (FORMAT.md 10.1, step 4); a chunk read a
/// second time is decoded whole and checked by its BLAKE3. A file system has
/// no digest of its files to check them by, as a file tree has (10.1, step 5).
fn cat_image_file(
    archive: Archive<File>,
    label: &str,
    image: &str,
    partition: Option<u32>,
    path: &std::ffi::OsStr,
) -> Result<u8, Failure> {
    let archive = std::rc::Rc::new(archive);
    let opened = crate::volumes::open(&archive, Some(image), partition, crate::volumes::Checks::Partial, label)?;
    let wanted = &crate::files::clean(path)[..];
    let mut out = io::stdout().lock();
    let mut written = Ok(());
    let mut started = false;
    // The path is looked up once, by the read: each lookup reads the inodes
    // and directories on the way again, which the file system's own cache of
    // blocks does not always hold.
    let read = opened.fs.read_file(wanted, &mut |bytes| {
        started = true;
        written = out.write_all(bytes);
        written
            .as_ref()
            .map_err(|e| strata_disk::Error::new(strata_disk::ErrorKind::Io, "standard output", e.to_string()))?;
        Ok(())
    });
    written.map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
    if let Err(e) = read {
        // A directory says so in the words of `list`, whatever the file
        // system's reader said.
        let directory =
            !started && opened.fs.node(wanted).is_ok_and(|node| node.kind == strata_disk::NodeKind::Directory);
        if directory {
            return Err(Failure::fatal(format!(
                "{} in {} is a directory: `strata list` shows it",
                strata_format::escaped(wanted),
                opened.shown()
            )));
        }
        return Err(Failure::fatal(format!("{label}: {}: {e}", opened.shown())));
    }
    out.flush().map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
    Ok(0)
}

/// `cat --files NAME PATH`: one file's content (a hard link's is its file's),
/// found by the lookup of FORMAT.md 8.5 and checked as the reader checks it
/// (10.1, step 5): each chunk before its bytes are given, the file's digest
/// at its end (a fault there is exit 2 after the bytes given, as `zstd -dc`
/// and `tar -xO` report a fault found late). PATH is bytes.
fn cat_file(archive: &Archive<File>, label: &Path, files: &str, path: &std::ffi::OsStr) -> Result<u8, Failure> {
    let label = label.display();
    let tree = archive.tree(files).map_err(|_| Failure::fatal(format!("{label} has no file tree named {files:?}")))?;
    let wanted = crate::files::clean(path);
    let shown = strata_format::escaped(&wanted);
    let entry = tree
        .lookup(&wanted)
        .map_err(|e| Failure::fatal(format!("{label}: {e}")))?
        .ok_or_else(|| Failure::fatal(format!("{shown}: not in files {files}")))?;
    let mut file = match tree.open(&entry) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotAFile => {
            return Err(Failure::fatal(format!("{shown} is a {}, not a regular file", entry.kind().name())))
        }
        // What the backup or a salvage recorded about the file (FORMAT.md
        // 8.3): no content to give is exit 1 with nothing written, as
        // extraction skips it.
        Err(e) if e.kind() == ErrorKind::NotStored => {
            return Err(Failure { code: 1, message: format!("{shown} in files {files}: {}", e.detail()) })
        }
        Err(e) => return Err(Failure::fatal(format!("{label}: files {files}: {shown}: {e}"))),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Failure::fatal(format!("{label}: files {files}: {shown}: {e}")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
    }
    out.flush().map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
    if file.changed_while_read() {
        eprintln!(
            "warning: {shown} in files {files}: it changed while it was read when the archive was written; written as read"
        );
        return Ok(1);
    }
    Ok(0)
}
