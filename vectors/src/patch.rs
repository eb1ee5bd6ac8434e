//! Patching the file-tree records of a built archive in place
//! (`spec/FORMAT.md` section 8): entry groups are tables stored column by
//! column, so a field of one entry is changed by decoding the group's table,
//! changing the row and encoding it again; the body keeps its length and its
//! CRCs are fixed. The vectors are written with plain tables
//! (`compress_tables` off) so that these edits apply.

use strata_format::files::{self, EntryGroup, ExtentListRow, GroupDir, GroupHead};
use strata_format::table::{decode_columns, encode_columns, row_width};
use strata_format::RecordType;

use crate::{of_type, refix_record, Rec};

/// Offsets of the fields of an entry row (FORMAT.md 8.3).
pub(crate) mod row {
    pub const FLAGS: usize = 1;
    pub const NAME_LENGTH: usize = 4;
    pub const XATTR_COUNT: usize = 9;
    pub const RDEV_MAJOR: usize = 19;
    pub const MTIME_NSEC: usize = 35;
    pub const PARENT_ID: usize = 39;
    pub const SIZE: usize = 47;
    pub const LINK_ID: usize = 55;
    pub const EXTENT_COUNT: usize = 63;
    pub const DIGEST: usize = 71;
}

/// The tree's groups (`FILES_ENTRIES` records) with their heads, as
/// written (the heads are read as they are, even after an edit broke them).
pub(crate) fn group_heads(bytes: &[u8]) -> Vec<(Rec, GroupHead)> {
    of_type(bytes, RecordType::FilesEntries)
        .into_iter()
        .map(|rec| {
            let head =
                GroupHead::decode(bytes[rec.body_start..rec.body_start + GroupHead::SIZE].try_into().expect("56"));
            (rec, head)
        })
        .collect()
}

/// The groups, parsed.
pub(crate) fn groups(bytes: &[u8]) -> Vec<(Rec, EntryGroup)> {
    of_type(bytes, RecordType::FilesEntries)
        .into_iter()
        .map(|rec| (rec, files::parse_group(&bytes[rec.body_start..rec.body_end]).expect("a group not yet broken")))
        .collect()
}

/// The group holding entry `id` and the entry's row in it.
pub(crate) fn entry_at(bytes: &[u8], id: u64) -> (Rec, usize) {
    for (rec, head) in group_heads(bytes) {
        if head.first_id <= id && id < head.first_id + u64::from(head.count) {
            return (rec, (id - head.first_id) as usize);
        }
    }
    panic!("the tree has no entry {id}");
}

/// The id of the entry named `name` (the first of that name), and its group.
pub(crate) fn entry_named(bytes: &[u8], name: &[u8]) -> (Rec, u64) {
    for (rec, group) in groups(bytes) {
        for entry in group.entries.iter().flatten() {
            if entry.name == name {
                return (rec, entry.entry_id);
            }
        }
    }
    panic!("no entry named {}", String::from_utf8_lossy(name));
}

/// A group's body taken apart: the head, the extent list, the rows
/// (row-major, decoded from their columns), the names and the strings.
pub(crate) struct RawGroup {
    pub head: GroupHead,
    pub list: Vec<u8>,
    pub rows: Vec<u8>,
    pub width: usize,
    pub names: Vec<u8>,
    pub strings: Vec<u8>,
}

impl RawGroup {
    fn parse(body: &[u8]) -> RawGroup {
        let head = GroupHead::decode(body[..GroupHead::SIZE].try_into().expect("56 bytes"));
        let columns = files::entry_columns(head.captured);
        let width = row_width(&columns);
        let list_end = GroupHead::SIZE + head.list_count as usize * ExtentListRow::SIZE;
        let table_end = list_end + head.count as usize * width;
        let names_end = table_end + head.names_length as usize;
        let rows = decode_columns(&body[list_end..table_end], head.count as usize, &columns).expect("a table");
        RawGroup {
            head,
            list: body[GroupHead::SIZE..list_end].to_vec(),
            rows,
            width,
            names: body[table_end..names_end].to_vec(),
            strings: body[names_end..].to_vec(),
        }
    }

    /// The body again; the head as it is (a lie told there stays).
    fn encode(&self) -> Vec<u8> {
        let mut body = self.head.encode().to_vec();
        body.extend_from_slice(&self.list);
        encode_columns(&self.rows, &files::entry_columns(self.head.captured), &mut body);
        body.extend_from_slice(&self.names);
        body.extend_from_slice(&self.strings);
        body
    }

    /// Row `n`.
    pub fn row(&mut self, n: usize) -> &mut [u8] {
        &mut self.rows[n * self.width..(n + 1) * self.width]
    }

    /// Where row `n`'s name is in the names area.
    pub fn name_range(&self, n: usize) -> std::ops::Range<usize> {
        let at: usize = (0..n).map(|i| usize::from(self.rows[i * self.width + row::NAME_LENGTH])).sum();
        at..at + usize::from(self.rows[n * self.width + row::NAME_LENGTH])
    }
}

/// Edits the group of record `rec` in place: its body keeps its length, its
/// CRCs are fixed.
pub(crate) fn edit_group(bytes: &mut [u8], rec: Rec, edit: impl FnOnce(&mut RawGroup)) {
    let mut group = RawGroup::parse(&bytes[rec.body_start..rec.body_end]);
    edit(&mut group);
    let body = group.encode();
    assert_eq!(body.len(), rec.body_end - rec.body_start, "a group edited in place keeps its length");
    bytes[rec.body_start..rec.body_end].copy_from_slice(&body);
    refix_record(bytes, rec.offset);
}

/// Sets the bytes at `field` of entry `id`'s row (an offset of [`row`]).
pub(crate) fn set_row(bytes: &mut [u8], id: u64, field: usize, value: &[u8]) {
    let (rec, n) = entry_at(bytes, id);
    edit_group(bytes, rec, |g| g.row(n)[field..field + value.len()].copy_from_slice(value));
}

/// The u64 at `field` of entry `id`'s row.
pub(crate) fn row_u64(bytes: &[u8], id: u64, field: usize) -> u64 {
    let (rec, n) = entry_at(bytes, id);
    let mut group = RawGroup::parse(&bytes[rec.body_start..rec.body_end]);
    u64::from_le_bytes(group.row(n)[field..field + 8].try_into().expect("8 bytes"))
}

/// The `FILES_DIR` records with their tables.
pub(crate) fn dir_tables(bytes: &[u8]) -> Vec<(Rec, GroupDir)> {
    of_type(bytes, RecordType::FilesDir)
        .into_iter()
        .map(|rec| (rec, GroupDir::parse(&bytes[rec.body_start..rec.body_end]).expect("a table not yet broken")))
        .collect()
}

/// Writes `table` over the record `rec`, which it must fit exactly.
pub(crate) fn rewrite_dir(bytes: &mut [u8], rec: Rec, table: &GroupDir) {
    let body = table.encode();
    assert_eq!(body.len(), rec.body_end - rec.body_start, "a table rewritten in place keeps its length");
    bytes[rec.body_start..rec.body_end].copy_from_slice(&body);
    refix_record(bytes, rec.offset);
}

/// The `FILES_DIR` of the group holding directory `id`.
pub(crate) fn dir_table_of(bytes: &[u8], id: u64) -> (Rec, GroupDir) {
    dir_tables(bytes).into_iter().find(|(_, t)| t.locator(id).is_some()).expect("every directory has a locator")
}

/// Renames entry `id` in place (the same length) in its group and in the
/// fence that names it, if any (the first entry of a run in a group), so
/// the tables agree with the entries: the defect is the name's alone.
pub(crate) fn rename(bytes: &mut [u8], id: u64, to: &[u8]) {
    let (rec, n) = entry_at(bytes, id);
    edit_group(bytes, rec, |g| {
        let range = g.name_range(n);
        assert_eq!(range.len(), to.len(), "a rename in place keeps the name's length");
        g.names[range].copy_from_slice(to);
    });
    for (rec, mut table) in dir_tables(bytes) {
        let mut changed = false;
        for (fence, name) in &mut table.fences {
            if fence.first_child_id == id {
                *name = to.to_vec();
                changed = true;
            }
        }
        if changed {
            rewrite_dir(bytes, rec, &table);
        }
    }
}

/// The `FILES_EXTENTS` records, each with the index of its first extent
/// and its extents.
pub(crate) fn extent_records(bytes: &[u8]) -> Vec<(Rec, files::FileExtents)> {
    of_type(bytes, RecordType::FilesExtents)
        .into_iter()
        .map(|rec| (rec, files::parse_file_extents(&bytes[rec.body_start..rec.body_end]).expect("valid extents")))
        .collect()
}

/// Edits every extent of regular file `id` (its only copy, FORMAT.md 8.2),
/// fixing the CRCs of the records it touches; the record keeps its length.
pub(crate) fn edit_file_extents(bytes: &mut [u8], id: u64, edit: impl Fn(&mut files::FileExtent)) {
    for (rec, parsed) in extent_records(bytes) {
        if !parsed.extents.iter().any(|e| e.entry_id == id) {
            continue;
        }
        let mut extents = parsed.extents.clone();
        for e in extents.iter_mut().filter(|e| e.entry_id == id) {
            edit(e);
        }
        let body = files::encode_file_extents(parsed.head.section_id, parsed.head.first_index, &extents);
        assert_eq!(body.len(), rec.body_end - rec.body_start);
        bytes[rec.body_start..rec.body_end].copy_from_slice(&body);
        refix_record(bytes, rec.offset);
    }
}

/// The extents of regular file `id`.
pub(crate) fn file_extents(bytes: &[u8], id: u64) -> Vec<files::FileExtent> {
    extent_records(bytes).into_iter().flat_map(|(_, r)| r.extents).filter(|e| e.entry_id == id).collect()
}
