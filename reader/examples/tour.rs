//! Lists a file tree, prints one of its files, and copies 16 KiB of an image
//! from OFFSET to OUT through `Read` + `Seek`: strata-reader in one page.
//!
//! ```text
//! cargo run -p strata-reader --example tour -- \
//!     spec/vectors/image-and-tree.strata tree docs/hard disk 1000 copy.bin
//! ```

use std::io::{Read, Seek, SeekFrom, Write};

use strata_reader::Archive;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive, tree, file, image, offset, out] = &args[..] else {
        return Err("usage: tour ARCHIVE TREE FILE IMAGE OFFSET OUT".into());
    };
    tour(archive, tree, file, image, offset.parse()?, out, &mut std::io::stdout().lock())?;
    Ok(())
}

pub fn tour(path: &str, tree: &str, file: &str, image: &str, at: u64, out: &str, say: &mut dyn Write) -> Result<u64> {
    let archive = Archive::open(path)?;
    let tree = archive.tree(tree)?;
    for entry in tree.entries() {
        let entry = entry?;
        writeln!(say, "{:?} {} {}", entry.kind(), entry.size(), String::from_utf8_lossy(entry.path()))?;
    }
    let entry = tree.lookup(file)?.ok_or(format!("{file}: not in {}", tree.name()))?;
    std::io::copy(&mut tree.open(&entry)?, say)?;

    let mut disk = archive.image(image)?.reader();
    disk.seek(SeekFrom::Start(at))?;
    let copied = std::io::copy(&mut disk.take(16 << 10), &mut std::fs::File::create(out)?)?;
    writeln!(say, "{copied} bytes of image {image} from byte {at} copied to {out}")?;
    Ok(copied)
}
