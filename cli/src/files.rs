//! `strata list` and `strata extract`: file-tree sections.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use strata_reader::extract::{self, ExtractOptions, Owners};
use strata_reader::{Archive, Entry, ReadAt, Section, Tree};

use crate::inspect::open_intact;
use crate::{output, Failure};

/// The files of a file system inside an image section, for `list` and
/// `extract` alike.
#[derive(Args)]
struct InImage {
    /// Read the files of the file system inside this image section instead
    /// (ext2/3/4, FAT12/16/32 or NTFS).
    #[arg(long, value_name = "NAME", conflicts_with = "files")]
    image: Option<String>,
    /// With --image: the partition, numbered as /dev/sdb2 is (may be left out
    /// when the image holds one file system).
    #[arg(long, value_name = "N", requires = "image")]
    partition: Option<u32>,
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct ListArgs {
    /// The archive.
    archive: PathBuf,
    /// The file-tree section (default: every one).
    #[arg(long = "files", value_name = "NAME")]
    files: Option<String>,
    #[command(flatten)]
    in_image: InImage,
    /// Paths to list (relative to the section's root), with everything below
    /// them; `*`, `?` and `[...]` match as in tar (`*` also across `/`).
    paths: Vec<OsString>,
    /// Mode, owner, size and local time, like `ls -l` and `tar -tv`.
    #[arg(long, short)]
    long: bool,
    /// With --long: sizes as 1.5K, 23M, 4.0G (as `ls -lh`).
    #[arg(long = "human-readable", short = 'h')]
    human: bool,
    /// Print JSON: one document, an array of entries per section (every field).
    #[arg(long, conflicts_with = "json_lines")]
    json: bool,
    /// Print one JSON object per entry and line, as it is read (for large trees
    /// and for streaming tools); each carries its section's name.
    #[arg(long)]
    json_lines: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Args)]
pub struct ExtractArgs {
    /// The archive.
    archive: PathBuf,
    /// The file-tree section to extract (may be left out when the archive holds one).
    #[arg(long = "files", value_name = "NAME")]
    files: Option<String>,
    #[command(flatten)]
    in_image: InImage,
    /// The destination folder (created if missing).
    dest: PathBuf,
    /// Only these paths (with their parent directories and everything below
    /// them); `*`, `?` and `[...]` match as in tar (`*` also across `/`).
    paths: Vec<OsString>,
    /// Leave out this many leading path components, as tar does.
    #[arg(long, value_name = "N", default_value_t = 0)]
    strip_components: u32,
    /// Replace files that already exist.
    #[arg(long)]
    overwrite: bool,
    /// Restore owners by number, ignoring the stored user and group names.
    #[arg(long)]
    numeric_owner: bool,
    /// Do not restore owners, even as root.
    #[arg(long)]
    no_same_owner: bool,
    /// Print what was refused and warned about as JSON (spec/conformance.md).
    #[arg(long)]
    json: bool,
    /// Threads that decode, check and write files' content (default: one per
    /// core); the result is the same for any number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
}

/// The two kinds of section, for messages and for picking one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Image,
    Files,
}

impl SectionKind {
    fn singular(self) -> &'static str {
        match self {
            SectionKind::Image => "image",
            SectionKind::Files => "file tree",
        }
    }
    fn plural(self) -> &'static str {
        match self {
            SectionKind::Image => "images",
            SectionKind::Files => "file trees",
        }
    }
    fn option(self) -> &'static str {
        match self {
            SectionKind::Image => "--image",
            SectionKind::Files => "--files",
        }
    }
}

fn names_of<R: ReadAt>(archive: &Archive<R>, kind: SectionKind) -> Vec<String> {
    archive
        .sections()
        .iter()
        .filter_map(|s| match (s, kind) {
            (Section::Image(i), SectionKind::Image) => Some(i.name.clone()),
            (Section::Tree(t), SectionKind::Files) => Some(t.name.clone()),
            _ => None,
        })
        .collect()
}

/// The section a read verb works on: `name` when the archive has a section of
/// that kind by that name, or the only one of the kind when no name is given.
/// A wrong or missing name lists the names there are.
pub fn pick_section<R: ReadAt>(
    archive: &Archive<R>,
    name: Option<&str>,
    kind: SectionKind,
    label: &str,
) -> Result<String, Failure> {
    let names = names_of(archive, kind);
    let listed = || names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    let other = match kind {
        SectionKind::Image => SectionKind::Files,
        SectionKind::Files => SectionKind::Image,
    };
    match name {
        Some(name) if names.iter().any(|n| n == name) => Ok(name.to_string()),
        Some(name) if names_of(archive, other).iter().any(|n| n == name) => Err(Failure::fatal(format!(
            "{label}: {name:?} is one of its {}, not of its {}: use {} {name}",
            other.plural(),
            kind.plural(),
            other.option()
        ))),
        Some(name) if names.is_empty() => Err(Failure::fatal(format!(
            "{label} has no {} named {name:?}: it holds no {}",
            kind.singular(),
            kind.plural()
        ))),
        Some(name) => Err(Failure::fatal(format!(
            "{label} has no {} named {name:?}; its {}: {}",
            kind.singular(),
            kind.plural(),
            listed()
        ))),
        None => match names.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Failure::fatal(format!("{label} holds no {}", kind.plural()))),
            _ => Err(Failure::fatal(format!(
                "{label} holds {} {}: choose one with {} NAME ({})",
                names.len(),
                kind.plural(),
                kind.option(),
                listed()
            ))),
        },
    }
}

fn trees<'a, R: ReadAt>(archive: &'a Archive<R>, name: Option<&str>, label: &str) -> Result<Vec<Tree<'a, R>>, Failure> {
    let wanted = match name {
        Some(name) => Some(pick_section(archive, Some(name), SectionKind::Files, label)?),
        None => None,
    };
    let trees: Vec<Tree<'a, R>> = archive
        .sections()
        .iter()
        .filter_map(|s| match s {
            Section::Tree(t) if wanted.as_ref().is_none_or(|n| *n == t.name) => archive.tree(&t.name).ok(),
            _ => None,
        })
        .collect();
    if trees.is_empty() {
        return Err(Failure::fatal(format!("{label} holds no file tree")));
    }
    Ok(trees)
}

fn mode_string(entry: &Entry) -> String {
    let m = entry.mode();
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let exec = |mask: u32, special: u32, set: char, unset: char| match (m & mask != 0, m & special != 0) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(entry.kind().letter());
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(exec(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(exec(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(exec(0o001, 0o1000, 't', 'T'));
    s
}

fn owner(name: Option<&[u8]>, id: u32) -> String {
    match name {
        Some(name) => strata_format::escaped(name),
        None => id.to_string(),
    }
}

/// A tree path as `list` and every message show it: `.` for the root, control
/// characters and bytes that are not UTF-8 escaped (as `tar -t` does).
pub(crate) fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        strata_format::escaped(path)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One entry in the JSON shape of `spec/conformance.md`; `link` is the path of a
/// hard link's first entry when known. Times appear when the section captured
/// them, and only then (a time not captured is unknown, not zero).
fn entry_json(e: &Entry, link: Option<&[u8]>) -> serde_json::Value {
    let lossy = |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned();
    let mut value = json!({
        "path": String::from_utf8_lossy(e.path()),
        "path_hex": hex(e.path()),
        "kind": e.kind().name(),
        "mode": e.mode(),
        "mode_octal": format!("{:04o}", e.mode()),
        "mode_string": mode_string(e),
        "uid": e.uid(),
        "gid": e.gid(),
        "user": lossy(e.user()),
        "group": lossy(e.group()),
        "size": e.size(),
        "mtime_s": e.mtime().secs,
        "mtime_nsec": e.mtime().nsec,
        "xattrs": e.xattrs().iter().map(|x| String::from_utf8_lossy(&x.name)).collect::<Vec<_>>(),
    });
    for (field, time) in [("atime", e.atime()), ("ctime", e.ctime()), ("btime", e.birth_time())] {
        if let Some(time) = time {
            value[format!("{field}_s")] = json!(time.secs);
            value[format!("{field}_nsec")] = json!(time.nsec);
        }
    }
    if let Some(digest) = e.digest() {
        value["digest"] = json!(hex(&digest));
    }
    if let Some(target) = e.symlink_target() {
        value["target"] = json!(String::from_utf8_lossy(target));
    }
    if let Some(link_id) = e.link_id() {
        value["link_id"] = json!(link_id);
        if let Some(link) = link {
            value["link"] = json!(String::from_utf8_lossy(link));
        }
    }
    if let Some((major, minor)) = e.device() {
        value["rdev"] = json!([major, minor]);
    }
    let flags = flag_names(e);
    for name in ["changed_while_read", "unreadable", "lost_in_salvage"] {
        if flags.contains(&name) {
            value[name] = json!(true);
        }
    }
    value["flags"] = json!(flags);
    value
}

/// The names of an entry's flags (FORMAT.md 8.3), in bit order. Bits 1 and 2
/// mean something on regular files only, and are not named elsewhere.
fn flag_names(e: &Entry) -> Vec<&'static str> {
    [
        (e.birth_time().is_some(), "birth_time"),
        (e.changed_while_read(), "changed_while_read"),
        (e.is_unreadable(), "unreadable"),
        (e.lost_in_salvage(), "lost_in_salvage"),
    ]
    .into_iter()
    .filter(|&(set, _)| set)
    .map(|(_, name)| name)
    .collect()
}

/// What `list -l` says after an entry's name about the flags a backup or a
/// salvage recorded: the content is missing, or may not be what the file was.
fn flag_marks(e: &Entry) -> String {
    flag_names(e)
        .into_iter()
        .filter_map(|name| match name {
            "unreadable" => Some("  [unreadable at backup]"),
            "changed_while_read" => Some("  [changed while read]"),
            "lost_in_salvage" => Some("  [lost in salvage]"),
            _ => None,
        })
        .collect()
}

fn print_entry(out: &mut impl Write, e: &Entry, args: &ListArgs, link: Option<&[u8]>) -> std::io::Result<()> {
    if !args.long {
        return writeln!(out, "{}", shown(e.path()));
    }
    let size = match e.device() {
        Some((major, minor)) => format!("{major},{minor}"),
        None if args.human => human(e.size()),
        None => e.size().to_string(),
    };
    let when = output::local(e.mtime());
    let suffix = match (e.symlink_target(), e.link_id()) {
        (Some(target), _) => format!(" -> {}", strata_format::escaped(target)),
        (None, Some(link_id)) => match link {
            Some(path) => format!(" link to {}", shown(path)),
            None => format!(" link to entry {link_id}"),
        },
        (None, None) => String::new(),
    };
    writeln!(
        out,
        "{}  {}/{} {:>10} {}  {}{suffix}{}",
        mode_string(e),
        owner(e.user(), e.uid()),
        owner(e.group(), e.gid()),
        size,
        when,
        shown(e.path()),
        flag_marks(e)
    )
}

/// `ls -lh` sizes: `512`, `1.5K`, `23M`, `4.0G` (one decimal below 10).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    value /= 1024.0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// The names of a section's `captured` bits (FORMAT.md 8.1).
fn captured_names(captured: u64) -> Vec<&'static str> {
    use strata_format::files::Captured;
    [
        (Captured::OWNER_NAMES, "owner_names"),
        (Captured::XATTRS, "xattrs"),
        (Captured::ATIME, "atime"),
        (Captured::CTIME, "ctime"),
        (Captured::BTIME, "birth_time"),
        (Captured::HOLES, "holes"),
    ]
    .into_iter()
    .filter(|(bit, _)| captured & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

/// Whether a PATH argument is a pattern rather than a path.
fn is_pattern(path: &OsStr) -> bool {
    path.as_bytes().iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// PATH arguments as tar matches members: `*` also across `/`.
fn patterns(paths: &[OsString]) -> Result<globset::GlobSet, Failure> {
    let mut set = globset::GlobSetBuilder::new();
    for path in paths.iter().filter(|p| is_pattern(p)) {
        let cleaned = String::from_utf8_lossy(&clean(path)).into_owned();
        let glob = globset::GlobBuilder::new(&cleaned)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| Failure::fatal(format!("{path:?} is not a valid pattern: {e}")))?;
        set.add(glob);
    }
    set.build().map_err(|e| Failure::fatal(e.to_string()))
}

/// The exact paths an extraction selects: the PATH arguments, with each
/// pattern replaced by the paths it matches (found from the entry records,
/// before anything is written, so the matched entries' folders come too).
fn selected_paths<R: ReadAt>(tree: Tree<'_, R>, paths: &[OsString], label: &str) -> Result<Vec<Vec<u8>>, Failure> {
    let mut selected: Vec<Vec<u8>> = paths.iter().filter(|p| !is_pattern(p)).map(|p| clean(p)).collect();
    if paths.iter().any(|p| is_pattern(p)) {
        let set = patterns(paths)?;
        let mut matched = 0usize;
        for entry in tree.entries() {
            let entry = entry.map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
            if !entry.path().is_empty() && set.is_match(std::ffi::OsStr::from_bytes(entry.path())) {
                selected.push(entry.path().to_vec());
                matched += 1;
            }
        }
        if matched == 0 {
            return Err(Failure::fatal(format!(
                "no entry of files {} matches {}",
                tree.name(),
                paths.iter().filter(|p| is_pattern(p)).map(|p| p.to_string_lossy()).collect::<Vec<_>>().join(" ")
            )));
        }
    }
    Ok(selected)
}

/// A PATH argument as the bytes of a path relative to the section's root:
/// without leading and trailing `/` and leading `./`. Paths are bytes, not
/// text: a name that is not UTF-8 is given as the shell passes it.
pub(crate) fn clean(path: &OsStr) -> Vec<u8> {
    let mut bytes = path.as_bytes();
    loop {
        let before = bytes.len();
        while let [b'/', rest @ ..] = bytes {
            bytes = rest;
        }
        while let [b'.', b'/', rest @ ..] = bytes {
            bytes = rest;
        }
        if bytes.len() == before {
            break;
        }
    }
    while let [rest @ .., b'/'] = bytes {
        bytes = rest;
    }
    bytes.to_vec()
}

/// Where regular files and directories were listed, as parent and name, so a
/// hard link can name its file: memory grows with the names, not with the
/// depth of their paths.
///
/// (`Tree::link_target` finds a link's file without a walk, but a few record
/// reads for each link would cost more than this, along a listing that
/// reads every entry anyway.)
#[derive(Default)]
struct Places(std::collections::HashMap<u64, (Option<u64>, Vec<u8>)>);

impl Places {
    fn note(&mut self, entry: &Entry) {
        if entry.is_file() || entry.is_dir() {
            self.0.insert(entry.id(), (entry.parent_id(), entry.name().to_vec()));
        }
    }

    /// The path of `id`, if it and its directories were listed.
    fn path(&self, mut id: u64) -> Option<Vec<u8>> {
        let mut names = Vec::new();
        loop {
            let (parent, name) = self.0.get(&id)?;
            let Some(parent) = *parent else {
                break;
            };
            if parent >= id {
                return None;
            }
            names.push(name.as_slice());
            id = parent;
        }
        names.reverse();
        Some(names.join(&b'/'))
    }
}

/// The file system `--image NAME [--partition N]` names, opened, with the PATH
/// arguments as paths in it, and whether the archive was damaged.
fn open_image_files(
    archive: &std::path::Path,
    image: Option<&str>,
    partition: Option<u32>,
    checks: crate::volumes::Checks,
    paths: &[OsString],
) -> Result<(crate::volumes::Opened, Vec<Vec<u8>>, bool), Failure> {
    let label = archive.display().to_string();
    let (archive, damaged) = open_intact(archive)?;
    if paths.iter().any(|p| is_pattern(p)) {
        return Err(Failure::fatal("patterns are not matched inside images yet: give paths"));
    }
    let archive = std::rc::Rc::new(archive);
    let opened = crate::volumes::open(&archive, image, partition, checks, &label)?;
    Ok((opened, paths.iter().map(|p| clean(p)).collect(), damaged))
}

/// `list --image NAME [--partition N] [PATH...]`: the files of the file
/// system inside an image section, in the shapes of a file-tree listing.
fn list_image(args: &ListArgs) -> Result<u8, Failure> {
    // Metadata only: chunks read once need not be decoded whole.
    let checks = crate::volumes::Checks::Partial;
    let (opened, paths, damaged) =
        open_image_files(&args.archive, args.in_image.image.as_deref(), args.in_image.partition, checks, &args.paths)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut closed = false;
    if args.json {
        let head = json!({
            "kind": "image-files",
            "name": opened.image,
            "partition": opened.volume.number(),
            "filesystem": opened.fs.info().kind.name(),
        })
        .to_string();
        closed |= write!(out, "{{\"sections\": [\n{}, \"entries\": [", head.trim_end_matches('}')).is_err();
    }
    let mut first = true;
    let missing = crate::volumes::walk_entries(&opened, &paths, &mut |item| {
        if closed {
            return Ok(());
        }
        // In the shape of a tree's entries; a file system's walk captures no
        // times beside mtime.
        let entry = Entry::from_raw(item.path, item.entry, 0);
        let written = if args.json {
            let comma = if first { "" } else { "," };
            first = false;
            write!(out, "{comma}\n  {}", entry_json(&entry, None))
        } else if args.json_lines {
            let mut value = entry_json(&entry, None);
            value["section"] = json!(opened.image);
            writeln!(out, "{value}")
        } else {
            print_entry(&mut out, &entry, args, None)
        };
        closed |= written.is_err();
        Ok(())
    })?;
    if args.json {
        closed |= writeln!(out, "]}}\n]}}").is_err();
    }
    if !closed {
        let _ = out.flush();
    }
    for path in &missing {
        eprintln!("strata: {}: not in {}", shown(path), opened.shown());
    }
    Ok(u8::from(!missing.is_empty() || damaged))
}

pub fn list(args: ListArgs) -> Result<u8, Failure> {
    if args.in_image.image.is_some() {
        return list_image(&args);
    }
    let label = args.archive.display().to_string();
    let (archive, damaged) = open_intact(&args.archive)?;
    let trees = trees(&archive, args.files.as_deref(), &label)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut missing = 0;
    // stdout closed (a pager quit) is not an error: the listing just stops.
    let mut closed = false;
    // JSON is written as it comes too, one entry at a time, so memory does not
    // grow with the tree: `{"sections": [{"kind", "name", "entries": [...]}]}`.
    if args.json {
        closed |= write!(out, "{{\"sections\": [").is_err();
    }
    for (index, tree) in trees.iter().enumerate() {
        let fail = |e: strata_reader::Error| Failure::fatal(format!("{label}: {e}"));
        if args.json {
            let head = json!({ "kind": "files", "name": tree.name(), "captured": captured_names(tree.captured()) })
                .to_string();
            let comma = if index > 0 { "," } else { "" };
            closed |= write!(out, "{comma}\n{}, \"entries\": [", head.trim_end_matches('}')).is_err();
        } else if trees.len() > 1 && !args.json_lines {
            closed |= writeln!(out, "files {}:", tree.name()).is_err();
        }
        let mut places = Places::default();
        let mut first = true;
        // Entries are printed as they come: nothing grows with the tree but the
        // names kept for hard links.
        let mut show = |entry: &Entry| {
            places.note(entry);
            let link = entry.link_id().and_then(|id| places.path(id));
            if closed {
                return;
            }
            let written = if args.json {
                let comma = if first { "" } else { "," };
                first = false;
                write!(out, "{comma}\n  {}", entry_json(entry, link.as_deref()))
            } else if args.json_lines {
                let mut value = entry_json(entry, link.as_deref());
                value["section"] = json!(tree.name());
                writeln!(out, "{value}")
            } else {
                print_entry(&mut out, entry, &args, link.as_deref())
            };
            closed |= written.is_err();
        };
        if args.paths.is_empty() {
            for entry in tree.entries() {
                show(&entry.map_err(fail)?);
            }
        } else {
            if args.paths.iter().any(|p| is_pattern(p)) {
                // Patterns match against every path, as tar's do: one walk of
                // the entry records, showing what matches and what is below it.
                let set = patterns(&args.paths)?;
                let mut below: Vec<Vec<u8>> = Vec::new();
                let mut matched = false;
                for entry in tree.entries() {
                    let entry = entry.map_err(fail)?;
                    let path = entry.path();
                    let inside = below.iter().any(|m| path.starts_with(m) && path.get(m.len()) == Some(&b'/'));
                    if !path.is_empty() && set.is_match(std::ffi::OsStr::from_bytes(path)) {
                        matched = true;
                        if entry.is_dir() {
                            below.push(path.to_vec());
                        }
                        show(&entry);
                    } else if inside {
                        show(&entry);
                    }
                }
                if !matched {
                    eprintln!("strata: no entry of files {} matches the patterns given", tree.name());
                    missing += 1;
                }
            }
            for path in args.paths.iter().filter(|p| !is_pattern(p)) {
                let Some(below) = tree.subtree(clean(path)).map_err(fail)? else {
                    eprintln!("strata: {}: not in files {}", strata_format::escaped(path.as_bytes()), tree.name());
                    missing += 1;
                    continue;
                };
                for entry in below {
                    show(&entry.map_err(fail)?);
                }
            }
        }
        if args.json {
            closed |= write!(out, "]}}").is_err();
        }
    }
    if args.json {
        closed |= writeln!(out, "\n]}}").is_err();
    }
    if !closed {
        let _ = out.flush();
    }
    Ok(u8::from(missing > 0 || damaged))
}

fn extract_options(args: &ExtractArgs, select: Vec<Vec<u8>>) -> ExtractOptions {
    ExtractOptions {
        overwrite: args.overwrite,
        owners: if args.no_same_owner {
            Owners::Never
        } else if args.numeric_owner {
            Owners::Numeric
        } else {
            Owners::Auto
        },
        select,
        cancel: Some(crate::cleanup::cancellation()),
        strip_components: args.strip_components,
        progress: Some(std::sync::Arc::new(extract::ExtractProgress::default())),
        threads: args.threads.map_or_else(|| ExtractOptions::default().threads, |n| n as usize),
    }
}

/// `extract --image NAME [--partition N] DEST [PATH...]`: files of the file
/// system inside an image section, under every rule of tree extraction.
fn extract_image(args: &ExtractArgs) -> Result<u8, Failure> {
    // Extraction checks every chunk it reads by its BLAKE3 (FORMAT.md 10.1).
    let checks = crate::volumes::Checks::Whole;
    let (opened, paths, damaged) =
        open_image_files(&args.archive, args.in_image.image.as_deref(), args.in_image.partition, checks, &args.paths)?;
    let options = extract_options(args, paths.clone());
    let started = std::time::Instant::now();
    let mut missing = Vec::new();
    let mut walk_failure = None;
    let report = extract::extract_entries(
        |visit| {
            match crate::volumes::walk_entries(&opened, &paths, visit) {
                Ok(not_found) => missing = not_found,
                Err(failure) => walk_failure = Some(failure),
            }
            Ok(())
        },
        0,
        &crate::volumes::FsContent(opened.fs.as_ref()),
        &args.dest,
        &options,
    );
    let report = report.map_err(|e| {
        if crate::cleanup::cancelled() {
            return Failure { code: 130, message: "interrupted; temporary files removed".to_string() };
        }
        Failure::fatal(format!("{}: {e}", args.dest.display()))
    })?;
    if let Some(failure) = walk_failure {
        return Err(failure);
    }
    let mut report = report;
    // Paths the walk did not find are the selection's "not found"; the
    // extraction's own list would repeat them.
    report.not_found = missing;
    let troubled = report_extraction(args, &report, &opened.shown(), started);
    Ok(u8::from(troubled || damaged))
}

pub fn extract(args: ExtractArgs) -> Result<u8, Failure> {
    if args.in_image.image.is_some() {
        return extract_image(&args);
    }
    let label = args.archive.display().to_string();
    let (archive, damaged) = open_intact(&args.archive)?;
    let name = pick_section(&archive, args.files.as_deref(), SectionKind::Files, &label)?;
    let tree = archive.tree(&name).map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
    let options = extract_options(&args, selected_paths(tree, &args.paths, &label)?);
    let started = std::time::Instant::now();
    // The totals come from the section's end record: bytes for the bar, entries
    // for its message (a selection extracts fewer; the bar then ends early).
    let bar = output::bar("extract", Some(tree.section().end.content_bytes), false);
    let counters = options.progress.clone().expect("set above");
    let (total_entries, ticking) = (tree.entry_count(), bar.clone());
    let ticker = output::Ticker::every(std::time::Duration::from_millis(100), move || {
        ticking.set_position(counters.bytes.load(std::sync::atomic::Ordering::Relaxed));
        let done = counters.entries.load(std::sync::atomic::Ordering::Relaxed);
        ticking.set_message(format!("{} / {} entries", output::grouped(done), output::grouped(total_entries)));
    });
    let report = tree.extract_to(&args.dest, &options);
    drop(ticker);
    bar.finish_and_clear();
    let report = report.map_err(|e| {
        if crate::cleanup::cancelled() {
            return Failure { code: 130, message: "interrupted; temporary files removed".to_string() };
        }
        // A failure of the destination names the destination, not the archive.
        let place = if e.class().is_none() { args.dest.display().to_string() } else { label.clone() };
        Failure::fatal(format!("{place}: {e}"))
    })?;
    let troubled = report_extraction(&args, &report, &format!("files {}", tree.name()), started);
    Ok(u8::from(troubled || damaged))
}

/// What an extraction refused, warned about and did not find, and its
/// one-line summary; whether there was any of the first three.
fn report_extraction(
    args: &ExtractArgs,
    report: &extract::ExtractReport,
    source: &str,
    started: std::time::Instant,
) -> bool {
    if args.json {
        let list = |items: &[extract::Refusal]| -> Vec<serde_json::Value> {
            items
                .iter()
                .map(
                    |r| json!({"path": String::from_utf8_lossy(&r.path), "path_hex": hex(&r.path), "reason": r.reason}),
                )
                .collect()
        };
        output::print_json(&json!({
            "entries": report.entries,
            "bytes": report.bytes,
            "refused": list(&report.refused),
            "warnings": list(&report.warnings),
            "not_found": report.not_found.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>(),
        }));
    }
    for refusal in &report.refused {
        eprintln!("strata: refusing {} in {source}: {}", shown(&refusal.path), refusal.reason);
    }
    for warning in &report.warnings {
        eprintln!("warning: {} in {source}: {}", shown(&warning.path), warning.reason);
    }
    for path in &report.not_found {
        eprintln!("strata: {}: not in {source}", shown(path));
    }
    // The one-line summary stays with --quiet, as for every command.
    {
        eprintln!(
            "{}: {} entries, {} extracted in {:.1} s{}",
            args.dest.display(),
            output::grouped(report.entries),
            output::size(report.bytes),
            started.elapsed().as_secs_f64(),
            if report.refused.is_empty() {
                String::new()
            } else {
                format!("; {} refused, the rest extracted", report.refused.len())
            }
        );
    }
    !report.refused.is_empty() || !report.warnings.is_empty() || !report.not_found.is_empty()
}
