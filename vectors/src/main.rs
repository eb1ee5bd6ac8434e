//! `strata-vectors DIR`: writes every vector and `manifest.json` into DIR.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: strata-vectors DIR   (the committed vectors live in spec/vectors)");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = strata_vectors::write_all(&dir) {
        eprintln!("strata-vectors: {}: {e}", dir.display());
        std::process::exit(2);
    }
}
