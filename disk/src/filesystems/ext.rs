//! ext2, ext3 and ext4 through the ext4-view crate.
//!
//! ext4-view gives modes, owners, times, sizes, symbolic links and content;
//! it does not give inode numbers, link counts, device numbers or extended
//! attributes, so hard links read as separate files and device nodes have no
//! numbers (extraction refuses them rather than make wrong ones).

use std::rc::Rc;

use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType, Metadata};

use super::{trim, FileSystem, FsInfo, Node, NodeKind};
use crate::{Disk, Error, ErrorKind};

/// The volume as ext4-view reads it: positional reads within its bounds.
struct VolumeReader {
    disk: Rc<dyn Disk>,
    start: u64,
    length: u64,
}

impl Ext4Read for VolumeReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        if start_byte.checked_add(dst.len() as u64).is_none_or(|end| end > self.length) {
            return Err(format!("a read at byte {start_byte} of the volume runs past its end").into());
        }
        Ok(self.disk.read_exact_at(self.start + start_byte, dst)?)
    }
}

pub(crate) struct Ext {
    fs: Ext4,
    info: FsInfo,
    start: u64,
}

impl Ext {
    pub(crate) fn open(disk: Rc<dyn Disk>, start: u64, length: u64, info: FsInfo) -> Result<Self, Error> {
        let fs = Ext4::load(Box::new(VolumeReader { disk, start, length })).map_err(|e| {
            Error::new(ErrorKind::Damaged, format!("{} file system", info.kind.name()), e.to_string()).at(start)
        })?;
        Ok(Ext { fs, info, start })
    }

    fn fail(&self, path: &[u8], e: Ext4Error) -> Error {
        let kind = match e {
            Ext4Error::NotFound | Ext4Error::NotADirectory | Ext4Error::IsADirectory => ErrorKind::NotFound,
            Ext4Error::Io(_) => ErrorKind::Io,
            _ => ErrorKind::Damaged,
        };
        let shown = String::from_utf8_lossy(path);
        Error::new(kind, format!("/{shown} in the {} file system", self.info.kind.name()), e.to_string()).at(self.start)
    }

    /// `/path`, as ext4-view takes paths.
    fn absolute(path: &[u8]) -> Vec<u8> {
        let mut absolute = vec![b'/'];
        absolute.extend_from_slice(trim(path));
        absolute
    }

    fn node_of(&self, path: &[u8], name: &[u8], meta: &Metadata) -> Result<Node, Error> {
        let kind = match meta.file_type() {
            FileType::Regular => NodeKind::File,
            FileType::Directory => NodeKind::Directory,
            FileType::Symlink => NodeKind::Symlink,
            FileType::CharacterDevice => NodeKind::CharDevice,
            FileType::BlockDevice => NodeKind::BlockDevice,
            FileType::Fifo => NodeKind::Fifo,
            FileType::Socket => NodeKind::Socket,
        };
        let target = if kind == NodeKind::Symlink {
            let absolute = Self::absolute(path);
            let target = self.fs.read_link(absolute.as_slice()).map_err(|e| self.fail(path, e))?;
            AsRef::<[u8]>::as_ref(&target.as_path()).to_vec()
        } else {
            Vec::new()
        };
        let time = |t: ext4_view::Timestamp| (t.seconds(), t.nanoseconds());
        Ok(Node {
            name: name.to_vec(),
            kind,
            mode: u32::from(meta.mode()),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            mtime: time(meta.modified()),
            atime: time(meta.accessed()),
            ctime: None,
            btime: meta.created().map(time),
            target,
            // ext4-view does not give inode numbers.
            id: None,
        })
    }
}

impl FileSystem for Ext {
    fn info(&self) -> &FsInfo {
        &self.info
    }

    fn node(&self, path: &[u8]) -> Result<Node, Error> {
        let absolute = Self::absolute(path);
        let meta = self.fs.symlink_metadata(absolute.as_slice()).map_err(|e| self.fail(path, e))?;
        let name = trim(path).rsplit(|&b| b == b'/').next().unwrap_or_default();
        self.node_of(path, name, &meta)
    }

    fn for_each_child(&self, path: &[u8], visit: &mut dyn FnMut(Node) -> Result<(), Error>) -> Result<(), Error> {
        let absolute = Self::absolute(path);
        let entries = self.fs.read_dir(absolute.as_slice()).map_err(|e| self.fail(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.fail(path, e))?;
            let name = entry.file_name();
            let name: &[u8] = name.as_ref();
            if name == b"." || name == b".." {
                continue;
            }
            let child = super::join(trim(path), name);
            let meta = entry.metadata().map_err(|e| self.fail(&child, e))?;
            visit(self.node_of(&child, name, &meta)?)?;
        }
        Ok(())
    }

    fn read_file(&self, path: &[u8], piece: &mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Result<(), Error> {
        let absolute = Self::absolute(path);
        let mut file = self.fs.open(absolute.as_slice()).map_err(|e| self.fail(path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read_bytes(&mut buf).map_err(|e| self.fail(path, e))?;
            if n == 0 {
                return Ok(());
            }
            piece(&buf[..n])?;
        }
    }
}
