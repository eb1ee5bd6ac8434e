//! Serves image sections of Strata archives over NBD, read-only, so that
//! `qemu-img`, `nbdcopy`, `nbdinfo` and virtual machines read straight from an
//! archive.
//!
//! Three rooms, as the reader and writer have theirs:
//! - [`nbd`]: the protocol, server side, over any [`nbd::Export`]: the fixed
//!   newstyle handshake (`NBD_OPT_GO`, `INFO`, `LIST`, `ABORT`,
//!   `STRUCTURED_REPLY`, `LIST_META_CONTEXT`, `SET_META_CONTEXT`, and the old
//!   `EXPORT_NAME`), then reads (structured replies with holes), block status
//!   (`base:allocation`), flush, disconnect; writes are refused with EPERM.
//! - [`ImageExport`]: an image section as an export, read through a shared
//!   [`strata_reader::ChunkCache`]; zero extents are holes, and a damaged or
//!   lost range answers EIO while the rest reads as stored; read-ahead
//!   workers (one per core) keep the next stored chunks after each read
//!   decoded (up to six, as far as the cache holds them besides two more)
//!   while a client is being answered.
//! - [`server`]: a thread per client up to a maximum, until a stop flag is set.
//!
//! # Memory
//! Bounded by configuration: the chunk cache's budget (chunks decoded ahead
//! live in it), plus one decoded chunk the archive keeps, plus for each
//! read-ahead worker and for each client up to two chunks being decoded
//! (raw and stored bytes, at most 16 MiB each by the format), plus, only for a
//! client that did not negotiate structured replies or asks for an unfragmented
//! read, a buffer of its request's length (at most `max_request`, 32 MiB by
//! default). Option data is capped at [`nbd::MAX_OPTION`]; write data is read
//! and dropped, never kept. In the kernel, each client's socket holds up to
//! [`server::SEND_BUFFER`] of replies not yet read (as `net.core.wmem_max`
//! allows), so that the server answers the next request while the client
//! still reads the last.
//!
//! ```no_run
//! use std::sync::{atomic::AtomicBool, Arc};
//! use strata_reader::Archive;
//! use strata_serve::{server, ImageExport};
//!
//! let archive = Archive::new(std::fs::File::open("backup.strata")?)?;
//! let export = ImageExport::new(archive, "disk", 64 << 20, Box::new(|range, why| {
//!     eprintln!("bytes {range:?} unreadable: {why}")
//! }))
//! .expect("an image section called disk");
//! let listener = server::Listener::Unix(std::os::unix::net::UnixListener::bind("/tmp/disk.sock")?);
//! let stop = AtomicBool::new(false);
//! server::run(&listener, Arc::new(export), server::Config::default(), &stop, Arc::new(|line| eprintln!("{line}")))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod export;
pub mod nbd;
pub mod server;

pub use export::{DamageLog, ImageExport};
