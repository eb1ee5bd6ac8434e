//! Vectors of incremental archives (`spec/FORMAT.md` section 15): a parent, a
//! child and a grandchild that refer to their ancestors' chunks, and children
//! whose parent is missing or does not bind. Each child's ancestors are other
//! vectors of the manifest (`parents`), found beside it by name.

use strata_format::RecordType;
use strata_reader::Archive;
use strata_writer::{ArchiveWriter, ChainBase, NoProgress, ParentFacts, ParentTables, SliceSource, TablePrefix};

use crate::trees::{expected_entries, materialise, standard_tree, tree_options, TreeModel};
use crate::{disk_ranges, problem, Expectation, ImageModel, Segment, Vector, CHUNK};

const CHILD_UUID: [u8; 16] = *b"strata-vectors-2";
const GRANDCHILD_UUID: [u8; 16] = *b"strata-vectors-3";

/// The ancestors each chain vector needs beside it, for the manifest.
pub(crate) fn parents_of(name: &str) -> &'static [&'static str] {
    match name {
        "chain-child" | "chain-parent-mismatch" => &["chain-parent.strata"],
        "chain-grandchild" | "chain-prefix-mismatch" => &["chain-child.strata", "chain-parent.strata"],
        _ => &[],
    }
}

/// Five windows and a short one, windows 1, 3 and 4 of eight 512-byte
/// random blocks; `changed` replaces blocks (window, first block, blocks) by
/// new random ones from a seed.
fn image(changed: &[(usize, usize, usize, u64)]) -> ImageModel {
    let random = |window: usize, seed: u64| {
        (0..CHUNK / 512)
            .map(|block| {
                let new = changed.iter().find(|c| c.0 == window && (c.1..c.1 + c.2).contains(&block));
                Segment::Random(new.map_or(seed * 100 + block as u64, |c| c.3 * 100 + block as u64), 512)
            })
            .collect::<Vec<_>>()
    };
    let mut segments = vec![Segment::Text(CHUNK)];
    segments.extend(random(1, 21));
    segments.push(Segment::Repeat(0x5A, CHUNK));
    segments.extend(random(3, 22));
    segments.extend(random(4, 23));
    segments.push(Segment::Text(3_000));
    ImageModel::new("disk", segments)
}

/// Writes an archive with UUID `uuid`, a child of `base` when given, holding
/// `image` (written against `over`, the parent's, when given) and, when
/// given, the tree `model` as section "tree".
fn build(
    uuid: [u8; 16],
    base: Option<ChainBase>,
    image: &ImageModel,
    over: Option<&dyn strata_writer::ParentImage>,
    model: Option<&TreeModel>,
    tables: Option<std::sync::Arc<dyn ParentTables>>,
) -> Vec<u8> {
    let mut options = crate::vector_options(CHUNK);
    options.archive_uuid = uuid;
    // A child's tables stored against its parent's (FORMAT.md 5.3) are compressed.
    options.compress_tables = tables.is_some();
    let mut writer = match base {
        Some(base) => ArchiveWriter::new_child(Vec::new(), options, base),
        None => ArchiveWriter::new(Vec::new(), options),
    }
    .expect("vector options are valid");
    let (bytes, _) = image.materialise();
    writer.add_image_over(image.name, &mut SliceSource::new(&bytes), over, &NoProgress).expect("writing to memory");
    if let Some(model) = model {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().join("tree");
        materialise(model, &root).expect("the tree model builds on this file system");
        let options = strata_writer::TreeOptions { parent_tables: tables, ..tree_options() };
        let summary = writer.add_tree("tree", &root, &options, &NoProgress).expect("the model is readable");
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    }
    writer.finish().expect("writing to memory").0
}

/// What a child of the archive `bytes`, stored under `name`, is built on.
fn base_of(name: &str, bytes: &[u8]) -> ChainBase {
    let parent = Archive::new(bytes.to_vec()).expect("the parent vector is valid");
    ChainBase::from_parent(ParentFacts {
        name: name.as_bytes().to_vec(),
        uuid: parent.header().archive_uuid,
        binding: parent.binding(),
        archive_length: parent.size(),
        chain: parent.chain().cloned(),
        local_chunks: parent.local_chunks().expect("the parent vector is valid"),
        ancestor_chunks: parent.ancestor_chunks(),
    })
    .expect("the parent is a valid base")
}

/// The image "disk" of the first of `files` (name and bytes), the others
/// being its ancestors, as a child of it is written against it (15.5). The
/// files are written to a temporary folder, where the reader finds the
/// ancestors beside the archive by name.
fn view(files: &[(&str, &[u8])]) -> crate::partial::SectionView<std::fs::File> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("writing a temporary file");
    }
    let path = dir.path().join(files[0].0);
    let archive = Archive::new(std::fs::File::open(&path).expect("just written")).expect("a valid archive");
    archive.set_parent_search(strata_reader::ParentSearch::beside(&path));
    // Ancestors are opened when first read: read every chunk now, while the
    // folder is there (what a reader keeps open is bounded, FORMAT.md 15.4).
    let image = archive.image("disk").expect("the chain vectors hold an image \"disk\"");
    let mut all = vec![0u8; image.len() as usize];
    image.read_pieces(0, &mut all).expect("the ancestors are beside it");
    crate::partial::SectionView { archive, name: "disk", rebase: true }
}

/// The tables of the tree "tree" of the first of `files` (name and bytes),
/// the others being its ancestors, that a child's tables are stored against
/// (FORMAT.md 5.3): all of them, read while the ancestors are beside it.
struct TreeTables(Vec<(RecordType, u64, TablePrefix)>);

impl ParentTables for TreeTables {
    fn table(&self, record_type: RecordType, first_id: u64) -> Option<TablePrefix> {
        // The last group of the type whose first id is at most `first_id`.
        let group = self.0.iter().filter(|(_, first, _)| *first <= first_id).map(|(_, first, _)| *first).max()?;
        self.0.iter().find(|(t, first, _)| *t == record_type && *first == group).map(|(_, _, table)| table.clone())
    }
}

fn tree_tables(files: &[(&str, &[u8])]) -> std::sync::Arc<dyn ParentTables> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("writing a temporary file");
    }
    let path = dir.path().join(files[0].0);
    let archive = Archive::open(&path).expect("a valid archive");
    let tree = archive.tree_section("tree").expect("the chain vectors hold a tree \"tree\"");
    let mut tables = Vec::new();
    for row in &tree.groups {
        for (record_type, record) in
            [(RecordType::FilesEntries, row.entries_record), (RecordType::FilesDir, row.dir_record)]
        {
            if record != 0 {
                let body = archive.table_body(record, record_type).expect("the ancestors are beside it");
                tables.push((record_type, row.first_id, TablePrefix { record, body }));
            }
        }
    }
    std::sync::Arc::new(TreeTables(tables))
}

/// The image ranges of a child that refer to an ancestor.
fn ancestor_ranges(bytes: &[u8]) -> Vec<crate::Affects> {
    disk_ranges(bytes, |chunk_ref| strata_format::ChunkRef::split(chunk_ref).is_ancestor())
}

pub(crate) fn vectors() -> Vec<Vector> {
    use strata_format::ErrorClass::*;
    let model = standard_tree();
    let tree = |m: &TreeModel| serde_json::json!({"kind": "files", "name": "tree", "entries": expected_entries(m)});
    let parent_image = image(&[]);
    let parent = build(crate::UUID, None, &parent_image, None, Some(&model), None);
    // The child: two blocks of window 1 changed, stored; the rest of the
    // window read from the parent's chunk in two parts.
    let child_image = image(&[(1, 2, 2, 31)]);
    let over_parent = view(&[("chain-parent.strata", &parent)]);
    let child = build(
        CHILD_UUID,
        Some(base_of("chain-parent.strata", &parent)),
        &child_image,
        Some(&over_parent),
        Some(&model),
        Some(tree_tables(&[("chain-parent.strata", &parent)])),
    );
    // The grandchild: window 3 replaced whole and stored; window 1 read from
    // the child's chunk and the grandparent's.
    let grandchild_image = image(&[(1, 2, 2, 31), (3, 0, 8, 32)]);
    let over_child = view(&[("chain-child.strata", &child), ("chain-parent.strata", &parent)]);
    let grandchild = build(
        GRANDCHILD_UUID,
        Some(base_of("chain-child.strata", &child)),
        &grandchild_image,
        Some(&over_child),
        Some(&model),
        Some(tree_tables(&[("chain-child.strata", &child), ("chain-parent.strata", &parent)])),
    );
    let refs = crate::image_extent_rows(&grandchild);
    let of = |archive: u8| refs.iter().filter(move |e| strata_format::ChunkRef::split(e.chunk_ref).archive == archive);
    assert!(of(2).any(|e| e.chunk_offset > 0), "the grandchild reads part of a chunk of its grandparent");
    assert!(of(1).any(|e| e.length < CHUNK as u64), "and the child's chunk of changed blocks");
    // Children of the parent whose CHAIN names a file that is not there, or
    // records a binding the parent does not give.
    let mut absent = base_of("chain-absent.strata", &parent);
    absent.chain.ancestors[0].name = b"chain-absent.strata".to_vec();
    let missing = build(CHILD_UUID, Some(absent), &child_image, Some(&over_parent), None, None);
    let mut wrong = base_of("chain-parent.strata", &parent);
    wrong.chain.ancestors[0].binding[0] ^= 1;
    let mismatch = build(CHILD_UUID, Some(wrong), &child_image, Some(&over_parent), None, None);
    // The grandchild with the BLAKE3 its directory table records of its
    // prefix (the child's FILES_DIR) changed: the table cannot be read, which
    // costs fast lookup only (FORMAT.md 11); every entry is still there.
    let mut prefix_mismatch = grandchild.clone();
    let dir_table = crate::of_type(&prefix_mismatch, RecordType::FilesDir)
        .into_iter()
        .find(|r| u16::from_le_bytes([prefix_mismatch[r.offset + 6], prefix_mismatch[r.offset + 7]]) & 8 != 0)
        .expect("the grandchild's FILES_DIR is prefixed");
    prefix_mismatch[dir_table.body_start + 16] ^= 1;
    crate::refix_record(&mut prefix_mismatch, dir_table.offset);
    let chain_offset = 128;
    let missing_problems = vec![problem(ParentMissing, chain_offset, ancestor_ranges(&missing))];
    let mismatch_problems = vec![problem(ParentMismatch, chain_offset, ancestor_ranges(&mismatch))];
    vec![
        Vector {
            name: "chain-parent",
            description: "the parent of the chain vectors: an image and a tree, self-contained",
            bytes: parent,
            expect: Expectation::Valid(vec![parent_image.expectation().to_json(), tree(&model)]),
        },
        Vector {
            name: "chain-child",
            description: "an incremental archive (feature bit 1) whose parent is chain-parent.strata: two 512-byte blocks of one image window changed and stored in a chunk of their own, the rest of that window read from two parts of the parent's chunk (chunk_offset), the other windows and the whole tree's content referred to in the parent, its entry group stored against the parent's (PREFIXED, FORMAT.md 5.3)",
            bytes: child,
            expect: Expectation::Valid(vec![child_image.expectation().to_json(), tree(&model)]),
        },
        Vector {
            name: "chain-grandchild",
            description: "a chain of depth 2 (chain-child.strata, then chain-parent.strata): references into both ancestors, parts of chunks among them, and one window replaced whole and stored; its entry group and directory table stored against the child's (PREFIXED, FORMAT.md 5.3), whose group is itself stored against the parent's",
            bytes: grandchild,
            expect: Expectation::Valid(vec![grandchild_image.expectation().to_json(), tree(&model)]),
        },
        Vector {
            name: "chain-prefix-mismatch",
            description: "chain-grandchild.strata with one byte of the prefix_blake3 of its prefixed FILES_DIR changed (CRC fixed): the child's table it names is not the one it was written against, so that table is lost (parent-mismatch, FORMAT.md 5.3 rule 9), which costs fast lookup only",
            bytes: prefix_mismatch,
            expect: Expectation::Invalid {
                class: ParentMismatch,
                problems: vec![problem(ParentMismatch, dir_table.offset, Vec::new())],
                refused: Vec::new(),
            },
        },
        Vector {
            name: "chain-parent-missing",
            description: "an incremental archive whose CHAIN names chain-absent.strata, which is not beside it: every range that refers to it is lost",
            bytes: missing,
            expect: Expectation::Invalid {
                class: ParentMissing,
                problems: crate::normalise(missing_problems),
                refused: Vec::new(),
            },
        },
        Vector {
            name: "chain-parent-mismatch",
            description: "an incremental archive whose CHAIN records a binding that chain-parent.strata, beside it, does not give",
            bytes: mismatch,
            expect: Expectation::Invalid {
                class: ParentMismatch,
                problems: crate::normalise(mismatch_problems),
                refused: Vec::new(),
            },
        },
    ]
}
