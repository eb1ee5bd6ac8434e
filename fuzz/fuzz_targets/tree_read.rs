//! File trees by random access: list every entry, walk the directory tables,
//! look each path up through them, and read files into memory (bounded); then
//! the same through the tree handle (`Archive::tree`): entries by id, hard
//! links followed, directories listed, files read through `Read` + `Seek`.
//! Errors are fine; panics, hangs and unbounded allocation are not.
#![no_main]

use std::io::{Read, Seek, SeekFrom};

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
    let Ok(archive) = Archive::new(data.to_vec()) else {
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
        let Ok(handle) = archive.tree(&tree.name) else {
            continue;
        };
        // Entries by id and hard links: binary searches of the entry records,
        // which must end and find only what is there, however ids lie.
        for entry in handle.entries().take(256) {
            let Ok(entry) = entry else {
                break;
            };
            if let Ok(Some(found)) = handle.entry(entry.id()) {
                assert_eq!(found.id(), entry.id(), "an entry found by id is that entry");
            }
            if let Ok(Some(file)) = handle.link_target(&entry) {
                assert!(file.is_file() && file.id() < entry.id(), "a link leads to an earlier regular file");
            }
            if entry.is_dir() {
                if let Ok(children) = handle.read_dir(&entry) {
                    children.take(256).for_each(drop);
                }
            }
            let Ok(mut file) = handle.open(&entry) else {
                continue;
            };
            let length = file.len();
            if length > budget {
                continue;
            }
            budget -= length;
            let mut out = Vec::new();
            if file.read_to_end(&mut out).is_ok() {
                assert_eq!(out.len() as u64, length, "a file reads as long as it says");
            }
            // And from the middle, in the same reader.
            if file.seek(SeekFrom::Start(length / 2)).is_ok() {
                let _ = file.read(&mut [0; 4096]);
            }
        }
        if let Ok(Some(below)) = handle.subtree("") {
            below.take(1 << 16).for_each(drop);
        }
    }
});
