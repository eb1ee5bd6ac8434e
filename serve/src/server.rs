//! Accepting connections: a thread per client, up to a maximum, until told to stop.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::nbd::{self, Ending, Export, Failure};

/// Where clients connect.
#[derive(Debug)]
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// One client's connection.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }
    /// Asks for a send buffer of [`SEND_BUFFER`] (the kernel caps it at
    /// `net.core.wmem_max`): a reply of a few MiB then goes into the socket in
    /// one write while the client reads the one before, instead of the server
    /// and the client waking each other for every 200 KiB (the default).
    fn widen_send_buffer(&self) {
        let fd = match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        };
        // Too large for the system's limit is not an error; failing leaves the default.
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, SEND_BUFFER);
    }
    fn shutdown(&self, how: Shutdown) {
        // Already closed by the other side is fine: the aim is that it is closed.
        let _ = match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// The send buffer asked for each client's socket (the kernel doubles it for
/// its bookkeeping and caps it at `net.core.wmem_max`): bytes of replies the
/// client has not read yet, in the kernel, per client.
pub const SEND_BUFFER: usize = 4 << 20;

/// How the server runs.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Clients served at once; a client beyond this is disconnected at once,
    /// with a log line.
    pub max_clients: usize,
    /// Longest wait for a client's next handshake message: a client that
    /// connects and says nothing does not keep its place for ever. Once
    /// reading, a client may stay idle as long as it likes (a VM may).
    pub handshake_timeout: Duration,
    /// Protocol limits for each connection.
    pub limits: nbd::Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_clients: 8, handshake_timeout: Duration::from_secs(30), limits: nbd::Limits::default() }
    }
}

/// Receives a line for the operator about one client (a protocol violation,
/// a refused client). Damage is reported by the export.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// What a server did, for its summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Served {
    /// Connections accepted and served.
    pub clients: u64,
    /// Connections refused because `max_clients` were being served.
    pub refused: u64,
}

struct Client {
    handle: JoinHandle<()>,
    stream: Stream,
}

/// Serves `export` to every client that connects to `listener` until `stop`
/// is set (checked at least every 25 ms). Then stops accepting, lets each
/// client finish the request it is answering, closes every connection and
/// returns. A client's failure ends that client only.
pub fn run(
    listener: &Listener,
    export: Arc<dyn Export>,
    config: Config,
    stop: &AtomicBool,
    log: Log,
) -> io::Result<Served> {
    match listener {
        Listener::Unix(l) => l.set_nonblocking(true)?,
        Listener::Tcp(l) => l.set_nonblocking(true)?,
    }
    let mut clients: Vec<Client> = Vec::new();
    let mut served = Served::default();
    let next_id = AtomicU64::new(1);
    while !stop.load(Ordering::SeqCst) {
        let ready = {
            let fd = match listener {
                Listener::Unix(l) => l.as_fd(),
                Listener::Tcp(l) => l.as_fd(),
            };
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
            // A signal that sets `stop` may land on any thread and need not
            // interrupt this poll: the flag is looked at every 25 ms, so that a
            // stop (and the script or service manager waiting on it) is prompt.
            let timeout = rustix::event::Timespec { tv_sec: 0, tv_nsec: 25_000_000 };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(n) => n > 0,
                Err(rustix::io::Errno::INTR) => false,
                Err(e) => return Err(e.into()),
            }
        };
        clients.retain(|c| !c.handle.is_finished());
        if !ready {
            continue;
        }
        let accepted = match listener {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                // Replies are written whole and flushed; do not let Nagle hold them.
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        };
        let stream = match accepted {
            Ok(stream) => {
                stream.widen_send_buffer();
                stream
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
            // Out of file descriptors, a connection reset before it was accepted:
            // that client is lost, the server goes on.
            Err(e) => {
                log(&format!("accepting a client failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if clients.len() >= config.max_clients {
            served.refused += 1;
            log(&format!(
                "refusing a client: {} clients are connected, the most allowed (--max-clients)",
                clients.len()
            ));
            stream.shutdown(Shutdown::Both);
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        match spawn_client(id, &stream, export.clone(), config, log.clone()) {
            Ok(handle) => {
                served.clients += 1;
                clients.push(Client { handle, stream });
            }
            Err(e) => log(&format!("client {id}: could not start serving it: {e}")),
        }
    }
    // Stop reading requests: each client finishes the reply it is sending,
    // then sees the end of its input and returns.
    for client in &clients {
        client.stream.shutdown(Shutdown::Read);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while clients.iter().any(|c| !c.handle.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for client in clients {
        client.stream.shutdown(Shutdown::Both);
        if client.handle.is_finished() {
            let _ = client.handle.join();
        }
    }
    Ok(served)
}

fn spawn_client(
    id: u64,
    stream: &Stream,
    export: Arc<dyn Export>,
    config: Config,
    log: Log,
) -> io::Result<JoinHandle<()>> {
    let read_half = stream.try_clone()?;
    let write_half = stream.try_clone()?;
    // A listener in non-blocking mode may hand out sockets that are too.
    match &read_half {
        Stream::Unix(s) => s.set_nonblocking(false)?,
        Stream::Tcp(s) => s.set_nonblocking(false)?,
    }
    read_half.set_read_timeout(Some(config.handshake_timeout))?;
    std::thread::Builder::new().name(format!("nbd-client-{id}")).spawn(move || {
        let timeouts = read_half.try_clone();
        let mut reader = BufReader::with_capacity(64 << 10, read_half);
        let mut writer = BufWriter::with_capacity(256 << 10, write_half);
        let mut lift_timeout = || {
            if let Ok(stream) = &timeouts {
                let _ = stream.set_read_timeout(None);
            }
        };
        let outcome =
            nbd::serve_connection(&mut reader, &mut writer, export.as_ref(), config.limits, &mut lift_timeout);
        let _ = writer.flush();
        match outcome {
            Ok(Ending::Left) => {}
            Ok(Ending::UnknownExport(name)) => {
                log(&format!("client {id} asked for export {name:?}, which is not served; disconnected"))
            }
            Err(Failure::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                log(&format!(
                    "client {id} said nothing for {} s during the handshake; disconnected",
                    config.handshake_timeout.as_secs()
                ))
            }
            // A client that vanished: nothing to tell the operator.
            Err(Failure::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
                ) => {}
            Err(e @ Failure::Cut(_)) => log(&format!("client {id}: {e}")),
            Err(e) => log(&format!("client {id}: {e}; disconnected")),
        }
        if let Ok(stream) = timeouts {
            stream.shutdown(Shutdown::Both);
        }
    })
}
