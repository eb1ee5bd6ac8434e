//! Temporary outputs that must not outlive an interrupted run.
//!
//! Final outputs are written under a temporary name and renamed when complete;
//! `Drop` removes the temporary on an error, and this module removes it when
//! SIGINT, SIGTERM or SIGHUP ends the process, so no half output is left behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();
/// Set by the first signal when work that cleans up after itself is running
/// (see [`cancellation`]); a second signal ends the process at once.
static CANCEL: AtomicBool = AtomicBool::new(false);
static CANCELLABLE: AtomicBool = AtomicBool::new(false);

/// Installs the signal handler, once, when the first temporary file is
/// registered: the handler runs on a thread of its own, which a command that
/// writes no output (`cat`, `list`, `info`) has no reason to start, and until
/// then a signal's default action leaves nothing behind.
fn install() {
    // If a handler cannot be installed the run goes on; only cleanup on a signal is lost.
    let _ = ctrlc::set_handler(|| {
        if CANCELLABLE.load(Ordering::SeqCst) && !CANCEL.swap(true, Ordering::SeqCst) {
            // The work stops at its next step and removes what it was writing.
            return;
        }
        if let Ok(paths) = PENDING.lock() {
            for path in paths.iter() {
                let _ = std::fs::remove_file(path);
            }
        }
        eprintln!("strata: interrupted; temporary files removed");
        std::process::exit(130);
    });
}

/// Registers a temporary file to remove if the process is interrupted.
pub fn register(path: &Path) {
    INSTALL.call_once(install);
    if let Ok(mut paths) = PENDING.lock() {
        paths.push(path.to_path_buf());
    }
}

/// The file was renamed into place or removed: nothing to clean up any more.
pub fn forget(path: &Path) {
    if let Ok(mut paths) = PENDING.lock() {
        paths.retain(|p| p != path);
    }
}

/// A flag that the first SIGINT, SIGTERM or SIGHUP sets instead of ending the
/// process, for work that removes its own temporary files when it sees it
/// (extraction writes them through directory handles, under names that no
/// path from here could reach past PATH_MAX).
pub fn cancellation() -> &'static AtomicBool {
    INSTALL.call_once(install);
    CANCELLABLE.store(true, Ordering::SeqCst);
    &CANCEL
}

/// Whether a signal asked the work to stop.
pub fn cancelled() -> bool {
    CANCEL.load(Ordering::SeqCst)
}
