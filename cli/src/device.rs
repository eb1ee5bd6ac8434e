//! Block devices: refuse to image or overwrite one that is mounted read-write.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// If `path` is a block device mounted read-write, where it is mounted.
pub fn mounted_read_write(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mount-point options ...
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, mount_point, options) = (fields.get(2)?, fields.get(4)?, fields.get(5)?);
        let read_write = options.split(',').any(|o| o == "rw");
        (*dev == format!("{major}:{minor}") && read_write).then(|| mount_point.to_string())
    })
}

/// Fails unless `path` is not a read-write mounted device, or `force` is given.
pub fn refuse_if_mounted(path: &Path, force: bool, doing: &str) -> Result<(), crate::Failure> {
    if let Some(mount_point) = mounted_read_write(path) {
        if !force {
            return Err(crate::Failure::fatal(format!(
                "refusing to {doing} {}: it is mounted read-write on {mount_point} (unmount it, or pass --force)",
                path.display()
            )));
        }
    }
    Ok(())
}
