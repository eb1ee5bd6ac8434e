//! `stream::Stream` reads every vector front to back: on archives the reader
//! opens cleanly it gives the same entries and image extents as the
//! positional API, in the same order; on every vector and every cut of one it
//! ends, with an error or without, and never panics.

use std::path::PathBuf;

use strata_reader::stream::{Item, Stream};
use strata_reader::{Archive, Limits, Section};

fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "strata"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() > 40, "the vectors are there");
    out
}

/// What the stream gives, as comparable text; `Err` when it ends in an error.
fn streamed(bytes: &[u8]) -> Result<Vec<String>, strata_reader::Error> {
    let mut out = Vec::new();
    for item in Stream::new(bytes, Limits::default())? {
        out.push(match item? {
            Item::Entry(e) => format!("entry {:?} {} {}", e.kind(), e.size(), String::from_utf8_lossy(e.path())),
            Item::ImageExtents(run) => run
                .iter()
                .map(|x| format!("extent {} {} {:?}", x.offset, x.length, x.kind))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("{other:?}"),
        });
    }
    Ok(out)
}

/// The same, from the positional API.
fn positional(archive: &Archive<&[u8]>) -> Vec<String> {
    let mut out = Vec::new();
    for section in archive.sections() {
        match section {
            Section::Image(image) => {
                let image = archive.image(&image.name).unwrap();
                out.extend(image.extents().map(|x| format!("extent {} {} {:?}", x.offset, x.length, x.kind)));
            }
            Section::Tree(tree) => {
                let tree = archive.tree(&tree.name).unwrap();
                for e in tree.entries() {
                    let e = e.unwrap();
                    out.push(format!("entry {:?} {} {}", e.kind(), e.size(), String::from_utf8_lossy(e.path())));
                }
            }
        }
    }
    out
}

#[test]
fn a_stream_gives_what_the_index_gives_in_the_same_order() {
    let mut compared = 0;
    for (name, bytes) in vectors() {
        let Ok(archive) = Archive::new(&bytes[..]) else { continue };
        if archive.chain().is_some()
            || !strata_reader::verify::verify(&bytes[..], Limits::default(), &|_| {}).unwrap().is_clean()
        {
            continue;
        }
        let got = streamed(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let lines: Vec<String> = got
            .iter()
            .flat_map(|l| l.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| l.starts_with("entry ") || l.starts_with("extent "))
            .collect();
        assert_eq!(lines, positional(&archive), "{name}");
        let begins = got.iter().filter(|l| l.starts_with("ImageBegin") || l.starts_with("TreeBegin")).count();
        let ends = got.iter().filter(|l| l.starts_with("ImageEnd") || l.starts_with("TreeEnd")).count();
        assert_eq!((begins, ends), (archive.sections().len(), archive.sections().len()), "{name}");
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} clean vectors compared");
}

#[test]
fn every_vector_and_every_cut_ends_without_a_panic() {
    for (name, bytes) in vectors() {
        let whole = streamed(&bytes);
        if Archive::new(&bytes[..]).is_err() && whole.is_ok() {
            // A stream reads no index: damage there is not its to see.
            continue;
        }
        let step = (bytes.len() / 40).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            let e = streamed(&bytes[..cut]).expect_err(&format!("{name} cut at {cut}: the trailer is missing"));
            assert!(e.class().is_some(), "{name} cut at {cut}: {e}");
        }
    }
}
