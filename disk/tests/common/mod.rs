//! Helpers shared by the tests that make images with the real tools.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use strata_disk::filesystems::walk;
use strata_disk::{Disk, FileSystem, Node};

/// Whether tool `name` is installed; says so when it is not.
pub fn tool(name: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {name} is missing (scripts/ensure-tools.sh installs it)");
    }
    found
}

/// Runs `command` with sh; fails the test with its error output if it fails.
pub fn run(command: &str) {
    let out = Command::new("sh").arg("-c").arg(command).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The standard output of `command`, which must succeed.
pub fn output(command: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(command).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// The bytes of a multi-cluster file, the same in every test.
pub fn big_content() -> Vec<u8> {
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// A tree for FAT and NTFS: nested folders, a long file name with spaces on
/// a multi-cluster file, a small file, an empty one; files' mtimes on an even
/// second (FAT keeps 2-second steps).
pub fn windows_tree(root: &Path) {
    std::fs::create_dir_all(root.join("Docs/Deep/er")).unwrap();
    std::fs::write(root.join("Docs/readme.txt"), b"hello from a FAT or NTFS volume\n").unwrap();
    std::fs::write(root.join("Docs/Deep/er/A long file name with spaces.bin"), big_content()).unwrap();
    std::fs::write(root.join("short.TXT"), b"x\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    for file in ["Docs/readme.txt", "Docs/Deep/er/A long file name with spaces.bin", "short.TXT", "empty"] {
        run(&format!("touch -d '2020-05-06 07:08:10.5' {}", quoted(&root.join(file))));
    }
}

/// A FAT image of `kib` KiB made by mkfs.vfat with `options` (`-F 12` and
/// so on) and filled by mcopy from `src`; local time is UTC for mtools.
pub fn fat_image(dir: &Path, src: &Path, options: &str, kib: u64) -> PathBuf {
    let image = dir.join("fat.img");
    let _ = std::fs::remove_file(&image);
    run(&format!("mkfs.vfat {options} -n STRATA -i 1234ABCD -C {} {kib} >/dev/null", quoted(&image)));
    run(&format!("cd {} && TZ=UTC mcopy -s -m -i {} * ::/", quoted(src), quoted(&image)));
    image
}

/// Every node under the root of `fs`, by path.
pub fn all_nodes(fs: &dyn FileSystem, length: u64) -> Vec<(String, Node)> {
    let mut seen = Vec::new();
    walk(fs, b"", length, &mut |path, node| {
        seen.push((String::from_utf8_lossy(path).into_owned(), node.clone()));
        Ok(true)
    })
    .unwrap();
    seen
}

/// The content of the file at `path`.
pub fn content(fs: &dyn FileSystem, path: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    fs.read_file(path.as_bytes(), &mut |piece| {
        bytes.extend_from_slice(piece);
        Ok(())
    })
    .unwrap();
    bytes
}

pub fn disk_of(path: &Path) -> Rc<dyn Disk> {
    Rc::new(std::fs::read(path).unwrap())
}

/// An NTFS file system mounted through ntfs-3g (FUSE) for filling; unmounted,
/// and the ntfs-3g process waited for, when dropped.
pub struct NtfsMount {
    pub at: PathBuf,
    process: std::process::Child,
}

impl NtfsMount {
    /// Mounts `image` at `at`; `None` (said) where FUSE mounts cannot be made.
    pub fn new(image: &Path, at: &Path) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let process = Command::new("ntfs-3g")
            .arg(image)
            .arg(at)
            .args(["-o", "no_detach"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut mount = NtfsMount { at: at.to_path_buf(), process };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            if mounts.lines().any(|l| l.split(' ').nth(1) == Some(at.to_str().unwrap())) {
                return Some(mount);
            }
            if let Ok(Some(_)) = mount.process.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("SKIPPED: ntfs-3g cannot mount here (FUSE needs root and /dev/fuse)");
        let _ = mount.process.kill();
        let _ = mount.process.wait();
        std::mem::forget(mount);
        None
    }
}

impl Drop for NtfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
        let _ = self.process.wait();
    }
}

/// An NTFS image of `mib` MiB made by mkntfs and filled through ntfs-3g with
/// `src` (`cp -a`, so times are kept to 100 ns), the long file name given a
/// DOS 8.3 second name as Windows would; `None` where it cannot be mounted.
pub fn ntfs_image(dir: &Path, src: &Path, mib: u64) -> Option<PathBuf> {
    let image = dir.join("ntfs.img");
    run(&format!("truncate -s {mib}M {0} && mkntfs -F -Q -L Windows {0} >/dev/null 2>&1", quoted(&image)));
    let mount = NtfsMount::new(&image, &dir.join("ntfs-mnt"))?;
    run(&format!("cp -a {}/. {}/", quoted(src), quoted(&mount.at)));
    let long = mount.at.join("Docs/Deep/er/A long file name with spaces.bin");
    run(&format!("setfattr -n system.ntfs_dos_name -v 'ALONGF~1.BIN' {}", quoted(&long)));
    // cp -a set the folders' times before their content was copied in.
    run(&format!("cd {} && TZ=UTC touch -d '2021-02-03 04:05:06.7' Docs Docs/Deep Docs/Deep/er", quoted(&mount.at)));
    drop(mount);
    Some(image)
}
