//! What a verifier checks of an incremental archive (`spec/FORMAT.md` section
//! 15): the `CHAIN` record first, the `CHAIN_INDEX` before the index, and every
//! reference into an ancestor, resolved through the ancestors' files.

use std::collections::{BTreeSet, HashMap};

use strata_format::{Chain, ChainIndex, ChunkRef, ErrorClass, RecordType};

use crate::chain::ChainState;
use crate::verify::{Affected, ForwardTarget, Walk};
use crate::ReadAt;

/// A reference into an ancestor, as the walk met it.
pub(crate) struct AncestorRef {
    /// The extent record that holds it.
    pub owner: u64,
    pub chunk_ref: u64,
    pub target: ForwardTarget,
    /// The raw bytes the chunk must hold at least: where the extent ends in
    /// it, `chunk_offset + length` (FORMAT.md 7.2 rule 5, 8.2).
    pub needs: u64,
}

/// An ancestor chunk's raw bytes and identity.
pub(crate) type AncestorChunk = (std::sync::Arc<Vec<u8>>, [u8; 32]);

/// The chain state of a walk.
#[derive(Default)]
pub(crate) struct WalkChain {
    /// Feature bit 1 of a header that passed its checks.
    pub incremental: bool,
    /// The `CHAIN` record at the front: its offset and body.
    pub front: Option<(u64, Vec<u8>)>,
    /// The `CHAIN_INDEX`: its offset, its stored end, its parsed body and the
    /// BLAKE3 of its (decoded) body.
    pub index: Option<(u64, u64, ChainIndex, [u8; 32])>,
    /// The ancestors, once the chain is known.
    pub state: Option<ChainState>,
    /// The chain of the `CHAIN` record at the front, once read, for the walk
    /// to decode prefixed tables with (FORMAT.md 5.3 rule 5: not the copy in
    /// the `CHAIN_INDEX`, which comes after them).
    pub prefixes: Option<std::sync::Arc<ChainState>>,
    pub refs: Vec<AncestorRef>,
    /// Each ancestor chunk resolved: its raw bytes and identity, or why not.
    pub resolved: HashMap<u64, Result<AncestorChunk, (ErrorClass, String)>>,
    /// Every ancestor reference the extents hold, for the `CHAIN_INDEX` rows.
    pub refs_seen: BTreeSet<u64>,
    /// The type of the record at `header_length`, if its header passed
    /// (`None` inside for an unknown ancillary type).
    pub first_type: Option<Option<RecordType>>,
}

impl WalkChain {
    /// Whether the first record passed its header checks as another type than
    /// `CHAIN` (an ancillary record included): the chain is then unknown.
    fn first_is_not_chain(&self) -> bool {
        matches!(self.first_type, Some(t) if t != Some(RecordType::Chain))
    }
}

impl<R: ReadAt + ?Sized> Walk<'_, R> {
    /// Whether `chunk_ref` names a chunk of an ancestor (only in an incremental archive).
    pub(crate) fn is_ancestor_ref(&self, chunk_ref: u64) -> bool {
        self.chain.incremental && ChunkRef::split(chunk_ref).is_ancestor()
    }

    /// Notes a reference into an ancestor from the extent record at `owner`;
    /// it is checked after the walk, when the chain is known (`check_chain`).
    pub(crate) fn note_ancestor_ref(&mut self, owner: u64, chunk_ref: u64, target: ForwardTarget, needs: u64) {
        self.chain.refs.push(AncestorRef { owner, chunk_ref, target, needs });
    }

    /// The raw bytes and identity of the ancestor chunk `chunk_ref`, read and
    /// checked once (its own checks, 15.4 step 5); `None` if it cannot be had.
    pub(crate) fn ancestor_chunk(&mut self, chunk_ref: u64) -> Option<(std::sync::Arc<Vec<u8>>, [u8; 32])> {
        if !self.chain.resolved.contains_key(&chunk_ref) {
            // Before the chain is known (a damaged CHAIN whose copy comes at
            // the end), nothing is read, and nothing is remembered as failed.
            let state = self.chain.state.as_ref()?;
            let result = state
                .chunk(ChunkRef::split(chunk_ref))
                .map(|c| (std::sync::Arc::new(c.raw), c.blake3))
                .map_err(|e| (e.class().unwrap_or(ErrorClass::ParentMissing), e.detail().to_string()));
            self.chain.resolved.insert(chunk_ref, result);
        }
        self.chain.resolved[&chunk_ref].as_ref().ok().cloned()
    }

    /// The `CHAIN` record: only first, only with feature bit 1 (15, 15.2).
    pub(crate) fn handle_chain(&mut self, pos: u64, body: &[u8]) {
        if !self.chain.incremental || pos != self.first_record || self.chain.front.is_some() {
            let why = if !self.chain.incremental {
                "a CHAIN record in an archive without feature bit 1 (incremental)"
            } else {
                "a CHAIN record that is not the archive's first record"
            };
            self.problem(ErrorClass::RecordMalformed, pos, "CHAIN", why);
            return;
        }
        match Chain::parse(body, &self.own_uuid, self.limits.max_chain_depth) {
            Ok(chain) => {
                self.chain.front = Some((pos, body.to_vec()));
                let prefixes = ChainState::new(chain.clone(), pos, None, self.own_uuid, self.limits);
                prefixes.set_search(self.parents.clone());
                self.chain.prefixes = Some(std::sync::Arc::new(prefixes));
                self.chain.state = Some(ChainState::new(chain, pos, None, self.own_uuid, self.limits));
                if let Some(state) = &self.chain.state {
                    state.set_search(self.parents.clone());
                }
            }
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
            }
        }
    }

    /// The `CHAIN_INDEX` record: its body's rules now, the comparisons with
    /// the records after the walk (15.3).
    pub(crate) fn handle_chain_index(&mut self, pos: u64, stored_end: u64, body: &[u8]) {
        if !self.chain.incremental {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "CHAIN_INDEX",
                "a CHAIN_INDEX record in an archive without feature bit 1 (incremental)",
            );
            return;
        }
        match ChainIndex::parse(body, &self.own_uuid, self.limits.max_chain_depth) {
            Ok(index) => {
                // A CHAIN that was lost to damage costs nothing: the index's
                // copy names the ancestors (FORMAT.md 11). A first record of
                // another type leaves the chain unknown (15.4).
                if self.chain.state.is_none() && !self.chain.first_is_not_chain() {
                    let state =
                        ChainState::new(index.chain.clone(), self.first_record, None, self.own_uuid, self.limits);
                    state.set_search(self.parents.clone());
                    self.chain.state = Some(state);
                }
                self.chain.index = Some((pos, stored_end, index, *blake3::hash(body).as_bytes()));
                self.summaries.push((pos, crate::verify::Summary::ChainIndex));
            }
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
            }
        }
    }

    /// After the walk: a header with feature bit 1 needs a `CHAIN` record
    /// first; then every reference into an ancestor is resolved and checked
    /// (15.4), problems at the referring record or, for an ancestor that is
    /// missing or does not bind, at the `CHAIN` record.
    pub(crate) fn check_chain(&mut self) {
        // Only a first record that passes as another type breaks the rule; one
        // lost to damage is that damage's problem (section 11).
        if self.chain.incremental && self.chain.first_is_not_chain() {
            let first = self.first_record;
            self.problem(
                ErrorClass::RecordMalformed,
                first,
                "first record",
                "the archive is incremental (feature bit 1), but its first record is not CHAIN",
            );
        }
        if !self.chain.incremental {
            return;
        }
        let chain_offset = self.first_record;
        let refs = std::mem::take(&mut self.chain.refs);
        if self.chain.state.is_none() {
            // No chain to resolve them by: each reference is lost to the
            // problem at the first record (FORMAT.md 15.4, last paragraph).
            let p = match self.report.problems.iter().position(|p| p.offset == chain_offset) {
                Some(p) => p,
                None => self.problem(
                    ErrorClass::RecordMalformed,
                    chain_offset,
                    "CHAIN",
                    "the archive's chain cannot be read: its ancestors are unknown",
                ),
            };
            for reference in refs {
                self.chain.refs_seen.insert(reference.chunk_ref);
                self.attach(p, reference.target);
            }
            return;
        }
        let depth = self.chain.state.as_ref().map_or(0, |s| s.chain.depth());
        let mut per_ancestor: HashMap<u8, usize> = HashMap::new();
        for reference in refs {
            self.chain.refs_seen.insert(reference.chunk_ref);
            let k = ChunkRef::split(reference.chunk_ref).archive;
            let offset = ChunkRef::split(reference.chunk_ref).offset;
            if usize::from(k) > depth || offset < 128 {
                let p = self.problem(
                    ErrorClass::RecordMalformed,
                    reference.owner,
                    "chunk reference",
                    format!("refers to archive {k} at offset {offset}, but the chain lists {depth} ancestors"),
                );
                self.attach(p, reference.target);
                continue;
            }
            // An ancestor that does not open or bind is one problem, at the CHAIN record.
            if let Some(state) = &self.chain.state {
                if let Err(e) = state.status(usize::from(k)) {
                    let p = *per_ancestor.entry(k).or_insert_with(|| {
                        let class = e.class().unwrap_or(ErrorClass::ParentMissing);
                        self.problem(class, chain_offset, "ancestor", e.detail().to_string())
                    });
                    self.attach(p, reference.target);
                    continue;
                }
            }
            let listed = self
                .chain
                .index
                .as_ref()
                .map(|(_, _, index, _)| index.identity_of(ChunkRef::split(reference.chunk_ref)));
            match self.ancestor_chunk(reference.chunk_ref) {
                None => {
                    let (class, detail) = self.chain.resolved[&reference.chunk_ref].clone().expect_err("failed");
                    let p = self.problem(class, reference.owner, "ancestor chunk", detail);
                    self.attach(p, reference.target);
                }
                Some((raw, blake3)) => {
                    let holds = raw.len() as u64;
                    if reference.needs > holds {
                        let p = self.problem(
                            ErrorClass::ExtentMap,
                            reference.owner,
                            "ancestor chunk",
                            format!("the extent needs {} bytes of a chunk that holds {holds}", reference.needs),
                        );
                        self.attach(p, reference.target);
                    } else if matches!(listed, Some(Some(id)) if id != blake3) {
                        let p = self.problem(
                            ErrorClass::ParentMismatch,
                            reference.owner,
                            "ancestor chunk",
                            "the chunk an ancestor holds there is not the one the CHAIN_INDEX lists",
                        );
                        self.attach(p, reference.target);
                    }
                }
            }
        }
    }

    /// The `CHAIN_INDEX` compared with the records (15.3, a summary check):
    /// its copy of the chain and its rows.
    pub(crate) fn summary_chain_index(&mut self) {
        let Some((pos, stored_end, index, digest)) = self.chain.index.take() else { return };
        let mut faults = Vec::new();
        if let Some((_, front)) = &self.chain.front {
            if *front != index.chain_body {
                faults.push("its copy of the chain differs from the CHAIN record".to_string());
            }
        }
        let rows: BTreeSet<u64> = index.refs.iter().map(|r| r.chunk_ref.join()).collect();
        if rows != self.chain.refs_seen {
            faults.push(format!(
                "it lists {} ancestor chunks, the extents refer to {} (not the same set)",
                rows.len(),
                self.chain.refs_seen.len()
            ));
        }
        if !faults.is_empty() {
            self.problem(ErrorClass::IndexMismatch, pos, "CHAIN_INDEX", faults.join("; "));
        }
        self.chain.index = Some((pos, stored_end, index, digest));
    }

    /// The `ARCHIVE_INDEX`'s pointer to the `CHAIN_INDEX` (9.2): what is
    /// wrong with it, if anything (a fault of the `ARCHIVE_INDEX`).
    pub(crate) fn chain_pointer_fault(&self, index_offset: u64, index: &strata_format::ArchiveIndex) -> Option<String> {
        let pointer = index.chain_index?;
        match &self.chain.index {
            Some((pos, stored_end, _, digest)) if pointer.offset == *pos && *stored_end == index_offset => {
                (pointer.blake3 != *digest)
                    .then(|| "its chain_index_blake3 is not the BLAKE3 of the CHAIN_INDEX".into())
            }
            Some(_) => Some("its chain_index_offset is not the CHAIN_INDEX directly before it".into()),
            None => Some("it points at a CHAIN_INDEX the walk did not find".into()),
        }
    }

    /// Attaches what a reference stands for to problem `p`.
    fn attach(&mut self, p: usize, target: ForwardTarget) {
        match target {
            ForwardTarget::Image { section, range } => {
                self.report.problems[p].affects.push(Affected { section, path: None, range })
            }
            ForwardTarget::File { tree, entry_id, range } => self.file_affects.push((p, tree, entry_id, range)),
        }
    }
}
