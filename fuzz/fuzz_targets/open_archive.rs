//! Random access: open an archive from the trailer, then read a few bounded
//! ranges of every image section.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_fuzz::{read_some, MemorySink};
use strata_reader::{Archive, Section};

/// Images up to this size are also restored whole through `Archive::restore_image`.
const RESTORE_MAX: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(archive) = Archive::new(data.to_vec()) else {
        return;
    };
    let _ = archive.header();
    let _ = archive.size();
    read_some(&archive, 64 << 10);
    for section in archive.sections() {
        let Section::Image(image) = section else {
            continue;
        };
        assert!(archive.image(&image.name).is_ok());
        if image.logical_size <= RESTORE_MAX {
            let mut sink = MemorySink::new();
            if archive.restore_image(image, &mut sink, &|_| {}).is_ok() {
                let restored = sink.contents().expect("a successful restore calls finish");
                assert_eq!(restored.len() as u64, image.logical_size);
            }
        }
    }
});
