//! Every hostile archive of `strata_vectors::hostile` through every command:
//! `verify`, `list` (the whole tree and paths through the directory tables),
//! `cat`, `extract` and `restore`, each under a 30 s wall-clock limit and
//! 512 MiB of peak RSS, with no panic, the exit status and outcome the case
//! states, and nothing created or changed outside the destination (issue 12).
//!
//! Each case gets a fresh work folder holding the archive and `outside/` (the
//! folder the cases aim at, beside every `DEST`). Before and after each command
//! the work folder is snapshotted (recursively, links not followed, with
//! content, owner, mode, times and xattrs; `outside/` with its directories'
//! times too) leaving out only that command's `DEST`, and the two must match.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_vectors::hostile::{
    self, Cat, DestSetup, Extraction, HostileCase, PathState, Restore, ABSOLUTE_TARGET, OUTSIDE,
};

const TIME_LIMIT: Duration = Duration::from_secs(30);
const RSS_LIMIT_KIB: u64 = 512 << 10;
/// Address space allowed to each command: a safety net for the machine, far
/// above the RSS limit that the test asserts.
const ADDRESS_SPACE_LIMIT: u64 = 4 << 30;
const TIME_TOOL: &str = "/usr/bin/time";

/// Cases left out of the run (`STRATA_HOSTILE_CASE=NAME` runs one anyway).
const SKIPPED: &[&str] = &[];

/// What one command did.
struct Ran {
    label: String,
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    wall: Duration,
    rss_kib: Option<u64>,
}

impl Ran {
    fn says(&self) -> String {
        format!(
            "{}: exit {:?}, signal {:?}, {:.2} s, {:?} KiB; stderr: {}",
            self.label,
            self.code,
            self.signal,
            self.wall.as_secs_f64(),
            self.rss_kib,
            String::from_utf8_lossy(&self.stderr).chars().take(600).collect::<String>()
        )
    }
}

/// Peak wall time and RSS per command, over every case.
#[derive(Default)]
struct Peaks(BTreeMap<&'static str, (Duration, String, u64, String)>);

impl Peaks {
    fn note(&mut self, command: &'static str, case: &str, ran: &Ran) {
        let peak = self.0.entry(command).or_default();
        if ran.wall > peak.0 {
            (peak.0, peak.1) = (ran.wall, case.to_string());
        }
        if let Some(rss) = ran.rss_kib.filter(|&r| r > peak.2) {
            (peak.2, peak.3) = (rss, case.to_string());
        }
    }
}

/// Runs `strata ARGS` in its own process group under the time and memory
/// limits; a run past the time limit is killed, group and all.
fn run_limited(args: &[OsString], keep_stdout: bool, scratch: &Path, measure: bool) -> Ran {
    let label = format!("strata {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let rss_file = scratch.join("rss");
    let _ = std::fs::remove_file(&rss_file);
    let mut command = if measure {
        let mut c = Command::new(TIME_TOOL);
        c.arg("-f").arg("rss=%M").arg("-o").arg(&rss_file).arg(env!("CARGO_BIN_EXE_strata"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_strata"))
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(if keep_stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: only an async-signal-safe system call between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit =
                rustix::process::Rlimit { current: Some(ADDRESS_SPACE_LIMIT), maximum: Some(ADDRESS_SPACE_LIMIT) };
            rustix::process::setrlimit(rustix::process::Resource::As, limit).map_err(std::io::Error::from)
        });
    }
    let start = Instant::now();
    let child = command.spawn().expect("strata runs");
    let pid = child.id();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(child.wait_with_output()));
    let (output, timed_out) = match receive.recv_timeout(TIME_LIMIT) {
        Ok(output) => (output.expect("output collected"), false),
        Err(_) => {
            if let Some(group) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            (receive.recv().expect("the killed child is reaped").expect("output collected"), true)
        }
    };
    let wall = start.elapsed();
    let mut ran = Ran {
        label,
        code: output.status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&output.status),
        stdout: output.stdout,
        stderr: output.stderr,
        wall,
        rss_kib: None,
    };
    if measure {
        // time(1) writes "Command terminated by signal N" before the format
        // line when strata dies of a signal, and then exits 128 + N itself.
        let report = std::fs::read_to_string(&rss_file).unwrap_or_default();
        for line in report.lines() {
            if let Some(rss) = line.strip_prefix("rss=") {
                ran.rss_kib = rss.trim().parse().ok();
            }
            if let Some(signal) = line.strip_prefix("Command terminated by signal ") {
                ran.signal = signal.trim().parse().ok();
                ran.code = None;
            }
        }
    }
    if timed_out {
        ran.signal = Some(9);
        ran.code = None;
        ran.label = format!("{} (killed after {TIME_LIMIT:?})", ran.label);
    }
    ran
}

/// Everything known of one path, links not followed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Facts {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    ino: u64,
    /// mtime and ctime, for files and links everywhere and for directories
    /// in `outside/` (other directories change as DESTs come and go).
    times: Option<(i64, i64, i64, i64)>,
    target: Vec<u8>,
    content: Option<String>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

type Snapshot = BTreeMap<PathBuf, Facts>;

/// The work folder, recursively, leaving out `skip` (a command's DEST).
fn snapshot(root: &Path, skip: Option<&Path>) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else { continue };
        for item in read {
            let path = item.expect("a directory entry").path();
            if Some(path.as_path()) == skip {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let kind = meta.mode() & 0o170000;
            let is_dir = meta.is_dir();
            let in_outside = path.components().any(|c| c.as_os_str() == "outside");
            let times =
                (!is_dir || in_outside).then(|| (meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()));
            let target = if meta.file_type().is_symlink() {
                std::fs::read_link(&path).expect("readlink").as_os_str().as_bytes().to_vec()
            } else {
                Vec::new()
            };
            let content = meta
                .file_type()
                .is_file()
                .then(|| blake3::hash(&std::fs::read(&path).expect("readable")).to_hex().to_string());
            let xattrs = common::manifest::xattrs(&path);
            let facts = Facts {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: if is_dir { 0 } else { meta.len() },
                ino: meta.ino(),
                times,
                target,
                content,
                xattrs,
            };
            out.insert(path.strip_prefix(root).expect("below the root").to_path_buf(), facts);
            if is_dir {
                stack.push(path);
            }
        }
    }
    out
}

fn differences(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, facts) in before {
        match after.get(path) {
            None => out.push(format!("{} disappeared", path.display())),
            Some(now) if now != facts => out.push(format!("{} changed: {facts:?} -> {now:?}", path.display())),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("{} appeared", path.display()));
    }
    out
}

fn os(bytes: &[u8]) -> OsString {
    OsStr::from_bytes(bytes).to_os_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

/// Opens the directory holding `path` below `dest`, one component at a time
/// without following links; `None` if a component is missing or not a
/// directory. Returns it and the last component.
fn parent_of(dest: &Path, path: &[u8]) -> Option<(OwnedFd, Vec<u8>)> {
    use rustix::fs::{openat, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(dest, flags, Mode::empty()).ok()?;
    let components: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let (last, above) = components.split_last()?;
    for component in above {
        fd = openat(&fd, OsStr::from_bytes(component), flags, Mode::empty()).ok()?;
    }
    Some((fd, last.to_vec()))
}

/// Checks one expected fact of a path below `dest`.
fn check_path(dest: &Path, path: &[u8], state: &PathState) -> Result<(), String> {
    use rustix::fs::{statat, AtFlags, FileType, Mode, OFlags};
    let shown = String::from_utf8_lossy(path).chars().take(80).collect::<String>();
    let located = if path.is_empty() { None } else { parent_of(dest, path) };
    let stat = match &located {
        _ if path.is_empty() => rustix::fs::stat(dest).ok(),
        Some((parent, name)) => statat(parent, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW).ok(),
        None => None,
    };
    // Extended attributes of the path itself, through its parent's handle.
    let xattr_path = || -> PathBuf {
        match &located {
            Some((parent, name)) => {
                use std::os::fd::AsRawFd;
                PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(OsStr::from_bytes(name))
            }
            None => dest.to_path_buf(),
        }
    };
    let kind = stat.as_ref().map(|s| FileType::from_raw_mode(s.st_mode));
    let fail = |what: String| Err(format!("{shown}: {what}"));
    match state {
        PathState::Absent => match kind {
            None => Ok(()),
            Some(kind) => fail(format!("expected absent, found a {kind:?}")),
        },
        PathState::Dir => match kind {
            Some(FileType::Directory) => Ok(()),
            other => fail(format!("expected a directory, found {other:?}")),
        },
        PathState::File(want) => {
            if kind != Some(FileType::RegularFile) {
                return fail(format!("expected a regular file, found {kind:?}"));
            }
            let (parent, name) = located.as_ref().expect("stat found it");
            let fd = rustix::fs::openat(
                parent,
                OsStr::from_bytes(name),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("{shown}: {e}"))?;
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut got).map_err(|e| format!("{shown}: {e}"))?;
            if &got != want {
                return fail(format!(
                    "content {:?}, expected {:?}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want)
                ));
            }
            Ok(())
        }
        PathState::Symlink(want) => {
            if kind != Some(FileType::Symlink) {
                return fail(format!("expected a symbolic link, found {kind:?}"));
            }
            let (parent, name) = located.as_ref().expect("stat found it");
            let target = rustix::fs::readlinkat(parent, OsStr::from_bytes(name), Vec::new())
                .map_err(|e| format!("{shown}: {e}"))?;
            if target.as_bytes() != want.as_slice() {
                return fail(format!("links to {:?}, expected {:?}", target, String::from_utf8_lossy(want)));
            }
            Ok(())
        }
        PathState::SameFile(other) => {
            let here = stat.ok_or_else(|| format!("{shown}: missing"))?;
            let (parent, name) =
                parent_of(dest, other).ok_or_else(|| format!("{shown}: its target path is missing"))?;
            let there = statat(&parent, OsStr::from_bytes(&name), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| format!("{shown}: target: {e}"))?;
            if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino) {
                return fail(format!("not the same inode as {}", String::from_utf8_lossy(other)));
            }
            Ok(())
        }
        PathState::Mode(mode) => {
            let here = stat.ok_or_else(|| format!("{shown}: missing"))?;
            if here.st_mode & 0o7777 != *mode {
                return fail(format!("mode {:o}, expected {mode:o}", here.st_mode & 0o7777));
            }
            Ok(())
        }
        PathState::Xattr(name, value) => match xattr::get(xattr_path(), OsStr::from_bytes(name)) {
            Ok(Some(got)) if &got == value => Ok(()),
            other => fail(format!("xattr {}: {other:?}, expected {value:?}", String::from_utf8_lossy(name))),
        },
        PathState::HasXattr(name) => match xattr::get(xattr_path(), OsStr::from_bytes(name)) {
            Ok(Some(_)) => Ok(()),
            other => fail(format!("xattr {}: {other:?}, expected one", String::from_utf8_lossy(name))),
        },
        PathState::NoXattr(name) => match xattr::get(xattr_path(), OsStr::from_bytes(name)) {
            Ok(None) => Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODATA.raw_os_error()) => Ok(()),
            other => fail(format!("xattr {}: {other:?}, expected none", String::from_utf8_lossy(name))),
        },
    }
}

/// Runs the cases of one archive, adding every failure to `failures`.
struct CaseRun<'a> {
    case: &'a HostileCase,
    work: PathBuf,
    scratch: PathBuf,
    archive: PathBuf,
    measure: bool,
    failures: Vec<String>,
    peaks: &'a Mutex<Peaks>,
    next_dest: usize,
}

impl CaseRun<'_> {
    fn fail(&mut self, what: String) {
        self.failures.push(format!("{}: {what}", self.case.name));
    }

    /// Runs one command, checking the limits, that it did not panic, and that
    /// nothing outside `dest` (nothing at all when `None`) changed.
    fn command(&mut self, kind: &'static str, args: Vec<OsString>, keep_stdout: bool, dest: Option<&Path>) -> Ran {
        let before = snapshot(&self.work, dest);
        let ran = run_limited(&args, keep_stdout, &self.scratch, self.measure);
        self.peaks.lock().expect("not poisoned").note(kind, self.case.name, &ran);
        if ran.signal.is_some() || ran.code.is_none() {
            self.fail(format!("killed or crashed: {}", ran.says()));
        }
        if ran.code == Some(101) || String::from_utf8_lossy(&ran.stderr).contains("panicked") {
            self.fail(format!("panicked: {}", ran.says()));
        }
        if ran.rss_kib.is_some_and(|rss| rss > RSS_LIMIT_KIB) {
            self.fail(format!("peak RSS over {RSS_LIMIT_KIB} KiB: {}", ran.says()));
        }
        let after = snapshot(&self.work, dest);
        for difference in differences(&before, &after) {
            self.fail(format!("outside DEST after `{}`: {difference}", ran.label));
        }
        if Path::new(ABSOLUTE_TARGET).symlink_metadata().is_ok() {
            self.fail(format!("{ABSOLUTE_TARGET} exists after `{}`", ran.label));
        }
        ran
    }

    fn expect_exit(&mut self, ran: &Ran, allowed: &[i32]) {
        if !ran.code.is_some_and(|c| allowed.contains(&c)) {
            self.fail(format!("exit status not in {allowed:?}: {}", ran.says()));
        }
    }

    fn archive_arg(&self) -> OsString {
        self.archive.clone().into_os_string()
    }

    fn verify(&mut self) {
        let args = vec!["verify".into(), self.archive_arg(), "--json".into()];
        let ran = self.command("verify", args, true, None);
        let expect = &self.case.verify;
        self.expect_exit(&ran, &[expect.exit]);
        let Ok(report) = serde_json::from_slice::<serde_json::Value>(&ran.stdout) else {
            return self.fail(format!("verify --json printed no JSON: {}", ran.says()));
        };
        let classes: Vec<&str> =
            report["problems"].as_array().into_iter().flatten().filter_map(|p| p["class"].as_str()).collect();
        match expect.class {
            Some(class) if !classes.contains(&class.name()) => {
                self.fail(format!("verify reports {classes:?}, not {}", class.name()))
            }
            None if report["status"] != "ok" || !classes.is_empty() => {
                self.fail(format!("verify should find nothing: status {}, {classes:?}", report["status"]))
            }
            _ => {}
        }
    }

    fn cat(&mut self, args: Vec<OsString>, expect: &Cat) {
        let ran = self.command("cat", args, true, None);
        match expect {
            Cat::Content(want) => {
                self.expect_exit(&ran, &[0]);
                if ran.code == Some(0) && &ran.stdout != want {
                    self.fail(format!("{}: {} bytes out, expected {}", ran.label, ran.stdout.len(), want.len()));
                }
            }
            Cat::Intact(want) => {
                self.expect_exit(&ran, &[1]);
                if ran.code == Some(1) && &ran.stdout != want {
                    self.fail(format!("{}: {} bytes out, expected {}", ran.label, ran.stdout.len(), want.len()));
                }
            }
            Cat::Damaged => self.expect_exit(&ran, &[1, 2]),
            Cat::Fails => self.expect_exit(&ran, &[2]),
        }
    }

    fn fresh_dest(&mut self, what: &str) -> PathBuf {
        self.next_dest += 1;
        self.work.join(format!("{what}-{}", self.next_dest))
    }

    fn extract(&mut self, section: &str, expect: &Extraction) {
        let dest = self.fresh_dest("dest");
        match &expect.dest {
            DestSetup::Fresh => {}
            DestSetup::Links(links) => {
                std::fs::create_dir(&dest).unwrap();
                for (name, target) in links {
                    std::os::unix::fs::symlink(OsStr::from_bytes(target), dest.join(OsStr::from_bytes(name))).unwrap();
                }
            }
            DestSetup::DefaultAcl(value) => {
                std::fs::create_dir(&dest).unwrap();
                xattr::set(&dest, "system.posix_acl_default", value).expect("the file system takes ACLs");
            }
        }
        let mut args: Vec<OsString> = vec![
            "extract".into(),
            self.archive_arg(),
            "--files".into(),
            section.into(),
            dest.clone().into(),
            "--json".into(),
            "-q".into(),
        ];
        if expect.overwrite {
            args.push("--overwrite".into());
        }
        let ran = self.command("extract", args, true, Some(&dest));
        self.expect_exit(&ran, &expect.exit);
        if ran.code == Some(0) || ran.code == Some(1) {
            match serde_json::from_slice::<serde_json::Value>(&ran.stdout) {
                Ok(report) => {
                    let refused: Vec<Vec<u8>> = report["refused"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["path_hex"].as_str().map(unhex))
                        .collect();
                    for path in &expect.refused {
                        if !refused.contains(path) {
                            self.fail(format!(
                                "{}: {:?} (hex {}) was not refused; refused: {:?}",
                                ran.label,
                                String::from_utf8_lossy(path),
                                hex(path),
                                refused.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
                Err(_) => self.fail(format!("extract --json printed no JSON: {}", ran.says())),
            }
        }
        for (path, state) in &expect.after {
            if let Err(e) = check_path(&dest, path, state) {
                self.fail(format!("after `{}`: {e}", ran.label));
            }
        }
        // No temporary file is left anywhere below DEST.
        if dest.exists() {
            let found = Command::new("find").arg(&dest).args(["-name", ".strata-*"]).output().expect("find runs");
            if !found.stdout.is_empty() {
                self.fail(format!("temporary files left: {}", String::from_utf8_lossy(&found.stdout)));
            }
            std::fs::remove_dir_all(&dest).expect("DEST can be removed");
        }
    }

    fn restore(&mut self, section: &str, expect: &Restore) {
        let folder = self.fresh_dest("restore");
        std::fs::create_dir(&folder).unwrap();
        let target = folder.join("image");
        let args = vec![
            "restore".into(),
            self.archive_arg(),
            "--image".into(),
            section.into(),
            target.clone().into(),
            "-q".into(),
        ];
        let ran = self.command("restore", args, false, Some(&folder));
        let (ok, fails) = match expect {
            Restore::Image { size, blake3 } => (Some((*size, blake3)), false),
            Restore::Fails => (None, true),
            Restore::ImageOrFails { size, blake3 } => (Some((*size, blake3)), true),
        };
        let allowed: Vec<i32> = ok.iter().map(|_| 0).chain(fails.then_some(2)).collect();
        self.expect_exit(&ran, &allowed);
        let left: Vec<OsString> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        match (ran.code, ok) {
            (Some(0), Some((size, blake3))) => {
                if left != [OsString::from("image")] {
                    self.fail(format!("{}: the folder holds {left:?}", ran.label));
                }
                let got = std::fs::symlink_metadata(&target).map(|m| m.len()).unwrap_or(0);
                if got != size {
                    self.fail(format!("{}: restored {got} bytes, expected {size}", ran.label));
                }
                if let Some(want) = blake3 {
                    if &common::file_blake3(&target) != want {
                        self.fail(format!("{}: restored image differs", ran.label));
                    }
                }
            }
            _ if !left.is_empty() => self.fail(format!("{}: a failed restore left {left:?}", ran.label)),
            _ => {}
        }
        std::fs::remove_dir_all(&folder).unwrap();
    }

    fn run(&mut self) {
        self.verify();
        for tree in &self.case.trees {
            let section = OsString::from(tree.section);
            let list = vec!["list".into(), self.archive_arg(), "--files".into(), section.clone()];
            let ran = self.command("list", list.clone(), false, None);
            self.expect_exit(&ran, &[tree.list]);
            for (path, exit) in &tree.list_paths {
                let mut args = list.clone();
                args.push(os(path));
                let ran = self.command("list", args, false, None);
                self.expect_exit(&ran, &[*exit]);
            }
            for (path, expect) in &tree.cats {
                let args = vec!["cat".into(), self.archive_arg(), "--files".into(), section.clone(), os(path)];
                self.cat(args, expect);
            }
            for extraction in &tree.extracts {
                self.extract(tree.section, extraction);
            }
        }
        for image in &self.case.images {
            self.restore(image.section, &image.restore);
            let (offset, length, expect) = &image.cat;
            let args = vec![
                "cat".into(),
                self.archive_arg(),
                "--image".into(),
                image.section.into(),
                "--offset".into(),
                offset.to_string().into(),
                "--length".into(),
                length.to_string().into(),
            ];
            self.cat(args, expect);
        }
    }
}

/// Sets up the case's work folder and runs every command on it.
fn run_case(case: &HostileCase, measure: bool, peaks: &Mutex<Peaks>) -> Vec<String> {
    let top = common::temp_dir();
    let work = top.path().join("work");
    let scratch = top.path().join("scratch");
    std::fs::create_dir_all(work.join("outside")).unwrap();
    std::fs::create_dir(&scratch).unwrap();
    for (path, content) in OUTSIDE {
        let full = work.join("outside").join(path);
        match content {
            None => std::fs::create_dir_all(&full).unwrap(),
            Some(bytes) => std::fs::write(&full, bytes).unwrap(),
        }
    }
    let archive = work.join("archive.strata");
    std::fs::write(&archive, &case.bytes).unwrap();
    let mut run = CaseRun { case, work, scratch, archive, measure, failures: Vec::new(), peaks, next_dest: 0 };
    run.run();
    run.failures
}

#[test]
fn every_hostile_archive_through_every_command() {
    let measure = Path::new(TIME_TOOL).exists();
    if !measure {
        assert!(
            std::env::var_os("STRATA_ALLOW_MISSING_TOOLS").is_some(),
            "{TIME_TOOL} is not installed (scripts/ensure-tools.sh installs it; set STRATA_ALLOW_MISSING_TOOLS=1 to run without measuring memory)"
        );
    }
    assert!(
        Path::new(ABSOLUTE_TARGET).symlink_metadata().is_err(),
        "{ABSOLUTE_TARGET} exists before the run: remove it (an earlier run escaped)"
    );
    let only = std::env::var("STRATA_HOSTILE_CASE").ok();
    let cases: Vec<HostileCase> = hostile::cases()
        .into_iter()
        .filter(|c| match &only {
            Some(name) => c.name == name,
            None => !SKIPPED.contains(&c.name),
        })
        .collect();
    assert!(!cases.is_empty(), "no case named {only:?}");
    let peaks = Mutex::new(Peaks::default());
    let failures = Mutex::new(Vec::new());
    let durations = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    // Two cases at a time: each command is one process, most of them short.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let started = Instant::now();
                    let found = run_case(case, measure, &peaks);
                    durations.lock().expect("not poisoned").push((started.elapsed(), case.name));
                    failures.lock().expect("not poisoned").extend(found);
                }
            });
        }
    });
    println!("{} hostile cases in {:.1} s; peak per command:", cases.len(), started.elapsed().as_secs_f64());
    for (command, (wall, wall_case, rss, rss_case)) in &peaks.lock().expect("not poisoned").0 {
        println!("  {command:8} {:6.2} s ({wall_case}), {:7} KiB ({rss_case})", wall.as_secs_f64(), rss);
    }
    let mut durations = durations.into_inner().expect("not poisoned");
    durations.sort();
    let slowest: Vec<String> =
        durations.iter().rev().take(5).map(|(d, name)| format!("{name} {:.1} s", d.as_secs_f64())).collect();
    println!("  slowest cases (all commands, setup and clean-up): {}", slowest.join(", "));
    let failures = failures.into_inner().expect("not poisoned");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
