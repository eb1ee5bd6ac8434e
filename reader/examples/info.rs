//! Opens an archive and prints each section's kind, name and size: an image's
//! size is its logical size, a tree's the bytes of its files' content.
//!
//! ```text
//! cargo run -p strata-reader --example info -- spec/vectors/image-and-tree.strata
//! ```

use std::io::Write;

use strata_reader::{Archive, Section};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive] = &args[..] else {
        return Err("usage: info ARCHIVE".into());
    };
    info(archive, &mut std::io::stdout().lock())
}

pub fn info(path: &str, out: &mut dyn Write) -> Result<()> {
    let archive = Archive::new(std::fs::File::open(path)?)?;
    writeln!(out, "{path}: {} bytes, {} sections", archive.size(), archive.sections().len())?;
    for section in archive.sections() {
        let (kind, size) = match section {
            Section::Image(image) => ("image", image.logical_size),
            Section::Tree(tree) => ("tree", tree.end.content_bytes),
        };
        writeln!(out, "{kind} {} {size} bytes", section.name())?;
    }
    Ok(())
}
