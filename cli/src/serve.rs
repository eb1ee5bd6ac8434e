//! `strata serve`: an image section over NBD, read-only, until SIGINT or SIGTERM.
//!
//! The protocol and the export live in the `strata-serve` crate; this module
//! chooses the section, the socket and the limits, reports what happens, and
//! removes the Unix socket it created when it stops.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Args;
use strata_serve::server::{self, Listener};
use strata_serve::ImageExport;

use crate::files::SectionKind;
use crate::{cleanup, output, Failure};

/// The port IANA reserves for NBD, as qemu-nbd and nbdkit use.
const NBD_PORT: u16 = 10809;

#[derive(Args)]
pub struct ServeArgs {
    /// The archive.
    archive: PathBuf,
    /// The image section to serve (may be left out when the archive holds one).
    /// Clients ask for it by this name, or by the empty default name.
    #[arg(long)]
    image: Option<String>,
    /// Listen on this Unix socket (created, and removed when the server stops).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["port", "bind"])]
    unix: Option<PathBuf>,
    /// Listen on this TCP port (default 10809; 0 picks a free one).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// The address to listen on with TCP (default 127.0.0.1, this machine only).
    /// NBD has no authentication: 0.0.0.0 lets every host that can reach this
    /// one read the image.
    #[arg(long, value_name = "ADDR")]
    bind: Option<IpAddr>,
    /// Clients served at once; more are disconnected (with a log line).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_clients: u32,
    /// Decoded chunks kept for reuse by all clients (K, M, G suffixes).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = crate::parse_bytes)]
    cache: u64,
}

pub fn run(args: ServeArgs) -> Result<u8, Failure> {
    let label = args.archive.display().to_string();
    let (archive, salvaged) = crate::inspect::open_intact(&args.archive)?;
    let name = crate::files::pick_section(&archive, args.image.as_deref(), SectionKind::Image, &label)?;
    let lost = archive.image(&name).map(|i| i.lost_ranges()).unwrap_or_default();
    for range in &lost {
        eprintln!(
            "warning: image {name}: bytes {}-{} were lost in salvage; reads of them answer EIO",
            output::grouped(range.start),
            output::grouped(range.end - 1)
        );
    }
    let section = name.clone();
    let on_damage: strata_serve::DamageLog = Box::new(move |range, why| {
        eprintln!(
            "strata: image {section}: bytes {}-{} unreadable ({why}); reads of them answer EIO",
            output::grouped(range.start),
            output::grouped(range.end.saturating_sub(1))
        );
    });
    let cache = usize::try_from(args.cache).map_err(|_| Failure::fatal("--cache is larger than memory"))?;
    let export = Arc::new(
        ImageExport::new(archive, &name, cache, on_damage)
            .expect("pick_section returned the name of an image section of this archive"),
    );
    let size = export.image().logical_size;

    // Registered before anything is created, so that a second signal still
    // removes the socket; the first one only asks the server to stop.
    let stop = cleanup::cancellation();
    let (listener, uri, socket) = match &args.unix {
        Some(path) => {
            let listener = bind_unix(path)?;
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let uri = format!("nbd+unix:///{}?socket={}", uri_escape(&name), absolute.display());
            (Listener::Unix(listener), uri, Some(path.clone()))
        }
        None => {
            let address =
                SocketAddr::new(args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), args.port.unwrap_or(NBD_PORT));
            let listener =
                TcpListener::bind(address).map_err(|e| Failure::fatal(format!("cannot listen on {address}: {e}")))?;
            let bound = listener.local_addr().unwrap_or(address);
            if bound.ip().is_unspecified() {
                eprintln!(
                    "warning: listening on every interface ({bound}): any host that can reach this one can read \
                     image {name}; NBD has no authentication or encryption"
                );
            }
            (Listener::Tcp(listener), format!("nbd://{bound}/{}", uri_escape(&name)), None)
        }
    };
    if !output::quiet() {
        eprintln!(
            "strata: serving image {name} ({}) of {label}, read-only, at {uri}\n  \
             up to {} clients, {} chunk cache; Ctrl-C or SIGTERM stops",
            output::size(size),
            args.max_clients,
            output::size(args.cache)
        );
    }
    let config = server::Config { max_clients: args.max_clients as usize, ..server::Config::default() };
    let log: server::Log = Arc::new(|line| eprintln!("strata: {line}"));
    let result = server::run(&listener, export.clone(), config, stop, log);
    drop(listener);
    if let Some(path) = &socket {
        let _ = std::fs::remove_file(path);
        cleanup::forget(path);
    }
    let served = result.map_err(|e| Failure::fatal(format!("serving at {uri}: {e}")))?;
    let unreadable = export.unreadable_reads();
    if !output::quiet() || unreadable > 0 {
        eprintln!(
            "strata: stopped{}; served {}{}{}",
            if stop.load(Ordering::SeqCst) { " on a signal" } else { "" },
            output::count(served.clients, "client", "clients"),
            if served.refused > 0 { format!(", refused {}", served.refused) } else { String::new() },
            if unreadable > 0 {
                format!(", {} answered EIO for damaged ranges", output::count(unreadable, "read", "reads"))
            } else {
                String::new()
            }
        );
    }
    Ok(if salvaged || unreadable > 0 || !lost.is_empty() { 1 } else { 0 })
}

/// Binds a Unix socket at `path`, replacing a stale socket left by a server
/// that is gone, never a file of another kind or a socket someone answers on.
fn bind_unix(path: &Path) -> Result<UnixListener, Failure> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(Failure::fatal(format!("{shown} exists and is not a socket: choose another path for --unix")))
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(Failure::fatal(format!("{shown} is in use: a server is listening on it")))
        }
        Ok(_) => {
            std::fs::remove_file(path)
                .map_err(|e| Failure::fatal(format!("cannot remove the stale socket {shown}: {e}")))?;
        }
        Err(_) => {}
    }
    cleanup::register(path);
    UnixListener::bind(path).map_err(|e| {
        cleanup::forget(path);
        Failure::fatal(format!("cannot listen on {shown}: {e}"))
    })
}

/// Percent-encodes an export name for an NBD URI (RFC 3986 unreserved kept).
fn uri_escape(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
