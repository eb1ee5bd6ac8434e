//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const UUID: &str = "0123456789abcdef0123456789abcdef";

pub fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

/// Runs `strata ARGS`, returning its output; stdin is empty.
pub fn run(args: &[&str]) -> Output {
    strata().args(args).stdin(Stdio::null()).output().expect("the strata binary runs")
}

pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "strata {args:?} failed with {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether an external tool exists; tests that need a missing one fail loudly
/// rather than pass silently, unless STRATA_ALLOW_MISSING_TOOLS is set.
pub fn require_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("STRATA_ALLOW_MISSING_TOOLS").is_some(),
            "{name} is not installed (the test script installs it; set STRATA_ALLOW_MISSING_TOOLS=1 to skip)"
        );
    }
    found
}

pub fn sh(command: &str) {
    let status = Command::new("sh").args(["-c", command]).status().expect("sh runs");
    assert!(status.success(), "`{command}` failed");
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

pub fn file_blake3(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("readable");
    blake3::hash(&bytes).to_hex().to_string()
}

/// Bytes allocated on disk for a file (st_blocks * 512).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("exists").blocks() * 512
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

pub mod archive;
pub mod hard_tree;
pub mod manifest;

pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Recomputes the body and header CRCs of the record at `at`, so that a field
/// changed in its body is the defect a reader meets.
pub fn fix_crcs(bytes: &mut [u8], at: usize) {
    let length = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap()) as usize;
    let body = strata_format::crc32c(&bytes[at + 32..at + 32 + length]);
    bytes[at + 24..at + 28].copy_from_slice(&body.to_le_bytes());
    let header = strata_format::crc32c(&bytes[at..at + 28]);
    bytes[at + 28..at + 32].copy_from_slice(&header.to_le_bytes());
}

/// Deterministic bytes that do not compress.
pub fn noise(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes `archive` holding `image` as the image section `disk`, in chunks of
/// `chunk_size` (as `--chunk-size` takes it).
pub fn create_image_archive(archive: &Path, image: &Path, chunk_size: &str) {
    let image = format!("disk={}", path_str(image));
    run_ok(&["create", path_str(archive), "--image", &image, "--chunk-size", chunk_size, "--quiet"]);
}
