//! `strata`: create, inspect, verify and restore Strata archives.
//!
//! Exit codes (every command): 0 success; 1 finished but damage was found or
//! something was refused or warned about; 2 usage error, I/O failure, or nothing
//! usable.

mod atomic;
mod cleanup;
mod create;
mod device;
mod files;
mod inspect;
mod output;
mod restore;
mod salvage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Strata: one open format for system images and backups.
#[derive(Parser)]
#[command(name = "strata", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an archive from block images (disks, partitions, image files) and file trees.
    #[command(
        after_help = "Examples:\n  strata create backup.strata --image disk=/dev/sdb --files home=/home --exclude '*.tmp'\n  strata create - --image root=rootfs.img > backup.strata\n  dd if=/dev/sdb | strata create backup.strata --image disk=-"
    )]
    Create(create::CreateArgs),
    /// Show an archive's sections, sizes and features without reading its data.
    #[command(after_help = "Example:\n  strata info backup.strata --json")]
    Info(inspect::InfoArgs),
    /// Check every checksum and reference; report what is damaged.
    #[command(
        after_help = "Exit status: 0 clean, 1 damaged (the damage is listed), 2 unreadable or not a Strata archive.\n\nExample:\n  strata verify backup.strata"
    )]
    Verify(inspect::VerifyArgs),
    /// Write a new, valid archive holding everything intact from a damaged one.
    #[command(
        after_help = "Exit status: 0 nothing was lost, 1 something was lost (listed), 2 nothing usable.\n\nExample:\n  strata salvage old.strata recovered.strata"
    )]
    Salvage(salvage::SalvageArgs),
    /// List a file tree, like `tar -tv`.
    #[command(
        after_help = "Examples:\n  strata list backup.strata --files home --long\n  strata list backup.strata --files home alice/docs --json"
    )]
    List(files::ListArgs),
    /// Extract a file tree (or chosen paths) into a folder, safely.
    #[command(
        after_help = "Examples:\n  strata extract backup.strata --files home /tmp/restore\n  strata extract backup.strata --files home /tmp/restore alice/thesis.pdf"
    )]
    Extract(files::ExtractArgs),
    /// Restore an image to a file, a block device, or standard output.
    #[command(
        after_help = "Examples:\n  strata restore backup.strata --image disk disk.img\n  strata restore backup.strata --image disk /dev/sdc\n  strata restore - --image disk disk.img < backup.strata"
    )]
    Restore(restore::RestoreArgs),
    /// Write a byte range of an image, or one file of a tree, to standard output.
    #[command(
        after_help = "Examples:\n  strata cat backup.strata --image disk --offset 1048576 --length 512 | xxd\n  strata cat backup.strata --files home alice/notes.txt"
    )]
    Cat(inspect::CatArgs),
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Usage errors, I/O failures, nothing usable: exit 2.
    pub fn fatal(message: impl Into<String>) -> Self {
        Failure { code: 2, message: message.into() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Info(args) => inspect::info(args),
        Command::Verify(args) => inspect::verify(args),
        Command::Restore(args) => restore::run(args),
        Command::List(args) => files::list(args),
        Command::Salvage(args) => salvage::run(args),
        Command::Extract(args) => files::extract(args),
        Command::Cat(args) => inspect::cat(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("strata: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// `-` means standard input or output.
pub fn is_stdio(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

/// Parses `NAME=SOURCE`.
pub fn parse_named_path(value: &str) -> Result<(String, PathBuf), String> {
    match value.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("expected NAME=SOURCE, got {value:?}")),
    }
}
