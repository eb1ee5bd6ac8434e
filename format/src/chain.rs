//! Incremental archives (`spec/FORMAT.md` section 15): the `CHAIN` record that
//! names a child's ancestors, the `CHAIN_INDEX` that repeats it and lists the
//! identity of every ancestor chunk the child refers to, and the split of a
//! `chunk_ref` into an archive number and an offset.

use crate::{limits, ErrorClass, FormatError};

/// Bits 56..63 of a `chunk_ref` name the archive that holds the chunk
/// (15.1): 0 this one, `k` the `k`-th ancestor of its chain.
pub const ARCHIVE_SHIFT: u32 = 56;
/// Bits 0..55 of a `chunk_ref`: the record offset in that archive.
pub const OFFSET_MASK: u64 = (1 << ARCHIVE_SHIFT) - 1;

/// A `chunk_ref` of 128 or more, split as section 15.1 says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkRef {
    /// 0 for this archive, `k` for the `k`-th ancestor (1 is the parent).
    pub archive: u8,
    /// The record offset of the `CHUNK` record in that archive's file.
    pub offset: u64,
}

impl ChunkRef {
    /// Splits a stored `chunk_ref`.
    pub const fn split(chunk_ref: u64) -> ChunkRef {
        ChunkRef { archive: (chunk_ref >> ARCHIVE_SHIFT) as u8, offset: chunk_ref & OFFSET_MASK }
    }

    /// The stored form; `offset` must be below 2^56 (the format's archive
    /// length limit, section 13).
    pub const fn join(self) -> u64 {
        ((self.archive as u64) << ARCHIVE_SHIFT) | (self.offset & OFFSET_MASK)
    }

    /// Whether the chunk lives in an ancestor.
    pub const fn is_ancestor(self) -> bool {
        self.archive != 0
    }

    /// The same chunk seen from a child of this archive (15.5): this archive
    /// becomes ancestor 1, its ancestor `k` the child's `k + 1`.
    pub const fn rebased(self) -> ChunkRef {
        ChunkRef { archive: self.archive + 1, offset: self.offset }
    }
}

/// Size of the fixed part of a `CHAIN` body.
pub const CHAIN_HEAD: usize = 48;
/// Size of the fixed part of an ancestor entry.
pub const ANCESTOR_HEAD: usize = 64;
/// Size of one reference row of a `CHAIN_INDEX`.
pub const REF_ROW: usize = 40;
/// Size of the fixed part of a `CHAIN_INDEX` body.
pub const CHAIN_INDEX_HEAD: usize = 16;
/// Largest `CHAIN` body: 64 ancestors with names of 255 bytes.
pub const MAX_CHAIN_BODY: u64 = (CHAIN_HEAD + limits::MAX_CHAIN_DEPTH as usize * (ANCESTOR_HEAD + 255)) as u64;

/// One ancestor of a child (15.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ancestor {
    /// The ancestor's `archive_uuid`.
    pub uuid: [u8; 16],
    /// BLAKE3 of the ancestor's `ARCHIVE_INDEX` body.
    pub binding: [u8; 32],
    /// The ancestor's file size.
    pub archive_length: u64,
    /// The ancestor's file name when the child was written (a base name).
    pub name: Vec<u8>,
}

impl Ancestor {
    /// The file name for messages (lossy UTF-8).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// The UUID in its usual text form.
    pub fn uuid_text(&self) -> String {
        uuid_text(&self.uuid)
    }
}

/// A UUID as 8-4-4-4-12 lowercase hex digits.
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The body of a `CHAIN` record (15.2).
///
/// ```
/// use strata_format::{Ancestor, Chain, ErrorClass};
/// let parent = Ancestor { uuid: [1; 16], binding: [2; 32], archive_length: 4096, name: b"mon.strata".to_vec() };
/// let chain = Chain::new(vec![parent]);
/// let body = chain.to_bytes();
/// assert_eq!(Chain::parse(&body, &[9; 16], 64), Ok(chain));
///
/// // A child that lists itself as its own ancestor is a cycle.
/// assert_eq!(Chain::parse(&body, &[1; 16], 64).unwrap_err().class, ErrorClass::RecordMalformed);
/// // A body cut short is refused.
/// assert!(Chain::parse(&body[..body.len() - 1], &[9; 16], 64).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// 0: unkeyed BLAKE3 chunk identities; others are reserved (15.6).
    pub id_scheme: u8,
    /// Zero with scheme 0.
    pub id_key_check: [u8; 32],
    /// The parent first, then its ancestors.
    pub ancestors: Vec<Ancestor>,
}

impl Chain {
    /// A chain of unkeyed identities over `ancestors`, the parent first.
    pub fn new(ancestors: Vec<Ancestor>) -> Chain {
        Chain { id_scheme: 0, id_key_check: [0; 32], ancestors }
    }

    /// Number of ancestors.
    pub fn depth(&self) -> usize {
        self.ancestors.len()
    }

    /// Encodes the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHAIN_HEAD + self.ancestors.len() * (ANCESTOR_HEAD + 32));
        out.push(self.ancestors.len() as u8);
        out.push(self.id_scheme);
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.id_key_check);
        out.extend_from_slice(&[0; 8]);
        for ancestor in &self.ancestors {
            out.extend_from_slice(&ancestor.uuid);
            out.extend_from_slice(&ancestor.binding);
            out.extend_from_slice(&ancestor.archive_length.to_le_bytes());
            out.push(ancestor.name.len() as u8);
            out.extend_from_slice(&[0; 7]);
            out.extend_from_slice(&ancestor.name);
        }
        out
    }

    /// Parses and checks a body whose CRC has been checked: every rule of 15.2
    /// that the body alone decides. `own_uuid` is the child's `archive_uuid`,
    /// which no ancestor may repeat (a cycle). `max_depth` is the reader's
    /// limit (at most the format's 64).
    pub fn parse(body: &[u8], own_uuid: &[u8; 16], max_depth: usize) -> Result<Chain, FormatError> {
        let malformed = |detail: String| FormatError::new(ErrorClass::RecordMalformed, "CHAIN body", detail);
        if body.len() < CHAIN_HEAD {
            return Err(malformed(format!("{} bytes, shorter than its 48-byte head", body.len())));
        }
        let depth = usize::from(body[0]);
        if depth == 0 {
            return Err(malformed("depth 0: a chain lists at least the parent".into()));
        }
        let limit = max_depth.min(limits::MAX_CHAIN_DEPTH as usize);
        if depth > limit {
            return Err(FormatError::new(
                ErrorClass::LimitExceeded,
                "CHAIN depth",
                format!("{depth} ancestors, more than the limit of {limit}"),
            ));
        }
        let id_scheme = body[1];
        if id_scheme != 0 {
            return Err(malformed(format!(
                "id_scheme {id_scheme} is reserved (keyed chunk identities come with encryption)"
            )));
        }
        if body[2..8].iter().any(|&b| b != 0) || body[40..48].iter().any(|&b| b != 0) {
            return Err(malformed("reserved bytes are not zero".into()));
        }
        let id_key_check: [u8; 32] = body[8..40].try_into().expect("32 bytes");
        if id_key_check != [0; 32] {
            return Err(malformed("id_key_check is not zero with id_scheme 0".into()));
        }
        let mut ancestors = Vec::with_capacity(depth);
        let mut at = CHAIN_HEAD;
        for position in 1..=depth {
            let Some(head) = body.get(at..at + ANCESTOR_HEAD) else {
                return Err(malformed(format!("ancestor {position} runs past the body's end")));
            };
            let name_length = usize::from(head[56]);
            if name_length == 0 {
                return Err(malformed(format!("ancestor {position} has an empty name")));
            }
            if head[57..64].iter().any(|&b| b != 0) {
                return Err(malformed(format!("ancestor {position}: reserved bytes are not zero")));
            }
            let Some(name) = body.get(at + ANCESTOR_HEAD..at + ANCESTOR_HEAD + name_length) else {
                return Err(malformed(format!("ancestor {position}'s name runs past the body's end")));
            };
            if name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".." {
                return Err(malformed(format!(
                    "ancestor {position}'s name {:?} is not a base name",
                    String::from_utf8_lossy(name)
                )));
            }
            let ancestor = Ancestor {
                uuid: head[..16].try_into().expect("16 bytes"),
                binding: head[16..48].try_into().expect("32 bytes"),
                archive_length: u64::from_le_bytes(head[48..56].try_into().expect("8 bytes")),
                name: name.to_vec(),
            };
            if &ancestor.uuid == own_uuid || ancestors.iter().any(|a: &Ancestor| a.uuid == ancestor.uuid) {
                return Err(malformed(format!(
                    "ancestor {position} repeats the UUID {}: the chain is a cycle",
                    ancestor.uuid_text()
                )));
            }
            ancestors.push(ancestor);
            at += ANCESTOR_HEAD + name_length;
        }
        if at != body.len() {
            return Err(malformed(format!("{} bytes, but its {depth} ancestors take {at}", body.len())));
        }
        Ok(Chain { id_scheme, id_key_check, ancestors })
    }
}

/// One row of a `CHAIN_INDEX` (`spec/FORMAT.md` 15.3): an ancestor chunk the archive refers to, and
/// the identity it must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainRef {
    /// The reference, with `archive` ≥ 1.
    pub chunk_ref: ChunkRef,
    /// The `blake3` of that `CHUNK` record.
    pub blake3: [u8; 32],
}

/// The body of a `CHAIN_INDEX` record (15.3).
///
/// ```
/// use strata_format::{Ancestor, Chain, ChainIndex, ChainRef, ChunkRef};
/// let parent = Ancestor { uuid: [1; 16], binding: [2; 32], archive_length: 4096, name: b"mon.strata".to_vec() };
/// let chain_body = Chain::new(vec![parent]).to_bytes();
/// let at = ChunkRef { archive: 1, offset: 128 };
/// let body = ChainIndex::encode(&chain_body, &[ChainRef { chunk_ref: at, blake3: [7; 32] }]);
/// let index = ChainIndex::parse(&body, &[9; 16], 64).unwrap();
/// assert_eq!(index.chain_body, chain_body);
/// assert_eq!(index.identity_of(at), Some([7; 32]));
///
/// // A row naming this archive (archive 0) is not an ancestor chunk.
/// let own = ChunkRef { archive: 0, offset: 128 };
/// let body = ChainIndex::encode(&chain_body, &[ChainRef { chunk_ref: own, blake3: [7; 32] }]);
/// assert!(ChainIndex::parse(&body, &[9; 16], 64).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainIndex {
    /// The copy of the `CHAIN` body, byte for byte.
    pub chain_body: Vec<u8>,
    /// That body, parsed.
    pub chain: Chain,
    /// The ancestor chunks the archive refers to, in increasing `chunk_ref`.
    pub refs: Vec<ChainRef>,
}

impl ChainIndex {
    /// Encodes a body from a chain and its rows (which the caller sorted).
    pub fn encode(chain_body: &[u8], refs: &[ChainRef]) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHAIN_INDEX_HEAD + chain_body.len() + refs.len() * REF_ROW);
        out.extend_from_slice(&(chain_body.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(refs.len() as u64).to_le_bytes());
        out.extend_from_slice(chain_body);
        for row in refs {
            out.extend_from_slice(&row.chunk_ref.join().to_le_bytes());
            out.extend_from_slice(&row.blake3);
        }
        out
    }

    /// Parses and checks a (decoded) body whose CRC has been checked.
    pub fn parse(body: &[u8], own_uuid: &[u8; 16], max_depth: usize) -> Result<ChainIndex, FormatError> {
        let malformed = |detail: String| FormatError::new(ErrorClass::RecordMalformed, "CHAIN_INDEX body", detail);
        if body.len() < CHAIN_INDEX_HEAD {
            return Err(malformed(format!("{} bytes, shorter than its 16-byte head", body.len())));
        }
        let chain_length = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as u64;
        if body[4..8] != [0; 4] {
            return Err(malformed("reserved bytes are not zero".into()));
        }
        let ref_count = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let expected = ref_count
            .checked_mul(REF_ROW as u64)
            .and_then(|rows| rows.checked_add(CHAIN_INDEX_HEAD as u64 + chain_length));
        if expected != Some(body.len() as u64) {
            return Err(malformed(format!(
                "{} bytes, but a {chain_length}-byte chain and {ref_count} rows take {}",
                body.len(),
                expected.map_or("more than 2^64".to_string(), |n| n.to_string())
            )));
        }
        let rows_start = CHAIN_INDEX_HEAD + chain_length as usize;
        let chain_body = body[CHAIN_INDEX_HEAD..rows_start].to_vec();
        // Every rule of 15.2 broken inside the copy is the copy's fault, a
        // malformed CHAIN_INDEX, limits included (15.3).
        let chain = Chain::parse(&chain_body, own_uuid, max_depth)
            .map_err(|e| malformed(format!("its copy of the CHAIN: {}: {}", e.what, e.detail)))?;
        let mut refs = Vec::with_capacity(ref_count as usize);
        for (n, row) in body[rows_start..].chunks_exact(REF_ROW).enumerate() {
            let chunk_ref = ChunkRef::split(u64::from_le_bytes(row[..8].try_into().expect("8 bytes")));
            if chunk_ref.archive == 0 || usize::from(chunk_ref.archive) > chain.depth() || chunk_ref.offset < 128 {
                return Err(malformed(format!(
                    "row {n} refers to archive {} at offset {}: not a chunk of one of the {} ancestors",
                    chunk_ref.archive,
                    chunk_ref.offset,
                    chain.depth()
                )));
            }
            if refs.last().is_some_and(|last: &ChainRef| last.chunk_ref >= chunk_ref) {
                return Err(malformed(format!("row {n} is not after the row before it")));
            }
            refs.push(ChainRef { chunk_ref, blake3: row[8..40].try_into().expect("32 bytes") });
        }
        Ok(ChainIndex { chain_body, chain, refs })
    }

    /// The identity the chunk at `chunk_ref` must have, if the index lists it.
    pub fn identity_of(&self, chunk_ref: ChunkRef) -> Option<[u8; 32]> {
        self.refs.binary_search_by(|row| row.chunk_ref.cmp(&chunk_ref)).ok().map(|i| self.refs[i].blake3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ancestor(n: u8, name: &str) -> Ancestor {
        Ancestor { uuid: [n; 16], binding: [n ^ 0x55; 32], archive_length: 1000 + u64::from(n), name: name.into() }
    }

    #[test]
    fn a_chain_reads_back_as_written() {
        let chain = Chain::new(vec![ancestor(1, "mon.strata"), ancestor(2, "sun.strata")]);
        let body = chain.to_bytes();
        assert_eq!(body.len(), 48 + 64 + 10 + 64 + 10);
        assert_eq!(Chain::parse(&body, &[9; 16], 64).unwrap(), chain);
    }

    #[test]
    fn a_repeated_uuid_is_a_cycle() {
        let body = Chain::new(vec![ancestor(1, "a"), ancestor(1, "b")]).to_bytes();
        let err = Chain::parse(&body, &[9; 16], 64).unwrap_err();
        assert_eq!(err.class, ErrorClass::RecordMalformed);
        assert!(err.detail.contains("cycle"), "{err}");
        let body = Chain::new(vec![ancestor(9, "a")]).to_bytes();
        assert!(Chain::parse(&body, &[9; 16], 64).unwrap_err().detail.contains("cycle"));
    }

    #[test]
    fn depth_rules() {
        let mut body = Chain::new(vec![ancestor(1, "a")]).to_bytes();
        body[0] = 0;
        assert_eq!(Chain::parse(&body, &[9; 16], 64).unwrap_err().class, ErrorClass::RecordMalformed);
        let deep = Chain::new((1..=3).map(|n| ancestor(n, "x")).collect()).to_bytes();
        assert_eq!(Chain::parse(&deep, &[9; 16], 2).unwrap_err().class, ErrorClass::LimitExceeded);
        body[0] = 2;
        assert_eq!(Chain::parse(&body, &[9; 16], 64).unwrap_err().class, ErrorClass::RecordMalformed);
    }

    #[test]
    fn names_must_be_base_names() {
        for bad in ["../x", "a/b", ".", ".."] {
            let body = Chain::new(vec![ancestor(1, bad)]).to_bytes();
            assert_eq!(Chain::parse(&body, &[9; 16], 64).unwrap_err().class, ErrorClass::RecordMalformed, "{bad}");
        }
    }

    #[test]
    fn chain_index_rows_are_checked_and_found() {
        let chain = Chain::new(vec![ancestor(1, "a"), ancestor(2, "b")]).to_bytes();
        let rows = [
            ChainRef { chunk_ref: ChunkRef { archive: 1, offset: 200 }, blake3: [1; 32] },
            ChainRef { chunk_ref: ChunkRef { archive: 2, offset: 128 }, blake3: [2; 32] },
        ];
        let body = ChainIndex::encode(&chain, &rows);
        let index = ChainIndex::parse(&body, &[9; 16], 64).unwrap();
        assert_eq!(index.chain_body, chain);
        assert_eq!(index.identity_of(ChunkRef { archive: 2, offset: 128 }), Some([2; 32]));
        assert_eq!(index.identity_of(ChunkRef { archive: 1, offset: 128 }), None);
        let unsorted = ChainIndex::encode(&chain, &[rows[1], rows[0]]);
        assert_eq!(ChainIndex::parse(&unsorted, &[9; 16], 64).unwrap_err().class, ErrorClass::RecordMalformed);
        let too_deep = [ChainRef { chunk_ref: ChunkRef { archive: 3, offset: 200 }, blake3: [0; 32] }];
        let body = ChainIndex::encode(&chain, &too_deep);
        assert_eq!(ChainIndex::parse(&body, &[9; 16], 64).unwrap_err().class, ErrorClass::RecordMalformed);
        let mut cut = ChainIndex::encode(&chain, &rows);
        cut.pop();
        assert_eq!(ChainIndex::parse(&cut, &[9; 16], 64).unwrap_err().class, ErrorClass::RecordMalformed);
    }

    #[test]
    fn chunk_refs_split_and_rebase() {
        let r = ChunkRef::split((3u64 << 56) | 4096);
        assert_eq!(r, ChunkRef { archive: 3, offset: 4096 });
        assert_eq!(r.join(), (3u64 << 56) | 4096);
        assert_eq!(ChunkRef::split(4096).rebased().join(), (1u64 << 56) | 4096);
    }
}
