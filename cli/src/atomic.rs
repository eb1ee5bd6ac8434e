//! Outputs that appear whole or not at all: written under a temporary name in the
//! destination's folder, synced, then renamed over the final name. The temporary
//! file is removed on an error (by `Drop`) and on SIGINT/SIGTERM (by `cleanup`).

use std::fs::File;
use std::path::{Path, PathBuf};

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
