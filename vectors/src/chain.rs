//! Vectors of incremental archives (`spec/FORMAT.md` section 15): a parent, a
//! child and a grandchild that refer to their ancestors' chunks, and children
//! whose parent is missing or does not bind. Each child's ancestors are other
//! vectors of the manifest (`parents`), found beside it by name.

use strata_reader::Archive;
use strata_writer::{ArchiveWriter, ChainBase, NoProgress, ParentFacts, SliceSource};

use crate::trees::{expected_entries, materialise, standard_tree, tree_options, TreeModel};
use crate::{disk_ranges, problem, Expectation, ImageModel, Segment, Vector, CHUNK};

const CHILD_UUID: [u8; 16] = *b"strata-vectors-2";
const GRANDCHILD_UUID: [u8; 16] = *b"strata-vectors-3";

/// The ancestors each chain vector needs beside it, for the manifest.
pub(crate) fn parents_of(name: &str) -> &'static [&'static str] {
    match name {
        "chain-child" | "chain-parent-mismatch" => &["chain-parent.strata"],
        "chain-grandchild" => &["chain-child.strata", "chain-parent.strata"],
        _ => &[],
    }
}

/// Five windows and a short one; `changed` replaces windows by new random ones.
fn image(changed: &[(usize, u64)]) -> ImageModel {
    let mut windows = vec![
        Segment::Text(CHUNK),
        Segment::Random(21, CHUNK),
        Segment::Repeat(0x5A, CHUNK),
        Segment::Random(22, CHUNK),
        Segment::Random(23, CHUNK),
        Segment::Text(3_000),
    ];
    for &(window, seed) in changed {
        windows[window] = Segment::Random(seed, CHUNK);
    }
    ImageModel::new("disk", windows)
}

/// Writes an archive with UUID `uuid`, a child of `base` when given, holding
/// `image` and, when given, the tree `model` as section "tree".
fn build(uuid: [u8; 16], base: Option<ChainBase>, image: &ImageModel, model: Option<&TreeModel>) -> Vec<u8> {
    let mut options = crate::vector_options(CHUNK);
    options.archive_uuid = uuid;
    let mut writer = match base {
        Some(base) => ArchiveWriter::new_child(Vec::new(), options, base),
        None => ArchiveWriter::new(Vec::new(), options),
    }
    .expect("vector options are valid");
    let (bytes, _) = image.materialise();
    writer.add_image(image.name, &mut SliceSource::new(&bytes), &NoProgress).expect("writing to memory");
    if let Some(model) = model {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().join("tree");
        materialise(model, &root).expect("the tree model builds on this file system");
        let summary = writer.add_tree("tree", &root, &tree_options(), &NoProgress).expect("the model is readable");
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

/// The image ranges of a child that refer to an ancestor.
fn ancestor_ranges(bytes: &[u8]) -> Vec<crate::Affects> {
    disk_ranges(bytes, |chunk_ref| strata_format::ChunkRef::split(chunk_ref).is_ancestor())
}

pub(crate) fn vectors() -> Vec<Vector> {
    use strata_format::ErrorClass::*;
    let model = standard_tree();
    let tree = |m: &TreeModel| serde_json::json!({"kind": "files", "name": "tree", "entries": expected_entries(m)});
    let parent_image = image(&[]);
    let parent = build(crate::UUID, None, &parent_image, Some(&model));
    let child_image = image(&[(1, 31)]);
    let child = build(CHILD_UUID, Some(base_of("chain-parent.strata", &parent)), &child_image, Some(&model));
    let grandchild_image = image(&[(1, 31), (3, 32)]);
    let grandchild =
        build(GRANDCHILD_UUID, Some(base_of("chain-child.strata", &child)), &grandchild_image, Some(&model));
    assert!(
        crate::image_extents(&grandchild).iter().any(|e| strata_format::ChunkRef::split(e.2).archive == 2),
        "the grandchild refers to its grandparent"
    );
    // Children of the parent whose CHAIN names a file that is not there, or
    // records a binding the parent does not give.
    let mut absent = base_of("chain-absent.strata", &parent);
    absent.chain.ancestors[0].name = b"chain-absent.strata".to_vec();
    let missing = build(CHILD_UUID, Some(absent), &child_image, None);
    let mut wrong = base_of("chain-parent.strata", &parent);
    wrong.chain.ancestors[0].binding[0] ^= 1;
    let mismatch = build(CHILD_UUID, Some(wrong), &child_image, None);
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
            description: "an incremental archive (feature bit 1) whose parent is chain-parent.strata: one image window changed and stored, the others and the whole tree's content referred to in the parent",
            bytes: child,
            expect: Expectation::Valid(vec![child_image.expectation().to_json(), tree(&model)]),
        },
        Vector {
            name: "chain-grandchild",
            description: "a chain of depth 2 (chain-child.strata, then chain-parent.strata): references into both ancestors and one window stored",
            bytes: grandchild,
            expect: Expectation::Valid(vec![grandchild_image.expectation().to_json(), tree(&model)]),
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
