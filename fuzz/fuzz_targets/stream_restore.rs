//! Front-to-back restore of the section "disk" from a pipe-like reader, into a
//! memory sink capped at 64 MiB that cannot read back (so spills are exercised).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_fuzz::MemorySink;
use strata_reader::stream::restore_image;
use strata_reader::Limits;

fuzz_target!(|data: &[u8]| {
    let mut sink = MemorySink::new();
    if let Ok(size) = restore_image(data, "disk", &mut sink, Limits::default(), &|_| {}) {
        if let Some(restored) = sink.contents() {
            assert_eq!(restored.len() as u64, size);
        }
    }
});
