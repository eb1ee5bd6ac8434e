//! Hard sources (issue 12): trees that a backup tool gets wrong first. Each
//! case builds, in a given folder, one kind of trouble: many entries in one
//! folder, a chain deeper than PATH_MAX, a huge sparse file, modes that must
//! be applied last, many hard links, times before 1970 and after 2262, hostile
//! names, ACLs and extended attributes. [`Size`] says how big: the CI size
//! runs in seconds, the full size is run by `scripts/hard-sources.sh`.
//!
//! Metadata is applied as a restore must apply it: content first, then owners,
//! then modes (a 0555 or 0000 folder after what is inside it), then times,
//! deepest first.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};

/// How big the cases are.
#[derive(Clone, Debug)]
pub struct Size {
    /// Entries in the one big folder.
    pub entries: usize,
    /// Levels of the directory chain (3,000 levels of `dd` are ~9,000 bytes).
    pub depth: usize,
    /// Apparent size of the big sparse file; 0 leaves it out.
    pub sparse_bytes: u64,
    /// Bytes of each of its four data pieces.
    pub sparse_piece: u64,
    /// Hard links to the handful of linked files.
    pub links: usize,
}

impl Size {
    pub fn ci() -> Size {
        Size { entries: 5_000, depth: 3_000, sparse_bytes: 1 << 30, sparse_piece: 4 << 10, links: 100 }
    }

    /// 200,000 entries, 1 TiB sparse with 10 MiB of data, 1,000 hard links.
    pub fn full() -> Size {
        Size { entries: 200_000, depth: 3_000, sparse_bytes: 1 << 40, sparse_piece: 2560 << 10, links: 1_000 }
    }

    /// `STRATA_HARD_SIZE=full` for [`Size::full`] (else [`Size::ci`]);
    /// `STRATA_HARD_SPARSE_BYTES` (a number, with K, M, G or T for powers of
    /// 1024) sets the sparse file's size, 0 to leave it out.
    pub fn from_env() -> Size {
        let mut size = match std::env::var("STRATA_HARD_SIZE").as_deref() {
            Ok("full") => Size::full(),
            Ok("ci") | Err(_) => Size::ci(),
            Ok(other) => panic!("STRATA_HARD_SIZE={other:?}: expected `ci` or `full`"),
        };
        if let Ok(text) = std::env::var("STRATA_HARD_SPARSE_BYTES") {
            size.sparse_bytes = parse_bytes(&text)
                .unwrap_or_else(|| panic!("STRATA_HARD_SPARSE_BYTES={text:?}: expected a number of bytes, like 1T"));
        }
        size
    }
}

fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'K' | 'k') => (&text[..i], 10),
        (i, 'M' | 'm') => (&text[..i], 20),
        (i, 'G' | 'g') => (&text[..i], 30),
        (i, 'T' | 't') => (&text[..i], 40),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The cases, each built by [`build`] into a folder of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// (a) `Size::entries` entries in one folder.
    ManyEntries,
    /// (b) A chain of `Size::depth` directories past PATH_MAX, a file at the bottom.
    DeepChain,
    /// (c) A file of `Size::sparse_bytes` with four data pieces, and smaller
    /// sparse files (all hole; a hole then data).
    Sparse,
    /// (d) 0555 and 0000 folders with content, a 0000 file, setuid, setgid
    /// and sticky files and folders owned by someone else. Needs root.
    Modes,
    /// (e) `Size::links` hard links to five files, across folders.
    HardLinks,
    /// (f) Times before 1970, to the nanosecond.
    OldTimes,
    /// (f') Times after 2262-04-11, past what an i64 of nanoseconds holds (and
    /// one before 1677-09-21, where the file system holds it).
    FutureTimes,
    /// (g) Newline, tab, backslash, invalid UTF-8, leading dash, 255 bytes.
    Names,
    /// (h) Default ACLs on folders (what is inside without), access ACLs, and
    /// `user.*` xattrs on files and folders (`trusted.*` on a symbolic link:
    /// Linux allows `user.*` on files and folders only).
    AclsAndXattrs,
}

impl Case {
    pub const ALL: [Case; 9] = [
        Case::ManyEntries,
        Case::DeepChain,
        Case::Sparse,
        Case::Modes,
        Case::HardLinks,
        Case::OldTimes,
        Case::FutureTimes,
        Case::Names,
        Case::AclsAndXattrs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::ManyEntries => "many_entries",
            Case::DeepChain => "deep_chain",
            Case::Sparse => "sparse",
            Case::Modes => "modes",
            Case::HardLinks => "hard_links",
            Case::OldTimes => "old_times",
            Case::FutureTimes => "future_times",
            Case::Names => "names",
            Case::AclsAndXattrs => "acls_and_xattrs",
        }
    }
}

/// What a build made that a check needs, and what it could not make here.
#[derive(Debug, Default)]
pub struct Built {
    /// What this machine or file system could not exercise, to say so.
    pub notes: Vec<String>,
}

/// Builds `case` at `size` in `dir` (an existing, empty folder).
pub fn build(case: Case, dir: &Path, size: &Size) -> Built {
    let mut tree = Tree::new(dir);
    match case {
        Case::ManyEntries => many_entries(&mut tree, size),
        Case::DeepChain => {
            let (_, xattr) = deep_chain(dir, size.depth, 500, b"at the bottom of the chain\n");
            if !xattr {
                tree.built.notes.push("no user xattrs here: user.x at the bottom of the chain not made".into());
            }
        }
        Case::Sparse => sparse(&mut tree, size),
        Case::Modes => modes(&mut tree),
        Case::HardLinks => hard_links(&mut tree, size),
        Case::OldTimes => old_times(&mut tree),
        Case::FutureTimes => future_times(&mut tree),
        Case::Names => names(&mut tree),
        Case::AclsAndXattrs => acls_and_xattrs(&mut tree),
    }
    let mut built = tree.finish();
    if case == Case::FutureTimes {
        check_future(dir, &mut built);
    }
    built
}

/// Seconds since 1970 of a UTC date (H. Hinnant's days_from_civil).
pub fn unix_seconds(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400
}

/// One thing made, and the metadata still to give it.
struct Made {
    path: PathBuf,
    is_link: bool,
    /// A second name of an inode: it gets nothing of its own.
    is_hardlink: bool,
    mode: u32,
    owner: Option<(u32, u32)>,
    time: (i64, u32),
}

/// What a case makes, metadata applied at the end by [`Tree::finish`].
struct Tree {
    root: PathBuf,
    made: Vec<Made>,
    is_root: bool,
    built: Built,
}

impl Tree {
    fn new(root: &Path) -> Tree {
        Tree {
            root: root.to_path_buf(),
            made: Vec::new(),
            is_root: rustix::process::geteuid().is_root(),
            built: Built::default(),
        }
    }

    fn path(&self, relative: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(relative))
    }

    /// Adds what was made at `relative`, with a time of its own (the
    /// nanoseconds differ from one entry to the next).
    fn add(&mut self, relative: &[u8], mode: u32, is_link: bool) -> &mut Made {
        let n = self.made.len() as i64;
        let time = (1_600_000_000 + n * 37, ((n * 123_456_789 + 1) % 1_000_000_000) as u32);
        let path = self.path(relative);
        self.made.push(Made { path, is_link, is_hardlink: false, mode, owner: None, time });
        self.made.last_mut().expect("just pushed")
    }

    fn dir(&mut self, relative: &[u8]) -> &mut Made {
        std::fs::create_dir(self.path(relative)).expect("mkdir");
        self.add(relative, 0o755, false)
    }

    fn file(&mut self, relative: &[u8], content: &[u8]) -> &mut Made {
        std::fs::write(self.path(relative), content).expect("write");
        self.add(relative, 0o644, false)
    }

    fn symlink(&mut self, relative: &[u8], target: &[u8]) -> &mut Made {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), self.path(relative)).expect("symlink");
        self.add(relative, 0o777, true)
    }

    fn hardlink(&mut self, relative: &[u8], to: &[u8]) {
        std::fs::hard_link(self.path(to), self.path(relative)).expect("link");
        self.add(relative, 0, false).is_hardlink = true;
    }

    fn fifo(&mut self, relative: &[u8]) -> &mut Made {
        let path = self.path(relative);
        rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .expect("mkfifo");
        self.add(relative, 0o644, false)
    }

    /// Owners, then modes, then times, each deepest (latest made) first; the
    /// folder itself last.
    fn finish(self) -> Built {
        for made in self.made.iter().rev().filter(|m| !m.is_hardlink) {
            made.apply_owner_and_mode(self.is_root);
        }
        for made in self.made.iter().rev().filter(|m| !m.is_hardlink) {
            set_times(&made.path, made.time);
        }
        set_times(&self.root, (1_650_000_000, 987_654_321));
        self.built
    }
}

impl Made {
    /// Its owner (as root), then its mode: an owner set after the mode would
    /// clear the set-id bits.
    fn apply_owner_and_mode(&self, is_root: bool) {
        if let (Some((uid, gid)), true) = (self.owner, is_root) {
            rustix::fs::chownat(
                rustix::fs::CWD,
                &self.path,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .expect("chown");
        }
        if !self.is_link {
            rustix::fs::chmodat(rustix::fs::CWD, &self.path, Mode::from_raw_mode(self.mode), AtFlags::empty())
                .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", self.mode, self.path.display()));
        }
    }
    fn mode(&mut self, mode: u32) -> &mut Made {
        self.mode = mode;
        self
    }
    fn owner(&mut self, uid: u32, gid: u32) -> &mut Made {
        self.owner = Some((uid, gid));
        self
    }
    fn time(&mut self, secs: i64, nsecs: u32) -> &mut Made {
        self.time = (secs, nsecs);
        self
    }
}

fn set_times(path: &Path, (secs, nsecs): (i64, u32)) {
    let t = Timespec { tv_sec: secs, tv_nsec: nsecs as _ };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps { last_access: t, last_modification: t },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("times of {}: {e}", path.display()));
}

/// A file's mtime as the file system holds it, in nanoseconds.
pub fn mtime_ns(path: &Path) -> i128 {
    let st = rustix::fs::lstat(path).expect("lstat");
    #[allow(clippy::unnecessary_cast)]
    let (secs, nsecs) = (st.st_mtime as i64, st.st_mtime_nsec as i64);
    i128::from(secs) * 1_000_000_000 + i128::from(nsecs)
}

/// Whether `user.*` extended attributes can be set on files in `dir`.
pub fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"").expect("probe");
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    std::fs::remove_file(&probe).expect("probe removed");
    ok
}

/// Bytes that are never all zero in a 4 KiB block, different for each seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

fn many_entries(tree: &mut Tree, size: &Size) {
    tree.dir(b"many");
    for i in 0..size.entries {
        let name = format!("many/e{i:06}");
        match i % 100 {
            // Some empty files, some symbolic links, some folders: the rest
            // small files, each with content of its own.
            0 => {
                tree.file(name.as_bytes(), b"");
            }
            1 => {
                tree.symlink(name.as_bytes(), format!("e{:06}", i - 1).as_bytes());
            }
            2 => {
                tree.dir(name.as_bytes());
            }
            _ => {
                tree.file(name.as_bytes(), format!("entry {i}\n").as_bytes());
            }
        }
    }
}

/// Makes `root/chain/dd/dd/…` `levels` directories deep through directory
/// handles (paths this long cannot be made by name), with `bottom` in
/// `bottom.txt` at the bottom and, every `every` levels, a `zz.txt` holding the
/// level's number, visited after the way down. Returns the bottom file's path
/// relative to `root` and whether it got the extended attribute `user.x`.
pub fn deep_chain(root: &Path, levels: usize, every: usize, bottom: &[u8]) -> (String, bool) {
    use rustix::fs::{mkdirat, openat, OFlags, XattrFlags};
    use std::io::Write;
    let mut dir = openat(rustix::fs::CWD, root, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let mut relative = String::new();
    let write = |dir: &std::os::fd::OwnedFd, name: &str, content: &[u8]| {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let mut file = std::fs::File::from(openat(dir, name, flags, Mode::from_raw_mode(0o644)).unwrap());
        file.write_all(content).unwrap();
        file
    };
    for level in 0..=levels {
        let name = if level == 0 { "chain" } else { "dd" };
        mkdirat(&dir, name, Mode::from_raw_mode(0o755)).unwrap();
        dir = openat(&dir, name, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        relative.push_str(if level == 0 { "chain" } else { "/dd" });
        if level % every == 0 {
            write(&dir, "zz.txt", level.to_string().as_bytes());
        }
    }
    let file = write(&dir, "bottom.txt", bottom);
    let xattr = match rustix::fs::fsetxattr(&file, "user.x", b"deep", XattrFlags::empty()) {
        Ok(()) => true,
        Err(rustix::io::Errno::NOTSUP) => false,
        Err(e) => panic!("setting user.x: {e}"),
    };
    relative.push_str("/bottom.txt");
    (relative, xattr)
}

/// The `zz.txt` files `deep_chain` made, as (path, content).
pub fn deep_chain_extras(levels: usize, every: usize) -> Vec<(String, String)> {
    (0..=levels)
        .filter(|level| level % every == 0)
        .map(|level| (format!("chain{}/zz.txt", "/dd".repeat(level)), level.to_string()))
        .collect()
}

/// Removes a tree that `std::fs::remove_dir_all` cannot (deeper than PATH_MAX,
/// folders of mode 0000) when dropped, however the test ends; GNU rm walks any
/// depth.
pub struct RemoveDeep(pub PathBuf);

impl Drop for RemoveDeep {
    fn drop(&mut self) {
        let rm = || std::process::Command::new("rm").arg("-rf").arg(&self.0).status();
        let _ = rm();
        // Root removes folders of mode 0000 as they are; anyone else must
        // open them first.
        if self.0.exists() {
            let _ = std::process::Command::new("chmod").arg("-R").arg("u+rwx").arg(&self.0).status();
            let _ = rm();
        }
    }
}

fn sparse(tree: &mut Tree, size: &Size) {
    tree.dir(b"sparse");
    if size.sparse_bytes == 0 {
        tree.built.notes.push("STRATA_HARD_SPARSE_BYTES=0: the big sparse file left out".into());
    } else {
        let (total, piece) = (size.sparse_bytes, size.sparse_piece);
        assert!(total >= 16 * piece + (2 << 20), "{total} bytes is too small for four pieces of {piece}");
        let align = |at: u64| at / 4096 * 4096;
        // Data at the start, at a third, at two thirds, and near the end, with
        // a hole after it: the file ends in a hole.
        let at = [0, align(total / 3), align(total / 3 * 2), align(total - piece - (1 << 20))];
        let path = tree.path(b"sparse/big");
        let file = std::fs::File::create(&path).expect("sparse file");
        for (i, &offset) in at.iter().enumerate() {
            file.write_all_at(&noise(piece as usize, i as u64), offset).expect("sparse data");
        }
        file.set_len(total).expect("sparse size");
        drop(file);
        tree.add(b"sparse/big", 0o640, false);
    }
    // All hole, and an odd size.
    let path = tree.path(b"sparse/all-hole");
    std::fs::File::create(&path).and_then(|f| f.set_len((3 << 20) + 123)).expect("all hole");
    tree.add(b"sparse/all-hole", 0o644, false);
    // A hole, then data up to an odd end.
    let path = tree.path(b"sparse/hole-then-data");
    let file = std::fs::File::create(&path).expect("file");
    file.write_all_at(&noise(5000, 9), 8 << 20).expect("data");
    drop(file);
    tree.add(b"sparse/hole-then-data", 0o644, false);
}

fn modes(tree: &mut Tree) {
    if !tree.is_root {
        tree.built.notes.push("not root: modes with other owners and 0000 folders need root; case skipped".into());
        return;
    }
    let other = (1234, 2345);
    // A read-only folder with files and folders inside, one of them read-only too.
    tree.dir(b"ro").mode(0o555);
    tree.file(b"ro/file", b"in a read-only folder\n");
    tree.dir(b"ro/sub");
    tree.file(b"ro/sub/file", b"deeper\n").mode(0o600);
    tree.dir(b"ro/sub/ro2").mode(0o555);
    tree.file(b"ro/sub/ro2/file", b"read-only in read-only\n").mode(0o444);
    // Nothing allowed to anyone.
    tree.file(b"zero-file", b"mode 0000\n").mode(0o000);
    tree.dir(b"zero-dir").mode(0o000);
    tree.file(b"zero-dir/file", b"inside a 0000 folder\n");
    tree.dir(b"zero-dir/sub").mode(0o000);
    tree.file(b"zero-dir/sub/file", b"inside two\n").mode(0o000);
    // Set-id and sticky files and folders, owned by someone else: an owner set
    // after the mode would clear the set-id bits.
    let is_root = tree.is_root;
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2755), ("sticky", 0o1777), ("suid-sgid", 0o6755)] {
        tree.file(name.as_bytes(), format!("#!/bin/sh\necho {name}\n").as_bytes()).mode(mode).owner(other.0, other.1);
        let dir = format!("{name}-dir");
        // The folder's mode now, before its content: what is made in a setgid
        // folder takes its group, and a folder its setgid bit too.
        tree.dir(dir.as_bytes()).mode(mode).owner(other.0, other.1).apply_owner_and_mode(is_root);
        tree.file(format!("{dir}/file").as_bytes(), name.as_bytes());
        // Recorded without the inherited setgid bit: it must come back so.
        tree.dir(format!("{dir}/sub").as_bytes()).mode(0o750);
        tree.file(format!("{dir}/sub/file").as_bytes(), b"two levels\n").owner(other.0, 0);
    }
    // Group-writable and odd combinations, and a FIFO.
    tree.file(b"g+w", b"").mode(0o664).owner(other.0, other.1);
    tree.file(b"exec-only", b"").mode(0o111);
    tree.fifo(b"fifo").mode(0o620).owner(other.0, other.1);
    tree.symlink(b"link-other-owner", b"suid").owner(other.0, other.1);
}

fn hard_links(tree: &mut Tree, size: &Size) {
    tree.dir(b"links");
    // Five files: some content, empty, large enough not to be packed.
    tree.dir(b"links/src");
    let contents: [Vec<u8>; 5] =
        [b"first\n".to_vec(), Vec::new(), noise(3 << 20, 5), b"fourth\n".to_vec(), noise(10_000, 6)];
    for (i, content) in contents.iter().enumerate() {
        tree.file(format!("links/src/t{i}").as_bytes(), content).mode(0o640 + i as u32);
    }
    if user_xattrs_supported(&tree.root) {
        xattr::set(tree.path(b"links/src/t0"), "user.linked", b"one inode, many names").expect("xattr");
    }
    // Links in ten folders that sort before `src` (so the walk meets a link
    // before the file it was made from), one read-only, and in `src` itself.
    for d in 0..10 {
        let made = tree.dir(format!("links/d{d}").as_bytes());
        if d == 9 {
            made.mode(0o555);
        }
    }
    for j in 0..size.links {
        let target = format!("links/src/t{}", j % 5);
        let name = match j % 11 {
            10 => format!("links/src/l{j:04}"),
            k => format!("links/d{}/l{j:04}", k.min(9)),
        };
        tree.hardlink(name.as_bytes(), target.as_bytes());
    }
}

fn old_times(tree: &mut Tree) {
    tree.dir(b"old").time(unix_seconds(1965, 3, 1), 5);
    // The earliest second ext4 holds: 1901-12-13 20:45:52.
    tree.file(b"old/1901-12-13-earliest-ext4", b"").time(-(1 << 31), 0);
    tree.file(b"old/1901-12-14", b"x").time(unix_seconds(1901, 12, 14), 0);
    tree.file(b"old/1901-12-14.999999999", b"y").time(unix_seconds(1901, 12, 14), 999_999_999);
    tree.file(b"old/1969-12-31T23-59-59.5", b"half a second before").time(-1, 500_000_000);
    tree.file(b"old/one-ns-before-1970", b"").time(-1, 999_999_999);
    tree.file(b"old/1970", b"").time(0, 0);
    tree.file(b"old/one-ns-after-1970", b"").time(0, 1);
    tree.dir(b"old/1950-dir").time(unix_seconds(1950, 6, 1), 250_000_000);
    tree.file(b"old/1950-dir/1960", b"inside").time(unix_seconds(1960, 1, 1), 1);
    tree.symlink(b"old/link-1969", b"1970").time(-1, 500_000_000);
    tree.fifo(b"old/fifo-1930").time(unix_seconds(1930, 1, 1), 42);
}

/// The last time an i64 of nanoseconds holds: 2262-04-11 23:47:16.854775807,
/// where tools that keep times that way (and earlier drafts of the format)
/// end.
const LAST: (i64, u32) = (9_223_372_036, 854_775_807);

/// The entries [`future_times`] makes outside the times an i64 of
/// nanoseconds holds, with their times: an archive records them exactly.
fn out_of_range() -> [(&'static [u8], (i64, u32)); 5] {
    [
        (b"future/one-ns-past", (LAST.0, LAST.1 + 1)),
        (b"future/2446-01-01", (unix_seconds(2446, 1, 1), 250_000_000)),
        (b"future/dir-2300", (unix_seconds(2300, 1, 1), 0)),
        (b"future/link-2263", (unix_seconds(2263, 1, 1), 7)),
        // 1677-09-21 00:12:43, 0.145224192 s before the earliest; ext4 keeps
        // it as 1901-12-13, its own earliest, tmpfs as it is.
        (b"future/before-1677", (-9_223_372_037, 0)),
    ]
}

/// Times past [`LAST`]; and that very nanosecond, which must come back exactly.
fn future_times(tree: &mut Tree) {
    tree.dir(b"future");
    tree.file(b"future/last-ns", b"the last nanosecond an archive holds").time(LAST.0, LAST.1);
    tree.file(b"future/normal", b"2020").time(unix_seconds(2020, 1, 1), 0);
    let [one_ns, year_2446, dir, link, before] = out_of_range();
    tree.file(one_ns.0, b"after 2262").time(one_ns.1 .0, one_ns.1 .1);
    tree.file(year_2446.0, b"after 2262").time(year_2446.1 .0, year_2446.1 .1);
    tree.dir(dir.0).time(dir.1 .0, dir.1 .1);
    tree.file(b"future/dir-2300/inside-2020", b"").time(unix_seconds(2020, 1, 1), 0);
    tree.symlink(link.0, b"normal").time(link.1 .0, link.1 .1);
    tree.file(before.0, b"before 1677").time(before.1 .0, before.1 .1);
}

/// Says which of the times [`future_times`] set the file system kept as
/// another time (ext4 holds 1901-12-13 to 2446-05-10, a file system with
/// 32-bit times 1901 to 2038, tmpfs any): the round trip then checks the time
/// kept.
fn check_future(dir: &Path, built: &mut Built) {
    for (path, (secs, nsecs)) in out_of_range() {
        let kept = mtime_ns(&dir.join(OsStr::from_bytes(path)));
        let wanted = i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
        if kept != wanted {
            built.notes.push(format!("the file system keeps {} as {kept} ns", String::from_utf8_lossy(path)));
        }
    }
}

fn names(tree: &mut Tree) {
    tree.dir(b"names");
    let long_ascii = vec![b'n'; 255];
    let long_dir = vec![b'd'; 255];
    let mut long_utf8 = "é".repeat(127).into_bytes();
    long_utf8.push(b'x');
    let files: Vec<Vec<u8>> = vec![
        b"new\nline".to_vec(),
        b"\nleading-newline".to_vec(),
        b"trailing-newline\n".to_vec(),
        b"tab\there".to_vec(),
        b"back\\slash".to_vec(),
        b"\\".to_vec(),
        b"\xff".to_vec(),
        b"caf\xc3".to_vec(),
        b"\xc3(".to_vec(),
        b"-rf".to_vec(),
        b"--help".to_vec(),
        b"-".to_vec(),
        b" leading space".to_vec(),
        b"trailing space ".to_vec(),
        b"carriage\rreturn".to_vec(),
        b"escape\x1b[31mred".to_vec(),
        b"del\x7f".to_vec(),
        b"glob*?[a]".to_vec(),
        b"...".to_vec(),
        b".hidden".to_vec(),
        b"%2F".to_vec(),
        long_ascii.clone(),
        long_utf8.clone(),
    ];
    for (i, name) in files.iter().enumerate() {
        let mut path = b"names/".to_vec();
        path.extend_from_slice(name);
        tree.file(&path, format!("file {i}\n").as_bytes());
    }
    // Folders with such names, with files inside.
    for (i, name) in [b"dir\nwith\nnewlines".to_vec(), b"dir\xff\xfe".to_vec(), long_dir].iter().enumerate() {
        let mut dir = b"names/".to_vec();
        dir.extend_from_slice(name);
        tree.dir(&dir);
        let mut inside = dir.clone();
        inside.push(b'/');
        inside.extend_from_slice(if i == 2 { &long_utf8 } else { b"-\n-" });
        tree.file(&inside, b"inside\n");
    }
    // Symbolic links named and pointing with the same bytes.
    tree.symlink(b"names/link\nname", b"new\nline");
    tree.symlink(b"names/link-\xff", b"\xff/../caf\xc3");
    tree.symlink(b"names/-link", b"--help");
}

fn acls_and_xattrs(tree: &mut Tree) {
    let root = tree.root.clone();
    let setfacl = |args: &str, relative: &[u8]| {
        let status = std::process::Command::new("setfacl")
            .args(args.split(' '))
            .arg(root.join(OsStr::from_bytes(relative)))
            .status()
            .expect("setfacl runs");
        status.success()
    };
    tree.dir(b"acl");
    // Made before the folder gets its default ACL: they have none.
    tree.file(b"acl/before", b"no ACL\n");
    tree.dir(b"acl/dir-before");
    tree.file(b"acl/access", b"an access ACL\n");
    let acls = setfacl("-d -m u:1234:rwx,g:2345:rx,o::-", b"acl");
    if !acls {
        tree.built.notes.push("this file system has no POSIX ACLs: ACLs not exercised".into());
    } else {
        assert!(setfacl("-m u:1234:r,g:2345:rw", b"acl/access"));
        // Made after: they inherit the default ACL. One has it stripped, so
        // that the extraction must remove what it would inherit.
        tree.file(b"acl/after-stripped", b"inherited, then removed\n");
        assert!(setfacl("-b", b"acl/after-stripped"));
        tree.file(b"acl/after-inherited", b"inherited\n");
        tree.dir(b"acl/sub-inherited");
        tree.file(b"acl/sub-inherited/deeper", b"inherited twice\n");
        tree.dir(b"acl/sub-no-default");
        assert!(setfacl("-k", b"acl/sub-no-default"));
        tree.dir(b"acl/sub-stripped");
        assert!(setfacl("-b", b"acl/sub-stripped"));
        tree.file(b"acl/sub-stripped/file", b"no ACL in a folder without one\n");
        // A folder with an access ACL only, files inside without.
        tree.dir(b"acl-access-only");
        assert!(setfacl("-m u:1234:rx", b"acl-access-only"));
        tree.file(b"acl-access-only/file", b"none here\n");
        // A default ACL on a folder holding a read-only folder.
        tree.dir(b"acl-ro");
        tree.dir(b"acl-ro/inner").mode(0o555);
        tree.file(b"acl-ro/inner/file", b"x\n");
        assert!(setfacl("-d -m u:1234:rx", b"acl-ro"));
    }
    tree.dir(b"xattrs");
    if !user_xattrs_supported(&tree.root) {
        tree.built.notes.push("no user xattrs on this file system: xattrs not exercised".into());
        return;
    }
    tree.file(b"xattrs/file", b"with xattrs\n");
    let file = tree.path(b"xattrs/file");
    xattr::set(&file, "user.plain", b"value").expect("xattr");
    xattr::set(&file, "user.empty", b"").expect("xattr");
    xattr::set(&file, "user.binary", &(0..=255u8).collect::<Vec<_>>()).expect("xattr");
    xattr::set(&file, "user.big", &noise(1000, 3)).expect("xattr");
    xattr::set(&file, "user.name with spaces\nand a newline", b"v").expect("xattr");
    tree.dir(b"xattrs/dir");
    xattr::set(tree.path(b"xattrs/dir"), "user.on-a-folder", b"d").expect("xattr");
    tree.file(b"xattrs/ro", b"xattrs and mode 0444\n").mode(0o444);
    xattr::set(tree.path(b"xattrs/ro"), "user.ro", b"r").expect("xattr");
    if acls {
        tree.file(b"xattrs/both", b"ACL and xattr\n");
        xattr::set(tree.path(b"xattrs/both"), "user.with-acl", b"b").expect("xattr");
        assert!(setfacl("-m u:4321:rw", b"xattrs/both"));
    }
    // Linux refuses user.* on a symbolic link; trusted.* (root only) is allowed.
    tree.symlink(b"xattrs/link", b"file");
    let link = tree.path(b"xattrs/link");
    if xattr::set(&link, "user.on-a-link", b"l").is_err() {
        if tree.is_root && xattr::set(&link, "trusted.on-a-link", b"l").is_ok() {
            tree.built.notes.push("user.* refused on a symbolic link (as Linux does): trusted.* used".into());
        } else {
            tree.built.notes.push("no xattr on a symbolic link could be set here".into());
        }
    }
}
