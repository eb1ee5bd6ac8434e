//! `strata restore`: an image back to a file, a device, or standard output.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use clap::Args;
use strata_reader::sink::{FileSink, ImageSink, StreamSink};
use strata_reader::{stream, Archive, ErrorClass, ErrorKind, Limits};

use crate::files::SectionKind;

use crate::atomic::{AtomicFile, BackgroundSync};
use crate::inspect::open_file;
use crate::{device, output, Failure};

#[derive(Args)]
pub struct RestoreArgs {
    /// The archive, or `-` to read it front to back from standard input.
    archive: PathBuf,
    /// The image section to restore (may be left out when the archive holds one).
    #[arg(long)]
    image: Option<String>,
    /// Where to: a file (written atomically; zeros stay holes), a block device
    /// (must be at least as large as the image), or `-` for standard output.
    dest: PathBuf,
    /// Replace an existing file; write to a terminal; write to a block device
    /// even if it is mounted read-write.
    #[arg(long, short)]
    force: bool,
    /// Print the summary as JSON on stdout (not with `-` as the destination).
    #[arg(long)]
    json: bool,
}

enum Target {
    Stdout,
    Device(File),
    NewFile(AtomicFile),
}

fn open_target(dest: &Path, force: bool) -> Result<Target, Failure> {
    if crate::is_stdio(dest) {
        if io::IsTerminal::is_terminal(&io::stdout()) && !force {
            return Err(Failure::fatal(
                "refusing to write an image to a terminal: redirect it (> disk.img) or use --force",
            ));
        }
        return Ok(Target::Stdout);
    }
    let is_device = std::fs::metadata(dest).map(|m| m.file_type().is_block_device()).unwrap_or(false);
    if is_device {
        device::refuse_if_mounted(dest, force, "overwrite")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dest)
            .map_err(|e| Failure::fatal(format!("cannot open {}: {e}", dest.display())))?;
        return Ok(Target::Device(file));
    }
    crate::atomic::check_output(dest, force)?;
    Ok(Target::NewFile(AtomicFile::create(dest)?))
}

/// Restores into `file` (a device, or the temporary of a new file) through
/// `run`, whole aligned blocks through `direct` (the same file opened with
/// `O_DIRECT`) where given, and keeping the writeback of the rest going behind
/// the restore: restored bytes (holes included, which cost a sync nothing) wake
/// a background sync, so the final sync has little left to write.
fn write_synced(
    file: File,
    direct: Option<File>,
    dest: &Path,
    run: impl FnOnce(&mut dyn ImageSink, &(dyn Fn(u64) + Sync)) -> Result<u64, Failure>,
) -> Result<u64, Failure> {
    let shown = dest.display();
    let sync = BackgroundSync::start(&file).map_err(|e| Failure::fatal(format!("{shown}: {e}")))?;
    let mut sink = FileSink::new(file).map_err(|e| Failure::fatal(format!("{shown}: {e}")))?;
    if let Some(direct) = direct {
        sink = sink.with_direct(direct);
    }
    let size = run(&mut sink, &|n| sync.wrote(n))?;
    sync.finish().map_err(|e| Failure::fatal(format!("syncing {shown}: {e}")))?;
    Ok(size)
}

pub fn run(args: RestoreArgs) -> Result<u8, Failure> {
    let label = args.archive.display().to_string();
    if args.json && crate::is_stdio(&args.dest) {
        return Err(Failure::fatal("--json prints on standard output, where `-` writes the image: give a file"));
    }
    let started = std::time::Instant::now();
    if !crate::is_stdio(&args.archive) && args.archive.is_dir() {
        return Err(Failure::fatal(format!("{label} is a folder, not an archive")));
    }
    // Random access when the archive is a file with an intact index; front to back
    // when it comes from a pipe, or when the index is damaged.
    let archive = if crate::is_stdio(&args.archive) {
        None
    } else {
        let file = open_file(&args.archive)?;
        match Archive::new_with_parents(file, Limits::default(), crate::chain::search_for(&args.archive)) {
            Ok(archive) => Some(archive),
            // Not an archive at all, or one this reader cannot read: reading it
            // front to back would only say so a second time.
            Err(e) if matches!(e.class(), Some(ErrorClass::NotStrata | ErrorClass::UnsupportedFeature)) => {
                return Err(Failure::fatal(crate::inspect::open_error(&args.archive, &e)));
            }
            Err(e) => {
                eprintln!("strata: {label}: {e}; reading the archive front to back instead");
                None
            }
        }
    };
    let image_name = match (&args.image, &archive) {
        (Some(name), _) => name.clone(),
        (None, Some(archive)) => crate::files::pick_section(archive, None, SectionKind::Image, &label)?,
        (None, None) => {
            return Err(Failure::fatal("reading an archive front to back needs the section's name: add --image NAME"))
        }
    };
    let image_name = image_name.as_str();
    let total = archive.as_ref().and_then(|a| a.image(image_name).ok()).map(|i| i.len());
    if let Some(archive) = &archive {
        if total.is_none() {
            crate::files::pick_section(archive, Some(image_name), SectionKind::Image, &label)?;
        }
    }
    // Checked once the archive and the section are known to be there: nothing
    // is created for a typo.
    let target = open_target(&args.dest, args.force)?;
    // Ranges a salvage recorded as lost restore as zeros; the user is told which
    // (FORMAT.md 7: a reader reports them), whatever --quiet says.
    let lost = archive.as_ref().and_then(|a| a.image(image_name).ok()).map(|i| i.lost_ranges()).unwrap_or_default();
    let bar = output::bar(image_name, total, output::quiet() || matches!(target, Target::Stdout));
    let run = |sink: &mut dyn ImageSink, wrote: &(dyn Fn(u64) + Sync)| -> Result<u64, Failure> {
        let progress = |n| {
            bar.inc(n);
            wrote(n);
        };
        let result = match &archive {
            Some(archive) => {
                archive.image(image_name).and_then(|image| image.restore_to(sink, &progress).map(|()| image.len()))
            }
            None => {
                let input: Box<dyn io::Read> = if crate::is_stdio(&args.archive) {
                    Box::new(io::stdin().lock())
                } else {
                    Box::new(open_file(&args.archive)?)
                };
                stream::restore_image_with_parents(
                    BufReader::with_capacity(1 << 20, input),
                    image_name,
                    sink,
                    Limits::default(),
                    &crate::chain::search_for(&args.archive),
                    &progress,
                )
            }
        };
        // A failure of the destination (full, read-only) names the destination.
        let place = |e: &strata_reader::Error| {
            if e.kind() == ErrorKind::Io {
                args.dest.display().to_string()
            } else {
                label.clone()
            }
        };
        result.map_err(|e| Failure::fatal(format!("{}: {e}", place(&e))))
    };
    let size = match target {
        Target::Stdout => {
            let mut sink = StreamSink::new(BufWriter::with_capacity(1 << 20, io::stdout().lock()));
            run(&mut sink, &|_| {})?
        }
        Target::Device(file) => write_synced(file, None, &args.dest, run)?,
        Target::NewFile(atomic) => {
            let size = write_synced(atomic.file()?, atomic.open_direct(), &args.dest, run)?;
            atomic.commit()?;
            size
        }
    };
    bar.finish_and_clear();
    for range in &lost {
        eprintln!(
            "strata: note: image {}: {} was lost in salvage, restored as zeros",
            image_name,
            output::byte_range(range)
        );
    }
    if args.json {
        output::print_json(&serde_json::json!({
            "archive": label,
            "image": image_name,
            "destination": args.dest.display().to_string(),
            "size": size,
            "lost_in_salvage": lost.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        }));
    }
    // The one-line summary stays with --quiet, as for every command.
    {
        eprintln!("{}: restored image {} ({})", args.dest.display(), image_name, output::size(size));
    }
    Ok(0)
}
