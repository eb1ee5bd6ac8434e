//! The committed vectors must be exactly what the generator produces.

use std::path::PathBuf;

#[test]
fn committed_vectors_match_the_generator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors");
    let vectors = strata_vectors::all();
    for vector in &vectors {
        let path = dir.join(format!("{}.strata", vector.name));
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == vector.bytes,
            "{} differs from the generator: run `cargo run -p strata-vectors -- spec/vectors`",
            path.display()
        );
    }
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json is committed");
    assert_eq!(manifest, strata_vectors::manifest_text(&vectors), "manifest.json differs from the generator");
    let listed = std::fs::read_dir(&dir)
        .expect("spec/vectors exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "strata"))
        .count();
    assert_eq!(listed, vectors.len(), "spec/vectors holds .strata files the generator does not make");
}

#[test]
fn generation_is_deterministic() {
    let a = strata_vectors::all();
    let b = strata_vectors::all();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.bytes, y.bytes, "{} differs between two runs", x.name);
    }
}
