//! File-tree sections: `FILES_BEGIN`, `FILES_EXTENTS`, `FILES_ENTRIES`, `FILES_END`,
//! `FILES_DIR`, `FILES_INDEX` (`spec/FORMAT.md`, section 8).
//!
//! Entries are variable-length and parsed by hand with bounds checks: listing a
//! tree of a million entries must not go field by field through a generic parser.

use crate::layout::fixed_layout;
use crate::table::{decode_columns, encode_columns, row_width, Column};
pub use crate::tree_check::TreeCheck;
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

    /// Adds a data range of `length` bytes at file offset `offset` whose
    /// BLAKE3 the caller already has (a writer hashes a small file once, for
    /// this digest and to find its copies). The range is taken whole: the
    /// digest is the one [`data`](Self::data) with those bytes gives when no
    /// later data continues the range (data given after it, even at its end,
    /// starts a range of its own). Returns false, adding nothing, when the
    /// range would continue the data before it (`offset` equal to its end):
    /// only the bytes can extend an open range, so pass them to
    /// [`data`](Self::data) instead.
    ///
    /// ```
    /// use strata_format::files::FileDigest;
    /// let bytes = b"a small file";
    /// let mut by_bytes = FileDigest::new();
    /// by_bytes.data(0, bytes);
    /// let mut by_hash = FileDigest::new();
    /// assert!(by_hash.hashed_range(0, bytes.len() as u64, blake3::hash(bytes).as_bytes()));
    /// assert_eq!(by_hash.finish(12), by_bytes.finish(12));
    /// ```
    pub fn hashed_range(&mut self, offset: u64, length: u64, blake3: &[u8; 32]) -> bool {
        if length == 0 {
            return true;
        }
        if self.range.is_some() && offset == self.end {
            return false;
        }
        self.close_range();
        if offset > self.end {
            self.item(self.end, offset - self.end, &[0; 32]);
        }
        self.item(offset, length, blake3);
        self.end = offset.saturating_add(length);
        true
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
/// Longest symbolic-link target.
pub const MAX_TARGET: u32 = 4095;
/// Longest extended-attribute value.
pub const MAX_XATTR_VALUE: u32 = 65_536;
/// Largest `FILES_ENTRIES` body.
pub const MAX_ENTRIES_BODY: u64 = 64 << 20;

/// What a writer captured for every entry of a section (`FILES_BEGIN.captured`,
/// `spec/FORMAT.md` 8.1).
#[derive(Debug)]
pub struct Captured;

impl Captured {
    /// Bit 0: owner user and group names.
    pub const OWNER_NAMES: u64 = 1 << 0;
    /// Bit 1: extended attributes (POSIX ACLs and file capabilities among them).
    pub const XATTRS: u64 = 1 << 1;
    /// Bit 2: access times.
    pub const ATIME: u64 = 1 << 2;
    /// Bit 3: change times (informational).
    pub const CTIME: u64 = 1 << 3;
    /// Bit 4: birth times, where the source has them.
    pub const BTIME: u64 = 1 << 4;
    /// Bit 5: holes (sparse files).
    pub const HOLES: u64 = 1 << 5;
    /// Source identity: each entry's inode number and device (8.3).
    pub const IDENTITY: u64 = 1 << 6;
    /// Every bit this version defines; bits 7 to 63 are reserved and refused.
    pub const KNOWN: u64 = (1 << 7) - 1;
}

/// Entry flag bits: the `flags` byte of an entry row (`spec/FORMAT.md` 8.3).
#[derive(Debug)]
pub struct EntryFlags;

impl EntryFlags {
    /// Bit 0: the entry carries a birth time.
    pub const BTIME: u8 = 1 << 0;
    /// Bit 1: the file changed while it was read; its content is kept as read.
    pub const CHANGED_WHILE_READ: u8 = 1 << 1;
    /// Bit 2: the content could not be read when the archive was written (size 0, no extents).
    pub const UNREADABLE: u8 = 1 << 2;
    /// Lost to damage before a salvage: a file's content (size 0, no extents),
    /// or, on a directory, the entry itself (the salvager made this one up).
    pub const LOST_IN_SALVAGE: u8 = 1 << 3;
    /// Every bit this version defines; the others are reserved and refused.
    pub const KNOWN: u8 = (1 << 4) - 1;
}

/// Entry kinds: the `kind` byte of an entry row (`spec/FORMAT.md` 8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// 1: a regular file.
    File,
    /// 2: a directory.
    Directory,
    /// 3: a symbolic link.
    Symlink,
    /// 4: a hard link to an earlier regular file of the section.
    Hardlink,
    /// 5: a character device.
    CharDevice,
    /// 6: a block device.
    BlockDevice,
    /// 7: a fifo.
    Fifo,
    /// 8: a socket.
    Socket,
}

impl EntryKind {
    /// The code stored in `EntryRow::kind` (spec 8.3).
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
    /// The kind with code `code`, or `None` for a value the spec does not define.
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
    /// The name used in JSON output.
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
    /// The fixed head of `FILES_BEGIN` (`spec/FORMAT.md` 8.1); the name follows.
    pub struct FilesBeginHead : 24 bytes {
        /// The section number, as for images (spec 7.1).
        pub section_id: u32,
        /// Window size of large files and the largest packed chunk: a power of two from 4 KiB to 16 MiB.
        pub chunk_size: u32,
        /// [`Captured`] bits: what the writer captured for every entry.
        pub captured: u64,
        /// Length of the section name that follows: 1 to 255.
        pub name_length: u16,
        /// Zero.
        pub reserved: [u8; 6],
    }
}

/// The body of `FILES_BEGIN` (`spec/FORMAT.md` 8.1), which opens a file-tree section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesBegin {
    /// The section number (spec 7.1, 8.1).
    pub section_id: u32,
    /// Window size of large files and the largest packed chunk: a power of two from 4 KiB to 16 MiB.
    pub chunk_size: u32,
    /// [`Captured`] bits.
    pub captured: u64,
    /// The section's name: UTF-8, 1 to 255 bytes, no `/`, no NUL, not `.` or `..`.
    pub name: Vec<u8>,
}

impl FilesBegin {
    /// Encodes the body: the [`FilesBeginHead`] then the name.
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

    /// Parses and validates a body whose CRC has been checked: exact length, zero reserved bytes, known `captured` bits, name and chunk size rules.
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

    /// Checks the name and chunk size rules of spec 8.1.
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

    /// The name as text, for display (invalid UTF-8 replaced).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

fixed_layout! {
    /// One piece of a regular file's content: a row of a `FILES_EXTENTS`
    /// table (`spec/FORMAT.md` 8.2).
    pub struct FileExtent : 36 bytes {
        /// The regular file this content belongs to.
        pub entry_id: u64,
        /// Where the extent starts in the file.
        pub file_offset: u64,
        /// Its length, at least 1.
        pub length: u64,
        /// The `CHUNK` holding the bytes (a chunk reference, 15.1).
        pub chunk_ref: u64,
        /// Where the bytes start in the chunk's raw bytes.
        pub chunk_offset: u32,
    }
}

/// The columns of a `FILES_EXTENTS` table, in row order.
pub const FILE_EXTENT_COLUMNS: [Column; 5] =
    [Column::delta(), Column::plain(8), Column::plain(8), Column::delta(), Column::plain(4)];

impl FileExtent {
    /// The first file offset after the extent (saturating).
    pub fn end(&self) -> u64 {
        self.file_offset.saturating_add(self.length)
    }

    /// The rules of one extent alone (8.2): not empty, a chunk reference that
    /// is an offset, and an end that fits.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.chunk_ref < crate::image::REF_FIRST_OFFSET {
            return Err(FormatError::malformed(
                "file extent",
                format!(
                    "entry {} at file offset {}: chunk_ref {} is not an offset",
                    self.entry_id, self.file_offset, self.chunk_ref
                ),
            ));
        }
        if self.length == 0
            || self.file_offset.checked_add(self.length).is_none()
            || u64::from(self.chunk_offset) + self.length > u64::from(limits::MAX_CHUNK_RAW)
        {
            return Err(FormatError::new(
                ErrorClass::ExtentMap,
                "file extent",
                format!("entry {} at file offset {}: empty, or runs past its chunk", self.entry_id, self.file_offset),
            ));
        }
        Ok(())
    }
}

fixed_layout! {
    /// The head of a `FILES_EXTENTS` body (`spec/FORMAT.md` 8.2).
    pub struct FileExtentsHead : 24 bytes {
        /// The open section.
        pub section_id: u32,
        /// Zero.
        pub reserved: u32,
        /// Extents in the record: 1 to 65,536.
        pub count: u64,
        /// Index of the first one in the section's extent sequence.
        pub first_index: u64,
    }
}

/// A parsed `FILES_EXTENTS` body (`spec/FORMAT.md` 8.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileExtents {
    /// The head.
    pub head: FileExtentsHead,
    /// The extents, decoded from their columns; each still to be checked
    /// with [`FileExtent::validate`] and against its neighbours.
    pub extents: Vec<FileExtent>,
}

/// Parses a `FILES_EXTENTS` body: the head's rules (`record-malformed`), then
/// the table. The extents' own rules are the caller's, extent by extent.
pub fn parse_file_extents(body: &[u8]) -> Result<FileExtents, FormatError> {
    let (head, rest) = crate::split_array::<{ FileExtentsHead::SIZE }>(body)
        .ok_or_else(|| FormatError::malformed("FILES_EXTENTS body", "shorter than 24 bytes"))?;
    let head = FileExtentsHead::decode(head);
    if head.reserved != 0 || head.count == 0 || head.count > u64::from(limits::MAX_EXTENTS_PER_RECORD) {
        return Err(FormatError::malformed(
            "FILES_EXTENTS head",
            format!("count {} (expected 1 to 65536) or reserved field set", head.count),
        ));
    }
    if head.count * FileExtent::SIZE as u64 != rest.len() as u64 {
        return Err(FormatError::malformed(
            "FILES_EXTENTS body",
            format!("count {} does not match {} bytes of extents", head.count, rest.len()),
        ));
    }
    let rows = decode_columns(rest, head.count as usize, &FILE_EXTENT_COLUMNS)?;
    let extents =
        rows.chunks_exact(FileExtent::SIZE).map(|raw| FileExtent::decode(raw.try_into().expect("36 bytes"))).collect();
    Ok(FileExtents { head, extents })
}

/// Encodes a `FILES_EXTENTS` body.
pub fn encode_file_extents(section_id: u32, first_index: u64, extents: &[FileExtent]) -> Vec<u8> {
    let head = FileExtentsHead { section_id, reserved: 0, count: extents.len() as u64, first_index };
    let mut rows = Vec::with_capacity(extents.len() * FileExtent::SIZE);
    for extent in extents {
        rows.extend_from_slice(&extent.encode());
    }
    let mut body = head.encode().to_vec();
    encode_columns(&rows, &FILE_EXTENT_COLUMNS, &mut body);
    body
}

fixed_layout! {
    /// The head of a `FILES_ENTRIES` body: an entry group (`spec/FORMAT.md` 8.3).
    pub struct GroupHead : 56 bytes {
        /// The open section.
        pub section_id: u32,
        /// Entries in the group: 1 to 65,536.
        pub count: u32,
        /// The `entry_id` of row 0.
        pub first_id: u64,
        /// The section's `captured` bits.
        pub captured: u64,
        /// Index of the first extent of the group's entries.
        pub extent_base: u64,
        /// Rows of the extent list.
        pub list_count: u32,
        /// Bytes of the names area.
        pub names_length: u32,
        /// Bytes of the strings area.
        pub strings_length: u64,
        /// Zero.
        pub reserved: u64,
    }
}

fixed_layout! {
    /// A row of a group's extent list: a `FILES_EXTENTS` record holding some
    /// of the group's extents.
    pub struct ExtentListRow : 16 bytes {
        /// Record offset of the `FILES_EXTENTS` record.
        pub extents_record: u64,
        /// Its `first_index`.
        pub first_index: u64,
    }
}

const EXTENT_LIST_COLUMNS: [Column; 2] = [Column::plain(8), Column::plain(8)];

fixed_layout! {
    /// The fixed part of an entry row (`spec/FORMAT.md` 8.3); the captured times and the
    /// source identity follow when the section captured them.
    pub struct EntryRow : 87 bytes {
        /// An [`EntryKind`] code: 1 regular file to 8 socket.
        pub kind: u8,
        /// Bit 0 birth time present, bit 1 changed while read, bit 2 content unreadable; the others zero.
        pub flags: u8,
        /// Permission bits with setuid, setgid and sticky: at most 0o7777.
        pub mode: u16,
        /// Bytes of the name in the names area: 1 to 255 (0 only for the root).
        pub name_length: u8,
        /// Bytes of the owner's user name in the strings area; 0 if unknown or not captured.
        pub user_length: u8,
        /// Bytes of the owner's group name in the strings area; 0 if unknown or not captured.
        pub group_length: u8,
        /// Symbolic link: bytes of its target, 1 to 4,095; else 0.
        pub target_length: u16,
        /// Extended attributes in the strings area.
        pub xattr_count: u16,
        /// Owner user id.
        pub uid: u32,
        /// Owner group id.
        pub gid: u32,
        /// Devices only: major number; else 0.
        pub rdev_major: u32,
        /// Devices only: minor number; else 0.
        pub rdev_minor: u32,
        /// Modification time: seconds since 1970-01-01T00:00:00Z (negative before it).
        pub mtime_s: i64,
        /// Nanoseconds of the modification time: 0 to 999,999,999.
        pub mtime_nsec: u32,
        /// `entry_id` of an earlier directory entry; `u64::MAX` for the root.
        pub parent_id: u64,
        /// Regular file: content length, holes included; symbolic link: target length; else 0.
        pub size: u64,
        /// Hard link: the `entry_id` of the earlier regular file it shares an inode with; else 0.
        pub link_id: u64,
        /// Regular file: the number of extents announced with its `entry_id` (8.2); else 0.
        pub extent_count: u64,
        /// Regular file: the file digest of its content; else zero.
        pub digest: [u8; 16],
    }
}

const ENTRY_ROW_COLUMNS: [Column; 19] = [
    Column::plain(1),
    Column::plain(1),
    Column::plain(2),
    Column::plain(1),
    Column::plain(1),
    Column::plain(1),
    Column::plain(2),
    Column::plain(2),
    Column::plain(4),
    Column::plain(4),
    Column::plain(4),
    Column::plain(4),
    Column::plain(8),
    Column::plain(4),
    Column::plain(8),
    Column::plain(8),
    Column::plain(8),
    Column::plain(8),
    Column::plain(16),
];
const TIME_COLUMNS: [Column; 2] = [Column::plain(8), Column::plain(4)];
const IDENTITY_COLUMNS: [Column; 3] = [Column::delta(), Column::plain(4), Column::plain(4)];

/// The columns of an entry row under `captured`: the fixed part, then atime,
/// ctime, birth time (bits 2, 3, 4) and the source identity (bit 6).
pub fn entry_columns(captured: u64) -> Vec<Column> {
    let mut columns = ENTRY_ROW_COLUMNS.to_vec();
    for bit in [Captured::ATIME, Captured::CTIME, Captured::BTIME] {
        if captured & bit != 0 {
            columns.extend_from_slice(&TIME_COLUMNS);
        }
    }
    if captured & Captured::IDENTITY != 0 {
        columns.extend_from_slice(&IDENTITY_COLUMNS);
    }
    columns
}

/// One extended attribute, as the strings area of a group holds it (`spec/FORMAT.md` 8.3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xattr {
    /// Attribute name, with its namespace prefix (`user.`, `security.`, ...).
    pub name: Vec<u8>,
    /// Attribute value: at most 64 KiB.
    pub value: Vec<u8>,
}

/// An entry (`spec/FORMAT.md` 8.3): the fields of its row, its name and strings, and (filled by the
/// writer before encoding, or by a reader from the `FILES_EXTENTS` records)
/// its extents.
///
/// ```
/// use strata_format::files::{encode_group, parse_group, Entry, EntryKind, NO_PARENT};
/// let root = Entry { parent_id: NO_PARENT, mode: 0o755, ..Entry::bare(EntryKind::Directory, b"") };
/// let link = Entry { entry_id: 1, target: b"/etc".to_vec(), size: 4, ..Entry::bare(EntryKind::Symlink, b"etc") };
/// let body = encode_group(0, 0, 0, 0, &[], &[root.clone(), link.clone()]);
/// let group = parse_group(&body).unwrap();
/// let entries: Vec<Entry> = group.entries.into_iter().map(Result::unwrap).collect();
/// assert_eq!(entries, [root, link]);
///
/// // A group cut short is refused whole.
/// assert!(parse_group(&body[..body.len() - 1]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What the entry is.
    pub kind: EntryKind,
    /// [`EntryFlags`] bits.
    pub flags: u8,
    /// Implicit in the format: the group's `first_id` plus the row.
    pub entry_id: u64,
    /// `entry_id` of the parent directory; [`NO_PARENT`] for the root.
    pub parent_id: u64,
    /// Permission bits with setuid, setgid and sticky: at most 0o7777.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Devices only: major number; else 0.
    pub rdev_major: u32,
    /// Devices only: minor number; else 0.
    pub rdev_minor: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time; zero unless captured.
    pub atime: Timestamp,
    /// Change time; zero unless captured.
    pub ctime: Timestamp,
    /// Birth time; zero unless flag bit 0.
    pub btime: Timestamp,
    /// Regular file: content length, holes included; symbolic link: target length; else 0.
    pub size: u64,
    /// Hard link: the `entry_id` of the regular file it shares an inode with; else 0.
    pub link_id: u64,
    /// A regular file's digest ([`FileDigest`]); zero on other kinds.
    pub digest: [u8; DIGEST_LEN],
    /// Regular files: the number of extents announced with this entry's id.
    /// [`encode_group`] writes this field, not `extents.len()`.
    pub extent_count: u64,
    /// Source identity (`captured` bit 6): the source's inode number.
    pub ino: u64,
    /// Source identity: the source's device (major, minor).
    pub dev: (u32, u32),
    /// The entry name (one path component; empty only for the root).
    pub name: Vec<u8>,
    /// Owner user name; empty if unknown or not captured.
    pub user: Vec<u8>,
    /// Owner group name; empty if unknown or not captured.
    pub group: Vec<u8>,
    /// Symbolic link target; empty for other kinds.
    pub target: Vec<u8>,
    /// Extended attributes, when captured.
    pub xattrs: Vec<Xattr>,
    /// The file's extents: not part of the entry's row (8.2 holds the only
    /// copy); empty in a freshly parsed group.
    pub extents: Vec<FileExtent>,
}

/// Takes `n` bytes from the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
    if rest.len() < n {
        return Err(FormatError::malformed(what, format!("needs {n} bytes, {} remain", rest.len())));
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
            extent_count: 0,
            ino: 0,
            dev: (0, 0),
            name: name.to_vec(),
            user: Vec::new(),
            group: Vec::new(),
            target: Vec::new(),
            xattrs: Vec::new(),
            extents: Vec::new(),
        }
    }

    /// Bytes this entry takes in a group's strings area.
    pub fn strings_len(&self) -> usize {
        self.user.len()
            + self.group.len()
            + self.target.len()
            + self.xattrs.iter().map(|x| 5 + x.name.len() + x.value.len()).sum::<usize>()
    }

    /// Bytes this entry adds to a group's decoded body under `captured`.
    pub fn group_len(&self, captured: u64) -> usize {
        row_width(&entry_columns(captured)) + self.name.len() + self.strings_len()
    }

    fn row(&self) -> EntryRow {
        EntryRow {
            kind: self.kind.code(),
            flags: self.flags,
            mode: self.mode as u16,
            name_length: self.name.len() as u8,
            user_length: self.user.len() as u8,
            group_length: self.group.len() as u8,
            target_length: self.target.len() as u16,
            xattr_count: self.xattrs.len() as u16,
            uid: self.uid,
            gid: self.gid,
            rdev_major: self.rdev_major,
            rdev_minor: self.rdev_minor,
            mtime_s: self.mtime.secs,
            mtime_nsec: self.mtime.nsec,
            parent_id: self.parent_id,
            size: self.size,
            link_id: self.link_id,
            extent_count: self.extent_count,
            digest: self.digest,
        }
    }

    /// Every rule of `spec/FORMAT.md` section 8 that this entry breaks on its
    /// own, given its section's `captured` bits: each fault a
    /// [`ErrorClass::RecordMalformed`]
    /// error naming the entry. The rules between entries (parents, order,
    /// link targets) are [`TreeCheck`]'s. A verifier reports them all; a
    /// writer or an extractor refuses the entry on the first
    /// ([`Entry::check`]).
    ///
    /// ```
    /// use strata_format::files::{Captured, Entry, EntryKind};
    /// let mut link = Entry::bare(EntryKind::Symlink, b"link");
    /// link.entry_id = 3;
    /// link.target = b"target".to_vec();
    /// link.size = 6;
    /// assert!(link.faults(Captured::OWNER_NAMES).is_empty());
    /// link.mode = 0o170777;
    /// link.user = b"root".to_vec();
    /// let faults = link.faults(0);
    /// assert_eq!(faults.len(), 2, "a mode beyond 07777, owner names not captured");
    /// assert!(faults[0].detail.starts_with("entry 3: mode"));
    /// ```
    pub fn faults(&self, captured: u64) -> Vec<FormatError> {
        use EntryKind::*;
        let mut out = Vec::new();
        let mut bad =
            |detail: &str| out.push(FormatError::malformed("entry", format!("entry {}: {detail}", self.entry_id)));
        let is = |kind: EntryKind| self.kind == kind;
        let missing = |bit: u64| captured & bit == 0;
        if self.flags & !EntryFlags::KNOWN != 0 {
            bad("reserved flag bits set");
        }
        if self.flags & EntryFlags::LOST_IN_SALVAGE != 0 && !is(File) && !is(Directory) {
            bad("flag bit 3 (lost in salvage) on an entry that is neither a file nor a directory");
        }
        if self.mode & !0o7777 != 0 {
            bad("mode has bits beyond 07777");
        }
        if !is(CharDevice) && !is(BlockDevice) && (self.rdev_major != 0 || self.rdev_minor != 0) {
            bad("device numbers on an entry that is not a device");
        }
        if [self.mtime, self.atime, self.ctime, self.btime].iter().any(|t| !t.is_valid()) {
            bad("a time's nanoseconds are 1,000,000,000 or more");
        }
        if missing(Captured::ATIME) && self.atime != Timestamp::ZERO {
            bad("an atime, but atimes were not captured");
        }
        if missing(Captured::CTIME) && self.ctime != Timestamp::ZERO {
            bad("a ctime, but ctimes were not captured");
        }
        if missing(Captured::BTIME) && self.flags & EntryFlags::BTIME != 0 {
            bad("a birth time, but birth times were not captured");
        }
        if self.flags & EntryFlags::BTIME == 0 && self.btime != Timestamp::ZERO {
            bad("a birth time without flag bit 0");
        }
        if is(Symlink) {
            if self.size != self.target.len() as u64 {
                bad("a symbolic link's size is not its target's length");
            }
        } else if !is(File) && self.size != 0 {
            bad("a size on an entry that is neither a file nor a symbolic link");
        }
        if !is(Hardlink) && self.link_id != 0 {
            bad("link_id on an entry that is not a hard link");
        }
        if !is(File) && self.digest != [0; DIGEST_LEN] {
            bad("a digest on an entry that is not a regular file");
        }
        if !is(File) && self.extent_count != 0 {
            bad("extent_count on an entry that is not a regular file");
        }
        if (self.entry_id != 0 || self.parent_id != NO_PARENT) && !Entry::name_is_safe(&self.name) {
            bad("unsafe name (empty, `.`, `..`, or holds `/` or NUL)");
        }
        if missing(Captured::OWNER_NAMES) && (!self.user.is_empty() || !self.group.is_empty()) {
            bad("owner names, but owner names were not captured");
        }
        if is(Symlink) {
            if self.target.is_empty() || self.target.len() > MAX_TARGET as usize || self.target.contains(&0) {
                bad("a symbolic link's target is 1 to 4095 bytes, none of them NUL");
            }
        } else if !self.target.is_empty() {
            bad("only symbolic links have a target");
        }
        if missing(Captured::XATTRS) && !self.xattrs.is_empty() {
            bad("extended attributes, but they were not captured");
        }
        if self.xattrs.iter().any(|x| x.value.len() > MAX_XATTR_VALUE as usize) {
            bad("an xattr value over 64 KiB");
        }
        // Bits 1 and 2 mean something only on regular files (readers ignore
        // them elsewhere); bit 3 also on directories.
        if is(File)
            && self.flags & (EntryFlags::UNREADABLE | EntryFlags::LOST_IN_SALVAGE) != 0
            && (self.size != 0 || self.extent_count != 0 || self.digest != EMPTY_DIGEST)
        {
            bad("content on a file whose flag bit 2 or 3 says it has none");
        }
        out
    }

    /// The first rule this entry breaks on its own ([`Entry::faults`]), if any.
    pub fn check(&self, captured: u64) -> Result<(), FormatError> {
        match self.faults(captured).into_iter().next() {
            Some(fault) => Err(fault),
            None => Ok(()),
        }
    }

    /// Whether the name is safe to create inside a directory.
    pub fn name_is_safe(name: &[u8]) -> bool {
        !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
    }
}

/// A parsed `FILES_ENTRIES` body: an entry group (`spec/FORMAT.md` 8.3).
#[derive(Clone, Debug)]
pub struct EntryGroup {
    /// The head.
    pub head: GroupHead,
    /// The extent list: the `FILES_EXTENTS` records holding the group's extents.
    pub extent_list: Vec<ExtentListRow>,
    /// Each row: its entry (with `entry_id` = `first_id` + row and no
    /// extents), or what breaks a rule of the row alone (an unknown kind,
    /// attributes out of order). Rules between entries and the kind rules of
    /// [`Entry::check`] are the caller's.
    pub entries: Vec<Result<Entry, FormatError>>,
    /// What each `Err` row of `entries` still says, in row order: a row that
    /// breaks a rule of its own is still read and checked (8.3), and its
    /// fixed fields place it in the tree and bound what was announced for it.
    pub broken_rows: Vec<BrokenRow>,
}

/// The fields of a row that breaks a rule of its own (an unknown kind,
/// attributes out of order, a target too long), as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenRow {
    /// Its id: the group's `first_id` + its row.
    pub entry_id: u64,
    /// Its `parent_id`, as stored.
    pub parent_id: u64,
    /// Its name, as stored.
    pub name: Vec<u8>,
    /// Its `kind` code, as stored (unknown or not).
    pub kind: u8,
    /// Its `size`, as stored: the range `0..size` is what content announced
    /// for it affects.
    pub size: u64,
}

impl EntryGroup {
    /// The id one past the group's last entry.
    pub fn end_id(&self) -> u64 {
        self.head.first_id.saturating_add(u64::from(self.head.count))
    }
}

/// Parses a `FILES_ENTRIES` body (8.3). A head that breaks a rule, or areas
/// that do not fill the body exactly, are `record-malformed` for the whole
/// group; a row that breaks a rule of its own is an `Err` in its place.
pub fn parse_group(body: &[u8]) -> Result<EntryGroup, FormatError> {
    let (head, rest) = crate::split_array::<{ GroupHead::SIZE }>(body)
        .ok_or_else(|| FormatError::malformed("FILES_ENTRIES body", "shorter than its 56-byte head"))?;
    let head = GroupHead::decode(head);
    if head.reserved != 0 || head.count == 0 || head.count > MAX_GROUP_ENTRIES || head.captured & !Captured::KNOWN != 0
    {
        return Err(FormatError::malformed(
            "FILES_ENTRIES head",
            format!("count {} (expected 1 to 65536), or reserved bits set", head.count),
        ));
    }
    let columns = entry_columns(head.captured);
    let width = row_width(&columns) as u64;
    let expected = (ExtentListRow::SIZE as u64)
        .checked_mul(u64::from(head.list_count))
        .and_then(|n| n.checked_add(u64::from(head.count) * width))
        .and_then(|n| n.checked_add(u64::from(head.names_length)))
        .and_then(|n| n.checked_add(head.strings_length));
    if expected != Some(rest.len() as u64) {
        return Err(FormatError::malformed(
            "FILES_ENTRIES body",
            format!(
                "{} list rows, {} entries, {} name bytes and {} string bytes do not fill {} bytes",
                head.list_count,
                head.count,
                head.names_length,
                head.strings_length,
                rest.len()
            ),
        ));
    }
    let (list, rest) = rest.split_at(head.list_count as usize * ExtentListRow::SIZE);
    let (table, rest) = rest.split_at(head.count as usize * width as usize);
    let (mut names, mut strings) = rest.split_at(head.names_length as usize);
    let extent_list = decode_columns(list, head.list_count as usize, &EXTENT_LIST_COLUMNS)?
        .chunks_exact(ExtentListRow::SIZE)
        .map(|raw| ExtentListRow::decode(raw.try_into().expect("16 bytes")))
        .collect();
    let rows = decode_columns(table, head.count as usize, &columns)?;
    let mut entries = Vec::with_capacity(head.count as usize);
    let mut broken_rows = Vec::new();
    for (i, raw) in rows.chunks_exact(width as usize).enumerate() {
        let entry_id = head.first_id.wrapping_add(i as u64);
        let (fixed, mut optional) = raw.split_at(EntryRow::SIZE);
        let row = EntryRow::decode(fixed.try_into().expect("87 bytes"));
        let mut time = |bit: u64| {
            if head.captured & bit == 0 {
                return Timestamp::ZERO;
            }
            let secs = i64::from_le_bytes(optional[..8].try_into().expect("8 bytes"));
            let nsec = u32::from_le_bytes(optional[8..12].try_into().expect("4 bytes"));
            optional = &optional[12..];
            Timestamp { secs, nsec }
        };
        let atime = time(Captured::ATIME);
        let ctime = time(Captured::CTIME);
        let btime = time(Captured::BTIME);
        let (ino, dev) = if head.captured & Captured::IDENTITY != 0 {
            let ino = u64::from_le_bytes(optional[..8].try_into().expect("8 bytes"));
            let major = u32::from_le_bytes(optional[8..12].try_into().expect("4 bytes"));
            let minor = u32::from_le_bytes(optional[12..16].try_into().expect("4 bytes"));
            (ino, (major, minor))
        } else {
            (0, (0, 0))
        };
        let name = take(&mut names, row.name_length.into(), "entry names")?.to_vec();
        let user = take(&mut strings, row.user_length.into(), "entry strings")?.to_vec();
        let group = take(&mut strings, row.group_length.into(), "entry strings")?.to_vec();
        let target = take(&mut strings, row.target_length.into(), "entry strings")?.to_vec();
        let mut xattrs: Vec<Xattr> = Vec::new();
        let mut xattr_fault = None;
        for _ in 0..row.xattr_count {
            let name_length = take(&mut strings, 1, "entry strings")?[0] as usize;
            let value_length = u32::from_le_bytes(take(&mut strings, 4, "entry strings")?.try_into().expect("4 bytes"));
            if value_length > MAX_XATTR_VALUE {
                return Err(FormatError::malformed(
                    "FILES_ENTRIES strings",
                    format!("entry {entry_id}: an attribute value of {value_length} bytes, over 65536"),
                ));
            }
            let name = take(&mut strings, name_length, "entry strings")?.to_vec();
            let value = take(&mut strings, value_length as usize, "entry strings")?.to_vec();
            if name.is_empty() || xattrs.last().is_some_and(|last| last.name >= name) {
                xattr_fault.get_or_insert("attribute names empty or not in increasing order");
            }
            xattrs.push(Xattr { name, value });
        }
        let kind = EntryKind::from_code(row.kind);
        let fault = match (kind, xattr_fault) {
            (None, _) => Some(format!("unknown kind {}", row.kind)),
            (_, Some(fault)) => Some(fault.to_string()),
            _ if row.target_length as u32 > MAX_TARGET => Some("a target over 4095 bytes".to_string()),
            _ => None,
        };
        entries.push(match (kind, fault) {
            (Some(kind), None) => Ok(Entry {
                kind,
                flags: row.flags,
                entry_id,
                parent_id: row.parent_id,
                mode: row.mode.into(),
                uid: row.uid,
                gid: row.gid,
                rdev_major: row.rdev_major,
                rdev_minor: row.rdev_minor,
                mtime: Timestamp { secs: row.mtime_s, nsec: row.mtime_nsec },
                atime,
                ctime,
                btime,
                size: row.size,
                link_id: row.link_id,
                digest: row.digest,
                extent_count: row.extent_count,
                ino,
                dev,
                name,
                user,
                group,
                target,
                xattrs,
                extents: Vec::new(),
            }),
            (_, fault) => {
                broken_rows.push(BrokenRow {
                    entry_id,
                    parent_id: row.parent_id,
                    name,
                    kind: row.kind,
                    size: row.size,
                });
                Err(FormatError::malformed("entry", format!("entry {entry_id}: {}", fault.unwrap_or_default())))
            }
        });
    }
    if !names.is_empty() || !strings.is_empty() {
        return Err(FormatError::malformed(
            "FILES_ENTRIES body",
            "the rows' lengths do not add up to names_length and strings_length",
        ));
    }
    Ok(EntryGroup { head, extent_list, entries, broken_rows })
}

/// Encodes a `FILES_ENTRIES` body: the group of `entries`, whose ids are
/// `first_id`, `first_id` + 1, ... (their `entry_id` fields are not written).
pub fn encode_group(
    section_id: u32,
    first_id: u64,
    captured: u64,
    extent_base: u64,
    extent_list: &[ExtentListRow],
    entries: &[Entry],
) -> Vec<u8> {
    let columns = entry_columns(captured);
    let width = row_width(&columns);
    let mut rows = Vec::with_capacity(entries.len() * width);
    let mut names = Vec::new();
    let mut strings = Vec::new();
    for entry in entries {
        rows.extend_from_slice(&entry.row().encode());
        for (bit, time) in
            [(Captured::ATIME, entry.atime), (Captured::CTIME, entry.ctime), (Captured::BTIME, entry.btime)]
        {
            if captured & bit != 0 {
                rows.extend_from_slice(&time.secs.to_le_bytes());
                rows.extend_from_slice(&time.nsec.to_le_bytes());
            }
        }
        if captured & Captured::IDENTITY != 0 {
            rows.extend_from_slice(&entry.ino.to_le_bytes());
            rows.extend_from_slice(&entry.dev.0.to_le_bytes());
            rows.extend_from_slice(&entry.dev.1.to_le_bytes());
        }
        names.extend_from_slice(&entry.name);
        strings.extend_from_slice(&entry.user);
        strings.extend_from_slice(&entry.group);
        strings.extend_from_slice(&entry.target);
        for x in &entry.xattrs {
            strings.push(x.name.len() as u8);
            strings.extend_from_slice(&(x.value.len() as u32).to_le_bytes());
            strings.extend_from_slice(&x.name);
            strings.extend_from_slice(&x.value);
        }
    }
    let head = GroupHead {
        section_id,
        count: entries.len() as u32,
        first_id,
        captured,
        extent_base,
        list_count: extent_list.len() as u32,
        names_length: names.len() as u32,
        strings_length: strings.len() as u64,
        reserved: 0,
    };
    let mut body = head.encode().to_vec();
    let mut list = Vec::with_capacity(extent_list.len() * ExtentListRow::SIZE);
    for row in extent_list {
        list.extend_from_slice(&row.encode());
    }
    encode_columns(&list, &EXTENT_LIST_COLUMNS, &mut body);
    encode_columns(&rows, &columns, &mut body);
    body.extend_from_slice(&names);
    body.extend_from_slice(&strings);
    body
}

/// Most entries in one group (8.3).
pub const MAX_GROUP_ENTRIES: u32 = 65_536;

fixed_layout! {
    /// The body of `FILES_END` (`spec/FORMAT.md` 8.4), which closes a file-tree section.
    pub struct FilesEnd : 72 bytes {
        /// The section being closed.
        pub section_id: u32,
        /// Zero.
        pub reserved: u32,
        /// Entries in the section.
        pub entry_count: u64,
        /// Regular-file entries (hard links not counted).
        pub file_count: u64,
        /// Directory entries, the root included.
        pub directory_count: u64,
        /// Sum of the regular-file entries' sizes.
        pub content_bytes: u64,
        /// Number of `CHUNK` records of the section.
        pub chunk_count: u64,
        /// Total size (headers and bodies) of those `CHUNK` records.
        pub chunk_bytes: u64,
        /// Archive offset of the section's `FILES_BEGIN` record.
        pub begin_offset: u64,
        /// The length of the section's extent sequence.
        pub extent_count: u64,
    }
}

impl FilesEnd {
    /// Parses and validates a body whose CRC has been checked: exactly 72
    /// bytes ([`FilesEnd::decode_exact`]), then [`FilesEnd::validate`].
    pub fn parse(body: &[u8]) -> Result<FilesEnd, FormatError> {
        let end = FilesEnd::decode_exact(body, "FILES_END body")?;
        end.validate()?;
        Ok(end)
    }

    /// Checks what `FILES_END` alone can break (8.4): its reserved field.
    /// Its totals are checked against the section by the reader.
    ///
    /// ```
    /// use strata_format::{files::FilesEnd, ErrorClass};
    /// assert!(FilesEnd::default().validate().is_ok());
    /// let end = FilesEnd { reserved: 1, ..FilesEnd::default() };
    /// assert_eq!(end.validate().unwrap_err().class, ErrorClass::RecordMalformed);
    /// ```
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.reserved != 0 {
            return Err(FormatError::malformed("FILES_END reserved", "not zero"));
        }
        Ok(())
    }
}

fixed_layout! {
    /// The head of a `FILES_DIR` body (`spec/FORMAT.md` 8.5).
    pub struct DirHead : 40 bytes {
        /// The file-tree section of the group.
        pub section_id: u32,
        /// Zero.
        pub reserved: u32,
        /// The group described.
        pub entries_record: u64,
        /// Locator rows: 1 to 65,536.
        pub dir_count: u64,
        /// Fence rows.
        pub fence_count: u64,
        /// Bytes of the fence names.
        pub names_length: u64,
    }
}

fixed_layout! {
    /// A locator row of `FILES_DIR` (`spec/FORMAT.md` 8.5): a directory of the group, and where its run is.
    pub struct Locator : 32 bytes {
        /// The directory.
        pub entry_id: u64,
        /// The length of its run of children.
        pub child_count: u64,
        /// The `entry_id` of its run's first entry; 0 when `child_count` is 0.
        pub first_child_id: u64,
        /// Index of its first fence row; its fences run to the next locator's `first_fence`.
        pub first_fence: u64,
    }
}

const LOCATOR_COLUMNS: [Column; 4] = [Column::delta(), Column::plain(8), Column::delta(), Column::delta()];

fixed_layout! {
    /// A fence row of `FILES_DIR` (`spec/FORMAT.md` 8.5): a group holding part of a directory's run.
    pub struct Fence : 25 bytes {
        /// Record offset of the `FILES_ENTRIES` group.
        pub entries_record: u64,
        /// Record offset of that group's `FILES_DIR`; 0 when it holds no directory.
        pub dir_record: u64,
        /// The `entry_id` of the run's first entry in that group.
        pub first_child_id: u64,
        /// Length of that entry's name, whose bytes are in the fence names.
        pub name_length: u8,
    }
}

const FENCE_COLUMNS: [Column; 4] = [Column::delta(), Column::delta(), Column::delta(), Column::plain(1)];

/// A parsed `FILES_DIR` (`spec/FORMAT.md` 8.5): a group's locators and their fences with names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDir {
    /// The file-tree section of the group.
    pub section_id: u32,
    /// The group described.
    pub entries_record: u64,
    /// One per directory entry of the group, in entry order.
    pub locators: Vec<Locator>,
    /// The fences, with the name of each one's first entry.
    pub fences: Vec<(Fence, Vec<u8>)>,
}

impl GroupDir {
    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        let names: Vec<u8> = self.fences.iter().flat_map(|(_, name)| name.iter().copied()).collect();
        let head = DirHead {
            section_id: self.section_id,
            reserved: 0,
            entries_record: self.entries_record,
            dir_count: self.locators.len() as u64,
            fence_count: self.fences.len() as u64,
            names_length: names.len() as u64,
        };
        let mut body = head.encode().to_vec();
        let locators: Vec<u8> = self.locators.iter().flat_map(|l| l.encode()).collect();
        encode_columns(&locators, &LOCATOR_COLUMNS, &mut body);
        let fences: Vec<u8> = self.fences.iter().flat_map(|(f, _)| f.encode()).collect();
        encode_columns(&fences, &FENCE_COLUMNS, &mut body);
        body.extend_from_slice(&names);
        body
    }

    /// Parses the body: lengths and reserved fields (`record-malformed`).
    /// Whether the table agrees with the groups is the caller's to check.
    pub fn parse(body: &[u8]) -> Result<GroupDir, FormatError> {
        let (head, rest) = crate::split_array::<{ DirHead::SIZE }>(body)
            .ok_or_else(|| FormatError::malformed("FILES_DIR body", "shorter than 40 bytes"))?;
        let head = DirHead::decode(head);
        if head.reserved != 0 || head.dir_count == 0 || head.dir_count > u64::from(MAX_GROUP_ENTRIES) {
            return Err(FormatError::malformed(
                "FILES_DIR head",
                format!("dir_count {} (expected 1 to 65536) or reserved field set", head.dir_count),
            ));
        }
        let expected = head
            .fence_count
            .checked_mul(Fence::SIZE as u64)
            .and_then(|n| n.checked_add(head.dir_count * Locator::SIZE as u64))
            .and_then(|n| n.checked_add(head.names_length));
        if expected != Some(rest.len() as u64) {
            return Err(FormatError::malformed(
                "FILES_DIR body",
                format!(
                    "{} locators, {} fences and {} name bytes do not fill {} bytes",
                    head.dir_count,
                    head.fence_count,
                    head.names_length,
                    rest.len()
                ),
            ));
        }
        let (locators, rest) = rest.split_at(head.dir_count as usize * Locator::SIZE);
        let (fences, mut names) = rest.split_at(head.fence_count as usize * Fence::SIZE);
        let locators = decode_columns(locators, head.dir_count as usize, &LOCATOR_COLUMNS)?
            .chunks_exact(Locator::SIZE)
            .map(|raw| Locator::decode(raw.try_into().expect("32 bytes")))
            .collect();
        let mut parsed = Vec::with_capacity(head.fence_count as usize);
        for raw in decode_columns(fences, head.fence_count as usize, &FENCE_COLUMNS)?.chunks_exact(Fence::SIZE) {
            let fence = Fence::decode(raw.try_into().expect("25 bytes"));
            let name = take(&mut names, fence.name_length.into(), "FILES_DIR fence names")?.to_vec();
            parsed.push((fence, name));
        }
        if !names.is_empty() {
            return Err(FormatError::malformed("FILES_DIR body", "name bytes left after the fences' names"));
        }
        Ok(GroupDir { section_id: head.section_id, entries_record: head.entries_record, locators, fences: parsed })
    }

    /// The locator of directory `entry_id` (binary search).
    pub fn locator(&self, entry_id: u64) -> Option<(usize, &Locator)> {
        let i = self.locators.binary_search_by_key(&entry_id, |l| l.entry_id).ok()?;
        Some((i, &self.locators[i]))
    }

    /// The fences of the locator at `index`, or `None` when its range does not
    /// fit the table (`index-mismatch` for the caller).
    pub fn fences_of(&self, index: usize) -> Option<&[(Fence, Vec<u8>)]> {
        let start = self.locators.get(index)?.first_fence;
        let end = self.locators.get(index + 1).map_or(self.fences.len() as u64, |next| next.first_fence);
        if start > end || end > self.fences.len() as u64 {
            return None;
        }
        Some(&self.fences[start as usize..end as usize])
    }
}

fixed_layout! {
    /// The head of a `FILES_INDEX` body (`spec/FORMAT.md` 8.6).
    pub struct FilesIndexHead : 24 bytes {
        /// The file-tree section.
        pub section_id: u32,
        /// Zero.
        pub reserved: u32,
        /// Rows that follow, one per `FILES_ENTRIES` record of the section: at least 1.
        pub group_count: u64,
        /// Zero (the second `reserved` field of the head).
        pub reserved2: u64,
    }
}

fixed_layout! {
    /// A row of `FILES_INDEX`: one group.
    pub struct GroupRow : 24 bytes {
        /// Record offset of the group's `FILES_ENTRIES`.
        pub entries_record: u64,
        /// Record offset of its `FILES_DIR`, 0 when it holds no directory.
        pub dir_record: u64,
        /// Its `first_id`.
        pub first_id: u64,
    }
}

const GROUP_ROW_COLUMNS: [Column; 3] = [Column::delta(), Column::delta(), Column::delta()];

/// Parses a `FILES_INDEX` body.
pub fn parse_files_index(body: &[u8]) -> Result<(FilesIndexHead, Vec<GroupRow>), FormatError> {
    let (head, rest) = crate::split_array::<{ FilesIndexHead::SIZE }>(body)
        .ok_or_else(|| FormatError::malformed("FILES_INDEX body", "shorter than 24 bytes"))?;
    let head = FilesIndexHead::decode(head);
    if head.reserved != 0
        || head.reserved2 != 0
        || head.group_count == 0
        || head.group_count.checked_mul(GroupRow::SIZE as u64) != Some(rest.len() as u64)
    {
        return Err(FormatError::malformed(
            "FILES_INDEX body",
            format!("group_count {} for {} bytes, or reserved field set", head.group_count, rest.len()),
        ));
    }
    let rows = decode_columns(rest, head.group_count as usize, &GROUP_ROW_COLUMNS)?
        .chunks_exact(GroupRow::SIZE)
        .map(|raw| GroupRow::decode(raw.try_into().expect("24 bytes")))
        .collect();
    Ok((head, rows))
}

/// Encodes a `FILES_INDEX` body.
pub fn encode_files_index(section_id: u32, groups: &[GroupRow]) -> Vec<u8> {
    let head = FilesIndexHead { section_id, reserved: 0, group_count: groups.len() as u64, reserved2: 0 };
    let mut body = head.encode().to_vec();
    let rows: Vec<u8> = groups.iter().flat_map(|g| g.encode()).collect();
    encode_columns(&rows, &GROUP_ROW_COLUMNS, &mut body);
    body
}

#[cfg(test)]
mod group_tests {
    use super::*;

    fn sample(captured: u64) -> Vec<Entry> {
        let root = Entry { parent_id: NO_PARENT, mode: 0o755, ..Entry::bare(EntryKind::Directory, b"") };
        let file = Entry {
            entry_id: 1,
            mode: 0o644,
            size: 5,
            extent_count: 1,
            digest: [7; DIGEST_LEN],
            mtime: Timestamp { secs: -1, nsec: 500_000_000 },
            atime: if captured & Captured::ATIME != 0 { Timestamp { secs: 9, nsec: 1 } } else { Timestamp::ZERO },
            ino: if captured & Captured::IDENTITY != 0 { 1234 } else { 0 },
            dev: if captured & Captured::IDENTITY != 0 { (8, 1) } else { (0, 0) },
            user: if captured & Captured::OWNER_NAMES != 0 { b"root".to_vec() } else { Vec::new() },
            xattrs: if captured & Captured::XATTRS != 0 {
                vec![Xattr { name: b"user.a".to_vec(), value: b"1".to_vec() }]
            } else {
                Vec::new()
            },
            ..Entry::bare(EntryKind::File, b"a")
        };
        let link = Entry {
            entry_id: 2,
            kind: EntryKind::Symlink,
            target: b"a".to_vec(),
            size: 1,
            ..Entry::bare(EntryKind::Symlink, b"b")
        };
        vec![root, file, link]
    }

    #[test]
    fn a_group_round_trips_under_every_capture() {
        for captured in [0, Captured::KNOWN, Captured::ATIME | Captured::IDENTITY, Captured::OWNER_NAMES] {
            let entries = sample(captured);
            let list = [ExtentListRow { extents_record: 4096, first_index: 0 }];
            let body = encode_group(3, 0, captured, 0, &list, &entries);
            let group = parse_group(&body).unwrap();
            assert_eq!(group.head.section_id, 3);
            assert_eq!(group.extent_list, list);
            let parsed: Vec<Entry> = group.entries.into_iter().map(Result::unwrap).collect();
            assert_eq!(parsed, entries, "captured {captured:#x}");
            assert_eq!(body.len(), 56 + 16 + entries.iter().map(|e| e.group_len(captured)).sum::<usize>());
        }
    }

    #[test]
    fn a_group_whose_areas_do_not_fill_the_body_is_refused_whole() {
        let body = encode_group(0, 0, 0, 0, &[], &sample(0));
        for cut in [1, 2, 10] {
            let err = parse_group(&body[..body.len() - cut]).unwrap_err();
            assert_eq!(err.class, ErrorClass::RecordMalformed);
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(parse_group(&longer).is_err());
        // A huge count is refused from the head, before anything is allocated.
        let mut lying = body.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_group(&lying).is_err());
    }

    #[test]
    fn an_unknown_kind_costs_its_row_only() {
        let mut body = encode_group(0, 0, 0, 0, &[], &sample(0));
        // The kind column is the first of the table: row 1's kind byte.
        body[56 + 1] = 99;
        let group = parse_group(&body).unwrap();
        assert!(group.entries[0].is_ok() && group.entries[2].is_ok());
        assert_eq!(group.entries[1].as_ref().unwrap_err().class, ErrorClass::RecordMalformed);
        // What the broken row still says, for the checks it still answers to.
        let file = &sample(0)[1];
        assert_eq!(
            group.broken_rows,
            [BrokenRow { entry_id: 1, parent_id: file.parent_id, name: file.name.clone(), kind: 99, size: file.size }]
        );
        assert!(parse_group(&encode_group(0, 0, 0, 0, &[], &sample(0))).unwrap().broken_rows.is_empty());
    }

    #[test]
    fn extents_dir_tables_and_the_index_round_trip() {
        let extents = [
            FileExtent { entry_id: 4, file_offset: 0, length: 10, chunk_ref: 300, chunk_offset: 0 },
            FileExtent { entry_id: 5, file_offset: 0, length: 3, chunk_ref: 300, chunk_offset: 10 },
        ];
        let parsed = parse_file_extents(&encode_file_extents(1, 7, &extents)).unwrap();
        assert_eq!((parsed.head.first_index, parsed.extents.as_slice()), (7, &extents[..]));

        let dir = GroupDir {
            section_id: 1,
            entries_record: 500,
            locators: vec![
                Locator { entry_id: 0, child_count: 2, first_child_id: 1, first_fence: 0 },
                Locator { entry_id: 2, child_count: 0, first_child_id: 0, first_fence: 1 },
            ],
            fences: vec![(
                Fence { entries_record: 500, dir_record: 900, first_child_id: 1, name_length: 1 },
                b"a".to_vec(),
            )],
        };
        let parsed = GroupDir::parse(&dir.encode()).unwrap();
        assert_eq!(parsed, dir);
        assert_eq!(parsed.fences_of(0).unwrap().len(), 1);
        assert_eq!(parsed.fences_of(1).unwrap().len(), 0);
        assert_eq!(parsed.locator(2).unwrap().0, 1);

        let rows = [
            GroupRow { entries_record: 500, dir_record: 900, first_id: 0 },
            GroupRow { entries_record: 700, dir_record: 0, first_id: 3 },
        ];
        let (head, parsed) = parse_files_index(&encode_files_index(1, &rows)).unwrap();
        assert_eq!((head.group_count, parsed.as_slice()), (2, &rows[..]));
    }
}

/// The entry order of `spec/FORMAT.md` section 8 over a tree given as
/// `children[node]` (node 0 the root, each list already in bytewise name
/// order): the root, its run, then each directory of the run in order, depth
/// first, as the reference writer walks (section 14). Returns the nodes in
/// that order; nodes not reachable from the root are left out.
pub fn entry_order(children: &[Vec<usize>], is_dir: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut order = vec![0usize];
    let run = |node: usize, order: &mut Vec<usize>| -> Vec<usize> {
        order.extend_from_slice(&children[node]);
        children[node].iter().rev().copied().filter(|&c| is_dir(c)).collect()
    };
    let mut stack = vec![run(0, &mut order)];
    while let Some(top) = stack.last_mut() {
        match top.pop() {
            Some(dir) => {
                let below = run(dir, &mut order);
                stack.push(below);
            }
            None => {
                stack.pop();
            }
        }
    }
    order
}

#[cfg(test)]
mod order_tests {
    #[test]
    fn runs_come_whole_and_directories_descend_in_name_order() {
        // 0: root {1: a/, 2: b, 3: c/}; 1: {4: x}; 3: {5: y/}; 5: {6: z}
        let children = vec![vec![1, 2, 3], vec![4], vec![], vec![5], vec![], vec![6], vec![]];
        let dirs = [0, 1, 3, 5];
        assert_eq!(super::entry_order(&children, |n| dirs.contains(&n)), [0, 1, 2, 3, 4, 5, 6]);
    }
}
