//! The NBD protocol, server side, for one read-only export: the fixed newstyle
//! handshake, then requests until the client leaves.
//!
//! Order of a connection (the NBD protocol document, `doc/proto.md` of
//! NetworkBlockDevice/nbd):
//! 1. The server greets: `NBDMAGIC`, `IHAVEOPT`, handshake flags; the client
//!    answers with its flags.
//! 2. Options, each `IHAVEOPT`, option, length, data; each answered with one or
//!    more option replies, until `NBD_OPT_GO` (or the older
//!    `NBD_OPT_EXPORT_NAME`) enters transmission, or `NBD_OPT_ABORT` ends it.
//! 3. Requests of 28 bytes (plus data for a write, which is refused), each
//!    answered by a simple reply or, once negotiated, structured reply chunks.
//!
//! Every length a client sends is checked before anything is allocated for
//! it: option data up to [`MAX_OPTION`], reads up to the configured maximum
//! request (32 MiB by default, as qemu), write data never kept. A client that
//! breaks the protocol ends its own connection and nothing else.

use std::io::{self, BufRead, Read, Write};

/// Largest option payload accepted; a longer one ends the connection (a
/// client's strings are at most 4096 bytes; this leaves room for many
/// metadata-context queries).
pub const MAX_OPTION: u32 = 64 << 10;
/// The largest read a client may ask for by default, as qemu's NBD server.
pub const DEFAULT_MAX_REQUEST: u32 = 32 << 20;
/// Most block-status descriptors in one reply; a client asks again for the rest.
const MAX_DESCRIPTORS: usize = 8192;
/// Longest error message sent (the protocol's limit for strings).
const MAX_STRING: usize = 4096;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags.
const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;
const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Transmission flags.
const FLAG_HAS_FLAGS: u16 = 1 << 0;
const FLAG_READ_ONLY: u16 = 1 << 1;
const FLAG_SEND_FLUSH: u16 = 1 << 2;
const FLAG_SEND_DF: u16 = 1 << 7;
const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Options.
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_STARTTLS: u32 = 5;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_LIST_META_CONTEXT: u32 = 9;
const OPT_SET_META_CONTEXT: u32 = 10;

// Option replies.
const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

// NBD_REP_INFO types.
const INFO_EXPORT: u16 = 0;
const INFO_NAME: u16 = 1;
const INFO_DESCRIPTION: u16 = 2;
const INFO_BLOCK_SIZE: u16 = 3;

// Commands and their flags.
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_BLOCK_STATUS: u16 = 7;
const CMD_FLAG_FUA: u16 = 1 << 0;
const CMD_FLAG_DF: u16 = 1 << 2;
const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

// Structured replies.
const REPLY_FLAG_DONE: u16 = 1 << 0;
const REPLY_TYPE_NONE: u16 = 0;
const REPLY_TYPE_OFFSET_DATA: u16 = 1;
const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;
const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) + 2;

/// The one metadata context served, and the id it is given.
const BASE_ALLOCATION: &str = "base:allocation";
const BASE_ALLOCATION_ID: u32 = 1;
const STATE_HOLE: u32 = 1 << 0;
const STATE_ZERO: u32 = 1 << 1;

/// Error values of the protocol (the common Linux errno numbers).
const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

/// A read-only disk the server exports: its bytes and where they are zero.
pub trait Export: Send + Sync {
    /// The export name clients ask for (the empty name also selects it).
    fn name(&self) -> &str;
    /// One line for a person (`NBD_INFO_DESCRIPTION`).
    fn description(&self) -> String;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Walks `offset..offset + length` (within the size) in order, giving each
    /// piece to `visit`. An error from `visit` (the client went away) ends the
    /// walk and is returned; a range that cannot be read is a
    /// [`Segment::Unreadable`], not an error.
    fn read(&self, offset: u64, length: u64, visit: &mut dyn FnMut(Segment<'_>) -> io::Result<()>) -> io::Result<()>;
    /// Runs of allocation from `offset`, in order, covering at most `length`
    /// bytes, at most `max_runs` of them; consecutive runs differ.
    fn allocation(&self, offset: u64, length: u64, max_runs: usize) -> Vec<(u64, Allocation)>;
}

/// A piece of an export, in order from the start of a read.
#[derive(Debug)]
pub enum Segment<'a> {
    /// Bytes as stored.
    Data(&'a [u8]),
    /// This many bytes of zeros.
    Zero(u64),
    /// This many bytes that cannot be read, and why: answered with EIO.
    Unreadable { length: u64, reason: &'a str },
}

/// What `base:allocation` says about a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Stored data (or data that cannot be read): clients read it.
    Data,
    /// Zeros, not stored: `NBD_STATE_HOLE | NBD_STATE_ZERO`.
    Zero,
}

/// Per-connection settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest read or write length accepted; larger requests get EINVAL.
    pub max_request: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request: DEFAULT_MAX_REQUEST }
    }
}

/// How a connection ended without a protocol violation.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// `NBD_CMD_DISC`, `NBD_OPT_ABORT`, or the client closed between messages.
    Left,
    /// The client asked for an export this server does not have (`NBD_OPT_EXPORT_NAME`).
    UnknownExport(String),
}

/// Why a connection was ended by the server, or broke.
#[derive(Debug)]
pub enum Failure {
    /// The client broke the protocol; the message says how.
    Protocol(String),
    /// The client closed the connection in the middle of a message.
    Cut(&'static str),
    /// Reading from or writing to the connection failed.
    Io(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Protocol(message) => write!(f, "{message}"),
            Failure::Cut(during) => write!(f, "the client disconnected in the middle of {during}"),
            Failure::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Failure {}

type Result<T> = std::result::Result<T, Failure>;

/// Serves one connection from its greeting to its end. `reader` and `writer`
/// are the two directions of one stream (buffer them); `on_transmission` is
/// called once the handshake is done (the server lifts its handshake timeout).
pub fn serve_connection(
    reader: &mut dyn BufRead,
    writer: &mut dyn Write,
    export: &dyn Export,
    limits: Limits,
    on_transmission: &mut dyn FnMut(),
) -> Result<Ending> {
    let mut connection =
        Connection { reader, writer, export, limits, structured: false, base_allocation: false, no_zeroes: false };
    match connection.handshake()? {
        Handshake::Transmission => {}
        Handshake::Ended(ending) => return Ok(ending),
    }
    on_transmission();
    connection.transmission()
}

enum Handshake {
    Transmission,
    Ended(Ending),
}

struct Connection<'a> {
    reader: &'a mut dyn BufRead,
    writer: &'a mut dyn Write,
    export: &'a dyn Export,
    limits: Limits,
    structured: bool,
    base_allocation: bool,
    no_zeroes: bool,
}

/// Reads exactly `buf.len()` bytes; an early end is the client leaving in the
/// middle of `during`.
fn read_exact(reader: &mut dyn BufRead, buf: &mut [u8], during: &'static str) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Failure::Cut(during),
        _ => Failure::Io(e),
    })
}

/// Whether the client closed the stream cleanly, before the first byte of a message.
fn at_end(reader: &mut dyn BufRead) -> Result<bool> {
    loop {
        match reader.fill_buf() {
            Ok(buf) => return Ok(buf.is_empty()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

fn be_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(bytes[at..at + 2].try_into().expect("two bytes were sliced"))
}
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes were sliced"))
}
fn be_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("eight bytes were sliced"))
}

/// A cursor over option data that says "invalid" instead of reading past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| be_u16(b, 0))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| be_u32(b, 0))
    }
    /// A string preceded by its 32-bit length.
    fn string(&mut self) -> Option<&'a [u8]> {
        let length = self.u32()?;
        self.take(usize::try_from(length).ok()?)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Cuts a message to the protocol's string limit, on a character boundary.
fn bounded(message: &str) -> &str {
    if message.len() <= MAX_STRING {
        return message;
    }
    let mut end = MAX_STRING;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Connection<'_> {
    fn flush(&mut self) -> Result<()> {
        self.writer.flush().map_err(Failure::Io)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).map_err(Failure::Io)
    }

    fn names_export(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.export.name().as_bytes()
    }

    fn transmission_flags(&self) -> u16 {
        // Read-only, so every connection sees the same bytes: several
        // connections at once are safe (nbdcopy uses them when allowed).
        let mut flags = FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH | FLAG_CAN_MULTI_CONN;
        if self.structured {
            flags |= FLAG_SEND_DF;
        }
        flags
    }

    // ---- Handshake ----

    fn handshake(&mut self) -> Result<Handshake> {
        let mut greeting = [0u8; 18];
        greeting[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
        greeting[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
        greeting[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
        self.send(&greeting)?;
        self.flush()?;
        // A client that closes before saying anything (a probe of the socket,
        // or one cut off by the server stopping) just left: nothing to report.
        if at_end(self.reader)? {
            return Ok(Handshake::Ended(Ending::Left));
        }
        let mut client_flags = [0u8; 4];
        read_exact(self.reader, &mut client_flags, "the handshake")?;
        let client_flags = u32::from_be_bytes(client_flags);
        if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
            return Err(Failure::Protocol(format!("unknown client flags {client_flags:#x}")));
        }
        let fixed = client_flags & FLAG_C_FIXED_NEWSTYLE != 0;
        self.no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
        loop {
            if at_end(self.reader)? {
                return Ok(Handshake::Ended(Ending::Left));
            }
            let mut head = [0u8; 16];
            read_exact(self.reader, &mut head, "an option")?;
            if be_u64(&head, 0) != IHAVEOPT {
                return Err(Failure::Protocol(format!(
                    "an option starts with {:#018x}, not IHAVEOPT",
                    be_u64(&head, 0)
                )));
            }
            let (option, length) = (be_u32(&head, 8), be_u32(&head, 12));
            if length > MAX_OPTION {
                return Err(Failure::Protocol(format!(
                    "option {option} carries {length} bytes, more than the {MAX_OPTION} accepted"
                )));
            }
            let mut data = vec![0u8; length as usize];
            read_exact(self.reader, &mut data, "an option")?;
            if !fixed && option != OPT_EXPORT_NAME {
                return Err(Failure::Protocol(format!(
                    "option {option} from a client that did not ask for fixed newstyle negotiation"
                )));
            }
            if let Some(end) = self.option(option, &data)? {
                return Ok(end);
            }
        }
    }

    fn option_reply(&mut self, option: u32, reply: u32, data: &[u8]) -> Result<()> {
        let mut head = [0u8; 20];
        head[..8].copy_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
        head[8..12].copy_from_slice(&option.to_be_bytes());
        head[12..16].copy_from_slice(&reply.to_be_bytes());
        head[16..20].copy_from_slice(&(data.len() as u32).to_be_bytes());
        self.send(&head)?;
        self.send(data)
    }

    fn option_error(&mut self, option: u32, reply: u32, message: &str) -> Result<Option<Handshake>> {
        self.option_reply(option, reply, bounded(message).as_bytes())?;
        self.flush()?;
        Ok(None)
    }

    /// Answers one option; `Some` when it ends the handshake.
    fn option(&mut self, option: u32, data: &[u8]) -> Result<Option<Handshake>> {
        match option {
            OPT_EXPORT_NAME => {
                if !self.names_export(data) {
                    // This option cannot answer with an error: the protocol says to
                    // close the connection.
                    return Ok(Some(Handshake::Ended(Ending::UnknownExport(String::from_utf8_lossy(data).into()))));
                }
                let mut reply = Vec::with_capacity(10 + 124);
                reply.extend_from_slice(&self.export.size().to_be_bytes());
                reply.extend_from_slice(&self.transmission_flags().to_be_bytes());
                if !self.no_zeroes {
                    reply.resize(reply.len() + 124, 0);
                }
                self.send(&reply)?;
                self.flush()?;
                Ok(Some(Handshake::Transmission))
            }
            OPT_ABORT => {
                // The client may already have closed; an error here changes nothing.
                let _ = self.option_reply(option, REP_ACK, &[]).and_then(|()| self.flush());
                Ok(Some(Handshake::Ended(Ending::Left)))
            }
            OPT_LIST => {
                if !data.is_empty() {
                    return self.option_error(option, REP_ERR_INVALID, "NBD_OPT_LIST carries no data");
                }
                let name = self.export.name().as_bytes().to_vec();
                let mut server = Vec::with_capacity(4 + name.len());
                server.extend_from_slice(&(name.len() as u32).to_be_bytes());
                server.extend_from_slice(&name);
                self.option_reply(option, REP_SERVER, &server)?;
                self.option_reply(option, REP_ACK, &[])?;
                self.flush()?;
                Ok(None)
            }
            OPT_INFO | OPT_GO => self.info_or_go(option, data),
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    return self.option_error(option, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY carries no data");
                }
                self.structured = true;
                self.option_reply(option, REP_ACK, &[])?;
                self.flush()?;
                Ok(None)
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => self.meta_context(option, data),
            OPT_STARTTLS => self.option_error(
                option,
                REP_ERR_UNSUP,
                "this server has no TLS: it serves on a Unix socket or on loopback unless told otherwise",
            ),
            _ => self.option_error(option, REP_ERR_UNSUP, &format!("option {option} is not supported")),
        }
    }

    fn info_or_go(&mut self, option: u32, data: &[u8]) -> Result<Option<Handshake>> {
        let mut fields = Fields(data);
        let parsed = (|| {
            let name = fields.string()?;
            let count = fields.u16()?;
            let requests: Vec<u16> = (0..count).map(|_| fields.u16()).collect::<Option<_>>()?;
            fields.is_empty().then_some((name, requests))
        })();
        let Some((name, requests)) = parsed else {
            return self.option_error(option, REP_ERR_INVALID, "malformed NBD_OPT_INFO or NBD_OPT_GO data");
        };
        if !self.names_export(name) {
            let message = format!(
                "no export named {:?}; this server exports {:?}",
                String::from_utf8_lossy(name),
                self.export.name()
            );
            return self.option_error(option, REP_ERR_UNKNOWN, &message);
        }
        let mut export = Vec::with_capacity(12);
        export.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        export.extend_from_slice(&self.export.size().to_be_bytes());
        export.extend_from_slice(&self.transmission_flags().to_be_bytes());
        self.option_reply(option, REP_INFO, &export)?;
        for request in requests {
            let mut info = request.to_be_bytes().to_vec();
            match request {
                INFO_NAME => info.extend_from_slice(self.export.name().as_bytes()),
                INFO_DESCRIPTION => info.extend_from_slice(bounded(&self.export.description()).as_bytes()),
                INFO_BLOCK_SIZE => {
                    // Any alignment works; 4 KiB is what disks and file systems use.
                    for size in [1u32, 4096, self.limits.max_request] {
                        info.extend_from_slice(&size.to_be_bytes());
                    }
                }
                _ => continue,
            }
            self.option_reply(option, REP_INFO, &info)?;
        }
        self.option_reply(option, REP_ACK, &[])?;
        self.flush()?;
        Ok((option == OPT_GO).then_some(Handshake::Transmission))
    }

    fn meta_context(&mut self, option: u32, data: &[u8]) -> Result<Option<Handshake>> {
        let list = option == OPT_LIST_META_CONTEXT;
        if !self.structured {
            return self.option_error(option, REP_ERR_INVALID, "metadata contexts need structured replies first");
        }
        let mut fields = Fields(data);
        let parsed = (|| {
            let name = fields.string()?;
            let count = fields.u32()?;
            let mut queries = Vec::new();
            for _ in 0..count {
                // Each query takes at least its 4-byte length: the data bounds the count.
                queries.push(fields.string()?);
            }
            fields.is_empty().then_some((name, queries))
        })();
        let Some((name, queries)) = parsed else {
            return self.option_error(option, REP_ERR_INVALID, "malformed metadata context option data");
        };
        if !self.names_export(name) {
            let message = format!("no export named {:?}", String::from_utf8_lossy(name));
            return self.option_error(option, REP_ERR_UNKNOWN, &message);
        }
        let mut matched = list && queries.is_empty();
        for query in &queries {
            let Some(query) = std::str::from_utf8(query).ok().filter(|q| q.contains(':')) else {
                return self.option_error(option, REP_ERR_INVALID, "a metadata context query is not namespace:name");
            };
            matched |= query == BASE_ALLOCATION || (list && query == "base:");
        }
        if !list {
            self.base_allocation = matched;
        }
        if matched {
            let id = if list { 0 } else { BASE_ALLOCATION_ID };
            let mut reply = id.to_be_bytes().to_vec();
            reply.extend_from_slice(BASE_ALLOCATION.as_bytes());
            self.option_reply(option, REP_META_CONTEXT, &reply)?;
        }
        self.option_reply(option, REP_ACK, &[])?;
        self.flush()?;
        Ok(None)
    }

    // ---- Transmission ----

    fn transmission(&mut self) -> Result<Ending> {
        loop {
            if at_end(self.reader)? {
                return Ok(Ending::Left);
            }
            let mut head = [0u8; 28];
            read_exact(self.reader, &mut head, "a request")?;
            if be_u32(&head, 0) != REQUEST_MAGIC {
                return Err(Failure::Protocol(format!("a request starts with {:#010x}", be_u32(&head, 0))));
            }
            let request = Request {
                flags: be_u16(&head, 4),
                command: be_u16(&head, 6),
                handle: be_u64(&head, 8),
                offset: be_u64(&head, 16),
                length: be_u32(&head, 24),
            };
            match request.command {
                CMD_READ => self.read(&request)?,
                CMD_WRITE => {
                    if request.length > self.limits.max_request {
                        // Its data cannot be skipped at a reasonable cost: answer, then close.
                        self.error(&request, EINVAL, "a write larger than the server accepts")?;
                        return Err(Failure::Protocol(format!(
                            "a write of {} bytes, more than the {} accepted",
                            request.length, self.limits.max_request
                        )));
                    }
                    // The data is read and dropped, so the next request is found.
                    let skipped = io::copy(&mut self.reader.take(u64::from(request.length)), &mut io::sink())
                        .map_err(Failure::Io)?;
                    if skipped != u64::from(request.length) {
                        return Err(Failure::Cut("a write request's data"));
                    }
                    self.error(&request, EPERM, "the export is read-only")?;
                }
                CMD_DISC => return Ok(Ending::Left),
                CMD_FLUSH => {
                    if request.flags & !CMD_FLAG_FUA != 0 {
                        self.error(&request, EINVAL, "unknown command flags")?;
                    } else {
                        // Nothing is ever written, so everything is always flushed.
                        self.simple_reply(request.handle, 0)?;
                    }
                }
                CMD_TRIM | CMD_WRITE_ZEROES => self.error(&request, EPERM, "the export is read-only")?,
                CMD_BLOCK_STATUS => self.block_status(&request)?,
                other => self.error(&request, EINVAL, &format!("command {other} is not supported"))?,
            }
            self.flush()?;
        }
    }

    fn simple_reply(&mut self, handle: u64, error: u32) -> Result<()> {
        let mut reply = [0u8; 16];
        reply[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        reply[4..8].copy_from_slice(&error.to_be_bytes());
        reply[8..].copy_from_slice(&handle.to_be_bytes());
        self.send(&reply)
    }

    fn chunk_header(&mut self, handle: u64, flags: u16, kind: u16, length: usize) -> Result<()> {
        let mut head = [0u8; 20];
        head[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
        head[4..6].copy_from_slice(&flags.to_be_bytes());
        head[6..8].copy_from_slice(&kind.to_be_bytes());
        head[8..16].copy_from_slice(&handle.to_be_bytes());
        head[16..].copy_from_slice(&(length as u32).to_be_bytes());
        self.send(&head)
    }

    /// Answers a request with an error: a structured error chunk with a message
    /// when structured replies were negotiated, else a simple reply.
    fn error(&mut self, request: &Request, error: u32, message: &str) -> Result<()> {
        if !self.structured {
            return self.simple_reply(request.handle, error);
        }
        let message = bounded(message).as_bytes();
        self.chunk_header(request.handle, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 6 + message.len())?;
        self.send(&error.to_be_bytes())?;
        self.send(&(message.len() as u16).to_be_bytes())?;
        self.send(message)
    }

    /// Checks a read or block-status request's range; answers EINVAL if it is bad.
    fn range_ok(&mut self, request: &Request, allowed_flags: u16, max_length: u32) -> Result<bool> {
        let size = self.export.size();
        let problem = if request.flags & !allowed_flags != 0 {
            Some(format!("command flags {:#x} are not valid here", request.flags))
        } else if request.length == 0 {
            Some("a request of 0 bytes".to_string())
        } else if request.length > max_length {
            Some(format!("{} bytes in one request, more than the {max_length} accepted", request.length))
        } else if request.offset.checked_add(u64::from(request.length)).is_none_or(|end| end > size) {
            Some(format!(
                "bytes {}..{} are past the end of the export ({size} bytes)",
                request.offset,
                request.offset.saturating_add(u64::from(request.length))
            ))
        } else {
            None
        };
        match problem {
            Some(message) => self.error(request, EINVAL, &message).map(|()| false),
            None => Ok(true),
        }
    }

    fn read(&mut self, request: &Request) -> Result<()> {
        let allowed = CMD_FLAG_FUA | if self.structured { CMD_FLAG_DF } else { 0 };
        if !self.range_ok(request, allowed, self.limits.max_request)? {
            return Ok(());
        }
        if self.structured && request.flags & CMD_FLAG_DF == 0 {
            return self.read_structured(request);
        }
        // One piece, all or nothing: a simple reply, or a structured one the client
        // asked not to be fragmented. Bounded by the request limit checked above.
        let mut data = Vec::with_capacity(request.length as usize);
        let mut failed: Option<(u64, String)> = None;
        let export = self.export;
        export
            .read(request.offset, u64::from(request.length), &mut |segment| {
                match segment {
                    Segment::Data(bytes) => data.extend_from_slice(bytes),
                    Segment::Zero(n) => data.resize(data.len() + n as usize, 0),
                    Segment::Unreadable { length, reason } => {
                        if failed.is_none() {
                            failed = Some((request.offset + data.len() as u64, reason.to_string()));
                        }
                        data.resize(data.len() + length as usize, 0);
                    }
                }
                Ok(())
            })
            .map_err(Failure::Io)?;
        match (failed, self.structured) {
            (None, false) => {
                self.simple_reply(request.handle, 0)?;
                self.send(&data)
            }
            (None, true) => {
                self.chunk_header(request.handle, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 8 + data.len())?;
                self.send(&request.offset.to_be_bytes())?;
                self.send(&data)
            }
            (Some(_), false) => self.simple_reply(request.handle, EIO),
            (Some((offset, reason)), true) => {
                self.error_offset(request.handle, REPLY_FLAG_DONE, offset, &reason)?;
                Ok(())
            }
        }
    }

    fn error_offset(&mut self, handle: u64, flags: u16, offset: u64, reason: &str) -> Result<()> {
        let message = bounded(reason).as_bytes();
        self.chunk_header(handle, flags, REPLY_TYPE_ERROR_OFFSET, 14 + message.len())?;
        self.send(&EIO.to_be_bytes())?;
        self.send(&(message.len() as u16).to_be_bytes())?;
        self.send(message)?;
        self.send(&offset.to_be_bytes())
    }

    /// A read answered piece by piece as the export yields it: data chunks,
    /// holes for zeros, an error chunk with its offset for each unreadable
    /// range. Nothing is buffered beyond the chunk being sent.
    fn read_structured(&mut self, request: &Request) -> Result<()> {
        let handle = request.handle;
        let mut at = request.offset;
        let mut zeros: Option<(u64, u64)> = None;
        let mut sent: Result<()> = Ok(());
        let export = self.export;
        let walked = export.read(request.offset, u64::from(request.length), &mut |segment| {
            let result = (|| {
                if !matches!(segment, Segment::Zero(_)) {
                    if let Some((start, length)) = zeros.take() {
                        self.hole(handle, start, length)?;
                    }
                }
                match segment {
                    Segment::Data(bytes) => {
                        self.chunk_header(handle, 0, REPLY_TYPE_OFFSET_DATA, 8 + bytes.len())?;
                        self.send(&at.to_be_bytes())?;
                        self.send(bytes)?;
                        at += bytes.len() as u64;
                    }
                    Segment::Zero(n) => {
                        let start = zeros.map_or(at, |(start, _)| start);
                        zeros = Some((start, at + n - start));
                        at += n;
                    }
                    Segment::Unreadable { length, reason } => {
                        self.error_offset(handle, 0, at, reason)?;
                        at += length;
                    }
                }
                Ok(())
            })();
            // Keep the protocol error (it says what failed); hand the walk an
            // io::Error so it stops.
            result.map_err(|e: Failure| {
                let io = io::Error::other(e.to_string());
                sent = Err(e);
                io
            })
        });
        sent?;
        walked.map_err(Failure::Io)?;
        if let Some((start, length)) = zeros.take() {
            self.hole(handle, start, length)?;
        }
        self.chunk_header(handle, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0)
    }

    fn hole(&mut self, handle: u64, start: u64, length: u64) -> Result<()> {
        // A read is at most `max_request` (a u32) long, so its holes fit 32 bits.
        self.chunk_header(handle, 0, REPLY_TYPE_OFFSET_HOLE, 12)?;
        self.send(&start.to_be_bytes())?;
        self.send(&(length as u32).to_be_bytes())
    }

    fn block_status(&mut self, request: &Request) -> Result<()> {
        if !self.structured || !self.base_allocation {
            return self.error(request, EINVAL, "no metadata context was selected (NBD_OPT_SET_META_CONTEXT)");
        }
        if !self.range_ok(request, CMD_FLAG_FUA | CMD_FLAG_REQ_ONE, u32::MAX)? {
            return Ok(());
        }
        let max_runs = if request.flags & CMD_FLAG_REQ_ONE != 0 { 1 } else { MAX_DESCRIPTORS };
        let runs = self.export.allocation(request.offset, u64::from(request.length), max_runs);
        if runs.is_empty() {
            return self.error(request, EIO, "no allocation information for this range");
        }
        let mut payload = Vec::with_capacity(4 + 8 * runs.len());
        payload.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
        for (length, allocation) in runs {
            // Runs lie within the request, whose length is a u32.
            payload.extend_from_slice(&(length as u32).to_be_bytes());
            let state = match allocation {
                Allocation::Data => 0,
                Allocation::Zero => STATE_HOLE | STATE_ZERO,
            };
            payload.extend_from_slice(&state.to_be_bytes());
        }
        self.chunk_header(request.handle, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, payload.len())?;
        self.send(&payload)
    }
}

struct Request {
    flags: u16,
    command: u16,
    handle: u64,
    offset: u64,
    length: u32,
}
