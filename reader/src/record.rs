//! Reading one framed record: header checks first, then a bounded body read, then
//! the body CRC. Nothing is allocated for a body before its header has passed.

use std::io::{self, Read};

use strata_format::record::{check_compressed_body, PrefixHead, RecordFlags, RECORD_MAGIC};
use strata_format::{ErrorClass, RecordHeader, RecordType};

use crate::chain::ChainState;
use crate::{Error, ReadAt};

/// Where the prefixes of prefixed tables come from (`spec/FORMAT.md` 5.3):
/// what a reader knows of the archive's chain when it decodes a record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Prefixes<'a> {
    /// The archive is not incremental: a prefixed table is malformed (rule 1).
    None,
    /// The archive is incremental but its chain is not known (rule 5).
    Unknown,
    /// The chain, whose ancestors hold the prefixes.
    Chain(&'a ChainState),
}

impl<'a> Prefixes<'a> {
    /// What an opened archive's prefixed tables are decoded against: its
    /// chain when it read the `CHAIN` record at the front (5.3 rule 5).
    pub fn of(chain: Option<&'a ChainState>) -> Prefixes<'a> {
        match chain {
            Some(chain) if chain.front_read => Prefixes::Chain(chain),
            Some(_) => Prefixes::Unknown,
            None => Prefixes::None,
        }
    }
}

/// [`Prefixes`] owned by a walk, which learns the chain as it goes.
#[derive(Clone, Debug, Default)]
pub(crate) enum PrefixSource {
    #[default]
    None,
    Unknown,
    Chain(std::sync::Arc<ChainState>),
}

impl PrefixSource {
    pub fn get(&self) -> Prefixes<'_> {
        match self {
            PrefixSource::None => Prefixes::None,
            PrefixSource::Unknown => Prefixes::Unknown,
            PrefixSource::Chain(chain) => Prefixes::Chain(chain),
        }
    }
}

/// A record whose header and body CRC have been checked, its body decoded
/// when it was stored compressed.
#[derive(Debug)]
pub(crate) struct Record {
    pub offset: u64,
    /// `None` for an unknown ancillary type.
    pub record_type: Option<RecordType>,
    /// The body the type's section describes (decoded bytes, FORMAT.md 5.2).
    pub body: Vec<u8>,
}

/// The body a record's type describes: `stored` itself, or, with flag `ZSTD`,
/// its one zstd frame decoded under the rules of FORMAT.md 5.2 (the decoded
/// length checked before it is allocated). Call after the body CRC passed.
/// An unknown ancillary body is returned as stored: it is never decoded.
pub(crate) fn decode_body(
    header: &RecordHeader,
    record_type: Option<RecordType>,
    stored: Vec<u8>,
    offset: u64,
    index_limit: u64,
    prefixes: Prefixes<'_>,
) -> Result<Vec<u8>, Error> {
    let Some(record_type) = record_type else { return Ok(stored) };
    if header.flags & RecordFlags::PREFIXED != 0 {
        return decode_prefixed(record_type, &stored, index_limit, prefixes, 0).map_err(|e| e.at(offset));
    }
    decode_table_body(record_type, header.flags, stored, index_limit).map_err(|e| e.at(offset))
}

/// A prefixed body (`spec/FORMAT.md` 5.3) decoded by the rules of 5.3 in
/// their order. `rebase` is 0 for the archive's own records; for a record of
/// ancestor *k* that is itself prefixed, *k*: its ancestor *j* is the
/// chain's *k* + *j*.
pub(crate) fn decode_prefixed(
    record_type: RecordType,
    stored: &[u8],
    index_limit: u64,
    prefixes: Prefixes<'_>,
    rebase: usize,
) -> Result<Vec<u8>, Error> {
    let malformed = |detail: String| Error::new(ErrorClass::RecordMalformed, "prefixed body", detail);
    let chain = match prefixes {
        Prefixes::None => {
            return Err(malformed(
                "PREFIXED in an archive that is not incremental: it has no ancestor to hold the prefix".into(),
            ))
        }
        Prefixes::Unknown => None,
        Prefixes::Chain(chain) => Some(chain),
    };
    // Rule 2: against the chain's depth; while the chain is unknown, and for
    // an ancestor's own record (whose *j* is checked against the chain
    // below), against the most any chain lists.
    let most = strata_format::limits::MAX_CHAIN_DEPTH as usize;
    let depth = match chain {
        Some(chain) if rebase == 0 => chain.chain.depth(),
        _ => most,
    };
    let (mut head, frame) = PrefixHead::split(stored, record_type, depth).map_err(Error::from)?;
    let limit = body_limit(Some(record_type), index_limit);
    if head.prefix_length > limit {
        return Err(Error::new(
            ErrorClass::LimitExceeded,
            "prefix_length",
            format!("{} bytes; this reader accepts tables of at most {limit}", head.prefix_length),
        ));
    }
    let decoded = check_compressed_body(record_type, frame, limit).map_err(Error::from)?;
    let Some(chain) = chain else {
        return Err(Error::new(
            ErrorClass::ParentMissing,
            "prefixed body",
            "its prefix is in an ancestor, and the archive's CHAIN record, which names the ancestors, could not be read",
        ));
    };
    let k = usize::from(head.prefix_ref.archive) + rebase;
    if k > chain.chain.depth() {
        return Err(Error::new(
            ErrorClass::ParentMismatch,
            "prefixed body",
            format!(
                "an ancestor's table refers to ancestor {} of its own, beyond the {} the child lists",
                head.prefix_ref.archive,
                chain.chain.depth() - rebase
            ),
        ));
    }
    head.prefix_ref.archive = k as u8;
    let prefix = chain.table_prefix(record_type, &head)?;
    // Rule 10: one frame, the whole of it, decoded to exactly its length.
    crate::chunk::one_frame(frame).map_err(malformed)?;
    crate::chunk::decompress_exact_with_prefix(frame, decoded as usize, &prefix).map_err(malformed)
}

/// The body a record of `record_type` with header `flags` describes, from its
/// `stored` bytes (whose CRC passed): as stored, or decoded when `ZSTD` is set,
/// under the rules of `spec/FORMAT.md` 5.2 (nothing larger than the type's
/// maximum or `index_limit` is allocated). For tools that read records
/// themselves, and the fuzzer.
///
/// ```
/// use strata_format::{record::RecordFlags, ErrorClass, RecordType};
/// let body = vec![7u8; 4096];
/// let stored = zstd::bulk::compress(&body, 3).unwrap();
/// let decoded = strata_reader::decode_table_body(RecordType::FilesDir, RecordFlags::ZSTD, stored.clone(), 1 << 20);
/// assert_eq!(decoded.unwrap(), body);
/// // A frame is never longer than the body it gives.
/// let e = strata_reader::decode_table_body(RecordType::FilesDir, RecordFlags::ZSTD, stored, 100).unwrap_err();
/// assert_eq!(e.class(), Some(ErrorClass::LimitExceeded));
/// ```
pub fn decode_table_body(
    record_type: RecordType,
    flags: u16,
    stored: Vec<u8>,
    index_limit: u64,
) -> Result<Vec<u8>, Error> {
    if flags & RecordFlags::ZSTD == 0 {
        return Ok(stored);
    }
    if flags & RecordFlags::PREFIXED != 0 {
        return Err(Error::new(
            ErrorClass::ParentMissing,
            "prefixed body",
            "its prefix is a table of an ancestor (FORMAT.md 5.3): read it through its archive",
        ));
    }
    let limit = body_limit(Some(record_type), index_limit);
    let decoded = check_compressed_body(record_type, &stored, limit).map_err(Error::from)?;
    let malformed = |detail: String| Error::new(ErrorClass::RecordMalformed, "compressed body", detail);
    crate::chunk::one_frame(&stored).map_err(malformed)?;
    crate::chunk::decompress_exact(&stored, decoded as usize).map_err(malformed)
}

/// The largest body the reader accepts for `record_type`: the format's bound,
/// lowered by the caller's limit for unbounded types.
pub(crate) fn body_limit(record_type: Option<RecordType>, index_limit: u64) -> u64 {
    match record_type {
        // Every table is loaded into memory: the reader's limit (FORMAT.md 13).
        Some(RecordType::ImageIndex | RecordType::FilesDir | RecordType::FilesIndex | RecordType::ChainIndex) => {
            index_limit
        }
        Some(t) => t.max_body_length(),
        // Unknown ancillary records are skipped, but never read larger than an index.
        None => index_limit,
    }
}

/// Checks a record header read at `offset`.
pub(crate) fn check_header(
    bytes: &[u8; 32],
    offset: u64,
    tag: [u8; 8],
    index_limit: u64,
) -> Result<(RecordHeader, Option<RecordType>), Error> {
    let header = RecordHeader::decode(bytes);
    let record_type = header.validate(bytes, tag).map_err(|e| Error::from(e).at(offset))?;
    let limit = body_limit(record_type, index_limit);
    if header.body_length > limit {
        return Err(Error::new(
            ErrorClass::LimitExceeded,
            "record body_length",
            format!(
                "{} bytes for a {} record; this reader accepts at most {limit}",
                header.body_length,
                record_type.map_or("ancillary", |t| t.name())
            ),
        )
        .at(offset));
    }
    Ok((header, record_type))
}

/// Reads and checks the header of the record at `offset` of a positional source
/// of `size` bytes, and that its body lies inside the source.
pub(crate) fn read_record_header_at<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    index_limit: u64,
) -> Result<(RecordHeader, Option<RecordType>), Error> {
    if offset.checked_add(RecordHeader::SIZE as u64).is_none_or(|end| end > size) {
        return Err(Error::new(
            ErrorClass::Truncated,
            "record header",
            format!("the archive ends at byte {size}, before the 32-byte record header"),
        )
        .at(offset));
    }
    let mut raw = [0u8; 32];
    source.read_exact_at(&mut raw, offset).map_err(|e| Error::io("record header", offset, e))?;
    let (header, record_type) = check_header(&raw, offset, tag, index_limit)?;
    let body_start = offset + RecordHeader::SIZE as u64;
    if body_start.checked_add(header.body_length).is_none_or(|end| end > size) {
        return Err(Error::new(
            ErrorClass::Truncated,
            "record body",
            format!("a {}-byte body runs past the end of the archive at byte {size}", header.body_length),
        )
        .at(offset));
    }
    Ok((header, record_type))
}

/// Reads and checks the record at `offset` of a positional source of `size` bytes.
pub(crate) fn read_record_at<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    offset: u64,
    tag: [u8; 8],
    index_limit: u64,
    prefixes: Prefixes<'_>,
) -> Result<Record, Error> {
    let (header, record_type) = read_record_header_at(source, size, offset, tag, index_limit)?;
    let body = read_checked_body(source, offset, &header)?;
    let body = decode_body(&header, record_type, body, offset, index_limit, prefixes)?;
    Ok(Record { offset, record_type, body })
}

/// Reads the body of the record at `offset` whose header passed
/// [`read_record_header_at`], and checks its CRC.
pub(crate) fn read_checked_body<R: ReadAt + ?Sized>(
    source: &R,
    offset: u64,
    header: &RecordHeader,
) -> Result<Vec<u8>, Error> {
    let body_start = offset + RecordHeader::SIZE as u64;
    let mut body = vec![0u8; header.body_length as usize];
    source.read_exact_at(&mut body, body_start).map_err(|e| Error::io("record body", body_start, e))?;
    check_body(header, &body, offset)?;
    Ok(body)
}

/// The `what` of a body that fails its CRC, told apart from header faults.
pub(crate) const BODY_CRC_WHAT: &str = "record body CRC-32C";

pub(crate) fn check_body(header: &RecordHeader, body: &[u8], offset: u64) -> Result<(), Error> {
    check_body_crc(header, strata_format::crc32c(body), offset)
}

/// Compares a body CRC computed elsewhere (a body read in pieces) with the header's.
pub(crate) fn check_body_crc(header: &RecordHeader, crc: u32, offset: u64) -> Result<(), Error> {
    if crc != header.body_crc {
        return Err(Error::new(
            ErrorClass::RecordChecksum,
            BODY_CRC_WHAT,
            format!("stored {:08x}, computed {crc:08x} over {} bytes", header.body_crc, header.body_length),
        )
        .at(offset));
    }
    Ok(())
}

/// Where a [`Records`] walk reads from: a positional source of known size,
/// which can resynchronise past damage, or a sequential one (a pipe), which
/// cannot.
pub(crate) trait RecordSource {
    /// Fills `buf` with the bytes at `offset`, the offset the walk has reached;
    /// returns how many there were (fewer only at the end of the input).
    fn read_from(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The source's length, when it is known before the end is reached.
    fn known_size(&self) -> Option<u64>;
    /// The offset of the next header at or after `from` that `accept` takes,
    /// or `None` when there is none (always, for a source that cannot look
    /// ahead: a walk never resynchronises one, see [`Records::step`]).
    fn find_header(&mut self, from: u64, accept: &dyn Fn(&[u8; 32]) -> bool) -> Result<Option<u64>, Error>;
}

/// A positional source of `size` bytes.
pub(crate) struct Positional<'a, R: ReadAt + ?Sized> {
    pub source: &'a R,
    pub size: u64,
}

impl<R: ReadAt + ?Sized> RecordSource for Positional<'_, R> {
    fn read_from(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.size.saturating_sub(offset)).min(buf.len() as u64) as usize;
        self.source.read_exact_at(&mut buf[..n], offset)?;
        Ok(n)
    }

    fn known_size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn find_header(&mut self, from: u64, accept: &dyn Fn(&[u8; 32]) -> bool) -> Result<Option<u64>, Error> {
        Ok(scan_for_record(self.source, self.size, from, accept)?.map(|(offset, _)| offset))
    }
}

/// A sequential source; the walk's offsets count its bytes from where it
/// was when the walk began.
pub(crate) struct Sequential<R: Read>(pub R);

impl<R: Read> RecordSource for Sequential<R> {
    fn read_from(&mut self, _offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        read_full(&mut self.0, buf)
    }

    fn known_size(&self) -> Option<u64> {
        None
    }

    fn find_header(&mut self, _from: u64, _accept: &dyn Fn(&[u8; 32]) -> bool) -> Result<Option<u64>, Error> {
        Ok(None)
    }
}

/// Why a record whose header is intact cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Its header breaks a rule (an unknown critical type, a length over the
    /// bound, bad flags); the header CRC vouches for its length, so its
    /// body is skipped unread.
    Header,
    /// Its body fails its CRC.
    BodyChecksum,
    /// Its body, stored compressed, does not decode (FORMAT.md 5.2).
    Body,
}

/// One step of a walk over records.
pub(crate) enum Step {
    /// A record whose header and body passed; `end` is where the next begins.
    Record { record: Record, end: u64 },
    /// A record whose header is intact but that cannot be used; the walk goes
    /// on at `end`. `record_type` is the type its code names, if any.
    Unusable { offset: u64, end: u64, code: u16, record_type: Option<RecordType>, why: Unusable, error: Error },
    /// Bytes from `offset` that hold no record the walk can read: a damaged
    /// header, a body past the end, or fewer than 32 bytes left. The walk goes
    /// on at `next`, the next header of this archive, or stops when `None`.
    Damaged { offset: u64, next: Option<u64>, error: Error },
}

/// The one record walker (FORMAT.md sections 5 and 11): reads records in
/// order, checks each header and then its body, and on a positional source
/// resynchronises past damage at the next header of this archive. Opening
/// an archive reads single records through [`read_record_at`]; verify,
/// salvage and a stream restore walk with this.
pub(crate) struct Records<S> {
    source: S,
    /// Where the next record begins.
    pub position: u64,
    tag: [u8; 8],
    index_limit: u64,
    /// A spare body buffer handed back by [`Records::recycle`].
    spare: Vec<u8>,
    done: bool,
    /// What prefixed tables are decoded against (FORMAT.md 5.3).
    prefixes: PrefixSource,
}

impl<S: RecordSource> Records<S> {
    /// A walk over `source` starting at byte `position`, for the archive with `tag`.
    pub fn new(source: S, position: u64, tag: [u8; 8], index_limit: u64) -> Self {
        Records { source, position, tag, index_limit, spare: Vec::new(), done: false, prefixes: PrefixSource::None }
    }

    /// Sets what prefixed tables met from now on are decoded against: an
    /// incremental archive's walk starts with [`PrefixSource::Unknown`] and
    /// learns the chain from its `CHAIN` record.
    pub fn set_prefixes(&mut self, prefixes: PrefixSource) {
        self.prefixes = prefixes;
    }

    /// Takes back a record's body so that the next one reuses its memory.
    pub fn recycle(&mut self, body: Vec<u8>) {
        if body.capacity() > self.spare.capacity() {
            self.spare = body;
        }
    }

    /// Ends the walk: [`Records::step`] returns `None` from now on.
    pub fn stop(&mut self) {
        self.done = true;
    }

    /// The next step, or `None` at the end of the input between records (or
    /// after a damaged span that no record follows). `Err` only for a local
    /// read failure, or for damage in a source that cannot resynchronise.
    pub fn step(&mut self) -> Result<Option<Step>, Error> {
        if self.done {
            return Ok(None);
        }
        let offset = self.position;
        let step = self.read_step(offset)?;
        match &step {
            Some(Step::Record { end, .. } | Step::Unusable { end, .. }) => self.position = *end,
            Some(Step::Damaged { next: Some(next), .. }) => self.position = *next,
            Some(Step::Damaged { next: None, .. }) | None => self.done = true,
        }
        Ok(step)
    }

    /// The next step for a walk that takes records only: any damage is an error.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        match self.step()? {
            None => Ok(None),
            Some(Step::Record { record, .. }) => Ok(Some(record)),
            Some(Step::Unusable { error, .. } | Step::Damaged { error, .. }) => Err(error),
        }
    }

    fn read_step(&mut self, offset: u64) -> Result<Option<Step>, Error> {
        let size = self.source.known_size();
        let mut raw = [0u8; 32];
        let got = self.source.read_from(offset, &mut raw).map_err(|e| Error::io("record header", offset, e))?;
        if got == 0 && size.is_none_or(|size| offset >= size) {
            return Ok(None);
        }
        if got < raw.len() {
            let error = Error::new(
                ErrorClass::Truncated,
                "record header",
                match size {
                    Some(_) => format!("the archive ends {got} bytes into a record header"),
                    None => format!("the input ends after {got} of its 32 bytes"),
                },
            )
            .at(offset);
            return Ok(Some(Step::Damaged { offset, next: None, error }));
        }
        let header = RecordHeader::decode(&raw);
        let body_start = offset + RecordHeader::SIZE as u64;
        let end = body_start.saturating_add(header.body_length);
        let record_type = match check_header(&raw, offset, self.tag, self.index_limit) {
            Ok((_, record_type)) => record_type,
            Err(error) => {
                // The header CRC vouches for the type and the length: the
                // record is skipped whole (FORMAT.md section 11).
                let skippable = RecordHeader::is_intact(&raw)
                    && header.archive_tag == self.tag
                    && size.is_some_and(|size| end <= size)
                    && matches!(
                        error.class(),
                        Some(ErrorClass::UnknownRecord | ErrorClass::LimitExceeded | ErrorClass::RecordMalformed)
                    );
                if skippable {
                    let code = header.record_type;
                    return Ok(Some(Step::Unusable {
                        offset,
                        end,
                        code,
                        record_type: RecordType::from_code(code),
                        why: Unusable::Header,
                        error,
                    }));
                }
                return self.damaged(offset, error).map(Some);
            }
        };
        if let Some(size) = size.filter(|&size| end > size) {
            let error = Error::new(
                ErrorClass::Truncated,
                "record body",
                format!(
                    "a {}-byte body runs past the end of the archive at byte {size}: the archive is truncated",
                    header.body_length
                ),
            )
            .at(offset);
            return self.damaged(offset, error).map(Some);
        }
        // The length passed the type's bound in `check_header`: this is the
        // only allocation a record's header asks for.
        let mut body = std::mem::take(&mut self.spare);
        body.clear();
        body.resize(header.body_length as usize, 0);
        let got = self.source.read_from(body_start, &mut body).map_err(|e| Error::io("record body", body_start, e))?;
        if got < body.len() {
            return Err(Error::new(
                ErrorClass::Truncated,
                "record body",
                format!("the input ends after {got} of its {} bytes", body.len()),
            )
            .at(offset));
        }
        let unusable = |why, error| Step::Unusable { offset, end, code: header.record_type, record_type, why, error };
        if let Err(error) = check_body(&header, &body, offset) {
            self.spare = body;
            return Ok(Some(unusable(Unusable::BodyChecksum, error)));
        }
        let body = match decode_body(&header, record_type, body, offset, self.index_limit, self.prefixes.get()) {
            Ok(body) => body,
            Err(error) => return Ok(Some(unusable(Unusable::Body, error))),
        };
        Ok(Some(Step::Record { record: Record { offset, record_type, body }, end }))
    }

    /// Damage at `offset`: on a positional source, the span up to the next
    /// header of this archive; on a sequential one, an error.
    fn damaged(&mut self, offset: u64, error: Error) -> Result<Step, Error> {
        if self.source.known_size().is_none() {
            return Err(error);
        }
        let tag = self.tag;
        let next = self.source.find_header(offset + 1, &|raw| RecordHeader::looks_valid(raw, tag))?;
        Ok(Step::Damaged { offset, next, error })
    }
}

/// Scans from `from` for the first 32 bytes that form an intact record header
/// of any archive; returns its offset and tag.
pub(crate) fn find_any_record<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    from: u64,
) -> Result<Option<(u64, [u8; 8])>, Error> {
    scan_for_record(source, size, from, &RecordHeader::is_intact)
        .map(|found| found.map(|(offset, raw)| (offset, RecordHeader::decode(&raw).archive_tag)))
}

/// Scans from `from` for a record header accepted by `accept`, reading in blocks.
fn scan_for_record<R: ReadAt + ?Sized>(
    source: &R,
    size: u64,
    from: u64,
    accept: &dyn Fn(&[u8; 32]) -> bool,
) -> Result<Option<(u64, [u8; 32])>, Error> {
    const BLOCK: u64 = 1 << 20;
    let mut block_start = from;
    let mut buf = Vec::new();
    while block_start.saturating_add(32) <= size {
        // Blocks overlap by 31 bytes so no header straddles two unseen.
        let len = (size - block_start).min(BLOCK + 31) as usize;
        buf.resize(len, 0);
        source.read_exact_at(&mut buf, block_start).map_err(|e| Error::io("scanning for records", block_start, e))?;
        let mut at = 0usize;
        while at + 32 <= len {
            let Some(found) = buf[at..len - 31].windows(4).position(|w| w == RECORD_MAGIC) else {
                break;
            };
            let candidate = at + found;
            let raw: &[u8; 32] = buf[candidate..candidate + 32].try_into().expect("32 bytes remain");
            if accept(raw) {
                return Ok(Some((block_start + candidate as u64, *raw)));
            }
            at = candidate + 1;
        }
        block_start += BLOCK;
    }
    Ok(None)
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: [u8; 8] = [9; 8];

    /// A record of `record_type` code with `body`, its header CRC made right.
    fn record(code: u16, flags: u16, tag: [u8; 8], body: &[u8]) -> Vec<u8> {
        let mut header = RecordHeader::new(RecordType::ImageEnd, 0, tag, body);
        header.record_type = code;
        header.flags = flags;
        let mut bytes = header.encode();
        header.header_crc = RecordHeader::compute_crc(&bytes);
        bytes = header.encode();
        [&bytes[..], body].concat()
    }

    fn image_end() -> Vec<u8> {
        record(RecordType::ImageEnd.code(), 0, TAG, &[5; 96])
    }

    /// What a walk over `bytes` from `start` gives, as (offset, what, next).
    fn walk(bytes: &[u8], start: u64) -> Vec<(u64, &'static str, u64)> {
        let source = Positional { source: bytes, size: bytes.len() as u64 };
        let mut records = Records::new(source, start, TAG, 1 << 20);
        let mut steps = Vec::new();
        while let Some(step) = records.step().unwrap() {
            steps.push(match step {
                Step::Record { record, end } => {
                    assert_eq!(record.body, vec![5; 96]);
                    (record.offset, "record", end)
                }
                Step::Unusable { offset, end, why: Unusable::Header, .. } => (offset, "skipped", end),
                Step::Unusable { offset, end, why: Unusable::BodyChecksum, .. } => (offset, "body crc", end),
                Step::Unusable { offset, end, why: Unusable::Body, .. } => (offset, "body", end),
                Step::Damaged { offset, next, .. } => (offset, "damaged", next.unwrap_or(u64::MAX)),
            });
            assert!(steps.len() < 100, "the walk goes forward");
        }
        steps
    }

    #[test]
    fn a_walk_resynchronises_past_damage_and_stops_at_a_short_tail() {
        let good = image_end();
        let n = good.len() as u64;
        let mut bytes = vec![0xd3; 10];
        bytes.extend(&good); // 10
        let mut broken = good.clone();
        broken[20] ^= 1; // body_length: the header CRC fails
        bytes.extend(&broken); // 10 + n
        bytes.extend(&good); // 10 + 2n
        let mut bad_body = good.clone();
        bad_body[40] ^= 1;
        bytes.extend(&bad_body); // 10 + 3n
        bytes.extend(record(0x7777, 0, TAG, &[5; 96])); // 10 + 4n: unknown, critical
        bytes.extend(record(0x7777, RecordFlags::ANCILLARY, TAG, &[5; 96])); // 10 + 5n: skipped by type
        bytes.extend(record(RecordType::ImageEnd.code(), 0, [1; 8], &[5; 96])); // another archive's
        bytes.extend(&good); // 10 + 7n
        bytes.extend([0xd3, b'R', b'E']); // a short tail
        let at = |i: u64| 10 + i * n;
        assert_eq!(
            walk(&bytes, 0),
            vec![
                (0, "damaged", at(0)),
                (at(0), "record", at(1)),
                (at(1), "damaged", at(2)),
                (at(2), "record", at(3)),
                (at(3), "body crc", at(4)),
                (at(4), "skipped", at(5)),
                (at(5), "record", at(6)),
                (at(6), "damaged", at(7)),
                (at(7), "record", at(8)),
                (at(8), "damaged", u64::MAX),
            ]
        );
        // A body cut by the end of the archive is damage, not a read past it.
        let cut = &bytes[..at(7) as usize + 50];
        assert_eq!(walk(cut, at(7)), vec![(at(7), "damaged", u64::MAX)]);
    }

    #[test]
    fn an_unknown_ancillary_record_is_a_record_of_no_type() {
        let bytes = record(0x7777, RecordFlags::ANCILLARY, TAG, &[5; 96]);
        let source = Positional { source: &bytes[..], size: bytes.len() as u64 };
        let record = Records::new(source, 0, TAG, 1 << 20).next_record().unwrap().unwrap();
        assert_eq!(record.record_type, None);
    }

    #[test]
    fn a_sequential_walk_reads_the_same_records_and_stops_at_damage() {
        let good = image_end();
        let mut bytes = [good.clone(), good.clone()].concat();
        let mut records = Records::new(Sequential(&bytes[..]), 0, TAG, 1 << 20);
        assert_eq!(records.next_record().unwrap().unwrap().offset, 0);
        assert_eq!(records.next_record().unwrap().unwrap().offset, good.len() as u64);
        assert!(records.next_record().unwrap().is_none(), "a clean end between records");

        bytes.extend(&good[..20]);
        let mut records = Records::new(Sequential(&bytes[..]), 0, TAG, 1 << 20);
        records.next_record().unwrap();
        records.next_record().unwrap();
        let e = records.next_record().unwrap_err();
        assert_eq!(e.class(), Some(ErrorClass::Truncated));
        assert_eq!(e.offset(), Some(2 * good.len() as u64));

        bytes.truncate(good.len());
        bytes[4] ^= 1;
        let e = Records::new(Sequential(&bytes[..]), 0, TAG, 1 << 20).next_record().unwrap_err();
        assert_eq!(e.class(), Some(ErrorClass::RecordChecksum));
        assert_eq!(e.offset(), Some(0));
    }

    #[test]
    fn a_body_longer_than_its_type_allows_is_never_read() {
        // Length over the bound, header CRC right: skipped by its length, unread.
        let mut bytes = image_end();
        let mut header = RecordHeader::decode(bytes[..32].try_into().unwrap());
        header.body_length = 1 << 40;
        header.header_crc = RecordHeader::compute_crc(&header.encode());
        bytes[..32].copy_from_slice(&header.encode());
        let steps = walk(&bytes, 0);
        assert_eq!(steps, vec![(0, "damaged", u64::MAX)]);
    }
}
