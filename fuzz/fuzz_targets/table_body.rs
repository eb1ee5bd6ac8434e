//! Compressed table bodies (FORMAT.md 5.2) on their own: the first input byte
//! picks a table type, the rest is the stored body with flag ZSTD set. Whatever
//! the bytes, decoding gives an error or a body longer than the stored bytes
//! and within the limit, and a body that decodes compresses and decodes back
//! to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_format::record::RecordFlags;
use strata_format::RecordType;

/// Small, so that a frame declaring a large body is refused before it is
/// allocated and the fuzzer stays fast.
const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stored)) = data.split_first() else {
        return;
    };
    let types = [
        RecordType::ImageExtents,
        RecordType::ImageIndex,
        RecordType::FilesExtents,
        RecordType::FilesEntries,
        RecordType::FilesDir,
        RecordType::FilesIndex,
        RecordType::Chunk,
    ];
    let record_type = types[usize::from(selector) % types.len()];
    match strata_reader::decode_table_body(record_type, RecordFlags::ZSTD, stored.to_vec(), LIMIT) {
        Ok(body) => {
            assert!(record_type.may_compress(), "{record_type:?} is never compressed");
            assert!(body.len() > stored.len(), "a frame is shorter than its body");
            assert!(body.len() as u64 <= LIMIT.min(record_type.max_body_length()));
            let again = zstd::bulk::compress(&body, 1).expect("compressing in memory");
            if again.len() < body.len() {
                let back = strata_reader::decode_table_body(record_type, RecordFlags::ZSTD, again, LIMIT)
                    .expect("a frame zstd makes decodes");
                assert_eq!(back, body);
            }
        }
        Err(e) => assert!(e.class().is_some(), "a table error has a class: {e}"),
    }
});
