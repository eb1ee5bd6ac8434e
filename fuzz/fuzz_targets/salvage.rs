//! Salvage: whatever the input, salvage either refuses it with an error or
//! writes an archive that verifies clean and opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_reader::{Archive, Limits};
use strata_writer::{NoProgress, WriterOptions};

fuzz_target!(|data: &[u8]| {
    let options = WriterOptions::new([1; 16], 0);
    let Ok((salvaged, _)) =
        strata_salvage::salvage(data, Vec::new(), options, Limits::default(), &|_| {}, &NoProgress)
    else {
        return;
    };
    let report = strata_reader::verify::verify(&salvaged, Limits::default(), &|_| {}).expect("readable");
    assert!(report.is_clean(), "the salvaged archive has problems: {:?}", report.problems);
    Archive::new(salvaged.as_slice()).expect("the salvaged archive opens");
});
