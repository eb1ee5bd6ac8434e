//! Outputs that appear whole or not at all: written under a temporary name in the
//! destination's folder, synced, then renamed over the final name. The temporary
//! file is removed on an error (by `Drop`) and on SIGINT/SIGTERM (by `cleanup`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use crate::Failure;

/// A file being written for `path`.
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, Failure> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().ok_or_else(|| Failure::fatal(format!("{} is not a file name", path.display())))?;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            // Mode 0666 less the umask, as any newly created file gets.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(|e| Failure::fatal(format!("creating a temporary file in {}: {e}", dir.display())))?;
        crate::cleanup::register(temp.path());
        Ok(AtomicFile { temp, path: path.to_path_buf() })
    }

    /// A handle on the temporary file to write through.
    pub fn file(&self) -> Result<File, Failure> {
        self.temp.as_file().try_clone().map_err(|e| Failure::fatal(format!("{}: {e}", self.path.display())))
    }

    /// A buffered writer on the temporary file that keeps its writeback going
    /// behind it; hand it back to [`AtomicFile::commit_written`].
    pub fn writer(&self) -> Result<BufWriter<SyncBehind>, Failure> {
        let file =
            SyncBehind::new(self.file()?).map_err(|e| Failure::fatal(format!("{}: {e}", self.path.display())))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }

    /// Flushes what [`AtomicFile::writer`] wrote, waits for its background
    /// syncs, then syncs the file and renames it to its final name.
    pub fn commit_written(self, out: BufWriter<SyncBehind>) -> Result<(), Failure> {
        let shown = self.path.display().to_string();
        let out = out.into_inner().map_err(|e| Failure::fatal(format!("writing {shown}: {}", e.error())))?;
        out.finish().map_err(|e| Failure::fatal(format!("syncing {shown}: {e}")))?;
        self.commit()
    }

    /// (device, inode) of the temporary file, so a backup can leave it out.
    pub fn identity(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        self.temp.as_file().metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// Syncs the file and renames it to its final name.
    pub fn commit(self) -> Result<(), Failure> {
        let shown = self.path.display().to_string();
        self.temp.as_file().sync_all().map_err(|e| Failure::fatal(format!("syncing {shown}: {e}")))?;
        let temp_path = self.temp.path().to_path_buf();
        self.temp
            .persist(&self.path)
            .map_err(|e| Failure::fatal(format!("renaming the result to {shown}: {}", e.error)))?;
        crate::cleanup::forget(&temp_path);
        Ok(())
    }
}

/// How much is written between two background syncs.
const SYNC_STEP: u64 = 64 << 20;

/// Keeps a file's writeback going behind its writers: every [`SYNC_STEP`] bytes
/// they report, a background thread flushes what has been written so far
/// (`fdatasync`), so the sync before the rename finds little left to write.
/// Without it, a 3.5 GB archive left gigabytes of dirty pages for that last
/// sync (1.1 s of a 10 s create, measured), and a 4 GiB restore 0.54 s of its
/// 2.2 s, written while nothing else ran.
pub struct BackgroundSync {
    reported: AtomicU64,
    wake: Option<mpsc::SyncSender<()>>,
    syncer: Option<thread::JoinHandle<io::Result<()>>>,
}

impl BackgroundSync {
    pub fn start(file: &File) -> io::Result<BackgroundSync> {
        let for_syncer = file.try_clone()?;
        // One pending wake-up at most: a sync asked for while one runs is
        // covered by the next.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let syncer = thread::Builder::new().name("strata-sync".into()).spawn(move || {
            for () in woken {
                rustix::fs::fdatasync(&for_syncer)?;
            }
            Ok(())
        })?;
        Ok(BackgroundSync { reported: AtomicU64::new(0), wake: Some(wake), syncer: Some(syncer) })
    }

    /// `n` more bytes were written (from any thread).
    pub fn wrote(&self, n: u64) {
        let before = self.reported.fetch_add(n, Ordering::Relaxed);
        if (before + n) / SYNC_STEP != before / SYNC_STEP {
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(());
            }
        }
    }

    /// Stops the background syncs and returns the first error one met: an error
    /// a background sync consumed is never seen by the final sync.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        drop(self.wake.take());
        match self.syncer.take().map(thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the background sync thread panicked")),
        }
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        // On an error path the file is removed anyway; only stop the thread.
        let _ = self.stop();
    }
}

/// A file written through [`BackgroundSync`].
pub struct SyncBehind {
    file: File,
    sync: BackgroundSync,
}

impl SyncBehind {
    fn new(file: File) -> io::Result<SyncBehind> {
        let sync = BackgroundSync::start(&file)?;
        Ok(SyncBehind { file, sync })
    }

    /// Stops the background syncs; see [`BackgroundSync::finish`].
    pub fn finish(self) -> io::Result<()> {
        self.sync.finish()
    }
}

impl Write for SyncBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sync.wrote(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
