//! The hostile cases are well formed: unique names, expectations that agree
//! with themselves, small archives, and the same bytes on every run.

use strata_vectors::hostile::{self, Restore};

#[test]
fn hostile_cases_are_consistent_and_small() {
    let cases = hostile::cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    for case in &cases {
        assert!(case.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{}", case.name);
        assert!(!case.description.is_empty(), "{} says what it attacks", case.name);
        assert!(!case.trees.is_empty() || !case.images.is_empty(), "{} has a section to run", case.name);
        // A valid archive verifies clean; an invalid one names its class.
        assert_eq!(case.verify.exit == 0, case.verify.class.is_none(), "{}: verify expectation", case.name);
        assert!([0, 1, 2].contains(&case.verify.exit), "{}", case.name);
        for tree in &case.trees {
            for extraction in &tree.extracts {
                assert!(!extraction.exit.is_empty(), "{}: an extraction allows some exit status", case.name);
                assert!(
                    extraction.refused.is_empty() || !extraction.exit.contains(&0),
                    "{}: refusals exit non-zero",
                    case.name
                );
            }
        }
        for image in &case.images {
            if let Restore::Image { blake3: None, .. } = image.restore {
                panic!("{}: a restore that must succeed states the image's BLAKE3", case.name);
            }
        }
        // Most cases are a few KiB; the deep tree is a few MB.
        let limit = if case.name.starts_with("deep-") { 4 << 20 } else { 100 << 10 };
        assert!(case.bytes.len() <= limit, "{}: {} bytes", case.name, case.bytes.len());
    }
}

#[test]
fn hostile_cases_are_deterministic() {
    let (a, b) = (hostile::cases(), hostile::cases());
    for (x, y) in a.iter().zip(&b) {
        assert!(x.bytes == y.bytes, "{} differs between two runs", x.name);
    }
}
