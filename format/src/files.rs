//! File-tree sections: `FILES_BEGIN`, `FILES_EXTENTS`, `FILES_ENTRIES`, `FILES_END`,
//! `FILES_DIR`, `FILES_INDEX` (`spec/FORMAT.md`, section 8).
//!
//! Entries are variable-length and parsed by hand with bounds checks: listing a
//! tree of a million entries must not go field by field through a generic parser.

use crate::layout::fixed_layout;
use crate::{limits, ErrorClass, FormatError};

/// A time as a file system keeps it: whole seconds since 1970-01-01T00:00:00Z
/// and the nanoseconds after them (`spec/FORMAT.md` 8.3, "Times"; the
/// `struct timespec` convention, so half a second before the epoch is
/// `(-1, 500_000_000)`).
///
/// ```
/// use strata_format::files::Timestamp;
/// let t = Timestamp::new(-1, 500_000_000).expect("nanoseconds below 10^9");
/// assert_eq!(t.unix_nanos(), -500_000_000);
/// assert!(Timestamp::new(0, 1_000_000_000).is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since the epoch, negative before it.
    pub secs: i64,
    /// Nanoseconds after `secs`: 0 to 999,999,999 in a valid time.
    pub nsec: u32,
}

impl Timestamp {
    /// The epoch, and what an uncaptured time is recorded as.
    pub const ZERO: Timestamp = Timestamp { secs: 0, nsec: 0 };

    /// A time, or `None` when `nsec` is 10^9 or more.
    pub const fn new(secs: i64, nsec: u32) -> Option<Timestamp> {
        if nsec < 1_000_000_000 {
            Some(Timestamp { secs, nsec })
        } else {
            None
        }
    }

    /// Whether `nsec` is below 10^9, as the format requires.
    pub const fn is_valid(self) -> bool {
        self.nsec < 1_000_000_000
    }

    /// Nanoseconds since the epoch; an `i128`, since an `i64` ends in 2262.
    pub const fn unix_nanos(self) -> i128 {
        self.secs as i128 * 1_000_000_000 + self.nsec as i128
    }

    /// The time `nanos` nanoseconds after the epoch (rounding toward the past).
    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp { secs: nanos.div_euclid(1_000_000_000), nsec: nanos.rem_euclid(1_000_000_000) as u32 }
    }
}

/// ISO 8601 in UTC, to the nanosecond when there are any:
/// `2026-12-03T10:19:50Z`, `1969-12-31T23:59:59.5Z`; years outside 0000..9999
/// are written expanded, with a sign (`+292277026596-12-04T15:30:07Z`), so every
/// `i64` second has a text.
///
/// ```
/// use strata_format::files::Timestamp;
/// assert_eq!(Timestamp { secs: -1, nsec: 500_000_000 }.to_string(), "1969-12-31T23:59:59.5Z");
/// assert_eq!(Timestamp { secs: 16_725_225_600, nsec: 1 }.to_string(), "2500-01-01T00:00:00.000000001Z");
/// ```
impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = i128::from(self.secs);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), in
        // i128 so that no i64 second overflows it.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i128::from(month <= 2);
        if (0..=9999).contains(&year) {
            write!(f, "{year:04}")?;
        } else {
            write!(f, "{year:+05}")?;
        }
        write!(f, "-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)?;
        if self.nsec != 0 {
            let digits = format!("{:09}", self.nsec);
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// Length of a regular file's `digest` (`spec/FORMAT.md` 8.3, "The file digest").
pub const DIGEST_LEN: usize = 16;

/// The digest of a file without items: size 0, or flag bit 2 or 3 (the first
/// 16 bytes of BLAKE3 of no bytes).
pub const EMPTY_DIGEST: [u8; DIGEST_LEN] =
    [0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9, 0x49];

/// Computes a regular file's digest (`spec/FORMAT.md` 8.3) from its data in
/// file order: the one home of that rule, for writers and readers alike.
///
/// Data given at the offset where the previous data ended continues a data
/// range; data after a gap closes the range and records the gap as a hole.
/// Holes cost nothing to hash, so a 1 TiB sparse file costs what its stored
/// bytes cost.
///
/// ```
/// use strata_format::files::{FileDigest, EMPTY_DIGEST};
/// assert_eq!(FileDigest::new().finish(0), EMPTY_DIGEST);
/// // How the data is split does not matter, only where it lies.
/// let mut a = FileDigest::new();
/// a.data(1 << 40, b"hello world");
/// let mut b = FileDigest::new();
/// b.data(1 << 40, b"hello ");
/// b.data((1 << 40) + 6, b"world");
/// assert_eq!(a.finish(1 << 41), b.finish(1 << 41));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FileDigest {
    items: blake3::Hasher,
    /// The open data range: its first byte and the hash of its bytes so far.
    range: Option<(u64, blake3::Hasher)>,
    /// Where the data seen so far ends.
    end: u64,
}

impl FileDigest {
    /// A digest of no data yet.
    pub fn new() -> FileDigest {
        FileDigest::default()
    }

    fn item(&mut self, offset: u64, length: u64, identity: &[u8; 32]) {
        self.items.update(&offset.to_le_bytes());
        self.items.update(&length.to_le_bytes());
        self.items.update(identity);
    }

    fn close_range(&mut self) {
        if let Some((start, hasher)) = self.range.take() {
            let identity = *hasher.finalize().as_bytes();
            self.item(start, self.end - start, &identity);
        }
    }

    /// Adds `bytes` of the file's data at file offset `offset`. Data comes in
    /// file order; data that starts before the end of earlier data (which a
    /// valid extent map never gives) opens a new range, so the digest differs.
    pub fn data(&mut self, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match &mut self.range {
            Some((_, hasher)) if offset == self.end => {
                hasher.update(bytes);
            }
            _ => {
                self.close_range();
                if offset > self.end {
                    self.item(self.end, offset - self.end, &[0; 32]);
                }
                let mut hasher = blake3::Hasher::new();
                hasher.update(bytes);
                self.range = Some((offset, hasher));
            }
        }
        self.end = offset.saturating_add(bytes.len() as u64);
    }

    /// The digest of a file of `size` bytes: the data given, and holes
    /// everywhere else up to `size`.
    pub fn finish(mut self, size: u64) -> [u8; DIGEST_LEN] {
        self.close_range();
        if size > self.end {
            self.item(self.end, size - self.end, &[0; 32]);
        }
        let mut digest = [0; DIGEST_LEN];
        digest.copy_from_slice(&self.items.finalize().as_bytes()[..DIGEST_LEN]);
        digest
    }
}

/// `parent_id` of the root entry.
pub const NO_PARENT: u64 = u64::MAX;
/// Fixed part of an entry, before its variable fields.
pub const ENTRY_HEAD: usize = 144;
/// Longest symbolic-link target.
pub const MAX_TARGET: u32 = 4095;
/// Longest extended-attribute value.
pub const MAX_XATTR_VALUE: u32 = 65_536;
/// Largest `FILES_ENTRIES` body.
pub const MAX_ENTRIES_BODY: u64 = 64 << 20;

/// What a writer captured for every entry of a section (`FILES_BEGIN.captured`).
pub struct Captured;

impl Captured {
    pub const OWNER_NAMES: u64 = 1 << 0;
    pub const XATTRS: u64 = 1 << 1;
    pub const ATIME: u64 = 1 << 2;
    pub const CTIME: u64 = 1 << 3;
    pub const BTIME: u64 = 1 << 4;
    pub const HOLES: u64 = 1 << 5;
    pub const KNOWN: u64 = (1 << 6) - 1;
}

/// Entry flag bits.
pub struct EntryFlags;

impl EntryFlags {
    pub const BTIME: u8 = 1 << 0;
    pub const CHANGED_WHILE_READ: u8 = 1 << 1;
    pub const UNREADABLE: u8 = 1 << 2;
    /// Lost to damage before a salvage: a file's content (size 0, no extents),
    /// or, on a directory, the entry itself (the salvager made this one up).
    pub const LOST_IN_SALVAGE: u8 = 1 << 3;
    pub const KNOWN: u8 = (1 << 4) - 1;
}

/// Entry kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl EntryKind {
    pub const fn code(self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Directory => 2,
            EntryKind::Symlink => 3,
            EntryKind::Hardlink => 4,
            EntryKind::CharDevice => 5,
            EntryKind::BlockDevice => 6,
            EntryKind::Fifo => 7,
            EntryKind::Socket => 8,
        }
    }
    pub const fn from_code(code: u8) -> Option<EntryKind> {
        Some(match code {
            1 => EntryKind::File,
            2 => EntryKind::Directory,
            3 => EntryKind::Symlink,
            4 => EntryKind::Hardlink,
            5 => EntryKind::CharDevice,
            6 => EntryKind::BlockDevice,
            7 => EntryKind::Fifo,
            8 => EntryKind::Socket,
            _ => return None,
        })
    }
    /// The `ls -l` type letter.
    pub const fn letter(self) -> char {
        match self {
            EntryKind::File | EntryKind::Hardlink => '-',
            EntryKind::Directory => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 's',
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::CharDevice => "char-device",
            EntryKind::BlockDevice => "block-device",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }
}

fixed_layout! {
    /// The fixed head of `FILES_BEGIN`; the name follows.
    pub struct FilesBeginHead : 24 bytes {
        pub section_id: u32,
        pub chunk_size: u32,
        pub captured: u64,
        pub name_length: u16,
        pub reserved: [u8; 6],
    }
}

/// The body of `FILES_BEGIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesBegin {
    pub section_id: u32,
    pub chunk_size: u32,
    pub captured: u64,
    pub name: Vec<u8>,
}

impl FilesBegin {
    pub fn to_bytes(&self) -> Vec<u8> {
        let head = FilesBeginHead {
            section_id: self.section_id,
            chunk_size: self.chunk_size,
            captured: self.captured,
            name_length: self.name.len() as u16,
            reserved: [0; 6],
        };
        let mut body = head.encode().to_vec();
        body.extend_from_slice(&self.name);
        body
    }

    pub fn parse(body: &[u8]) -> Result<FilesBegin, FormatError> {
        let (head, name) = crate::split_array::<{ FilesBeginHead::SIZE }>(body)
            .ok_or_else(|| FormatError::malformed("FILES_BEGIN body", "shorter than 24 bytes"))?;
        let head = FilesBeginHead::decode(head);
        if usize::from(head.name_length) != name.len() {
            return Err(FormatError::malformed(
                "FILES_BEGIN name_length",
                format!("{}, but {} name bytes follow", head.name_length, name.len()),
            ));
        }
        if head.reserved != [0; 6] || head.captured & !Captured::KNOWN != 0 {
            return Err(FormatError::malformed("FILES_BEGIN", "reserved bits set"));
        }
        let begin = FilesBegin {
            section_id: head.section_id,
            chunk_size: head.chunk_size,
            captured: head.captured,
            name: name.to_vec(),
        };
        begin.validate()?;
        Ok(begin)
    }

    pub fn validate(&self) -> Result<(), FormatError> {
        crate::image::validate_section_name(&self.name)?;
        if !self.chunk_size.is_power_of_two()
            || !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_RAW).contains(&self.chunk_size)
        {
            return Err(FormatError::malformed(
                "FILES_BEGIN chunk_size",
                format!("{}, expected a power of two from 4096 to 16777216", self.chunk_size),
            ));
        }
        Ok(())
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

fixed_layout! {
    /// One piece of a regular file's content.
    pub struct FileExtent : 40 bytes {
        pub entry_id: u64,
        pub file_offset: u64,
        pub length: u64,
        /// Record offset of the `CHUNK` holding the bytes.
        pub chunk_ref: u64,
        /// Where the bytes start in the chunk's raw bytes.
        pub chunk_offset: u32,
        pub reserved: u32,
    }
}

impl FileExtent {
    pub fn end(&self) -> u64 {
        self.file_offset.saturating_add(self.length)
    }

    pub fn validate(&self) -> Result<(), FormatError> {
        if self.length == 0 || self.chunk_ref < crate::image::REF_FIRST_OFFSET || self.reserved != 0 {
            return Err(FormatError::malformed(
                "file extent",
                format!(
                    "entry {} at file offset {}: empty, reserved field set, or chunk_ref {} is not an offset",
                    self.entry_id, self.file_offset, self.chunk_ref
                ),
            ));
        }
        if self.file_offset.checked_add(self.length).is_none()
            || u64::from(self.chunk_offset) + self.length > u64::from(limits::MAX_CHUNK_RAW)
        {
            return Err(FormatError::new(
                ErrorClass::ExtentMap,
                "file extent",
                format!("entry {} at file offset {}: runs past its chunk", self.entry_id, self.file_offset),
            ));
        }
        Ok(())
    }
}

/// Decodes the extents of a `FILES_EXTENTS` table (head parsed by
/// [`crate::image::parse_extent_table`]-like rules with 40-byte entries).
pub fn parse_file_extents(body: &[u8]) -> Result<(u32, Vec<FileExtent>), FormatError> {
    let (head, rest) = crate::split_array::<16>(body)
        .ok_or_else(|| FormatError::malformed("FILES_EXTENTS body", "shorter than 16 bytes"))?;
    let head = crate::image::ExtentTableHead::decode(head);
    if head.reserved != 0 || head.count == 0 || head.count > u64::from(limits::MAX_EXTENTS_PER_RECORD) {
        return Err(FormatError::malformed(
            "FILES_EXTENTS head",
            format!("count {} (expected 1 to 65536) or reserved field set", head.count),
        ));
    }
    if head.count.checked_mul(FileExtent::SIZE as u64) != Some(rest.len() as u64) {
        return Err(FormatError::malformed(
            "FILES_EXTENTS body",
            format!("count {} does not match {} bytes of extents", head.count, rest.len()),
        ));
    }
    let extents = rest
        .chunks_exact(FileExtent::SIZE)
        .map(|raw| FileExtent::decode(raw.try_into().expect("chunks_exact yields 40 bytes")))
        .collect::<Vec<_>>();
    for extent in &extents {
        extent.validate()?;
    }
    Ok((head.section_id, extents))
}

pub fn encode_file_extents(section_id: u32, extents: &[FileExtent]) -> Vec<u8> {
    let head = crate::image::ExtentTableHead { section_id, reserved: 0, count: extents.len() as u64 };
    let mut body = Vec::with_capacity(16 + extents.len() * FileExtent::SIZE);
    body.extend_from_slice(&head.encode());
    for extent in extents {
        body.extend_from_slice(&extent.encode());
    }
    body
}

fixed_layout! {
    /// The fixed head of an entry.
    pub struct EntryHead : 144 bytes {
        pub entry_length: u32,
        pub kind: u8,
        pub flags: u8,
        pub reserved: u16,
        pub entry_id: u64,
        pub parent_id: u64,
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub rdev_major: u32,
        pub rdev_minor: u32,
        pub mtime_nsec: u32,
        pub mtime_s: i64,
        pub atime_s: i64,
        pub ctime_s: i64,
        pub btime_s: i64,
        pub size: u64,
        pub link_id: u64,
        pub digest: [u8; 16],
        pub atime_nsec: u32,
        pub ctime_nsec: u32,
        pub btime_nsec: u32,
        pub reserved2: u32,
        pub name_length: u16,
        pub user_length: u8,
        pub group_length: u8,
        pub target_length: u32,
        pub xattr_count: u32,
        pub extent_count: u32,
    }
}

impl EntryHead {
    /// The entry this head describes, its variable-length parts (name, owner
    /// names, target, xattrs, extents) left empty: the one mapping from the
    /// head's fields to [`Entry`]'s, for the strict parser and a lenient one.
    pub fn entry_fields(&self, kind: EntryKind) -> Entry {
        Entry {
            flags: self.flags,
            entry_id: self.entry_id,
            parent_id: self.parent_id,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            rdev_major: self.rdev_major,
            rdev_minor: self.rdev_minor,
            mtime: Timestamp { secs: self.mtime_s, nsec: self.mtime_nsec },
            atime: Timestamp { secs: self.atime_s, nsec: self.atime_nsec },
            ctime: Timestamp { secs: self.ctime_s, nsec: self.ctime_nsec },
            btime: Timestamp { secs: self.btime_s, nsec: self.btime_nsec },
            size: self.size,
            link_id: self.link_id,
            digest: self.digest,
            ..Entry::bare(kind, b"")
        }
    }
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A parsed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub flags: u8,
    pub entry_id: u64,
    pub parent_id: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time; zero unless captured.
    pub atime: Timestamp,
    /// Change time; zero unless captured.
    pub ctime: Timestamp,
    /// Birth time; zero unless flag bit 0.
    pub btime: Timestamp,
    pub size: u64,
    pub link_id: u64,
    /// A regular file's digest ([`FileDigest`]); zero on other kinds.
    pub digest: [u8; DIGEST_LEN],
    pub name: Vec<u8>,
    pub user: Vec<u8>,
    pub group: Vec<u8>,
    pub target: Vec<u8>,
    pub xattrs: Vec<Xattr>,
    pub extents: Vec<FileExtent>,
}

/// Takes `n` bytes from the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
    if rest.len() < n {
        return Err(FormatError::malformed(what, format!("needs {n} bytes, {} remain in the entry", rest.len())));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

impl Entry {
    /// An entry of `kind` named `name` with every other field zero or empty, for
    /// writers that build entries rather than read them from a folder.
    pub fn bare(kind: EntryKind, name: &[u8]) -> Entry {
        Entry {
            kind,
            flags: 0,
            entry_id: 0,
            parent_id: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            rdev_major: 0,
            rdev_minor: 0,
            mtime: Timestamp::ZERO,
            atime: Timestamp::ZERO,
            ctime: Timestamp::ZERO,
            btime: Timestamp::ZERO,
            size: 0,
            link_id: 0,
            digest: [0; DIGEST_LEN],
            name: name.to_vec(),
            user: Vec::new(),
            group: Vec::new(),
            target: Vec::new(),
            xattrs: Vec::new(),
            extents: Vec::new(),
        }
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEAD
            + self.name.len()
            + self.user.len()
            + self.group.len()
            + self.target.len()
            + self.xattrs.iter().map(|x| 5 + x.name.len() + x.value.len()).sum::<usize>()
            + self.extents.len() * FileExtent::SIZE
    }

    /// Appends the encoded entry to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let head = EntryHead {
            entry_length: self.encoded_len() as u32,
            kind: self.kind.code(),
            flags: self.flags,
            reserved: 0,
            entry_id: self.entry_id,
            parent_id: self.parent_id,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            rdev_major: self.rdev_major,
            rdev_minor: self.rdev_minor,
            mtime_nsec: self.mtime.nsec,
            mtime_s: self.mtime.secs,
            atime_s: self.atime.secs,
            ctime_s: self.ctime.secs,
            btime_s: self.btime.secs,
            size: self.size,
            link_id: self.link_id,
            digest: self.digest,
            atime_nsec: self.atime.nsec,
            ctime_nsec: self.ctime.nsec,
            btime_nsec: self.btime.nsec,
            reserved2: 0,
            name_length: self.name.len() as u16,
            user_length: self.user.len() as u8,
            group_length: self.group.len() as u8,
            target_length: self.target.len() as u32,
            xattr_count: self.xattrs.len() as u32,
            extent_count: self.extents.len() as u32,
        };
        out.extend_from_slice(&head.encode());
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.user);
        out.extend_from_slice(&self.group);
        out.extend_from_slice(&self.target);
        for x in &self.xattrs {
            out.push(x.name.len() as u8);
            out.extend_from_slice(&(x.value.len() as u32).to_le_bytes());
            out.extend_from_slice(&x.name);
            out.extend_from_slice(&x.value);
        }
        for e in &self.extents {
            out.extend_from_slice(&e.encode());
        }
    }

    /// Parses the entry at the front of `bytes`; returns it and its length.
    pub fn parse(bytes: &[u8]) -> Result<(Entry, usize), FormatError> {
        let (head, _) = crate::split_array::<ENTRY_HEAD>(bytes)
            .ok_or_else(|| FormatError::malformed("entry", "shorter than its 144-byte head"))?;
        let head = EntryHead::decode(head);
        let length = head.entry_length as usize;
        if length < ENTRY_HEAD || length > bytes.len() {
            return Err(FormatError::malformed(
                "entry_length",
                format!("{length}, with {} bytes left in the record", bytes.len()),
            ));
        }
        let kind = EntryKind::from_code(head.kind)
            .ok_or_else(|| FormatError::malformed("entry kind", format!("unknown kind {}", head.kind)))?;
        if head.reserved != 0 || head.reserved2 != 0 {
            return Err(FormatError::malformed("entry", format!("entry {}: reserved bits set", head.entry_id)));
        }
        if head.target_length > MAX_TARGET || head.name_length as usize > limits::MAX_SECTION_NAME {
            return Err(FormatError::new(
                ErrorClass::LimitExceeded,
                "entry",
                format!("entry {}: name or target too long", head.entry_id),
            ));
        }
        let mut rest = &bytes[ENTRY_HEAD..length];
        let name = take(&mut rest, head.name_length.into(), "entry name")?.to_vec();
        let user = take(&mut rest, head.user_length.into(), "entry user name")?.to_vec();
        let group = take(&mut rest, head.group_length.into(), "entry group name")?.to_vec();
        let target = take(&mut rest, head.target_length as usize, "symlink target")?.to_vec();
        // Each xattr takes at least 6 bytes: bound the count before allocating.
        if head.xattr_count as usize > rest.len() / 6 + 1
            || head.extent_count as usize > rest.len() / FileExtent::SIZE + 1
        {
            return Err(FormatError::malformed("entry", format!("entry {}: counts exceed its length", head.entry_id)));
        }
        let mut xattrs = Vec::with_capacity(head.xattr_count as usize);
        for _ in 0..head.xattr_count {
            let name_length = take(&mut rest, 1, "xattr name length")?[0] as usize;
            let value_length =
                u32::from_le_bytes(take(&mut rest, 4, "xattr value length")?.try_into().expect("4 bytes"));
            if name_length == 0 || value_length > MAX_XATTR_VALUE {
                return Err(FormatError::malformed(
                    "xattr",
                    format!("entry {}: empty name or value over 64 KiB", head.entry_id),
                ));
            }
            let name = take(&mut rest, name_length, "xattr name")?.to_vec();
            let value = take(&mut rest, value_length as usize, "xattr value")?.to_vec();
            if xattrs.last().is_some_and(|last: &Xattr| last.name >= name) {
                return Err(FormatError::malformed(
                    "xattr",
                    format!("entry {}: names not in increasing order", head.entry_id),
                ));
            }
            xattrs.push(Xattr { name, value });
        }
        let mut extents = Vec::with_capacity(head.extent_count as usize);
        let mut next = 0u64;
        for _ in 0..head.extent_count {
            let raw: &[u8; 40] = take(&mut rest, FileExtent::SIZE, "file extent")?.try_into().expect("40 bytes");
            let extent = FileExtent::decode(raw);
            extent.validate()?;
            if extent.entry_id != head.entry_id || extent.file_offset < next || extent.end() > head.size {
                return Err(FormatError::new(
                    ErrorClass::ExtentMap,
                    "file extent",
                    format!(
                        "entry {}: extent at file offset {} overlaps, is out of order, or runs past the size {}",
                        head.entry_id, extent.file_offset, head.size
                    ),
                ));
            }
            next = extent.end();
            extents.push(extent);
        }
        if !rest.is_empty() {
            return Err(FormatError::malformed(
                "entry_length",
                format!("entry {}: {} bytes left over", head.entry_id, rest.len()),
            ));
        }
        let entry = Entry { name, user, group, target, xattrs, extents, ..head.entry_fields(kind) };
        // The per-entry rules (validate_kind, check_captured) are the caller's:
        // an entry that breaks one is refused alone, its record's others kept.
        Ok((entry, length))
    }

    /// Rules tied to the kind that a reader checks on each entry alone. Name
    /// safety (no `/`, no `..`) is the extractor's to enforce and report by path.
    pub fn validate_kind(&self) -> Result<(), FormatError> {
        let bad = |detail: &str| Err(FormatError::malformed("entry", format!("entry {}: {detail}", self.entry_id)));
        if self.mode & !0o7777 != 0 {
            return bad("mode has bits beyond 07777");
        }
        if self.flags & !EntryFlags::KNOWN != 0 {
            return bad("reserved flag bits set");
        }
        let device = matches!(self.kind, EntryKind::CharDevice | EntryKind::BlockDevice);
        if !device && (self.rdev_major != 0 || self.rdev_minor != 0) {
            return bad("device numbers on an entry that is not a device");
        }
        if self.kind != EntryKind::Hardlink && self.link_id != 0 {
            return bad("link_id on an entry that is not a hard link");
        }
        if [self.mtime, self.atime, self.ctime, self.btime].iter().any(|t| !t.is_valid()) {
            return bad("a time's nanoseconds are 1,000,000,000 or more");
        }
        if self.kind != EntryKind::File && self.digest != [0; DIGEST_LEN] {
            return bad("a digest on an entry that is not a regular file");
        }
        if self.flags & EntryFlags::BTIME == 0 && self.btime != Timestamp::ZERO {
            return bad("a birth time without flag bit 0");
        }
        // Bits 1 and 2 mean something only on regular files (readers ignore them
        // elsewhere); bit 3 also on directories.
        if self.kind == EntryKind::File
            && self.flags & (EntryFlags::UNREADABLE | EntryFlags::LOST_IN_SALVAGE) != 0
            && (self.size != 0 || !self.extents.is_empty() || self.digest != EMPTY_DIGEST)
        {
            return bad("content on a file whose flag bit 2 or 3 says it has none");
        }
        if self.flags & EntryFlags::LOST_IN_SALVAGE != 0 && !matches!(self.kind, EntryKind::File | EntryKind::Directory)
        {
            return bad("flag bit 3 (lost in salvage) on an entry that is neither a file nor a directory");
        }
        match self.kind {
            EntryKind::Symlink if self.target.is_empty() || self.size != self.target.len() as u64 => {
                bad("a symbolic link needs a target of `size` bytes")
            }
            EntryKind::Symlink => Ok(()),
            _ if !self.target.is_empty() => bad("only symbolic links have a target"),
            EntryKind::File => Ok(()),
            _ if !self.extents.is_empty() || self.size != 0 => bad("only regular files have content"),
            _ => Ok(()),
        }
    }

    /// The rules that tie an entry to its section's `captured` bits: what was
    /// not captured is zero or empty.
    pub fn check_captured(&self, captured: u64) -> Result<(), FormatError> {
        let missing = |bit: u64| captured & bit == 0;
        let fault = if missing(Captured::ATIME) && self.atime != Timestamp::ZERO {
            Some("an atime, but atimes were not captured")
        } else if missing(Captured::CTIME) && self.ctime != Timestamp::ZERO {
            Some("a ctime, but ctimes were not captured")
        } else if missing(Captured::BTIME) && self.flags & EntryFlags::BTIME != 0 {
            Some("a birth time, but birth times were not captured")
        } else if missing(Captured::OWNER_NAMES) && (!self.user.is_empty() || !self.group.is_empty()) {
            Some("owner names, but owner names were not captured")
        } else if missing(Captured::XATTRS) && !self.xattrs.is_empty() {
            Some("extended attributes, but they were not captured")
        } else {
            None
        };
        match fault {
            Some(detail) => Err(FormatError::malformed("entry", format!("entry {}: {detail}", self.entry_id))),
            None => Ok(()),
        }
    }

    /// Whether the name is safe to create inside a directory.
    pub fn name_is_safe(name: &[u8]) -> bool {
        !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
    }
}

/// Parses a `FILES_ENTRIES` body: returns the section id and each entry with its
/// byte offset in the body.
pub fn parse_entries(body: &[u8]) -> Result<(u32, Vec<(u32, Entry)>), FormatError> {
    let (head, _) = crate::split_array::<16>(body)
        .ok_or_else(|| FormatError::malformed("FILES_ENTRIES body", "shorter than 16 bytes"))?;
    let head = crate::image::ExtentTableHead::decode(head);
    if head.reserved != 0 || head.count == 0 || head.count > (body.len() / ENTRY_HEAD) as u64 {
        return Err(FormatError::malformed(
            "FILES_ENTRIES head",
            format!("count {} for a body of {} bytes, or reserved field set", head.count, body.len()),
        ));
    }
    let mut entries = Vec::with_capacity(head.count as usize);
    let mut at = 16usize;
    for _ in 0..head.count {
        let (entry, length) = Entry::parse(&body[at..])?;
        entries.push((at as u32, entry));
        at += length;
    }
    if at != body.len() {
        return Err(FormatError::malformed(
            "FILES_ENTRIES body",
            format!("{} bytes follow the last entry", body.len() - at),
        ));
    }
    Ok((head.section_id, entries))
}

fixed_layout! {
    /// The body of `FILES_END`.
    pub struct FilesEnd : 64 bytes {
        pub section_id: u32,
        pub reserved: u32,
        pub entry_count: u64,
        pub file_count: u64,
        pub directory_count: u64,
        pub content_bytes: u64,
        pub chunk_count: u64,
        pub chunk_bytes: u64,
        pub begin_offset: u64,
    }
}

fixed_layout! {
    /// The head of a `FILES_DIR` body.
    pub struct DirHead : 24 bytes {
        pub section_id: u32,
        pub reserved: u32,
        pub entry_id: u64,
        pub count: u64,
    }
}

fixed_layout! {
    /// One child in a `FILES_DIR`.
    pub struct DirChild : 32 bytes {
        pub entry_id: u64,
        pub entries_record: u64,
        pub entry_offset: u32,
        pub name_length: u16,
        pub kind: u8,
        pub reserved: u8,
        pub dir_table: u64,
    }
}

/// A parsed `FILES_DIR`: children sorted by name, with their names.
#[derive(Clone, Debug)]
pub struct DirTable {
    pub section_id: u32,
    pub entry_id: u64,
    pub children: Vec<(DirChild, Vec<u8>)>,
}

impl DirTable {
    pub fn encode(&self) -> Vec<u8> {
        let head = DirHead {
            section_id: self.section_id,
            reserved: 0,
            entry_id: self.entry_id,
            count: self.children.len() as u64,
        };
        let mut body = head.encode().to_vec();
        for (child, _) in &self.children {
            body.extend_from_slice(&child.encode());
        }
        for (_, name) in &self.children {
            body.extend_from_slice(name);
        }
        body
    }

    pub fn parse(body: &[u8]) -> Result<DirTable, FormatError> {
        let (head, rest) = crate::split_array::<{ DirHead::SIZE }>(body)
            .ok_or_else(|| FormatError::malformed("FILES_DIR body", "shorter than 24 bytes"))?;
        let head = DirHead::decode(head);
        let table_bytes = head.count.checked_mul(DirChild::SIZE as u64).filter(|&n| n <= rest.len() as u64);
        let Some(table_bytes) = table_bytes else {
            return Err(FormatError::malformed(
                "FILES_DIR count",
                format!("{} children do not fit the body", head.count),
            ));
        };
        if head.reserved != 0 {
            return Err(FormatError::malformed("FILES_DIR", "reserved field set"));
        }
        let (table, mut names) = rest.split_at(table_bytes as usize);
        let mut children = Vec::with_capacity(head.count as usize);
        for raw in table.chunks_exact(DirChild::SIZE) {
            let child = DirChild::decode(raw.try_into().expect("32 bytes"));
            let name = take(&mut names, child.name_length.into(), "FILES_DIR name")?.to_vec();
            if child.reserved != 0 || EntryKind::from_code(child.kind).is_none() {
                return Err(FormatError::malformed("FILES_DIR child", "reserved field set or unknown kind"));
            }
            if children.last().is_some_and(|(_, last): &(DirChild, Vec<u8>)| *last >= name) {
                return Err(FormatError::malformed("FILES_DIR", "children not sorted by name, or a name repeats"));
            }
            children.push((child, name));
        }
        if !names.is_empty() {
            return Err(FormatError::malformed("FILES_DIR", "bytes left after the names"));
        }
        Ok(DirTable { section_id: head.section_id, entry_id: head.entry_id, children })
    }

    /// Finds a child by name (binary search).
    pub fn find(&self, name: &[u8]) -> Option<&DirChild> {
        self.children.binary_search_by(|(_, n)| n.as_slice().cmp(name)).ok().map(|i| &self.children[i].0)
    }
}

fixed_layout! {
    /// The fixed head of `FILES_INDEX`; `record_count` u64 offsets follow.
    pub struct FilesIndexHead : 40 bytes {
        pub section_id: u32,
        pub reserved: u32,
        pub root_dir: u64,
        pub root_entries_record: u64,
        pub root_entry_offset: u32,
        pub reserved2: u32,
        pub record_count: u64,
    }
}

/// Parses a `FILES_INDEX` body.
pub fn parse_files_index(body: &[u8]) -> Result<(FilesIndexHead, Vec<u64>), FormatError> {
    let (head, rest) = crate::split_array::<{ FilesIndexHead::SIZE }>(body)
        .ok_or_else(|| FormatError::malformed("FILES_INDEX body", "shorter than 40 bytes"))?;
    let head = FilesIndexHead::decode(head);
    if head.reserved != 0 || head.reserved2 != 0 || head.record_count.checked_mul(8) != Some(rest.len() as u64) {
        return Err(FormatError::malformed(
            "FILES_INDEX body",
            format!("record_count {} for {} bytes, or reserved field set", head.record_count, rest.len()),
        ));
    }
    let offsets = rest.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
    Ok((head, offsets))
}

pub fn encode_files_index(head: &FilesIndexHead, offsets: &[u64]) -> Vec<u8> {
    let mut body = head.encode().to_vec();
    for offset in offsets {
        body.extend_from_slice(&offset.to_le_bytes());
    }
    body
}
