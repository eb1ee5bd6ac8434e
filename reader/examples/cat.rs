//! Writes one file of a file tree to standard output, as `strata cat` does:
//! found through the directory tables, a hard link read as its file, and
//! checked against the file's digest as it is read.
//!
//! ```text
//! cargo run -p strata-reader --example cat -- ARCHIVE TREE PATH
//! cargo run -p strata-reader --example cat -- spec/vectors/tree-small.strata tree docs/readme.txt
//! ```

use std::io::Write;
use std::process::ExitCode;

use strata_reader::{Archive, ErrorKind};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive, tree, path] = &args[..] else {
        eprintln!("usage: cat ARCHIVE TREE PATH");
        return ExitCode::from(2);
    };
    match cat(archive, tree, path, &mut std::io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cat: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the file at `path` of the tree `tree` to `out`; returns its length.
pub fn cat(archive: &str, tree: &str, path: &str, out: &mut dyn Write) -> Result<u64> {
    let archive = Archive::new(std::fs::File::open(archive)?)?;
    let tree = archive.tree(tree)?;
    let entry = tree.lookup(path)?.ok_or("not in the archive")?;
    let mut file = match tree.open(&entry) {
        Ok(file) => file,
        // Typed errors: a directory, or content the archive records it does
        // not hold, are told apart from damage without reading the message.
        Err(e) if e.kind() == ErrorKind::NotAFile => {
            return Err(format!("a {}, not a file", entry.kind().name()).into())
        }
        Err(e) if e.kind() == ErrorKind::NotStored => return Err(format!("no content to give: {}", e.detail()).into()),
        Err(e) => return Err(e.into()),
    };
    // A read that meets damage fails with the archive's error inside the
    // io::Error; the last read fails if the content does not match its digest.
    let written = std::io::copy(&mut file, out)?;
    if file.changed_while_read() {
        eprintln!("cat: {path}: it changed while it was read when the archive was written; written as read");
    }
    Ok(written)
}
