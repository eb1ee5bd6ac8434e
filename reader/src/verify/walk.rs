//! The walk itself (`spec/FORMAT.md` sections 5 and 11): each record the
//! walker gives is handed to its section's checks; damaged spans are charged
//! to what they hold; chunks are followed in their runs and forward
//! references resolved.

use super::*;

impl<R: ReadAt + ?Sized> Walk<'_, R> {
    pub(crate) fn walk(&mut self, start: u64, progress: &dyn Fn(u64)) -> Result<(), Error> {
        let source = Positional { source: self.source, size: self.size };
        let mut records = Records::new(source, start, self.tag, self.limits.max_index_bytes);
        if self.chain.incremental {
            records.set_prefixes(PrefixSource::Unknown);
        }
        loop {
            // The CHAIN record, handled in the last round, names the ancestors
            // of the prefixed tables that follow it.
            if let Some(chain) = self.chain.prefixes.take() {
                records.set_prefixes(PrefixSource::Chain(chain));
            }
            let Some(step) = records.step()? else { break };
            match step {
                Step::Record { record, end } => {
                    let pos = record.offset;
                    self.report.records += 1;
                    self.counted.push((pos, end - pos));
                    progress(end - pos);
                    // (A trailer is never compressed: ZSTD on one fails its header.)
                    self.header_seen(pos, record.record_type, true);
                    self.record_end = end;
                    self.handle(pos, record.record_type, &record.body);
                    if record.record_type == Some(RecordType::Trailer) {
                        self.trailer_at = Some(pos);
                        records.stop();
                    }
                    records.recycle(record.body);
                }
                Step::Unusable { offset: pos, end, code, record_type, why, error } => {
                    let p = self.problem_from(error, pos);
                    match why {
                        Unusable::Header => {
                            // The record is skipped, and lost (FORMAT.md section 11).
                            self.damaged.push((pos..end, p));
                            self.header_seen(pos, record_type, false);
                            if code == RecordType::Chunk.code() {
                                self.chunk_in_run(pos, false);
                            } else {
                                self.lost(p);
                            }
                        }
                        Unusable::BodyChecksum | Unusable::Body => {
                            self.report.records += 1;
                            self.counted.push((pos, end - pos));
                            progress(end - pos);
                            if why == Unusable::BodyChecksum {
                                let name = record_type.map_or("ancillary", |t| t.name());
                                self.report.problems[p].what = format!("{name} record body CRC-32C");
                            }
                            // A compressed table that does not decode is
                            // unusable as a whole, as a body that fails its CRC is.
                            self.body_unusable(pos..end, record_type, p);
                        }
                    }
                    if code == RecordType::Trailer.code() {
                        self.trailer_at = Some(pos);
                        records.stop();
                    }
                }
                Step::Damaged { offset: pos, next, error } => {
                    let p = self.problem_from(error, pos);
                    self.resynced(pos, next, p);
                }
            }
        }
        let pos = records.position;
        if let Some(at) = self.trailer_at.filter(|_| pos < self.size) {
            // Bytes after the first trailer: at the trailer (FORMAT.md 9.3).
            self.problem(
                ErrorClass::IndexMismatch,
                at,
                "archive end",
                format!("{} bytes follow the trailer", self.size - pos),
            );
        }
        Ok(())
    }

    /// A record whose header passed but whose body cannot be used (its CRC
    /// fails, or, compressed, it does not decode): its bytes are a damaged
    /// span, reported as problem `p`.
    pub(crate) fn body_unusable(&mut self, span: std::ops::Range<u64>, record_type: Option<RecordType>, p: usize) {
        let (pos, end) = (span.start, span.end);
        self.damaged.push((span, p));
        self.header_seen(pos, record_type, false);
        if record_type == Some(RecordType::Chunk) {
            // The header is sound: the chunk still takes its place in the
            // run and the totals, so only its own loss is reported.
            self.chunk_in_run(pos, false);
            self.note_chunk_record(pos, end);
        } else {
            self.lost(p);
        }
    }

    /// Damage at `pos`: the walk goes on at `next`, the next valid record of
    /// this archive, or (`None`) no valid record follows.
    pub(crate) fn resynced(&mut self, pos: u64, next: Option<u64>, problem: usize) {
        let next = next.unwrap_or(self.size);
        // Past the last valid record, everything is gone, references beyond the
        // end of a cut file included.
        self.damaged.push((pos..if next == self.size { u64::MAX } else { next }, problem));
        self.span_to_end |= next == self.size;
        // A damaged span does not end a run of chunks, and what follows it is
        // not out of place (FORMAT.md section 2).
        self.run_in_place = true;
        self.lost(problem);
        let detail = if next == self.size {
            format!("no valid record follows; bytes {pos}..{next} are unreadable")
        } else {
            format!("resynchronised at byte {next}; bytes {pos}..{next} are unreadable")
        };
        let p = &mut self.report.problems[problem];
        p.detail = format!("{}; {detail}", p.detail);
    }

    /// What a record whose header passed its magic, CRC and tag checks does to
    /// the open section and the run of chunks, from its type alone: `read` is
    /// whether its body is read (not skipped, its CRC passed).
    pub(crate) fn header_seen(&mut self, pos: u64, record_type: Option<RecordType>, read: bool) {
        use RecordType::*;
        let ends_section = matches!(
            record_type,
            Some(ImageBegin | FilesBegin | ImageIndex | FilesDir | FilesIndex | ChainIndex | ArchiveIndex | Trailer)
        );
        if pos == self.first_record {
            self.chain.first_type = Some(record_type);
        }
        if ends_section && (self.open.is_some() || self.open_tree.is_some()) {
            // Left open: its end record never came (FORMAT.md section 11).
            self.open = None;
            self.open_tree = None;
            self.summaries.push((pos, Summary::LeftOpen));
        }
        if !read {
            // An end record whose body is not read still ends its section.
            if record_type == Some(ImageEnd) {
                self.open = None;
            } else if record_type == Some(FilesEnd) {
                self.open_tree = None;
            }
        }
        if record_type != Some(Chunk) {
            // Any record of another type, an ancillary one included, ends the run
            // of chunks that follows an extent record (7.2 rule 6).
            self.end_run();
            self.run_in_place = !read || matches!(record_type, Some(ImageExtents | FilesExtents));
        }
    }

    /// Checks one record whose CRCs passed.
    pub(crate) fn handle(&mut self, pos: u64, record_type: Option<RecordType>, body: &[u8]) {
        let end = pos + 32 + body.len() as u64;
        match record_type {
            None => {}
            Some(RecordType::Chunk) => {
                self.chunk_in_run(pos, true);
                self.note_chunk_record(pos, end);
                match chunk::decode_chunk(body) {
                    Ok((header, _)) => {
                        self.chunks.insert(pos, (header.raw_length, header.blake3));
                    }
                    Err(e) => {
                        let p = self.problem(e.class, pos, format!("CHUNK {}", e.what), e.detail);
                        self.damaged.push((pos..end, p));
                    }
                }
            }
            Some(RecordType::ImageBegin) => match ImageBegin::parse(body) {
                Ok(begin) => {
                    let name = begin.name_lossy();
                    self.open_new_section(pos, begin.section_id, &name, "IMAGE_BEGIN");
                    self.order.push((SectionKind::Image, self.sections.len()));
                    self.open = Some(self.sections.len());
                    self.sections.push(WalkSection {
                        begin_offset: pos,
                        check: ExtentMapCheck::new(&begin),
                        begin,
                        name,
                        extents: Vec::new(),
                        chunk_count: 0,
                        chunk_bytes: 0,
                        end: None,
                        gap: None,
                    });
                }
                Err(e) => {
                    self.problem(e.class, pos, e.what, e.detail);
                }
            },
            Some(RecordType::ImageExtents) => self.handle_extents(pos, body),
            Some(RecordType::ImageEnd) => self.handle_end(pos, body),
            Some(RecordType::ImageIndex) => {
                match strata_format::image::parse_extent_table(body, RecordType::ImageIndex) {
                    Ok((head, table)) => {
                        self.summaries.push((pos, Summary::ImageIndex(self.image_indexes.len())));
                        self.image_indexes.push((
                            pos,
                            head.section_id,
                            strata_format::image::extents_of(table).collect(),
                        ));
                    }
                    Err(e) => {
                        self.problem(e.class, pos, e.what, e.detail);
                    }
                }
            }
            Some(RecordType::FilesBegin) => self.handle_files_begin(pos, body),
            Some(RecordType::FilesExtents) => self.handle_files_extents(pos, body),
            Some(RecordType::FilesEntries) => self.handle_files_entries(pos, body),
            Some(RecordType::FilesEnd) => self.handle_files_end(pos, body),
            Some(RecordType::FilesDir) => self.handle_files_dir(pos, body),
            Some(RecordType::FilesIndex) => self.handle_files_index(pos, body),
            Some(RecordType::Chain) => self.handle_chain(pos, body),
            Some(RecordType::ChainIndex) => self.handle_chain_index(pos, self.record_end, body),
            Some(RecordType::ArchiveIndex) => match ArchiveIndex::parse(body) {
                Ok(index) if index.chain_index.is_some() != self.chain.incremental && self.header_bytes > 0 => {
                    self.problem(
                        ErrorClass::RecordMalformed,
                        pos,
                        "ARCHIVE_INDEX body",
                        if self.chain.incremental {
                            "the archive is incremental (feature bit 1), but its ARCHIVE_INDEX has no chain fields"
                        } else {
                            "it has the chain fields of an incremental archive, but feature bit 1 is clear"
                        },
                    );
                }
                Ok(index) => {
                    self.archive_index = Some((pos, index));
                    self.summaries.push((pos, Summary::ArchiveIndex));
                }
                Err(e) => {
                    self.problem(e.class, pos, e.what, e.detail);
                }
            },
            Some(RecordType::Trailer) => {
                let trailer = match Trailer::decode_exact(body, "TRAILER body") {
                    Ok(trailer) => trailer,
                    Err(e) => {
                        self.problem(e.class, pos, e.what, e.detail);
                        return;
                    }
                };
                if let Err(e) = trailer.validate() {
                    self.problem(e.class, pos, e.what, e.detail);
                }
                if trailer.archive_length != self.size {
                    self.problem(
                        if trailer.archive_length > self.size {
                            ErrorClass::Truncated
                        } else {
                            ErrorClass::IndexMismatch
                        },
                        pos,
                        "TRAILER archive_length",
                        format!("{}, but the file has {} bytes", trailer.archive_length, self.size),
                    );
                }
                self.trailer = Some((pos, trailer));
                self.summaries.push((pos, Summary::Trailer));
            }
        }
    }

    /// A `CHUNK` record whose header passed, read or not: its place in the run
    /// that follows an extent record (FORMAT.md section 2 and 7.2 rule 6).
    pub(crate) fn chunk_in_run(&mut self, pos: u64, read: bool) {
        if read && !self.run_in_place {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "CHUNK",
                "a CHUNK record in a run that follows neither an extent record nor a lost record (section 2; an ancillary record ends a run)",
            );
        }
        if self.forward.contains(&pos) {
            self.arrived.push(pos);
        }
    }

    /// Accounts for a `CHUNK` record whose body was read, whatever it holds:
    /// the open section's totals.
    pub(crate) fn note_chunk_record(&mut self, pos: u64, end: u64) {
        if let Some(open) = self.open {
            self.sections[open].chunk_count += 1;
            self.sections[open].chunk_bytes += end - pos;
        } else if let Some(open) = self.open_tree {
            self.trees[open].chunk_count += 1;
            self.trees[open].chunk_bytes += end - pos;
        }
        self.report.chunks += 1;
    }

    /// Ends the run of `CHUNK` records that follows an extent record (7.2 rule
    /// 6): the `CHUNK` records it referred to forward came in the order of first
    /// reference, and those that did not come are reported after the walk,
    /// when what lies at their offsets is known.
    pub(crate) fn end_run(&mut self) {
        if self.forward.is_empty() {
            return;
        }
        let owner = self.forward_owner;
        let forward = std::mem::take(&mut self.forward);
        let arrived = std::mem::take(&mut self.arrived);
        let mut targets = std::mem::take(&mut self.forward_targets);
        let came: HashSet<u64> = arrived.iter().copied().collect();
        let order = forward.iter().filter(|r| came.contains(r));
        if let Some((&first, _)) = arrived.iter().zip(order).find(|(a, o)| a != o) {
            self.problem(
                ErrorClass::DanglingReference,
                first,
                "chunk order",
                format!(
                    "the CHUNK records after the extent record at byte {owner} do not come in the order of its first references to them"
                ),
            );
        }
        for chunk_ref in forward.into_iter().filter(|r| !came.contains(r)) {
            let stands_for = targets.remove(&chunk_ref).unwrap_or_default();
            self.broken_forward.push((owner, chunk_ref, stands_for));
        }
    }

    /// Notes a forward reference of the extent record at `owner` (7.2 rule 6).
    pub(crate) fn expect_forward(&mut self, owner: u64, chunk_ref: u64, target: ForwardTarget) {
        self.forward_owner = owner;
        if !self.forward.contains(&chunk_ref) {
            self.forward.push(chunk_ref);
        }
        self.forward_targets.entry(chunk_ref).or_default().push(target);
    }

    /// Reports the forward references whose run ended before them (rule 6) at
    /// the offset they hold (rule 5), unless that lies in damage, which they
    /// are charged to.
    pub(crate) fn report_broken_forward(&mut self) {
        for (owner, chunk_ref, stands_for) in std::mem::take(&mut self.broken_forward) {
            let detail = format!(
                "{chunk_ref}: a forward reference of the extent record at byte {owner} that no CHUNK record of the run following it answers (7.2 rule 6)"
            );
            for target in stands_for {
                let affected = match target {
                    ForwardTarget::Image { section, range } => Affected { section, path: None, range },
                    ForwardTarget::File { tree, entry_id, range } => Affected {
                        section: self.trees[tree].name.clone(),
                        path: Some(self.trees[tree].path_of(entry_id)),
                        range,
                    },
                };
                self.charge_or_report(chunk_ref, affected, "chunk reference order", &detail);
            }
        }
    }

    /// Charges `affected` to the damage that holds `chunk_ref` (FORMAT.md section
    /// 11: a lost record, a damaged span or a damaged chunk), or reports a
    /// dangling reference there.
    pub(crate) fn charge_or_report(&mut self, chunk_ref: u64, affected: Affected, what: &str, detail: &str) {
        match self.damaged.iter().find(|(span, _)| span.contains(&chunk_ref)) {
            Some(&(_, p)) => self.report.problems[p].affects.push(affected),
            None => {
                let p = self.problem(ErrorClass::DanglingReference, chunk_ref, what, detail);
                self.report.problems[p].affects.push(affected);
            }
        }
    }

    /// Attaches `affected` to the problem whose damaged span holds `chunk_ref`, or
    /// reports a dangling reference.
    pub(crate) fn attach_or_dangling(&mut self, chunk_ref: u64, affected: Affected) {
        match self.damaged.iter().find(|(span, _)| span.contains(&chunk_ref)) {
            Some(&(_, p)) => self.report.problems[p].affects.push(affected),
            None => {
                let p = self.problem(
                    ErrorClass::DanglingReference,
                    chunk_ref,
                    "chunk reference",
                    format!("data at byte {chunk_ref} is referenced, but no chunk record starts there"),
                );
                self.report.problems[p].affects.push(affected);
            }
        }
    }
}
