//! `strata`: create, inspect, verify, restore and serve Strata archives.
//!
//! Exit codes (every command): 0 success; 1 finished but damage was found or
//! something was refused or warned about; 2 usage error, I/O failure, or nothing
//! usable.

mod atomic;
mod chain;
mod cleanup;
mod create;
mod device;
mod diff;
mod files;
mod inspect;
mod mount;
mod output;
mod restore;
mod salvage;
mod serve;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Strata: one open format for system images and backups.
#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:\n  strata create backup.strata --image disk=disk.img --files home=$HOME\n  strata verify backup.strata\n  strata extract backup.strata --files home restored\n  strata restore backup.strata --image disk restored.img\n\n`strata COMMAND --help` shows each command's options and more examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress and no per-section lines: only the one-line summary, warnings
    /// and errors, on stderr (every command).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Progress as a plain line every few seconds, for logs, when stderr is not a
    /// terminal (on a terminal a bar is shown anyway).
    #[arg(long, global = true, conflicts_with = "quiet")]
    progress: bool,
    /// An ancestor of an incremental archive, when it is not beside the archive
    /// under the name the archive records (matched by its UUID; repeatable).
    /// With `create`: the parent to store only the changes since.
    #[arg(long, global = true, value_name = "PATH")]
    parent: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create an archive from block images (disks, partitions, image files) and file trees.
    #[command(
        after_help = "Examples:\n  strata create backup.strata ~/Documents ~/Pictures\n  strata create backup.strata --image disk=disk.img --files home=$HOME --exclude '*.tmp'\n  strata create - --image disk.img > backup.strata\n  gzip -dc disk.img.gz | strata create backup.strata --image disk=-\n\nA disk or partition is imaged the same way: --image disk=/dev/sdb (a device mounted read-write is refused without --force)."
    )]
    Create(create::CreateArgs),
    /// Show an archive's sections, sizes and features without reading its data.
    #[command(after_help = "Example:\n  strata info backup.strata --json")]
    Info(inspect::InfoArgs),
    /// Check every checksum and reference; report what is damaged.
    #[command(
        after_help = "Exit status: 0 clean, 1 damaged (the damage is listed), 2 unreadable or not a Strata archive.\n\nExample:\n  strata verify backup.strata"
    )]
    Verify(inspect::VerifyArgs),
    /// Write a new, valid archive holding everything intact from a damaged one.
    #[command(
        after_help = "Exit status: 0 nothing was lost, 1 something was lost (listed), 2 nothing usable.\n\nExample:\n  strata salvage damaged.strata recovered.strata"
    )]
    Salvage(salvage::SalvageArgs),
    /// Write a self-contained copy of an incremental archive (made with --parent).
    #[command(
        after_help = "Example:\n  strata flatten tuesday.strata tuesday-full.strata\n\nThe copy needs no ancestor; use it to start a new chain or to keep one file. Exit status: 0 written, 2 an ancestor is missing or damaged (nothing written)."
    )]
    Flatten(salvage::FlattenArgs),
    /// List a file tree, like `tar -tv`.
    #[command(
        after_help = "Examples:\n  strata list backup.strata --long\n  strata list backup.strata --files home Documents --json"
    )]
    List(files::ListArgs),
    /// Extract a file tree (or chosen paths) into a folder, safely.
    #[command(
        after_help = "Examples:\n  strata extract backup.strata restored\n  strata extract backup.strata --files home restored Documents/thesis.pdf"
    )]
    Extract(files::ExtractArgs),
    /// Restore an image to a file, a block device, or standard output.
    #[command(
        after_help = "Examples:\n  strata restore backup.strata restored.img\n  strata restore backup.strata --image disk - | gzip > disk.img.gz\n  strata restore - --image disk restored.img < backup.strata\n\nTo a disk, name its device as DEST (/dev/sdc): it must not be mounted and must be at least as large as the image."
    )]
    Restore(restore::RestoreArgs),
    /// Write a byte range of an image, or one file of a tree, to standard output.
    #[command(
        after_help = "Examples:\n  strata cat backup.strata --image disk --offset 1M --length 512 | xxd\n  strata cat backup.strata --files home Documents/notes.txt"
    )]
    Cat(inspect::CatArgs),
    /// What differs between a file tree and a folder, or between two archives.
    #[command(
        after_help = "Exit status: 0 no differences, 1 differences (listed: + added, - removed, M modified), 2 trouble.\n\nExamples:\n  strata diff backup.strata --files home ~\n  strata diff monday.strata tuesday.strata --files home --json"
    )]
    Diff(diff::DiffArgs),
    /// Serve an image section over NBD, read-only, to qemu, nbdcopy and VMs.
    #[command(
        after_help = "Exit status: 0 stopped cleanly, 1 stopped after answering reads of damaged ranges with EIO, 2 could not start.\n\nExamples:\n  strata serve backup.strata --unix disk.sock\n  strata serve backup.strata --image disk --port 10809\n\nThen, from another terminal: qemu-img convert -O qcow2 'nbd+unix:///disk?socket=disk.sock' disk.qcow2, or nbdinfo --map nbd://127.0.0.1/disk."
    )]
    Serve(serve::ServeArgs),
    /// Mount an archive read-only: a folder per file tree, a file per image.
    #[command(
        after_help = "Exit status: 0 unmounted cleanly (or, without -f, mounted), 1 the archive was damaged and only its intact part was mounted, 2 could not mount.\n\nExamples:\n  mkdir -p mnt && strata mount backup.strata mnt\n  mkdir -p mnt && strata mount -f backup.strata mnt --cache 256M\n\nThen `ls mnt` shows a folder per file tree and a file per image (`mount -o loop,ro mnt/disk /mnt/disk` mounts one); `fusermount3 -u mnt`, or Ctrl-C or SIGTERM to `strata mount -f`, unmounts."
    )]
    Mount(mount::MountArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples (for your user; the folders must exist):\n  strata completions bash > ~/.local/share/bash-completion/completions/strata\n  strata completions zsh > ~/.zfunc/_strata\n  strata completions fish > ~/.config/fish/completions/strata.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for `man`.
    #[command(
        after_help = "Example (for your user; `man strata` finds it when ~/.local/bin is on PATH):\n  strata manpage > ~/.local/share/man/man1/strata.1"
    )]
    Manpage,
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Usage errors, I/O failures, nothing usable: exit 2.
    pub fn fatal(message: impl Into<String>) -> Self {
        Failure { code: 2, message: message.into() }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let hint = tar_hint(&e);
            let _ = e.print();
            if let Some(hint) = hint {
                eprintln!("\n  hint: {hint}");
            }
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    output::configure(cli.quiet, cli.progress);
    chain::set_parent_files(cli.parent.clone());
    let result = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Info(args) => inspect::info(args),
        Command::Verify(args) => inspect::verify(args),
        Command::Restore(args) => restore::run(args),
        Command::List(args) => files::list(args),
        Command::Salvage(args) => salvage::run(args),
        Command::Flatten(args) => salvage::flatten(args),
        Command::Extract(args) => files::extract(args),
        Command::Cat(args) => inspect::cat(args),
        Command::Diff(args) => diff::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Mount(args) => mount::run(args),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "strata", &mut script);
            write_stdout(&script)
        }
        Command::Manpage => manpage(),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            // An empty message: the failure was told already (a detached mount's).
            if !failure.message.is_empty() {
                eprintln!("strata: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// What a tar, borg or zstd habit that clap did not recognise is called here.
fn tar_hint(error: &clap::Error) -> Option<&'static str> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(argument)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    Some(match argument.split('=').next().unwrap_or_default() {
        "-v" | "--verbose" => "strata shows progress on a terminal (--progress for logs); `strata list -l ARCHIVE` shows what an archive holds",
        "-C" | "--directory" => "name the folders themselves (strata create ARCHIVE /srv/www), or give the destination folder to extract as its last argument",
        "-c" | "-x" | "-t" | "-z" | "--zstd" => "strata's verbs are words: strata create, strata extract, strata list; archives are always compressed with zstd",
        "-o" | "--output" => "the output comes right after the verb: strata create OUT.strata ..., strata restore ARCHIVE OUT.img",
        "-r" | "--recursive" => "folders are always backed up whole",
        _ => return None,
    })
}

/// The manual page: the command's and every subcommand's help, in roff.
fn manpage() -> Result<u8, Failure> {
    let command = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    let fail = |e: std::io::Error| Failure::fatal(format!("writing the manual page: {e}"));
    clap_mangen::Man::new(command.clone()).render(&mut out).map_err(fail)?;
    for sub in command.get_subcommands().filter(|s| !matches!(s.get_name(), "completions" | "manpage" | "help")) {
        let name: &'static str = Box::leak(format!("strata-{}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name).bin_name(name);
        let man = clap_mangen::Man::new(sub);
        // One page: each subcommand as a section of its own.
        std::io::Write::write_all(&mut out, b"\n").map_err(fail)?;
        man.render_name_section(&mut out).map_err(fail)?;
        man.render_synopsis_section(&mut out).map_err(fail)?;
        man.render_description_section(&mut out).map_err(fail)?;
        man.render_options_section(&mut out).map_err(fail)?;
        man.render_extra_section(&mut out).map_err(fail)?;
    }
    write_stdout(&out)
}

/// Writes `bytes` to standard output; a reader that went away is not an error.
fn write_stdout(bytes: &[u8]) -> Result<u8, Failure> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::fatal(format!("writing to standard output: {e}")))
        }
        _ => Ok(0),
    }
}

/// `-` means standard input or output.
pub fn is_stdio(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

/// Parses `NAME=SOURCE`, or a bare `SOURCE` whose section is named after it
/// (see [`section_name_for`]). A `=` after a `/` belongs to the path.
pub fn parse_named_path(value: &str) -> Result<(Option<String>, PathBuf), String> {
    match value.split_once('=') {
        Some((name, _)) if name.contains('/') => Ok((None, PathBuf::from(value))),
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((Some(name.to_string()), PathBuf::from(path))),
        Some(_) => Err(format!("{value:?}: expected NAME=PATH (for example home=/home) or a path")),
        None if value.is_empty() => Err("an empty path".to_string()),
        None => Ok((None, PathBuf::from(value))),
    }
}

/// The section name a path gives when none is written: its last component
/// (`/home/alice` gives `alice`, `/` gives `root`), without the extension for
/// an image file (`disk.img` gives `disk`, `/dev/sdb` gives `sdb`).
pub fn section_name_for(path: &std::path::Path, image: bool) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // `absolute` keeps `..` and `.` as typed: resolve them lexically for the name.
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    for component in absolute.components() {
        match component {
            std::path::Component::Normal(part) => parts.push(part.to_os_string()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let Some(last) = parts.last() else {
        return "root".to_string();
    };
    let last = std::path::Path::new(last);
    let name = if image { last.file_stem().unwrap_or(last.as_os_str()) } else { last.as_os_str() };
    name.to_string_lossy().into_owned()
}

/// Parses a byte count as people type it: `4096`, `4K`, `4KiB`, `1.5M`, `2G`
/// (K, M, G and T are powers of 1024, as qemu-img and zstd read them; a
/// trailing `B` or `iB` is accepted).
pub fn parse_bytes(value: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{value:?} is not a size: write a number with an optional K, M, G or T (powers of 1024), for example 4M"
        )
    };
    let trimmed = value.trim();
    let unit_at = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(unit_at);
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(bad()),
    };
    if number.is_empty() {
        return Err(bad());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(scale).ok_or_else(|| format!("{value:?} is too large"));
    }
    let fraction: f64 = number.parse().map_err(|_| bad())?;
    let bytes = fraction * scale as f64;
    if bytes.fract() != 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{value:?} is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parses a time as seconds since the Unix epoch, or as an RFC 3339 date
/// (`2024-01-01`, `2024-01-01T12:00:00Z`, `2024-01-01 12:00:00+02:00`; a date
/// or time without an offset is UTC, so that a reproducible build does not
/// depend on the machine's time zone).
pub fn parse_time(value: &str) -> Result<i64, String> {
    let bad = || {
        format!("{value:?} is not a time: write seconds since 1970 (1700000000) or a date (2024-01-01 or 2024-01-01T12:00:00Z)")
    };
    if let Ok(seconds) = value.parse::<i64>() {
        return Ok(seconds);
    }
    let (date, time) = match value.find(['T', 't', ' ']) {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, ""),
    };
    let mut fields = date.splitn(3, '-');
    let mut next = || fields.next().and_then(|f| f.parse::<i64>().ok()).ok_or_else(bad);
    let (year, month, day) = (next()?, next()?, next()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || date.len() < 8 {
        return Err(bad());
    }
    // Offset: Z, or +HH:MM / -HH:MM at the end of the time.
    let (clock, offset) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(at) = time.rfind(['+', '-']).filter(|_| !time.is_empty()) {
        let (h, m) = time[at + 1..].split_once(':').ok_or_else(bad)?;
        let minutes = h.parse::<i64>().map_err(|_| bad())? * 60 + m.parse::<i64>().map_err(|_| bad())?;
        (&time[..at], if &time[at..at + 1] == "-" { -minutes * 60 } else { minutes * 60 })
    } else {
        (time, 0)
    };
    let mut seconds_of_day = 0;
    if !clock.is_empty() {
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let hour: i64 = parts[0].parse().map_err(|_| bad())?;
        let minute: i64 = parts[1].parse().map_err(|_| bad())?;
        // Fractions of a second are dropped: archives record whole seconds.
        let second: i64 = match parts.get(2) {
            Some(s) => s.split('.').next().unwrap_or("").parse().map_err(|_| bad())?,
            None => 0,
        };
        if hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
        seconds_of_day = hour * 3600 + minute * 60 + second;
    }
    let days = days_from_civil(year, month, day).ok_or_else(bad)?;
    Ok(days * 86_400 + seconds_of_day - offset)
}

/// Days since 1970-01-01 of a valid proleptic Gregorian date (jiff, the
/// calendar `list -l` already uses), or `None` for one that does not exist.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    let date =
        jiff::civil::Date::new(i16::try_from(year).ok()?, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()?;
    let epoch = jiff::civil::date(1970, 1, 1);
    Some(i64::from(date.since(epoch).ok()?.get_days()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("4K"), Ok(4096));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("4kb"), Ok(4096));
        assert_eq!(parse_bytes("1.5M"), Ok(1_572_864));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert!(parse_bytes("1Q").unwrap_err().contains("\"1Q\""));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("1.3").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn times_read_as_seconds_or_rfc_3339() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2024-01-01"), Ok(1_704_067_200));
        assert_eq!(parse_time("2024-01-01T12:00:00Z"), Ok(1_704_110_400));
        assert_eq!(parse_time("2024-01-01 14:00:00+02:00"), Ok(1_704_110_400));
        assert_eq!(parse_time("2024-01-01T11:30:00-00:30"), Ok(1_704_110_400));
        assert_eq!(parse_time("2000-02-29T00:00:00.5Z"), Ok(951_782_400));
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Ok(-1));
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
        assert!(parse_time("2024-13-01").is_err());
    }

    #[test]
    fn sections_are_named_after_their_paths() {
        use std::path::Path;
        assert_eq!(section_name_for(Path::new("/home/alice"), false), "alice");
        assert_eq!(section_name_for(Path::new("/home/alice/"), false), "alice");
        assert_eq!(section_name_for(Path::new("/"), false), "root");
        assert_eq!(section_name_for(Path::new("/srv/www.d"), false), "www.d");
        assert_eq!(section_name_for(Path::new("disk.img"), true), "disk");
        assert_eq!(section_name_for(Path::new("/dev/sdb"), true), "sdb");
        assert_eq!(section_name_for(Path::new("/home/alice/.."), false), "home");
    }
}
