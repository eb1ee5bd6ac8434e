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
//! [`ChunkCache`](strata_reader::ChunkCache), so sequential reads decode each chunk once, and a
//! [`ReadAhead`](strata_reader::ReadAhead) worker keeps the chunks a reader
//! going through files in archive order (`tar`, `cp -r`) comes to next
//! decoded: up to four, as far as the cache holds them besides two more (with
//! the default 64 MiB and 4 MiB chunks, four). They live in the cache and
//! count in its budget: `--cache` bounds them too.
//!
//! Opening a file or a directory costs no request: `open` and `opendir`
//! answer ENOSYS, which tells the kernel to send neither OPEN nor RELEASE
//! (OPENDIR nor RELEASEDIR) again, and reads find the entry by inode. As root, the mount's read-ahead is raised to 1 MiB
//! (`/sys/class/bdi/MAJ:MIN/read_ahead_kb`): a large file is read in 1 MiB
//! requests rather than 128 KiB ones.
//!
//! # Damage
//! A chunk that cannot be read or fails its checks answers EIO for the reads
//! that need it, and the [`DamageLog`] is told once per damaged range, with
//! the section and path; no read ever returns bytes that were not checked.
//!
//! ```no_run
//! use strata_reader::Archive;
//! use strata_mount::{mount, ArchiveFs, MountOptions};
//!
//! let archive = Archive::new(std::fs::File::open("backup.strata")?)?;
//! let fs = ArchiveFs::new(archive, 64 << 20, Box::new(|damage| eprintln!("{damage}")));
//! mount(fs, "/mnt/backup".as_ref(), "backup.strata", &MountOptions::default(), None)?;
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

/// How a mount is made.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MountOptions {
    /// Let every user of the machine in, not only the one who mounted (FUSE's
    /// `allow_other`); each access is then checked against the archive's
    /// modes, owners and ACLs by the kernel. Users other than root need
    /// `user_allow_other` in /etc/fuse.conf.
    pub allow_other: bool,
}

/// Mounts `fs` read-only at `mountpoint` (named `source` in /proc/mounts) and
/// answers requests until it is unmounted. `on_mounted` is given an
/// [`Unmounter`] once the mount is in place.
pub fn mount<R: strata_reader::ReadAt + Send + 'static>(
    fs: ArchiveFs<R>,
    mountpoint: &Path,
    source: &str,
    options: &MountOptions,
    on_mounted: Option<Box<dyn FnOnce(Unmounter) + Send>>,
) -> std::io::Result<()> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName(source.replace([',', ' ', '\t', '\n'], "_")),
        fuser::MountOption::Subtype("strata".into()),
        // The kernel checks modes, owners and ACLs (FUSE_POSIX_ACL, asked for
        // at init) as on any file system.
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoAtime,
    ];
    if options.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)));
    config.clone_fd = true;
    // Resolved before mounting: afterwards, a look at the mount point waits
    // for this file system, which answers nothing until it runs.
    let resolved = std::fs::canonicalize(mountpoint);
    let mut session = fuser::Session::new(fs, mountpoint, &config)?;
    if let Ok(resolved) = resolved {
        raise_read_ahead(&resolved);
    }
    if let Some(on_mounted) = on_mounted {
        on_mounted(Unmounter(session.unmount_callable()));
    }
    session.run()
}

/// The kernel's read-ahead for the mount, in KiB: what a sequential reader's
/// requests grow to. The kernel gives FUSE mounts 128 KiB and lets the file
/// system only lower it at start; larger requests mean fewer round trips (a
/// file read with `tar` costs a quarter fewer requests at 1 MiB).
const READ_AHEAD_KB: u32 = 1024;

/// Sets the mount's read-ahead through sysfs (`/sys/class/bdi/MAJ:MIN`), as an
/// administrator would; where that is not allowed (not root), it stays as the
/// kernel set it and reads are only smaller. The device comes from
/// `/proc/self/mountinfo`: a `stat` of the mount point would wait for this
/// very file system, which answers nothing before it runs.
fn raise_read_ahead(mountpoint: &Path) {
    let Ok(mounts) = std::fs::read("/proc/self/mountinfo") else { return };
    let Some(device) = mount_device(&mounts, mountpoint) else { return };
    let knob = format!("/sys/class/bdi/{device}/read_ahead_kb");
    if let Ok(now) = std::fs::read_to_string(&knob) {
        if now.trim().parse::<u32>().is_ok_and(|kb| kb < READ_AHEAD_KB) {
            let _ = std::fs::write(&knob, READ_AHEAD_KB.to_string());
        }
    }
}

/// The `MAJ:MIN` of the last mount at `mountpoint` (a path without symbolic
/// links) in a mountinfo text (fields: id, parent, MAJ:MIN, root, mount point
/// with space, tab, newline and backslash as octal escapes, ...).
fn mount_device(mountinfo: &[u8], mountpoint: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let mut escaped = Vec::new();
    for &byte in mountpoint.as_os_str().as_bytes() {
        match byte {
            b' ' | b'\t' | b'\n' | b'\\' => escaped.extend(format!("\\{byte:03o}").bytes()),
            _ => escaped.push(byte),
        }
    }
    mountinfo.split(|&b| b == b'\n').rev().find_map(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        (fields.get(4) == Some(&escaped.as_slice()))
            .then(|| fields.get(2).map(|d| String::from_utf8_lossy(d).into_owned()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_of_the_last_mount_at_a_path_is_found_with_escapes() {
        let info = "22 1 0:21 / /mnt/a\\040b rw - tmpfs tmpfs rw\n\
                    30 22 0:55 / /mnt/a\\040b ro - fuse.strata x ro\n\
                    31 1 0:56 / /mnt/other ro - fuse.strata y ro\n";
        let info = info.as_bytes();
        assert_eq!(mount_device(info, Path::new("/mnt/a b")).as_deref(), Some("0:55"));
        assert_eq!(mount_device(info, Path::new("/mnt/other")).as_deref(), Some("0:56"));
        assert_eq!(mount_device(info, Path::new("/mnt/a")), None);
    }
}
