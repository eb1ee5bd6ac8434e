//! `strata salvage`: everything intact from a damaged archive, into a new valid one.
//! The work is in `strata-salvage`; this prints what was kept and lost.

use std::path::PathBuf;

use clap::Args;
use strata_reader::Limits;
use strata_salvage::{Outcome, SalvageError};
use strata_writer::WriterOptions;

use crate::atomic::AtomicFile;
use crate::create::{random_uuid, BarProgress};
use crate::inspect::open_file;
use crate::{output, Failure};

#[derive(Args)]
pub struct SalvageArgs {
    /// The damaged archive.
    damaged: PathBuf,
    /// The new archive to write (never the damaged one).
    out: PathBuf,
    /// Print what was kept and lost as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FlattenArgs {
    /// An incremental archive (made with `create --parent`).
    archive: PathBuf,
    /// The self-contained archive to write: the same sections, with every
    /// chunk taken from the ancestors stored in it.
    out: PathBuf,
}

/// `strata flatten`: a self-contained copy of an incremental archive (FORMAT.md
/// 15.7), for starting a new chain or keeping one file. It is salvage of an
/// intact archive; anything that cannot be read whole is an error, and no
/// archive is left under OUT.
pub fn flatten(args: FlattenArgs) -> Result<u8, Failure> {
    let label = args.archive.display().to_string();
    if args.archive == args.out {
        return Err(Failure::fatal("flatten writes a new archive: give another name for OUT"));
    }
    // Refused early and in plain words when an ancestor is missing or wrong.
    let archive = crate::inspect::open_archive(&args.archive)?;
    if archive.chain().is_none() {
        return Err(Failure::fatal(format!("{label} is not incremental: it is self-contained already")));
    }
    archive.check_ancestors().map_err(|e| Failure::fatal(format!("{label}: {}", e.detail())))?;
    let file = open_file(&args.archive)?;
    let created_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let atomic = AtomicFile::create(&args.out)?;
    let bar = output::bar("flatten", None, output::quiet());
    let (out, outcome) = strata_salvage::salvage_with_parents(
        &file,
        atomic.writer()?,
        WriterOptions::new(random_uuid()?, created_ns),
        Limits::default(),
        &crate::chain::search_for(&args.archive),
        &|_| {},
        &BarProgress(bar.clone()),
    )
    .map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
    bar.finish_and_clear();
    if outcome.lost_anything() {
        print_outcome(&outcome);
        return Err(Failure::fatal(format!(
            "{label} is damaged: nothing was written to {} (`strata salvage` keeps what is intact)",
            args.out.display()
        )));
    }
    atomic.commit_written(out)?;
    eprintln!(
        "{}: self-contained copy of {label}, {} written",
        args.out.display(),
        output::size(outcome.archive_length)
    );
    Ok(0)
}

pub fn run(args: SalvageArgs) -> Result<u8, Failure> {
    let label = args.damaged.display().to_string();
    if args.damaged == args.out {
        return Err(Failure::fatal("salvage writes a new archive: give another name for OUT"));
    }
    let file = open_file(&args.damaged)?;
    let size = file.metadata().map(|m| m.len()).ok();
    let scan_bar = output::bar("scan", size, output::quiet());
    let write_bar = output::bar("write", None, output::quiet());
    let created_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let atomic = AtomicFile::create(&args.out)?;
    let out = atomic.writer()?;
    let result = strata_salvage::salvage_with_parents(
        &file,
        out,
        WriterOptions::new(random_uuid()?, created_ns),
        Limits::default(),
        &crate::chain::search_for(&args.damaged),
        &|n| scan_bar.inc(n),
        &BarProgress(write_bar.clone()),
    );
    scan_bar.finish_and_clear();
    write_bar.finish_and_clear();
    let (out, outcome) = result.map_err(|e| match e {
        SalvageError::Write(e) => Failure::fatal(format!("{}: {e}", args.out.display())),
        e => Failure::fatal(format!("{label}: {e}")),
    })?;
    atomic.commit_written(out)?;
    if args.json {
        print_json(&outcome, &label, &args.out);
    }
    print_outcome(&outcome);
    let sections = outcome.images.len() + outcome.trees.len();
    let problems = outcome.report.problems.len();
    if outcome.report.problems.iter().any(|p| p.class == strata_reader::ErrorClass::Truncated) {
        eprintln!(
            "{label} ends early: any section written after the cut is lost too, and cannot be named (the index that lists the sections is at the end)"
        );
    }
    eprintln!(
        "{}: {sections} section{} salvaged from {problems} problem{} in {label}; {} written",
        args.out.display(),
        if sections == 1 { "" } else { "s" },
        if problems == 1 { "" } else { "s" },
        output::size(outcome.archive_length)
    );
    Ok(u8::from(outcome.lost_anything()))
}

fn print_json(outcome: &Outcome, damaged: &str, out: &std::path::Path) {
    let text = |path: &[u8]| String::from_utf8_lossy(path).into_owned();
    let images: Vec<serde_json::Value> = outcome
        .images
        .iter()
        .map(|i| {
            serde_json::json!({
                "kind": "image", "name": i.name, "logical_size": i.logical_size, "data_bytes": i.data_bytes,
                "lost": i.lost.iter().map(|(start, end)| [start, end]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let trees: Vec<serde_json::Value> = outcome
        .trees
        .iter()
        .map(|t| {
            serde_json::json!({
                "kind": "files", "name": t.name, "entries_kept": t.entries,
                "lost": t.lost.iter().map(|l| serde_json::json!({"path": text(&l.path), "why": l.why})).collect::<Vec<_>>(),
                "unnamed_lost": t.unnamed_lost, "end_lost": t.end_lost,
                "content_lost": t.content_lost.iter().map(|p| text(p)).collect::<Vec<_>>(),
                "moved": t.relocated.iter().map(|p| text(p)).collect::<Vec<_>>(),
                "made_up": t.made_up.iter().map(|p| text(p)).collect::<Vec<_>>(),
            })
        })
        .collect();
    output::print_json(&serde_json::json!({
        "damaged": damaged,
        "out": out.display().to_string(),
        "archive_size": outcome.archive_length,
        "problems": outcome.report.problems.len(),
        "lost_anything": outcome.lost_anything(),
        "sections": images.into_iter().chain(trees).collect::<Vec<_>>(),
    }));
}

fn print_outcome(outcome: &Outcome) {
    for image in &outcome.images {
        let lost: u64 = image.lost.iter().map(|(start, end)| end - start).sum();
        // --quiet keeps what was lost (warnings), not what was kept.
        if output::quiet() && lost == 0 {
            continue;
        }
        eprintln!(
            "image {}: {} of {} kept ({} data){}",
            image.name,
            output::size(image.logical_size - lost),
            output::size(image.logical_size),
            output::size(image.data_bytes),
            if lost == 0 { String::new() } else { format!(", {} lost:", output::size(lost)) }
        );
        for (start, end) in &image.lost {
            eprintln!("    {} lost", output::byte_range(&(*start..*end)));
        }
    }
    let shown = |path: &[u8]| strata_format::escaped(path);
    for tree in &outcome.trees {
        let intact = tree.lost.is_empty()
            && !tree.end_lost
            && tree.unnamed_lost == 0
            && tree.content_lost.is_empty()
            && tree.relocated.is_empty()
            && tree.made_up.is_empty();
        if output::quiet() && intact {
            continue;
        }
        eprintln!(
            "files {}: {} kept; {} lost, {} with damaged content, {} moved to lost+found",
            tree.name,
            output::count(tree.entries, "entry", "entries"),
            tree.lost.len() as u64 + tree.unnamed_lost,
            tree.content_lost.len(),
            tree.relocated.len()
        );
        for lost in &tree.lost {
            eprintln!("    lost: {} ({})", shown(&lost.path), lost.why);
        }
        if tree.end_lost {
            eprintln!("    lost: the section's end, and whatever entries followed the last one kept");
        }
        if tree.unnamed_lost > 0 {
            eprintln!("    lost: {} more entries no surviving record names", tree.unnamed_lost);
        }
        for path in &tree.content_lost {
            eprintln!("    content lost: {} (kept as an entry whose content could not be read)", shown(path));
        }
        for path in &tree.relocated {
            eprintln!("    moved: {} (its folder was lost)", shown(path));
        }
        for path in &tree.made_up {
            eprintln!("    folder made up: {} (its entry was lost)", shown(path));
        }
    }
}
