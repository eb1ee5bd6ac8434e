//! Every format body parser on its own, without the CRCs in front of it. The first
//! input byte picks the parser; the rest is the body. Parsers that accept a body
//! must re-encode it to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_format::chunk::{parse_zstd_frame_header, validate_zstd_frame};
use strata_format::image::{
    encode_extent_table, extents_of, parse_extent_table, validate_section_name, ExtentMapCheck, UNKNOWN_SIZE,
};
use strata_format::{
    split_array, ArchiveHeader, ArchiveIndex, Chain, ChainIndex, ChunkHeader, ImageBegin, ImageEnd, RecordHeader,
    RecordType, Trailer,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 9 {
        8 => tree_tables(body),
        0 => record_header(body),
        1 => archive_header(body),
        2 => image_begin(body),
        3 => extent_table(body),
        4 => image_end(body),
        5 => archive_index(body),
        6 => trailer(body),
        _ => chunk(body),
    }
});

fn record_header(body: &[u8]) {
    let Some((bytes, _)) = split_array::<{ RecordHeader::SIZE }>(body) else {
        return;
    };
    let header = RecordHeader::decode(bytes);
    assert_eq!(&header.encode(), bytes);
    // With the record's own tag the tag check passes and the later checks run.
    for tag in [header.archive_tag, [0x5a; 8]] {
        let looks_valid = RecordHeader::looks_valid(bytes, tag);
        match header.validate(bytes, tag) {
            Ok(kind) => {
                assert!(looks_valid, "a valid record header must look valid");
                if let Some(kind) = kind {
                    assert_eq!(RecordType::from_code(header.record_type), Some(kind));
                    assert!(header.body_length <= kind.max_body_length());
                    let _ = kind.name();
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let rebuilt = RecordHeader::for_body(
        header.record_type,
        header.flags,
        header.archive_tag,
        header.body_length,
        header.body_crc,
    );
    assert!(RecordHeader::looks_valid(&rebuilt.encode(), header.archive_tag));
}

fn archive_header(body: &[u8]) {
    let Some((fixed, rest)) = split_array::<{ ArchiveHeader::SIZE }>(body) else {
        return;
    };
    let header = ArchiveHeader::decode(fixed);
    assert_eq!(&header.encode(), fixed);
    let _ = ArchiveHeader::has_magic(body);
    let _ = header.writer_name();
    let _ = header.archive_tag();
    if header.validate_length().is_err() {
        return;
    }
    let extension_len = header.header_length as usize - ArchiveHeader::SIZE;
    let Some(extension) = rest.get(..extension_len) else {
        return;
    };
    if let Err(e) = header.validate(fixed, extension) {
        let _ = e.to_string();
    }
}

fn image_begin(body: &[u8]) {
    match ImageBegin::parse(body) {
        Ok(begin) => {
            assert_eq!(begin.to_bytes(), body, "IMAGE_BEGIN must re-encode as parsed");
            assert!(validate_section_name(&begin.name).is_ok());
            let _ = begin.name_lossy();
            let check = ExtentMapCheck::new(&begin);
            assert_eq!(check.next_offset(), 0);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn extent_table(body: &[u8]) {
    // The first 5 bytes choose the section the extents are checked against: a
    // chunk size shift and, in the other 4, whether the size is known.
    let Some((params, table)) = split_array::<5>(body) else {
        return;
    };
    let Ok((head, extents)) = parse_extent_table(table, strata_format::RecordType::ImageExtents) else {
        return;
    };
    let decoded: Vec<_> = extents_of(extents).collect();
    assert_eq!(decoded.len() as u64, head.count);
    assert_eq!(encode_extent_table(head.section_id, &decoded), table);

    let chunk_size = 1u32 << (12 + params[0] % 13);
    let declared = u32::from_le_bytes([params[1], params[2], params[3], params[4]]);
    let begin = ImageBegin {
        section_id: head.section_id,
        sector_size: 512,
        logical_size: if declared == u32::MAX { UNKNOWN_SIZE } else { u64::from(declared) * 512 },
        chunk_size,
        // Both rule sets of FORMAT.md 7.2: plain and used-blocks sections.
        flags: if params[0] & 0x80 != 0 { strata_format::ImageFlags::USED_BLOCKS } else { 0 },
        name: b"disk".to_vec(),
    };
    let mut check = ExtentMapCheck::new(&begin);
    for extent in &decoded {
        let _ = extent.kind();
        // Like verify: after a bad extent, go on from where it ends.
        if check.push(extent).is_err() {
            check.skip_to(extent.end());
        }
    }
    let _ = check.finish(check.next_offset());
    let _ = check.finish(begin.logical_size);
    assert!(check.data_bytes.checked_add(check.lost_bytes).is_some());
}

fn image_end(body: &[u8]) {
    let Some((bytes, _)) = split_array::<{ ImageEnd::SIZE }>(body) else {
        return;
    };
    let end = ImageEnd::decode(bytes);
    assert_eq!(&end.encode(), bytes);
    if end.validate().is_ok() {
        assert!(end.data_bytes + end.lost_bytes <= end.logical_size);
    }
}

fn archive_index(body: &[u8]) {
    match ArchiveIndex::parse(body) {
        Ok(index) => {
            assert_eq!(index.to_bytes(), body, "ARCHIVE_INDEX must re-encode as parsed");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The other index-area bodies of an incremental archive (FORMAT.md 15).
    chain(body);
}

fn chain(body: &[u8]) {
    let own = [0x5a; 16];
    if let Ok(chain) = Chain::parse(body, &own, 64) {
        assert_eq!(chain.to_bytes(), body, "CHAIN must re-encode as parsed");
        assert!((1..=64).contains(&chain.depth()));
        assert!(chain.ancestors.iter().all(|a| a.uuid != own), "a cycle is refused");
    }
    if let Ok(index) = ChainIndex::parse(body, &own, 64) {
        assert_eq!(ChainIndex::encode(&index.chain_body, &index.refs), body, "CHAIN_INDEX must re-encode as parsed");
        for row in &index.refs {
            assert!(row.chunk_ref.archive >= 1 && usize::from(row.chunk_ref.archive) <= index.chain.depth());
            assert_eq!(index.identity_of(row.chunk_ref), Some(row.blake3));
        }
    }
}

fn trailer(body: &[u8]) {
    let Some((bytes, _)) = split_array::<{ Trailer::SIZE }>(body) else {
        return;
    };
    let trailer = Trailer::decode(bytes);
    assert_eq!(&trailer.encode(), bytes);
    if trailer.validate().is_ok() {
        assert!(trailer.index_offset < trailer.archive_length);
    }
}

fn chunk(body: &[u8]) {
    if let Ok(info) = parse_zstd_frame_header(body) {
        if let Some(size) = info.content_size.and_then(|s| u32::try_from(s).ok()) {
            let _ = validate_zstd_frame(body, size);
        }
    }
    let _ = validate_zstd_frame(body, 4096);
    if let Some((head, stored)) = split_array::<{ ChunkHeader::SIZE }>(body) {
        let header = ChunkHeader::decode(head);
        assert_eq!(&header.encode(), head);
        if header.validate(stored.len() as u64).is_ok() {
            let _ = validate_zstd_frame(stored, header.raw_length);
        }
    }
}

/// The file-tree tables (FORMAT.md 8.2 to 8.6): whatever the bytes, each
/// parser refuses them or gives what re-encodes to the same bytes, and never
/// allocates more than the body holds (the fuzzer's RSS limit sees it).
fn tree_tables(body: &[u8]) {
    use strata_format::files;
    let Some((&which, body)) = body.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(parsed) = files::parse_file_extents(body) {
                let again = files::encode_file_extents(parsed.head.section_id, parsed.head.first_index, &parsed.extents);
                assert_eq!(again, body, "FILES_EXTENTS must re-encode as parsed");
            }
        }
        1 => {
            if let Ok(group) = files::parse_group(body) {
                assert_eq!(group.entries.len(), group.head.count as usize);
                // Rows with a fault of their own cannot be re-encoded; a group
                // whose rows all parse must come back byte for byte.
                let entries: Result<Vec<_>, _> = group.entries.into_iter().collect();
                if let Ok(entries) = entries {
                    for (i, entry) in entries.iter().enumerate() {
                        assert_eq!(entry.entry_id, group.head.first_id.wrapping_add(i as u64));
                    }
                    let again = files::encode_group(
                        group.head.section_id,
                        group.head.first_id,
                        group.head.captured,
                        group.head.extent_base,
                        &group.extent_list,
                        &entries,
                    );
                    assert_eq!(again, body, "FILES_ENTRIES must re-encode as parsed");
                }
            }
        }
        2 => {
            if let Ok(dir) = files::GroupDir::parse(body) {
                assert_eq!(dir.encode(), body, "FILES_DIR must re-encode as parsed");
                for i in 0..dir.locators.len() {
                    let _ = dir.fences_of(i);
                }
            }
        }
        _ => {
            if let Ok((head, rows)) = files::parse_files_index(body) {
                assert_eq!(files::encode_files_index(head.section_id, &rows), body, "FILES_INDEX must re-encode");
            }
        }
    }
}
