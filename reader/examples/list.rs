//! Lists a file tree like `ls -l`, entry by entry, without reading any file
//! content: every path with its kind, mode, owner, size, time and flags. With
//! PATH, that entry and what is below it, through the directory tables.
//!
//! ```text
//! cargo run -p strata-reader --example list -- ARCHIVE TREE [PATH]
//! cargo run -p strata-reader --example list -- spec/vectors/tree-small.strata tree docs
//! ```

use std::io::Write;

use strata_reader::Archive;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (archive, tree, path) = match &args[..] {
        [archive, tree] => (archive, tree, None),
        [archive, tree, path] => (archive, tree, Some(path.as_str())),
        _ => return Err("usage: list ARCHIVE TREE [PATH]".into()),
    };
    list(archive, tree, path, &mut std::io::stdout().lock())
}

pub fn list(path: &str, tree: &str, below: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let archive = Archive::new(std::fs::File::open(path)?)?;
    let tree = archive.tree(tree)?;
    let entries: Box<dyn Iterator<Item = _>> = match below {
        None => Box::new(tree.entries()),
        Some(path) => Box::new(tree.subtree(path)?.ok_or(format!("{path}: not in {}", tree.name()))?),
    };
    for entry in entries {
        let entry = entry?;
        let owner = |name: Option<&[u8]>, id: u32| name.map_or(id.to_string(), |n| text(n).into_owned());
        let size = entry.device().map_or(entry.size().to_string(), |(major, minor)| format!("{major},{minor}"));
        write!(
            out,
            "{} {:04o} {}/{} {size:>8} {} ",
            entry.kind().letter(),
            entry.mode(),
            owner(entry.user(), entry.uid()),
            owner(entry.group(), entry.gid()),
            entry.mtime()
        )?;
        let path = if entry.path().is_empty() { b"." } else { entry.path() };
        write!(out, "{}", text(path))?;
        if let Some(target) = entry.symlink_target() {
            write!(out, " -> {}", text(target))?;
        }
        if entry.is_hard_link() {
            // Found by id: a few record reads, no walk.
            let file = tree.link_target(&entry)?.expect("a hard link has one");
            write!(out, " link to {}", text(file.path()))?;
        }
        for (set, flag) in [
            (entry.is_unreadable(), "unreadable at backup"),
            (entry.changed_while_read(), "changed while read"),
            (entry.lost_in_salvage(), "lost in salvage"),
        ] {
            if set {
                write!(out, " [{flag}]")?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Names are bytes; shown as UTF-8 where they are.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}
