//! Incremental archives in the CLI (`spec/FORMAT.md` section 15): where the
//! ancestors of a child are looked for (`--parent`, repeatable, and the
//! child's folder), and what `create --parent` takes from its parent.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use strata_format::RecordType;
use strata_reader::{Archive, ParentSearch, Section};
use strata_writer::{ChainBase, FilesCache, ParentFacts, ParentTables, TablePrefix};

use crate::Failure;

/// The `--parent` files given on the command line.
static PARENT_FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Records the `--parent` files of this run (once, from `main`).
pub fn set_parent_files(files: Vec<PathBuf>) {
    let _ = PARENT_FILES.set(files);
}

/// The `--parent` files of this run.
pub fn parent_files() -> &'static [PathBuf] {
    PARENT_FILES.get().map_or(&[], Vec::as_slice)
}

/// Where the ancestors of the archive at `archive` are looked for: the
/// `--parent` files first (matched by UUID), then the names the child records,
/// beside it.
pub fn search_for(archive: &Path) -> ParentSearch {
    parent_files().iter().fold(ParentSearch::beside(archive), |search, file| search.with_file(file))
}

/// What a child of the archive at `parent_path` is built on: its chain (the
/// parent first, then the parent's own ancestors), and every chunk it may
/// refer to, by identity.
pub fn chain_base(parent_path: &Path, parent: &Archive<File>) -> Result<ChainBase, Failure> {
    let shown = parent_path.display();
    let name = parent_path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
    let local_chunks = parent
        .local_chunks()
        .map_err(|e| Failure::fatal(format!("--parent {shown}: its chunks cannot be listed: {e}")))?;
    ChainBase::from_parent(ParentFacts {
        name,
        uuid: parent.header().archive_uuid,
        binding: parent.binding(),
        archive_length: parent.size(),
        chain: parent.chain().cloned(),
        local_chunks,
        ancestor_chunks: parent.ancestor_chunks(),
    })
    .map_err(|e| Failure::fatal(format!("--parent {shown}: {e}")))
}

/// The tables of a parent's file-tree section, read one record at a time,
/// which the child's section of the same name is stored against (FORMAT.md
/// 5.3, 15.5).
pub struct ParentTreeTables {
    pub archive: std::sync::Arc<Archive<File>>,
    pub section: String,
}

impl ParentTables for ParentTreeTables {
    fn table(&self, record_type: RecordType, first_id: u64) -> Option<TablePrefix> {
        let tree = self.archive.tree_section(&self.section)?;
        let row = &tree.groups[tree.group_of(first_id)?];
        let record = match record_type {
            RecordType::FilesEntries => row.entries_record,
            RecordType::FilesDir if row.dir_record != 0 => row.dir_record,
            _ => return None,
        };
        // A parent table that cannot be read leaves the child's stored whole.
        let body = self.archive.table_body(record, record_type).ok()?;
        Some(TablePrefix { record, body })
    }
}

/// The files cache of the parent's file-tree section `name` (FORMAT.md 15.5):
/// `None` when the parent has no tree of that name.
pub fn files_cache(parent_path: &Path, parent: &Archive<File>, name: &str) -> Result<Option<FilesCache>, Failure> {
    let Some(tree) = parent.sections().iter().find_map(|s| match s {
        Section::Tree(tree) if tree.name == name => Some(tree),
        _ => None,
    }) else {
        return Ok(None);
    };
    let mut cache = FilesCache::new(parent.header().created_ns);
    let captured = tree.begin.captured;
    parent
        .walk_tree(tree, |mut found| {
            // Entries carry only their extent_count: a file's extents are
            // found in the FILES_EXTENTS records (FORMAT.md 10.1 step 5),
            // records read lately being kept, so a walk in order reads each
            // about once.
            if found.entry.kind == strata_format::files::EntryKind::File && found.entry.extent_count > 0 {
                found.entry.extents = parent.file_extents(tree, &found.entry)?;
            }
            cache.offer(&found.path, &found.entry, captured);
            Ok(())
        })
        .map_err(|e| {
            Failure::fatal(format!("--parent {}: its tree {name:?} cannot be read: {e}", parent_path.display()))
        })?;
    Ok(Some(cache))
}

/// The parent's image of one name, as a child's image is written against it
/// (FORMAT.md 15.5): its bytes and the chunks holding them, window by window.
pub struct ParentImageView {
    archive: std::sync::Arc<Archive<File>>,
    name: String,
}

impl ParentImageView {
    /// The parent's image `name`, when it has one of that name cut into
    /// windows of `chunk_size` (else the child's windows would not line up).
    pub fn new(archive: &std::sync::Arc<Archive<File>>, name: &str, chunk_size: u32) -> Option<ParentImageView> {
        let image = archive.image(name).ok().filter(|image| image.section().chunk_size == chunk_size)?;
        Some(ParentImageView { archive: archive.clone(), name: image.name().to_string() })
    }
}

impl strata_writer::ParentImage for ParentImageView {
    fn window(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Option<Vec<strata_writer::ParentPart>> {
        let image = self.archive.image(&self.name).ok()?;
        if offset.checked_add(len as u64)? > image.len() {
            return None;
        }
        buf.clear();
        buf.resize(len, 0);
        // Damage in the parent: the child stores its window whole.
        let pieces = image.read_pieces(offset, buf).ok()?;
        pieces.into_iter().map(parent_part).collect()
    }
}

/// A piece of the parent's image as its child refers to it: a chunk of the
/// parent, or of an ancestor, one archive number further (FORMAT.md 15.1).
/// `None` for a lost piece: those bytes are not the source's.
pub fn parent_part(piece: strata_reader::ImagePiece) -> Option<strata_writer::ParentPart> {
    use strata_format::{ChunkRef, ExtentKind};
    let chunk = match piece.kind {
        ExtentKind::Zero | ExtentKind::Free => None,
        ExtentKind::Lost => return None,
        ExtentKind::Data(chunk_ref) => Some(strata_writer::ParentChunk {
            chunk_ref: ChunkRef::split(chunk_ref).rebased().join(),
            chunk_offset: u32::try_from(piece.chunk_offset).ok()?,
            blake3: piece.blake3,
        }),
    };
    Some(strata_writer::ParentPart { length: piece.length, chunk })
}
