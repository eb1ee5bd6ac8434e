//! One CHUNK record body: header rules, zstd frame rules, exact size, BLAKE3.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, raw)) = strata_reader::decode_chunk(data) {
        assert_eq!(raw.len() as u64, u64::from(header.raw_length));
        assert_eq!(blake3::hash(&raw).as_bytes(), &header.blake3);
    }
});
