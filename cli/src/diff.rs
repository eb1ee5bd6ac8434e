//! `strata diff`: what differs between a file-tree section and a folder (as
//! `tar --diff`), or between the same-named sections of two archives (as
//! `borg diff`), by metadata and content hash.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use strata_format::files::{Entry, EntryKind, FileDigest, Timestamp, DIGEST_LEN};

use crate::files::{pick_section, SectionKind};
use crate::inspect::open_intact;
use crate::output::say;
use crate::{output, Failure};

#[derive(Args)]
pub struct DiffArgs {
    /// The archive.
    archive: PathBuf,
    /// A folder to compare the tree with, or a second archive to compare with
    /// (its section of the same name).
    other: PathBuf,
    /// The file-tree section (may be left out when the archive holds one).
    #[arg(long = "files", value_name = "NAME")]
    files: Option<String>,
    /// Print the differences as JSON.
    #[arg(long)]
    json: bool,
}

/// What `diff` compares of one entry: enough to say what changed, for a tree
/// section and a folder alike.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Facts {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: Timestamp,
    target: Vec<u8>,
    /// Regular files: the content's digest (`spec/FORMAT.md` 8.3), as entries
    /// record it.
    content: Option<[u8; DIGEST_LEN]>,
    /// Regular files of an archive: their data ranges (offset, length), the
    /// layout a folder's file is hashed by to compare with this one.
    data_ranges: Vec<(u64, u64)>,
    /// Hard links: nothing of their own is compared but their kind.
    link: bool,
}

impl Facts {
    fn of_entry(entry: &Entry) -> Facts {
        Facts {
            kind: if entry.kind == EntryKind::Hardlink { EntryKind::File.name() } else { entry.kind.name() },
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            size: entry.size,
            mtime: entry.mtime,
            target: entry.target.clone(),
            content: (entry.kind == EntryKind::File).then_some(entry.digest),
            data_ranges: data_ranges(&entry.extents),
            link: entry.kind == EntryKind::Hardlink,
        }
    }

    /// What changed from `self` to `other`, in words, in a fixed order.
    fn changes(&self, other: &Facts) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != other.kind {
            out.push(format!("kind {} -> {}", self.kind, other.kind));
            return out;
        }
        if self.mode != other.mode {
            out.push(format!("mode {:04o} -> {:04o}", self.mode, other.mode));
        }
        if (self.uid, self.gid) != (other.uid, other.gid) {
            out.push(format!("owner {}:{} -> {}:{}", self.uid, self.gid, other.uid, other.gid));
        }
        // A hard link records no size of its own (FORMAT.md 8.3): its file's is compared.
        if self.kind == "file" && !(self.link || other.link) && self.size != other.size {
            out.push(format!("size {} -> {}", self.size, other.size));
        }
        if self.target != other.target {
            out.push(format!(
                "target {} -> {}",
                strata_format::escaped(&self.target),
                strata_format::escaped(&other.target)
            ));
        }
        // A hard link's own times and content are its file's: not compared twice.
        if !(self.link || other.link) {
            if self.kind != "directory" && self.mtime != other.mtime {
                out.push("mtime".to_string());
            }
            if self.size == other.size
                && self.content.is_some()
                && other.content.is_some()
                && self.content != other.content
            {
                out.push("content".to_string());
            }
        }
        out
    }
}

/// Entries by path, relative to the tree's root.
type ByPath = BTreeMap<Vec<u8>, Facts>;

/// Every entry of a tree section, by path, with the section's name and whether
/// the archive was damaged (read through what is intact).
fn section_facts(archive: &std::path::Path, name: Option<&str>) -> Result<(String, ByPath, bool), Failure> {
    let label = archive.display().to_string();
    let (archive, damaged) = open_intact(archive)?;
    let name = pick_section(&archive, name, SectionKind::Files, &label)?;
    let tree = archive.tree(&name).map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
    let mut facts = BTreeMap::new();
    for entry in tree.entries() {
        let entry = entry.map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
        let mut of_entry = Facts::of_entry(entry.raw());
        if entry.is_file() && entry.raw().extent_count > 0 {
            // Its data ranges, from its extents in the FILES_EXTENTS records
            // (FORMAT.md 10.1 step 5): entries carry only their count.
            let extents = archive
                .file_extents(tree.section(), entry.raw())
                .map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
            of_entry.data_ranges = data_ranges(&extents);
        }
        facts.insert(entry.path().to_vec(), of_entry);
    }
    Ok((name, facts, damaged))
}

/// Every entry below `root`, by path relative to it (symbolic links not
/// followed; content hashed only where the archive side has a file of the same
/// size, since a size change already says it differs).
fn folder_facts(root: &Path, wanted: &ByPath) -> Result<ByPath, Failure> {
    let mut out = BTreeMap::new();
    let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((path, relative)) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Failure::fatal(format!("{}: {e}", path.display())))?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Directory
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_char_device() {
            EntryKind::CharDevice
        } else if file_type.is_block_device() {
            EntryKind::BlockDevice
        } else if file_type.is_fifo() {
            EntryKind::Fifo
        } else {
            EntryKind::Socket
        };
        let target = if kind == EntryKind::Symlink {
            std::fs::read_link(&path).map(|t| t.as_os_str().as_bytes().to_vec()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let size = match kind {
            EntryKind::File => meta.len(),
            EntryKind::Symlink => target.len() as u64,
            _ => 0,
        };
        let content = match wanted.get(&relative) {
            Some(theirs) if kind == EntryKind::File && theirs.size == size => {
                let file =
                    std::fs::File::open(&path).map_err(|e| Failure::fatal(format!("{}: {e}", path.display())))?;
                Some(
                    digest_as_laid_out(&file, size, &theirs.data_ranges)
                        .map_err(|e| Failure::fatal(format!("{}: {e}", path.display())))?,
                )
            }
            _ => None,
        };
        if kind == EntryKind::Directory {
            let listing = std::fs::read_dir(&path).map_err(|e| Failure::fatal(format!("{}: {e}", path.display())))?;
            for child in listing {
                let child = child.map_err(|e| Failure::fatal(format!("{}: {e}", path.display())))?;
                let name = child.file_name();
                let mut below = relative.clone();
                if !below.is_empty() {
                    below.push(b'/');
                }
                below.extend_from_slice(name.as_bytes());
                pending.push((child.path(), below));
            }
        }
        out.insert(
            relative,
            Facts {
                kind: kind.name(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size,
                mtime: Timestamp { secs: meta.mtime(), nsec: meta.mtime_nsec().clamp(0, 999_999_999) as u32 },
                target,
                content,
                data_ranges: Vec::new(),
                link: false,
            },
        );
    }
    Ok(out)
}

pub fn run(args: DiffArgs) -> Result<u8, Failure> {
    let (name, ours, mut damaged) = section_facts(&args.archive, args.files.as_deref())?;
    let (theirs, what) = if args.other.is_dir() {
        (folder_facts(&args.other, &ours)?, format!("the folder {}", args.other.display()))
    } else {
        let (_, theirs, other_damaged) = section_facts(&args.other, Some(&name))?;
        damaged |= other_damaged;
        (theirs, format!("files {name} of {}", args.other.display()))
    };
    let mut changes: Vec<(Vec<u8>, &'static str, Vec<String>)> = Vec::new();
    for (path, facts) in &ours {
        match theirs.get(path) {
            None => changes.push((path.clone(), "removed", Vec::new())),
            Some(other) => {
                let what = facts.changes(other);
                // The root's own metadata is the folder's: its times change with
                // every entry added, so only its kind and mode are compared.
                let what: Vec<String> =
                    if path.is_empty() { what.into_iter().filter(|w| w.starts_with("mode")).collect() } else { what };
                if !what.is_empty() {
                    changes.push((path.clone(), "modified", what));
                }
            }
        }
    }
    for path in theirs.keys().filter(|p| !ours.contains_key(*p)) {
        changes.push((path.clone(), "added", Vec::new()));
    }
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    let text = |path: &[u8]| if path.is_empty() { ".".to_string() } else { String::from_utf8_lossy(path).into_owned() };
    let shown = |path: &[u8]| if path.is_empty() { ".".to_string() } else { strata_format::escaped(path) };
    if args.json {
        output::print_json(&json!({
            "archive": args.archive.display().to_string(),
            "section": name,
            "other": args.other.display().to_string(),
            "changes": changes.iter().map(|(path, kind, what)| json!({
                "path": text(path), "change": kind, "what": what,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for (path, kind, what) in &changes {
            let mark = match *kind {
                "added" => "+",
                "removed" => "-",
                _ => "M",
            };
            if what.is_empty() {
                say!("{mark} {}", shown(path));
            } else {
                say!("{mark} {}  ({})", shown(path), what.join(", "));
            }
        }
    }
    eprintln!(
        "files {name} of {} against {what}: {}",
        args.archive.display(),
        if changes.is_empty() {
            "no differences".to_string()
        } else {
            output::count(changes.len() as u64, "difference", "differences")
        }
    );
    // As diff and tar --diff: 1 when something differs.
    Ok(u8::from(!changes.is_empty() || damaged))
}

/// A file's data ranges: its extents, adjacent ones joined.
fn data_ranges(extents: &[strata_format::files::FileExtent]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for extent in extents {
        match ranges.last_mut() {
            Some((start, length)) if *start + *length == extent.file_offset => *length += extent.length,
            _ => ranges.push((extent.file_offset, extent.length)),
        }
    }
    ranges
}

/// The digest a file of a folder has when laid out as an archive's file is
/// (`ranges` its data, holes elsewhere), or a digest no content has when the
/// folder's file holds a non-zero byte where that layout has a hole. Only the
/// bytes the folder's file stores are read: its own holes are skipped.
fn digest_as_laid_out(file: &std::fs::File, size: u64, ranges: &[(u64, u64)]) -> std::io::Result<[u8; DIGEST_LEN]> {
    use std::os::unix::fs::FileExt;
    let mut digest = FileDigest::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    let mut read_range = |start: u64, length: u64, visit: &mut dyn FnMut(u64, &[u8])| -> std::io::Result<()> {
        let mut done = 0;
        while done < length {
            let take = (length - done).min(buf.len() as u64) as usize;
            let got = file.read_at(&mut buf[..take], start + done)?;
            if got == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank while read"));
            }
            visit(start + done, &buf[..got]);
            done += got as u64;
        }
        Ok(())
    };
    let mut zeros_only = true;
    let mut holes = Vec::new();
    for &(start, length) in ranges {
        holes.push((at, start - at));
        read_range(start, length, &mut |offset, bytes| digest.data(offset, bytes))?;
        at = start + length;
    }
    holes.push((at, size.saturating_sub(at)));
    for (start, length) in holes {
        // Only what the folder's file stores in this range can be non-zero.
        let end = start + length;
        let mut pos = start;
        while pos < end {
            let data = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(pos)) {
                Ok(data) => data,
                Err(rustix::io::Errno::NXIO) => break, // nothing stored from here on
                Err(_) => pos,                         // no SEEK_DATA here: read it all
            };
            if data >= end {
                break;
            }
            let hole = match rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(data)) {
                Ok(hole) if hole > data => hole.min(end),
                _ => end,
            };
            read_range(data, hole - data, &mut |_, bytes| zeros_only &= bytes.iter().all(|&b| b == 0))?;
            pos = hole;
        }
    }
    if zeros_only {
        Ok(digest.finish(size))
    } else {
        Ok([0xff; DIGEST_LEN])
    }
}
