//! The checks of block-image sections (`spec/FORMAT.md` section 7): extent
//! records, `IMAGE_END` and its totals and map digest, `IMAGE_INDEX`.

use super::*;

impl<R: ReadAt + ?Sized> Walk<'_, R> {
    /// Whether a section's extents and chunks give its `IMAGE_END` map digest.
    /// Only asked when the map itself checked out; a damaged chunk is reported on
    /// its own, so the digest is then not compared.
    pub(crate) fn map_digest_matches(&self, section: usize, end: &ImageEnd) -> bool {
        let mut digest = strata_format::image::MapDigest::new();
        for extent in &self.sections[section].extents {
            let id = match extent.kind() {
                Ok(ExtentKind::Data(chunk_ref)) if self.is_ancestor_ref(chunk_ref) => {
                    match self.chain.resolved.get(&chunk_ref) {
                        Some(Ok((_, blake3))) => *blake3,
                        _ => return true,
                    }
                }
                Ok(ExtentKind::Data(chunk_ref)) => match self.chunks.get(&chunk_ref) {
                    Some(&(_, blake3)) => blake3,
                    None => return true,
                },
                Ok(hole) => hole.hole_identity().unwrap_or(strata_format::image::ZERO_ID),
                Err(_) => return true,
            };
            digest.push(extent, &id);
        }
        digest.finish() == end.map_blake3
    }

    pub(crate) fn handle_extents(&mut self, pos: u64, body: &[u8]) {
        let (head, table) = match strata_format::image::parse_extent_table(body, RecordType::ImageExtents) {
            Ok(parsed) => parsed,
            Err(e) => {
                let p = self.problem(e.class, pos, e.what, e.detail);
                self.lost(p);
                return;
            }
        };
        let Some(open) = self.open.filter(|&i| self.sections[i].begin.section_id == head.section_id) else {
            let p = self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "IMAGE_EXTENTS section_id",
                format!("section {} is not the open section", head.section_id),
            );
            self.lost(p);
            return;
        };
        let name = self.sections[open].name.clone();
        for extent in strata_format::image::extents_of(table) {
            let range = extent.image_offset..extent.image_offset.saturating_add(extent.length);
            let next = self.sections[open].check.next_offset();
            if let Some(gap) = self.sections[open].gap.take() {
                // After a lost record the map resumes where this extent starts
                // (FORMAT.md section 11); the range skipped is what it cost.
                if extent.image_offset > next {
                    self.report.problems[gap].affects.push(Affected {
                        section: name.clone(),
                        path: None,
                        range: next..extent.image_offset,
                    });
                    self.sections[open].check.skip_to(extent.image_offset);
                }
            }
            if let Err(e) = self.sections[open].check.push(&extent) {
                let p = self.problem(e.class, pos, e.what, e.detail);
                self.report.problems[p].affects.push(Affected { section: name.clone(), path: None, range });
                // Carry on from this extent, so later extents are checked too.
                let check = &mut self.sections[open].check;
                check.skip_to(extent.image_offset);
                if check.push(&extent).is_err() {
                    check.skip_to(extent.end());
                }
            }
            if let Ok(ExtentKind::Data(chunk_ref)) = extent.kind() {
                if self.is_ancestor_ref(chunk_ref) {
                    let target =
                        ForwardTarget::Image { section: name.clone(), range: extent.image_offset..extent.end() };
                    self.note_ancestor_ref(pos, chunk_ref, target, extent.chunk_range().end);
                } else if chunk_ref > pos {
                    let target =
                        ForwardTarget::Image { section: name.clone(), range: extent.image_offset..extent.end() };
                    self.expect_forward(pos, chunk_ref, target);
                }
            }
            self.sections[open].extents.push(extent);
        }
    }

    pub(crate) fn handle_end(&mut self, pos: u64, body: &[u8]) {
        let end = match ImageEnd::decode_exact(body, "IMAGE_END body") {
            Ok(end) => end,
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
                return;
            }
        };
        let valid = match end.validate() {
            Ok(()) => true,
            Err(e) => {
                self.problem(e.class, pos, e.what, e.detail);
                false
            }
        };
        let Some(open) = self.open.filter(|&i| self.sections[i].begin.section_id == end.section_id) else {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "IMAGE_END section_id",
                format!("section {} is not the open section", end.section_id),
            );
            return;
        };
        // It ends its section; one that breaks a rule of its body is not used.
        self.open = None;
        if !valid {
            return;
        }
        let section = &mut self.sections[open];
        section.end = Some((pos, end));
        let declared = section.begin.logical_size;
        if declared != strata_format::image::UNKNOWN_SIZE && declared != end.logical_size {
            self.problem(
                ErrorClass::RecordMalformed,
                pos,
                "IMAGE_END logical_size",
                format!("{}, but IMAGE_BEGIN declared {declared}", end.logical_size),
            );
        }
        self.summaries.push((pos, Summary::ImageEnd(open)));
    }

    /// The summary checks of an `IMAGE_END` (FORMAT.md 7.3): the end of the map,
    /// the map digest and the totals.
    pub(crate) fn summary_image_end(&mut self, open: usize) {
        let section = &self.sections[open];
        let Some((pos, end)) = section.end else { return };
        let name = section.name.clone();
        let next = section.check.next_offset();
        let counts = (
            section.check.extent_count,
            section.check.data_bytes,
            section.check.lost_bytes,
            section.chunk_count,
            section.chunk_bytes,
            section.begin_offset,
        );
        if next != end.logical_size {
            let p = self.problem(
                ErrorClass::ExtentMap,
                pos,
                "extent map",
                format!("extents cover image bytes 0..{next}, the image has {}", end.logical_size),
            );
            self.report.problems[p].affects.push(Affected {
                section: name.clone(),
                path: None,
                range: next.min(end.logical_size)..next.max(end.logical_size),
            });
        }
        if !self.map_digest_matches(open, &end) {
            let p = self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "IMAGE_END map_blake3",
                format!("section {name:?}: the extent map and chunks do not give the digest IMAGE_END holds"),
            );
            self.report.problems[p].affects.push(Affected { section: name, path: None, range: 0..end.logical_size });
        }
        let declared =
            (end.extent_count, end.data_bytes, end.lost_bytes, end.chunk_count, end.chunk_bytes, end.begin_offset);
        if counts != declared {
            self.problem(
                ErrorClass::IndexMismatch,
                pos,
                "IMAGE_END totals",
                format!(
                    "extents, data bytes, lost bytes, chunks, chunk bytes, begin offset: records give {counts:?}, IMAGE_END says {declared:?}"
                ),
            );
        }
    }

    /// The image size `verify` reports for a section (conformance.md,
    /// `sections`).
    pub(super) fn image_size(s: &WalkSection) -> u64 {
        match (s.end, s.begin.logical_size) {
            (Some((_, end)), _) => end.logical_size,
            (None, strata_format::image::UNKNOWN_SIZE) => s.check.next_offset(),
            (None, declared) => declared,
        }
    }

    /// An `IMAGE_INDEX` compared with its section's extents (FORMAT.md 9.1).
    pub(crate) fn summary_image_index(&mut self, i: usize) {
        let (offset, id, _) = self.image_indexes[i];
        let Some(section) = self.sections.iter().position(|s| s.begin.section_id == id) else { return };
        if self.image_indexes[i].2 != self.sections[section].extents {
            let name = self.sections[section].name.clone();
            self.problem(
                ErrorClass::IndexMismatch,
                offset,
                "IMAGE_INDEX",
                format!("section {name:?}: its extents differ from the IMAGE_EXTENTS records"),
            );
        }
    }
}
