//! The reader's tree handle (`Archive::tree`) on a tree the writer makes in
//! memory, cut into many entry records: every file reads back through
//! `Read` + `Seek` (holes as zeros), hard links are followed and entries found
//! by id with a binary search of the entry records (a bounded number of record
//! reads, never a walk), the listing reads one record at a time, and flags
//! the backup recorded are typed errors. (The reader's own tests, in
//! reader/tests/tree_handle.rs, use the committed vectors: the reader never
//! depends on the writer.)

mod common;

use std::collections::BTreeSet;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Mutex;

use strata_format::files::{Captured, Entry as RawEntry, EntryFlags, EntryKind, Timestamp, NO_PARENT};
use strata_format::{RecordHeader, RecordType};
use strata_reader::{Archive, Entry, ErrorKind, ReadAt, Tree};
use strata_writer::{ArchiveWriter, EntrySource, NoProgress, SourceEntry, WriterOptions};

/// One entry of the model tree: the entry, its path, its whole content
/// (holes as zeros) and the ranges of it that are data, as (start, end).
struct Modelled {
    entry: RawEntry,
    path: Vec<u8>,
    content: Vec<u8>,
    data: Vec<(u64, u64)>,
}

/// Entries as a writer takes them, each with its content.
struct Source<'a>(std::slice::Iter<'a, Modelled>, &'a [u8]);

impl EntrySource for Source<'_> {
    fn next_entry(&mut self) -> io::Result<Option<SourceEntry>> {
        Ok(self.0.next().map(|m| {
            self.1 = &m.content;
            SourceEntry { path: m.path.clone(), entry: m.entry.clone(), data_ranges: m.data.clone() }
        }))
    }

    fn read_content(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let rest = self.1.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// Builds the model entry by entry: ids in order, parents first.
#[derive(Default)]
struct Model(Vec<Modelled>);

impl Model {
    fn add(&mut self, parent: u64, kind: EntryKind, name: &[u8], content: Vec<u8>, data: Vec<(u64, u64)>) -> u64 {
        let id = self.0.len() as u64;
        let path = match self.0.get(parent as usize) {
            Some(p) if id > 0 && !p.path.is_empty() => [&p.path[..], b"/", name].concat(),
            _ => name.to_vec(),
        };
        let entry = RawEntry {
            entry_id: id,
            parent_id: if id == 0 { NO_PARENT } else { parent },
            mode: if kind == EntryKind::Directory { 0o755 } else { 0o644 },
            mtime: Timestamp { secs: 1_767_225_600, nsec: id as u32 },
            size: content.len() as u64,
            ..RawEntry::bare(kind, name)
        };
        self.0.push(Modelled { entry, path, content, data });
        id
    }

    fn dir(&mut self, parent: u64, name: &[u8]) -> u64 {
        self.add(parent, EntryKind::Directory, name, Vec::new(), Vec::new())
    }

    fn file(&mut self, parent: u64, name: &[u8], content: Vec<u8>, data: Vec<(u64, u64)>) -> u64 {
        self.add(parent, EntryKind::File, name, content, data)
    }

    fn link(&mut self, parent: u64, name: &[u8], to: u64, flags: u8) -> u64 {
        let id = self.add(parent, EntryKind::Hardlink, name, Vec::new(), Vec::new());
        self.0[id as usize].entry.link_id = to;
        self.0[id as usize].entry.flags = flags;
        id
    }

    /// The model in the entry order of FORMAT.md 8: the root, then each
    /// directory's children as one run sorted by name, runs in the order
    /// their directories come. Ids are renumbered; a hard link that now
    /// comes before its file takes its place (it holds the content, the file
    /// becomes the link). Returns the new model and each old id's new one.
    fn in_entry_order(self) -> (Model, Vec<u64>) {
        let old = self.0;
        let mut order: Vec<usize> = vec![0];
        let mut at = 0;
        while at < order.len() {
            let dir = order[at];
            at += 1;
            if old[dir].entry.kind != EntryKind::Directory {
                continue;
            }
            let mut children: Vec<usize> = (1..old.len()).filter(|&i| old[i].entry.parent_id == dir as u64).collect();
            children.sort_by(|a, b| old[*a].entry.name.cmp(&old[*b].entry.name));
            order.extend(children);
        }
        assert_eq!(order.len(), old.len(), "every entry is under the root");
        let mut new_id = vec![0u64; old.len()];
        for (new, &was) in order.iter().enumerate() {
            new_id[was] = new as u64;
        }
        let mut slots: Vec<Option<Modelled>> = old.into_iter().map(Some).collect();
        let mut out: Vec<Modelled> = order.iter().map(|&was| slots[was].take().expect("once")).collect();
        for (new, m) in out.iter_mut().enumerate() {
            m.entry.entry_id = new as u64;
            if new > 0 {
                m.entry.parent_id = new_id[m.entry.parent_id as usize];
            }
            if m.entry.kind == EntryKind::Hardlink {
                m.entry.link_id = new_id[m.entry.link_id as usize];
            }
        }
        // A link before its file swaps with it: each keeps its path, the
        // earlier one becomes the file.
        for i in 0..out.len() {
            if out[i].entry.kind == EntryKind::Hardlink && out[i].entry.link_id > i as u64 {
                let file = out[i].entry.link_id as usize;
                let (link_entry, file_entry) = (out[i].entry.clone(), out[file].entry.clone());
                let content = std::mem::take(&mut out[file].content);
                let data = std::mem::take(&mut out[file].data);
                out[i].entry = RawEntry {
                    entry_id: link_entry.entry_id,
                    parent_id: link_entry.parent_id,
                    name: link_entry.name.clone(),
                    ..file_entry.clone()
                };
                (out[i].content, out[i].data) = (content, data);
                out[file].entry = RawEntry {
                    entry_id: file_entry.entry_id,
                    parent_id: file_entry.parent_id,
                    name: file_entry.name.clone(),
                    link_id: i as u64,
                    flags: link_entry.flags,
                    ..RawEntry::bare(EntryKind::Hardlink, &file_entry.name)
                };
                out[file].entry.mode = link_entry.mode;
                out[file].entry.mtime = link_entry.mtime;
                // Other links to the file now name the new one.
                for m in out.iter_mut() {
                    if m.entry.kind == EntryKind::Hardlink && m.entry.link_id == file as u64 {
                        m.entry.link_id = i as u64;
                    }
                }
                out[file].entry.link_id = i as u64;
            }
        }
        (Model(out), new_id)
    }

    fn write(&self) -> Vec<u8> {
        let mut options = WriterOptions::new(*b"0123456789abcdef", 1_767_225_600_000_000_000);
        options.chunk_size = 4096;
        // Small batches: many entry records, so searches by id have records
        // to search.
        options.batch_bytes = 8192;
        // Small groups: many of them, so searches by id have groups to search.
        options.group_entries = 8;
        options.threads = 1;
        let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
        let mut source = Source(self.0.iter(), &[]);
        let summary = writer.add_tree_from("t", Captured::XATTRS | Captured::HOLES, &mut source, &NoProgress).unwrap();
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
        writer.finish().unwrap().0
    }
}

/// A tree of a 40-level chain with a file of several windows at its bottom;
/// ten folders of 30 files each, packed, windowed or with holes; hard links
/// to the deep file and to the first file; and files a backup could not read
/// or saw change. Returns the model and the ids of (the deep file, the
/// first file, the link to the deep file, the link to the first file).
fn model() -> (Model, [u64; 4]) {
    let mut m = Model::default();
    let root = m.dir(0, b"");
    let mut chain = root;
    for _ in 0..40 {
        chain = m.dir(chain, b"c");
    }
    let deep = m.file(chain, b"deep.bin", common::noise(7, 3 * 4096 + 100), vec![(0, 3 * 4096 + 100)]);
    let mut first = None;
    for d in 0..10u64 {
        let dir = m.dir(root, format!("d{d}").as_bytes());
        for f in 0..30u64 {
            let seed = d * 100 + f;
            let name = format!("f{f:02}");
            let id = match f % 3 {
                // Packed with its neighbours.
                0 => m.file(dir, name.as_bytes(), common::noise(seed, 100 + 97 * f as usize), vec![]),
                // Windows of 4 KiB.
                1 => m.file(dir, name.as_bytes(), common::noise(seed, 9000 + f as usize), vec![]),
                // Data, a hole of two windows, data, and a hole at the end.
                _ => {
                    let mut content = common::noise(seed, 5000);
                    content.resize(5000 + 8192, 0);
                    content.extend(common::noise(seed + 1, 3000));
                    content.resize(content.len() + 777, 0);
                    m.file(dir, name.as_bytes(), content, vec![(0, 5000), (13192, 16192)])
                }
            };
            first.get_or_insert(id);
        }
    }
    let first = first.expect("files were added");
    for id in 0..m.0.len() {
        if m.0[id].entry.kind == EntryKind::File && m.0[id].data.is_empty() {
            m.0[id].data = if m.0[id].content.is_empty() { vec![] } else { vec![(0, m.0[id].content.len() as u64)] };
        }
    }
    let d9 = m.0.iter().find(|e| e.path == b"d9").expect("d9").entry.entry_id;
    let to_deep = m.link(root, b"to-deep", deep, 0);
    let to_first = m.link(d9, b"to-first", first, 0);
    let locked = m.file(d9, b"locked", Vec::new(), vec![]);
    m.0[locked as usize].entry.flags = EntryFlags::UNREADABLE;
    // A file without content carries the digest of no items (FORMAT.md 8.3).
    m.0[locked as usize].entry.digest = strata_format::files::EMPTY_DIGEST;
    let growing = m.file(d9, b"growing", b"as read\n".to_vec(), vec![(0, 8)]);
    m.0[growing as usize].entry.flags = EntryFlags::CHANGED_WHILE_READ;
    m.link(d9, b"to-locked", locked, 0);
    let (m, new_id) = m.in_entry_order();
    // After a swap, the file is the earlier of the two: name them so.
    let pair = |file: u64, link: u64| {
        let (file, link) = (new_id[file as usize], new_id[link as usize]);
        if file < link {
            (file, link)
        } else {
            (link, file)
        }
    };
    let ((deep, to_deep), (first, to_first)) = (pair(deep, to_deep), pair(first, to_first));
    (m, [deep, first, to_deep, to_first])
}

/// The bytes of an archive opened from memory.
fn archive_bytes(archive: &Archive<Vec<u8>>) -> Vec<u8> {
    archive.source().clone()
}

/// Records every byte range read.
struct Counting(Vec<u8>, Mutex<Vec<u64>>);

impl ReadAt for Counting {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.1.lock().unwrap().push(offset);
        self.0.read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        self.0.size()
    }
}

/// The `FILES_ENTRIES` records read since the last call.
fn entry_records_read(archive: &Archive<Counting>, records: &[(u64, u64, u16)]) -> BTreeSet<u64> {
    let reads = std::mem::take(&mut *archive.source().1.lock().unwrap());
    reads
        .into_iter()
        .filter_map(|offset| records.iter().find(|(start, end, _)| (*start..*end).contains(&offset)))
        .filter(|(_, _, kind)| *kind == RecordType::FilesEntries.code())
        .map(|(start, _, _)| *start)
        .collect()
}

/// (offset, end, type) of every record of a valid archive.
fn record_map(bytes: &[u8]) -> Vec<(u64, u64, u16)> {
    let mut at = 128usize;
    let mut out = Vec::new();
    while at + RecordHeader::SIZE <= bytes.len() {
        let head = RecordHeader::decode(bytes[at..at + RecordHeader::SIZE].try_into().unwrap());
        let end = at + RecordHeader::SIZE + head.body_length as usize;
        out.push((at as u64, end as u64, head.record_type));
        at = end;
    }
    out
}

fn content(tree: Tree<'_, impl ReadAt>, entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    tree.open(entry)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(entry.path())))
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn every_file_of_a_written_tree_reads_back_through_the_handle() {
    let (model, _) = model();
    let bytes = model.write();
    // Many groups and FILES_EXTENTS records, runs across groups: the verifier
    // finds every table as the groups call for it (FORMAT.md 8.3, 8.5, 8.6).
    let report = strata_reader::verify::verify(&bytes, strata_reader::Limits::default(), &|_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let archive = Archive::new(bytes).unwrap();
    let tree = archive.tree("t").unwrap();
    assert!(tree.section().groups.len() >= 32, "{} entry records", tree.section().groups.len());
    let extents_records = strata_vectors::records(&archive_bytes(&archive))
        .iter()
        .filter(|r| r.record_type == RecordType::FilesExtents.code())
        .count();
    assert!(extents_records >= 4, "{extents_records} FILES_EXTENTS records");
    let entries: Vec<Entry> = tree.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len(), model.0.len());
    for (entry, want) in entries.iter().zip(&model.0) {
        let what = String::from_utf8_lossy(&want.path).into_owned();
        assert_eq!(
            (entry.path(), entry.id(), entry.kind()),
            (&want.path[..], want.entry.entry_id, want.entry.kind),
            "{what}"
        );
        assert_eq!(entry.mtime(), want.entry.mtime, "{what}");
        match entry.kind() {
            EntryKind::File if entry.is_unreadable() => {
                assert_eq!(tree.open(entry).unwrap_err().kind(), ErrorKind::NotStored, "{what}");
            }
            EntryKind::File => {
                assert!(content(tree, entry) == want.content, "{what}: content");
                // Holes are holes in the archive, zeros when read.
                let extents = archive.file_extents(tree.section(), entry.raw()).unwrap();
                assert_eq!(extents.len() as u64, entry.extent_count(), "{what}: extent_count");
                let stored: u64 = extents.iter().map(|e| e.length).sum();
                let data: u64 = want.data.iter().map(|r| r.1 - r.0).sum();
                assert_eq!(stored, data, "{what}: only the data is stored");
                let mut file = tree.open(entry).unwrap();
                assert_eq!(file.changed_while_read(), entry.changed_while_read());
                // Backwards, 1000 bytes at a time, each read fresh from a seek.
                let mut at = file.len();
                while at > 0 {
                    let start = at.saturating_sub(1000);
                    file.seek(SeekFrom::Start(start)).unwrap();
                    let mut piece = vec![0; (at - start) as usize];
                    file.read_exact(&mut piece).unwrap();
                    assert!(piece == want.content[start as usize..at as usize], "{what}: bytes {start}..{at}");
                    at = start;
                }
            }
            EntryKind::Hardlink => {
                let file = &model.0[want.entry.link_id as usize];
                assert_eq!(entry.link_id(), Some(file.entry.entry_id));
                let target = tree.link_target(entry).unwrap().expect("a hard link");
                assert_eq!(target.path(), &file.path[..], "{what}: its file");
                if target.is_unreadable() {
                    assert_eq!(tree.open(entry).unwrap_err().kind(), ErrorKind::NotStored, "{what}");
                } else {
                    assert!(content(tree, entry) == file.content, "{what}: the file's content");
                }
            }
            EntryKind::Directory => {
                let children: Vec<&[u8]> = model
                    .0
                    .iter()
                    .filter(|c| c.entry.parent_id == want.entry.entry_id && c.entry.entry_id != 0)
                    .map(|c| &c.path[..])
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let listed: Vec<Vec<u8>> = tree.read_dir(entry).unwrap().map(|c| c.unwrap().path().to_vec()).collect();
                assert_eq!(listed, children, "{what}: read_dir");
            }
            other => panic!("{what}: the model has no {other:?}"),
        }
    }
    // Every 37th entry by id, with its path.
    for entry in entries.iter().step_by(37) {
        assert_eq!(tree.entry(entry.id()).unwrap().as_ref(), Some(entry));
    }
    let growing = tree.lookup("d9/growing").unwrap().unwrap();
    assert!(growing.changed_while_read() && tree.open(&growing).unwrap().changed_while_read());
}

#[test]
fn a_hard_link_is_followed_with_a_few_record_reads_never_a_walk() {
    let (model, [deep, first, to_deep, to_first]) = model();
    let bytes = model.write();
    let records = record_map(&bytes);
    let archive = Archive::new(Counting(bytes, Mutex::new(Vec::new()))).unwrap();
    let tree = archive.tree("t").unwrap();
    let count = tree.section().groups.len();
    // A binary search reads at most log2(records) + 1 of them.
    let search = (usize::BITS - count.leading_zeros()) as usize;
    assert!(count >= 32, "{count} entry records");

    for (link, file) in [(to_first, first), (to_deep, deep)] {
        let path = &model.0[link as usize].path;
        let link_entry = tree.lookup(path).unwrap().expect("the link is there");
        entry_records_read(&archive, &records);
        let read = content(tree, &link_entry);
        assert!(read == model.0[file as usize].content);
        let searched = entry_records_read(&archive, &records);
        assert!(searched.len() <= search, "open read {} entry records of {count}", searched.len());

        // Its file with its path: one search per directory above it, but the
        // records read last are kept, and directories written together share
        // them.
        let target = tree.link_target(&link_entry).unwrap().unwrap();
        assert_eq!(target.path(), &model.0[file as usize].path[..]);
        let climbed = entry_records_read(&archive, &records);
        eprintln!(
            "{}: open read {} entry records of {count}, link_target {} more",
            String::from_utf8_lossy(path),
            searched.len(),
            climbed.len()
        );
        assert!(climbed.len() <= 2 * search, "link_target read {} entry records of {count}", climbed.len());
    }
    // And by id, from nothing.
    // (In the entry order the root's run comes first: to-deep holds the
    // content and c/.../deep.bin is its hard link.)
    let entry = tree.entry(deep).unwrap().unwrap();
    assert_eq!(entry.path(), &model.0[deep as usize].path[..]);
    let link = tree.entry(to_deep).unwrap().unwrap();
    assert_eq!(link.path(), [&b"c/".repeat(40)[..], b"deep.bin"].concat());
    assert!(entry_records_read(&archive, &records).len() <= 2 * search);
}

#[test]
fn a_listing_reads_one_entry_record_at_a_time() {
    let (model, _) = model();
    let bytes = model.write();
    let records = record_map(&bytes);
    let archive = Archive::new(Counting(bytes, Mutex::new(Vec::new()))).unwrap();
    let tree = archive.tree("t").unwrap();
    entry_records_read(&archive, &records);
    let mut entries = tree.entries();
    let root = entries.next().unwrap().unwrap();
    assert!(root.path().is_empty() && root.is_dir());
    assert_eq!(entry_records_read(&archive, &records).len(), 1, "the first entry costs the first record alone");
    assert_eq!(entries.count(), model.0.len() - 1);
    assert_eq!(entry_records_read(&archive, &records).len(), tree.section().groups.len() - 1);
}

#[test]
fn a_damaged_chunk_is_a_read_error_and_the_files_beside_it_still_read() {
    let (model, [_, first, ..]) = model();
    let mut bytes = model.write();
    let archive = Archive::new(bytes.clone()).unwrap();
    let tree = archive.tree("t").unwrap();
    // A windowed file: its second chunk is damaged (CRCs fixed, so the chunk
    // decodes and fails its BLAKE3).
    let windowed = tree.lookup("d3/f01").unwrap().unwrap();
    let chunk = archive.file_extents(tree.section(), windowed.raw()).unwrap()[1].chunk_ref as usize;
    drop(archive);
    let stored = chunk + RecordHeader::SIZE + strata_format::ChunkHeader::SIZE;
    bytes[stored + 10] ^= 1;
    common::fix_crcs(&mut bytes, chunk);
    let archive = Archive::new(bytes).unwrap();
    let tree = archive.tree("t").unwrap();
    let mut file = tree.open(&windowed).unwrap();
    let mut first_window = vec![0; 4096];
    file.read_exact(&mut first_window).unwrap();
    let e = file.read(&mut [0; 4096]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let inner = e.get_ref().and_then(|e| e.downcast_ref::<strata_reader::Error>()).expect("the reader's error");
    assert!(inner.class().is_some(), "a defect of the archive: {inner}");
    assert_eq!(file.position(), 4096, "a failed read reads nothing");
    let first = tree.entry(first).unwrap().unwrap();
    assert!(content(tree, &first) == model.0[first.id() as usize].content);
}
