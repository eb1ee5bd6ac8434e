//! The ancestors of an incremental archive (`spec/FORMAT.md` section 15):
//! where they are looked for, how each is bound to the child, and how a
//! reference into one is read and checked.
//!
//! An ancestor is opened the first time a read needs one of its chunks, and
//! checked then (15.4 steps 2 to 4). What is kept per ancestor is small (its
//! path, size and archive tag); at most [`MAX_OPEN_ANCESTORS`] files are open
//! at once, so memory and descriptors do not grow with the depth.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_format::chain::uuid_text;
use strata_format::index::TRAILER_RECORD_SIZE;
use strata_format::record::{PrefixHead, RecordFlags};
use strata_format::{
    Ancestor, ArchiveHeader, ArchiveIndex, Chain, ChainIndex, ChunkRef, ErrorClass, Features, RecordHeader, RecordType,
};

use crate::archive::{decode_chunk_record, read_header, read_trailer_and_index, Chunk, Limits};
use crate::record::{decode_prefixed, read_checked_body, read_record_at, read_record_header_at, Prefixes};
use crate::{Error, ReadAt};

/// Ancestor files kept open at once; the least recently used is closed first.
/// A chain may list 64 ancestors (FORMAT.md 15.2), more than a process may
/// want to hold open for one archive.
pub const MAX_OPEN_ANCESTORS: usize = 16;

/// Where the ancestors of an incremental archive are looked for
/// (`spec/FORMAT.md` 15.4 step 1): files named by the user, matched by the
/// UUID in their header, then the name the child's `CHAIN` records, in a
/// folder (the child's own).
///
/// ```
/// use strata_reader::ParentSearch;
/// let search = ParentSearch::beside(std::path::Path::new("/backups/tue.strata"))
///     .with_file("/mnt/old/mon.strata");
/// # let _ = search;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ParentSearch {
    folder: Option<PathBuf>,
    files: Vec<PathBuf>,
}

impl ParentSearch {
    /// Ancestors are found by the names the child records, in the folder
    /// that holds `child` (the current folder for a bare name).
    pub fn beside(child: &Path) -> ParentSearch {
        let folder = match child.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        ParentSearch { folder: Some(folder), files: Vec::new() }
    }

    /// Also tries `path` for any ancestor whose UUID its header carries
    /// (tried before the recorded names).
    pub fn with_file(mut self, path: impl Into<PathBuf>) -> ParentSearch {
        self.files.push(path.into());
        self
    }
}

/// An ancestor that opened and bound.
#[derive(Debug)]
struct Bound {
    path: PathBuf,
    size: u64,
    tag: [u8; 8],
    /// Its feature bit 1: whether its own tables may be prefixed (5.3 rule 1).
    incremental: bool,
}

/// What is known about one ancestor: not tried yet, bound, or failed (kept
/// as class and text, so each read that needs it reports the same).
#[derive(Debug)]
enum Slot {
    Untried,
    Bound(Arc<Bound>),
    Failed(ErrorClass, String),
}

/// The chain of an opened child archive.
#[derive(Debug)]
pub(crate) struct ChainState {
    pub chain: Chain,
    /// Record offset of the `CHAIN` record (the header's length).
    pub chain_offset: u64,
    /// The `CHAIN_INDEX`, whose rows say which chunk each reference must find;
    /// `None` for a walk that checks them itself (FORMAT.md 15.4).
    pub index: Option<ChainIndex>,
    own_uuid: [u8; 16],
    limits: Limits,
    /// Whether the `CHAIN` record at the front passed its checks: prefixed
    /// tables are decoded only with that chain (FORMAT.md 5.3 rule 5).
    pub front_read: bool,
    search: Mutex<ParentSearch>,
    slots: Mutex<Vec<Slot>>,
    open: Mutex<Vec<(usize, Arc<File>)>>,
}

impl ChainState {
    pub fn new(chain: Chain, chain_offset: u64, index: Option<ChainIndex>, own_uuid: [u8; 16], limits: Limits) -> Self {
        let slots = (0..chain.depth()).map(|_| Slot::Untried).collect();
        ChainState {
            chain,
            chain_offset,
            index,
            own_uuid,
            limits,
            front_read: true,
            search: Mutex::new(ParentSearch::default()),
            slots: Mutex::new(slots),
            open: Mutex::new(Vec::new()),
        }
    }

    /// The same chain, checking references against `index` from now on.
    pub fn with_index(mut self, index: Option<ChainIndex>) -> Self {
        self.index = index;
        self
    }

    /// Sets where ancestors are looked for; forgets ancestors that failed, so
    /// that they are looked for again.
    pub fn set_search(&self, search: ParentSearch) {
        *self.search.lock().expect("not poisoned") = search;
        for slot in self.slots.lock().expect("not poisoned").iter_mut() {
            if matches!(slot, Slot::Failed(..)) {
                *slot = Slot::Untried;
            }
        }
    }

    /// Opens and checks every ancestor; the first that fails gives the error.
    pub fn check_all(&self) -> Result<(), Error> {
        (1..=self.chain.depth()).try_for_each(|k| self.bound(k).map(|_| ()))
    }

    /// The state of ancestor `k` (1-based) for a listing: its path when it
    /// binds, else why not. Opens it if it was not tried.
    pub fn status(&self, k: usize) -> Result<PathBuf, Error> {
        self.bound(k).map(|b| b.path.clone())
    }

    /// Reads, checks and decodes the ancestor chunk that `reference` names
    /// (15.4 step 5): listed in the `CHAIN_INDEX`, a `CHUNK` record there that
    /// passes every check, with the identity the index lists.
    pub fn chunk(&self, reference: ChunkRef) -> Result<Chunk, Error> {
        self.chunk_checked(reference, true)
    }

    /// [`chunk`](Self::chunk), but without the BLAKE3 of the decoded bytes
    /// when `hashed` is false (FORMAT.md 10.1 step 5: the caller checks every
    /// byte it takes against a file digest). The identity the record holds is
    /// still compared with the one the `CHAIN_INDEX` lists.
    pub(crate) fn chunk_checked(&self, reference: ChunkRef, hashed: bool) -> Result<Chunk, Error> {
        let k = usize::from(reference.archive);
        if k == 0 || k > self.chain.depth() || reference.offset < 128 {
            return Err(Error::new(
                ErrorClass::RecordMalformed,
                "chunk reference",
                format!(
                    "refers to archive {k} at offset {}, but the chain lists {} ancestors",
                    reference.offset,
                    self.chain.depth()
                ),
            ));
        }
        let expected = match &self.index {
            Some(index) => Some(index.identity_of(reference).ok_or_else(|| {
                Error::new(
                    ErrorClass::IndexMismatch,
                    "CHAIN_INDEX",
                    format!("does not list the chunk at offset {} of ancestor {k}", reference.offset),
                )
            })?),
            None => None,
        };
        let bound = self.bound(k)?;
        let file = self.file(k, &bound)?;
        let name = self.chain.ancestors[k - 1].name_lossy();
        let chunk = decode_chunk_record(&*file, bound.size, reference.offset, bound.tag, &self.limits, hashed)
            .map_err(|e| {
                let class = e.class().unwrap_or(ErrorClass::DanglingReference);
                Error::new(
                    class,
                    "ancestor chunk",
                    format!(
                        "{name} ({}), offset {}: {}: {}",
                        bound.path.display(),
                        reference.offset,
                        e.what(),
                        e.detail()
                    ),
                )
            })?;
        // The record after it, in the same ancestor: where read-ahead goes next.
        let chunk =
            Chunk { next_record: ChunkRef { archive: reference.archive, offset: chunk.next_record }.join(), ..chunk };
        if expected.is_some_and(|id| id != chunk.blake3) {
            return Err(Error::new(
                ErrorClass::ParentMismatch,
                "ancestor chunk",
                format!(
                    "{name} ({}), offset {}: the chunk there is not the one the child lists in its CHAIN_INDEX",
                    bound.path.display(),
                    reference.offset
                ),
            ));
        }
        Ok(chunk)
    }

    /// The prefix of a prefixed table (`spec/FORMAT.md` 5.3, rules 6 to 9):
    /// the decoded body of the record `head` names in ancestor
    /// `head.prefix_ref.archive` (counted in this chain), of type
    /// `record_type`, checked against the head's length and BLAKE3. A record
    /// that is itself prefixed is decoded first, in its own ancestors.
    pub(crate) fn table_prefix(&self, record_type: RecordType, head: &PrefixHead) -> Result<Vec<u8>, Error> {
        let k = usize::from(head.prefix_ref.archive);
        let offset = head.prefix_ref.offset;
        // Reported at the child's record (5.3), not at its CHAIN record.
        let unbound = |e: Error| {
            Error::new(e.class().unwrap_or(ErrorClass::ParentMissing), "table prefix", e.detail().to_string())
        };
        let bound = self.bound(k).map_err(unbound)?;
        let file = self.file(k, &bound).map_err(unbound)?;
        let name = self.chain.ancestors[k - 1].name_lossy();
        let fail = |class: ErrorClass, what: &str, detail: String| {
            Error::new(
                class,
                "table prefix",
                format!("{name} ({}), offset {offset}: {what}: {detail}", bound.path.display()),
            )
        };
        let limit = self.limits.max_index_bytes;
        let (header, found) = read_record_header_at(&*file, bound.size, offset, bound.tag, limit).map_err(|e| {
            // Rule 7: a header that is not there is a reference to nothing.
            let class = match e.class() {
                Some(c @ (ErrorClass::RecordChecksum | ErrorClass::Truncated)) => c,
                _ => ErrorClass::DanglingReference,
            };
            fail(class, e.what(), e.detail().to_string())
        })?;
        if found != Some(record_type) {
            return Err(fail(
                ErrorClass::DanglingReference,
                "record type",
                format!(
                    "a {} record, where a {} is named",
                    found.map_or("ancillary", |t| t.name()),
                    record_type.name()
                ),
            ));
        }
        let stored = read_checked_body(&*file, offset, &header)
            .map_err(|e| fail(e.class().unwrap_or(ErrorClass::RecordChecksum), e.what(), e.detail().to_string()))?;
        let decoded = if header.flags & RecordFlags::PREFIXED != 0 {
            // Rule 1 for the ancestor's record: the ancestor is incremental.
            let prefixes = if bound.incremental { Prefixes::Chain(self) } else { Prefixes::None };
            decode_prefixed(record_type, &stored, limit, prefixes, k)
        } else {
            crate::record::decode_table_body(record_type, header.flags, stored, limit)
        }
        .map_err(|e| fail(e.class().unwrap_or(ErrorClass::RecordMalformed), e.what(), e.detail().to_string()))?;
        if decoded.len() as u64 != head.prefix_length || *blake3::hash(&decoded).as_bytes() != head.prefix_blake3 {
            return Err(fail(
                ErrorClass::ParentMismatch,
                "prefix",
                format!(
                    "the record there decodes to {} bytes that are not the {} bytes the child was written against",
                    decoded.len(),
                    head.prefix_length
                ),
            ));
        }
        Ok(decoded)
    }

    /// Ancestor `k`, opened and bound on first use.
    fn bound(&self, k: usize) -> Result<Arc<Bound>, Error> {
        let mut slots = self.slots.lock().expect("not poisoned");
        match &slots[k - 1] {
            Slot::Bound(bound) => return Ok(bound.clone()),
            Slot::Failed(class, detail) => {
                return Err(Error::new(*class, "ancestor", detail.clone()).at(self.chain_offset))
            }
            Slot::Untried => {}
        }
        let search = self.search.lock().expect("not poisoned").clone();
        match self.bind(k, &search) {
            Ok(bound) => {
                let bound = Arc::new(bound);
                slots[k - 1] = Slot::Bound(bound.clone());
                Ok(bound)
            }
            Err((class, detail)) => {
                slots[k - 1] = Slot::Failed(class, detail.clone());
                Err(Error::new(class, "ancestor", detail).at(self.chain_offset))
            }
        }
    }

    /// An open file for ancestor `k`, from the bounded set of open files.
    fn file(&self, k: usize, bound: &Bound) -> Result<Arc<File>, Error> {
        let mut open = self.open.lock().expect("not poisoned");
        if let Some(at) = open.iter().position(|(slot, _)| *slot == k) {
            let entry = open.remove(at);
            let file = entry.1.clone();
            open.push(entry);
            return Ok(file);
        }
        let file = File::open(&bound.path)
            .map_err(|e| Error::local_io(format!("opening ancestor {}", bound.path.display()), e))?;
        // The file was checked when it bound; one replaced since is refused.
        let size = file.size().map_err(|e| Error::local_io("ancestor size", e))?;
        if size != bound.size {
            return Err(Error::new(
                ErrorClass::ParentMismatch,
                "ancestor",
                format!("{} changed size while it was read", bound.path.display()),
            )
            .at(self.chain_offset));
        }
        let file = Arc::new(file);
        if open.len() >= MAX_OPEN_ANCESTORS {
            open.remove(0);
        }
        open.push((k, file.clone()));
        Ok(file)
    }

    /// Finds ancestor `k` and checks it (15.4 steps 1 to 4).
    fn bind(&self, k: usize, search: &ParentSearch) -> Result<Bound, (ErrorClass, String)> {
        let wanted = &self.chain.ancestors[k - 1];
        let shown = format!("ancestor {k}, {:?} (archive {})", wanted.name_lossy(), wanted.uuid_text());
        let path = find(wanted, search).ok_or_else(|| {
            let looked = match &search.folder {
                Some(folder) => format!("no file {:?} in {}", wanted.name_lossy(), folder.display()),
                None => "no folder to look in".to_string(),
            };
            (ErrorClass::ParentMissing, format!("{shown} is missing: {looked} and no --parent file carries its UUID"))
        })?;
        let mismatch = |why: String| (ErrorClass::ParentMismatch, format!("{shown}: {} {why}", path.display()));
        let file =
            File::open(&path).map_err(|e| (ErrorClass::ParentMissing, format!("{shown}: {}: {e}", path.display())))?;
        let size = file.size().map_err(|e| mismatch(format!("cannot be read: {e}")))?;
        let header = read_header(&file, size).map_err(|e| mismatch(format!("has no usable header: {e}")))?;
        if header.archive_uuid != wanted.uuid {
            return Err(mismatch(format!("is archive {}, another archive", uuid_text(&header.archive_uuid))));
        }
        if size != wanted.archive_length {
            return Err(mismatch(format!(
                "has {size} bytes, but the ancestor had {} when the child was written",
                wanted.archive_length
            )));
        }
        let tag = header.archive_tag();
        if size < u64::from(header.header_length) + TRAILER_RECORD_SIZE {
            return Err(mismatch(format!("has {size} bytes, too few to hold a trailer")));
        }
        let (trailer, index_body) = read_trailer_and_index(&file, size, tag, &self.limits)
            .map_err(|e| mismatch(format!("cannot be opened: {e}")))?;
        let index_offset = trailer.index_offset;
        if *blake3::hash(&index_body).as_bytes() != wanted.binding {
            return Err(mismatch(
                "does not bind: its ARCHIVE_INDEX differs from the one the child was written against (the file was \
                 rewritten or salvaged since)"
                    .to_string(),
            ));
        }
        if header.incompatible_features & Features::INCOMPAT_INCREMENTAL != 0 {
            let index = ArchiveIndex::parse(&index_body)
                .map_err(|e| mismatch(format!("has an unusable ARCHIVE_INDEX at {index_offset}: {e}")))?;
            let theirs = read_chain_index(&file, size, tag, &self.limits, &index, &header.archive_uuid)
                .map_err(|e| mismatch(format!("has an unusable chain: {e}")))?;
            let ours = &self.chain.ancestors[k..];
            let agree = theirs
                .chain
                .ancestors
                .iter()
                .zip(ours)
                .all(|(a, b)| a.uuid == b.uuid && a.binding == b.binding && a.archive_length == b.archive_length);
            if !agree {
                return Err(mismatch("lists other ancestors than the child does after it: the chains disagree".into()));
            }
            if theirs.chain.id_scheme != self.chain.id_scheme {
                return Err(mismatch("makes chunk identities by another scheme".into()));
            }
        }
        debug_assert_ne!(header.archive_uuid, self.own_uuid, "Chain::parse refuses cycles");
        let incremental = header.incompatible_features & Features::INCOMPAT_INCREMENTAL != 0;
        Ok(Bound { path, size, tag, incremental })
    }
}

/// The file that should hold `wanted`: a user-named file whose header has its
/// UUID, else its recorded name in the search folder.
fn find(wanted: &Ancestor, search: &ParentSearch) -> Option<PathBuf> {
    for path in &search.files {
        let Ok(file) = File::open(path) else { continue };
        let mut head = [0u8; 32];
        if file.read_exact_at(&mut head, 0).is_ok() && head[16..32] == wanted.uuid {
            return Some(path.clone());
        }
    }
    let folder = search.folder.as_ref()?;
    let name = name_path(&wanted.name);
    let path = folder.join(name);
    path.is_file().then_some(path)
}

#[cfg(unix)]
fn name_path(name: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(name))
}

#[cfg(not(unix))]
fn name_path(name: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(name).into_owned())
}

/// Opens the chain of an archive whose header, trailer and `ARCHIVE_INDEX`
/// were read: `None` for an archive without feature bit 1 (after checking
/// that it has no chain records), else the chain from its `CHAIN_INDEX`,
/// checked against the `CHAIN` record at the front (FORMAT.md 15, 15.3).
pub(crate) fn open_chain<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    header: &ArchiveHeader,
    limits: &Limits,
    index: &ArchiveIndex,
    index_offset: u64,
) -> Result<Option<Arc<ChainState>>, Error> {
    let first = u64::from(header.header_length);
    let tag = header.archive_tag();
    if header.incompatible_features & Features::INCOMPAT_INCREMENTAL == 0 {
        if index.chain_index.is_some() {
            return Err(Error::new(
                ErrorClass::RecordMalformed,
                "ARCHIVE_INDEX",
                "has the chain fields of an incremental archive, but feature bit 1 is clear",
            )
            .at(index_offset));
        }
        if record_type_at(source, size, first, tag, limits) == Some(RecordType::Chain) {
            return Err(Error::new(
                ErrorClass::RecordMalformed,
                "CHAIN",
                "a CHAIN record in an archive without feature bit 1 (incremental)",
            )
            .at(first));
        }
        return Ok(None);
    }
    let chain_index = read_chain_index(source, size, tag, limits, index, &header.archive_uuid)?;
    let pointer = index.chain_index.expect("read_chain_index found it");
    let (stored, _) = crate::record::read_record_header_at(source, size, pointer.offset, tag, limits.max_index_bytes)?;
    if pointer.offset + RecordHeader::SIZE as u64 + stored.body_length != index_offset {
        return Err(Error::new(
            ErrorClass::IndexMismatch,
            "ARCHIVE_INDEX chain_index_offset",
            "the CHAIN_INDEX is not the record directly before the ARCHIVE_INDEX",
        )
        .at(index_offset));
    }
    let mut front_read = true;
    match read_front_chain(source, size, first, tag, limits) {
        Ok(front) if front != chain_index.chain_body => {
            return Err(Error::new(
                ErrorClass::IndexMismatch,
                "CHAIN_INDEX chain",
                "the copy of the chain differs from the CHAIN record at the front",
            )
            .at(pointer.offset))
        }
        Ok(_) => {}
        // A damaged front copy costs nothing: the index holds the chain (FORMAT.md 11).
        Err(e) if e.class() == Some(ErrorClass::RecordChecksum) => front_read = false,
        Err(e) => return Err(e),
    }
    let chain = chain_index.chain.clone();
    let mut state = ChainState::new(chain, first, Some(chain_index), header.archive_uuid, *limits);
    state.front_read = front_read;
    Ok(Some(Arc::new(state)))
}

/// Reads the `CHAIN_INDEX` an incremental archive's `ARCHIVE_INDEX` points at,
/// checks its BLAKE3 and place (directly before the index), and parses it.
pub(crate) fn read_chain_index<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    tag: [u8; 8],
    limits: &Limits,
    index: &ArchiveIndex,
    own_uuid: &[u8; 16],
) -> Result<ChainIndex, Error> {
    let Some(pointer) = index.chain_index else {
        return Err(Error::new(
            ErrorClass::RecordMalformed,
            "ARCHIVE_INDEX",
            "the archive is incremental (feature bit 1), but its ARCHIVE_INDEX has no chain fields",
        ));
    };
    let record = read_record_at(source, size, pointer.offset, tag, limits.max_index_bytes, Prefixes::None)?;
    let body = crate::archive::expect_type(&record, RecordType::ChainIndex)?;
    if *blake3::hash(body).as_bytes() != pointer.blake3 {
        return Err(Error::new(
            ErrorClass::IndexMismatch,
            "ARCHIVE_INDEX chain_index_blake3",
            "differs from the BLAKE3 of the CHAIN_INDEX body",
        )
        .at(pointer.offset));
    }
    ChainIndex::parse(body, own_uuid, limits.max_chain_depth).map_err(|e| Error::from(e).at(pointer.offset))
}

/// Reads the `CHAIN` record at the front of an incremental archive.
pub(crate) fn read_front_chain<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    header_length: u64,
    tag: [u8; 8],
    limits: &Limits,
) -> Result<Vec<u8>, Error> {
    let record = read_record_at(source, size, header_length, tag, limits.max_index_bytes, Prefixes::None)?;
    if record.record_type != Some(RecordType::Chain) {
        return Err(Error::new(
            ErrorClass::RecordMalformed,
            "first record",
            format!(
                "the archive is incremental (feature bit 1), but its first record is {}, not CHAIN",
                record.record_type.map_or("an ancillary record", |t| t.name())
            ),
        )
        .at(header_length));
    }
    Ok(record.body)
}

/// The record type at `offset`, if a record header that passes is there.
pub(crate) fn record_type_at<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    limits: &Limits,
) -> Option<RecordType> {
    if offset + RecordHeader::SIZE as u64 > size {
        return None;
    }
    crate::record::read_record_header_at(source, size, offset, tag, limits.max_index_bytes).ok().and_then(|(_, t)| t)
}
