//! A read-only FUSE file system over a Strata archive: each file-tree section
//! is a folder, each image section a regular file.
//!
//! [`ArchiveFs`] implements [`fuser::Filesystem`]; [`mount`] mounts it and
//! serves requests until the file system is unmounted (`fusermount3 -u`, or
//! an [`Unmounter`] from another thread, as `strata mount` does on SIGINT).
//!
//! # Layout and inodes
//! The root (inode 1) holds one entry per section, named after the section.
//! A name that is not a valid file name (empty, `.`, `..`, with `/` or NUL)
//! or that an earlier section already took gets `~N`, N the section's place
//! in the archive counted from 1 (`disk`, `disk~2`).
//!
//! Inode numbers are computed, not stored: sections take consecutive ranges
//! in archive order, an image one inode, a file tree one per entry (its
//! `FILES_END` count), so inode = section base + entry id. A hard-link entry
//! answers with its target's inode; the target's `nlink` counts its links.
//!
//! # What is read when
//! Listing the root reads nothing. The attributes of a section's folder read
//! its root entry and root directory table (two records). The first look
//! inside a section reads all its entry records once and keeps a compact
//! table (about 110 bytes and the name per entry);
//! owner names, targets, xattrs and extents are read again when asked for,
//! through a one-record cache. File and image bytes come through a shared
//! [`ChunkCache`], so sequential reads decode each chunk once.
//!
//! # Damage
//! A chunk that cannot be read or fails its checks answers EIO for the reads
//! that need it, and the [`DamageLog`] is told once per damaged range, with
//! the section and path; no read ever returns bytes that were not checked.
//!
//! ```no_run
//! use strata_reader::Archive;
//! use strata_mount::{mount, ArchiveFs};
//!
//! let archive = Archive::open(std::fs::File::open("backup.strata")?)?;
//! let fs = ArchiveFs::new(archive, 64 << 20, Box::new(|damage| eprintln!("{damage}")));
//! mount(fs, "/mnt/backup".as_ref(), "backup.strata", None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod fs;
mod table;

use std::path::Path;

pub use fs::ArchiveFs;

/// A range that could not be read, told once to the [`DamageLog`].
#[derive(Debug, Clone)]
pub struct Damage {
    /// The section's name.
    pub section: String,
    /// The file's path in a file-tree section; `None` for an image.
    pub path: Option<String>,
    /// The byte range of the file or image that reads answer EIO for.
    pub range: std::ops::Range<u64>,
    /// Why, in the reader's words.
    pub why: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "file tree {}: {path}", self.section)?,
            None => write!(f, "image {}", self.section)?,
        }
        if self.range.is_empty() {
            write!(f, ": unreadable ({}); it answers EIO", self.why)
        } else {
            write!(
                f,
                ": bytes {}-{} unreadable ({}); reads of them answer EIO",
                self.range.start,
                self.range.end - 1,
                self.why
            )
        }
    }
}

/// Told once about each damaged range (or section that cannot be listed).
pub type DamageLog = Box<dyn Fn(&Damage) + Send + Sync>;

/// Ends a mount from another thread (a signal handler's), as `fusermount3 -u` does.
pub struct Unmounter(fuser::SessionUnmounter);

impl std::fmt::Debug for Unmounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unmounter")
    }
}

impl Unmounter {
    /// Unmounts; [`mount`] then returns.
    pub fn unmount(&mut self) -> std::io::Result<()> {
        self.0.unmount()
    }
}

/// Mounts `fs` read-only at `mountpoint` (named `source` in /proc/mounts) and
/// answers requests until it is unmounted. `on_mounted` is given an
/// [`Unmounter`] once the mount is in place.
pub fn mount<R: strata_reader::ReadAt + Send + 'static>(
    fs: ArchiveFs<R>,
    mountpoint: &Path,
    source: &str,
    on_mounted: Option<Box<dyn FnOnce(Unmounter) + Send>>,
) -> std::io::Result<()> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName(source.replace([',', ' ', '\t', '\n'], "_")),
        fuser::MountOption::Subtype("strata".into()),
        // The kernel checks modes, owners (and ACLs) as on any file system.
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoAtime,
    ];
    config.n_threads = Some(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)));
    config.clone_fd = true;
    let mut session = fuser::Session::new(fs, mountpoint, &config)?;
    if let Some(on_mounted) = on_mounted {
        on_mounted(Unmounter(session.unmount_callable()));
    }
    session.run()
}
