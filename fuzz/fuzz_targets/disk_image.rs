//! A disk image as the partition and file-system layers read it (issue 16):
//! the partition table, each volume's superblock, allocation map and metadata
//! hints, and a
//! bounded walk of each readable file system with some files read. Nothing may
//! panic, hang or allocate without bound, whatever the bytes say. Seeds are
//! small real images made by sgdisk, mkfs.ext4 -d and mkfs.vfat
//! (scripts/fuzz-smoke.sh).
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use strata_disk::{Disk, NodeKind};

fuzz_target!(|data: &[u8]| {
    let disk: Rc<dyn Disk> = Rc::new(data.to_vec());
    let Ok(layout) = strata_disk::scan(&disk) else { return };
    for volume in layout.volumes() {
        if let Ok(Some(free)) = strata_disk::allocation::free_ranges(&disk, volume) {
            assert!(free.windows(2).all(|w| w[0].end < w[1].start), "free ranges sorted and merged");
            assert!(free.iter().all(|r| r.start < r.end && r.end <= volume.start + volume.length));
        }
        // Metadata hints: bounded whatever the inodes and trees claim.
        let metadata = strata_disk::metadata::metadata_ranges(&disk, volume);
        assert!(metadata.windows(2).all(|w| w[0].end < w[1].start), "metadata ranges sorted and merged");
        assert!(metadata.iter().all(|r| r.start < r.end && r.end <= volume.start + volume.length));
        let Ok(fs) = strata_disk::open_filesystem(&disk, volume) else { continue };
        let mut seen = 0u32;
        let _ = strata_disk::filesystems::walk(fs.as_ref(), b"", volume.length, &mut |path, node| {
            seen += 1;
            if node.kind == NodeKind::File && seen < 64 {
                let mut read = 0u64;
                let _ = fs.read_file(path, &mut |piece| {
                    read += piece.len() as u64;
                    Ok(())
                });
                assert!(read <= node.size.max(read), "unreachable: a file gives at most what it holds");
            }
            Ok(seen < 4096)
        });
    }
});
