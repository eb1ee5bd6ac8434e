//! `strata mount`: an archive as a read-only file system, until unmounted.
//!
//! The file system lives in the `strata-mount` crate; this module opens the
//! archive, reports damage, unmounts on SIGINT and SIGTERM, and without `-f`
//! runs itself again with `-f` in a session of its own, and returns once the mount
//! is in place (as sshfs and squashfuse do).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use strata_mount::{ArchiveFs, Unmounter};

use crate::{cleanup, output, Failure};

#[derive(Args)]
pub struct MountArgs {
    /// The archive.
    archive: PathBuf,
    /// An empty directory to mount it on.
    mountpoint: PathBuf,
    /// Stay in the foreground until unmounted (Ctrl-C unmounts).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Decoded chunks kept for reuse by all readers (K, M, G suffixes).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = crate::parse_bytes)]
    cache: u64,
    /// Let every user in, not only you; the kernel checks the archive's modes,
    /// owners and ACLs (non-root users need user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
}

pub fn run(args: MountArgs) -> Result<u8, Failure> {
    let mountpoint = std::path::absolute(&args.mountpoint).unwrap_or_else(|_| args.mountpoint.clone());
    let meta = std::fs::metadata(&mountpoint)
        .map_err(|e| Failure::fatal(format!("mount point {}: {e}", mountpoint.display())))?;
    if !meta.is_dir() {
        return Err(Failure::fatal(format!("mount point {} is not a directory", mountpoint.display())));
    }
    if !args.foreground {
        return detach(&args, &mountpoint, meta.dev());
    }
    let label = args.archive.display().to_string();
    let (archive, salvaged) = crate::inspect::open_intact(&args.archive)?;
    let cache = usize::try_from(args.cache).map_err(|_| Failure::fatal("--cache is larger than memory"))?;
    // A detached mount outlives its terminal: a log line that cannot be
    // written is dropped, never a panic in a request thread.
    let fs = ArchiveFs::new(
        archive,
        cache,
        Box::new(|damage| {
            let _ = writeln!(std::io::stderr(), "strata: {damage}");
        }),
    );
    let names: Vec<String> = fs.root_names().map(|n| String::from_utf8_lossy(n).into_owned()).collect();

    let stop = cleanup::cancellation();
    let source = std::fs::canonicalize(&args.archive).unwrap_or_else(|_| args.archive.clone());
    let shown = mountpoint.display().to_string();
    let quiet = output::quiet();
    let on_mounted = Box::new(move |mut unmounter: Unmounter| {
        if !quiet {
            eprintln!(
                "strata: mounted {label} read-only at {shown} ({}); {} chunk cache; \
                 `fusermount3 -u {shown}` or Ctrl-C unmounts",
                names.join(", "),
                output::size(args.cache)
            );
        }
        // The signal only sets a flag; this thread turns it into an unmount,
        // after which the session ends as after `fusermount3 -u`.
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Err(e) = unmounter.unmount() {
                eprintln!("strata: cannot unmount {shown}: {e} (is it in use? `fusermount3 -u -z` detaches it)");
            }
        });
    });
    let mut options = strata_mount::MountOptions::default();
    options.allow_other = args.allow_other;
    strata_mount::mount(fs, &mountpoint, &source.display().to_string(), &options, Some(on_mounted))
        .map_err(|e| Failure::fatal(format!("cannot mount on {}: {e}", mountpoint.display())))?;
    if !quiet {
        eprintln!("strata: unmounted {}", mountpoint.display());
    }
    Ok(if salvaged { 1 } else { 0 })
}

/// Runs `strata mount -f` detached (its own session, no terminal input), and
/// returns once the mount point shows another file system, or with the
/// child's failure if it ends first.
fn detach(args: &MountArgs, mountpoint: &std::path::Path, dev_before: u64) -> Result<u8, Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::fatal(format!("cannot find the strata binary: {e}")))?;
    let mut command = Command::new(exe);
    command.arg("mount").arg("-f").arg(&args.archive).arg(mountpoint).arg("--cache").arg(args.cache.to_string());
    if output::quiet() {
        command.arg("-q");
    }
    if args.allow_other {
        command.arg("--allow-other");
    }
    command.stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    // A session of its own: closing the terminal or its job control sends it
    // no SIGHUP or SIGINT meant for the shell's jobs.
    unsafe {
        command.pre_exec(|| rustix::process::setsid().map(drop).map_err(std::io::Error::from));
    }
    let mut child = command.spawn().map_err(|e| Failure::fatal(format!("cannot start the mount process: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| Failure::fatal(e.to_string()))? {
            return Err(Failure { code: status.code().unwrap_or(2).clamp(1, 2) as u8, message: String::new() });
        }
        if std::fs::metadata(mountpoint).is_ok_and(|m| m.dev() != dev_before) {
            return Ok(0);
        }
        if Instant::now() > deadline {
            return Err(Failure::fatal(format!("{} did not appear mounted within a minute", mountpoint.display())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
