//! Property tests: generated images round-trip through the writer and both read
//! paths, and the archive does not depend on the thread count.

mod common;

use common::archive::{write, MemorySink};
use proptest::prelude::*;
use strata_reader::{stream, verify, Archive, Limits, Section};

#[derive(Clone, Debug)]
enum Piece {
    Zeros(usize),
    Random(Vec<u8>),
    Repeat(u8, usize),
    /// A copy of an earlier 4 KiB-aligned window: exercises deduplication.
    Copy(usize),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        (1usize..20_000).prop_map(Piece::Zeros),
        proptest::collection::vec(any::<u8>(), 1..12_000).prop_map(Piece::Random),
        (any::<u8>(), 1usize..20_000).prop_map(|(b, n)| Piece::Repeat(b, n)),
        (0usize..8).prop_map(Piece::Copy),
    ]
}

fn image() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(piece(), 0..10).prop_map(|pieces| {
        let mut bytes = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Zeros(n) => bytes.resize(bytes.len() + n, 0),
                Piece::Random(r) => bytes.extend_from_slice(&r),
                Piece::Repeat(b, n) => bytes.resize(bytes.len() + n, b),
                Piece::Copy(window) => {
                    // Pad to a window boundary, then repeat an earlier window.
                    let windows = bytes.len() / 4096;
                    if windows > 0 {
                        bytes.resize(windows * 4096, 7);
                        let w = window % windows;
                        let copy = bytes[w * 4096..(w + 1) * 4096].to_vec();
                        bytes.extend_from_slice(&copy);
                    }
                }
            }
        }
        bytes
    })
}

fn read_all(archive: &Archive<Vec<u8>>, name: &str) -> Vec<u8> {
    let image = archive.image(name).expect("the image exists");
    let mut out = vec![0u8; image.len() as usize];
    let n = image.read_at(0, &mut out).expect("reads");
    assert_eq!(n, out.len());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn images_round_trip(a in image(), b in image(), size_known in any::<bool>()) {
        let archive_bytes = write(&[("a", &a), ("b", &b)], 2, size_known);
        let report = verify::verify(&archive_bytes, Limits::default(), &|_| {}).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
        let archive = Archive::new(archive_bytes.clone()).unwrap();
        prop_assert_eq!(archive.sections().len(), 2);
        prop_assert_eq!(&read_all(&archive, "a"), &a);
        prop_assert_eq!(&read_all(&archive, "b"), &b);
        for (name, want) in [("a", &a), ("b", &b)] {
            // Zero windows are not stored.
            let Section::Image(image) = &archive.sections()[if name == "a" { 0 } else { 1 }] else { unreachable!("both sections are images") };
            let nonzero: u64 = want.chunks(4096).filter(|w| w.iter().any(|&x| x != 0)).map(|w| w.len() as u64).sum();
            prop_assert_eq!(image.end.data_bytes, nonzero);
            // Random access, then front to back from a pipe.
            let mut sink = MemorySink::default();
            archive.restore_image(image, &mut sink, &|_| {}).unwrap();
            prop_assert_eq!(&sink.bytes, want);
            let mut sink = MemorySink::default();
            stream::restore_image(archive_bytes.as_slice(), name, &mut sink, Limits::default(), &|_| {}).unwrap();
            prop_assert_eq!(&sink.bytes, want);
        }
    }

    #[test]
    fn archive_bytes_do_not_depend_on_threads(a in image()) {
        let one = write(&[("disk", &a)], 1, true);
        let two = write(&[("disk", &a)], 2, true);
        let four = write(&[("disk", &a)], 4, true);
        prop_assert_eq!(&one, &two);
        prop_assert_eq!(&one, &four);
    }
}
