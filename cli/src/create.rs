//! `strata create`: write an archive, atomically when it goes to a file.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use strata_writer::{ArchiveWriter, FileSource, ImageSource, Progress, StreamSource, TreeOptions, WriterOptions};

use crate::atomic::AtomicFile;
use crate::{device, output, Failure};

#[derive(Args)]
pub struct CreateArgs {
    /// The archive to write, or `-` for standard output.
    archive: PathBuf,
    /// Add a block-image section NAME from SOURCE (a file, a block device, or `-` for
    /// standard input). Repeatable.
    #[arg(long = "image", value_name = "NAME=SOURCE", value_parser = crate::parse_named_path, required_unless_present = "trees")]
    images: Vec<(String, PathBuf)>,
    /// Add a file-tree section NAME holding the folder DIR. Repeatable.
    #[arg(long = "files", value_name = "NAME=DIR", value_parser = crate::parse_named_path)]
    trees: Vec<(String, PathBuf)>,
    /// Leave out files and folders matching GLOB: matched against the name, or,
    /// when GLOB holds a `/`, against the path relative to the tree's root. Repeatable.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Do not descend into folders on another file system than the tree's root.
    #[arg(long)]
    one_file_system: bool,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    level: i32,
    /// Chunk size for images: a power of two from 4K to 16M (suffixes K and M).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    chunk_size: u32,
    /// Worker threads for hashing and compression (0: one per core). The archive is
    /// the same whatever the number.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Fix the archive UUID (32 hex digits, dashes allowed) for reproducible output.
    #[arg(long)]
    uuid: Option<String>,
    /// Fix the creation time, in seconds since the Unix epoch, for reproducible
    /// output (default: $SOURCE_DATE_EPOCH if set, else now).
    #[arg(long)]
    created: Option<i64>,
    /// Image a block device even if it is mounted read-write.
    #[arg(long)]
    force: bool,
    /// No progress bars; only the summary and warnings, on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_size(value: &str) -> Result<u32, String> {
    let (digits, scale) = match value.as_bytes().last() {
        Some(b'K' | b'k') => (&value[..value.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&value[..value.len() - 1], 1u64 << 20),
        _ => (value, 1),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{value:?} is not a size"))?;
    u32::try_from(n * scale).map_err(|_| format!("{value:?} is too large"))
}

fn parse_uuid(value: &str) -> Result<[u8; 16], Failure> {
    let hex: String = value.chars().filter(|c| *c != '-').collect();
    let bad = || Failure::fatal(format!("--uuid {value:?}: expected 32 hexadecimal digits"));
    if hex.len() != 32 {
        return Err(bad());
    }
    let mut uuid = [0u8; 16];
    for (i, byte) in uuid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(uuid)
}

pub(crate) fn random_uuid() -> Result<[u8; 16], Failure> {
    let mut uuid = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut uuid))
        .map_err(|e| Failure::fatal(format!("reading /dev/urandom for the archive UUID: {e}")))?;
    // RFC 4122 version 4, variant 1.
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    Ok(uuid)
}

pub(crate) struct BarProgress(pub(crate) indicatif::ProgressBar);

impl Progress for BarProgress {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// The archive's destination: a file written atomically, or standard output.
enum Destination {
    File(AtomicFile),
    Stdout,
}

pub fn run(args: CreateArgs) -> Result<u8, Failure> {
    let started = Instant::now();
    let uuid = match &args.uuid {
        Some(text) => parse_uuid(text)?,
        None => random_uuid()?,
    };
    let created_s = match args.created {
        Some(s) => s,
        None => match std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok()) {
            Some(s) => s,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        },
    };
    let mut options = WriterOptions::new(uuid, created_s.saturating_mul(1_000_000_000));
    options.level = args.level;
    options.chunk_size = args.chunk_size;
    options.threads = args.threads;

    if args.images.iter().filter(|(_, p)| crate::is_stdio(p)).count() > 1 {
        return Err(Failure::fatal("only one --image can read standard input"));
    }
    // Open every source before writing anything, so a typo costs nothing.
    let mut sources: Vec<(String, PathBuf, Box<dyn ImageSource>)> = Vec::new();
    for (name, path) in &args.images {
        let source: Box<dyn ImageSource> = if crate::is_stdio(path) {
            Box::new(StreamSource::new(io::stdin()))
        } else {
            device::refuse_if_mounted(path, args.force, "image")?;
            Box::new(
                FileSource::open(path).map_err(|e| Failure::fatal(format!("cannot read {}: {e}", path.display())))?,
            )
        };
        sources.push((name.clone(), path.clone(), source));
    }

    for (name, dir) in &args.trees {
        if !dir.is_dir() {
            return Err(Failure::fatal(format!("--files {name}={}: not a folder", dir.display())));
        }
    }
    let destination = if crate::is_stdio(&args.archive) {
        Destination::Stdout
    } else {
        Destination::File(AtomicFile::create(&args.archive)?)
    };
    let label = args.archive.display().to_string();
    let mut tree_options =
        TreeOptions { excludes: args.exclude.clone(), one_file_system: args.one_file_system, ..TreeOptions::default() };
    // Never back up the archive being written, when it lies inside a tree.
    if let Destination::File(file) = &destination {
        tree_options.skip_inodes.extend(file.identity());
    }
    let summary = match destination {
        Destination::Stdout => {
            let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            write_archive(out, options, &mut sources, &args.trees, &tree_options, args.quiet)?.1
        }
        Destination::File(atomic) => {
            let (out, summary) =
                write_archive(atomic.writer()?, options, &mut sources, &args.trees, &tree_options, args.quiet)?;
            atomic.commit_written(out)?;
            summary
        }
    };
    let logical: u64 = summary.images.iter().map(|i| i.logical_size).sum::<u64>()
        + summary.trees.iter().map(|t| t.content_bytes).sum::<u64>();
    let stored = summary.archive_length;
    let deduplicated: u64 = summary.images.iter().map(|i| i.deduplicated_chunks).sum::<u64>()
        + summary.trees.iter().map(|t| t.deduplicated_chunks).sum::<u64>();
    let warnings: Vec<String> = summary
        .trees
        .iter()
        .flat_map(|t| {
            t.warnings
                .iter()
                .map(move |w| format!("warning: {}/{}: {}", t.name, String::from_utf8_lossy(&w.path), w.message))
        })
        .collect();
    let ratio = if stored > 0 { logical as f64 / stored as f64 } else { 0.0 };
    let sections = summary.images.len() + summary.trees.len();
    eprintln!(
        "{label}: {sections} section{}, {} stored for {} ({ratio:.2}x), {} chunks deduplicated, {:.1} s",
        if sections == 1 { "" } else { "s" },
        output::size(stored),
        output::size(logical),
        output::grouped(deduplicated),
        started.elapsed().as_secs_f64()
    );
    // As GNU tar and borg: what could not be read is a warning and exit 1, with a
    // valid archive of everything else.
    for warning in &warnings {
        eprintln!("{warning}");
    }
    if !warnings.is_empty() {
        eprintln!("{} warning{}", warnings.len(), if warnings.len() == 1 { "" } else { "s" });
        return Ok(1);
    }
    Ok(0)
}

fn write_archive<W: Write>(
    out: W,
    options: WriterOptions,
    sources: &mut [(String, PathBuf, Box<dyn ImageSource>)],
    trees: &[(String, PathBuf)],
    tree_options: &TreeOptions,
    quiet: bool,
) -> Result<(W, strata_writer::ArchiveSummary), Failure> {
    let mut writer = ArchiveWriter::new(out, options).map_err(|e| Failure::fatal(e.to_string()))?;
    for (name, path, source) in sources.iter_mut() {
        let bar = output::bar(name, source.known_size(), quiet);
        let image = writer
            .add_image(name, source.as_mut(), &BarProgress(bar.clone()))
            .map_err(|e| Failure::fatal(format!("image {name} from {}: {e}", path.display())))?;
        bar.finish_and_clear();
        if !quiet {
            eprintln!(
                "{name:8} {} image, {} data, {} zero (not stored), {} stored",
                output::size(image.logical_size),
                output::size(image.data_bytes),
                output::size(image.zero_bytes),
                output::size(image.stored_bytes)
            );
        }
    }
    for (name, dir) in trees {
        let bar = output::bar(name, None, quiet);
        let tree = writer
            .add_tree(name, dir, tree_options, &BarProgress(bar.clone()))
            .map_err(|e| Failure::fatal(format!("files {name} from {}: {e}", dir.display())))?;
        bar.finish_and_clear();
        if !quiet {
            eprintln!(
                "{name:8} {} entries ({} files, {} dirs, {} symlinks), {}, {} stored",
                output::grouped(tree.entries),
                output::grouped(tree.files),
                output::grouped(tree.directories),
                output::grouped(tree.symlinks),
                output::size(tree.content_bytes),
                output::size(tree.stored_bytes)
            );
        }
    }
    writer.finish().map_err(|e| Failure::fatal(e.to_string()))
}
