//! Block-image sections (`spec/FORMAT.md` section 7, and 9.1 for the index):
//! the bodies of `IMAGE_BEGIN`, `IMAGE_EXTENTS`, `IMAGE_END` and `IMAGE_INDEX`,
//! the extent row they share, and the check that a section's extents tile its
//! image.

use binrw::{binrw, BinRead, BinWrite};

use crate::layout::fixed_layout;
use crate::{limits, ErrorClass, FormatError, RecordType};

/// `logical_size` in `IMAGE_BEGIN` when the writer did not know it (a pipe).
pub const UNKNOWN_SIZE: u64 = u64::MAX;
/// Length of the head (`section_id`, `reserved`, `count`) of an extent table body.
pub const EXTENT_TABLE_HEAD: usize = 16;
/// `chunk_ref` of an extent that reads as zeros and stores nothing.
pub const REF_ZERO: u64 = 0;
/// `chunk_ref` of an extent whose data was lost (written by salvage); reads as zeros.
pub const REF_LOST: u64 = 1;
/// `chunk_ref` of free space of a file system in a used-blocks section: not
/// read, not stored; reads as zeros.
pub const REF_FREE: u64 = 2;

/// `IMAGE_BEGIN` flag bits (`spec/FORMAT.md` 7.1).
#[derive(Debug)]
pub struct ImageFlags;

impl ImageFlags {
    /// Only the blocks the image's file systems use were stored; the section
    /// may hold free extents.
    pub const USED_BLOCKS: u16 = 1;
    /// Every bit defined so far.
    pub const KNOWN: u16 = Self::USED_BLOCKS;
}

/// The granularity of extents (7.2 rules 2 and 3): every extent starts on it,
/// and every extent but the image's last ends on it.
pub const EXTENT_GRAIN: u64 = 512;
/// `chunk_ref` values below this are kinds, not offsets (no record starts inside
/// the 128-byte header).
pub const REF_FIRST_OFFSET: u64 = 128;

/// The body of `IMAGE_BEGIN` (`spec/FORMAT.md` 7.1), which opens a block-image section.
#[binrw]
#[brw(little)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageBegin {
    /// Sections are numbered from 0 in the order they begin.
    pub section_id: u32,
    /// Sector size of the source device: a power of two, 512 to 65536.
    pub sector_size: u32,
    /// Image size in bytes, or [`UNKNOWN_SIZE`]; `IMAGE_END` has the final word.
    pub logical_size: u64,
    /// Every data extent starts at a multiple of this: a power of two, 4 KiB to 16 MiB.
    pub chunk_size: u32,
    #[bw(calc = name.len() as u16)]
    name_length: u16,
    /// [`ImageFlags`] bits.
    pub flags: u16,
    /// The section's name: UTF-8, 1 to 255 bytes, no `/`, no NUL, not `.` or `..`.
    #[br(count = name_length)]
    pub name: Vec<u8>,
}

impl ImageBegin {
    /// Encodes the body: the fixed fields, then the name.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = binrw::io::Cursor::new(Vec::with_capacity(24 + self.name.len()));
        self.write(&mut out).expect("writing to a Vec cannot fail");
        out.into_inner()
    }

    /// Parses and validates a body whose CRC has been checked.
    pub fn parse(body: &[u8]) -> Result<ImageBegin, FormatError> {
        let mut cursor = binrw::io::Cursor::new(body);
        let begin =
            ImageBegin::read(&mut cursor).map_err(|e| FormatError::malformed("IMAGE_BEGIN body", e.to_string()))?;
        if cursor.position() != body.len() as u64 {
            return Err(FormatError::malformed(
                "IMAGE_BEGIN body",
                format!("{} bytes, the fields take {}", body.len(), cursor.position()),
            ));
        }
        begin.validate()?;
        Ok(begin)
    }

    /// Checks the rules of spec 7.1: section name, reserved flag bits, sector size, chunk size and logical size.
    pub fn validate(&self) -> Result<(), FormatError> {
        validate_section_name(&self.name)?;
        if self.flags & !ImageFlags::KNOWN != 0 {
            return Err(FormatError::malformed("IMAGE_BEGIN flags", format!("{:#06x} sets reserved bits", self.flags)));
        }
        if !self.sector_size.is_power_of_two()
            || !(limits::MIN_SECTOR_SIZE..=limits::MAX_SECTOR_SIZE).contains(&self.sector_size)
        {
            return Err(FormatError::malformed(
                "IMAGE_BEGIN sector_size",
                format!("{}, expected a power of two from 512 to 65536", self.sector_size),
            ));
        }
        if !self.chunk_size.is_power_of_two()
            || !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_RAW).contains(&self.chunk_size)
        {
            return Err(FormatError::malformed(
                "IMAGE_BEGIN chunk_size",
                format!("{}, expected a power of two from 4096 to 16777216", self.chunk_size),
            ));
        }
        if self.logical_size != UNKNOWN_SIZE && self.logical_size > limits::MAX_IMAGE_SIZE {
            return Err(FormatError::new(
                ErrorClass::LimitExceeded,
                "IMAGE_BEGIN logical_size",
                format!("{} exceeds 2^63-1", self.logical_size),
            ));
        }
        Ok(())
    }

    /// The name as text, for display (invalid UTF-8 replaced).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Whether this is a used-blocks section (free extents, 512-byte granularity).
    pub fn used_blocks(&self) -> bool {
        self.flags & ImageFlags::USED_BLOCKS != 0
    }
}

/// Checks a section name: UTF-8, 1 to 255 bytes, no `/`, no NUL, not `.` or `..`.
pub fn validate_section_name(name: &[u8]) -> Result<(), FormatError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MAX_SECTION_NAME
        && core::str::from_utf8(name).is_ok()
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name != b"."
        && name != b"..";
    if ok {
        Ok(())
    } else {
        Err(FormatError::malformed(
            "section name",
            format!(
                "\"{}\": expected 1 to 255 bytes of UTF-8 without '/' or NUL, not '.' or '..'",
                crate::escaped(name)
            ),
        ))
    }
}

fixed_layout! {
    /// One entry of an extent map (`spec/FORMAT.md` 7.2): a byte range of the image and what it holds.
    ///
    /// ```
    /// use strata_format::image::{encode_extent_table, extents_of, parse_extent_table};
    /// use strata_format::{Extent, ExtentKind, RecordType};
    /// let extents = [
    ///     Extent::data(0, 4096, 128, 0),
    ///     Extent::hole(4096, 4096, ExtentKind::Zero),
    /// ];
    /// assert_eq!(Extent::decode(&extents[0].encode()), extents[0]);
    /// let body = encode_extent_table(0, &extents);
    /// let (head, table) = parse_extent_table(&body, RecordType::ImageExtents).unwrap();
    /// assert_eq!(head.count, 2);
    /// assert_eq!(extents_of(table).collect::<Vec<_>>(), extents);
    /// assert_eq!(extents[0].kind(), Ok(ExtentKind::Data(128)));
    /// assert_eq!(extents[1].kind(), Ok(ExtentKind::Zero));
    ///
    /// // A `chunk_ref` from 3 to 127 is a reserved kind.
    /// assert!(Extent { chunk_ref: 5, ..extents[0] }.kind().is_err());
    /// // A data extent reads raw bytes `chunk_offset..chunk_offset + length` of its chunk.
    /// assert_eq!(Extent::data(0, 512, 128, 1024).chunk_range(), 1024..1536);
    /// // A body one byte short of its `count` is refused.
    /// assert!(parse_extent_table(&body[..body.len() - 1], RecordType::ImageExtents).is_err());
    /// ```
    pub struct Extent : 32 bytes {
        /// First byte of the range in the image.
        pub image_offset: u64,
        /// Length of the range in bytes, at least 1.
        pub length: u64,
        /// [`REF_ZERO`], [`REF_LOST`], [`REF_FREE`], or the archive offset of a `CHUNK` record.
        pub chunk_ref: u64,
        /// For a data extent, where its bytes start in the chunk's raw bytes; 0 otherwise.
        pub chunk_offset: u32,
        /// Zero.
        pub reserved: u32,
    }
}

/// What an extent holds, from its `chunk_ref` (`spec/FORMAT.md` 7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtentKind {
    /// Reads as zeros; nothing stored.
    Zero,
    /// Lost in salvage; reads as zeros, reported as lost.
    Lost,
    /// Free space of a file system in a used-blocks section: not stored,
    /// reads as zeros.
    Free,
    /// Stored in the chunk record at this archive offset.
    Data(u64),
}

impl Extent {
    /// A data extent: image bytes `image_offset..+length` are the chunk's raw
    /// bytes from `chunk_offset` on.
    pub fn data(image_offset: u64, length: u64, chunk_ref: u64, chunk_offset: u32) -> Extent {
        Extent { image_offset, length, chunk_ref, chunk_offset, reserved: 0 }
    }

    /// An extent that stores nothing: `kind` is [`ExtentKind::Zero`],
    /// [`ExtentKind::Lost`] or [`ExtentKind::Free`] (a data kind gives a zero extent).
    pub fn hole(image_offset: u64, length: u64, kind: ExtentKind) -> Extent {
        let chunk_ref = match kind {
            ExtentKind::Lost => REF_LOST,
            ExtentKind::Free => REF_FREE,
            ExtentKind::Zero | ExtentKind::Data(_) => REF_ZERO,
        };
        Extent { image_offset, length, chunk_ref, chunk_offset: 0, reserved: 0 }
    }

    /// The raw bytes of its chunk a data extent reads: `chunk_offset..chunk_offset + length`
    /// (saturating, so a lying length cannot overflow).
    pub fn chunk_range(&self) -> core::ops::Range<u64> {
        let start = u64::from(self.chunk_offset);
        start..start.saturating_add(self.length)
    }

    /// Whether a data extent reads its chunk whole, given the chunk's `raw_length`.
    pub fn is_whole_chunk(&self, raw_length: u64) -> bool {
        self.chunk_offset == 0 && self.length == raw_length
    }

    /// What the extent holds, from its `chunk_ref` (spec 7.2); a reserved kind below 128 is refused.
    pub fn kind(&self) -> Result<ExtentKind, FormatError> {
        match self.chunk_ref {
            REF_ZERO => Ok(ExtentKind::Zero),
            REF_LOST => Ok(ExtentKind::Lost),
            REF_FREE => Ok(ExtentKind::Free),
            r if r < REF_FIRST_OFFSET => {
                Err(FormatError::malformed("extent chunk_ref", format!("{r} is a reserved kind")))
            }
            r => Ok(ExtentKind::Data(r)),
        }
    }

    /// The image offset just past the extent (saturating, so a lying length cannot overflow).
    pub fn end(&self) -> u64 {
        self.image_offset.saturating_add(self.length)
    }
}

fixed_layout! {
    /// The head of an `IMAGE_EXTENTS` or `IMAGE_INDEX` body (`spec/FORMAT.md` 7.2, 9.1);
    /// `count` extents follow.
    pub struct ExtentTableHead : 16 bytes {
        /// The section the extents belong to.
        pub section_id: u32,
        /// Zero.
        pub reserved: u32,
        /// Extents that follow: 1 to 65,536 in `IMAGE_EXTENTS`.
        pub count: u64,
    }
}

/// Parses the body of an extent table record, `record_type` being
/// [`RecordType::ImageExtents`] (a run of 1 to 65,536 extents, 7.2) or
/// [`RecordType::ImageIndex`] (a whole map, any count, 9.1), whose CRC has
/// been checked. The extents are decoded lazily by the caller via
/// [`extents_of`].
pub fn parse_extent_table(body: &[u8], record_type: RecordType) -> Result<(ExtentTableHead, &[u8]), FormatError> {
    let what = match record_type {
        RecordType::ImageExtents => "IMAGE_EXTENTS body",
        _ => "IMAGE_INDEX body",
    };
    let (head, rest) = crate::split_array::<EXTENT_TABLE_HEAD>(body)
        .ok_or_else(|| FormatError::malformed(what, format!("body of {} bytes is too short", body.len())))?;
    let head = ExtentTableHead::decode(head);
    if head.reserved != 0 {
        return Err(FormatError::malformed(what, "reserved field not zero"));
    }
    let per_record = 1..=u64::from(limits::MAX_EXTENTS_PER_RECORD);
    if record_type == RecordType::ImageExtents && !per_record.contains(&head.count) {
        return Err(FormatError::malformed(what, format!("count {}, expected 1 to 65536", head.count)));
    }
    let expected = head.count.checked_mul(Extent::SIZE as u64);
    if expected != Some(rest.len() as u64) {
        return Err(FormatError::malformed(
            what,
            format!("count {} does not match {} bytes of extents", head.count, rest.len()),
        ));
    }
    Ok((head, rest))
}

/// Decodes the extents of a table returned by [`parse_extent_table`].
pub fn extents_of(table: &[u8]) -> impl ExactSizeIterator<Item = Extent> + '_ {
    table
        .chunks_exact(Extent::SIZE)
        .map(|raw| Extent::decode(raw.try_into().expect("chunks_exact yields Extent::SIZE bytes")))
}

/// Encodes an extent table body.
pub fn encode_extent_table(section_id: u32, extents: &[Extent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(EXTENT_TABLE_HEAD + extents.len() * Extent::SIZE);
    let head = ExtentTableHead { section_id, reserved: 0, count: extents.len() as u64 };
    body.extend_from_slice(&head.encode());
    for extent in extents {
        body.extend_from_slice(&extent.encode());
    }
    body
}

fixed_layout! {
    /// The body of `IMAGE_END` (`spec/FORMAT.md` 7.3), which closes a block-image section.
    pub struct ImageEnd : 96 bytes {
        /// The section being closed.
        pub section_id: u32,
        /// Zero.
        pub reserved: u32,
        /// The image size in bytes (authoritative).
        pub logical_size: u64,
        /// Number of extents in the section.
        pub extent_count: u64,
        /// Bytes of the image held by data extents.
        pub data_bytes: u64,
        /// Bytes of the image in lost extents (only salvage writes these).
        pub lost_bytes: u64,
        /// Number of `CHUNK` records between `IMAGE_BEGIN` and this record.
        pub chunk_count: u64,
        /// Total size (headers and bodies) of those `CHUNK` records.
        pub chunk_bytes: u64,
        /// Archive offset of the section's `IMAGE_BEGIN` record.
        pub begin_offset: u64,
        /// BLAKE3 of the extent map with each extent's content identity
        /// ([`MapDigest`]): ties every range of the image to the chunk it must hold.
        pub map_blake3: [u8; 32],
    }
}

/// Content identity of a zero extent in the map digest.
pub const ZERO_ID: [u8; 32] = [0; 32];
/// Content identity of a lost extent in the map digest.
pub const LOST_ID: [u8; 32] = [0xFF; 32];
/// Content identity of a free extent in the map digest.
pub const FREE_ID: [u8; 32] = [0xFE; 32];

impl ExtentKind {
    /// The map-digest identity of an extent of this kind that stores nothing
    /// ([`ZERO_ID`], [`LOST_ID`], [`FREE_ID`]); `None` for data, whose
    /// identity is its chunk's BLAKE3.
    pub fn hole_identity(self) -> Option<[u8; 32]> {
        match self {
            ExtentKind::Zero => Some(ZERO_ID),
            ExtentKind::Lost => Some(LOST_ID),
            ExtentKind::Free => Some(FREE_ID),
            ExtentKind::Data(_) => None,
        }
    }
}

/// The map digest of `IMAGE_END`: BLAKE3 over, for each extent in image order,
/// `image_offset` (u64 LE), `length` (u64 LE) and a 32-byte content identity (the
/// chunk's BLAKE3, [`ZERO_ID`] or [`LOST_ID`]). A restore that computes it from
/// what it wrote detects an index that points a range at the wrong chunk.
#[derive(Clone, Debug, Default)]
pub struct MapDigest(blake3::Hasher);

impl MapDigest {
    /// An empty digest, before the first extent.
    pub fn new() -> Self {
        MapDigest(blake3::Hasher::new())
    }

    /// Adds the next extent with the identity of its content.
    pub fn push(&mut self, extent: &Extent, content_id: &[u8; 32]) {
        self.0.update(&extent.image_offset.to_le_bytes());
        self.0.update(&extent.length.to_le_bytes());
        self.0.update(&u64::from(extent.chunk_offset).to_le_bytes());
        self.0.update(content_id);
    }

    /// The digest of the extents pushed so far: the value `IMAGE_END.map_blake3` holds.
    pub fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

impl ImageEnd {
    /// Parses and validates a body whose CRC has been checked: exactly 96
    /// bytes ([`ImageEnd::decode_exact`]), then [`ImageEnd::validate`].
    pub fn parse(body: &[u8]) -> Result<ImageEnd, FormatError> {
        let end = ImageEnd::decode_exact(body, "IMAGE_END body")?;
        end.validate()?;
        Ok(end)
    }

    /// Checks the rules of spec 7.3 that concern the body alone: reserved zero, size limit, totals within the size.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.reserved != 0 {
            return Err(FormatError::malformed("IMAGE_END reserved", "not zero"));
        }
        if self.logical_size > limits::MAX_IMAGE_SIZE {
            return Err(FormatError::new(
                ErrorClass::LimitExceeded,
                "IMAGE_END logical_size",
                format!("{} exceeds 2^63-1", self.logical_size),
            ));
        }
        if self.data_bytes.checked_add(self.lost_bytes).is_none_or(|sum| sum > self.logical_size) {
            return Err(FormatError::malformed("IMAGE_END data_bytes", "data and lost bytes exceed the logical size"));
        }
        Ok(())
    }
}

/// Checks that a sequence of extents tiles an image: in order, contiguous from 0,
/// on the 512-byte grain, each data extent within one chunk window. Feed it
/// extents in order, then call [`ExtentMapCheck::finish`] with the final size.
#[derive(Clone, Debug)]
pub struct ExtentMapCheck {
    chunk_size: u64,
    /// A used-blocks section: free extents allowed.
    used_blocks: bool,
    /// The size declared by `IMAGE_BEGIN`, if it was known.
    declared_size: Option<u64>,
    next_offset: u64,
    /// Extents checked so far.
    pub extent_count: u64,
    /// Bytes of the image held by data extents.
    pub data_bytes: u64,
    /// Bytes of the image in lost extents.
    pub lost_bytes: u64,
    /// Bytes of free extents (used-blocks sections).
    pub free_bytes: u64,
}

impl ExtentMapCheck {
    /// A check for the section opened by `begin`, taking its chunk size, used-blocks flag and declared size.
    pub fn new(begin: &ImageBegin) -> Self {
        ExtentMapCheck {
            chunk_size: u64::from(begin.chunk_size),
            used_blocks: begin.used_blocks(),
            declared_size: (begin.logical_size != UNKNOWN_SIZE).then_some(begin.logical_size),
            next_offset: 0,
            extent_count: 0,
            data_bytes: 0,
            lost_bytes: 0,
            free_bytes: 0,
        }
    }

    /// Where the next extent must start.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Checks one extent, the next in image order.
    pub fn push(&mut self, extent: &Extent) -> Result<ExtentKind, FormatError> {
        let err = |detail: String| FormatError::new(ErrorClass::ExtentMap, "extent", detail);
        let kind = extent.kind()?;
        if extent.reserved != 0 {
            return Err(FormatError::malformed(
                "extent reserved",
                format!("{} at image offset {}, expected 0", extent.reserved, extent.image_offset),
            ));
        }
        if extent.chunk_offset != 0 && !matches!(kind, ExtentKind::Data(_)) {
            return Err(FormatError::malformed(
                "extent chunk_offset",
                format!(
                    "{} on an extent that stores nothing at image offset {}, expected 0",
                    extent.chunk_offset, extent.image_offset
                ),
            ));
        }
        if extent.image_offset != self.next_offset {
            return Err(err(format!(
                "starts at image offset {}, expected {} (extents must tile the image in order)",
                extent.image_offset, self.next_offset
            )));
        }
        if extent.length == 0 {
            return Err(err(format!("empty extent at image offset {}", extent.image_offset)));
        }
        let end = extent
            .image_offset
            .checked_add(extent.length)
            .filter(|&end| end <= limits::MAX_IMAGE_SIZE)
            .ok_or_else(|| err(format!("extent at {} runs past 2^63-1", extent.image_offset)))?;
        if let Some(size) = self.declared_size {
            if end > size {
                return Err(err(format!(
                    "image bytes {}..{} lie past the image size {size}",
                    extent.image_offset, end
                )));
            }
        }
        if kind == ExtentKind::Free && !self.used_blocks {
            return Err(FormatError::malformed(
                "extent chunk_ref",
                format!("a free extent at image offset {} in a section that is not used-blocks", extent.image_offset),
            ));
        }
        // Rule 2: where an extent may start.
        if !extent.image_offset.is_multiple_of(EXTENT_GRAIN) {
            return Err(err(format!("image offset {} is not a multiple of {EXTENT_GRAIN}", extent.image_offset)));
        }
        match kind {
            // Rule 3: a data extent lies within one chunk window.
            ExtentKind::Data(_) => {
                if (end - 1) / self.chunk_size != extent.image_offset / self.chunk_size {
                    return Err(err(format!(
                        "data extent at image offset {} is {} bytes: it crosses a chunk window of the chunk size {}",
                        extent.image_offset, extent.length, self.chunk_size
                    )));
                }
                self.data_bytes += extent.length;
            }
            ExtentKind::Lost => self.lost_bytes += extent.length,
            ExtentKind::Free => self.free_bytes += extent.length,
            ExtentKind::Zero => {}
        }
        self.next_offset = end;
        self.extent_count += 1;
        Ok(kind)
    }

    /// After a reported gap or overlap, continue checking as if the map had reached
    /// `offset` (verify reports every problem, not just the first).
    pub fn skip_to(&mut self, offset: u64) {
        self.next_offset = offset;
    }

    /// Checks the map against the final image size from `IMAGE_END`.
    pub fn finish(&self, logical_size: u64) -> Result<(), FormatError> {
        if let Some(size) = self.declared_size {
            if size != logical_size {
                return Err(FormatError::malformed(
                    "IMAGE_END logical_size",
                    format!("{logical_size}, but IMAGE_BEGIN declared {size}"),
                ));
            }
        }
        if self.next_offset != logical_size {
            return Err(FormatError::new(
                ErrorClass::ExtentMap,
                "extent map",
                format!("extents cover image bytes 0..{}, the image has {logical_size}", self.next_offset),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(flags: u16) -> ImageBegin {
        ImageBegin {
            section_id: 0,
            sector_size: 512,
            logical_size: 3 * 4096 + 1000,
            chunk_size: 4096,
            flags,
            name: b"disk".to_vec(),
        }
    }

    fn map(flags: u16, extents: &[(u64, u64, u64)]) -> Result<ExtentMapCheck, FormatError> {
        let mut check = ExtentMapCheck::new(&begin(flags));
        for &(image_offset, length, chunk_ref) in extents {
            check.push(&Extent { image_offset, length, chunk_ref, chunk_offset: 0, reserved: 0 })?;
        }
        check.finish(3 * 4096 + 1000)?;
        Ok(check)
    }

    const DATA: u64 = REF_FIRST_OFFSET;

    #[test]
    fn a_used_blocks_map_splits_windows_at_512_bytes_and_counts_free_bytes() {
        let u = ImageFlags::USED_BLOCKS;
        let check = map(
            u,
            &[(0, 1024, DATA), (1024, 5120, REF_FREE), (6144, 2048, DATA), (8192, 4096, REF_ZERO), (12288, 1000, DATA)],
        )
        .unwrap();
        assert_eq!((check.data_bytes, check.free_bytes, check.lost_bytes), (1024 + 2048 + 1000, 5120, 0));
        // Without the flag free is refused outright; a split window is not.
        let e = map(0, &[(0, 1024, DATA), (1024, 5120, REF_FREE)]).unwrap_err();
        assert_eq!(e.class, ErrorClass::RecordMalformed);
        let check = map(0, &[(0, 1024, DATA), (1024, 3072, REF_ZERO), (4096, 9192, DATA)]);
        assert_eq!(check.unwrap_err().class, ErrorClass::ExtentMap, "a data extent across windows");
        map(0, &[(0, 1024, DATA), (1024, 3072, REF_ZERO), (4096, 4096, DATA), (8192, 5096, REF_ZERO)]).unwrap();
    }

    #[test]
    fn chunk_offset_and_reserved_are_checked_with_the_extent() {
        let check = |extent: Extent| {
            let mut check = ExtentMapCheck::new(&begin(0));
            check.push(&extent).map(|_| ())
        };
        check(Extent::data(0, 512, DATA, 4096)).unwrap();
        for bad in [
            Extent { chunk_offset: 512, ..Extent::hole(0, 512, ExtentKind::Zero) },
            Extent { chunk_offset: 1, ..Extent::hole(0, 512, ExtentKind::Lost) },
            Extent { reserved: 1, ..Extent::data(0, 512, DATA, 0) },
        ] {
            assert_eq!(check(bad).unwrap_err().class, ErrorClass::RecordMalformed, "{bad:?}");
        }
        // The map digest tells the same chunk at two offsets apart.
        let digest = |extent: &Extent| {
            let mut d = MapDigest::new();
            d.push(extent, &[7; 32]);
            d.finish()
        };
        assert_ne!(digest(&Extent::data(0, 512, DATA, 0)), digest(&Extent::data(0, 512, DATA, 512)));
    }

    #[test]
    fn a_used_blocks_map_keeps_data_inside_one_window_and_starts_on_512() {
        let u = ImageFlags::USED_BLOCKS;
        // A data extent across a window boundary.
        let e = map(u, &[(0, 2048, REF_FREE), (2048, 4096, DATA)]).unwrap_err();
        assert_eq!(e.class, ErrorClass::ExtentMap);
        assert!(e.to_string().contains("crosses a chunk window"), "{e}");
        // An extent that does not start on a 512-byte boundary.
        let e = map(u, &[(0, 1000, DATA), (1000, 3096, REF_FREE)]).unwrap_err();
        assert_eq!(e.class, ErrorClass::ExtentMap);
        // Free extents may span windows and end the image off a boundary.
        map(u, &[(0, 3 * 4096 + 1000, REF_FREE)]).unwrap();
    }

    #[test]
    fn reserved_flags_and_kinds_are_malformed() {
        let mut b = begin(2);
        assert_eq!(b.validate().unwrap_err().class, ErrorClass::RecordMalformed);
        b.flags = ImageFlags::USED_BLOCKS;
        b.validate().unwrap();
        assert!(b.used_blocks());
        let kind = Extent { chunk_ref: 3, ..Extent::default() }.kind();
        assert_eq!(kind.unwrap_err().class, ErrorClass::RecordMalformed);
        assert_eq!(ExtentKind::Free.hole_identity(), Some(FREE_ID));
        assert_ne!(FREE_ID, ZERO_ID);
        assert_ne!(FREE_ID, LOST_ID);
    }
}
