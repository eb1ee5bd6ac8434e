//! `strata serve` with real NBD clients (nbdinfo, nbdcopy from libnbd-bin;
//! qemu-img and qemu-io from qemu-utils) and a hand-written hostile one.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHUNK: u64 = 64 << 10;
/// Not a multiple of the chunk size: the last extent is short.
const SIZE: u64 = (8 << 20) + 5000;

/// A sparse image with data, holes, written zeros, text and a short tail.
fn source_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut bytes = vec![0u8; SIZE as usize];
    bytes[..CHUNK as usize].copy_from_slice(&noise(1, CHUNK as usize));
    bytes[1 << 20..(3 << 19)].copy_from_slice(&noise(2, 1 << 19));
    let text = b"hello, nbd\n".repeat(300_000 / 11);
    bytes[2 << 20..(2 << 20) + text.len()].copy_from_slice(&text);
    bytes[6 << 20..(6 << 20) + CHUNK as usize].copy_from_slice(&noise(3, CHUNK as usize));
    let tail = SIZE as usize - 5000;
    bytes[tail..].copy_from_slice(&noise(4, 5000));
    let path = dir.join("disk.img");
    // Holes where nothing was written; 1.5M..2M is written as zeros.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(SIZE).unwrap();
    use std::os::unix::fs::FileExt;
    for (start, end) in [(0, CHUNK), (1 << 20, 2 << 20), (2 << 20, (2 << 20) + text.len() as u64)] {
        file.write_all_at(&bytes[start as usize..end as usize], start).unwrap();
    }
    file.write_all_at(&bytes[6 << 20..(6 << 20) + CHUNK as usize], 6 << 20).unwrap();
    file.write_all_at(&bytes[tail..], tail as u64).unwrap();
    (path, bytes)
}

fn make_archive(dir: &Path) -> (PathBuf, Vec<u8>, PathBuf) {
    let (image, bytes) = source_image(dir);
    let archive = dir.join("a.strata");
    create_image_archive(&archive, &image, "64K");
    (archive, bytes, image)
}

/// Whether the NBD clients are here; a test without them says why it stops.
fn clients_present() -> bool {
    let present = ["nbdinfo", "nbdcopy", "qemu-img", "qemu-io"].iter().all(|tool| require_tool(tool));
    if !present {
        eprintln!("SKIPPED: the NBD client tools (libnbd-bin, qemu-utils) are not installed and could not be installed (scripts/ensure-tools.sh does it)");
    }
    present
}

/// A running `strata serve`, stopped with SIGTERM when dropped.
struct Server {
    child: Option<Child>,
    socket: PathBuf,
    stderr: PathBuf,
}

impl Server {
    fn start(archive: &Path, dir: &Path, extra: &[&str]) -> Server {
        let socket = dir.join("nbd.sock");
        let stderr = dir.join("serve.stderr");
        let child = strata()
            .args(["serve", path_str(archive), "--unix", path_str(&socket)])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("strata serve starts");
        let server = Server { child: Some(child), socket, stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&server.socket).is_err() {
            assert!(Instant::now() < deadline, "the server did not listen: {}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", path_str(&self.socket))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Sends `signal`, waits, and returns the exit code.
    fn stop_with(&mut self, signal: rustix::process::Signal) -> i32 {
        let mut child = self.child.take().expect("the server is running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().expect("the server exited, not killed by the signal");
            }
            assert!(Instant::now() < deadline, "the server did not stop on {signal:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn output(command: &mut Command) -> std::process::Output {
    command.stdin(Stdio::null()).output().expect("the client runs")
}

fn succeeded(out: &std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn real_clients_read_the_image_its_size_and_its_holes() {
    if !clients_present() {
        return;
    }
    let dir = temp_dir();
    let (archive, bytes, image) = make_archive(dir.path());
    let mut server = Server::start(&archive, dir.path(), &[]);
    let uri = server.uri("disk");

    let size = succeeded(&output(Command::new("nbdinfo").args(["--size", &uri])), "nbdinfo --size");
    assert_eq!(size.trim(), SIZE.to_string());
    // The empty default name selects the one export too.
    let size = succeeded(&output(Command::new("nbdinfo").args(["--size", &server.uri("")])), "nbdinfo default export");
    assert_eq!(size.trim(), SIZE.to_string());

    let copy = dir.path().join("copy.img");
    succeeded(&output(Command::new("nbdcopy").args([&uri, path_str(&copy)])), "nbdcopy");
    assert!(std::fs::read(&copy).unwrap() == bytes, "nbdcopy gave other bytes than the source");

    succeeded(
        &output(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw", path_str(&image), &uri])),
        "qemu-img compare",
    );

    // The map nbdinfo shows is the archive's extent map: zero extents are
    // holes, everything else data.
    let map = succeeded(&output(Command::new("nbdinfo").args(["--map", &uri])), "nbdinfo --map");
    let mut shown: Vec<(u64, u64, bool)> = Vec::new();
    for line in map.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (offset, length, state): (u64, u64, u32) =
            (fields[0].parse().unwrap(), fields[1].parse().unwrap(), fields[2].parse().unwrap());
        push_run(&mut shown, offset, length, state == 3);
    }
    let opened = strata_reader::Archive::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let mut expected: Vec<(u64, u64, bool)> = Vec::new();
    for extent in opened.image("disk").unwrap().extents() {
        let zero = extent.kind == strata_format::ExtentKind::Zero;
        push_run(&mut expected, extent.offset, extent.length, zero);
    }
    assert_eq!(shown, expected, "nbdinfo --map:\n{map}");
    assert!(expected.iter().any(|r| r.2) && expected.iter().any(|r| !r.2));
    // The written zeros at 1.5M..2M are a zero extent like the holes.
    assert!(expected.iter().any(|&(o, l, z)| z && o <= 3 << 19 && o + l >= 2 << 20), "{expected:?}");

    assert!(server.alive());
    assert_eq!(server.stop_with(rustix::process::Signal::TERM), 0, "{}", server.log());
    assert!(!server.socket.exists(), "the socket was left behind");
}

fn push_run(runs: &mut Vec<(u64, u64, bool)>, offset: u64, length: u64, zero: bool) {
    match runs.last_mut() {
        Some((start, len, z)) if *z == zero && *start + *len == offset => *len += length,
        _ => runs.push((offset, length, zero)),
    }
}

#[test]
fn two_clients_at_once_both_get_the_image() {
    if !clients_present() {
        return;
    }
    let dir = temp_dir();
    let (archive, bytes, _) = make_archive(dir.path());
    let server = Server::start(&archive, dir.path(), &[]);
    // A third connection sits in the middle of its handshake all along.
    let mut idle = RawClient::connect(&server.socket);
    idle.greet(1);
    let copies: Vec<_> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("copy{i}.img"));
            let child = Command::new("nbdcopy")
                .args(["--connections=1", &server.uri("disk"), path_str(&out)])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    for (mut child, out) in copies {
        assert!(child.wait().unwrap().success());
        assert!(std::fs::read(&out).unwrap() == bytes);
    }
    // The idle client is still served.
    idle.option(2, &[]);
}

#[test]
fn a_hostile_client_ends_only_its_own_connection() {
    if !clients_present() {
        return;
    }
    let dir = temp_dir();
    let (archive, bytes, _) = make_archive(dir.path());
    let mut server = Server::start(&archive, dir.path(), &[]);
    let socket = server.socket.clone();

    // Garbage instead of the client flags.
    let mut c = RawClient::connect(&socket);
    c.greet(0xdead_beef);
    assert!(c.closed(), "unknown client flags");

    // A bad option magic.
    let mut c = RawClient::connect(&socket);
    c.greet(1);
    c.send(b"NOTMAGIC\0\0\0\x07\0\0\0\0");
    assert!(c.closed(), "bad option magic");

    // An option claiming 4 GiB of data: refused before anything is allocated.
    let mut c = RawClient::connect(&socket);
    c.greet(1);
    c.send(&option_head(7, u32::MAX));
    assert!(c.closed(), "oversized option");

    // A malformed NBD_OPT_GO (name length past the data) is an error reply, and
    // the connection goes on.
    let mut c = RawClient::connect(&socket);
    c.greet(1);
    let replies = c.option(7, &[0, 0, 1, 0, b'x']);
    assert_eq!(replies.last().unwrap().0, (1 << 31) + 3, "NBD_REP_ERR_INVALID");
    let replies = c.option(7, &go_data("nosuch"));
    assert_eq!(replies.last().unwrap().0, (1 << 31) + 6, "NBD_REP_ERR_UNKNOWN");
    assert_eq!(c.option(99, &[]).last().unwrap().0, (1 << 31) + 1, "NBD_REP_ERR_UNSUP");

    // In transmission: bad requests get errors, and good ones still work.
    let mut c = RawClient::connect(&socket);
    c.greet(1);
    assert_eq!(c.option(8, &[]).last().unwrap().0, 1, "structured replies");
    let replies = c.option(7, &go_data("disk"));
    assert_eq!(replies.last().unwrap().0, 1, "NBD_OPT_GO");
    let (_, errors) = c.read(1, SIZE - 10, 20);
    assert_eq!(errors, vec![22], "a read past the end is EINVAL");
    let (_, errors) = c.read(2, 0, u32::MAX);
    assert_eq!(errors, vec![22], "a read of 4 GiB is EINVAL");
    let (_, errors) = c.read(3, u64::MAX - 5, 4096);
    assert_eq!(errors, vec![22], "an offset that overflows is EINVAL");
    c.request(1, 0, 4, 0, 512);
    c.send(&[0xAA; 512]);
    assert_eq!(c.structured_reply(4).1, vec![1], "a write is EPERM");
    c.request(4, 0, 5, 0, 4096);
    assert_eq!(c.structured_reply(5).1, vec![1], "a trim is EPERM");
    c.request(7, 0, 6, 0, 4096);
    assert_eq!(c.structured_reply(6).1, vec![22], "block status without a context is EINVAL");
    c.request(42, 0, 7, 0, 4096);
    assert_eq!(c.structured_reply(7).1, vec![22], "an unknown command is EINVAL");
    let (data, errors) = c.read(8, (1 << 20) - 100, 70_000);
    assert!(errors.is_empty());
    assert!(data == bytes[(1 << 20) - 100..(1 << 20) - 100 + 70_000]);
    // Cut in the middle of a request header.
    c.send(&0x2560_9513u32.to_be_bytes());
    c.send(&[0, 0, 0]);
    drop(c);

    // Cut in the middle of a write's data.
    let mut c = RawClient::connect(&socket);
    c.greet(1);
    c.option(7, &go_data("disk"));
    c.request(1, 0, 9, 0, 1 << 20);
    c.send(&[0; 1000]);
    drop(c);

    // A garbage request magic ends that connection.
    let mut c = RawClient::connect(&socket);
    c.greet(3);
    c.option(7, &go_data(""));
    c.send(&[0x55; 28]);
    assert!(c.closed(), "bad request magic");

    // A client without structured replies gets simple ones, right bytes included.
    let mut c = RawClient::connect(&socket);
    c.greet(3);
    c.option(7, &go_data("disk"));
    c.request(0, 0, 10, 6 << 20, 8192);
    let (error, data) = c.simple_reply(10, 8192);
    assert_eq!(error, 0);
    assert!(data == bytes[6 << 20..(6 << 20) + 8192]);
    c.request(0, 0, 11, SIZE, 1);
    assert_eq!(c.simple_reply(11, 1).0, 22, "a read past the end is EINVAL");
    c.request(2, 0, 12, 0, 0);
    assert!(c.closed(), "NBD_CMD_DISC closes");

    assert!(server.alive(), "the server died: {}", server.log());
    let copy = dir.path().join("after.img");
    succeeded(&output(Command::new("nbdcopy").args([&server.uri("disk"), path_str(&copy)])), "nbdcopy after");
    assert!(std::fs::read(&copy).unwrap() == bytes);
    assert_eq!(server.stop_with(rustix::process::Signal::INT), 0, "{}", server.log());
    assert!(!socket.exists());
    let log = server.log();
    assert!(log.contains("not IHAVEOPT"), "{log}");
    assert!(log.contains("more than the 65536 accepted"), "{log}");
}

#[test]
fn a_damaged_chunk_is_eio_and_the_rest_reads_as_stored() {
    if !clients_present() {
        return;
    }
    let dir = temp_dir();
    let (archive, bytes, _) = make_archive(dir.path());
    // Flip a byte inside the stored bytes of the chunk holding image byte 1 MiB.
    let opened = strata_reader::Archive::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let image = opened.image("disk").unwrap().section();
    let extent = image.extents[image.extent_at(1 << 20).unwrap()];
    let Ok(strata_format::ExtentKind::Data(chunk_ref)) = extent.kind() else { panic!("1 MiB is data") };
    drop(opened);
    let mut raw = std::fs::read(&archive).unwrap();
    raw[chunk_ref as usize + 32 + 200] ^= 0x40;
    std::fs::write(&archive, &raw).unwrap();
    let bad = extent.image_offset..extent.end();

    let mut server = Server::start(&archive, dir.path(), &[]);
    let mut c = RawClient::connect(&server.socket);
    c.greet(1);
    c.option(8, &[]);
    c.option(7, &go_data("disk"));
    // A read across the damaged extent: the bytes before and after arrive, the
    // extent itself is an EIO error chunk at its offset.
    let start = bad.start - 4096;
    let (data, errors, error_offsets) = c.read_detailed(1, start, (bad.end - start) as u32 + 4096);
    assert_eq!(errors, vec![5], "EIO");
    assert_eq!(error_offsets, vec![bad.start]);
    for (offset, byte) in data {
        assert!(!bad.contains(&offset), "byte {offset} of the damaged extent was sent");
        assert_eq!(byte, bytes[offset as usize]);
    }
    let (data, errors) = c.read(2, 0, CHUNK as u32);
    assert!(errors.is_empty() && data == bytes[..CHUNK as usize]);

    // qemu-io sees EIO there, and correct bytes elsewhere.
    let uri = server.uri("disk");
    let out =
        output(Command::new("qemu-io").args(["-r", "-f", "raw", "-c", &format!("read {} 4096", bad.start), &uri]));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("Input/output error"), "qemu-io: {said}");
    let out = output(Command::new("qemu-io").args(["-r", "-f", "raw", "-c", "read -P 0 3M 1M", &uri]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !said.contains("Pattern verification failed"), "qemu-io: {said}");
    // A whole copy fails rather than hand over a wrong byte.
    let copy = dir.path().join("copy.img");
    assert!(!output(Command::new("nbdcopy").args([&uri, path_str(&copy)])).status.success());

    assert_eq!(server.stop_with(rustix::process::Signal::TERM), 1, "damage served: exit 1");
    let log = server.log();
    assert!(log.contains(&format!("bytes {}-{} unreadable", grouped(bad.start), grouped(bad.end - 1))), "{log}");
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn tcp_listens_on_loopback_and_the_client_limit_holds() {
    if !clients_present() {
        return;
    }
    let dir = temp_dir();
    let (archive, _, _) = make_archive(dir.path());
    let stderr = dir.path().join("tcp.stderr");
    let child = strata()
        .args(["serve", path_str(&archive), "--port", "0", "--max-clients", "1"])
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // Stopped when dropped, so a failing assertion leaves no server behind
    // (one would hold the test harness's output open).
    let mut server = Server { child: Some(child), socket: dir.path().join("no-socket"), stderr: stderr.clone() };
    let deadline = Instant::now() + Duration::from_secs(30);
    let uri = loop {
        let log = std::fs::read_to_string(&stderr).unwrap();
        if let Some(at) = log.find("nbd://") {
            break log[at..].split_whitespace().next().unwrap().trim_end_matches(',').to_string();
        }
        assert!(Instant::now() < deadline, "no URI printed: {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(uri.starts_with("nbd://127.0.0.1:"), "{uri}");
    let size = succeeded(&output(Command::new("nbdinfo").args(["--size", &uri])), "nbdinfo over TCP");
    assert_eq!(size.trim(), SIZE.to_string());
    // One client holds the only place; the next is refused, and served once
    // the first has gone.
    let address = uri.trim_start_matches("nbd://").split('/').next().unwrap().to_string();
    // The server frees nbdinfo's place a moment after nbdinfo hangs up: until
    // then a new client is refused, so the holder tries again for a while.
    let holder_deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let mut greeting = [0u8; 18];
        match stream.read_exact(&mut greeting) {
            Ok(()) => break stream,
            Err(e) => assert!(Instant::now() < holder_deadline, "the only place never came free: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!output(Command::new("nbdinfo").args(["--size", &uri])).status.success());
    drop(holder);
    std::thread::sleep(Duration::from_millis(500));
    succeeded(&output(Command::new("nbdinfo").args(["--size", &uri])), "nbdinfo after the holder left");
    assert_eq!(server.stop_with(rustix::process::Signal::TERM), 0);
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("refusing a client"), "{log}");
}

#[test]
fn choosing_the_image_and_the_socket() {
    let dir = temp_dir();
    let (_, _, image) = make_archive(dir.path());
    let two = dir.path().join("two.strata");
    let img = path_str(&image);
    run_ok(&["create", path_str(&two), "--image", &format!("a={img}"), "--image", &format!("b={img}"), "-q"]);
    let out = run(&["serve", path_str(&two), "--unix", path_str(&dir.path().join("s"))]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--image"), "{said}");
    let out = run(&["serve", path_str(&two), "--image", "c", "--unix", path_str(&dir.path().join("s"))]);
    assert_eq!(out.status.code(), Some(2));
    // A path that is not a socket is never replaced.
    let out = run(&["serve", path_str(&two), "--image", "a", "--unix", img]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::metadata(&image).unwrap().len(), SIZE);
}

// ---- A raw NBD client, to say what real clients never would ----

/// `--quiet` says nothing while serving and stopping cleanly (ux.md: only
/// warnings), and the default says where it serves.
#[test]
fn quiet_serving_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, _, _) = make_archive(dir.path());
    let mut server = Server::start(&archive, dir.path(), &["--quiet"]);
    assert_eq!(server.stop_with(rustix::process::Signal::TERM), 0);
    assert_eq!(server.log(), "", "--quiet printed something");
    let mut server = Server::start(&archive, dir.path(), &[]);
    assert_eq!(server.stop_with(rustix::process::Signal::TERM), 0);
    assert!(server.log().contains("serving image"), "{}", server.log());
}

fn option_head(option: u32, length: u32) -> Vec<u8> {
    let mut head = b"IHAVEOPT".to_vec();
    head.extend_from_slice(&option.to_be_bytes());
    head.extend_from_slice(&length.to_be_bytes());
    head
}

fn go_data(name: &str) -> Vec<u8> {
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&0u16.to_be_bytes());
    data
}

struct RawClient {
    stream: UnixStream,
}

impl RawClient {
    fn connect(socket: &Path) -> RawClient {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawClient { stream }
    }

    fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed on a bad message.
        let _ = self.stream.write_all(bytes);
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream.read_exact(&mut buf).expect("the server answers");
        buf
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }

    /// Whether the server closed the connection (reads end, not time out).
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    fn greet(&mut self, flags: u32) {
        let greeting = self.take(18);
        assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
        self.send(&flags.to_be_bytes());
    }

    /// Sends an option and collects its replies up to the final one.
    fn option(&mut self, option: u32, data: &[u8]) -> Vec<(u32, Vec<u8>)> {
        self.send(&option_head(option, data.len() as u32));
        self.send(data);
        let mut replies = Vec::new();
        loop {
            assert_eq!(self.u64(), 0x0003_e889_0455_65a9);
            assert_eq!(self.u32(), option);
            let (kind, length) = (self.u32(), self.u32());
            let body = self.take(length as usize);
            replies.push((kind, body));
            if kind == 1 || kind & (1 << 31) != 0 {
                return replies;
            }
        }
    }

    fn request(&mut self, command: u16, flags: u16, handle: u64, offset: u64, length: u32) {
        let mut head = 0x2560_9513u32.to_be_bytes().to_vec();
        head.extend_from_slice(&flags.to_be_bytes());
        head.extend_from_slice(&command.to_be_bytes());
        head.extend_from_slice(&handle.to_be_bytes());
        head.extend_from_slice(&offset.to_be_bytes());
        head.extend_from_slice(&length.to_be_bytes());
        self.send(&head);
    }

    fn simple_reply(&mut self, handle: u64, length: usize) -> (u32, Vec<u8>) {
        assert_eq!(self.u32(), 0x6744_6698);
        let error = self.u32();
        assert_eq!(self.u64(), handle);
        (error, if error == 0 { self.take(length) } else { Vec::new() })
    }

    /// Reads structured chunks to the last: (offset, byte) pairs of content,
    /// error values, and the offsets of offset errors.
    fn structured_reply(&mut self, handle: u64) -> (Vec<(u64, u8)>, Vec<u32>, Vec<u64>) {
        let (mut data, mut errors, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            assert_eq!(self.u32(), 0x668e_33ef);
            let (flags, kind) = (self.u16(), self.u16());
            assert_eq!(self.u64(), handle);
            let length = self.u32() as usize;
            match kind {
                0 => assert_eq!(length, 0),
                1 => {
                    let offset = self.u64();
                    let bytes = self.take(length - 8);
                    data.extend(bytes.into_iter().enumerate().map(|(i, b)| (offset + i as u64, b)));
                }
                2 => {
                    let (offset, size) = (self.u64(), self.u32());
                    data.extend((0..u64::from(size)).map(|i| (offset + i, 0)));
                }
                0x8001 | 0x8002 => {
                    errors.push(self.u32());
                    let message = self.u16() as usize;
                    self.take(message);
                    if kind == 0x8002 {
                        offsets.push(self.u64());
                    }
                }
                other => panic!("unexpected reply chunk type {other}"),
            }
            if flags & 1 != 0 {
                return (data, errors, offsets);
            }
        }
    }

    fn read_detailed(&mut self, handle: u64, offset: u64, length: u32) -> (Vec<(u64, u8)>, Vec<u32>, Vec<u64>) {
        self.request(0, 0, handle, offset, length);
        let (mut data, errors, offsets) = self.structured_reply(handle);
        data.sort_by_key(|&(o, _)| o);
        (data, errors, offsets)
    }

    /// A structured read: the bytes in order (when complete) and the errors.
    fn read(&mut self, handle: u64, offset: u64, length: u32) -> (Vec<u8>, Vec<u32>) {
        let (data, errors, _) = self.read_detailed(handle, offset, length);
        (data.into_iter().map(|(_, b)| b).collect(), errors)
    }
}
