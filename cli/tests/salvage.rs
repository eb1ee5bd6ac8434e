//! `strata salvage`: a damaged archive gives back everything that is intact.

mod common;

use common::*;
use strata_format::image::{self, ExtentKind};
use strata_format::{RecordHeader, RecordType};

/// (extent, end of the IMAGE_EXTENTS record announcing it, end of its chunk record).
fn layout(bytes: &[u8]) -> Vec<(strata_format::Extent, usize, usize)> {
    let mut at = 128;
    let mut chunk_ends = std::collections::HashMap::new();
    let mut announced = Vec::new();
    while at + 32 <= bytes.len() {
        let head = RecordHeader::decode(bytes[at..at + 32].try_into().unwrap());
        let end = at + 32 + head.body_length as usize;
        match RecordType::from_code(head.record_type) {
            Some(RecordType::Chunk) => {
                chunk_ends.insert(at as u64, end);
            }
            Some(RecordType::ImageExtents) => {
                // Stored compressed or not (FORMAT.md 5.2).
                let body = strata_reader::decode_table_body(
                    RecordType::ImageExtents,
                    head.flags,
                    bytes[at + 32..end].to_vec(),
                    1 << 30,
                )
                .unwrap();
                let (_, table) = image::parse_extent_table(&body, strata_format::RecordType::ImageExtents).unwrap();
                announced.extend(image::extents_of(table).map(|e| (e, end)));
            }
            _ => {}
        }
        at = end;
    }
    announced
        .into_iter()
        .map(|(e, record_end)| {
            let chunk_end = match e.kind().unwrap() {
                ExtentKind::Data(r) => chunk_ends[&r],
                _ => 0,
            };
            (e, record_end, chunk_end)
        })
        .collect()
}

fn sample(dir: &std::path::Path) -> (Vec<u8>, std::path::PathBuf) {
    let image = dir.join("img.raw");
    sh(&format!(
        "head -c 40000 /dev/urandom > {0} && head -c 12288 /dev/zero >> {0} && yes salvage | head -c 30000 >> {0}",
        path_str(&image)
    ));
    let archive = dir.join("a.strata");
    create_image_archive(&archive, &image, "4K");
    (std::fs::read(&image).unwrap(), archive)
}

#[test]
fn salvage_after_a_cut_keeps_every_extent_complete_before_it() {
    let work = temp_dir();
    let dir = work.path();
    let (original, archive) = sample(dir);
    let bytes = std::fs::read(&archive).unwrap();
    let layout = layout(&bytes);
    let cut_file = dir.join("cut.strata");
    let out = dir.join("salvaged.strata");
    let restored = dir.join("restored.img");
    let mut salvaged_runs = 0;
    for cut in (200..bytes.len()).step_by(733) {
        std::fs::write(&cut_file, &bytes[..cut]).unwrap();
        let _ = std::fs::remove_file(&out);
        let result = run(&["salvage", path_str(&cut_file), path_str(&out), "--quiet"]);
        let code = result.status.code();
        assert!(matches!(code, Some(0..=2)), "cut {cut}: salvage died: {:?}", result.status);
        if code == Some(2) {
            assert!(!out.exists(), "cut {cut}: a failed salvage left an output");
            continue;
        }
        salvaged_runs += 1;
        assert_eq!(
            run(&["verify", path_str(&out)]).status.code(),
            Some(0),
            "cut {cut}: the salvaged archive is not valid"
        );
        run_ok(&["restore", path_str(&out), "--image", "disk", path_str(&restored), "--quiet", "--force"]);
        let got = std::fs::read(&restored).unwrap();
        assert_eq!(got.len(), original.len(), "cut {cut}: the image keeps its size");
        for (extent, record_end, chunk_end) in &layout {
            let complete = *record_end <= cut && *chunk_end <= cut;
            let range = extent.image_offset as usize..extent.end() as usize;
            if complete {
                assert_eq!(
                    got[range.clone()],
                    original[range.clone()],
                    "cut {cut}: bytes {range:?} were complete but not kept"
                );
            }
        }
    }
    assert!(salvaged_runs > 5, "only {salvaged_runs} cuts were salvaged");
}

#[test]
fn salvage_past_corruption_in_the_middle_keeps_everything_else() {
    let work = temp_dir();
    let dir = work.path();
    let (original, archive) = sample(dir);
    let mut bytes = std::fs::read(&archive).unwrap();
    let layout = layout(&bytes);
    // Damage the record header of a chunk of random data in the middle of the
    // random part (its own chunk, used once): the walk must resynchronise after it.
    let (victim, _, victim_end) = layout[5];
    let ExtentKind::Data(victim_ref) = victim.kind().unwrap() else { panic!("window 5 holds random data") };
    bytes[victim_ref as usize + 5] ^= 0xff;
    let damaged = dir.join("damaged.strata");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = dir.join("salvaged.strata");
    let result = run(&["salvage", path_str(&damaged), path_str(&out)]);
    assert_eq!(result.status.code(), Some(1), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stderr).contains("lost"));
    run_ok(&["verify", path_str(&out)]);
    let info = run_ok(&["info", path_str(&out), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let lost = info["sections"][0]["image"]["lost_ranges"].as_array().unwrap().clone();
    assert!(!lost.is_empty(), "the damaged chunk's range is listed as lost");
    let restored = dir.join("restored.img");
    let restore = run_ok(&["restore", path_str(&out), "--image", "disk", path_str(&restored), "--quiet"]);
    let said = String::from_utf8_lossy(&restore.stderr);
    assert_eq!(
        said.matches("lost in salvage, restored as zeros").count(),
        lost.len(),
        "restore names each lost range, even with --quiet: {said}"
    );
    let got = std::fs::read(&restored).unwrap();
    for (extent, _, chunk_end) in &layout {
        let range = extent.image_offset as usize..extent.end() as usize;
        let is_lost = lost
            .iter()
            .any(|r| r[0].as_u64().unwrap() <= extent.image_offset && extent.end() <= r[1].as_u64().unwrap());
        if *chunk_end == victim_end {
            assert!(is_lost, "the damaged chunk's range {range:?} is not listed as lost");
            assert!(got[range].iter().all(|&b| b == 0), "lost ranges read as zeros");
        } else {
            assert!(!is_lost, "intact range {range:?} listed as lost");
            assert_eq!(got[range.clone()], original[range.clone()], "intact range {range:?} not kept");
        }
    }
}

/// A tree of `sub/kept.txt` and `sub/big.bin` (`size` pseudo-random bytes, so its
/// first 64 KiB chunk is stored raw), plus what `more` adds, archived with 64 KiB
/// chunks; returns `damaged.strata`, the archive with a byte of that chunk flipped.
fn tree_with_damaged_file(dir: &std::path::Path, size: u32, more: impl FnOnce(&std::path::Path)) -> std::path::PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/kept.txt"), b"kept ".repeat(100)).unwrap();
    let big: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(tree.join("sub/big.bin"), &big).unwrap();
    more(&tree);
    let archive = dir.join("a.strata");
    run_ok(&["create", path_str(&archive), "--files", &format!("t={}", path_str(&tree)), "--chunk-size", "64K", "-q"]);
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.windows(64).position(|w| w == &big[..64]).expect("big.bin's first chunk is stored raw");
    bytes[at + 10] ^= 0x55;
    let damaged = dir.join("damaged.strata");
    std::fs::write(&damaged, &bytes).unwrap();
    damaged
}

#[test]
fn a_salvaged_tree_lists_what_was_lost_and_extraction_skips_it() {
    let dir = temp_dir();
    let damaged = tree_with_damaged_file(dir.path(), 200_000, |_| {});
    let salvaged = dir.path().join("salvaged.strata");
    let out = run(&["salvage", "-q", path_str(&damaged), path_str(&salvaged)]);
    assert_eq!(out.status.code(), Some(1), "salvage says something was lost");
    assert!(String::from_utf8_lossy(&out.stderr).contains("content lost: sub/big.bin"));

    // The salvaged archive verifies clean and says what was lost, in text and JSON.
    let out = run(&["verify", path_str(&salvaged)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("files t: sub/big.bin"));
    let out = run(&["verify", path_str(&salvaged), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["lost_entries"],
        serde_json::json!([{"section": "t", "path": "sub/big.bin", "path_hex": "7375622f6269672e62696e"}])
    );
    let out = run_ok(&["info", path_str(&salvaged), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["sections"][0]["lost_entries"], serde_json::json!(["sub/big.bin"]));
    let out = run_ok(&["list", path_str(&salvaged), "--files", "t", "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let big =
        listing["sections"][0]["entries"].as_array().unwrap().iter().find(|e| e["path"] == "sub/big.bin").unwrap();
    assert_eq!(big["lost_in_salvage"], true);
    assert_eq!(big["size"], 0);

    // Extraction gives back the rest and warns about the lost file.
    let dest = dir.path().join("x");
    let out = run(&["extract", path_str(&salvaged), "--files", "t", path_str(&dest)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lost in salvage"));
    assert_eq!(std::fs::read(dest.join("sub/kept.txt")).unwrap(), b"kept ".repeat(100));
    assert!(!dest.join("sub/big.bin").exists());
}

#[test]
fn extraction_skips_a_file_whose_chunk_is_damaged_and_its_hard_links_with_warnings() {
    let dir = temp_dir();
    let archive = tree_with_damaged_file(dir.path(), 100_000, |tree| {
        std::fs::hard_link(tree.join("sub/big.bin"), tree.join("twin.bin")).unwrap();
    });

    let dest = dir.path().join("x");
    let out = run(&["extract", path_str(&archive), "--files", "t", path_str(&dest), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["refused"], serde_json::json!([]), "nothing is refused: {report}");
    let warned: Vec<&str> =
        report["warnings"].as_array().unwrap().iter().map(|w| w["path"].as_str().unwrap()).collect();
    // In the entry order of FORMAT.md 8 the root's run comes first: twin.bin
    // is the file, sub/big.bin its hard link.
    assert_eq!(warned, ["twin.bin", "sub/big.bin"], "the file and its hard link are skipped with warnings");
    assert!(!dest.join("sub/big.bin").exists() && !dest.join("twin.bin").exists());
    assert_eq!(std::fs::read(dest.join("sub/kept.txt")).unwrap(), b"kept ".repeat(100));
    let leftovers: Vec<_> = std::fs::read_dir(dest.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["kept.txt"], "no temporary file is left behind");
}
