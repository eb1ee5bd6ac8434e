//! NTFS through the ntfs crate (Colin Finck's: read-only, no unsafe code).
//!
//! Directories are read from their `$I30` index, files from their unnamed
//! `$DATA` stream (resident, non-resident or sparse). The crate keeps no
//! limits of its own on how far an index descends or how many records it
//! reads, so every operation gets a read budget from what it can need (the
//! directory's index size, the file's length), and a listing stops once it
//! yields more entries than its index could hold.
//!
//! What NTFS keeps and what a [`Node`] gets:
//! - names: the Win32 or POSIX name of each entry; DOS 8.3 names, which
//!   Windows keeps as second names of long ones, are left out; the
//!   metafiles (`$MFT`, `$Bitmap`, ... records 0 to 15) are not listed;
//! - modes: directories 0o755, files 0o644 (Windows ACLs are not mapped);
//! - owners: uid and gid 0;
//! - times: from `$STANDARD_INFORMATION`, NTFS's 100 ns steps since 1601
//!   converted to seconds and nanoseconds since 1970; the MFT record's change
//!   time is the change time;
//! - compressed and encrypted files are listed but not read (the crate
//!   reads neither); reparse points (symbolic links, junctions) read as what
//!   their `$DATA` holds, usually nothing.

use std::cell::RefCell;
use std::rc::Rc;

use ntfs::structured_values::{NtfsFileNamespace, NtfsIndexRoot};
use ntfs::{NtfsAttributeFlags, NtfsAttributeType, NtfsError, NtfsFile, NtfsReadSeek, NtfsTime};

use super::stream::{is_image_error, Stream, VolumeReader};
use super::{trim, FileSystem, FsInfo, Node, NodeKind};
use crate::{Disk, Error, ErrorKind, Window};

/// Reads granted for opening: the boot sector, `$MFT`'s record and the
/// 128 KiB `$UpCase` table with its record.
const OPEN_BUDGET: u64 = 1 << 20;
/// Reads granted for loading one file record: its record, `$MFT`'s own
/// (the crate reads it to find every other) and any attribute-list records.
const RECORD_BUDGET: u64 = 1 << 20;
/// The largest file or index record read: NTFS uses 1 KiB or 4 KiB ones, and
/// the crate allocates what the volume says for each record it reads.
const MAX_RECORD_SIZE: u32 = 64 << 10;
/// The smallest index entry that names a file: a 16-byte header and a
/// `$FILE_NAME` of 66 bytes and one character, 8-byte aligned.
const MIN_INDEX_ENTRY: u64 = 88;
/// Records 0 to 15 are NTFS's own metafiles; user files start at 16.
const FIRST_USER_RECORD: u64 = 16;
/// The root directory's record.
const ROOT_RECORD: u64 = 5;
/// Seconds from 1601-01-01 (NTFS's epoch) to 1970-01-01.
const EPOCH_DIFFERENCE: i64 = 11_644_473_600;

/// An NTFS file system, read through the ntfs crate.
pub(crate) struct Ntfs {
    ntfs: ntfs::Ntfs,
    stream: RefCell<Stream>,
    reader: Rc<VolumeReader>,
    info: FsInfo,
    start: u64,
}

/// NTFS's time as seconds and nanoseconds since 1970.
fn unix_time(t: NtfsTime) -> (i64, u32) {
    let t = t.nt_timestamp();
    ((t / 10_000_000) as i64 - EPOCH_DIFFERENCE, (t % 10_000_000) as u32 * 100)
}

/// Whether the file records the boot sector gives are of a size NTFS uses
/// (the crate allocates that much for each record it reads).
fn plausible_records(ntfs: &ntfs::Ntfs) -> bool {
    let size = ntfs.file_record_size();
    size.is_power_of_two() && (1024..=MAX_RECORD_SIZE).contains(&size)
}

/// A failure of the crate on the volume at `start`, as an [`Error`] about `what`.
fn fail(reader: &VolumeReader, what: String, start: u64, e: NtfsError) -> Error {
    if reader.spent() {
        return Error::new(
            ErrorKind::Damaged,
            what,
            "reading it takes more than any valid NTFS structure needs: its index or records loop",
        )
        .at(start);
    }
    match &e {
        NtfsError::Io(io) if is_image_error(io) => Error::new(ErrorKind::Io, what, io.to_string()),
        NtfsError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::new(ErrorKind::Damaged, what, format!("it points outside its volume: {io}"))
        }
        _ => Error::new(ErrorKind::Damaged, what, e.to_string()),
    }
    .at(start)
}

impl Ntfs {
    /// Opens the NTFS file system at `start..start + length` of `disk`.
    pub(crate) fn open(disk: Rc<dyn Disk>, start: u64, length: u64, info: FsInfo) -> Result<Self, Error> {
        let reader = VolumeReader::new(Window::new(disk, start, length));
        reader.grant(OPEN_BUDGET);
        let mut stream = Stream::new(reader.clone());
        let what = || "ntfs file system".to_string();
        let mut ntfs = ntfs::Ntfs::new(&mut stream).map_err(|e| fail(&reader, what(), start, e))?;
        if !plausible_records(&ntfs) {
            let size = ntfs.file_record_size();
            return Err(Error::new(
                ErrorKind::Damaged,
                what(),
                format!("its boot sector gives file records of {size} bytes, not a power of two from 1 to 64 KiB"),
            )
            .at(start));
        }
        // Needed to look names up (the crate panics without it).
        ntfs.read_upcase_table(&mut stream).map_err(|e| fail(&reader, what(), start, e))?;
        Ok(Ntfs { ntfs, stream: RefCell::new(stream), reader, info, start })
    }

    fn what(&self, path: &[u8]) -> String {
        format!("/{} in the ntfs file system", String::from_utf8_lossy(trim(path)))
    }

    fn fail(&self, path: &[u8], e: NtfsError) -> Error {
        fail(&self.reader, self.what(path), self.start, e)
    }

    /// File record `record`, within a fresh budget.
    fn file(&self, stream: &mut Stream, path: &[u8], record: u64) -> Result<NtfsFile<'_>, Error> {
        self.reader.grant(RECORD_BUDGET);
        self.ntfs.file(stream, record).map_err(|e| self.fail(path, e))
    }

    /// Bytes of directory `dir`'s `$I30` index (root and allocation), at most
    /// the volume's length: what listing or searching it may read.
    fn index_bytes(&self, stream: &mut Stream, path: &[u8], dir: &NtfsFile<'_>) -> Result<u64, Error> {
        let mut total = 0u64;
        let mut attributes = dir.attributes();
        while let Some(item) = attributes.next(stream) {
            let item = item.map_err(|e| self.fail(path, e))?;
            let attribute = item.to_attribute().map_err(|e| self.fail(path, e))?;
            let ty = attribute.ty().map_err(|e| self.fail(path, e))?;
            if !matches!(ty, NtfsAttributeType::IndexRoot | NtfsAttributeType::IndexAllocation)
                || attribute.name().map_err(|e| self.fail(path, e))? != "$I30"
            {
                continue;
            }
            total = total.saturating_add(attribute.value_length());
            if ty == NtfsAttributeType::IndexRoot {
                // The crate allocates a buffer of this size for every index
                // record it reads: checked first.
                let root = attribute.resident_structured_value::<NtfsIndexRoot>().map_err(|e| self.fail(path, e))?;
                let size = root.index_record_size();
                if !size.is_power_of_two() || !(512..=MAX_RECORD_SIZE).contains(&size) {
                    return Err(Error::new(
                        ErrorKind::Damaged,
                        self.what(path),
                        format!("its index records are {size} bytes each, not a power of two from 512 to 64 KiB"),
                    )
                    .at(self.start));
                }
            }
        }
        Ok(total.min(self.reader.len()))
    }

    /// The record and stored name that `path` names (the root: record 5, no
    /// name). Names are looked up as Windows does, ignoring case by the
    /// volume's `$UpCase` table.
    fn lookup(&self, stream: &mut Stream, path: &[u8]) -> Result<(u64, Vec<u8>), Error> {
        let mut record = ROOT_RECORD;
        let mut name = Vec::new();
        let mut here = Vec::new();
        for component in trim(path).split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let parent = std::mem::take(&mut here);
            here = super::join(&parent, component);
            let (parent, here) = (parent.as_slice(), here.as_slice());
            let dir = self.file(stream, parent, record)?;
            if !dir.is_directory() {
                return Err(Error::new(ErrorKind::NotFound, self.what(parent), "not a directory").at(self.start));
            }
            let allowed = self.index_bytes(stream, parent, &dir)?;
            self.reader.allow(allowed);
            let missing =
                || Error::new(ErrorKind::NotFound, self.what(here), "no such file or directory").at(self.start);
            let wanted = std::str::from_utf8(component).map_err(|_| missing())?;
            let index = dir.directory_index(stream).map_err(|e| self.fail(parent, e))?;
            let mut finder = index.finder();
            let entry = ntfs::indexes::NtfsFileNameIndex::find(&mut finder, &self.ntfs, stream, wanted)
                .ok_or_else(missing)?
                .map_err(|e| self.fail(here, e))?;
            let key = entry.key().ok_or_else(missing)?.map_err(|e| self.fail(here, e))?;
            record = entry.file_reference().file_record_number();
            if record < FIRST_USER_RECORD {
                return Err(missing());
            }
            name = key.name().to_string_lossy().into_bytes();
        }
        Ok((record, name))
    }

    /// The node of record `file`, named `name`.
    fn node_of(&self, stream: &mut Stream, path: &[u8], file: &NtfsFile<'_>, name: Vec<u8>) -> Result<Node, Error> {
        let standard = file.info().map_err(|e| self.fail(path, e))?;
        let directory = file.is_directory();
        let size = if directory {
            0
        } else {
            match file.data(stream, "") {
                None => 0,
                Some(item) => {
                    let item = item.map_err(|e| self.fail(path, e))?;
                    item.to_attribute().map_err(|e| self.fail(path, e))?.value_length()
                }
            }
        };
        Ok(Node {
            name,
            kind: if directory { NodeKind::Directory } else { NodeKind::File },
            mode: if directory { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size,
            mtime: unix_time(standard.modification_time()),
            atime: unix_time(standard.access_time()),
            ctime: Some(unix_time(standard.mft_record_modification_time())),
            btime: Some(unix_time(standard.creation_time())),
            target: Vec::new(),
            id: Some(file.file_record_number()),
        })
    }

    /// The nodes of directory `path`, in the index's order.
    fn children(&self, path: &[u8]) -> Result<Vec<Node>, Error> {
        let stream = &mut *self.stream.borrow_mut();
        let (record, _) = self.lookup(stream, path)?;
        let dir = self.file(stream, path, record)?;
        if !dir.is_directory() {
            return Err(Error::new(ErrorKind::NotFound, self.what(path), "not a directory").at(self.start));
        }
        let index_bytes = self.index_bytes(stream, path, &dir)?;
        self.reader.allow(index_bytes);
        // An index that yields more entries than its bytes could hold loops.
        let most = index_bytes / MIN_INDEX_ENTRY + 1;
        let index = dir.directory_index(stream).map_err(|e| self.fail(path, e))?;
        let mut entries = index.entries();
        let mut nodes = Vec::new();
        let mut count = 0u64;
        while let Some(entry) = entries.next(stream) {
            let entry = entry.map_err(|e| self.fail(path, e))?;
            count += 1;
            if count > most {
                return Err(Error::new(
                    ErrorKind::Damaged,
                    self.what(path),
                    format!("its index lists more entries than its {index_bytes} bytes can hold: it loops"),
                )
                .at(self.start));
            }
            let Some(key) = entry.key() else { continue };
            let key = key.map_err(|e| self.fail(path, e))?;
            let child = entry.file_reference().file_record_number();
            if key.namespace() == NtfsFileNamespace::Dos || child < FIRST_USER_RECORD {
                continue;
            }
            let name = key.name().to_string_lossy().into_bytes();
            if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                return Err(Error::new(
                    ErrorKind::Damaged,
                    self.what(path),
                    format!(
                        "its index holds an entry named {:?}, which no path can name",
                        String::from_utf8_lossy(&name)
                    ),
                )
                .at(self.start));
            }
            let child_path = super::join(trim(path), &name);
            // Each entry's record, on top of what the index may read.
            self.reader.allow(RECORD_BUDGET);
            let file = entry.to_file(&self.ntfs, stream).map_err(|e| self.fail(&child_path, e))?;
            nodes.push(self.node_of(stream, &child_path, &file, name)?);
        }
        Ok(nodes)
    }
}

impl FileSystem for Ntfs {
    fn info(&self) -> &FsInfo {
        &self.info
    }

    fn node(&self, path: &[u8]) -> Result<Node, Error> {
        let stream = &mut *self.stream.borrow_mut();
        let (record, name) = self.lookup(stream, path)?;
        let file = self.file(stream, path, record)?;
        self.node_of(stream, path, &file, name)
    }

    fn for_each_child(&self, path: &[u8], visit: &mut dyn FnMut(Node) -> Result<(), Error>) -> Result<(), Error> {
        // Gathered first: `visit` may read from this file system again.
        self.children(path)?.into_iter().try_for_each(visit)
    }

    fn read_file(&self, path: &[u8], piece: &mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Result<(), Error> {
        let stream = &mut *self.stream.borrow_mut();
        let (record, _) = self.lookup(stream, path)?;
        let file = self.file(stream, path, record)?;
        if file.is_directory() {
            return Err(Error::new(ErrorKind::NotFound, self.what(path), "is a directory").at(self.start));
        }
        let Some(item) = file.data(stream, "") else { return Ok(()) };
        let item = item.map_err(|e| self.fail(path, e))?;
        let attribute = item.to_attribute().map_err(|e| self.fail(path, e))?;
        let flags = attribute.flags();
        if flags.intersects(NtfsAttributeFlags::COMPRESSED | NtfsAttributeFlags::ENCRYPTED) {
            let how = if flags.contains(NtfsAttributeFlags::COMPRESSED) { "compressed" } else { "encrypted" };
            return Err(Error::new(
                ErrorKind::Unsupported,
                self.what(path),
                format!("the file is {how}, which is not read here"),
            )
            .at(self.start));
        }
        let size = attribute.value_length();
        // Sparse ranges read nothing, so the volume bounds what is read.
        self.reader.allow(size.min(self.reader.len()));
        let mut value = attribute.value(stream).map_err(|e| self.fail(path, e))?;
        let mut buf = vec![0u8; size.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < size {
            let n = value.read(stream, &mut buf).map_err(|e| self.fail(path, e))?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::Damaged,
                    self.what(path),
                    format!("its data ends after {done} of its {size} bytes"),
                )
                .at(self.start));
            }
            piece(&buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Opens the NTFS volume at `start` for a read of its metafiles: the
/// crate's handle with its stream and the stream's budget, or `None` when
/// its boot sector cannot be read or gives records of a size NTFS never uses.
fn open_metafiles(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Option<(ntfs::Ntfs, Stream, Rc<VolumeReader>)> {
    let reader = VolumeReader::new(Window::new(disk.clone(), start, length));
    reader.grant(OPEN_BUDGET);
    let mut stream = Stream::new(reader.clone());
    let ntfs = ntfs::Ntfs::new(&mut stream).ok()?;
    plausible_records(&ntfs).then_some((ntfs, stream, reader))
}

/// Reads `$Bitmap` (record 6), one bit per cluster, within a budget of its
/// size as the volume's cluster count gives it, and gives `visit` each
/// cluster number with whether it is in use, in order. `Ok(false)` when the
/// bitmap is shorter than the volume's clusters need.
fn each_cluster(
    ntfs: &ntfs::Ntfs,
    stream: &mut Stream,
    reader: &VolumeReader,
    visit: &mut dyn FnMut(u64, bool),
) -> Result<bool, NtfsError> {
    let clusters = ntfs.size() / u64::from(ntfs.cluster_size());
    reader.grant(RECORD_BUDGET);
    let bitmap = ntfs.file(stream, 6)?;
    let Some(item) = bitmap.data(stream, "") else { return Ok(false) };
    let item = item?;
    let attribute = item.to_attribute()?;
    let bytes = clusters.div_ceil(8);
    if attribute.value_length() < bytes {
        return Ok(false);
    }
    reader.allow(bytes);
    let mut value = attribute.value(stream)?;
    let mut buf = vec![0u8; bytes.min(64 << 10) as usize];
    let mut done = 0u64;
    while done < bytes {
        let want = buf.len().min((bytes - done) as usize);
        value.read_exact(stream, &mut buf[..want])?;
        for (i, &byte) in buf[..want].iter().enumerate() {
            // Bits past the last cluster pad the last byte.
            let first = (done + i as u64) * 8;
            for bit in 0..clusters.saturating_sub(first).min(8) {
                visit(first + bit, byte & (1 << bit) != 0);
            }
        }
        done += want as u64;
    }
    Ok(true)
}

/// The label (from `$Volume`'s volume name) and used bytes (clusters set in
/// `$Bitmap` times the cluster size) of the NTFS volume at `start`, read
/// through the crate within a budget: the records, and the bitmap's size as
/// the volume's cluster count gives it. `None` for what cannot be read: they
/// are shown when known, and their absence does not hide the file system.
pub(crate) fn label_and_used(disk: &Rc<dyn Disk>, start: u64, length: u64) -> (Option<String>, Option<u64>) {
    let Some((ntfs, mut stream, reader)) = open_metafiles(disk, start, length) else { return (None, None) };
    reader.grant(RECORD_BUDGET);
    let label = match ntfs.volume_name(&mut stream) {
        Some(Ok(name)) => Some(name.name().to_string_lossy()),
        Some(Err(_)) => None,
        None => Some(String::new()),
    };
    let mut set = 0u64;
    let used = match each_cluster(&ntfs, &mut stream, &reader, &mut |_, used| set += u64::from(used)) {
        Ok(true) => Some(set * u64::from(ntfs.cluster_size())),
        _ => None,
    };
    (label, used)
}

/// The free clusters of the NTFS volume at `start`, as byte ranges of the
/// volume (sorted, touching ones merged) added to `free`, from `$Bitmap`;
/// false for a volume marked dirty (not cleanly unmounted: `$LogFile` may hold changes
/// the bitmap does not show yet), which is then stored whole. Everything past
/// the last cluster (NTFS keeps its backup boot sector there) is used.
pub(crate) fn free_ranges(
    disk: &Rc<dyn Disk>,
    start: u64,
    length: u64,
    free: &mut crate::allocation::FreeList,
) -> Result<bool, Error> {
    let damaged = |detail: String| Error::new(ErrorKind::Damaged, "ntfs allocation map ($Bitmap)", detail).at(start);
    let Some((ntfs, mut stream, reader)) = open_metafiles(disk, start, length) else {
        return Err(damaged("its boot sector cannot be read".to_string()));
    };
    reader.grant(RECORD_BUDGET);
    let flags = ntfs.volume_info(&mut stream).map_err(|e| fail(&reader, "ntfs $Volume".to_string(), start, e))?;
    if flags.flags().contains(ntfs::structured_values::NtfsVolumeFlags::IS_DIRTY) {
        return Ok(false);
    }
    let cluster = u64::from(ntfs.cluster_size());
    let read = each_cluster(&ntfs, &mut stream, &reader, &mut |c, used| {
        if !used {
            free.push(c * cluster, (c + 1) * cluster);
        }
    })
    .map_err(|e| fail(&reader, "ntfs allocation map ($Bitmap)".to_string(), start, e))?;
    if !read {
        return Err(damaged("it is shorter than the volume's clusters need".to_string()));
    }
    Ok(true)
}

/// The most `$MFT` data runs [`mft_ranges`] gives: an MFT in more pieces
/// than this is hinted at in part.
const MAX_MFT_RUNS: usize = 4096;

/// Where `$MFT` (record 0's unnamed `$DATA`) lies in the NTFS volume at
/// `start`, as byte ranges of the volume: every lookup reads a file record
/// there per path component. Empty when the volume or the record cannot be
/// read: a hint for used-blocks imaging ([`crate::metadata`]), never an error.
pub(crate) fn mft_ranges(disk: &Rc<dyn Disk>, start: u64, length: u64) -> Vec<std::ops::Range<u64>> {
    let Some((ntfs, mut stream, reader)) = open_metafiles(disk, start, length) else { return Vec::new() };
    reader.grant(RECORD_BUDGET);
    let mut out = Vec::new();
    let Ok(mft) = ntfs.file(&mut stream, 0) else { return out };
    let Some(Ok(item)) = mft.data(&mut stream, "") else { return out };
    let Ok(attribute) = item.to_attribute() else { return out };
    let Ok(ntfs::attribute_value::NtfsAttributeValue::NonResident(value)) = attribute.value(&mut stream) else {
        return out;
    };
    for run in value.data_runs().take(MAX_MFT_RUNS) {
        let Ok(run) = run else { break };
        if let Some(at) = run.data_position().value() {
            out.push(at.get()..at.get().saturating_add(run.allocated_size()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntfs_times_count_from_1601_in_100_ns_steps() {
        // 1970-01-01 00:00:00.0000001 and 2020-05-06 07:08:09.1234567.
        assert_eq!(unix_time(NtfsTime::from(116_444_736_000_000_001)), (0, 100));
        let t = (1_588_748_889 + EPOCH_DIFFERENCE) as u64 * 10_000_000 + 1_234_567;
        assert_eq!(unix_time(NtfsTime::from(t)), (1_588_748_889, 123_456_700));
    }
}
