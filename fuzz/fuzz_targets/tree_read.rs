//! File trees by random access: list every entry, walk the directory tables,
//! look each path up through them, and read files into memory (bounded). Errors are fine;
//! panics, hangs and unbounded allocation are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_reader::{Archive, Section};

/// Content read per archive, at most.
const READ_BUDGET: u64 = 1 << 20;

/// A writer that refuses more than it has room for.
struct Capped(Vec<u8>, usize);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > self.1 {
            return Err(std::io::Error::other("over the fuzz cap"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(archive) = Archive::open(data.to_vec()) else {
        return;
    };
    let mut budget = READ_BUDGET;
    for section in archive.sections() {
        let Section::Tree(tree) = section else {
            continue;
        };
        let mut items = Vec::new();
        let _ = archive.walk_tree(tree, |item| {
            if items.len() < 256 {
                items.push(item);
            }
            Ok(())
        });
        let _ = archive.list_dir(tree, b"");
        // A walk through the directory tables alone: it must end, however the
        // tables point (each visit is counted; the tables bound the walk).
        let mut visited = 0u64;
        let _ = archive.walk_below(tree, b"", |_| {
            visited += 1;
            Ok(())
        });
        for item in &items {
            let _ = archive.lookup(tree, &item.path);
            if item.entry.kind == strata_format::files::EntryKind::File && item.entry.size <= budget {
                let mut out = Capped(Vec::new(), budget as usize);
                if archive.read_file(tree, &item.entry, &mut out).is_ok() {
                    assert_eq!(out.0.len() as u64, item.entry.size, "a file reads as long as its entry says");
                }
                budget -= item.entry.size;
            }
        }
    }
});
