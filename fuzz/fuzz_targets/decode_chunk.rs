//! One CHUNK record body: header rules, zstd frame rules, exact size, BLAKE3;
//! and a partial decode of it (the first read of a chunk in `read_image_at`),
//! which must give the first bytes a whole decode gives. The first input byte
//! picks how many bytes the partial decode asks for (in 16 KiB steps).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let whole = strata_reader::decode_chunk(body);
    if let Ok((header, raw)) = &whole {
        assert_eq!(raw.len() as u64, u64::from(header.raw_length));
        assert_eq!(blake3::hash(raw).as_bytes(), &header.blake3);
    }
    let prefix = usize::from(pick) << 14;
    let part = strata_reader::decode_chunk_prefix(body, prefix);
    if let (Ok((_, raw)), Ok(part)) = (&whole, &part) {
        assert_eq!(part[..], raw[..prefix.min(raw.len())], "a partial decode differs from the whole");
    }
});
