//! The checks made once every record is read (`spec/FORMAT.md` section 9):
//! the archive index against the sections found, and the trailer.

use super::*;

impl<R: ReadAt + ?Sized> Walk<'_, R> {
    /// Checks every reference, then the records against the records before them
    /// (FORMAT.md section 11, "What a verifier reports").
    pub(crate) fn cross_check(&mut self) {
        self.end_run();
        // Gaps still open at the end of their section run to its size.
        for i in 0..self.sections.len() {
            if let Some(gap) = self.sections[i].gap.take() {
                let (next, size) = (self.sections[i].check.next_offset(), Self::image_size(&self.sections[i]));
                if size > next {
                    let section = self.sections[i].name.clone();
                    self.report.problems[gap].affects.push(Affected { section, path: None, range: next..size });
                }
            }
        }
        self.report_broken_forward();
        self.check_tree_references();
        self.check_chain();
        // Every data extent must resolve to a valid chunk of its length.
        for i in 0..self.sections.len() {
            let name = self.sections[i].name.clone();
            let extents = std::mem::take(&mut self.sections[i].extents);
            for extent in &extents {
                let Ok(ExtentKind::Data(chunk_ref)) = extent.kind() else {
                    continue;
                };
                if self.is_ancestor_ref(chunk_ref) {
                    // Checked through the ancestors (check_chain).
                    continue;
                }
                let affected = Affected { section: name.clone(), path: None, range: extent.image_offset..extent.end() };
                match self.chunks.get(&chunk_ref) {
                    Some(&(raw_length, _)) if extent.chunk_range().end <= u64::from(raw_length) => {}
                    Some(&(raw_length, _)) => {
                        let p = self.problem(
                            ErrorClass::ExtentMap,
                            chunk_ref,
                            "data extent length",
                            format!(
                                "the extent ends at byte {} of its chunk, but the chunk holds {raw_length} bytes",
                                extent.chunk_range().end
                            ),
                        );
                        self.report.problems[p].affects.push(affected);
                    }
                    None => self.attach_or_dangling(chunk_ref, affected),
                }
            }
            self.sections[i].extents = extents;
        }
        // An IMAGE_INDEX of a section the walk never found (its begin record was
        // lost or broken) describes nothing: FORMAT.md 9.1.
        let walked: HashSet<u32> = self.sections.iter().map(|s| s.begin.section_id).collect();
        for i in 0..self.image_indexes.len() {
            let (offset, id, _) = self.image_indexes[i];
            if !walked.contains(&id) {
                self.problem(
                    ErrorClass::IndexMismatch,
                    offset,
                    "IMAGE_INDEX section_id",
                    format!("section {id}: no image section with this id was found"),
                );
            }
        }
        if self.trailer_at.is_none() && !self.span_to_end {
            self.problem(
                ErrorClass::Truncated,
                self.size,
                "trailer",
                "the archive has no trailer: it is truncated or its end is damaged",
            );
        }
        let mut summaries = std::mem::take(&mut self.summaries);
        summaries.sort_by_key(|&(offset, _)| offset);
        // Problems are only added from here on, at the offsets of the checks.
        let mut lowest = self.report.problems.iter().map(|p| p.offset).min().unwrap_or(u64::MAX);
        for (offset, summary) in summaries {
            if lowest < offset {
                continue;
            }
            let before = self.report.problems.len();
            match summary {
                Summary::LeftOpen => {
                    self.problem(
                        ErrorClass::RecordMalformed,
                        offset,
                        "section end",
                        "a section was left open: this record came before its end record",
                    );
                }
                Summary::ImageEnd(i) => self.summary_image_end(i),
                Summary::FilesEnd(t) => self.summary_files_end(t),
                Summary::ImageIndex(i) => self.summary_image_index(i),
                Summary::FilesDir(t, i) => self.summary_files_dir(t, i),
                Summary::FilesIndex(t, i) => self.summary_files_index(t, i),
                Summary::ArchiveIndex => self.summary_archive_index(),
                Summary::ChainIndex => self.summary_chain_index(),
                Summary::Trailer => self.summary_trailer(),
            }
            if self.report.problems.len() > before {
                lowest = lowest.min(offset);
            }
        }
    }

    /// The `ARCHIVE_INDEX` compared with the sections the walk found (9.2).
    pub(crate) fn summary_archive_index(&mut self) {
        let Some((index_offset, index)) = self.archive_index.take() else { return };
        let mut faults = Vec::new();
        let mut tables: HashMap<u32, u64> = HashMap::new();
        for &(offset, id, _) in &self.image_indexes {
            tables.entry(id).or_insert(offset);
        }
        if index.sections.len() != self.order.len() {
            faults.push(format!("{} sections, but the records hold {}", index.sections.len(), self.order.len()));
        }
        for (entry, &(kind, i)) in index.sections.iter().zip(&self.order) {
            let (name, begin, end, table) = match kind {
                SectionKind::Image => {
                    let s = &self.sections[i];
                    let id = s.begin.section_id;
                    let table = tables.get(&id).copied();
                    (s.name.clone(), s.begin_offset, s.end.map(|(o, _)| o), table)
                }
                SectionKind::FileTree => {
                    let t = &self.trees[i];
                    (t.name.clone(), t.begin_offset, t.end.map(|(o, _)| o), t.indexes.first().map(|x| x.0))
                }
            };
            if entry.kind != kind.code()
                || entry.begin_offset != begin
                || Some(entry.end_offset) != end
                || Some(entry.table_offset) != table
            {
                faults.push(format!("section {name:?}: its kind or offsets disagree with the records"));
            }
        }
        if let Some(fault) = self.chain_pointer_fault(index_offset, &index) {
            faults.push(fault);
        }
        if !faults.is_empty() {
            self.problem(ErrorClass::IndexMismatch, index_offset, "ARCHIVE_INDEX", faults.join("; "));
        }
        self.archive_index = Some((index_offset, index));
    }

    /// The trailer's `index_offset` and `record_count` (9.3).
    pub(crate) fn summary_trailer(&mut self) {
        let Some((trailer_offset, trailer)) = self.trailer else { return };
        match self.archive_index {
            Some((index_offset, _)) if index_offset == trailer.index_offset => {}
            Some((index_offset, _)) => {
                self.problem(
                    ErrorClass::IndexMismatch,
                    trailer_offset,
                    "TRAILER index_offset",
                    format!("{}, but the ARCHIVE_INDEX is at byte {index_offset}", trailer.index_offset),
                );
            }
            None => {
                self.problem(
                    ErrorClass::IndexMismatch,
                    trailer_offset,
                    "TRAILER index_offset",
                    "no valid ARCHIVE_INDEX record was found",
                );
            }
        }
        let before = self.report.records.saturating_sub(1);
        if trailer.record_count != before {
            self.problem(
                ErrorClass::IndexMismatch,
                trailer_offset,
                "TRAILER record_count",
                format!("{}, but {before} records precede the trailer", trailer.record_count),
            );
        }
    }
}
