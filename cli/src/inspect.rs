//! `strata info`, `strata verify`, `strata cat`: reading without restoring.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use strata_format::{ErrorClass, Features};
use strata_reader::verify::{self, Report};
use strata_reader::{Archive, Limits, Section};

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
    /// Print JSON (schema in spec/conformance.md).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
pub struct CatArgs {
    /// The archive.
    archive: PathBuf,
    /// The image section to read.
    #[arg(long, required_unless_present = "files", conflicts_with = "files")]
    image: Option<String>,
    /// The file-tree section to read PATH from.
    #[arg(long, requires = "path")]
    files: Option<String>,
    /// With --files: the file to write, relative to the section's root.
    path: Option<String>,
    /// First image byte to write.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// How many bytes to write (default: to the end of the image).
    #[arg(long)]
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
    let file = open_file(path)?;
    Archive::open(file).map_err(|e| Failure::fatal(format!("{}: {e}", path.display())))
}

pub fn info(args: InfoArgs) -> Result<u8, Failure> {
    let archive = open_archive(&args.archive)?;
    let header = archive.header();
    // Entries lost in salvage, per section: a walk of each tree's entry records.
    let lost: Vec<Vec<Vec<u8>>> = archive
        .sections()
        .iter()
        .map(|section| match section {
            Section::Tree(tree) => lost_entries(&archive, tree),
            Section::Image(_) => Vec::new(),
        })
        .collect();
    let sections: Vec<serde_json::Value> = archive
        .sections()
        .iter()
        .zip(&lost)
        .map(|(section, lost)| match section {
            Section::Image(image) => {
                let zero = image.logical_size - image.end.data_bytes - image.end.lost_bytes;
                json!({
                    "kind": "image",
                    "name": image.name,
                    "image": {
                        "logical_size": image.logical_size,
                        "sector_size": image.sector_size,
                        "chunk_size": image.chunk_size,
                        "data_bytes": image.end.data_bytes,
                        "zero_bytes": zero,
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
                "lost_entries": lost.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
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
    if args.json {
        output::print_json(&json!({
            "archive": args.archive.display().to_string(),
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
    for (section, lost) in archive.sections().iter().zip(&lost) {
        match section {
            Section::Image(image) => {
                let ratio = if image.end.chunk_bytes > 0 {
                    format!(", {:.2}x", image.end.data_bytes as f64 / image.end.chunk_bytes as f64)
                } else {
                    String::new()
                };
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
            }
            Section::Tree(tree) => {
                say!(
                    "  files  {:8} {} entries ({} files, {} dirs), {}, {} stored",
                    tree.name,
                    output::grouped(tree.end.entry_count),
                    output::grouped(tree.end.file_count),
                    output::grouped(tree.end.directory_count),
                    output::size(tree.end.content_bytes),
                    output::size(tree.end.chunk_bytes)
                );
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

/// Entries of a tree recorded as lost in salvage (flag bit 3), by path. Reads
/// the entry records, never file content.
fn lost_entries(archive: &Archive<File>, tree: &strata_reader::TreeSection) -> Vec<Vec<u8>> {
    let mut lost = Vec::new();
    let _ = archive.walk_tree(tree, |item| {
        if item.entry.flags & strata_format::files::EntryFlags::LOST_IN_SALVAGE != 0 {
            lost.push(item.path);
        }
        Ok(())
    });
    lost
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
        "sections": report.sections.iter().map(|s| json!({
            "kind": s.kind,
            "name": s.name,
            "logical_size": s.logical_size,
            "data_bytes": s.data_bytes,
            "lost_bytes": s.lost_bytes,
        })).collect::<Vec<_>>(),
        "records": report.records,
        "chunks": report.chunks,
        "verified_bytes": report.verified_bytes,
        "archive_size": report.archive_size,
        "lost_entries": report.lost_entries.iter().map(|(section, path)| json!({
            "section": section,
            "path": String::from_utf8_lossy(path),
            "path_hex": path.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        })).collect::<Vec<_>>(),
    })
}

/// A tree path for people: the root, whose path is empty, says so.
fn shown_path(path: &[u8]) -> String {
    if path.is_empty() {
        "(the root folder)".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
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
    let file = open_file(&args.archive)?;
    let size = file.metadata().map(|m| m.len()).ok();
    let bar = output::bar("verify", size, args.quiet || args.json);
    let report = verify::verify(&file, Limits::default(), &|n| bar.inc(n))
        .map_err(|e| Failure::fatal(format!("{}: {e}", args.archive.display())))?;
    bar.finish_and_clear();
    let code = if report.is_clean() {
        0
    } else if report.recognised {
        1
    } else {
        2
    };
    if args.json {
        output::print_json(&report_json(&args.archive, &report));
        return Ok(code);
    }
    let name = args.archive.display();
    if report.is_clean() {
        let lost: u64 = report.sections.iter().map(|s| s.lost_bytes).sum();
        say!(
            "{name}: ok, {} section{}, {} records, {} chunks, {} verified{}",
            report.sections.len(),
            if report.sections.len() == 1 { "" } else { "s" },
            output::grouped(report.records),
            output::grouped(report.chunks),
            output::size(report.verified_bytes),
            if lost > 0 { format!("; {} recorded as lost in salvage", output::size(lost)) } else { String::new() }
        );
        print_lost_entries(&report);
        return Ok(0);
    }
    if !report.recognised {
        let detail = report.problems.first().map_or("not a Strata archive".to_string(), |p| p.detail.clone());
        return Err(Failure::fatal(format!("{name}: {detail}")));
    }
    let count = report.problems.len();
    say!("{name}: damaged, {count} problem{}", if count == 1 { "" } else { "s" });
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
                    say!("      files {}: {} (its entry is lost)", affected.section, String::from_utf8_lossy(path))
                }
                Some(path) => say!(
                    "      files {}: {}, bytes {}-{}",
                    affected.section,
                    String::from_utf8_lossy(path),
                    output::grouped(start),
                    output::grouped(end.saturating_sub(1))
                ),
            }
        }
    }
    if report.archive_size > 0 {
        say!("everything else ({:.3}%) verified", 100.0 * report.verified_bytes as f64 / report.archive_size as f64);
    }
    Ok(code)
}

pub fn cat(args: CatArgs) -> Result<u8, Failure> {
    let archive = open_archive(&args.archive)?;
    if let (Some(files), Some(path)) = (&args.files, &args.path) {
        return cat_file(&archive, &args.archive, files, path);
    }
    let name = args.image.as_deref().unwrap_or_default();
    let image = archive
        .image(name)
        .ok_or_else(|| Failure::fatal(format!("{} has no image named {name:?}", args.archive.display())))?;
    if args.offset > image.logical_size {
        return Err(Failure::fatal(format!(
            "--offset {} is past the end of image {} ({} bytes)",
            args.offset, image.name, image.logical_size
        )));
    }
    let end = match args.length {
        Some(length) => args.offset.checked_add(length).filter(|&e| e <= image.logical_size).ok_or_else(|| {
            Failure::fatal(format!(
                "--offset {} --length {length} runs past the end of image {} ({} bytes)",
                args.offset, image.name, image.logical_size
            ))
        })?,
        None => image.logical_size,
    };
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = args.offset;
    while at < end {
        let take = (end - at).min(buf.len() as u64) as usize;
        let n = archive
            .read_image_at(image, at, &mut buf[..take])
            .map_err(|e| Failure::fatal(format!("{}: {e}", args.archive.display())))?;
        out.write_all(&buf[..n]).map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
        at += n as u64;
        if n == 0 {
            break;
        }
    }
    out.flush().map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
    Ok(0)
}

/// `cat --files NAME PATH`: one file's content, checked against its BLAKE3.
fn cat_file(archive: &Archive<File>, label: &Path, files: &str, path: &str) -> Result<u8, Failure> {
    let label = label.display();
    let tree =
        archive.tree(files).ok_or_else(|| Failure::fatal(format!("{label} has no file tree named {files:?}")))?;
    let wanted = path.trim_matches('/').trim_start_matches("./");
    let entry = archive
        .lookup(tree, wanted.as_bytes())
        .map_err(|e| Failure::fatal(format!("{label}: {e}")))?
        .ok_or_else(|| Failure::fatal(format!("{wanted}: not in files {files}")))?;
    let entry = match entry.kind {
        strata_format::files::EntryKind::File => entry,
        strata_format::files::EntryKind::Hardlink => {
            // The content is the first entry's: find it among the entries.
            let mut target = None;
            archive
                .walk_tree(tree, |item| {
                    if item.entry.entry_id == entry.link_id {
                        target = Some(item.entry);
                    }
                    Ok(())
                })
                .map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
            target.ok_or_else(|| Failure::fatal(format!("{wanted}: its hard link target is missing")))?
        }
        other => return Err(Failure::fatal(format!("{wanted} is a {}, not a regular file", other.name()))),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
    archive
        .read_file(tree, &entry, &mut out)
        .map_err(|e| Failure::fatal(format!("{label}: files {files}: {wanted}: {e}")))?;
    out.flush().map_err(|e| Failure::fatal(format!("writing to standard output: {e}")))?;
    Ok(0)
}
