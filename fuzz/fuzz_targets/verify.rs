//! Verification: walk every record, resynchronise past damage, report problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_reader::verify::verify;
use strata_reader::Limits;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = verify(&data.to_vec(), Limits::default(), &|_| {}) else {
        return;
    };
    // Everything verified lies inside the archive.
    assert!(
        report.verified_bytes <= data.len() as u64,
        "{} verified bytes in an archive of {}",
        report.verified_bytes,
        data.len()
    );
    let _ = report.is_clean();
});
