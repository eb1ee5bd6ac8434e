//! The chunk store all sections share (`spec/FORMAT.md` section 6): one
//! deduplication rule, the references into a chain's ancestors (15.3), and
//! the writing of a record that announces chunks followed by those chunks.

use std::collections::HashMap;
use std::io::Write;

use strata_format::{record::RecordFlags, ChunkHeader, ChunkRef, RecordHeader, RecordType};

use crate::archive::ArchiveWriter;
use crate::chunker::PreparedChunk;
use crate::WriteError;

/// Counts the chunks a section adds to the archive.
pub(crate) trait ChunkTally {
    fn add_chunk(&mut self, record_bytes: u64);
}

/// Where a data extent's chunk is: already in the archive, or the n-th new chunk
/// of the batch being written.
#[derive(Clone, Copy)]
pub(crate) enum ChunkLocation {
    Stored(u64),
    New(usize),
}

impl<W: Write> ArchiveWriter<W> {
    pub(crate) fn chunk_record_size(chunk: &PreparedChunk) -> u64 {
        (RecordHeader::SIZE + ChunkHeader::SIZE + chunk.stored.len()) as u64
    }

    /// Looks a prepared chunk up in the archive's store and in the batch's new
    /// chunks; adds it to the new ones if it is neither. One deduplication rule
    /// for every section kind.
    pub(crate) fn locate_chunk(
        &self,
        chunk: PreparedChunk,
        new_chunks: &mut Vec<PreparedChunk>,
        new_by_hash: &mut HashMap<[u8; 32], usize>,
    ) -> (ChunkLocation, bool) {
        if let Some(&stored) = self.chain_chunks.get(&chunk.blake3).or_else(|| self.stored_chunks.get(&chunk.blake3)) {
            self.note_reference(stored);
            return (ChunkLocation::Stored(stored), true);
        }
        if let Some(&index) = new_by_hash.get(&chunk.blake3) {
            return (ChunkLocation::New(index), true);
        }
        new_by_hash.insert(chunk.blake3, new_chunks.len());
        new_chunks.push(chunk);
        (ChunkLocation::New(new_chunks.len() - 1), false)
    }

    /// Notes that an extent refers to `chunk_ref`: an ancestor chunk becomes a
    /// row of the `CHAIN_INDEX` (`spec/FORMAT.md` 15.3). Returns false for a
    /// reference into an ancestor that the chain does not offer.
    pub(crate) fn note_reference(&self, chunk_ref: u64) -> bool {
        if !ChunkRef::split(chunk_ref).is_ancestor() {
            return true;
        }
        let Some(id) = self.chain.as_ref().and_then(|(_, by_ref)| by_ref.get(&chunk_ref)) else {
            return false;
        };
        self.ancestor_refs.lock().expect("not poisoned").insert(chunk_ref, *id);
        true
    }

    /// Writes a record announcing `new_chunks` (built by `encode`, which is given a
    /// resolver from chunk locations to record offsets), then the chunks, in the
    /// order of their first use. Returns what `encode` returned besides the body.
    pub(crate) fn write_announced<T>(
        &mut self,
        record_type: RecordType,
        new_chunks: Vec<PreparedChunk>,
        summary: &mut impl ChunkTally,
        encode: impl Fn(&dyn Fn(&ChunkLocation) -> u64) -> (Vec<u8>, T),
    ) -> Result<T, WriteError> {
        // The plain body's length does not depend on the offsets, but a
        // compressed one's does, and the offsets of the chunks after it depend
        // on that length: compress with the offsets the previous length gives
        // until the length stays (FORMAT.md 14), else store it plain.
        // A chunk the chain has is found by `locate_chunk` before it could be
        // new (one map decides both); checked before anything is written.
        if new_chunks.iter().any(|chunk| !chunk.is_stored()) {
            return Err(WriteError::Invalid {
                what: "chunk store",
                detail: "a chunk left uncompressed as the chain's is not in the chain".into(),
            });
        }
        let (probe, _) = encode(&|_| 0);
        let offsets_after = |stored_length: usize| {
            let mut at = self.position + (RecordHeader::SIZE + stored_length) as u64;
            let mut offsets = Vec::with_capacity(new_chunks.len());
            for chunk in &new_chunks {
                offsets.push(at);
                at += Self::chunk_record_size(chunk);
            }
            offsets
        };
        let encode_at = |chunk_offsets: &[u64]| {
            encode(&|location: &ChunkLocation| match *location {
                ChunkLocation::Stored(offset) => offset,
                ChunkLocation::New(index) => chunk_offsets[index],
            })
        };
        let mut compressed = None;
        if let Some(first) = self.compressed_table(record_type, &probe) {
            let mut assumed = first.len();
            for _ in 0..4 {
                let chunk_offsets = offsets_after(assumed);
                let (body, result) = encode_at(&chunk_offsets);
                match self.compressed_table(record_type, &body) {
                    Some(stored) if stored.len() == assumed => {
                        compressed = Some((stored, result, chunk_offsets));
                        break;
                    }
                    Some(stored) => assumed = stored.len(),
                    None => break,
                }
            }
        }
        let (result, chunk_offsets) = match compressed {
            Some((stored, result, chunk_offsets)) => {
                self.write_record_as(record_type, RecordFlags::ZSTD, &[&stored])?;
                (result, chunk_offsets)
            }
            None => {
                let chunk_offsets = offsets_after(probe.len());
                let (body, result) = encode_at(&chunk_offsets);
                debug_assert_eq!(body.len(), probe.len(), "a plain announcement's length cannot depend on offsets");
                self.write_record_as(record_type, 0, &[&body])?;
                (result, chunk_offsets)
            }
        };
        for (chunk, expected_offset) in new_chunks.iter().zip(&chunk_offsets) {
            let header = ChunkHeader {
                blake3: chunk.blake3,
                raw_length: chunk.raw_length,
                encoding: chunk.encoding.code(),
                reserved: [0; 3],
            };
            let offset = self.write_record(RecordType::Chunk, &[&header.encode(), &chunk.stored])?;
            debug_assert_eq!(offset, *expected_offset, "chunk offsets are planned before writing");
            self.stored_chunks.insert(chunk.blake3, offset);
            summary.add_chunk(Self::chunk_record_size(chunk));
        }
        for chunk in new_chunks {
            self.spares.give(chunk.stored);
        }
        Ok(result)
    }
}
