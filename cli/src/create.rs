//! `strata create`: write an archive, atomically when it goes to a file.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use strata_writer::{
    ArchiveWriter, FileSource, ImageSource, Progress, StreamSource, TreeOptions, TreeTotals, WriterOptions,
};

use crate::atomic::AtomicFile;
use crate::{device, output, Failure};

#[derive(Args)]
pub struct CreateArgs {
    /// The archive to write, or `-` for standard output.
    archive: PathBuf,
    /// Folders to back up, each a file-tree section named after the folder
    /// (`/home/alice` gives `alice`): the same as `--files DIR`.
    #[arg(value_name = "DIR")]
    folders: Vec<PathBuf>,
    /// Add a block-image section from SOURCE (a file, a block device, or `-` for
    /// standard input), named NAME or after the source (`/dev/sdb` gives `sdb`,
    /// `disk.img` gives `disk`). Repeatable.
    #[arg(long = "image", value_name = "[NAME=]SOURCE", value_parser = crate::parse_named_path)]
    images: Vec<(Option<String>, PathBuf)>,
    /// Store only the blocks the file systems inside each image use (ext2/3/4,
    /// FAT), and everything outside them whole (partition tables, boot code,
    /// other partitions): a restore gives the same files, with free space as
    /// zeros. Without it, images are stored bit for bit.
    #[arg(long, requires = "images")]
    used_blocks: bool,
    /// Add a file-tree section holding the folder DIR, named NAME or after the
    /// folder. Repeatable.
    #[arg(long = "files", value_name = "[NAME=]DIR", value_parser = crate::parse_named_path)]
    trees: Vec<(Option<String>, PathBuf)>,
    /// Leave out files and folders matching GLOB: matched against the name, or,
    /// when GLOB holds a `/`, against the path relative to the tree's root. Repeatable.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Read --exclude patterns from FILE, one per line (empty lines and lines
    /// starting with `#` are skipped). Repeatable.
    #[arg(long, value_name = "FILE")]
    exclude_from: Vec<PathBuf>,
    /// Read folders to back up from FILE, one per line, as if named on the
    /// command line (`-` for standard input). Repeatable.
    #[arg(long, short = 'T', value_name = "FILE")]
    files_from: Vec<PathBuf>,
    /// Leave out the contents of folders holding a CACHEDIR.TAG (the folder and
    /// the tag are kept), as tar and borg do.
    #[arg(long)]
    exclude_caches: bool,
    /// Do not descend into folders on another file system than the tree's root.
    #[arg(long)]
    one_file_system: bool,
    /// zstd compression level: 1 (fastest) to 22 (smallest), negative levels
    /// for more speed, `max` for 22. Default: 3, and 5 for images with
    /// --used-blocks (what they leave out pays for it).
    #[arg(long, value_parser = parse_level, allow_negative_numbers = true)]
    level: Option<i32>,
    /// Chunk size: a power of two from 4K to 16M (4096 to 16777216 bytes; K, KiB,
    /// M and MiB suffixes). Default: 4M, or for an image of a --parent archive
    /// the chunk size of its image of the same name.
    #[arg(long, value_parser = parse_chunk_size)]
    chunk_size: Option<u32>,
    /// Worker threads for hashing and compression (0: one per core). The archive is
    /// the same whatever the number.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Fix the archive UUID (32 hex digits, dashes allowed) for reproducible output.
    #[arg(long)]
    uuid: Option<String>,
    /// Fix the creation time for reproducible output: seconds since 1970, or a
    /// date (2024-01-01, 2024-01-01T12:00:00Z; UTC unless an offset is given).
    /// Default: $SOURCE_DATE_EPOCH if set, else now.
    #[arg(long, value_parser = crate::parse_time)]
    created: Option<i64>,
    /// Replace an existing archive; write an archive to a terminal; image a block
    /// device even if it is mounted read-write.
    #[arg(long, short)]
    force: bool,
    /// Print the summary as JSON on stdout: sections with their sizes, the
    /// ratio, and the warnings (not with `-` as the archive).
    #[arg(long)]
    json: bool,
    /// With --parent: read every file, even those whose size and times say they
    /// did not change since the parent (unchanged content is still not stored).
    #[arg(long)]
    reread: bool,
}

/// The parent of an incremental archive (`--parent`): what the child refers to.
struct Parent {
    base: strata_writer::ChainBase,
    /// Per file-tree name, the parent's files that need not be read again.
    caches: std::collections::HashMap<String, std::sync::Arc<strata_writer::FilesCache>>,
    /// Per image name, the chunk size of the parent's image: a child cut into
    /// other windows would share no chunk with it.
    image_chunk_sizes: std::collections::HashMap<String, u32>,
    /// The parent, read again for its images' bytes: a child's window of which
    /// only some blocks changed refers to the parent's chunks for the rest.
    archive: std::sync::Arc<strata_reader::Archive<std::fs::File>>,
}

/// The defaults of `create`: 4 MiB chunks at zstd level 3 ...
const DEFAULT_CHUNK_SIZE: u32 = 4 << 20;
const DEFAULT_LEVEL: i32 = 3;
/// ... and for used-blocks images 4 MiB chunks at level 5: level 5 because
/// used-blocks imaging reads only the used blocks and can afford the
/// compression time, and it wins back what the cuts at the file systems'
/// metadata cost (`strata_writer::METADATA_CHUNK`, `METADATA_REACH`), which
/// keep a file read out of the image (`cat --image`) from decoding much of
/// any chunk (benches/RESULTS.md, issue 16: on the corpus's dirty image
/// 417.6 MB and 9 ms for one file, where 2 MiB chunks stored 422.7 MB).
const USED_BLOCKS_CHUNK_SIZE: u32 = 4 << 20;
const USED_BLOCKS_LEVEL: i32 = 5;

impl Parent {
    fn open(path: &std::path::Path, trees: &[(String, PathBuf)], reread: bool) -> Result<Parent, Failure> {
        let archive = crate::inspect::open_archive(path)?;
        let base = crate::chain::chain_base(path, &archive)?;
        let mut caches = std::collections::HashMap::new();
        if !reread {
            for (name, _) in trees {
                if let Some(cache) = crate::chain::files_cache(path, &archive, name)? {
                    caches.insert(name.clone(), std::sync::Arc::new(cache));
                }
            }
        }
        let image_chunk_sizes = archive
            .sections()
            .iter()
            .filter_map(|section| match section {
                strata_reader::Section::Image(image) => Some((image.name.clone(), image.chunk_size)),
                strata_reader::Section::Tree(_) => None,
            })
            .collect();
        Ok(Parent { base, caches, image_chunk_sizes, archive: std::sync::Arc::new(archive) })
    }
}

fn parse_level(value: &str) -> Result<i32, String> {
    if value.eq_ignore_ascii_case("max") {
        return Ok(22);
    }
    let level: i32 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a level: give a number from 1 (fastest) to 22 (smallest), or max"))?;
    let range = zstd_levels();
    if !range.contains(&level) || level == 0 {
        return Err(format!(
            "{value}: zstd levels go from 1 (fastest) to 22 (smallest), and down to {} for more speed",
            range.start()
        ));
    }
    Ok(level)
}

/// The levels zstd accepts; 0 would mean "the default" to zstd, so it is
/// refused rather than given a second meaning.
fn zstd_levels() -> std::ops::RangeInclusive<i32> {
    -131_072..=22
}

fn parse_chunk_size(value: &str) -> Result<u32, String> {
    let bytes = crate::parse_bytes(value)?;
    if !bytes.is_power_of_two() || !(4096..=16 << 20).contains(&bytes) {
        return Err(format!("{value}: the chunk size is a power of two from 4K to 16M (4K, 8K, ..., 4M, 8M, 16M)"));
    }
    Ok(bytes as u32)
}

/// The sections to write, named and checked before anything is read or written:
/// names valid and unique (one name space for both kinds), images not folders,
/// trees folders, something to back up at all.
/// Sections to write: (name, source path), images then trees.
type Planned = (Vec<(String, PathBuf)>, Vec<(String, PathBuf)>);

/// The lines of a list file (`-` for standard input): empty lines and, when
/// `comments`, lines starting with `#` skipped.
fn list_file(path: &std::path::Path, comments: bool, what: &str) -> Result<Vec<String>, Failure> {
    let text = if crate::is_stdio(path) {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| Failure::fatal(format!("{what} {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .filter(|line| {
            let skipped = line.trim().is_empty() || (comments && line.trim_start().starts_with('#'));
            !skipped
        })
        .map(str::to_string)
        .collect())
}

fn plan_sections(args: &CreateArgs) -> Result<Planned, Failure> {
    let mut folders = args.folders.clone();
    for list in &args.files_from {
        folders.extend(list_file(list, false, "--files-from")?.into_iter().map(PathBuf::from));
    }
    if args.images.is_empty() && args.trees.is_empty() && folders.is_empty() {
        return Err(Failure::fatal(
            "nothing to back up: name folders (strata create backup.strata /etc /home/alice), \
             --files NAME=DIR, or --image NAME=SOURCE for a disk or image file",
        ));
    }
    let images: Vec<(String, PathBuf)> = args
        .images
        .iter()
        .map(|(name, path)| (name.clone().unwrap_or_else(|| crate::section_name_for(path, true)), path.clone()))
        .collect();
    let trees: Vec<(String, PathBuf)> = args
        .trees
        .iter()
        .map(|(name, path)| (name.clone(), path.clone()))
        .chain(folders.iter().map(|path| (None, path.clone())))
        .map(|(name, path)| (name.unwrap_or_else(|| crate::section_name_for(&path, false)), path))
        .collect();
    let mut seen: Vec<(&str, &PathBuf)> = Vec::new();
    for (name, path) in images.iter().chain(&trees) {
        if let Err(e) = strata_format::image::validate_section_name(name.as_bytes()) {
            return Err(Failure::fatal(format!(
                "{name:?} (for {}) cannot name a section: {}; name it with NAME=PATH",
                path.display(),
                e.detail
            )));
        }
        if let Some((_, other)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(Failure::fatal(format!(
                "two sections would be named {name:?} ({} and {}): name them apart, for example --files {name}2={}",
                other.display(),
                path.display(),
                path.display()
            )));
        }
        seen.push((name, path));
    }
    for (name, path) in &images {
        if crate::is_stdio(path) {
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(Failure::fatal(format!(
                    "--image {name}={}: that is a folder; back up a folder's files with --files {name}={} \
                     (or name it alone: strata create ARCHIVE {})",
                    path.display(),
                    path.display(),
                    path.display()
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::fatal(format!("--image {name}={}: {e}", path.display()))),
        }
    }
    for (name, dir) in &trees {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Failure::fatal(format!(
                    "{} is not a folder; to image a disk or an image file, use --image {name}={}",
                    dir.display(),
                    dir.display()
                )))
            }
            Err(e) => return Err(Failure::fatal(format!("{}: {e}", dir.display()))),
        }
    }
    Ok((images, trees))
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

/// A tree's progress: bytes on the bar, entries counted for its message.
struct TreeProgress {
    bar: indicatif::ProgressBar,
    entries: AtomicU64,
}

impl Progress for TreeProgress {
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn entry(&self) {
        self.entries.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long a tree's pre-count may run before the bar goes without a total.
const COUNT_FOR: Duration = Duration::from_secs(20);
/// How long the walk waits for the count, so that a tree of ordinary size
/// shows its total from the start (the count warms the cache the walk reads).
const COUNT_HEAD_START: Duration = Duration::from_millis(300);

/// Counts the tree in the background (bounded by [`COUNT_FOR`]; stopped when
/// the walk ends first) and, until the sender of `stopped` is dropped, keeps
/// the bar's message at `done / total entries`, or `done entries` until the
/// total is known; once it is, the bar shows the bytes to go and the time left.
fn show_tree_progress<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    (dir, options): (&'scope std::path::Path, &'scope TreeOptions),
    progress: &'scope TreeProgress,
    totals: &'scope std::sync::OnceLock<TreeTotals>,
    finished: &'scope AtomicBool,
    stopped: std::sync::mpsc::Receiver<()>,
) {
    let counting = scope.spawn(move || {
        let started = Instant::now();
        let keep_going = |_: &TreeTotals| !finished.load(Ordering::Relaxed) && started.elapsed() < COUNT_FOR;
        if let Some(counted) = strata_writer::count_tree(dir, options, &keep_going) {
            let _ = totals.set(counted);
        }
    });
    let waited = Instant::now();
    while !counting.is_finished() && waited.elapsed() < COUNT_HEAD_START {
        std::thread::sleep(Duration::from_millis(5));
    }
    scope.spawn(move || {
        let mut total_shown = false;
        loop {
            let done = progress.entries.load(Ordering::Relaxed);
            match totals.get() {
                Some(total) => {
                    if !total_shown {
                        output::set_total(&progress.bar, total.bytes);
                        total_shown = true;
                    }
                    let entries = total.entries.max(done);
                    progress.bar.set_message(format!(
                        "{} / {} entries",
                        output::grouped(done),
                        output::grouped(entries)
                    ));
                }
                None => progress.bar.set_message(output::count(done, "entry", "entries")),
            }
            if !output::tick_again(&stopped, Duration::from_millis(100)) {
                break;
            }
        }
    });
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
    let (images, trees) = plan_sections(&args)?;
    if args.json && crate::is_stdio(&args.archive) {
        return Err(Failure::fatal(
            "--json prints on standard output, where `-` writes the archive: give the archive a file name",
        ));
    }
    if crate::is_stdio(&args.archive) {
        if io::IsTerminal::is_terminal(&io::stdout()) && !args.force {
            return Err(Failure::fatal(
                "refusing to write an archive to a terminal: redirect it (> backup.strata) or use --force",
            ));
        }
    } else {
        crate::atomic::check_output(&args.archive, args.force)?;
    }
    let mut options = WriterOptions::new(uuid, created_s.saturating_mul(1_000_000_000));
    options.level = args.level.unwrap_or(DEFAULT_LEVEL);
    options.chunk_size = args.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    options.threads = args.threads;

    if images.iter().filter(|(_, p)| crate::is_stdio(p)).count() > 1 {
        return Err(Failure::fatal("only one --image can read standard input"));
    }
    let parent = match crate::chain::parent_files() {
        [] => None,
        [path] => Some(Parent::open(path, &trees, args.reread)?),
        _ => return Err(Failure::fatal("create takes one --parent: the archive to store only the changes since")),
    };
    // Open every source before writing anything, so a typo costs nothing.
    let mut sources: Vec<ImageInput> = Vec::new();
    for (name, path) in &images {
        let source: Box<dyn ImageSource> = if crate::is_stdio(path) {
            if args.used_blocks {
                return Err(Failure::fatal(
                    "--used-blocks needs the image as a file or device: it reads the partition table and the \
                     file systems' allocation maps before the image",
                ));
            }
            Box::new(StreamSource::new(io::stdin()))
        } else {
            device::refuse_if_mounted(path, args.force, "image")?;
            let file =
                FileSource::open(path).map_err(|e| Failure::fatal(format!("cannot read {}: {e}", path.display())))?;
            if args.used_blocks {
                let map = crate::volumes::used_blocks_map(path, name, output::quiet())?;
                Box::new(strata_writer::UsedBlocks::new(file, map.free).with_metadata(map.metadata))
            } else {
                Box::new(file)
            }
        };
        let chunk_size = args
            .chunk_size
            .or_else(|| parent.as_ref().and_then(|p| p.image_chunk_sizes.get(name).copied()))
            .unwrap_or(if args.used_blocks { USED_BLOCKS_CHUNK_SIZE } else { DEFAULT_CHUNK_SIZE });
        let level = args.level.unwrap_or(if args.used_blocks { USED_BLOCKS_LEVEL } else { DEFAULT_LEVEL });
        sources.push(ImageInput { name: name.clone(), path: path.clone(), source, chunk_size, level });
    }

    let destination = if crate::is_stdio(&args.archive) {
        Destination::Stdout
    } else {
        Destination::File(AtomicFile::create(&args.archive)?)
    };
    let label = args.archive.display().to_string();
    let mut excludes = args.exclude.clone();
    for list in &args.exclude_from {
        excludes.extend(list_file(list, true, "--exclude-from")?);
    }
    let mut tree_options = TreeOptions {
        excludes,
        one_file_system: args.one_file_system,
        exclude_caches: args.exclude_caches,
        ..TreeOptions::default()
    };
    // Never back up the archive being written, when it lies inside a tree.
    if let Destination::File(file) = &destination {
        tree_options.skip_inodes.extend(file.identity());
    }
    let summary = match destination {
        Destination::Stdout => {
            let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            write_archive(out, options, &mut sources, &trees, &tree_options, parent.as_ref(), output::quiet())?.1
        }
        Destination::File(atomic) => {
            let (out, summary) = write_archive(
                atomic.writer()?,
                options,
                &mut sources,
                &trees,
                &tree_options,
                parent.as_ref(),
                output::quiet(),
            )?;
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
                .map(move |w| format!("warning: {}/{}: {}", t.name, strata_format::escaped(&w.path), w.message))
        })
        .collect();
    let ratio = output::ratio(logical, stored);
    let sections = summary.images.len() + summary.trees.len();
    eprintln!(
        "{label}: {sections} section{}, {} stored for {} ({ratio}), {} chunks deduplicated, {:.1} s",
        if sections == 1 { "" } else { "s" },
        output::size(stored),
        output::size(logical),
        output::grouped(deduplicated),
        started.elapsed().as_secs_f64()
    );
    if args.json {
        let mut sections: Vec<serde_json::Value> = summary
            .images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "kind": "image", "name": i.name, "logical_size": i.logical_size, "data_bytes": i.data_bytes,
                    "zero_bytes": i.zero_bytes, "stored_bytes": i.stored_bytes, "new_chunks": i.new_chunks,
                    "deduplicated_chunks": i.deduplicated_chunks,
                })
            })
            .collect();
        sections.extend(summary.trees.iter().map(|t| {
            serde_json::json!({
                "kind": "files", "name": t.name, "entries": t.entries, "files": t.files, "directories": t.directories,
                "symlinks": t.symlinks, "content_bytes": t.content_bytes, "stored_bytes": t.stored_bytes,
                "new_chunks": t.new_chunks, "deduplicated_chunks": t.deduplicated_chunks,
                "unchanged_files": t.reused_files,
            })
        }));
        let warnings: Vec<serde_json::Value> = summary
            .trees
            .iter()
            .flat_map(|t| {
                t.warnings.iter().map(move |w| {
                    serde_json::json!({"section": t.name, "path": String::from_utf8_lossy(&w.path), "message": w.message})
                })
            })
            .collect();
        output::print_json(&serde_json::json!({
            "archive": label,
            "archive_size": stored,
            "given_back_bytes": logical,
            "ratio": if stored > 0 { logical as f64 / stored as f64 } else { 0.0 },
            "deduplicated_chunks": deduplicated,
            "seconds": started.elapsed().as_secs_f64(),
            "sections": sections,
            "warnings": warnings,
        }));
    }
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

/// An image to add, opened, and the chunk size and level to store it with.
struct ImageInput {
    name: String,
    path: PathBuf,
    source: Box<dyn ImageSource>,
    chunk_size: u32,
    level: i32,
}

fn write_archive<W: Write>(
    out: W,
    options: WriterOptions,
    sources: &mut [ImageInput],
    trees: &[(String, PathBuf)],
    tree_options: &TreeOptions,
    parent: Option<&Parent>,
    quiet: bool,
) -> Result<(W, strata_writer::ArchiveSummary), Failure> {
    let base = parent.map(|p| p.base.clone());
    let (chunk_size, level) = (options.chunk_size, options.level);
    let mut writer = match base {
        Some(base) => ArchiveWriter::new_child(out, options, base),
        None => ArchiveWriter::new(out, options),
    }
    .map_err(|e| Failure::fatal(e.to_string()))?;
    for ImageInput { name, path, source, chunk_size, level } in sources.iter_mut() {
        writer.set_chunk_size(*chunk_size).map_err(|e| Failure::fatal(e.to_string()))?;
        writer.set_level(*level).map_err(|e| Failure::fatal(e.to_string()))?;
        let bar = output::bar(name, source.known_size(), quiet);
        let over = parent.and_then(|p| crate::chain::ParentImageView::new(&p.archive, name, *chunk_size));
        let image = writer
            .add_image_over(
                name,
                source.as_mut(),
                over.as_ref().map(|view| view as &dyn strata_writer::ParentImage),
                &BarProgress(bar.clone()),
            )
            .map_err(|e| Failure::fatal(format!("image {name} from {}: {e}", path.display())))?;
        bar.finish_and_clear();
        if !quiet {
            let free = if image.free_bytes > 0 {
                format!(", {} free in its file systems (not stored)", output::size(image.free_bytes))
            } else {
                String::new()
            };
            eprintln!(
                "{name:8} {} image, {} data, {} zero (not stored){free}, {} stored",
                output::size(image.logical_size),
                output::size(image.data_bytes),
                output::size(image.zero_bytes),
                output::size(image.stored_bytes)
            );
        }
    }
    // Trees take the archive's chunk size and level.
    writer.set_chunk_size(chunk_size).map_err(|e| Failure::fatal(e.to_string()))?;
    writer.set_level(level).map_err(|e| Failure::fatal(e.to_string()))?;
    // Each tree takes the files cache of the parent's tree of the same name.
    let tree_options_for = |name: &str| {
        let mut options = tree_options.clone();
        options.files_cache = parent.and_then(|p| p.caches.get(name).cloned());
        options.parent_tables = parent.filter(|p| p.archive.tree_section(name).is_some()).map(|p| {
            let tables = crate::chain::ParentTreeTables { archive: p.archive.clone(), section: name.to_string() };
            std::sync::Arc::new(tables) as std::sync::Arc<dyn strata_writer::ParentTables>
        });
        options
    };
    for (name, dir) in trees {
        let bar = output::bar(name, None, quiet);
        let progress = TreeProgress { bar: bar.clone(), entries: AtomicU64::new(0) };
        let (finished, totals) = (AtomicBool::new(false), std::sync::OnceLock::new());
        let tree = std::thread::scope(|scope| {
            let (stop, stopped) = std::sync::mpsc::channel();
            if !quiet && output::progress_shown() {
                show_tree_progress(scope, (dir, tree_options), &progress, &totals, &finished, stopped);
            }
            let tree = writer.add_tree(name, dir, &tree_options_for(name), &progress);
            finished.store(true, Ordering::Relaxed);
            drop(stop);
            tree
        })
        .map_err(|e| Failure::fatal(format!("files {name} from {}: {e}", dir.display())))?;
        bar.finish_and_clear();
        if !quiet {
            let unchanged = if tree.reused_files > 0 {
                format!(", {} unchanged since the parent (not read)", output::grouped(tree.reused_files))
            } else {
                String::new()
            };
            eprintln!(
                "{name:8} {} entries ({} files, {} dirs, {} symlinks), {}, {} stored{unchanged}",
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
