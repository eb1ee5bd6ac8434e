//! Every example the user is shown runs as written (issue 15, acceptance 3):
//! the examples sections of `strata --help`, `strata help` and every
//! `strata COMMAND --help`, and the `strata` lines of the README's shell blocks.
//!
//! What counts as an example, so that one added later is run without touching
//! this file:
//! - help: the indented lines under a line starting `Example` and ending `:`
//!   (`Examples:`, `Example (for your user ...):`), up to the next blank line;
//!   every command listed under `Commands:` must have at least one;
//! - README: each line of a fenced block tagged `sh`, `bash`, `shell` or
//!   `console` (a leading `$ ` prompt is dropped, a trailing `\` joins lines)
//!   in which one of the commands of a pipeline is `strata`. A line that runs
//!   no `strata` at all (`cargo install`, `bash scripts/test.sh`, `mkdir -p`)
//!   is setup, not an example, and is skipped.
//!
//! Each example runs with `bash -o pipefail -c LINE` in a fresh copy of one
//! sandbox (the working directory), with `HOME` inside it and the built
//! `strata` first on `PATH`. The sandbox holds what the examples name: a home
//! folder (`Documents`, `Pictures`, a cache, a `*.tmp` file), `disk.img`,
//! `efi.img`, `disk.img.gz`, and the archives `backup.strata` (image `disk`
//! from `disk.img`, files `home` from `$HOME`), `monday.strata` and
//! `tuesday.strata` (two backups of one home a day apart, Tuesday's made with
//! `--parent monday.strata`: it stores only the changes),
//! `damaged.strata` (`backup.strata` with a byte of its image flipped),
//! `system.img` (a GPT disk whose partition 1 is ext4 holding `etc/hostname`
//! and `etc/os-release`) and `system.strata` (its used blocks, image `system`).
//! Before the run, the file or folder the command writes (the archive of
//! `create`, the output of `salvage` and `restore`, the destination of
//! `extract`) is removed, as it would not exist yet, and the folder of every
//! `> FILE` redirection is made, as the user's would exist.
//!
//! An example must exit 0, except where the sandbox makes it report something:
//! 1 for anything reading `damaged.strata`, and for a `diff` of
//! `monday.strata` with `tuesday.strata`. Then, cheaply, its effect: an
//! archive written (by `create`, `salvage`, or a redirection to `*.strata`)
//! passes `strata verify`, a restored image equals `disk.img`, an extraction
//! leaves files, a redirection leaves a non-empty file.
//!
//! An example that cannot run as written here fails the test rather than
//! being skipped: unbalanced quotes, `[optional]` notation, `$(...)`, a
//! variable other than `$HOME`, or an absolute path (a device such as
//! `/dev/sdb`, a system folder such as `/etc`: the test runs as root and must
//! not read or write the machine's own). Devices are described in prose.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{path_str, temp_dir};

/// One example and where it was found.
#[derive(Clone, Debug)]
struct Example {
    origin: String,
    line: String,
}

fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

fn help_text(args: &[&str]) -> String {
    let out = Command::new(strata_bin()).args(args).stdin(Stdio::null()).output().expect("strata runs");
    assert!(out.status.success(), "strata {args:?} exits 0");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The commands `strata --help` lists, but `help`.
fn subcommands(top: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in top.lines() {
        if line == "Commands:" {
            inside = true;
        } else if inside && line.starts_with("  ") {
            let name = line.split_whitespace().next().expect("a command line has a name");
            if name != "help" {
                names.push(name.to_string());
            }
        } else if inside {
            break;
        }
    }
    assert!(!names.is_empty(), "no commands found in `strata --help`:\n{top}");
    names
}

/// The lines of a help text's examples sections.
fn examples_in_help(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("Example") && line.ends_with(':') {
            inside = true;
        } else if inside && line.trim().is_empty() {
            inside = false;
        } else if inside {
            assert!(line.starts_with("  "), "an examples section holds indented lines only: {line:?}");
            found.push(line.trim().to_string());
        }
    }
    found
}

fn help_examples() -> Vec<Example> {
    let top = help_text(&["--help"]);
    let mut examples = Vec::new();
    let mut seen = BTreeSet::new();
    for (origin, text) in [("strata --help", top.clone()), ("strata help", help_text(&["help"]))] {
        for line in examples_in_help(&text) {
            if seen.insert(line.clone()) {
                examples.push(Example { origin: origin.to_string(), line });
            }
        }
    }
    assert!(!examples.is_empty(), "`strata --help` shows no example:\n{top}");
    for command in subcommands(&top) {
        let text = help_text(&[&command, "--help"]);
        let lines = examples_in_help(&text);
        assert!(!lines.is_empty(), "`strata {command} --help` shows no example:\n{text}");
        for line in lines {
            if seen.insert(line.clone()) {
                examples.push(Example { origin: format!("strata {command} --help"), line });
            }
        }
    }
    examples
}

fn readme_examples() -> Vec<Example> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("the README is readable");
    let mut examples = Vec::new();
    let mut fence: Option<bool> = None; // Some(is a shell block)
    let mut pending = String::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(info.split_whitespace().next(), Some("sh" | "bash" | "shell" | "console"))),
            };
            continue;
        }
        if fence != Some(true) {
            continue;
        }
        let line = line.strip_prefix("$ ").unwrap_or(line);
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            continue;
        }
        let whole = std::mem::take(&mut pending) + line;
        if whole.trim().is_empty() {
            continue;
        }
        // Whether it runs strata is decided on the parsed line; one that
        // cannot be parsed is kept, to fail below with its reason.
        let runs_strata =
            parse(&whole).map(|line| line.commands.iter().any(|c| c.words.first().is_some_and(|w| w == "strata")));
        if runs_strata.unwrap_or(whole.contains("strata")) {
            examples.push(Example { origin: format!("README.md line {}", number + 1), line: whole.trim().to_string() });
        }
    }
    assert!(fence.is_none(), "the README ends inside a fenced block");
    examples
}

/// A command line as far as this test needs it: the commands of a pipeline
/// (or `&&` list), each with its words and redirections, quotes removed.
#[derive(Debug, Default)]
struct Line {
    commands: Vec<Simple>,
}

#[derive(Debug, Default, Clone)]
struct Simple {
    words: Vec<String>,
    /// `> FILE` and `>> FILE` targets.
    outputs: Vec<String>,
    /// `< FILE` sources.
    inputs: Vec<String>,
}

/// Splits `text` as a POSIX shell would for the constructs examples use:
/// words, single and double quotes, backslashes, `|`, `&&`, `;`, `<`, `>`,
/// `>>`, and `#` comments. Anything else is refused with the reason.
fn parse(text: &str) -> Result<Line, String> {
    let mut line = Line::default();
    let mut current = Simple::default();
    let mut word: Option<String> = None;
    let mut redirect: Option<char> = None;
    let mut chars = text.chars().peekable();
    // `last`: the command ends here, so a pending redirection has no file.
    fn end_word(
        word: &mut Option<String>,
        redirect: &mut Option<char>,
        current: &mut Simple,
        last: bool,
    ) -> Result<(), String> {
        if let Some(w) = word.take() {
            match redirect.take() {
                Some('>') => current.outputs.push(w),
                Some('<') => current.inputs.push(w),
                _ => current.words.push(w),
            }
        } else if last && redirect.is_some() {
            return Err("a redirection without a file".to_string());
        }
        Ok(())
    }
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut word, &mut redirect, &mut current, false)?,
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("an unbalanced single quote".to_string()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.push(chars.next().ok_or("a backslash at the end")?),
                        Some('`') => return Err("a command substitution".to_string()),
                        Some(c) => w.push(c),
                        None => return Err("an unbalanced double quote".to_string()),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next().ok_or("a backslash at the end")?),
            '`' => return Err("a command substitution".to_string()),
            '|' | ';' | '&' => {
                end_word(&mut word, &mut redirect, &mut current, true)?;
                if c == '&' && chars.next_if_eq(&'&').is_none() {
                    return Err("a background job (&)".to_string());
                }
                if c == '|' {
                    chars.next_if_eq(&'|');
                }
                if current.words.is_empty() {
                    return Err(format!("an empty command before {c:?}"));
                }
                line.commands.push(std::mem::take(&mut current));
            }
            '<' | '>' => {
                end_word(&mut word, &mut redirect, &mut current, true)?;
                if c == '>' {
                    chars.next_if_eq(&'>');
                }
                redirect = Some(c);
            }
            '(' | ')' => return Err("a subshell or grouping".to_string()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut word, &mut redirect, &mut current, true)?;
    if current.words.is_empty() {
        return Err("an empty command".to_string());
    }
    line.commands.push(current);
    Ok(line)
}

/// Why an example cannot run as written in a sandbox, if it cannot. Words are
/// checked as typed (`~` and `$HOME` not yet expanded).
fn unrunnable(line: &Line) -> Option<String> {
    for command in &line.commands {
        for word in command.words.iter().chain(&command.outputs).chain(&command.inputs) {
            if word.starts_with('[') || word.contains("...") {
                return Some(format!("{word:?} is notation (optional or repeated), not something to type"));
            }
            if word.contains("$(") {
                return Some(format!("{word:?} holds a command substitution"));
            }
            let without_home = word.replace("${HOME}", "").replace("$HOME", "");
            if without_home.contains('$') {
                return Some(format!("{word:?} uses a variable other than $HOME"));
            }
            // An absolute path, alone or after `NAME=`: the machine's own files.
            let value = word.rsplit_once('=').map_or(word.as_str(), |(_, v)| v);
            if value.starts_with('/') {
                return Some(format!("{word:?} names the machine's own files or devices"));
            }
        }
    }
    None
}

/// Options of a command and whether each takes a value, from its `--help`.
fn options_of(command: &str) -> Vec<(String, bool)> {
    let text = help_text(&[command, "--help"]);
    let mut options = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "Options:" {
            inside = true;
            continue;
        }
        if inside && !line.starts_with(' ') {
            break;
        }
        let spec = line.trim_start();
        if !inside || !spec.starts_with('-') {
            continue;
        }
        let spec = spec.split("  ").next().unwrap_or(spec);
        let takes_value = spec.contains('<');
        for name in spec.split([',', ' ']).filter(|w| w.starts_with('-')) {
            options.push((name.to_string(), takes_value));
        }
    }
    options
}

/// The operands of `strata VERB ...`: the words that are neither options nor
/// their values.
fn operands(words: &[String], options: &[(String, bool)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        if word == "-" || !word.starts_with('-') {
            found.push(word.clone());
            continue;
        }
        if word.contains('=') {
            continue;
        }
        if options.iter().any(|(name, value)| name == word && *value) {
            rest.next();
        }
    }
    found
}

/// `~` and `$HOME` as the shell expands them, relative paths from the sandbox.
fn resolve(sandbox: &Path, home: &Path, word: &str) -> PathBuf {
    let expanded = if let Some(rest) = word.strip_prefix("~/") {
        format!("{}/{rest}", path_str(home))
    } else if word == "~" {
        path_str(home).to_string()
    } else {
        word.replace("${HOME}", path_str(home)).replace("$HOME", path_str(home))
    };
    sandbox.join(expanded)
}

/// The verbs that write, and which of their operands is the output.
fn output_of(verb: &str, operands: &[String]) -> Option<String> {
    let at = match verb {
        "create" => 0,
        "extract" | "salvage" | "flatten" => 1,
        "restore" => operands.len().checked_sub(1)?,
        _ => return None,
    };
    operands.get(at).filter(|o| o.as_str() != "-").cloned()
}

/// The exit status an example gives in this sandbox (see the module's docs).
fn expected_status(strata: &Simple) -> i32 {
    let names = |name: &str| strata.words.iter().any(|w| w == name);
    let verb = strata.words.get(1).map(String::as_str);
    if names("damaged.strata") || (verb == Some("diff") && names("monday.strata") && names("tuesday.strata")) {
        1
    } else {
        0
    }
}

fn run_tool(dir: &Path, program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).current_dir(dir).stdin(Stdio::null()).status().expect("runs");
    assert!(status.success(), "{program} {args:?} failed in {}", dir.display());
}

/// Builds the sandbox every example starts from; returns its disk image.
fn build_template(root: &Path) -> Vec<u8> {
    let home = root.join("home");
    let write = |path: &str, bytes: &[u8]| {
        let path = home.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    let noise = |seed: u32, len: usize| -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    write("Documents/thesis.pdf", &noise(1, 200_000));
    write("Documents/notes.txt", b"buy milk\ncall the bank\n");
    write("Documents/draft.tmp", b"scratch\n");
    write("Pictures/cat.jpg", &noise(2, 50_000));
    write(".cache/CACHEDIR.TAG", b"Signature: 8a477f597d28d172789f06886806bc55\n");
    write(".cache/blob", &noise(3, 10_000));
    // A disk of 2 MiB: data that does not compress at the start and past 1 MiB
    // (`cat --offset 1M` reads it), zeros in between.
    let mut disk = vec![0u8; 2 << 20];
    disk[..256 << 10].copy_from_slice(&noise(4, 256 << 10));
    disk[1 << 20..(1 << 20) + (64 << 10)].copy_from_slice(&noise(5, 64 << 10));
    std::fs::write(root.join("disk.img"), &disk).unwrap();
    std::fs::write(root.join("efi.img"), noise(6, 64 << 10)).unwrap();
    run_tool(root, "gzip", &["-k", "disk.img"]);
    // A system disk: GPT, partition 1 an ext4 file system made from a folder
    // holding etc/hostname and etc/os-release (sgdisk and mkfs.ext4 -d).
    let system = root.join(".system");
    std::fs::create_dir_all(system.join("etc")).unwrap();
    std::fs::write(system.join("etc/hostname"), b"strata-demo\n").unwrap();
    std::fs::write(system.join("etc/os-release"), b"NAME=Demo\n").unwrap();
    run_tool(root, "truncate", &["-s", "12M", "system.img"]);
    run_tool(root, "sh", &["-c", "sgdisk -o -n1:2048:+8M -t1:8300 system.img >/dev/null"]);
    run_tool(root, "sh", &["-c", "mkfs.ext4 -q -F -d .system .system.part 8M 2>/dev/null >/dev/null"]);
    run_tool(root, "dd", &["if=.system.part", "of=system.img", "bs=1M", "seek=1", "conv=notrunc", "status=none"]);
    std::fs::remove_file(root.join(".system.part")).unwrap();
    std::fs::remove_dir_all(&system).unwrap();
    let strata = |args: &[&str]| {
        let out = Command::new(strata_bin()).args(args).current_dir(root).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "fixture: strata {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let home_files = format!("home={}", path_str(&home));
    strata(&["create", "backup.strata", "--image", "disk=disk.img", "--files", &home_files]);
    strata(&["create", "system.strata", "--image", "system.img", "--used-blocks", "-q"]);
    // Two days of one home, made from a copy so that the sandbox's is untouched.
    let days = root.join("..").join("days");
    run_tool(root, "cp", &["-a", path_str(&home), path_str(&days)]);
    let day_files = format!("home={}", path_str(&days));
    strata(&["create", "monday.strata", "--files", &day_files]);
    std::fs::write(days.join("Documents/notes.txt"), b"buy milk\n").unwrap();
    std::fs::write(days.join("Documents/letter.txt"), b"Dear bank,\n").unwrap();
    // Tuesday's is incremental: it stores only what Monday's lacks.
    strata(&["create", "tuesday.strata", "--parent", "monday.strata", "--files", &day_files]);
    // One byte flipped in the image's data: verify and salvage find it.
    let mut damaged = std::fs::read(root.join("backup.strata")).unwrap();
    let at = damaged.len() / 8;
    damaged[at] ^= 0x40;
    std::fs::write(root.join("damaged.strata"), damaged).unwrap();
    let verify = Command::new(strata_bin()).args(["verify", "damaged.strata"]).current_dir(root).output().unwrap();
    assert_eq!(verify.status.code(), Some(1), "the damaged fixture is damaged");
    disk
}

/// Runs one example in a fresh copy of the template; returns what went wrong.
/// Where examples run: the template every sandbox is copied from, the folder
/// the copies go in, the template's disk image, and the commands `strata` has.
struct Stage<'a> {
    template: &'a Path,
    scratch: &'a Path,
    disk: &'a [u8],
    verbs: &'a [String],
}

/// Commands that serve until they are stopped.
const SERVERS: &[&str] = &["serve", "mount"];

fn run_example(example: &Example, stage: &Stage<'_>, index: usize) -> Result<(), String> {
    let Stage { template, scratch, disk, verbs } = *stage;
    let line = parse(&example.line).map_err(|e| format!("cannot be parsed: {e}"))?;
    if let Some(reason) = unrunnable(&line) {
        return Err(format!("cannot run as written on a test machine: {reason}"));
    }
    let Some(strata) = line.commands.iter().find(|c| c.words[0] == "strata") else {
        return Err("runs no strata command".to_string());
    };
    let verb = strata.words.get(1).cloned().unwrap_or_default();
    if !verbs.contains(&verb) {
        return Err(format!("`strata {verb}` is not one of the commands `strata --help` lists"));
    }
    let sandbox = scratch.join(format!("example-{index}"));
    run_tool(scratch, "cp", &["-a", path_str(template), path_str(&sandbox)]);
    let home = sandbox.join("home");
    let tmp = sandbox.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();

    let options = options_of(&verb);
    let operands = operands(&strata.words[2..], &options);
    let output = output_of(&verb, &operands).map(|o| resolve(&sandbox, &home, &o));
    if let Some(output) = &output {
        let _ = std::fs::remove_file(output);
        let _ = std::fs::remove_dir_all(output);
    }
    let redirected: Vec<PathBuf> =
        line.commands.iter().flat_map(|c| &c.outputs).map(|o| resolve(&sandbox, &home, o)).collect();
    for target in &redirected {
        std::fs::create_dir_all(target.parent().expect("a redirection names a file")).unwrap();
    }

    let bin_dir = Path::new(strata_bin()).parent().expect("the binary has a folder");
    let path = format!("{}:{}", path_str(bin_dir), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("timeout");
    command
        .current_dir(&sandbox)
        .env("PATH", path)
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    let out = if SERVERS.contains(&verb.as_str()) {
        // A server runs until it is stopped: it is given a few seconds, then
        // one SIGTERM (bash execs it, so the signal is its alone), after which
        // it must stop cleanly; `timeout` stays as a backstop.
        let child = command
            .args(["-s", "KILL", "30", "bash", "-c", &format!("exec {}", example.line)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash runs");
        std::thread::sleep(std::time::Duration::from_secs(3));
        // `timeout` runs bash (then the server) as its one child.
        let children =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id())).unwrap_or_default();
        for pid in children.split_whitespace() {
            // Gone already: its exit status says why.
            let _ = Command::new("kill").args(["-TERM", pid]).status();
        }
        let out = child.wait_with_output().expect("the server stops");
        // A mount that detached is still there: unmount whatever the example
        // mounted in its sandbox (its process then exits).
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if Path::new(point).starts_with(&sandbox) {
                let unmounted = Command::new("fusermount3").args(["-u", point]).status().is_ok_and(|s| s.success());
                if !unmounted {
                    let _ = Command::new("umount").args(["-l", point]).status();
                }
            }
        }
        out
    } else {
        command.args(["60", "bash", "-o", "pipefail", "-c", &example.line]).output().expect("bash runs")
    };
    let said = || {
        format!(
            "\n  stdout: {}\n  stderr: {}",
            String::from_utf8_lossy(&out.stdout).chars().take(600).collect::<String>(),
            String::from_utf8_lossy(&out.stderr).chars().take(1500).collect::<String>()
        )
    };
    let wanted = expected_status(strata);
    if out.status.code() != Some(wanted) {
        return Err(format!("exit status {:?}, expected {wanted}{}", out.status.code(), said()));
    }

    // Effects.
    let verify = |archive: &Path| -> Result<(), String> {
        let out = Command::new(strata_bin()).arg("verify").arg(archive).stdin(Stdio::null()).output().unwrap();
        match out.status.code() {
            Some(0) => Ok(()),
            code => Err(format!("{} does not verify ({code:?})", archive.display())),
        }
    };
    if let Some(output) = &output {
        match verb.as_str() {
            "create" | "salvage" | "flatten" => verify(output)?,
            "restore" if std::fs::read(output).ok().as_deref() != Some(disk) => {
                return Err(format!("{} is not the image that was backed up", output.display()))
            }
            "extract" => {
                let entries = std::fs::read_dir(output).map(|d| d.count()).unwrap_or(0);
                if entries == 0 {
                    return Err(format!("{} holds nothing after the extraction", output.display()));
                }
            }
            _ => {}
        }
    }
    for target in &redirected {
        let size = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return Err(format!("{} is empty or missing{}", target.display(), said()));
        }
        if target.extension().is_some_and(|e| e == "strata") {
            verify(target)?;
        }
    }
    let _ = std::fs::remove_dir_all(&sandbox);
    Ok(())
}

fn run_all(examples: &[Example]) {
    for tool in ["gzip", "xxd", "split", "timeout", "bash"] {
        if !common::require_tool(tool) {
            return;
        }
    }
    let scratch = temp_dir();
    let template = scratch.path().join("template");
    std::fs::create_dir_all(&template).unwrap();
    let disk = build_template(&template);
    let verbs = subcommands(&help_text(&["--help"]));
    let stage = Stage { template: &template, scratch: scratch.path(), disk: &disk, verbs: &verbs };
    // Two at a time: the machine has two cores.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(example) = examples.get(index) else { break };
                if let Err(problem) = run_example(example, &stage, index) {
                    let said = format!("{}: `{}`: {problem}", example.origin, example.line);
                    failures.lock().unwrap().push(said);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} examples failed:\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_help_example_runs_as_written() {
    let examples = help_examples();
    // Every command has one (checked above), so there are at least that many.
    assert!(examples.len() >= 12, "{examples:#?}");
    run_all(&examples);
}

#[test]
fn every_readme_example_runs_as_written() {
    let examples = readme_examples();
    assert!(examples.len() >= 10, "the README's examples were not found: {examples:#?}");
    // The install block's lines run strata too: completions and the manual page.
    assert!(examples.iter().any(|e| e.line.starts_with("strata manpage")), "{examples:#?}");
    run_all(&examples);
}

#[test]
fn the_parser_refuses_what_cannot_run_as_written() {
    let refused = |text: &str| {
        let line = parse(text);
        line.map_or(true, |line| unrunnable(&line).is_some())
    };
    assert!(refused("strata info backup.strata [--json]"));
    assert!(refused("strata create backup.strata --image disk=/dev/sdb"));
    assert!(refused("dd if=/dev/sdb | strata create backup.strata --image disk=-"));
    assert!(refused("strata completions zsh > \"${fpath[1]}/_strata\""));
    assert!(refused("strata create b.strata 'unbalanced"));
    assert!(!refused("strata create backup.strata --files home=$HOME --exclude '*.tmp'"));
    let line = parse("gzip -dc a.gz | strata create b.strata --image disk=- > x # comment | not").unwrap();
    assert_eq!(line.commands.len(), 2);
    assert_eq!(line.commands[1].words, ["strata", "create", "b.strata", "--image", "disk=-"]);
    assert_eq!(line.commands[1].outputs, ["x"]);
}
