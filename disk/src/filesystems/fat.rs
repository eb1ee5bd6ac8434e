//! FAT12, FAT16 and FAT32 through the fatfs crate.
//!
//! fatfs reads the boot sector, directories (with long file names) and file
//! content. It trusts the FAT: a cluster chain that loops reads forever in a
//! directory and repeats bytes in a file, and a cluster number outside the
//! volume overflows its arithmetic. So before fatfs follows a chain, this
//! adapter walks it itself, bounded: a file's chain must hold exactly the
//! clusters its size needs, a directory's at most the 65,536 entries FAT
//! allows, and every link must name a cluster of the volume. All reads go
//! through a [`Stream`] whose budget is granted per operation.
//!
//! What FAT keeps and what a [`Node`] gets:
//! - names: the long name where there is one, else the 8.3 name (in lower
//!   case where Windows NT's flags say so);
//! - modes: FAT has none; directories read as 0o755, files as 0o644, or 0o444
//!   when the read-only attribute is set (Windows ignores that attribute on
//!   folders, so it does not make a directory read-only here);
//! - owners: none, uid and gid 0;
//! - times: FAT stores local time without a zone; it is taken as UTC. The
//!   modification time has 2-second steps, the creation time 10 ms steps, the
//!   access time is a date only (midnight); an absent or impossible date reads
//!   as the FAT epoch, 1980-01-01 00:00, and an absent access date as the
//!   modification time.

use std::rc::Rc;

use fatfs::{Date, DateTime, Dir, DirEntry, FileAttributes, FsOptions};

use super::stream::{is_image_error, Stream, VolumeReader};
use super::{trim, FileSystem, FsInfo, FsKind, Node, NodeKind};
use crate::{Disk, Error, ErrorKind, Window};

/// Directory entries a FAT directory may hold (Microsoft's specification:
/// a directory is at most 65,536 32-byte entries, 2 MiB).
const MAX_DIR_BYTES: u64 = 65_536 * 32;
/// Reads granted for opening: the boot sector and FAT32's FSInfo sector.
const OPEN_BUDGET: u64 = 64 << 10;
/// Reads granted for listing one directory: its entries, its chain in the
/// FAT, the raw entries re-read here, with room to spare.
const DIR_BUDGET: u64 = 3 * MAX_DIR_BYTES + (1 << 20);
/// The FAT epoch, 1980-01-01 00:00 UTC: what an absent date reads as.
const FAT_EPOCH: (i64, u32) = (315_532_800, 0);

type FatFs = fatfs::FileSystem<Stream>;

/// Where the FAT and the data area are, from the boot sector, checked so that
/// fatfs's 32-bit arithmetic on them cannot overflow.
struct Geometry {
    kind: FsKind,
    cluster_bytes: u64,
    /// Byte offset of the FAT that fatfs reads (the active one).
    fat_at: u64,
    fat_bytes: u64,
    /// Byte offset of cluster 2.
    data_at: u64,
    /// Data clusters: valid cluster numbers are 2..clusters + 2.
    clusters: u32,
    /// FAT32's root directory cluster.
    root_cluster: u32,
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

impl Geometry {
    fn read(boot: &[u8; 512]) -> Result<Self, String> {
        let bytes_per_sector = le16(boot, 11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved = le16(boot, 14);
        let fats = u64::from(boot[16]);
        let root_entries = le16(boot, 17);
        let fat_sectors_16 = le16(boot, 22);
        let total = if le16(boot, 19) != 0 { le16(boot, 19) } else { le32(boot, 32) };
        let fat32 = fat_sectors_16 == 0;
        let fat_sectors = if fat32 { le32(boot, 36) } else { fat_sectors_16 };
        if !(512..=4096).contains(&bytes_per_sector) || !bytes_per_sector.is_power_of_two() {
            return Err(format!("its boot sector gives {bytes_per_sector} bytes per sector"));
        }
        if !(1..=128).contains(&sectors_per_cluster) || !sectors_per_cluster.is_power_of_two() {
            return Err(format!("its boot sector gives {sectors_per_cluster} sectors per cluster"));
        }
        if reserved == 0 || fats == 0 || fat_sectors == 0 {
            return Err("its boot sector gives no reserved sectors, no FAT or an empty FAT".to_string());
        }
        let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
        let meta_sectors = reserved + fats * fat_sectors + root_sectors;
        // fatfs computes these in 32 bits.
        if meta_sectors > u64::from(u32::MAX) || fat_sectors * bytes_per_sector * 8 > u64::from(u32::MAX) {
            return Err("its FAT is larger than FAT's 32-bit sector numbers allow".to_string());
        }
        let data_sectors = total
            .checked_sub(meta_sectors)
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("its {total} sectors do not reach past its {meta_sectors} sectors of FATs"))?;
        let clusters = data_sectors / sectors_per_cluster;
        let kind = match clusters {
            0..4085 => FsKind::Fat12,
            4085..65525 => FsKind::Fat16,
            _ => FsKind::Fat32,
        };
        if fat32 != (kind == FsKind::Fat32) || clusters > 0x0FFF_FFF5 {
            return Err(format!("its {clusters} clusters do not fit its kind of FAT"));
        }
        // FAT32 may keep one active FAT instead of mirrored ones; fatfs reads that one.
        let flags = le16(boot, 40);
        let active = if fat32 && flags & 0x80 != 0 { flags & 0x0F } else { 0 };
        if active >= fats {
            return Err(format!("its active FAT is number {active} of {fats}"));
        }
        let clusters = u32::try_from(clusters).map_err(|_| "it has more clusters than FAT allows".to_string())?;
        Ok(Geometry {
            kind,
            cluster_bytes: sectors_per_cluster * bytes_per_sector,
            fat_at: (reserved + active * fat_sectors) * bytes_per_sector,
            fat_bytes: fat_sectors * bytes_per_sector,
            data_at: meta_sectors * bytes_per_sector,
            clusters,
            root_cluster: if fat32 { le32(boot, 44) as u32 } else { 0 },
        })
    }
}

/// What follows a cluster in the FAT.
enum Link {
    Next(u32),
    End,
    Free,
    Bad,
    /// A number that is no cluster of the volume.
    Outside(u32),
}

/// A chain that cannot be followed, said in words by [`Fat::chain_error`].
enum Fault {
    Outside { from: Option<u32>, to: u32 },
    Free(u32),
    Bad(u32),
    Short { clusters: u64 },
    Long { last: u32, next: u32 },
}

/// One entry of a directory, as fatfs reads it, with the first cluster that
/// fatfs keeps to itself (read here from the raw entry).
struct Listed<'a> {
    entry: DirEntry<'a, Stream>,
    name: Vec<u8>,
    first_cluster: u32,
}

/// What a path names.
enum Found<'a> {
    Root,
    Entry(Listed<'a>),
}

/// A FAT file system, read through fatfs.
pub(crate) struct Fat {
    fs: FatFs,
    reader: Rc<VolumeReader>,
    geometry: Geometry,
    info: FsInfo,
    start: u64,
}

impl Fat {
    /// Opens the FAT file system at `start..start + length` of `disk`.
    pub(crate) fn open(disk: Rc<dyn Disk>, start: u64, length: u64, info: FsInfo) -> Result<Self, Error> {
        let what = format!("{} file system", info.kind.name());
        let reader = VolumeReader::new(Window::new(disk, start, length));
        reader.grant(OPEN_BUDGET);
        let mut boot = [0u8; 512];
        reader.read_at(0, &mut boot).map_err(|e| Error::io(what.clone(), e).at(start))?;
        let geometry =
            Geometry::read(&boot).map_err(|why| Error::new(ErrorKind::Damaged, what.clone(), why).at(start))?;
        if geometry.data_at.saturating_add(u64::from(geometry.clusters) * geometry.cluster_bytes) > length {
            return Err(Error::new(
                ErrorKind::Damaged,
                what,
                format!("its clusters end past the end of its volume ({length} bytes)"),
            )
            .at(start));
        }
        let fs = FatFs::new(Stream::new(reader.clone()), FsOptions::new())
            .map_err(|e| Error::new(ErrorKind::Damaged, what, e.to_string()).at(start))?;
        Ok(Fat { fs, reader, geometry, info, start })
    }

    fn what(&self, path: &[u8]) -> String {
        format!("/{} in the {} file system", String::from_utf8_lossy(trim(path)), self.info.kind.name())
    }

    /// The FAT's entry for `cluster`, with where it lies in the volume.
    fn link(&self, cluster: u32) -> Result<(Link, u64), std::io::Error> {
        let g = &self.geometry;
        let c = u64::from(cluster);
        let (at, width) = match g.kind {
            FsKind::Fat12 => (c + c / 2, 2),
            FsKind::Fat16 => (c * 2, 2),
            _ => (c * 4, 4),
        };
        if at + width > g.fat_bytes {
            return Ok((Link::Outside(cluster), g.fat_at));
        }
        let mut raw = [0u8; 4];
        self.reader.read_at(g.fat_at + at, &mut raw[..width as usize])?;
        let raw = u32::from_le_bytes(raw);
        let (value, bad) = match g.kind {
            FsKind::Fat12 => (if cluster.is_multiple_of(2) { raw & 0x0FFF } else { (raw >> 4) & 0x0FFF }, 0xFF7),
            FsKind::Fat16 => (raw & 0xFFFF, 0xFFF7),
            _ => (raw & 0x0FFF_FFFF, 0x0FFF_FFF7),
        };
        let link = match value {
            0 => Link::Free,
            v if v == bad => Link::Bad,
            v if v > bad => Link::End,
            v if v < 2 || v - 2 >= g.clusters => Link::Outside(v),
            v => Link::Next(v),
        };
        Ok((link, self.start + g.fat_at + at))
    }

    /// Follows the chain from `first`: `Ok` with its cluster count when it
    /// ends within `max` clusters (and, with `exact`, holds exactly `max`).
    fn chain(&self, first: u32, max: u64, exact: bool) -> Result<Result<u64, (Fault, u64)>, std::io::Error> {
        let g = &self.geometry;
        if first < 2 || first - 2 >= g.clusters {
            return Ok(Err((Fault::Outside { from: None, to: first }, self.start + g.fat_at)));
        }
        let mut count = 1u64;
        let mut at = first;
        loop {
            let (link, offset) = self.link(at)?;
            match link {
                Link::End if exact && count < max => return Ok(Err((Fault::Short { clusters: count }, offset))),
                Link::End => return Ok(Ok(count)),
                Link::Next(next) if count >= max => return Ok(Err((Fault::Long { last: at, next }, offset))),
                Link::Next(next) => {
                    count += 1;
                    at = next;
                }
                Link::Free => return Ok(Err((Fault::Free(at), offset))),
                Link::Bad => return Ok(Err((Fault::Bad(at), offset))),
                Link::Outside(to) => return Ok(Err((Fault::Outside { from: Some(at), to }, offset))),
            }
        }
    }

    /// Checks the chain of the file or directory at `path` before fatfs
    /// follows it: a file's must hold the `needed` clusters its size takes,
    /// a directory's (`needed` = `None`) at most 2 MiB of entries.
    fn check_chain(&self, path: &[u8], first: u32, needed: Option<u64>) -> Result<(), Error> {
        let max = needed.unwrap_or(MAX_DIR_BYTES.div_ceil(self.geometry.cluster_bytes));
        let found = self.chain(first, max, needed.is_some()).map_err(|e| self.io(path, e))?;
        let Err((fault, offset)) = found else { return Ok(()) };
        let words = match fault {
            Fault::Outside { from: None, to } => format!(
                "it starts at cluster {to}, which is no cluster of the volume (2 to {})",
                u64::from(self.geometry.clusters) + 1
            ),
            Fault::Outside { from: Some(from), to } => format!(
                "its cluster chain goes from cluster {from} to {to}, which is no cluster of the volume (2 to {})",
                u64::from(self.geometry.clusters) + 1
            ),
            Fault::Free(at) => format!("its cluster chain runs into cluster {at}, which the FAT marks free"),
            Fault::Bad(at) => format!("its cluster chain runs into cluster {at}, which the FAT marks bad"),
            Fault::Short { clusters } => {
                format!("its cluster chain ends after {clusters} clusters; its size needs {max}")
            }
            Fault::Long { last, next } => {
                let looped = self.in_chain(first, max, next).map_err(|e| self.io(path, e))?;
                match (looped, needed) {
                    (true, _) => format!("its cluster chain loops: cluster {last} leads back to cluster {next}"),
                    (false, Some(_)) => {
                        format!("its cluster chain goes on past the {max} clusters its size needs (to cluster {next})")
                    }
                    (false, None) => format!(
                        "its cluster chain goes on past {max} clusters, more than the 65,536 entries a directory may hold"
                    ),
                }
            }
        };
        Err(Error::new(ErrorKind::Damaged, self.what(path), words).at(offset))
    }

    /// Whether `cluster` is one of the first `count` clusters of the chain
    /// from `first` (already followed, so every link is valid).
    fn in_chain(&self, first: u32, count: u64, cluster: u32) -> Result<bool, std::io::Error> {
        let mut at = first;
        for _ in 0..count {
            if at == cluster {
                return Ok(true);
            }
            match self.link(at)?.0 {
                Link::Next(next) => at = next,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    fn io(&self, path: &[u8], e: std::io::Error) -> Error {
        if self.reader.spent() {
            return Error::new(
                ErrorKind::Damaged,
                self.what(path),
                "reading it takes more than any valid FAT structure needs: its structures loop",
            )
            .at(self.start);
        }
        let kind = if is_image_error(&e) { ErrorKind::Io } else { ErrorKind::Damaged };
        Error::new(kind, self.what(path), e.to_string()).at(self.start)
    }

    /// Reads directory `dir` (at `path`), calling `each` with every entry but
    /// `.` and `..` until it answers `false`. The directory's chain has been
    /// checked.
    fn list<'a>(
        &'a self,
        dir: &Dir<'a, Stream>,
        path: &[u8],
        each: &mut dyn FnMut(Listed<'a>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        self.reader.grant(DIR_BUDGET);
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.io(path, e))?;
            // fatfs's last read was the end of this entry's 32 bytes: its
            // first cluster is read from there.
            let slot = self.reader.last_read_end().checked_sub(32).ok_or_else(|| self.misplaced(path, 0))?;
            let mut raw = [0u8; 32];
            self.reader.read_at(slot, &mut raw).map_err(|e| self.io(path, e))?;
            if !same_entry(&raw, &entry) {
                return Err(self.misplaced(path, slot));
            }
            let hi = if self.geometry.kind == FsKind::Fat32 { le16(&raw, 20) } else { 0 };
            let first_cluster = ((hi << 16) | le16(&raw, 26)) as u32;
            let name = entry.file_name().into_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                return Err(Error::new(
                    ErrorKind::Damaged,
                    self.what(path),
                    format!("it holds an entry named {:?}, which no path can name", String::from_utf8_lossy(&name)),
                )
                .at(self.start + slot));
            }
            if !each(Listed { entry, name, first_cluster })? {
                break;
            }
        }
        Ok(())
    }

    fn misplaced(&self, path: &[u8], slot: u64) -> Error {
        Error::new(ErrorKind::Damaged, self.what(path), "a directory entry fatfs read is not where it read it")
            .at(self.start + slot)
    }

    /// Directory `path`'s fatfs handle, its chain checked: the root, or the
    /// directory `listed` names.
    fn open_dir<'a>(&'a self, path: &[u8], found: &Found<'a>) -> Result<Dir<'a, Stream>, Error> {
        match found {
            Found::Root => {
                if self.geometry.kind == FsKind::Fat32 {
                    self.reader.grant(DIR_BUDGET);
                    self.check_chain(path, self.geometry.root_cluster, None)?;
                }
                Ok(self.fs.root_dir())
            }
            Found::Entry(listed) if listed.entry.is_dir() => {
                // fatfs takes cluster 0 for the root: a directory that points
                // there would be the root again, below itself.
                if listed.first_cluster == 0 {
                    return Err(
                        Error::new(ErrorKind::Damaged, self.what(path), "the directory has no clusters").at(self.start)
                    );
                }
                self.reader.grant(DIR_BUDGET);
                self.check_chain(path, listed.first_cluster, None)?;
                Ok(listed.entry.to_dir())
            }
            Found::Entry(_) => Err(Error::new(ErrorKind::NotFound, self.what(path), "not a directory").at(self.start)),
        }
    }

    /// The entry at `path`: each component looked up in its directory, the
    /// long name as stored first, else ignoring case as FAT does.
    fn lookup(&self, path: &[u8]) -> Result<Found<'_>, Error> {
        let mut found = Found::Root;
        let mut here = Vec::new();
        for component in trim(path).split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let parent = std::mem::take(&mut here);
            here = super::join(&parent, component);
            let dir = self.open_dir(&parent, &found)?;
            let wanted = String::from_utf8_lossy(component).to_lowercase();
            let mut exact = None;
            let mut folded = None;
            self.list(&dir, &parent, &mut |listed| {
                if listed.name == component {
                    exact = Some(listed);
                    return Ok(false);
                }
                if folded.is_none()
                    && (String::from_utf8_lossy(&listed.name).to_lowercase() == wanted
                        || listed.entry.short_file_name().to_lowercase() == wanted)
                {
                    folded = Some(listed);
                }
                Ok(true)
            })?;
            found = Found::Entry(exact.or(folded).ok_or_else(|| {
                Error::new(ErrorKind::NotFound, self.what(&here), "no such file or directory").at(self.start)
            })?);
        }
        Ok(found)
    }

    fn node_of(&self, listed: &Listed<'_>) -> Node {
        let entry = &listed.entry;
        let read_only = entry.attributes().contains(FileAttributes::READ_ONLY);
        let (kind, mode) = match (entry.is_dir(), read_only) {
            (true, _) => (NodeKind::Directory, 0o755),
            (false, true) => (NodeKind::File, 0o444),
            (false, false) => (NodeKind::File, 0o644),
        };
        let mtime = date_time(entry.modified()).unwrap_or(FAT_EPOCH);
        Node {
            name: listed.name.clone(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: if entry.is_dir() { 0 } else { entry.len() },
            mtime,
            atime: date(entry.accessed()).map_or(mtime, |days| (days, 0)),
            ctime: None,
            btime: date_time(entry.created()),
            target: Vec::new(),
            // A directory's first cluster is its identity; a file's may be 0
            // (empty) and is not needed.
            id: entry.is_dir().then_some(u64::from(listed.first_cluster)),
        }
    }

    fn root_node(&self) -> Node {
        Node {
            name: Vec::new(),
            kind: NodeKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: FAT_EPOCH,
            atime: FAT_EPOCH,
            ctime: None,
            btime: None,
            target: Vec::new(),
            // FAT32's root lives in clusters like any directory; FAT12/16's
            // has none, and entries take cluster 0 for it.
            id: Some(u64::from(self.geometry.root_cluster)),
        }
    }
}

/// Whether the raw 32-byte short entry `raw` is the one fatfs gave as
/// `entry`: same attributes, size, modification time and 8.3 name.
fn same_entry(raw: &[u8; 32], entry: &DirEntry<'_, Stream>) -> bool {
    let modified = entry.modified();
    let (date, time) = (le16(raw, 24) as u16, le16(raw, 22) as u16);
    let raw_name: &[u8; 11] = raw[..11].try_into().expect("11 bytes of 32");
    raw[11] & 0x3F == entry.attributes().bits() & 0x3F
        && le32(raw, 28) == entry.len()
        && modified.date.day == date & 0x1F
        && modified.time.min == (time >> 5) & 0x3F
        && short_name(raw_name) == entry.short_file_name_as_bytes()
}

/// An 8.3 name as fatfs shows it: `NAME.EXT` without padding.
fn short_name(raw: &[u8; 11]) -> Vec<u8> {
    let base = raw[..8].iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
    let ext = raw[8..].iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
    let mut name = raw[..base].to_vec();
    if ext > 0 {
        name.push(b'.');
        name.extend_from_slice(&raw[8..8 + ext]);
    }
    // 0x05 stands for a leading 0xE5, which would mark the entry deleted.
    if name.first() == Some(&0x05) {
        name[0] = 0xE5;
    }
    name
}

/// Days since 1970-01-01 of a valid FAT date, as seconds.
fn date(d: Date) -> Option<i64> {
    let (year, month, day) = (i64::from(d.year), u32::from(d.month), u32::from(d.day));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years from 1980 on.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400)
}

/// A valid FAT date and time as seconds and nanoseconds since 1970 (UTC).
fn date_time(t: DateTime) -> Option<(i64, u32)> {
    let days = date(t.date)?;
    let time = t.time;
    if time.hour > 23 || time.min > 59 || time.sec > 59 || time.millis > 999 {
        return None;
    }
    let secs = days + i64::from(time.hour) * 3600 + i64::from(time.min) * 60 + i64::from(time.sec);
    Some((secs, u32::from(time.millis) * 1_000_000))
}

impl FileSystem for Fat {
    fn info(&self) -> &FsInfo {
        &self.info
    }

    fn node(&self, path: &[u8]) -> Result<Node, Error> {
        match self.lookup(path)? {
            Found::Root => Ok(self.root_node()),
            Found::Entry(listed) => Ok(self.node_of(&listed)),
        }
    }

    fn for_each_child(&self, path: &[u8], visit: &mut dyn FnMut(Node) -> Result<(), Error>) -> Result<(), Error> {
        let found = self.lookup(path)?;
        let dir = self.open_dir(path, &found)?;
        // Held, then given: `visit` may read from this file system again.
        let mut children = Vec::new();
        self.list(&dir, path, &mut |listed| {
            children.push(self.node_of(&listed));
            Ok(true)
        })?;
        children.into_iter().try_for_each(visit)
    }

    fn read_file(&self, path: &[u8], piece: &mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Result<(), Error> {
        let Found::Entry(listed) = self.lookup(path)? else {
            return Err(Error::new(ErrorKind::NotFound, self.what(path), "is a directory").at(self.start));
        };
        if listed.entry.is_dir() {
            return Err(Error::new(ErrorKind::NotFound, self.what(path), "is a directory").at(self.start));
        }
        let size = listed.entry.len();
        if size == 0 {
            return Ok(());
        }
        let needed = size.div_ceil(self.geometry.cluster_bytes);
        // The chain check reads one FAT entry per cluster (4 bytes at most),
        // fatfs one more and the content.
        self.reader.grant(size + 2 * 4 * needed + (1 << 20));
        self.check_chain(path, listed.first_cluster, Some(needed))?;
        let mut file = listed.entry.to_file();
        // fatfs reads at most one cluster a call: pieces are gathered to 1 MiB.
        let mut buf = vec![0u8; size.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < size {
            let want = buf.len().min((size - done) as usize);
            let mut filled = 0;
            while filled < want {
                let n = std::io::Read::read(&mut file, &mut buf[filled..want]).map_err(|e| self.io(path, e))?;
                if n == 0 {
                    return Err(Error::new(
                        ErrorKind::Damaged,
                        self.what(path),
                        format!("its content ends after {} of its {size} bytes", done + filled as u64),
                    )
                    .at(self.start));
                }
                filled += n;
            }
            piece(&buf[..filled])?;
            done += filled as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fatfs::Time;

    fn at(year: u16, month: u16, day: u16, hour: u16, min: u16, sec: u16, millis: u16) -> Option<(i64, u32)> {
        date_time(DateTime { date: Date { year, month, day }, time: Time { hour, min, sec, millis } })
    }

    #[test]
    fn fat_dates_read_as_utc_and_impossible_ones_as_none() {
        assert_eq!(at(1980, 1, 1, 0, 0, 0, 0), Some(FAT_EPOCH));
        assert_eq!(at(2020, 5, 6, 7, 8, 10, 0), Some((1_588_748_890, 0)));
        assert_eq!(at(2020, 2, 29, 23, 59, 58, 990), Some((1_583_020_798, 990_000_000)));
        assert_eq!(at(2107, 12, 31, 0, 0, 0, 0), Some((4_354_732_800, 0)));
        // What a zero date decodes to, a 29 February of a common year, a
        // 13th month, a 24th hour, a 60th second.
        assert_eq!(at(1980, 0, 0, 0, 0, 0, 0), None);
        assert_eq!(at(2021, 2, 29, 0, 0, 0, 0), None);
        assert_eq!(at(2000, 13, 1, 0, 0, 0, 0), None);
        assert_eq!(at(2000, 1, 1, 24, 0, 0, 0), None);
        assert_eq!(at(2000, 1, 1, 0, 0, 60, 0), None);
    }

    #[test]
    fn short_names_read_as_fatfs_shows_them() {
        assert_eq!(short_name(b"README  TXT"), b"README.TXT");
        assert_eq!(short_name(b"EFI        "), b"EFI");
        assert_eq!(short_name(b"\x05BC     D  "), b"\xE5BC.D");
    }
}
