//! Opens an archive, takes one of its images, reads the image's first sector
//! through `Read` + `Seek` (as a partition table parser would), and lists its
//! extents.
//!
//! ```text
//! cargo run -p strata-reader --example read_image -- ARCHIVE [IMAGE]
//! cargo run -p strata-reader --example read_image -- spec/vectors/image-sparse.strata
//! ```
//!
//! IMAGE may be left out when the archive holds one image.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::ExitCode;

use strata_reader::{Archive, ErrorKind, ExtentKind, Section};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: read_image ARCHIVE [IMAGE]");
        return ExitCode::from(2);
    };
    match run(&path, args.next()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("read_image: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, name: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let archive = Archive::new(File::open(path)?)?;
    let images: Vec<&str> = archive
        .sections()
        .iter()
        .filter_map(|s| match s {
            Section::Image(image) => Some(image.name.as_str()),
            Section::Tree(_) => None,
        })
        .collect();
    let name = match (name, images.as_slice()) {
        (Some(name), _) => name,
        (None, [only]) => only.to_string(),
        (None, _) => return Err(format!("name one of its images: {images:?}").into()),
    };
    let image = match archive.image(&name) {
        Ok(image) => image,
        // A typed error: a wrong name is told apart from a damaged archive
        // without looking at the message.
        Err(e) if e.kind() == ErrorKind::NoSuchSection => {
            return Err(format!("no image {name:?} here; its images: {images:?}").into())
        }
        Err(e) => return Err(e.into()),
    };
    let sector_size = u64::from(image.section().sector_size);
    println!("image {:?}: {} bytes, {}-byte sectors", image.name(), image.len(), sector_size);

    // The first sector through std::io, as any crate that parses a disk from
    // `Read + Seek` would read it (an image shorter than a sector gives less).
    let mut reader = image.reader();
    let mut first = Vec::new();
    reader.by_ref().take(sector_size).read_to_end(&mut first)?;
    println!("first sector: {} bytes, starting {}", first.len(), hex(&first));
    if first.len() >= 512 && first[510..512] == [0x55, 0xaa] {
        println!("  it ends with the 55 aa signature of a master boot record");
    }
    // And the last one, where GPT keeps its backup header. Seeking costs
    // nothing: chunks are decoded by reads.
    if image.len() >= sector_size {
        let mut last = vec![0u8; sector_size as usize];
        reader.seek(SeekFrom::End(-(sector_size as i64)))?;
        reader.read_exact(&mut last)?;
        println!("last sector: starting {}", hex(&last));
    }

    println!("extents:");
    for extent in image.extents() {
        let what = match extent.kind {
            ExtentKind::Data(chunk_ref) => format!("data, chunk at archive byte {chunk_ref}"),
            ExtentKind::Zero => "zeros".to_string(),
            ExtentKind::Lost => "lost in salvage (reads as zeros)".to_string(),
            ExtentKind::Free => "free space of a file system, not stored (reads as zeros)".to_string(),
        };
        println!("  {:>12}..{:<12} {what}", extent.offset, extent.end());
    }
    for range in image.lost_ranges() {
        println!("lost in salvage: bytes {}..{}", range.start, range.end);
    }
    Ok(())
}

/// The first 16 bytes, in hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}
