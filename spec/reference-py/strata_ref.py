#!/usr/bin/env python3
"""strata_ref: an independent Python reader for Strata archives (format 1.0-draft).

Written from spec/FORMAT.md and spec/conformance.md alone, as a second
implementation that tests the specification and the reference tools: it shares
no code with the Rust implementation. Section numbers below are FORMAT.md's.

Commands (the protocol of conformance.md, "The runner and its command protocol")
    info    ARCHIVE [--json]                     sections, from the index (10.1); for an
                                                 image its free bytes and used_blocks flag (7)
    verify  ARCHIVE [--json]                     walk and check every record (10.2, 11)
    restore ARCHIVE --image NAME DEST            restore one image (DEST '-' = stdout)
    list    ARCHIVE [--files NAME] [--json]      the entries of file trees: the groups the
                                                 FILES_INDEX names, no chunk (8.3, 8.6)
    cat     ARCHIVE --files NAME PATH            one file's content, found by the lookup of 8.5
                                                 (FILES_INDEX, then one FILES_DIR and one group per
                                                 component) and read as 10.1 step 5 says
    extract ARCHIVE --files NAME DEST [--json]   extract a file tree safely (8.7), each file's
                                                 content from the extents its FILES_EXTENTS
                                                 records announce (8.2, 10.1 step 5)
    (every command also takes --parent PATH, repeatable: an ancestor of an
    incremental archive, matched by its UUID, 15.4 rule 1)

Incremental archives (feature bit 1, section 15; conformance level R3). A child's
chunk_refs are (archive, offset) pairs (15.1); ancestors are found beside the
child by the names its CHAIN records (or named with --parent), opened only when a
chunk or a prefix is needed (info and list open only the ancestors whose records
prefix the tables they read), bound by UUID, length, trailer and the BLAKE3 of
their ARCHIVE_INDEX body, their own chain checked against the child's, and each
ancestor chunk checked by sections 5 and 6 and against the child's CHAIN_INDEX row
(15.4). At most 16 ancestors are open at once (least recently used
closed first), each holding its header only once checked. verify reports an
ancestor missing or mismatched once, at the CHAIN record, affecting every range
and file that refers to it, and every other reference problem at the referring
record of the child; the CHAIN_INDEX is compared with the CHAIN record and the
extents, and the ARCHIVE_INDEX's chain fields with the CHAIN_INDEX, as summary
checks. A damaged CHAIN is replaced by the CHAIN_INDEX's copy (11); when the chain
cannot be known (both fail, or the first record is not a CHAIN), every ancestor
reference is charged to the first record's problem (15.4).

Prefixed tables (flags ZSTD and PREFIXED, 5.3). A table of a child may be stored as
a zstd frame whose raw-content dictionary is the decoded body of a record of the same
type in an ancestor. Every reader path decodes table bodies in one place
(decode_table_body, through read_record for random access and in the walk), which
checks the rules of 5.3 in their order and reports them at the child's record:
the head, the frame, the chain (only a CHAIN record that passed: its copy in the
CHAIN_INDEX does not stand in), the ancestor (found and bound as for chunks), its
record, that record's own decoding (a prefixed prefix is read in the ancestor's own
chain: its ancestor j, held to 64, is the child's m + j, within the child's depth),
the prefix's length and BLAKE3, and the decoding. The walk opens an ancestor when a prefixed table needs it, and reports
a failure once, at the prefixed record, which is then lost as a record whose body
fails its rules.

Exit status
    verify  0 ok, 1 damaged or unsupported, 2 unreadable (conformance.md);
    info    0, or 2 when the archive cannot be opened;
    restore 0 (lost extents included: written as zeros, named on stderr; free
            extents of a used-blocks image too, counted on stderr), or 2 with no
            file left at DEST;
    list    0, or 1 when the entries break rules of section 8 (listed anyway),
            2 when the archive cannot be opened;
    cat     0, or 2 with nothing on standard output when PATH names no regular file
            or hard link, or its content cannot be given whole and checked (its
            digest is checked before the first byte is written);
    extract 0 when nothing was refused or warned about, else 1 (2: cannot open).

Layout of this file
    1. constants and small helpers;
    2. the header (3, 4);
    3. body parsers, one per record type; each returns (value, errors) with
       errors as (class, what, detail) triples and never raises on bad input;
    4. zstd frames: chunks (6) and compressed table bodies (5.2, decode_table_body,
       the one decoding step of the walk and of random access), prefixed ones
       included (5.3, decode_prefixed);
    5. MapChecker: the extent-map rules of an image (7.2: 32-byte extent entries with
       chunk_offset, every section on the 512-byte grain, a data extent a range of its
       chunk's raw bytes inside one chunk window) and the map digest (7.3);
    6. Walker: the front-to-back verifier (10.2) with resynchronisation (11),
       the record order (2), the end, index, directory and trailer cross-checks,
       the map digest (7.3), the entry order of file trees (8), each file's
       extents (8.2: announced once, in FILES_EXTENTS, counted by the entry's
       extent_count) and its digest over its data ranges and holes (8.3);
    7. Archive: the random-access reader from the end (10.1), for info, list,
       restore, cat and extract: groups, directory tables (8.5), the path lookup
       and the location of a file's extents through its group's extent list;
       AncestorFile and Ancestors: the ancestors of an incremental archive
       (15.4), shared by the walk and random access;
    8. Extractor: file-tree extraction with the restore order and safety rules
       of 8.7 (every path resolved from a handle on DEST, never through a link);
    9. the commands.

Tables (8, "Tables"). FILES_EXTENTS, FILES_ENTRIES, FILES_DIR and FILES_INDEX hold
tables stored column by column, each column plain or delta coded (read_table);
a body's length is checked against its head (counts and lengths) before any
column is read.

Allocation bounds. A body is read only after its record header passed every
check of section 5, including body_length against the type's maximum (5.1);
bodies whose format maximum is "file size" (IMAGE_INDEX, FILES_DIR,
FILES_INDEX, CHAIN_INDEX) and unknown ancillary bodies are further limited to TABLE_LIMIT
(256 MiB, the reference reader's default of section 13). Bodies are slices of
a read-only mmap, so checking a CRC copies nothing. Every count read from a body
is checked against the body's length before anything is allocated for it. A
chunk is decoded into exactly raw_length (at most 16 MiB) bytes, never a size
taken from the frame, and at most two decoded chunks are kept. A compressed table
body (flag ZSTD, 5.2) is decoded only after its CRC and after its frame header's
Frame_Content_Size passed the type's maximum and TABLE_LIMIT; the decoder's output
buffer is that checked length (a bounded stream read, never an allocation the frame
asks for), and this reader's own walk of the frame's blocks refuses a second frame or
any byte after the first. A prefixed body (5.3) is decoded the same way, after its
head's prefix_length passed the type's maximum and TABLE_LIMIT; its prefix is the
decoded body of a record of an ancestor, bounded likewise, and a chain of prefixes
(at most the chain's depth) holds one ancestor record and one decoded prefix at a time.

Time bounds. A file's digest (8.3) hashes its data ranges and, for each hole,
only its offset and length: checking a file costs what its stored bytes cost,
however large its holes (a few hundred bytes of archive can declare a sparse
file of 2^63 bytes). Holes are never read, hashed or written: extraction leaves
them unallocated with ftruncate.

Times (8.3, 8.7). Each time is a (seconds i64, nanoseconds u32) pair; the
reader sets it as the exact integer seconds * 10^9 + nanoseconds (Python ints
do not overflow), reads it back from the entry it set it on, and warns, naming
the path, the recorded and the kept time, when the destination kept another.
"""
import argparse
import bisect
import errno
import grp
import json
import mmap
import os
import pwd
import secrets
import stat
import struct
import sys
from collections import OrderedDict, namedtuple

import blake3
import crc32c
import zstandard

# ----------------------------------------------------------------------------
# 1. Constants and helpers

HEADER_MAGIC = b"\x89STRATA\n"
REC_MAGIC = b"\xd3REC"
TRAILER_MAGIC = b"STRATA\r\n"

CHUNK, CHAIN = 0x0001, 0x0002
IMAGE_BEGIN, IMAGE_EXTENTS, IMAGE_END, IMAGE_INDEX = 0x0010, 0x0011, 0x0012, 0x0013
FILES_BEGIN, FILES_EXTENTS, FILES_ENTRIES, FILES_END, FILES_DIR, FILES_INDEX = range(0x0020, 0x0026)
ARCHIVE_INDEX, CHAIN_INDEX, TRAILER = 0x00F0, 0x00F1, 0x00FF
TYPE_NAMES = {CHUNK: "CHUNK", CHAIN: "CHAIN", CHAIN_INDEX: "CHAIN_INDEX", IMAGE_BEGIN: "IMAGE_BEGIN", IMAGE_EXTENTS: "IMAGE_EXTENTS",
              IMAGE_END: "IMAGE_END", IMAGE_INDEX: "IMAGE_INDEX", FILES_BEGIN: "FILES_BEGIN",
              FILES_EXTENTS: "FILES_EXTENTS", FILES_ENTRIES: "FILES_ENTRIES", FILES_END: "FILES_END",
              FILES_DIR: "FILES_DIR", FILES_INDEX: "FILES_INDEX", ARCHIVE_INDEX: "ARCHIVE_INDEX",
              TRAILER: "TRAILER"}
SECTION_TYPES = {CHUNK, IMAGE_BEGIN, IMAGE_EXTENTS, IMAGE_END,
                 FILES_BEGIN, FILES_EXTENTS, FILES_ENTRIES, FILES_END}
TABLE_TYPES = {IMAGE_INDEX, FILES_DIR, FILES_INDEX}
FILE_SIZE_TYPES = TABLE_TYPES | {CHAIN_INDEX}   # 5.1: maximum body length "file size", no format maximum
MAY_COMPRESS = {IMAGE_EXTENTS, IMAGE_INDEX, FILES_EXTENTS, FILES_ENTRIES, FILES_DIR, FILES_INDEX,
                CHAIN_INDEX}            # 5.2
R_ANCILLARY, R_ZSTD, R_PREFIXED = 1, 2, 8     # record flags (5); bits 2 and 4..15 reserved
R_KNOWN = R_ANCILLARY | R_ZSTD | R_PREFIXED

MIB = 1 << 20
MAX_RAW = 1 << 24                       # chunk raw length, zstd window, chunk size
IMG_EXTENT_SIZE = 32                    # an IMAGE_EXTENTS / IMAGE_INDEX extent entry (7.2)
MAX_IMAGE = (1 << 63) - 1
ALL_ONES = 0xFFFFFFFFFFFFFFFF           # unknown image size; the root's parent_id
MAX_SECTIONS = 65536
MAX_EXTENTS = 65536                     # per IMAGE_EXTENTS / FILES_EXTENTS record
TABLE_LIMIT = 256 * MIB                 # implementation limit (section 13)
MAX_BODY = {CHUNK: 40 + MAX_RAW, IMAGE_BEGIN: 24 + 255, IMAGE_EXTENTS: 16 + MAX_EXTENTS * IMG_EXTENT_SIZE,
            IMAGE_END: 96, IMAGE_INDEX: TABLE_LIMIT, FILES_BEGIN: 24 + 255,
            FILES_EXTENTS: 24 + MAX_EXTENTS * 36, FILES_ENTRIES: 64 * MIB, FILES_END: 72,
            FILES_DIR: TABLE_LIMIT, FILES_INDEX: TABLE_LIMIT,
            ARCHIVE_INDEX: 48 + MAX_SECTIONS * 32, TRAILER: 32,
            CHAIN: 48 + 64 * 319, CHAIN_INDEX: TABLE_LIMIT}     # 5.1
INCOMPATIBLE_NAMES = {0: "encryption", 1: "incremental"}
F_INCREMENTAL = 1 << 1                  # incompatible bit 1, the one this reader implements (4, 15)
IMPLEMENTED_INCOMPATIBLE = F_INCREMENTAL
MAX_DEPTH = 64                          # chain depth: the format's limit and this reader's (13, 15.2)
MAX_OPEN_ANCESTORS = 16                 # ancestors kept open at once, least recently used closed (15.4)
REF_SHIFT, REF_OFFSET = 56, (1 << 56) - 1   # a chunk_ref is (archive, offset) (15.1)
KIND_NAMES = {1: "file", 2: "directory", 3: "symlink", 4: "hardlink",
              5: "char-device", 6: "block-device", 7: "fifo", 8: "socket"}
K_FILE, K_DIR, K_SYMLINK, K_HARDLINK, K_CHR, K_BLK, K_FIFO, K_SOCK = range(1, 9)
CAP_NAMES, CAP_XATTRS, CAP_ATIME, CAP_CTIME, CAP_BTIME, CAP_HOLES, CAP_SOURCE = (1 << i for i in range(7))
MAX_GROUP = 65536                       # entries per FILES_ENTRIES group, locators per FILES_DIR (8.3, 8.5)
MASK64 = (1 << 64) - 1
F_BTIME, F_CHANGED, F_UNREAD, F_LOST = (1 << i for i in range(4))   # entry flags (8.3)
ZERO32, ONES32, FE32 = bytes(32), b"\xff" * 32, b"\xfe" * 32   # map digest identities (7.3)
REF_ZERO, REF_LOST, REF_FREE = 0, 1, 2  # chunk_ref kinds below 128 (7.2); 3..127 reserved
B_USED_BLOCKS = 1                       # IMAGE_BEGIN flags bit 0 (7.1); bits 1..15 reserved
SECTOR = 512                            # the grain of every image section's extents (7.2 rules 2, 3)
EMPTY_DIGEST = blake3.blake3(b"").digest()[:16]  # the file digest of no items (size 0, flag bit 2 or 3)
NSEC = 1_000_000_000                    # nanoseconds in a second; a *_nsec is below it (8.3)
ZEROS = bytes(MIB)
REC_HDR = struct.Struct("<4sHH8sQII")
# prefix_ref, prefix_length, prefix_blake3: the head of a prefixed body (5.3, 48 bytes)
PREFIX_HEAD = struct.Struct("<QQ32s")
# image_offset, length, chunk_ref, chunk_offset, reserved (7.2, 32 bytes)
IMG_EXTENT = struct.Struct("<QQQII")

Ent = namedtuple("Ent", "kind parent name rec off path")


class StrataError(Exception):
    """A problem that stops the random-access reader."""

    def __init__(self, cls, offset, what, detail):
        super().__init__(f"{cls} at offset {offset}: {what}: {detail}")
        self.cls, self.offset, self.what, self.detail = cls, offset, what, detail


class CannotOpen(StrataError):
    """Not a Strata archive, an unusable header, or a file that cannot be read."""


def crc(data, value=0):
    return crc32c.crc32c(data, value)


def u16(b, o): return struct.unpack_from("<H", b, o)[0]
def u32(b, o): return struct.unpack_from("<I", b, o)[0]
def u64(b, o): return struct.unpack_from("<Q", b, o)[0]


def is_pow2(v):
    return v > 0 and v & (v - 1) == 0


def tname(t):
    return TYPE_NAMES.get(t, f"type 0x{t:04x}")


def lossy(b):
    return bytes(b).decode("utf-8", "replace")


class FileDigest:
    """The file digest of 8.3, fed a file's extents' bytes in file order.

    Items: each data range (a maximal run of extents, each starting where the one
    before it ends) as le64(offset) le64(length) BLAKE3(its bytes), and each hole (a
    maximal range of 0..size that no data range covers) as le64(offset) le64(length)
    and 32 zero bytes. The digest is the first 16 bytes of the BLAKE3 of the items.
    A hole costs 48 bytes of hashing whatever its length."""

    def __init__(self, size):
        self.size = size
        self.items = blake3.blake3()
        self.covered = 0                # end of the last item
        self.run = None                 # [first byte, end, hasher] of the data range being read

    def _close(self):
        if self.run is not None:
            start, end, h = self.run
            self.items.update(struct.pack("<QQ", start, end - start) + h.digest())
            self.covered, self.run = end, None

    def data(self, foff, data):
        """The bytes of one extent at file offset foff (extents in increasing order)."""
        if self.run is None or foff != self.run[1]:
            self._close()
            if foff > self.covered:
                self.items.update(struct.pack("<QQ", self.covered, foff - self.covered) + ZERO32)
            self.run = [foff, foff, blake3.blake3()]
        self.run[2].update(data)
        self.run[1] = foff + len(data)

    def digest(self):
        self._close()
        if self.size > self.covered:
            self.items.update(struct.pack("<QQ", self.covered, self.size - self.covered) + ZERO32)
            self.covered = self.size
        return self.items.digest()[:16]


def civil(s, nsec):
    """A time of 8.3 as an ISO 8601 UTC date of any year (proleptic Gregorian), with the
    exact pair: '2262-04-11T23:47:16.854775808Z (9223372036 s, 854775808 ns)'."""
    days, sod = divmod(s, 86400)
    z = days + 719468                   # days since 0000-03-01
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    year = f"{y:04d}" if 0 <= y <= 9999 else f"{y:+05d}"
    return (f"{year}-{m:02d}-{d:02d}T{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}.{nsec:09d}Z"
            f" ({s} s, {nsec} ns)")


def bad_name(name):
    """The name rules of 7.1 and 8.3: not empty, no '/', no NUL, not '.' or '..'."""
    if not name:
        return "empty"
    if b"/" in name or b"\0" in name:
        return "contains '/' or NUL"
    if name in (b".", b".."):
        return "is '.' or '..'"
    return None


# ----------------------------------------------------------------------------
# 2. Header (sections 3, 4)

def check_header(mm, size):
    """Check the header in the order of section 3.

    Returns (hdr, problems, mode): problems are (class, offset, what, detail),
    every one at offset 0, the header's offset, whatever field it is about (3);
    mode is 'ok' (tag and header_length trusted), 'recover' (header damaged:
    find the tag by scanning for records), 'scan' (no magic: not-strata unless
    records are found) or 'stop' (a reader cannot go on)."""
    if size < 8 or mm[0:8] != HEADER_MAGIC:
        return None, [("not-strata", 0, "header.magic", "no Strata magic at offset 0")], "scan"
    if size < 128:
        return None, [("truncated", 0, "header", f"file of {size} bytes ends inside the header")], "stop"
    hl = u32(mm, 12)
    if hl % 8 or not 128 <= hl <= 4096:
        return None, [("bad-header", 0, "header.header_length",
                       f"{hl}, expected a multiple of 8 from 128 to 4096")], "recover"
    if size < hl:                       # the CRC cannot be checked: the header is not trusted, and
        # only unsupported-version and -feature stop a verifier (3), so it scans for records (11)
        return None, [("truncated", 0, "header", f"file of {size} bytes ends inside the {hl}-byte header")], "recover"
    want = crc(bytes(mm[128:hl]), crc(bytes(mm[0:124]) + b"\0\0\0\0"))
    if want != u32(mm, 124):
        return None, [("bad-header", 0, "header.header_crc",
                       f"stored 0x{u32(mm, 124):08x}, computed 0x{want:08x}")], "recover"
    hdr = {"version_major": u16(mm, 8), "version_minor": u16(mm, 10), "header_length": hl,
           "uuid": bytes(mm[16:32]), "tag": bytes(mm[16:24]),
           "incompatible": u64(mm, 32), "compatible": u64(mm, 40), "autoclear": u64(mm, 48),
           "created_ns": struct.unpack_from("<q", mm, 56)[0],
           # the text before the first zero byte; what follows it is ignored (3)
           "writer": bytes(mm[64:96]).split(b"\0", 1)[0].decode("utf-8", "replace")}
    if hdr["version_major"] != 1:
        return hdr, [("unsupported-version", 0, "header.version_major",
                      f"version {hdr['version_major']}.{hdr['version_minor']}, this reader reads 1.x")], "stop"
    problems = []
    if any(mm[96:124]):
        problems.append(("bad-header", 0, "header.reserved", "reserved bytes 96..124 are not zero"))
    unknown = hdr["incompatible"] & ~IMPLEMENTED_INCOMPATIBLE
    if unknown:                         # this reader implements bit 1 (incremental, 15) only
        names = [INCOMPATIBLE_NAMES.get(b, f"bit {b}") for b in range(64) if unknown >> b & 1]
        problems.append(("unsupported-feature", 0, "header.incompatible_features",
                         "unimplemented incompatible feature(s): " + ", ".join(names)))
        return hdr, problems, "stop"
    return hdr, problems, "ok"


def flag_fault(typ, flags):
    """The flag rules of section 5 that depend on the type, checked after the reserved
    bits: ZSTD on a known type that is never compressed (5.2), PREFIXED without ZSTD or
    on a CHAIN_INDEX (5.3). A reason, or None. PREFIXED without ZSTD is a fault on
    every type, an unknown ancillary one included."""
    if flags & R_ZSTD and typ in TYPE_NAMES and typ not in MAY_COMPRESS:
        return f"ZSTD on a {tname(typ)}, a type never compressed (5.2)"
    if flags & R_PREFIXED and not flags & R_ZSTD:
        return f"PREFIXED without ZSTD on a {tname(typ)} (5.3)"
    if flags & R_PREFIXED and typ == CHAIN_INDEX:
        return "PREFIXED on a CHAIN_INDEX, which holds the copy of the chain (5.3)"
    return None


def record_header_ok(mm, pos, size, tag):
    """True if 32 bytes at pos start with the record magic, (carry tag) and pass the header CRC."""
    if pos + 32 > size or mm[pos:pos + 4] != REC_MAGIC:
        return False
    if tag is not None and mm[pos + 8:pos + 16] != tag:
        return False
    return crc(mm[pos:pos + 28]) == u32(mm, pos + 28)


def next_record(mm, size, start, tag):
    """The first offset >= start holding a record header (section 11), or None."""
    pos = mm.find(REC_MAGIC, start) if size else -1
    while pos != -1:
        if record_header_ok(mm, pos, size, tag):
            return pos
        pos = mm.find(REC_MAGIC, pos + 1)
    return None


# ----------------------------------------------------------------------------
# 3. Body parsers: each returns (value, errors); errors are (class, what, detail)

def check_section_name(raw_name, what):
    errs = []
    try:
        raw_name.decode("utf-8")
    except UnicodeDecodeError:
        errs.append(("record-malformed", what, "not valid UTF-8"))
    why = bad_name(raw_name)
    if why:
        errs.append(("record-malformed", what, f"{lossy(raw_name)!r} {why}"))
    return errs


def check_chunk_size(cs, what):
    """7.1, 8.1: any other value, a power of two above 16 MiB included, is record-malformed."""
    if not (is_pow2(cs) and 4096 <= cs <= MAX_RAW):
        return [("record-malformed", what, f"{cs}, expected a power of two from 4096 to 16777216")]
    return []


def parse_image_begin(body):
    if len(body) < 24:
        return None, [("record-malformed", "IMAGE_BEGIN.body_length", f"{len(body)}, at least 25 needed")]
    sid, sector, size, chunk_size, name_len, flags = struct.unpack_from("<IIQIHH", body, 0)
    if len(body) != 24 + name_len:
        return None, [("record-malformed", "IMAGE_BEGIN.body_length",
                       f"{len(body)}, expected 24 + name_length ({name_len})")]
    errs = []
    if flags & ~B_USED_BLOCKS:          # 7.1: bits 1 to 15 are reserved
        errs.append(("record-malformed", "IMAGE_BEGIN.flags", f"reserved bits set: 0x{flags:04x}"))
    if not (is_pow2(sector) and 512 <= sector <= 65536):
        errs.append(("record-malformed", "IMAGE_BEGIN.sector_size", f"{sector}, expected a power of two from 512 to 65536"))
    if size != ALL_ONES and size > MAX_IMAGE:
        errs.append(("limit-exceeded", "IMAGE_BEGIN.logical_size", f"{size}, above 2^63-1"))
    errs += check_chunk_size(chunk_size, "IMAGE_BEGIN.chunk_size")
    raw_name = bytes(body[24:])
    errs += check_section_name(raw_name, "IMAGE_BEGIN.name")
    return {"section_id": sid, "sector_size": sector, "logical_size": size, "chunk_size": chunk_size,
            "used_blocks": bool(flags & B_USED_BLOCKS), "name": lossy(raw_name)}, errs


def parse_files_begin(body):
    if len(body) < 24:
        return None, [("record-malformed", "FILES_BEGIN.body_length", f"{len(body)}, at least 25 needed")]
    sid, chunk_size, captured, name_len = struct.unpack_from("<IIQH", body, 0)
    if len(body) != 24 + name_len:
        return None, [("record-malformed", "FILES_BEGIN.body_length",
                       f"{len(body)}, expected 24 + name_length ({name_len})")]
    errs = []
    if any(body[18:24]):
        errs.append(("record-malformed", "FILES_BEGIN.reserved", "not zero"))
    if captured >> 7:                   # bits 7..63 reserved (8.1)
        errs.append(("record-malformed", "FILES_BEGIN.captured", f"reserved bits set: 0x{captured:x}"))
    errs += check_chunk_size(chunk_size, "FILES_BEGIN.chunk_size")
    raw_name = bytes(body[24:])
    errs += check_section_name(raw_name, "FILES_BEGIN.name")
    return {"section_id": sid, "chunk_size": chunk_size, "captured": captured, "name": lossy(raw_name)}, errs


def parse_extents(body, what, bounded, width=IMG_EXTENT_SIZE):
    """IMAGE_EXTENTS (bounded) or IMAGE_INDEX (unbounded) body.

    Returns ((section_id, extents), errors); extents are (image_offset, length,
    chunk_ref, chunk_offset, reserved) tuples, the 32-byte entries of 7.2; the
    value is None when the body cannot be parsed. The rules of each entry's own
    fields are extent_entry_errors' and extent_kind_error's."""
    if len(body) < 16:
        return None, [("record-malformed", f"{what}.body_length", f"{len(body)}, at least 16 needed")]
    sid, res, count = struct.unpack_from("<IIQ", body, 0)
    if bounded and not 1 <= count <= MAX_EXTENTS:
        return None, [("record-malformed", f"{what}.count", f"{count}, expected 1 to 65536")]
    if len(body) != 16 + width * count:     # checked before anything is allocated
        return None, [("record-malformed", f"{what}.count",
                       f"{count} extents need a {16 + width * count}-byte body, body_length is {len(body)}")]
    if res:                             # the record is not used: its extents are lost (7.2)
        return None, [("record-malformed", f"{what}.reserved", "not zero")]
    # an extent's own rules are the walker's (7.2, 9.1)
    return (sid, list(IMG_EXTENT.iter_unpack(body[16:]))), []


def parse_image_end(body):
    if len(body) != 96:                 # a longer body failed the type's limit already
        return None, [("record-malformed", "IMAGE_END.body_length", f"{len(body)}, expected 96")]
    keys = ("section_id", "reserved", "logical_size", "extent_count", "data_bytes",
            "lost_bytes", "chunk_count", "chunk_bytes", "begin_offset")
    end = dict(zip(keys, struct.unpack_from("<IIQQQQQQQ", body, 0)))
    end["map_blake3"] = bytes(body[64:96])
    errs = []
    if end["reserved"]:
        errs.append(("record-malformed", "IMAGE_END.reserved", "not zero"))
    if end["logical_size"] > MAX_IMAGE:
        errs.append(("limit-exceeded", "IMAGE_END.logical_size", f"{end['logical_size']}, above 2^63-1"))
    if end["data_bytes"] + end["lost_bytes"] > end["logical_size"]:     # 7.3
        errs.append(("record-malformed", "IMAGE_END.data_bytes",
                     f"data_bytes {end['data_bytes']} + lost_bytes {end['lost_bytes']} exceed logical_size {end['logical_size']}"))
    return end, errs


def parse_files_end(body):
    """FILES_END body (8.4): 72 bytes."""
    if len(body) != 72:                 # a longer body failed the type's limit already
        return None, [("record-malformed", "FILES_END.body_length", f"{len(body)}, expected 72")]
    keys = ("section_id", "reserved", "entry_count", "file_count", "directory_count",
            "content_bytes", "chunk_count", "chunk_bytes", "begin_offset", "extent_count")
    end = dict(zip(keys, struct.unpack_from("<IIQQQQQQQQ", body, 0)))
    errs = [("record-malformed", "FILES_END.reserved", "not zero")] if end["reserved"] else []
    return end, errs


# -- tables stored column by column (8, "Tables") ----------------------------------

PLAIN, DELTA = "plain", "delta"
INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def row_width(cols):
    return sum(c[1] for c in cols)


def read_table(body, off, count, cols):
    """The table of count rows stored column by column at body offset off (8, "Tables"):
    the count values of the row's first field, then those of the second, and so on.
    cols: (name, width, kind, coding), kind 'u' (unsigned), 'i' (i64) or 'b' (bytes);
    a delta column is decoded by adding its stored values up modulo 2^64. Returns
    ({name: [values]}, end offset). The caller checked that the body holds
    count x the row width bytes at off before calling (nothing is allocated before)."""
    out = {}
    for name, width, kind, coding in cols:
        if kind == "b":
            vals = [bytes(body[off + width * i:off + width * (i + 1)]) for i in range(count)]
        else:
            fmt = INT_FORMATS[width]
            vals = list(struct.unpack_from(f"<{count}{fmt.lower() if kind == 'i' else fmt}", body, off))
            if coding == DELTA:
                acc = 0
                for i, v in enumerate(vals):
                    acc = (acc + v) & MASK64
                    vals[i] = acc
        out[name] = vals
        off += width * count
    return out, off


FILE_EXTENT_COLS = (("entry_id", 8, "u", DELTA), ("file_offset", 8, "u", PLAIN), ("length", 8, "u", PLAIN),
                    ("chunk_ref", 8, "u", DELTA), ("chunk_offset", 4, "u", PLAIN))            # 8.2, 36 bytes
EXTENT_LIST_COLS = (("extents_record", 8, "u", PLAIN), ("first_index", 8, "u", PLAIN))       # 8.3, 16 bytes
ENTRY_COLS = (("kind", 1, "u", PLAIN), ("flags", 1, "u", PLAIN), ("mode", 2, "u", PLAIN),
              ("name_length", 1, "u", PLAIN), ("user_length", 1, "u", PLAIN), ("group_length", 1, "u", PLAIN),
              ("target_length", 2, "u", PLAIN), ("xattr_count", 2, "u", PLAIN), ("uid", 4, "u", PLAIN),
              ("gid", 4, "u", PLAIN), ("rdev_major", 4, "u", PLAIN), ("rdev_minor", 4, "u", PLAIN),
              ("mtime_s", 8, "i", PLAIN), ("mtime_nsec", 4, "u", PLAIN), ("parent_id", 8, "u", PLAIN),
              ("size", 8, "u", PLAIN), ("link_id", 8, "u", PLAIN), ("extent_count", 8, "u", PLAIN),
              ("digest", 16, "b", PLAIN))                                                       # 8.3, 87 bytes
ENTRY_TIME_COLS = ((CAP_ATIME, "atime"), (CAP_CTIME, "ctime"), (CAP_BTIME, "btime"))
SOURCE_COLS = (("ino", 8, "u", DELTA), ("dev_major", 4, "u", PLAIN), ("dev_minor", 4, "u", PLAIN))
LOCATOR_COLS = (("entry_id", 8, "u", DELTA), ("child_count", 8, "u", PLAIN), ("first_child_id", 8, "u", DELTA),
                ("first_fence", 8, "u", DELTA))                                                 # 8.5, 32 bytes
FENCE_COLS = (("entries_record", 8, "u", DELTA), ("dir_record", 8, "u", DELTA),
              ("first_child_id", 8, "u", DELTA), ("name_length", 1, "u", PLAIN))                # 8.5, 25 bytes
INDEX_COLS = (("entries_record", 8, "u", DELTA), ("dir_record", 8, "u", DELTA),
              ("first_id", 8, "u", DELTA))                                                      # 8.6, 24 bytes


def entry_cols(captured):
    """The entry row's columns for a section's captured bits (8.3): 87 bytes, plus 12
    for each of bits 2, 3 and 4 (a time pair) and 16 for bit 6 (source identity), in
    the order of the table."""
    cols = list(ENTRY_COLS)
    for bit, t in ENTRY_TIME_COLS:
        if captured & bit:
            cols += [(f"{t}_s", 8, "i", PLAIN), (f"{t}_nsec", 4, "u", PLAIN)]
    if captured & CAP_SOURCE:
        cols += list(SOURCE_COLS)
    return cols


def parse_files_extents(body):
    """FILES_EXTENTS body (8.2): a 24-byte head and a table of count 36-byte file
    extents. Returns ({"section_id", "first_index", "count", "extents": [(entry_id,
    file_offset, length, chunk_ref, chunk_offset)]}, errors); None when the head
    breaks a rule (none of the record's extents is read)."""
    n = len(body)
    if n < 24:
        return None, [("record-malformed", "FILES_EXTENTS.body_length", f"{n}, at least 24 needed")]
    sid, res, count, first_index = struct.unpack_from("<IIQQ", body, 0)
    if not 1 <= count <= MAX_EXTENTS:
        return None, [("record-malformed", "FILES_EXTENTS.count", f"{count}, expected 1 to 65536")]
    if n != 24 + 36 * count:            # checked before anything is allocated
        return None, [("record-malformed", "FILES_EXTENTS.count",
                       f"{count} extents need a {24 + 36 * count}-byte body, body_length is {n}")]
    if res:
        return None, [("record-malformed", "FILES_EXTENTS.reserved", "not zero")]
    cols, _ = read_table(body, 24, count, FILE_EXTENT_COLS)
    extents = list(zip(*(cols[c[0]] for c in FILE_EXTENT_COLS)))
    return {"section_id": sid, "first_index": first_index, "count": count, "extents": extents}, []


def parse_group(body):
    """FILES_ENTRIES body (8.3), an entry group: ({head fields, "list": [(extents_record,
    first_index)], "entries": [entry dict]}, errors). The value is None when the head
    breaks a rule or the lengths do not fit: none of the group's entries is read (8.3,
    11). Each entry's entry_id is first_id + its row; "extent_index" is the index of its
    first extent in the section's extent sequence (10.1 step 5). The section's own
    captured, and the first_id the section expects, are the caller's to compare."""
    n = len(body)
    if n < 56:
        return None, [("record-malformed", "FILES_ENTRIES.body_length", f"{n}, at least 56 needed")]
    (sid, count, first_id, captured, extent_base, list_count, names_length, strings_length,
     res) = struct.unpack_from("<IIQQQIIQQ", body, 0)
    if res:
        return None, [("record-malformed", "FILES_ENTRIES.reserved", "not zero")]
    if not 1 <= count <= MAX_GROUP:
        return None, [("record-malformed", "FILES_ENTRIES.count", f"{count}, expected 1 to 65536")]
    if captured >> 7:                   # bits 7..63 reserved (8.1): the row width is not known
        return None, [("record-malformed", "FILES_ENTRIES.captured", f"reserved bits set: 0x{captured:x}")]
    cols = entry_cols(captured)
    w = row_width(cols)
    want = 56 + 16 * list_count + count * w + names_length + strings_length
    if n != want:                       # from the head, before anything is allocated
        return None, [("record-malformed", "FILES_ENTRIES.body_length",
                       f"{n}, the head gives 56 + 16 x list_count {list_count} + count {count} x {w} + "
                       f"names_length {names_length} + strings_length {strings_length} = {want}")]
    lst, p = read_table(body, 56, list_count, EXTENT_LIST_COLS)
    rows, p = read_table(body, p, count, cols)
    if sum(rows["name_length"]) != names_length:
        return None, [("record-malformed", "FILES_ENTRIES.names_length",
                       f"{names_length}, the rows' name lengths add up to {sum(rows['name_length'])}")]
    names_at, strings_at, strings_end = p, p + names_length, p + names_length + strings_length
    entries, q, np_, xi = [], strings_at, names_at, extent_base
    for i in range(count):
        e = {c[0]: rows[c[0]][i] for c in cols}
        for bit, t in ENTRY_TIME_COLS:  # a time not captured has no column: shown as absent, 0 in numbers
            if not captured & bit:
                e[f"{t}_s"] = e[f"{t}_nsec"] = 0
        if not captured & CAP_SOURCE:
            e["ino"] = e["dev_major"] = e["dev_minor"] = 0
        e["entry_id"] = (first_id + i) & MASK64
        e["row"] = i
        e["extent_index"] = xi
        xi += e["extent_count"]
        e["name"] = bytes(body[np_:np_ + e["name_length"]])
        np_ += e["name_length"]
        fixed = e["user_length"] + e["group_length"] + e["target_length"]
        if fixed > strings_end - q:
            return None, [("record-malformed", "FILES_ENTRIES.strings_length",
                           f"{strings_length}: the strings of row {i} run past the strings area")]
        e["user"] = bytes(body[q:q + e["user_length"]])
        q += e["user_length"]
        e["group"] = bytes(body[q:q + e["group_length"]])
        q += e["group_length"]
        e["target"] = bytes(body[q:q + e["target_length"]])
        q += e["target_length"]
        xattrs = []
        for _ in range(e["xattr_count"]):      # each takes at least 5 bytes: bounded by the area
            if strings_end - q < 5:
                return None, [("record-malformed", "FILES_ENTRIES.strings_length",
                               f"{strings_length}: the attributes of row {i} run past the strings area")]
            xn, xv = struct.unpack_from("<BI", body, q)
            q += 5
            if xn + xv > strings_end - q:
                return None, [("record-malformed", "FILES_ENTRIES.strings_length",
                               f"{strings_length}: an attribute of row {i} ({xn} + {xv} bytes) runs past the strings area")]
            xattrs.append((bytes(body[q:q + xn]), bytes(body[q + xn:q + xn + xv])))
            q += xn + xv
        e["xattrs"] = xattrs
        entries.append(e)
    if q != strings_end:
        return None, [("record-malformed", "FILES_ENTRIES.strings_length",
                       f"{strings_length}, the rows' strings and attributes take {q - strings_at}")]
    return {"section_id": sid, "count": count, "first_id": first_id, "captured": captured,
            "extent_base": extent_base, "extent_total": xi - extent_base,
            "list": list(zip(lst["extents_record"], lst["first_index"])), "entries": entries}, []


def entry_rule_errors(e, captured):
    """The rules of 8.3 that one entry can be checked against on its own.

    Returns (class, what, detail) triples; the rules that involve other
    entries (ids, parents, order, links, extents) are the callers'."""
    errs = []
    k, flags, eid = e["kind"], e["flags"], e["entry_id"]
    w = f"FILES_ENTRIES entry {eid}"

    def bad(field, detail):
        errs.append(("record-malformed", f"{w}.{field}", detail))

    if k not in KIND_NAMES:
        bad("kind", f"{k}, expected 1 to 8")
    if flags & 0xF0:
        bad("flags", f"reserved bits set: 0x{flags:02x}")
    if flags & F_LOST and k in KIND_NAMES and k not in (K_FILE, K_DIR):
        bad("flags", f"bit 3 (lost in salvage) on a {KIND_NAMES[k]}: only a regular file or a directory is")
    if e["mode"] > 0o7777:
        bad("mode", f"0o{e['mode']:o}, above 0o7777")
    if k not in (K_CHR, K_BLK) and (e["rdev_major"] or e["rdev_minor"]):
        bad("rdev", "not zero for an entry that is not a device")
    for t in ("mtime", "atime", "ctime", "btime"):     # 8.3 "Times": 0 to 999,999,999
        if e[f"{t}_nsec"] >= NSEC:
            bad(f"{t}_nsec", f"{e[f'{t}_nsec']}, above 999999999")
    if flags & F_BTIME and not captured & CAP_BTIME:
        bad("flags", "birth time present, but birth times were not captured")
    if not flags & F_BTIME and (e["btime_s"] or e["btime_nsec"]):
        bad("btime", "not (0, 0) without flag bit 0")
    if k == K_SYMLINK:
        if e["size"] != len(e["target"]):
            bad("size", f"{e['size']}, the target is {len(e['target'])} bytes")
    elif k != K_FILE and e["size"]:
        bad("size", f"{e['size']}, expected 0 for a {KIND_NAMES.get(k, 'entry')}")
    if k != K_HARDLINK and e["link_id"]:
        bad("link_id", f"{e['link_id']}, expected 0 for an entry that is not a hard link")
    if k != K_FILE and e["digest"] != ZERO32[:16]:
        bad("digest", "not zero for an entry that is not a regular file")
    if k != K_FILE and e["extent_count"]:
        bad("extent_count", f"{e['extent_count']}, expected 0 for an entry that is not a regular file")
    if eid != 0 or e["parent_id"] != ALL_ONES:
        why = bad_name(e["name"])
        if why:
            bad("name", f"the name {why}")
    if not captured & CAP_NAMES and (e["user"] or e["group"]):
        bad("user_length", "owner names present, but names were not captured")
    if k == K_SYMLINK:
        if not 1 <= len(e["target"]) <= 4095:
            bad("target_length", f"{len(e['target'])}, expected 1 to 4095")
    elif e["target"]:
        bad("target_length", f"{len(e['target'])}, expected 0 for an entry that is not a symbolic link")
    if e["xattrs"] and not captured & CAP_XATTRS:
        bad("xattr_count", f"{len(e['xattrs'])}, but extended attributes were not captured")
    prev = None
    for xn, xv in e["xattrs"]:
        if not xn:
            bad("xattrs", "an xattr name of length 0")
        if len(xv) > 65536:
            bad("xattrs", f"xattr {lossy(xn)!r}: value of {len(xv)} bytes, above 65536")
        if prev is not None and xn <= prev:
            bad("xattrs", f"xattr {lossy(xn)!r} is not after {lossy(prev)!r} (increasing, unique names)")
        prev = xn
    if k == K_FILE and flags & (F_UNREAD | F_LOST):    # the file has no content (8.3)
        why = "lost in salvage (flag bit 3)" if flags & F_LOST else "could not be read (flag bit 2)"
        if e["size"]:
            bad("size", f"{e['size']}, expected 0: the content {why}")
        if e["extent_count"]:
            bad("extent_count", f"{e['extent_count']}, expected 0: the content {why}")
        if e["digest"] != EMPTY_DIGEST:
            bad("digest", f"{e['digest'].hex()}, expected {EMPTY_DIGEST.hex()}, the digest of no items: "
                          f"the content {why}")
    return errs


def file_extent_own_errors(foff, length):
    """8.2: what one file extent breaks by itself: it is empty. An extent that runs
    past its chunk, even past 16 MiB (more than any chunk holds), breaks no rule of
    its record: it is charged only as 7.2 rule 5 says, at the offset chunk_ref holds
    (references). One whose file_offset + length passes 2^64 - 1 is found only as
    one that runs past its file's size, when the entry comes (on_entry: Python
    integers, so the end neither wraps nor overflows)."""
    errs = []
    if length == 0:
        errs.append(f"extent at file offset {foff} has length 0")
    return errs


def file_extent_end(foff, length):
    """8.2: where a file extent ends, wherever its end is used (its affected range, the
    order and overlap checks against the next extent): file_offset + length taken at
    most 2^64 - 1."""
    return min(foff + length, ALL_ONES)


def file_extent_errors(extents, size):
    """8.2: a file's extents, (file_offset, length, chunk_ref, chunk_offset, ...) in the
    order announced, increase, do not overlap, are not empty and end by its size. The
    overlap check uses ends taken at most 2^64 - 1 (file_extent_end); one whose
    file_offset + length passes 2^64 - 1 runs past the file's size whatever it is."""
    errs, pos, top = [], 0, 0
    for x in extents:
        foff, length = x[0], x[1]
        if length == 0:
            errs.append(f"extent at file offset {foff} has length 0")
        if foff < pos:
            errs.append(f"extent at file offset {foff} starts before the previous one ended ({pos})")
        pos = max(pos, file_extent_end(foff, length))
        top = max(top, foff + length)
    if size is not None and top > size:
        errs.append(f"extents end at {pos}{' (file_offset + length passes 2^64 - 1)' if top > ALL_ONES else ''}, "
                    f"the file's size is {size}")
    return errs


def parse_files_dir(body):
    """FILES_DIR body (8.5): ({"section_id", "entries_record", "locators": [(entry_id,
    child_count, first_child_id, first_fence)], "fences": [(entries_record, dir_record,
    first_child_id, name)]}, errors); None when the body breaks a rule of its own."""
    n = len(body)
    if n < 40:
        return None, [("record-malformed", "FILES_DIR.body_length", f"{n}, at least 40 needed")]
    sid, res, entries_record, dir_count, fence_count, names_length = struct.unpack_from("<IIQQQQ", body, 0)
    if res:
        return None, [("record-malformed", "FILES_DIR.reserved", "not zero")]
    if not 1 <= dir_count <= MAX_GROUP:
        return None, [("record-malformed", "FILES_DIR.dir_count", f"{dir_count}, expected 1 to 65536")]
    want = 40 + 32 * dir_count + 25 * fence_count + names_length
    if n != want:                       # checked before allocating
        return None, [("record-malformed", "FILES_DIR.body_length",
                       f"{n}, 40 + 32 x dir_count {dir_count} + 25 x fence_count {fence_count} + "
                       f"names_length {names_length} = {want}")]
    locs, p = read_table(body, 40, dir_count, LOCATOR_COLS)
    fen, p = read_table(body, p, fence_count, FENCE_COLS)
    if sum(fen["name_length"]) != names_length:
        return None, [("record-malformed", "FILES_DIR.names_length",
                       f"{names_length}, the fences' name lengths add up to {sum(fen['name_length'])}")]
    fences = []
    for i in range(fence_count):
        nl = fen["name_length"][i]
        fences.append((fen["entries_record"][i], fen["dir_record"][i], fen["first_child_id"][i],
                       bytes(body[p:p + nl])))
        p += nl
    return {"section_id": sid, "entries_record": entries_record,
            "locators": list(zip(*(locs[c[0]] for c in LOCATOR_COLS))), "fences": fences}, []


def parse_files_index(body):
    """FILES_INDEX body (8.6): ({"section_id", "rows": [(entries_record, dir_record,
    first_id)]}, errors); None when the body breaks a rule of its own."""
    n = len(body)
    if n < 24:
        return None, [("record-malformed", "FILES_INDEX.body_length", f"{n}, at least 24 needed")]
    sid, res, count, res2 = struct.unpack_from("<IIQQ", body, 0)
    if res or res2:
        return None, [("record-malformed", "FILES_INDEX.reserved", "not zero")]
    if count < 1 or n != 24 + 24 * count:
        return None, [("record-malformed", "FILES_INDEX.group_count",
                       f"{count} groups (at least 1) need a {24 + 24 * count}-byte body, body_length is {n}")]
    rows, _ = read_table(body, 24, count, INDEX_COLS)
    return {"section_id": sid, "rows": list(zip(*(rows[c[0]] for c in INDEX_COLS)))}, []


def parse_archive_index(body, chained):
    """ARCHIVE_INDEX body (9.2): ({"entries", "chain"}, errors). chain is None, or the
    (chain_index_offset, chain_index_blake3) pair that an archive with feature bit 1
    carries at body offsets 8..48. chained: True (bit 1 set), False (clear) or None
    (a header that is not trusted, 11: either form is taken, and the body's length
    tells them apart, since 8 + 32n and 48 + 32n never meet)."""
    if len(body) < 8:
        return None, [("record-malformed", "ARCHIVE_INDEX.body_length", f"{len(body)}, at least 8 needed")]
    count, res = struct.unpack_from("<II", body, 0)
    if count > MAX_SECTIONS:
        return None, [("limit-exceeded", "ARCHIVE_INDEX.section_count", f"{count}, above 65536")]
    forms = {True: (48,), False: (8,), None: (8, 48)}[chained]
    head = next((h for h in forms if len(body) == h + 32 * count), None)
    if head is None:
        want = " or ".join(str(h + 32 * count) for h in forms)
        return None, [("record-malformed", "ARCHIVE_INDEX.section_count",
                       f"{count} sections need a {want}-byte body"
                       + (" (feature bit 1: 48 + 32 x section_count)" if chained else "")
                       + f", body_length is {len(body)}")]
    errs = [("record-malformed", "ARCHIVE_INDEX.reserved", "not zero")] if res else []
    chain = (u64(body, 8), bytes(body[16:48])) if head == 48 else None
    entries = []
    for i in range(count):
        kind, r0, r1, r2, sid, b, e, t = struct.unpack_from("<BBBBIQQQ", body, head + 32 * i)
        w = f"ARCHIVE_INDEX.sections[{i}]"
        if kind not in (1, 2):
            errs.append(("record-malformed", f"{w}.kind", f"{kind}, expected 1 (image) or 2 (file tree)"))
        if r0 or r1 or r2:
            errs.append(("record-malformed", f"{w}.reserved", "not zero"))
        if sid != i:
            errs.append(("index-mismatch", f"{w}.section_id", f"{sid}, expected {i}"))
        if not b < e < t:
            errs.append(("index-mismatch", w, f"offsets begin {b}, end {e}, table {t} are not increasing"))
        entries.append({"kind": kind, "section_id": sid, "begin": b, "end": e, "table": t})
    return {"entries": entries, "chain": chain}, errs


# -- incremental archives (15) --------------------------------------------------

def split_ref(ref):
    """A chunk_ref of 128 or more as (archive, offset) (15.1): bits 56..63, bits 0..55."""
    return ref >> REF_SHIFT, ref & REF_OFFSET


def show_uuid(u):
    h = bytes(u).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_chain(body, own_uuid=None, what="CHAIN", depth_limit=MAX_DEPTH):
    """CHAIN body (15.2): ({"depth", "id_scheme", "ancestors": [{uuid, binding,
    archive_length, name}]}, errors); the value is None when the ancestors cannot be
    read. own_uuid, when known, is the archive's own archive_uuid, which no ancestor
    may carry (a cycle). A depth of 0 or above the limit stops the parse: the count
    of what follows is not trusted."""
    n = len(body)
    if n < 48:
        return None, [("record-malformed", f"{what}.body_length", f"{n}, at least 48 + one ancestor needed")]
    depth, scheme = body[0], body[1]
    if depth == 0:
        return None, [("record-malformed", f"{what}.depth", "0, expected 1 to 64")]
    if depth > min(MAX_DEPTH, depth_limit):
        return None, [("limit-exceeded", f"{what}.depth", f"{depth}, above {min(MAX_DEPTH, depth_limit)}")]
    errs = []
    if scheme != 0:                     # 15.6: the others are kept for encryption
        errs.append(("record-malformed", f"{what}.id_scheme", f"{scheme}, this version knows only 0 (unkeyed BLAKE3)"))
    if any(body[2:8]):
        errs.append(("record-malformed", f"{what}.reserved", "bytes 2..8 are not zero"))
    if scheme == 0 and any(body[8:40]):
        errs.append(("record-malformed", f"{what}.id_key_check", "not zero with id_scheme 0"))
    if any(body[40:48]):
        errs.append(("record-malformed", f"{what}.reserved", "bytes 40..48 are not zero"))
    ancestors, p = [], 48
    for i in range(depth):
        w = f"{what}.ancestors[{i}]"
        if n - p < 64:
            return None, errs + [("record-malformed", f"{what}.body_length",
                                  f"{n}: ancestor {i} of {depth} runs past the body")]
        uuid, binding, alen, nl = bytes(body[p:p + 16]), bytes(body[p + 16:p + 48]), u64(body, p + 48), body[p + 56]
        if any(body[p + 57:p + 64]):
            errs.append(("record-malformed", f"{w}.reserved", "not zero"))
        if nl == 0:
            errs.append(("record-malformed", f"{w}.name_length", "0, expected 1 to 255"))
        if n - p - 64 < nl:
            return None, errs + [("record-malformed", f"{what}.body_length",
                                  f"{n}: the name of ancestor {i} runs past the body")]
        name = bytes(body[p + 64:p + 64 + nl])
        why = bad_name(name) if nl else None
        if why:
            errs.append(("record-malformed", f"{w}.name", f"{lossy(name)!r} {why}: not a base name"))
        ancestors.append({"uuid": uuid, "binding": binding, "archive_length": alen, "name": name})
        p += 64 + nl
    if p != n:
        errs.append(("record-malformed", f"{what}.body_length",
                     f"{n}, 48 plus the {depth} ancestor entries make {p}"))
    seen = set() if own_uuid is None else {bytes(own_uuid)}
    for i, a in enumerate(ancestors):
        if a["uuid"] in seen:
            errs.append(("record-malformed", f"{what}.ancestors[{i}].uuid",
                         f"{show_uuid(a['uuid'])} repeats the archive's own or an earlier ancestor's: a cycle"))
        seen.add(a["uuid"])
    return {"depth": depth, "id_scheme": scheme, "ancestors": ancestors}, errs


ROW = struct.Struct("<Q32s")


def parse_chain_index(body, own_uuid=None):
    """CHAIN_INDEX body (15.3, decoded): ({"chain_body", "chain", "rows", "count"},
    errors). rows is the body's slice of 40-byte rows (chunk_ref, blake3), kept as
    it is and searched in place (row_lookup), never copied into a table."""
    n = len(body)
    if n < 16:
        return None, [("record-malformed", "CHAIN_INDEX.body_length", f"{n}, at least 16 needed")]
    chain_length, res, count = struct.unpack_from("<IIQ", body, 0)
    if n != 16 + chain_length + 40 * count:     # checked before anything is read for the rows
        return None, [("record-malformed", "CHAIN_INDEX.body_length",
                       f"{n}, 16 + chain_length {chain_length} + 40 x ref_count {count} make "
                       f"{16 + chain_length + 40 * count}")]
    errs = [("record-malformed", "CHAIN_INDEX.reserved", "not zero")] if res else []
    copy = body[16:16 + chain_length]
    chain, cerrs = parse_chain(copy, own_uuid, "CHAIN_INDEX.chain")
    # 15.3: a copy that breaks a rule of 15.2 is record-malformed, whatever 15.2 calls it
    errs += [("record-malformed", w, d) for _, w, d in cerrs]
    rows = body[16 + chain_length:]
    depth = chain["depth"] if chain else None
    prev, order, kind = -1, None, None
    for i, (ref, _) in enumerate(ROW.iter_unpack(rows)):
        archive = ref >> REF_SHIFT
        if ref <= prev and order is None:
            order = ("record-malformed", f"CHAIN_INDEX.rows[{i}].chunk_ref",
                     f"0x{ref:016x} does not follow 0x{prev:016x}: rows are in strictly increasing chunk_ref")
        if (archive == 0 or (depth is not None and archive > depth)) and kind is None:
            kind = ("record-malformed", f"CHAIN_INDEX.rows[{i}].chunk_ref",
                    f"0x{ref:016x}: archive {archive}, expected 1 to the depth {depth}")
        elif ref & REF_OFFSET < 128 and kind is None:
            kind = ("record-malformed", f"CHAIN_INDEX.rows[{i}].chunk_ref",
                    f"0x{ref:016x}: offset {ref & REF_OFFSET}, below 128")
        prev = ref
    errs += [x for x in (order, kind) if x]
    return {"chain_body": bytes(copy), "chain": chain, "rows": rows, "count": count}, errs


def row_lookup(rows, count, ref):
    """The blake3 a CHAIN_INDEX row gives ref (binary search over the rows), or None."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) // 2
        v = u64(rows, 40 * mid)
        if v == ref:
            return bytes(rows[40 * mid + 8:40 * mid + 40])
        if v < ref:
            lo = mid + 1
        else:
            hi = mid
    return None


def parse_trailer(body):
    if len(body) != 32:
        return None, [("record-malformed", "TRAILER.body_length", f"{len(body)}, expected 32")]
    t = {"index_offset": u64(body, 0), "archive_length": u64(body, 8), "record_count": u64(body, 16)}
    errs = []
    if bytes(body[24:32]) != TRAILER_MAGIC:
        errs.append(("record-malformed", "TRAILER.magic", f"{bytes(body[24:32]).hex()}, expected 5354524154410d0a"))
    if not 128 <= t["index_offset"] < t["archive_length"]:    # 9.3: no record can be there
        errs.append(("index-mismatch", "TRAILER.index_offset",
                     f"{t['index_offset']}, outside the archive's records (128..{t['archive_length']})"))
    return t, errs


# ----------------------------------------------------------------------------
# 4. Chunks (section 6)

def parse_chunk_fields(body):
    if len(body) < 40:
        return None, [("record-malformed", "CHUNK.body_length", f"{len(body)} bytes, at least 40 needed")]
    raw_length, encoding = u32(body, 32), body[36]
    errs = []
    if raw_length == 0:
        errs.append(("record-malformed", "CHUNK.raw_length", "0, expected 1 to 16777216"))
    elif raw_length > MAX_RAW:
        errs.append(("limit-exceeded", "CHUNK.raw_length", f"{raw_length}, above 16 MiB"))
    if encoding not in (0, 1):
        errs.append(("record-malformed", "CHUNK.encoding", f"{encoding}, expected 0 (raw) or 1 (zstd)"))
    if any(body[37:40]):
        errs.append(("record-malformed", "CHUNK.reserved", "not zero"))
    n = len(body) - 40
    if not errs:
        if encoding == 0 and n != raw_length:
            errs.append(("record-malformed", "CHUNK.body_length", f"raw chunk stores {n} bytes, raw_length {raw_length}"))
        elif encoding == 1 and n >= raw_length:
            errs.append(("record-malformed", "CHUNK.body_length",
                         f"zstd chunk stores {n} bytes, not fewer than raw_length {raw_length}"))
    return {"blake3": bytes(body[0:32]), "raw_length": raw_length, "encoding": encoding}, errs


def zstd_frame_header(stored):
    """The header of the zstd frame at the start of stored (RFC 8878 3.1.1.1): a dict
    (fcs: Frame_Content_Size or None, window: Window_Size or None when it comes from
    an absent Frame_Content_Size, dict_id, checksum, reserved, end), or a reason it
    cannot be read. Reads only the header; allocates nothing."""
    n = len(stored)
    if n < 5:
        return "too short to be a zstd frame"
    magic = u32(stored, 0)
    if 0x184D2A50 <= magic <= 0x184D2A5F:
        return "skippable frame"
    if magic != 0xFD2FB528:
        return f"zstd magic 0x{magic:08x}"
    fhd, p = stored[4], 5
    fcs_flag, single, checksum, did_flag = fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3
    window = None
    if not single:
        if p >= n:
            return "frame ends inside its header"
        wd = stored[p]
        p += 1
        base = 1 << (10 + (wd >> 3))
        window = base + (base >> 3) * (wd & 7)
    did_size = (0, 1, 2, 4)[did_flag]
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if p + did_size + fcs_size > n:
        return "frame ends inside its header"
    dict_id = int.from_bytes(stored[p:p + did_size], "little")
    p += did_size
    fcs = None
    if fcs_size:
        fcs = int.from_bytes(stored[p:p + fcs_size], "little") + (256 if fcs_size == 2 else 0)
        p += fcs_size
    if single:
        window = fcs
    return {"fcs": fcs, "window": window, "dict_id": dict_id, "checksum": checksum,
            "reserved": fhd >> 3 & 1, "end": p}


def zstd_frame_rest(stored, h):
    """After a frame header h: the blocks and checksum run to exactly the end of stored
    (one frame, nothing after it, RFC 8878 3.1.1.2). A reason, or None."""
    if h["reserved"]:
        return "reserved bit of Frame_Header_Descriptor set"
    n, p = len(stored), h["end"]
    while True:
        if p + 3 > n:
            return "frame ends inside a block header"
        bh = int.from_bytes(stored[p:p + 3], "little")
        p += 3
        btype = bh >> 1 & 3
        if btype == 3:
            return "reserved block type"
        p += 1 if btype == 1 else bh >> 3
        if p > n:
            return "frame ends inside a block"
        if bh & 1:
            break
    p += 4 * h["checksum"]
    if p > n:
        return "frame ends inside its content checksum"
    if p != n:
        return f"{n - p} byte(s) follow the zstd frame"
    return None


def zstd_decode(stored, length, prefix=None):
    """Decode the one zstd frame of stored (its header and blocks already checked) into
    exactly length bytes: (bytes, None) or (None, reason). The output buffer is length
    bytes, allocated by this reader's bound, never by a size the frame gives; the
    decoder refuses windows above 16 MiB and checks the content checksum. prefix: the
    bytes of a raw-content dictionary that precedes the frame (5.3), or None."""
    try:
        opts = {"max_window_size": MAX_RAW}
        if prefix is not None:
            opts["dict_data"] = zstandard.ZstdCompressionDict(prefix, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        with zstandard.ZstdDecompressor(**opts).stream_reader(bytes(stored), read_across_frames=False) as r:
            out = r.read(length)
            more = r.read(1)
    except zstandard.ZstdError as e:
        return None, f"zstd: {e}"
    if len(out) != length or more:
        return None, f"the frame decodes to {'more than ' if more else ''}{len(out)} bytes, not {length}"
    return out, None


def check_zstd_frame(stored, raw_length):
    """Section 6: exactly one frame, Frame_Content_Size == raw_length, no dictionary,
    Window_Size at most 16 MiB, nothing after the frame. Returns a reason or None."""
    h = zstd_frame_header(stored)
    if isinstance(h, str):
        return h
    if h["dict_id"]:
        return "Dictionary_ID is not 0"
    if h["fcs"] is None:
        return "frame header has no Frame_Content_Size"
    if h["fcs"] != raw_length:
        return f"Frame_Content_Size {h['fcs']}, raw_length {raw_length}"
    if h["window"] > MAX_RAW:
        return f"Window_Size {h['window']}, above 16 MiB"
    return zstd_frame_rest(stored, h)


def decode_chunk(fields, stored):
    """Decode and check a chunk whose fields passed parse_chunk_fields (section 6).
    Returns (raw bytes or None, errors)."""
    raw_length = fields["raw_length"]
    if fields["encoding"] == 0:
        raw = bytes(stored)
    else:
        why = check_zstd_frame(stored, raw_length)
        if why is None:                 # the output is bounded by raw_length, never by the frame
            raw, why = zstd_decode(stored, raw_length)
        if why:
            return None, [("chunk-corrupt", "CHUNK.stored", why)]
    digest = blake3.blake3(raw).digest()
    if digest != fields["blake3"]:
        return None, [("chunk-corrupt", "CHUNK.blake3", f"stored {fields['blake3'].hex()}, computed {digest.hex()}")]
    return raw, []


def type_bound(typ, limit):
    """The most a body of type typ may hold for this reader: the type's maximum (5.1)
    and the reader's table limit (13); a type whose maximum is the file size has no
    format maximum, only the limit (5.2 rule 2, 5.3 rules 2 and 3)."""
    return limit if typ in FILE_SIZE_TYPES else min(MAX_BODY[typ], limit)


def frame_rules(typ, frame, limit, what, label="compressed body"):
    """Rules 1 to 4 of 5.2 for the zstd frame of a table record (the stored body, or
    the frame after a prefix head, 5.3 rule 4): (frame header, errors), the first error
    the rule broken. Reads the frame header only; D is bounded by the type's maximum and
    limit (rule 2) before anything is allocated for it."""
    n = len(frame)
    h = zstd_frame_header(frame)
    if isinstance(h, str):              # no frame header, so no Frame_Content_Size (rule 1)
        return None, [("record-malformed", what, f"{label}: {h}")]
    if h["reserved"]:                   # a header no reader parses: rule 1 too (5.2)
        return None, [("record-malformed", what, f"{label}: reserved bit of Frame_Header_Descriptor set")]
    d = h["fcs"]
    if d is None:
        return None, [("record-malformed", what, f"{label}: the frame header has no Frame_Content_Size")]
    bound = type_bound(typ, limit)
    if d > bound:
        return None, [("limit-exceeded", what, f"{label} decodes to {d} bytes, maximum {bound}")]
    if n >= d:
        return None, [("record-malformed", what, f"{label} of {n} bytes decodes to {d}: not smaller")]
    if h["dict_id"]:
        return None, [("record-malformed", what, f"{label}: Dictionary_ID {h['dict_id']}, not 0")]
    if h["window"] > MAX_RAW:
        return None, [("record-malformed", what, f"{label}: Window_Size {h['window']}, above 16 MiB")]
    return h, []


def frame_decode(frame, h, prefix=None):
    """Rule 5 of 5.2 (rule 10 of 5.3 with a prefix): the frame whose header h passed
    frame_rules is one frame and nothing after it, and decodes to exactly its D bytes.
    (bytes, None) or (None, reason)."""
    why = zstd_frame_rest(frame, h)
    if why is not None:
        return None, why
    return zstd_decode(frame, h["fcs"], prefix)


def decode_table_body(typ, flags, body, limit=TABLE_LIMIT, prefixes=None):
    """The body of a table record (5.2) whose header and body CRC passed: the stored
    body itself without flag ZSTD, else the decoded one, checked by 5.2's rules in
    their order, or with flag PREFIXED by 5.3's (decode_prefixed; prefixes: the
    PrefixSource of the archive that holds the record). Returns (body or None, errors);
    the first error is the rule broken. The decoded length D is bounded by the type's
    maximum and limit (rule 2) before anything is allocated for it. The one decoding
    step of every reader path."""
    if not flags & R_ZSTD or typ not in MAY_COMPRESS:
        return body, []
    if flags & R_PREFIXED:
        return decode_prefixed(typ, body, limit, prefixes)
    what = f"{tname(typ)}.body"
    h, errs = frame_rules(typ, body, limit, what)
    if errs:
        return None, errs
    out, why = frame_decode(body, h)
    if why:
        return None, [("record-malformed", what, f"compressed body: {why}")]
    return out, []


# A child's view of its chain, for prefixed bodies (5.3): incremental() is feature bit
# 1 (rule 1); chain() the chain of its CHAIN record when that record passed its checks,
# else None (rule 5: the copy in the CHAIN_INDEX does not stand in); ancestors() its
# Ancestors (rule 6), which also know each ancestor's own chain (rule 8).
PrefixSource = namedtuple("PrefixSource", "incremental chain ancestors")


def prefix_head(typ, stored, limit, depth, where):
    """Rules 2 to 4 of 5.3 for the stored body of a prefixed record: its head
    {"k", "o", "length", "blake3", "frame"} (frame: the frame header, 5.2 rules 1 to 4,
    the frame standing for the stored body), or errors. depth: the child's chain's
    depth for the child's own record; None while that chain is not known (rule 5
    refuses it next) and for an ancestor's prefixed record read under rule 8 (whose k
    is checked against 64, never against that ancestor's own depth: the child's depth
    bounds its k + j after these rules). k is then held to 64, the most a chain lists.
    prefix_length has the type's maximum (5.1), none for a type whose maximum is the
    file size, and the reader's limit (rule 3). where: how the errors name the record,
    "" for the child's own."""
    what = f"{tname(typ)}.prefix"
    if len(stored) < 48:
        return None, [("record-malformed", f"{tname(typ)}.body_length",
                       f"{where}a prefixed body of {len(stored)} bytes, shorter than its 48-byte head")]
    ref, length, digest = PREFIX_HEAD.unpack_from(stored, 0)
    k, o = split_ref(ref)
    top = MAX_DEPTH if depth is None else depth
    if not 1 <= k <= top or o < 128:
        return None, [("record-malformed", f"{what}_ref",
                       f"{where}0x{ref:016x}: ancestor {k}, offset {o}; expected an ancestor 1 to "
                       f"{f'the depth {top}' if depth is not None else f'{top}, the most a chain lists'} "
                       "and an offset of 128 or more")]
    fmax = None if typ in FILE_SIZE_TYPES else MAX_BODY[typ]    # 5.1: these types' maximum is the file size
    if length == 0 or (fmax is not None and length > fmax):
        return None, [("record-malformed", f"{what}_length",
                       f"{where}{length}, expected 1 to " + (f"{fmax}, the type's maximum" if fmax else "the file size"))]
    if length > limit:
        return None, [("limit-exceeded", f"{what}_length", f"{where}{length}, above this reader's limit {limit}")]
    h, errs = frame_rules(typ, stored[48:], limit, f"{tname(typ)}.body", f"{where}prefixed frame")
    if errs:
        return None, errs
    return {"k": k, "o": o, "length": length, "blake3": bytes(digest), "frame": h}, []


def decode_prefixed(typ, body, limit, src):
    """5.3: the stored body of a record with flags ZSTD and PREFIXED, checked by the
    rules of its table in their order and decoded against its prefix, the decoded body
    of the record of the same type that prefix_ref names in an ancestor. Returns
    (decoded body or None, errors): the first rule broken, in this record or in a
    prefix's own record (rule 8: that failure takes its class), its detail naming the
    ancestor's file and the offset in it; the caller reports it at the record's own
    offset.

    A prefix may be prefixed in turn, in the ancestor's own chain: its ancestor j is
    the child's ancestor m + j (rule 4 of 15.4, which binding checked, makes them the
    same archive), so each step goes to an older ancestor and a chain of prefixes has
    at most depth records. Such a record's j is checked against 64 by its rule 2 (not
    against the ancestor's own depth), and after its rules 2 to 4 an m + j beyond the
    child's depth is parent-mismatch. Only its decoding counts: the rules of its type
    are never checked on it. They are checked outermost first (rules 1 to 4 of each; 5 to
    7, the next record's header and CRC; the next record's rules being rule 8 of the
    one before), then decoded innermost first (rule 8 of the innermost by 5.2, then
    rules 9 and 10 outwards), which is the order in which rules nested in rule 8 come.
    At most one record of an ancestor is held at a time, and one decoded prefix: a
    record is read again for its decoding, since at most 16 ancestors stay open and
    one may be closed in between (15.4)."""
    what = f"{tname(typ)}.body"
    if src is None or not src.incremental():                # rule 1
        return None, [("record-malformed", what, "a prefixed body (5.3) in an archive without feature bit 1")]
    chain = src.chain()
    heads, holder, stored, where, depth = [], 0, body, "", chain["depth"] if chain else None
    while True:
        head, errs = prefix_head(typ, stored, limit, depth, where)     # rules 2 to 4
        if holder:
            stored.release()            # the ancestor's mmap may be closed by the next get()
        if errs:
            return None, errs
        if chain is None:               # rule 5: only a CHAIN record that passed its checks
            return None, [("parent-missing", f"{tname(typ)}.prefix_ref",
                           "the chain is not known (the CHAIN record did not pass its checks), so ancestor "
                           f"{head['k']} of the prefix cannot be found")]
        t = holder + head["k"]          # the child's ancestor holding the prefix
        if t > chain["depth"]:          # rule 8 of the record before, after this one's rules 2 to 4
            # (the child's own record's k was held to the depth by rule 2, so only a nested one gets here)
            return None, [("parent-mismatch", f"{tname(typ)}.prefix_ref",
                           f"{where}its ancestor {head['k']} would be the child's ancestor {t}, beyond the "
                           f"child's depth {chain['depth']}")]
        head["t"] = t
        heads.append(head)
        anc = src.ancestors()
        try:
            af = anc.get(t)             # rule 6: found and bound (15.4 rules 1 to 4)
        except StrataError as e:
            return None, [(e.cls, f"{tname(typ)}.prefix_ref", f"{where}the prefix's ancestor: {e.detail}")]
        head["at"] = f"{anc.name(t)}, file {af.path}, offset {head['o']}"     # the prefix's record
        named = head["at"] + ": "
        try:
            flags, stored = af.record(head["o"], typ, limit)   # rule 7
        except StrataError as e:
            return None, [(e.cls, f"{tname(typ)}.prefix_ref", f"{where}the prefix's record, {named}{e.detail}")]
        if not flags & R_PREFIXED:
            break
        holder, where = t, named        # rule 8: a prefixed prefix, read in its ancestor's own chain
        if not af.hdr["incompatible"] & F_INCREMENTAL:     # its rule 1: the ancestor's feature bit 1
            stored.release()
            return None, [("record-malformed", what, f"{where}a prefixed body (5.3) in an archive without feature bit 1")]
        depth = None                    # its rule 2: its k to 64; k + j beyond the child's depth next
    # The innermost prefix: a record of its ancestor decoded by 5.2 (rule 8).
    out, errs = decode_table_body(typ, flags, stored, limit)
    prefix = None if errs else bytes(out)
    del out
    stored.release()
    if errs:
        c, w, d = errs[0]
        return None, [(c, w, f"the prefix's record, {named}{d}")]
    for i in range(len(heads) - 1, -1, -1):
        head, outer = heads[i], heads[i - 1] if i else None
        here = "" if outer is None else outer["at"] + ": "
        digest = blake3.blake3(prefix).digest()
        if len(prefix) != head["length"] or digest != head["blake3"]:      # rule 9
            return None, [("parent-mismatch", f"{tname(typ)}.prefix_blake3",
                           f"{here}the prefix, the decoded body of {head['at']}, has {len(prefix)} bytes "
                           f"and BLAKE3 {digest.hex()}; the head gives prefix_length {head['length']} and "
                           f"prefix_blake3 {head['blake3'].hex()}")]
        if outer is None:
            stored = body
        else:                           # the record is read again: its ancestor may have been closed
            try:
                stored = anc.get(outer["t"]).record(outer["o"], typ, limit)[1]
            except StrataError as e:
                return None, [(e.cls, f"{tname(typ)}.prefix_ref", f"the prefix's record, {here}{e.detail}")]
        prefix, why = frame_decode(stored[48:], head["frame"], prefix)    # rule 10
        if outer is not None:
            stored.release()
        if why:
            return None, [("record-malformed", what,
                           f"{here}prefixed frame, decoded with its prefix ({head['at']}): {why}")]
    return prefix, []


# ----------------------------------------------------------------------------
# 5. Extent map rules of an image (7.2 rules 1-5, 7.3)

def extent_kind_error(ref, used_blocks):
    """7.2, chunk_ref: 0 zero, 1 lost, 2 free, 128 and above the offset of a CHUNK
    record. A free extent belongs only in a used-blocks section (7.1 flag bit 0) and
    3..127 are reserved: both are record-malformed. Returns the detail, or None."""
    if REF_FREE < ref < 128:
        return f"{ref}, a reserved kind (3..127)"
    if ref == REF_FREE and not used_blocks:
        return "2, a free extent, in a section that is not used-blocks (IMAGE_BEGIN flag bit 0 clear)"
    return None


def extent_entry_errors(ref, coff, res):
    """7.2, the fields after chunk_ref of a 32-byte extent entry: chunk_offset is 0 for
    a zero, lost or free extent (any value for a data extent: rule 5 bounds it by the
    chunk), and reserved is 0. Both are record-malformed at the extents record,
    affecting the extent's range, as a reserved chunk_ref is. Returns (field, detail)
    pairs."""
    errs = []
    if ref < 128 and coff:
        errs.append(("chunk_offset", f"{coff} on an extent that is not data (chunk_ref {ref}), expected 0"))
    if res:
        errs.append(("reserved", f"0x{res:08x} in the extent entry, expected 0"))
    return errs


class MapChecker:
    """Checks that extents tile an image (7.2 rules 1 to 4); after a gap left by a lost
    record the walker moves `next` to where the map resumes (11).

    Every image section, used-blocks or not, has the 512-byte grain: every extent
    starts at a multiple of 512 (rule 2), every extent but the last ends at one (rule 3,
    reported at the extent that follows it, where rule 2 fails), a data extent lies
    within one chunk window (of any length and anywhere on the grain in it), and zero,
    lost and free extents may span windows. (The drafts before 2026-12-05 held a
    section without the used-blocks flag to whole windows.)"""

    def __init__(self, chunk_size, size_hint=None, used_blocks=False):
        self.cs, self.size_hint, self.used = chunk_size, size_hint, used_blocks
        self.next, self.off_grain = 0, False
        self.count = self.data = self.lost = self.free = 0

    def feed(self, start, length, ref, coff=0, res=0):
        """Checks one extent; returns its problems. An extent counts in data, lost and
        free only when it breaks no rule but where it starts, its chunk_ref is a kind
        the section may hold (conformance.md, sections[]) and its chunk_offset and
        reserved fields keep their rules (7.2: they break the entry as a reserved kind
        does)."""
        errs = []
        if start != self.next:
            errs.append(("extent-map", f"extent starts at {start}, previous extent ended at {self.next}"))
        elif self.off_grain:            # rule 3, of the extent before it: it was not the last
            errs.append(("extent-map", f"extent at {start} follows an extent that ended off a multiple of 512"))
        placed = len(errs)                # the problems of where it starts
        if length == 0:
            errs.append(("extent-map", f"extent at {start} has length 0"))
        end = start + length
        errs += self.rule_2(start) + self.rule_3(start, length, ref)
        self.off_grain = end % SECTOR != 0
        if end > MAX_IMAGE:
            errs.append(("extent-map", f"extent at {start} ends at {end}, beyond 2^63-1"))
        elif self.size_hint is not None and end > self.size_hint:
            errs.append(("extent-map", f"extent at {start} ends at {end}, past logical_size {self.size_hint}"))
        self.next = end
        self.count += 1
        if len(errs) == placed and extent_kind_error(ref, self.used) is None \
                and not extent_entry_errors(ref, coff, res):
            if ref >= 128:              # sums at most 2^64 - 1 (conformance.md, sections[])
                self.data = capped_add(self.data, length)
            elif ref == REF_LOST:
                self.lost = capped_add(self.lost, length)
            elif ref == REF_FREE:
                self.free = capped_add(self.free, length)
        return errs

    @staticmethod
    def rule_2(start):
        """Every extent starts at a multiple of 512, in every section."""
        if start % SECTOR:
            return [("extent-map", f"extent start {start} is not a multiple of 512")]
        return []

    def rule_3(self, start, length, ref):
        """A data extent lies within one chunk window, in every section: it may be shorter
        than chunk_size and start anywhere on the grain in the window. Zero, lost and free
        extents may span windows. (That every extent but the last ends on the grain is
        checked at the extent that follows it, in feed().)"""
        if ref < 128 or not self.cs or not length:
            return []
        first, last = start // self.cs, (start + length - 1) // self.cs
        if first != last:
            return [("extent-map", f"data extent {start}..{start + length} crosses the boundary of "
                                   f"the chunk window {first * self.cs}..{(first + 1) * self.cs}")]
        return []

    def finish(self, logical_size):
        """Rule 4: the last extent ends at logical_size."""
        if self.next != logical_size:
            return [("extent-map", f"extents end at {self.next}, logical_size is {logical_size}")]
        return []


def capped_add(total, n):
    """A reader's sum of sizes the records give, taken at most 2^64 - 1: sizes that add
    up past it give 2^64 - 1, never a wrapped value nor one that does not fit in a u64
    (FORMAT.md 8.4, the totals compared with FILES_END; conformance.md, the sections
    row: every sum of that row). The addends are never negative, so capping each step
    gives min(sum, 2^64 - 1)."""
    return min(total + n, ALL_ONES)


def extent_fits(coff, length, raw_length):
    """7.2 rule 5 (and 8.2 for a file extent): the extent reads raw bytes chunk_offset ..
    chunk_offset + length of its chunk, which must hold them."""
    return coff + length <= raw_length


MAP_IDENTITY = {REF_ZERO: ZERO32, REF_LOST: ONES32, REF_FREE: FE32}   # 7.3


def map_digest(extents, chunk_blake3):
    """The map digest of 7.3 over the (image_offset, length, chunk_ref, chunk_offset,
    reserved) extents: for each, image_offset (u64), length (u64), chunk_offset (u64,
    the entry's u32 widened; 0 for an extent that is not data) and the content
    identity. chunk_blake3(ref) gives the blake3 field of the CHUNK record at ref. The
    callers leave out maps with a kind the section may not hold (extent_kind_error)."""
    h = blake3.blake3()
    for start, length, ref, coff, _ in extents:
        if ref >= 128:
            h.update(struct.pack("<QQQ", start, length, coff) + chunk_blake3(ref))
        else:
            h.update(struct.pack("<QQQ", start, length, 0) + MAP_IDENTITY[ref])
    return h.digest()


# ----------------------------------------------------------------------------
# 6. Front-to-back verification (sections 2, 7, 8, 9, 10.2, 11)

def entry_place_errors(e, get, lost=False):
    """The rules of 8.3 that place an entry among the others: the root, the
    parent, the hard-link target. get(entry_id) returns the Ent of an earlier
    entry read, or None; after a lost record of the section (lost), an id below
    the entry's own that no entry read carries is no problem (11). Returns
    (what, detail) pairs."""
    eid, parent, k = e["entry_id"], e["parent_id"], e["kind"]
    out = []
    if eid == 0:
        if parent != ALL_ONES or k != K_DIR or e["name"]:
            out.append(("parent_id", "entry 0 must be the root: a directory with no name and parent_id 0xFFFFFFFFFFFFFFFF"))
    elif parent == ALL_ONES:
        out.append(("parent_id", "only entry 0 is the root"))
    elif parent >= eid:
        out.append(("parent_id", f"{parent} is not an earlier entry"))
    else:
        p = get(parent)
        if p is None and not lost:
            out.append(("parent_id", f"{parent} is no entry read before it"))
        elif p is not None and p.kind != K_DIR:
            out.append(("parent_id", f"{parent} is a {KIND_NAMES.get(p.kind, 'entry')}, not a directory"))
    if k == K_HARDLINK:
        lid, t = e["link_id"], get(e["link_id"])
        if lid >= eid or (t is None and not lost) or (t is not None and t.kind != K_FILE):
            what = "not an earlier entry" if lid >= eid or t is None else f"a {KIND_NAMES.get(t.kind, 'entry')}"
            out.append(("link_id", f"{lid} is {what}, not an earlier regular file of this section"))
    return out


def entry_path(e, get):
    """Path bytes of an entry (the root is b''), from its parent's; a parent the walk
    did not read before it is written #ID and ends the path (conformance.md, affects)."""
    eid, parent = e["entry_id"], e["parent_id"]
    if parent == ALL_ONES:
        return b"" if eid == 0 else e["name"]
    if parent == 0:
        return e["name"]
    p = get(parent) if parent < eid else None
    return (p.path if p is not None else b"#%d" % parent) + b"/" + e["name"]


class RunOrder:
    """8, "Entry order": the children of each directory are consecutive entries, its
    run, in strictly increasing bytewise name order. Fed the entries in entry order;
    check() gives the rule an entry breaks, as (field, detail), or None: its parent's
    run has ended (an entry with another parent came after that run's last entry), or
    its name is not greater than the previous entry's of the same run. after_gap: the
    entry before it was lost (11 point 3), so the order is not checked against it."""

    def __init__(self):
        self.parent = self.name = None
        self.ended = set()

    def check(self, e, after_gap=False):
        parent, name = e["parent_id"], e["name"]
        if not e["entry_id"] or parent == ALL_ONES:
            return None                 # the root, or an entry claiming to be one: in no run
        err = None
        if parent != self.parent:
            if parent in self.ended:
                err = ("parent_id", f"the run of the children of entry {parent} has ended (an entry with another "
                                    f"parent came after its last entry)")
            if self.parent is not None:
                self.ended.add(self.parent)
        elif not after_gap and not name > self.name:
            err = ("name", f"not after {lossy(self.name)!r}, the previous name of its run (strictly increasing "
                           f"bytewise)")
        self.parent, self.name = parent, name
        return err


class ImageSection:
    kind = "image"

    def __init__(self, sid, begin_off, begin):
        self.sid, self.begin_off, self.begin = sid, begin_off, begin
        self.name = begin["name"]
        cs = begin["chunk_size"]
        hint = begin["logical_size"] if begin["logical_size"] != ALL_ONES else None
        self.used = begin["used_blocks"]    # a used-blocks section (7.1 flag bit 0)
        self.map = MapChecker(cs if cs and is_pow2(cs) and cs <= MAX_RAW else None, hint, self.used)
        self.extents = []               # (image_offset, length, chunk_ref, chunk_offset, reserved) in archive order
        self.end = self.end_off = None  # the intact IMAGE_END and its offset
        self.chunk_count = self.chunk_bytes = 0
        self.gap = None                 # the problem of a lost record since the last extent read

    def note_lost(self, prob):
        """A lost record inside the section: a gap in the map, charged to the first (11)."""
        if self.gap is None:
            self.gap = prob

    def size(self):
        """conformance.md, sections[]: from IMAGE_END if it is intact, else from IMAGE_BEGIN
        if it gave one, else the end of the last extent found."""
        if self.end:
            return self.end["logical_size"]
        return self.begin["logical_size"] if self.begin["logical_size"] != ALL_ONES else self.map.next

    def listing(self):
        """data, lost and free bytes from the extents found in intact IMAGE_EXTENTS
        records, never IMAGE_END's (conformance.md, sections[]); free_bytes is 0 unless
        the section is used-blocks (7)."""
        return {"kind": "image", "name": self.name, "logical_size": self.size(),
                "data_bytes": self.map.data, "lost_bytes": self.map.lost, "free_bytes": self.map.free,
                "used_blocks": self.used}


class FilesSection:
    kind = "files"

    def __init__(self, sid, begin_off, begin):
        self.sid, self.begin_off, self.begin = sid, begin_off, begin
        self.name = begin["name"]
        self.captured = begin["captured"]
        self.end = self.end_off = None
        self.chunk_count = self.chunk_bytes = 0
        self.entries = {}               # entry_id -> Ent (rec: its group's offset, off: its row)
        self.next_id = 0                # the first_id the next group carries (8.3)
        self.lost = False               # a record of the section was lost or unreadable (11 point 3)
        self.announced = {}             # entry_id -> [(file_offset, length, chunk_ref, chunk_offset, record)]
        self.ext_count = 0              # extents the section's FILES_EXTENTS records read hold (8.2, 8.4)
        self.ext_records = []           # (offset, first_index, count) of the FILES_EXTENTS records read
        self.ext_last = None            # (entry_id, file_offset, end) of the last file extent read
        self.ext_base = 0               # the sum of the extent_count of the groups read (8.3 extent_base)
        self.groups = []                # (offset, first_id, count, [directory ids]) of the groups read
        self.group_at = {}              # group offset -> its item of groups
        self.children = {}              # directory id -> its children read, in entry order (its run)
        self.order = RunOrder()         # 8, "Entry order"
        self.dirs = []                  # (offset, parsed) of every FILES_DIR read
        self.dir_of = {}                # group offset -> offset of the first FILES_DIR naming it
        self.indexes = []               # (offset, parsed) of every FILES_INDEX read
        self.entry_count = self.file_count = self.dir_count = 0
        self.content_bytes = 0

    def note_lost(self, prob):
        self.lost = True

    def dir_record(self, goff):
        """The offset of the FILES_DIR of the group at goff as the tables must name it
        (8.5, 8.6): 0 when it holds no directory; None when it holds one and no
        FILES_DIR of it was read."""
        g = self.group_at.get(goff)
        if g is not None and not g[3]:
            return 0
        return self.dir_of.get(goff)

    def listing(self):
        return {"kind": "files", "name": self.name, "logical_size": self.content_bytes,
                "data_bytes": self.content_bytes, "lost_bytes": 0, "entries": self.entry_count}


class Walker:
    """Walks every record from the header to the trailer and reports problems, by
    the rules of FORMAT.md section 11, "What a verifier reports"."""

    def __init__(self, path, mm, size, parents=None):
        self.path, self.mm, self.size = path, mm, size
        self.parents = parents          # --parent files by uuid (15.4 rule 1)
        self.problems = []
        self.sections, self.open = [], None
        self.chunks = {}                # offset -> [raw_length, blake3 field, problem]
        self.damage = []                # [start, end, problem]: lost records, damaged spans and chunks
        self.span_to_end = False        # a damaged span runs to the end of the file
        self.image_refs = []            # (section, start, length, chunk_ref, chunk_offset) of every data extent read
        self.file_refs = []             # (section, entry id, file offset, length, chunk_ref, chunk_offset)
        self.pending = OrderedDict()    # forward references of the last extents record -> their targets
        self.arrival = []               # the pending chunks in the order they arrived
        self.run_owner = None
        self.unanswered = []            # (chunk_ref, targets) of forward references no run answered
        self.in_place = False           # the run of CHUNK records now read follows an extents or lost record
        self.records = self.chunk_records = 0
        self.good = []                  # (offset, length) of records that passed their CRCs
        self.phase = 0                  # 0 sections, 1 table records, 2 ARCHIVE_INDEX seen, 3 TRAILER
        self.archive_index = None       # (offset, entries) of the ARCHIVE_INDEX read
        self.trailer = None             # (offset, fields) of the TRAILER read
        self.trailer_at = None          # the record where the walk stopped: a TRAILER by its header
        self.image_indexes = []         # (offset, section, extents) of every IMAGE_INDEX of a section found
        self.summaries = []             # (offset, check): made after the walk (11)
        self.tag, self.header_bytes, self.status = None, 0, None
        self.cache = OrderedDict()      # at most two decoded chunks, for file contents
        self.lost_entries = []          # (section, path bytes) of entries with flag bit 3, in archive order
        self.unreadable_entries = []    # (section, path bytes) of regular files with flag bit 2
        self.changed_entries = []       # (section, path bytes) of regular files with flag bit 1
        # Incremental archives (15)
        self.own_uuid = None            # the header's archive_uuid, when the header is trusted
        self.chained = False            # feature bit 1; None: header not trusted, the first record tells
        self.bit1_known = False         # the header was trusted, so bit 1 is known
        self.first_off = None           # offset of the first record of the walk (15: the CHAIN's place)
        self.first_typ = None           # its type, when its header passed
        self.first_prob = None          # the problem of a first record that is not a CHAIN (bit 1 set)
        self.chain = self.chain_body = None     # the intact CHAIN record's chain and body
        self.chain_index = None         # (offset, parsed) of the CHAIN_INDEX whose body passed its rules
        self.ci_seen = False            # a CHAIN_INDEX record's header was met
        self.ci_hash = {}               # CHAIN_INDEX offset -> BLAKE3 of its (decoded) body
        self.prev_rec = None            # (offset, type, end) of the last record whose header passed
        self.before_ai = None           # prev_rec when the ARCHIVE_INDEX was met
        self.anc_refs = []              # (referring record, target, chunk_ref, fits, what) into ancestors
        self.anc_ref_set = set()        # every distinct chunk_ref with archive >= 1 of the extents read
        self.anc_memo = {}              # chunk_ref -> resolution of an ancestor chunk (resolve_anc)
        self.anc_probs = {}             # k -> the parent-missing / parent-mismatch problem of ancestor k
        self.deferred_content = []      # file digests that need ancestor chunks: checked in finish()
        self.ancestors = None           # Ancestors, once the chain is known (or a prefix needs them, 5.3)
        self.prefixes = PrefixSource(lambda: bool(self.chained), lambda: self.chain, self.chain_ancestors)
        self.final_chain = None         # the chain used for references: CHAIN, else the CHAIN_INDEX copy

    def problem(self, cls, offset, what, detail, affects=None):
        """Reports a problem: its class, offset, and what it affects as (section, entry id
        or None, start, end) tuples, resolved to JSON in finish()."""
        p = {"class": cls, "offset": offset, "what": what, "detail": detail, "affects": list(affects or [])}
        self.problems.append(p)
        return p

    def errs(self, offset, errs):
        return [self.problem(c, offset, w, d) for c, w, d in errs]

    # -- driver -----------------------------------------------------------------
    def run(self):
        hdr, hprobs, mode = check_header(self.mm, self.size)
        for c, o, w, d in hprobs:
            self.problem(c, o, w, d)
        if mode == "stop":
            unsupported = any(c in ("unsupported-version", "unsupported-feature") for c, _, _, _ in hprobs)
            self.status = "unsupported" if unsupported else "damaged"
        elif mode == "ok":
            self.tag, start = hdr["tag"], hdr["header_length"]
            self.own_uuid = hdr["uuid"]
            self.chained = bool(hdr["incompatible"] & F_INCREMENTAL)
            self.bit1_known = True
            if not hprobs:
                self.header_bytes = start
            self.first_off = start
            self.walk(start)
        else:
            start = self.recover_tag(mode)
            if start is not None:
                # Feature bits of a damaged header are not trusted (11): the archive is
                # taken as incremental when the first record found is a CHAIN.
                self.chained, self.first_off = None, start
                self.walk(start)
        try:
            self.finish()
        finally:
            if self.ancestors is not None:
                self.ancestors.close()

    def recover_tag(self, mode):
        """Header not trusted: take the tag of the first record found from byte 128 (11)."""
        first = next_record(self.mm, self.size, 128, None)
        if first is None:
            if mode == "scan":
                self.status = "unreadable"
            else:
                self.problems[-1]["detail"] += "; no record found, nothing to recover"
                self.status = "damaged"
            return None
        if mode == "scan":
            self.problems[-1].update({"class": "bad-header",
                                      "detail": "no Strata magic at offset 0, but records were found"})
        self.tag = bytes(self.mm[first + 8:first + 16])
        self.problems[-1]["detail"] += f"; archive tag {self.tag.hex()} taken from the record at {first}"
        return first

    def walk(self, pos):
        mm, size = self.mm, self.size
        while pos < size:
            if size - pos < 32:
                self.resync(pos, self.problem("truncated", pos, "record header",
                                              f"the file ends {size - pos} bytes into a record header"))
                return
            magic, typ, flags, tag, blen, bcrc, hcrc = REC_HDR.unpack_from(mm, pos)
            if magic != REC_MAGIC or crc(mm[pos:pos + 28]) != hcrc:
                pos = self.resync(pos, self.problem("record-checksum", pos, "record header",
                                                    "bad magic" if magic != REC_MAGIC else "header_crc mismatch"))
                continue
            if tag != self.tag:
                pos = self.resync(pos, self.problem("record-malformed", pos, "record.archive_tag",
                                                    f"{tag.hex()}, the archive tag is {self.tag.hex()}"))
                continue
            if pos == self.first_off:
                self.first_record(pos, typ)
            fail = None
            if flags & ~R_KNOWN:
                fail = ("record-malformed", "record.flags", f"reserved flag bits set: 0x{flags:04x}")
            elif typ not in TYPE_NAMES and not flags & R_ANCILLARY:
                fail = ("unknown-record", "record.record_type", f"0x{typ:04x}, unknown and not ANCILLARY")
            elif flag_fault(typ, flags):
                fail = ("record-malformed", "record.flags", flag_fault(typ, flags))
            else:
                limit = MAX_BODY.get(typ, TABLE_LIMIT)
                if blen > limit:
                    fail = ("limit-exceeded", f"{tname(typ)}.body_length", f"{blen}, maximum {limit}")
            within = blen <= size - pos - 32
            if fail:
                prob = self.problem(fail[0], pos, fail[1], fail[2])
                if within:              # the header CRC vouches for the length (11)
                    prob["detail"] += f"; record skipped ({32 + blen} bytes)"
                    self.lost_body(pos, typ, blen, prob, counted=False)
                    self.prev_rec = (pos, typ, pos + 32 + blen)
                    pos += 32 + blen
                    if typ == TRAILER:
                        self.stop(pos, pos - 32 - blen)
                        return
                else:
                    pos = self.resync(pos, prob)
                continue
            if not within:
                pos = self.resync(pos, self.problem("truncated", pos, f"{tname(typ)} body",
                                                    f"a body of {blen} bytes runs {pos + 32 + blen - size} bytes past the end of the file"))
                continue
            self.records += 1
            body = memoryview(mm)[pos + 32:pos + 32 + blen]
            if crc(body) != bcrc:
                prob = self.problem("record-checksum", pos, f"{tname(typ)} body", "body_crc mismatch; record skipped")
                self.lost_body(pos, typ, blen, prob)
            else:
                self.good.append((pos, 32 + blen))
                self.header_seen(pos, typ, True)
                body, errs = decode_table_body(typ, flags, body, prefixes=self.prefixes)
                if errs:
                    self.unusable(pos, typ, self.errs(pos, errs)[0])
                else:
                    self.dispatch(pos, typ, body)
            self.prev_rec = (pos, typ, pos + 32 + blen)
            if typ == TRAILER:
                self.stop(pos + 32 + blen, pos)
                return
            pos += 32 + blen

    def stop(self, pos, trailer):
        """The walk stops after the first record whose header says TRAILER (11); bytes
        after it are index-mismatch at it, and nothing else (9.3)."""
        self.trailer_at = trailer
        if pos < self.size:
            self.problem("index-mismatch", trailer, "TRAILER", f"{self.size - pos} bytes follow the trailer")

    def resync(self, bad, prob):
        """Scan from the next byte for a record header of this archive (11)."""
        nxt = next_record(self.mm, self.size, bad + 1, self.tag)
        nxt = self.size if nxt is None else nxt
        prob["detail"] += f"; damaged span {bad}..{nxt}" + (
            f", resynchronised at {nxt}" if nxt < self.size else ", no record found after it")
        if nxt >= self.size:
            self.span_to_end = True
        self.damage.append([bad, nxt, prob])
        self.prev_rec = None
        self.in_place = True            # a damaged span does not end a run of chunks (7.2)
        self.note_lost(prob)
        return nxt

    def note_lost(self, prob):
        """A record lost inside the open section, or one whose extents or entries
        cannot be read (11)."""
        if self.open:
            self.open.note_lost(prob)

    def damage_at(self, off):
        """The problem of the damage holding off (11): a lost record, a damaged span or
        a damaged chunk; a span that reaches the end of the file holds every offset past
        it (what a truncation cut off)."""
        for s in self.damage:
            if s[0] <= off < s[1] or (s[1] >= self.size and off >= s[0]):
                return s[2]
        return None

    # -- records whose content is lost, but whose header is trusted for type and length
    def lost_body(self, pos, typ, blen, prob, counted=True):
        self.damage.append([pos, pos + 32 + blen, prob])
        self.header_seen(pos, typ, False)
        if typ == CHUNK:                # references to it are charged to prob in finish()
            self.chunk_records += counted
            if counted and self.open and self.phase == 0:
                self.open.chunk_count += 1
                self.open.chunk_bytes = capped_add(self.open.chunk_bytes, 32 + blen)    # 8.4
            self.chunks[pos] = [None, None, prob]
            self.chunk_in_run(pos, False)
            return
        self.note_lost(prob)
        if typ == ARCHIVE_INDEX:
            self.phase = 2
        elif typ in TABLE_TYPES:
            self.phase = max(self.phase, 1)
        elif typ == CHAIN_INDEX:
            self.phase = max(self.phase, 1)
            self.ci_seen = True

    def header_seen(self, pos, typ, read):
        """What a record whose header passed its magic, CRC and tag checks does to the
        open section and to the run of chunks, by its type alone (11)."""
        ends = typ in (IMAGE_BEGIN, FILES_BEGIN, ARCHIVE_INDEX, TRAILER, CHAIN_INDEX) or typ in TABLE_TYPES
        if ends and self.open:          # left open: its end record never came
            self.summaries.append((pos, ("left-open",)))
            self.open = None
        if not read and self.open and typ == (IMAGE_END if self.open.kind == "image" else FILES_END):
            self.open = None            # an end record whose body is not read still ends it
        if typ != CHUNK:
            self.end_run()              # any other record ends a run of chunks (7.2 rule 6)
            self.in_place = not read or typ in (IMAGE_EXTENTS, FILES_EXTENTS)

    def dispatch(self, pos, typ, body):
        if typ == CHUNK:
            self.on_chunk(pos, body)
            return
        if typ not in TYPE_NAMES:       # ANCILLARY record of an unknown type: skipped
            if self.phase >= 2:
                self.problem("record-malformed", pos, f"{tname(typ)} (ancillary)", "an ancillary record after the ARCHIVE_INDEX")
            return
        if typ in SECTION_TYPES and self.phase >= 1:
            self.problem("record-malformed", pos, tname(typ), "a section record after the table records")
            self.out_of_place(pos, typ, body)
            return
        {IMAGE_BEGIN: self.on_image_begin, IMAGE_EXTENTS: self.on_image_extents, IMAGE_END: self.on_image_end,
         IMAGE_INDEX: self.on_image_index, FILES_BEGIN: self.on_files_begin,
         FILES_EXTENTS: self.on_files_extents, FILES_ENTRIES: self.on_files_entries,
         FILES_END: self.on_files_end, FILES_DIR: self.on_files_dir, FILES_INDEX: self.on_files_index,
         ARCHIVE_INDEX: self.on_archive_index, TRAILER: self.on_trailer,
         CHAIN: self.on_chain, CHAIN_INDEX: self.on_chain_index}[typ](pos, body)

    def unusable(self, pos, typ, prob):
        """A compressed body whose decoding failed (5.2), or a prefixed one that breaks a
        rule of 5.3, in its own record or in its prefix's: unusable as a whole, as a body
        that breaks a rule of its type is (its extents or entries cannot be read, 11)."""
        if typ in SECTION_TYPES:
            if self.phase >= 1:
                self.problem("record-malformed", pos, tname(typ), "a section record after the table records")
            else:
                self.note_lost(prob)
        else:
            self.phase = max(self.phase, 1)

    def out_of_place(self, pos, typ, body):
        """A section record after the table records belongs to no section; the rules of
        its body are still checked, and one that needs an open section has none."""
        parse = {IMAGE_BEGIN: parse_image_begin, FILES_BEGIN: parse_files_begin, IMAGE_END: parse_image_end,
                 FILES_END: parse_files_end, FILES_ENTRIES: parse_group,
                 IMAGE_EXTENTS: lambda b: parse_extents(b, "IMAGE_EXTENTS", True),
                 FILES_EXTENTS: parse_files_extents}[typ]
        _, errs = parse(body)
        self.errs(pos, errs)
        if typ not in (IMAGE_BEGIN, FILES_BEGIN):
            self.problem("record-malformed", pos, f"{tname(typ)}.section_id", "no section is open after the table records")

    def new_section(self, pos, cls, begin):
        """A begin record that passed every check of its own opens a section (11)."""
        sid = len(self.sections)
        what = "FILES_BEGIN" if cls is FilesSection else "IMAGE_BEGIN"
        if sid >= MAX_SECTIONS:
            self.problem("limit-exceeded", pos, what, f"section {sid}: more than 65536 sections")
        if begin["section_id"] != sid:
            self.problem("record-malformed", pos, f"{what}.section_id", f"{begin['section_id']}, expected {sid}")
        if any(s.name == begin["name"] for s in self.sections):
            self.problem("record-malformed", pos, f"{what}.name", f"{begin['name']!r} is not unique among the sections")
        self.open = cls(sid, pos, begin)
        self.sections.append(self.open)

    def section_for(self, pos, typ, sid, kind):
        """The open section a record of a section belongs to (or None, with the problem):
        the one whose begin record carried sid (7.2)."""
        sec = self.open
        if sec is None:
            return None, self.problem("record-malformed", pos, f"{tname(typ)}.section_id", f"{sid}: no section is open")
        if sec.kind != kind:
            return None, self.problem("record-malformed", pos, tname(typ), f"inside {sec.kind} section {sec.sid}")
        if sid != sec.begin["section_id"]:
            return None, self.problem("record-malformed", pos, f"{tname(typ)}.section_id",
                                      f"{sid}, the open section is {sec.begin['section_id']}")
        return sec, None

    # -- chunk references (7.2 rules 5 and 6, 8.2) -------------------------------
    def chunk_in_run(self, pos, read):
        """A CHUNK record whose header passed, read or not: its place in the run (2, 7.2)."""
        if read and not self.in_place:
            self.problem("record-malformed", pos, "CHUNK",
                         "a CHUNK record in a run that follows neither an extents record nor a lost record")
        if pos in self.pending:
            self.arrival.append(pos)

    def forward(self, owner, ref, target):
        """A reference of the extents record at owner to an offset after its own (7.2 rule 6)."""
        self.run_owner = owner
        self.pending.setdefault(ref, []).append(target)

    def end_run(self):
        """The run of CHUNK records after an extents record ends: the CHUNK records it
        referred to forward came in the order of first reference; the others are
        reported in finish(), when the damage is known (7.2 rule 6)."""
        if self.pending:
            came = set(self.arrival)
            order = [r for r in self.pending if r in came]
            if self.arrival != order:   # at the first CHUNK record out of place
                first = next(a for a, o in zip(self.arrival, order) if a != o)
                self.problem("dangling-reference", first, "chunk_ref",
                             f"the CHUNK records after the extents record at {self.run_owner} arrive in the order "
                             f"{self.arrival}, their first references are in the order {order}")
            self.unanswered += [(ref, targets) for ref, targets in self.pending.items() if ref not in came]
        self.pending, self.arrival, self.run_owner = OrderedDict(), [], None

    def decoded(self, ref):
        """The raw bytes of the valid CHUNK record at ref, decoded again (at most two kept);
        a reference into an ancestor is read there (15.4)."""
        if ref in self.cache:
            self.cache.move_to_end(ref)
            return self.cache[ref]
        if self.chained and ref >> REF_SHIFT:
            k, o = split_ref(ref)
            try:
                raw = self.ancestors.get(k).chunk(o)[1]
            except StrataError:
                raw = None
        else:
            blen = u64(self.mm, ref + 16)
            body = memoryview(self.mm)[ref + 32:ref + 32 + blen]
            fields, errs = parse_chunk_fields(body)
            raw = decode_chunk(fields, body[40:])[0] if not errs else None
        self.cache[ref] = raw
        while len(self.cache) > 2:
            self.cache.popitem(last=False)
        return raw

    def valid_chunk(self, ref):
        """raw_length of the CHUNK record at ref when it passed every check, else None.
        An ancestor's chunk passes when it passes sections 5 and 6 in its ancestor, bound
        and agreeing (15.4 rules 3, 4), and its blake3 is the CHAIN_INDEX row's when a
        row lists it (rule 5)."""
        if self.chained and ref >> REF_SHIFT:
            return self.valid_anc(ref)
        c = self.chunks.get(ref)
        return c[0] if c is not None and c[2] is None and c[0] is not None else None

    # -- incremental archives: the chain records (15) ---------------------------------
    def first_record(self, pos, typ):
        """15: feature bit 1 is set if and only if the first record is a CHAIN; either
        way round, the first record is record-malformed. A header that is not trusted
        says nothing of bit 1: the first record found tells."""
        self.first_typ = typ
        if self.chained is None:
            self.chained = typ == CHAIN
        elif typ == CHAIN and not self.chained:
            self.problem("record-malformed", pos, "CHAIN", "the first record is a CHAIN, but feature bit 1 is clear")
        elif typ != CHAIN and self.chained:
            self.first_prob = self.problem("record-malformed", pos, tname(typ),
                                           "feature bit 1 (incremental) is set, but the first record is not a CHAIN")

    def on_chain(self, pos, body):
        """15.2: the rules of the body; only the first record of an incremental archive
        is the archive's chain."""
        chain, errs = parse_chain(body, self.own_uuid)
        self.errs(pos, errs)
        if pos != self.first_off:
            self.problem("record-malformed", pos, "CHAIN", "a CHAIN record that is not the archive's first record")
            return
        if self.chained and chain is not None and not errs:
            self.chain, self.chain_body = chain, bytes(body)

    def on_chain_index(self, pos, body):
        """15.3: the rules of the body, the record's place (once, in an incremental
        archive, in the index area before the ARCHIVE_INDEX); its chain copy and rows are
        compared with the records after the walk (summary checks)."""
        self.ci_hash[pos] = blake3.blake3(body).digest()
        used = True
        if not self.chained:
            used = False
            if self.bit1_known:
                self.problem("record-malformed", pos, "CHAIN_INDEX", "a CHAIN_INDEX in an archive without feature bit 1")
        elif self.ci_seen:
            used = False
            self.problem("record-malformed", pos, "CHAIN_INDEX", "a second CHAIN_INDEX")
        elif self.phase >= 2:
            used = False
            self.problem("record-malformed", pos, "CHAIN_INDEX", "a CHAIN_INDEX after the ARCHIVE_INDEX")
        self.ci_seen = True
        self.phase = max(self.phase, 1)
        parsed, errs = parse_chain_index(body, self.own_uuid)
        self.errs(pos, errs)
        if used and parsed is not None and not errs:
            self.chain_index = (pos, parsed)
            self.summaries.append((pos, ("chain-index",)))

    def anc_ref(self, pos, target, ref, length, coff):
        """A data extent of the record at pos that refers into an ancestor (15.1):
        checked after the walk, when the chain is known (resolve_anc)."""
        self.anc_refs.append((pos, target, ref, length, coff))
        self.anc_ref_set.add(ref)

    # -- record handlers: chunks and image sections ------------------------------------
    def on_chunk(self, pos, body):
        self.chunk_records += 1
        self.chunk_in_run(pos, True)
        sec = self.open
        if sec is not None and self.phase == 0:
            sec.chunk_count += 1
            sec.chunk_bytes = capped_add(sec.chunk_bytes, 32 + len(body))      # 8.4
        fields, errs = parse_chunk_fields(body)
        if fields is not None and not errs:
            _, errs = decode_chunk(fields, body[40:])
        probs = self.errs(pos, errs)
        if probs:
            self.damage.append([pos, pos + 32 + len(body), probs[0]])
        self.chunks[pos] = [fields["raw_length"] if fields else None, fields["blake3"] if fields else None,
                            probs[0] if probs else None]

    def on_image_begin(self, pos, body):
        begin, errs = parse_image_begin(body)
        self.errs(pos, errs)
        if begin is not None and not errs:
            self.new_section(pos, ImageSection, begin)

    def on_image_extents(self, pos, body):
        parsed, errs = parse_extents(body, "IMAGE_EXTENTS", True)
        probs = self.errs(pos, errs)
        if parsed is None:              # its extents cannot be read (11)
            self.note_lost(probs[0])
            return
        sec, prob = self.section_for(pos, IMAGE_EXTENTS, parsed[0], "image")
        if sec is None:
            self.note_lost(prob)
            return
        for ext in parsed[1]:
            start, length, ref, coff, res = ext
            aff = [(sec.sid, None, start, start + length)]
            if sec.gap is not None:     # the map resumes where this extent starts (11)
                if start > sec.map.next:
                    sec.gap["affects"].append((sec.sid, None, sec.map.next, start))
                    sec.map.next = start
                sec.gap = None
                sec.map.off_grain = False
            why = extent_kind_error(ref, sec.used)
            if why:                     # 7.2: affecting the extent's range (conformance.md)
                self.problem("record-malformed", pos, "IMAGE_EXTENTS.chunk_ref", why, aff)
            for field, d in extent_entry_errors(ref, coff, res):    # 7.2: likewise
                self.problem("record-malformed", pos, f"IMAGE_EXTENTS.{field}", d, aff)
            for c, d in sec.map.feed(start, length, ref, coff, res):
                self.problem(c, pos, "IMAGE_EXTENTS", d, aff)
            sec.extents.append(ext)
            if ref >= 128 and self.chained and ref >> REF_SHIFT:    # into an ancestor: backward (15.1)
                self.anc_ref(pos, (sec.sid, None, start, start + length), ref, length, coff)
            elif ref >= 128:
                self.image_refs.append((sec, start, length, ref, coff))
                if ref > pos:
                    self.forward(pos, ref, (sec.sid, None, start, start + length))

    def on_image_end(self, pos, body):
        end, errs = parse_image_end(body)
        self.errs(pos, errs)
        if end is None:
            return
        sec, _ = self.section_for(pos, IMAGE_END, end["section_id"], "image")
        if sec is None:
            return
        self.open = None                # it ends its section; one that breaks a rule of its body is not used
        if errs:
            return
        sec.end, sec.end_off = end, pos
        size = end["logical_size"]
        if sec.begin["logical_size"] not in (ALL_ONES, size):
            self.problem("record-malformed", pos, "IMAGE_END.logical_size", f"{size}, IMAGE_BEGIN gave {sec.begin['logical_size']}")
        self.summaries.append((pos, ("image-end", sec)))

    def summary_image_end(self, pos, sec):
        """7.3: the end of the map, the totals and the map digest."""
        end, size = sec.end, sec.end["logical_size"]
        if sec.map.next != size:
            self.problem("extent-map", pos, "IMAGE_END.logical_size",
                         f"extents end at {sec.map.next}, logical_size is {size}",
                         [(sec.sid, None, min(size, sec.map.next), max(size, sec.map.next))])
        walked = {"extent_count": sec.map.count, "data_bytes": sec.map.data, "lost_bytes": sec.map.lost,
                  "chunk_count": sec.chunk_count, "chunk_bytes": sec.chunk_bytes, "begin_offset": sec.begin_off}
        for k, v in walked.items():
            if end[k] != v:
                self.problem("index-mismatch", pos, f"IMAGE_END.{k}", f"{end[k]}, the records give {v}")
        refs = {x[2] for x in sec.extents if x[2] >= 128}
        if all(self.valid_chunk(r) is not None for r in refs) and \
                not any(extent_kind_error(x[2], sec.used) for x in sec.extents):
            digest = map_digest(sec.extents, self.chunk_blake3)
            if digest != end["map_blake3"]:
                self.problem("index-mismatch", pos, "IMAGE_END.map_blake3",
                             f"{end['map_blake3'].hex()}, the extents and chunks give {digest.hex()}",
                             [(sec.sid, None, 0, size)])

    # -- record handlers: file-tree sections -------------------------------------------
    def on_files_begin(self, pos, body):
        begin, errs = parse_files_begin(body)
        self.errs(pos, errs)
        if begin is not None and not errs:
            self.new_section(pos, FilesSection, begin)

    def on_files_extents(self, pos, body):
        """8.2: the head, first_index, and each extent's own rules and order; the
        extents are kept by entry_id until the entry comes (its extent_count)."""
        parsed, errs = parse_files_extents(body)
        probs = self.errs(pos, errs)
        if parsed is None:              # its extents cannot be read (11)
            self.note_lost(probs[0])
            return
        sec, prob = self.section_for(pos, FILES_EXTENTS, parsed["section_id"], "files")
        if sec is None:
            self.note_lost(prob)
            return
        fi, count = parsed["first_index"], parsed["count"]
        # Checked only when every earlier FILES_EXTENTS record of the section was read
        # (8.2): after a lost record the sequence may go on further on (11 point 3),
        # and is counted from the first_index found.
        if sec.lost:
            sec.ext_count = fi
        elif fi != sec.ext_count:
            self.problem("index-mismatch", pos, "FILES_EXTENTS.first_index",
                         f"{fi}, the section's earlier FILES_EXTENTS records hold {sec.ext_count} extents")
        sec.ext_records.append((pos, fi, count))    # its extents are indices first_index onwards either way
        sec.ext_count += count
        for eid, foff, length, ref, coff in parsed["extents"]:
            end = file_extent_end(foff, length)     # 8.2: the end, taken at most 2^64 - 1
            aff = [(sec.sid, eid, foff, end)]
            if ref < 128:
                self.problem("record-malformed", pos, "FILES_EXTENTS.chunk_ref",
                             f"entry {eid}: {ref}: not a record offset (file extents have no zero or lost kind)", aff)
            came = eid < sec.next_id
            if came:
                self.problem("record-malformed", pos, "FILES_EXTENTS.entry_id",
                             f"{eid}: that entry came already (an entry comes after its extents)", aff)
            for d in file_extent_own_errors(foff, length):
                self.problem("extent-map", pos, "FILES_EXTENTS", f"entry {eid}: {d}", aff)
            last = sec.ext_last
            if last is not None:        # increasing (entry_id, file_offset), no overlap (8.2)
                if (eid, foff) <= (last[0], last[1]):
                    self.problem("extent-map", pos, "FILES_EXTENTS",
                                 f"extent ({eid}, {foff}) does not follow ({last[0]}, {last[1]}): extents are in "
                                 f"increasing (entry_id, file_offset)", aff)
                elif eid == last[0] and foff < last[2]:
                    self.problem("extent-map", pos, "FILES_EXTENTS",
                                 f"entry {eid}: extent at file offset {foff} starts before the previous one "
                                 f"ended ({last[2]})", aff)
            sec.ext_last = (eid, foff, end)
            if not came:
                sec.announced.setdefault(eid, []).append((foff, length, ref, coff, pos))
            if ref >= 128 and self.chained and ref >> REF_SHIFT:    # into an ancestor: backward (15.1)
                self.anc_ref(pos, (sec.sid, eid, foff, end), ref, length, coff)
            elif ref >= 128:
                self.file_refs.append((sec, eid, foff, length, ref, coff))
                if ref > pos:
                    self.forward(pos, ref, (sec.sid, eid, foff, end))

    def on_files_entries(self, pos, body):
        """8.3: an entry group. A head that breaks a rule (captured other than the
        section's and a first_id out of sequence included) makes its entries unreadable
        (11 point 3); else extent_base and the extent list are compared with the records
        read, while nothing of the section was lost, and every entry is checked."""
        g, errs = parse_group(body)
        probs = self.errs(pos, errs)
        if g is None:                   # its entries cannot be read (11)
            self.note_lost(probs[0])
            return
        sec, prob = self.section_for(pos, FILES_ENTRIES, g["section_id"], "files")
        if sec is None:
            self.note_lost(prob)
            return
        if g["captured"] != sec.captured:
            self.note_lost(self.problem("record-malformed", pos, "FILES_ENTRIES.captured",
                                        f"0x{g['captured']:x}, the section's FILES_BEGIN gives 0x{sec.captured:x}"))
            return
        first, gap = g["first_id"], False
        if first != sec.next_id:
            if sec.lost and first > sec.next_id:    # after damage: the entries between are lost (8.3)
                gap = True
            else:
                self.note_lost(self.problem("record-malformed", pos, "FILES_ENTRIES.first_id",
                                            f"{first}, the section's earlier groups hold {sec.next_id} entries"))
                return
        total = g["extent_total"]
        if not sec.lost:                # 8.3: checked only when every earlier record of the section was read
            if g["extent_base"] != sec.ext_base:
                self.problem("index-mismatch", pos, "FILES_ENTRIES.extent_base",
                             f"{g['extent_base']}, the earlier groups' extent_count add up to {sec.ext_base}")
            lo, hi = sec.ext_base, sec.ext_base + total
            want = [(o, f) for o, f, c in sec.ext_records if f < hi and f + c > lo] if total else []
            if g["list"] != want:
                self.problem("index-mismatch", pos, "FILES_ENTRIES.extent_list",
                             f"{g['list']} (extents_record, first_index), the FILES_EXTENTS records holding the "
                             f"group's extents {lo}..{hi} are {want}")
        sec.ext_base += total
        dirs = [e["entry_id"] for e in g["entries"] if e["kind"] == K_DIR]
        grp = (pos, first, g["count"], dirs)
        sec.groups.append(grp)
        sec.group_at.setdefault(pos, grp)
        sec.next_id = first + g["count"]
        for e in g["entries"]:
            self.on_entry(pos, sec, e, gap and e["row"] == 0)

    def on_entry(self, pos, sec, e, after_gap):
        eid, k, size = e["entry_id"], e["kind"], e["size"]
        path = entry_path(e, sec.entries.get)
        show = lossy(path)
        w = f"FILES_ENTRIES entry {eid}"
        for c, what, d in entry_rule_errors(e, sec.captured):
            self.problem(c, pos, what, f"{show!r}: {d}")
        if e["flags"] & F_LOST:         # not a problem in itself: listed apart (11); bit 3 on
            self.lost_entries.append((sec, path))     # another kind is listed too, and reported by entry_rule_errors
        if k == K_FILE and e["flags"] & F_UNREAD:    # bits 1 and 2: facts of the backup, not problems
            self.unreadable_entries.append((sec, path))
        if k == K_FILE and e["flags"] & F_CHANGED:
            self.changed_entries.append((sec, path))
        if k == K_FILE:                 # every regular-file entry read counts (sections[], FILES_END)
            sec.file_count += 1         # content_bytes, the files section's logical_size and data_bytes:
            sec.content_bytes = capped_add(sec.content_bytes, size)    # at most 2^64 - 1 (8.4, sections[])
        elif k == K_DIR:
            sec.dir_count += 1

        def known(i):
            return sec.entries.get(i)
        for what, d in entry_place_errors(e, known, sec.lost):
            self.problem("record-malformed", pos, f"{w}.{what}", f"{show!r}: {d}")
        parent = e["parent_id"]
        bad = sec.order.check(e, after_gap)    # 8, "Entry order"
        if bad:
            self.problem("record-malformed", pos, f"{w}.{bad[0]}", f"{show!r}: {bad[1]}")
        if eid and parent != ALL_ONES:
            sec.children.setdefault(parent, []).append(eid)
        announced = sec.announced.pop(eid, [])
        if k != K_FILE:
            if announced:               # content announced for an entry that is not a regular file (8.2)
                self.problem("index-mismatch", pos, f"{w}.extent_count",
                             f"{show!r}: {len(announced)} extent(s) announced for a "
                             f"{KIND_NAMES.get(k, 'entry')}", [(sec.sid, eid, 0, size)])
        else:
            # 8.2: one whose file_offset + length passes 2^64 - 1 runs past any size (the
            # true sum is compared); its affected range ends at most at 2^64 - 1
            past = [x for x in announced if x[0] + x[1] > size]
            for foff, length, ref, coff, rpos in past:   # 8.2: at the record, affecting the extent
                self.problem("extent-map", rpos, "FILES_EXTENTS",
                             f"entry {eid}: extent at file offset {foff} of {length} bytes ends past the "
                             f"file's size {size}", [(sec.sid, eid, foff, file_extent_end(foff, length))])
            if len(announced) != e["extent_count"]:
                if not sec.lost:        # after a lost record its extents may have been there (11)
                    self.problem("index-mismatch", pos, f"{w}.extent_count",
                                 f"{show!r}: {e['extent_count']}, {len(announced)} extent(s) announced with its "
                                 f"entry_id", [(sec.sid, eid, 0, size)])
            elif not past:
                self.check_content(pos, sec, e, show, announced)
        sec.entry_count += 1
        sec.entries[eid] = Ent(k, parent, e["name"], pos, e["row"], path)

    def check_content(self, pos, sec, e, show, extents, deferred=False):
        """8.3: the file digest of the content, from the chunks; holes cost 48 bytes each.
        Content that takes chunks from ancestors is checked after the walk, once the
        CHAIN_INDEX rows are known (15.4 rule 5). extents: (file_offset, length,
        chunk_ref, chunk_offset, record) in the order announced."""
        eid, size = e["entry_id"], e["size"]
        if e["flags"] & (F_UNREAD | F_LOST) or file_extent_errors(extents, size):
            return                      # no content (entry_rule_errors checks it), or a problem reported already
        if any(x[2] < 128 for x in extents):
            return                      # record-malformed at its record already
        if not deferred and self.chained and any(x[2] >> REF_SHIFT for x in extents):
            slim = {k: e[k] for k in ("entry_id", "size", "flags", "digest")}
            self.deferred_content.append((pos, sec, slim, show, extents))
            return
        for foff, length, ref, coff, _ in extents:
            raw_length = self.valid_chunk(ref)
            if raw_length is None or coff + length > raw_length:
                return                  # the chunk's own problem (or a reference problem) says so
        fd = FileDigest(size)
        for foff, length, ref, coff, _ in extents:
            raw = self.decoded(ref)
            if raw is None:
                return
            fd.data(foff, memoryview(raw)[coff:coff + length])
        digest = fd.digest()
        if digest != e["digest"]:
            self.problem("chunk-corrupt", pos, f"FILES_ENTRIES entry {eid}.digest",
                         f"{show!r}: stored {e['digest'].hex()}, the content gives {digest.hex()}",
                         [(sec.sid, eid, 0, size)])

    def on_files_end(self, pos, body):
        end, errs = parse_files_end(body)
        self.errs(pos, errs)
        if end is None:
            return
        sec, _ = self.section_for(pos, FILES_END, end["section_id"], "files")
        if sec is None:
            return
        self.open = None                # it ends its section; one that breaks a rule of its body is not used
        if errs:
            return
        sec.end, sec.end_off = end, pos
        self.summaries.append((pos, ("files-end", sec)))

    def summary_files_end(self, pos, sec):
        """8.4: the totals, content announced for entries that never came, the root."""
        end = sec.end
        walked = {"entry_count": sec.entry_count, "file_count": sec.file_count,
                  "directory_count": sec.dir_count, "content_bytes": sec.content_bytes,
                  "chunk_count": sec.chunk_count, "chunk_bytes": sec.chunk_bytes, "begin_offset": sec.begin_off,
                  "extent_count": sec.ext_count}
        for k, v in walked.items():
            if end[k] != v:
                self.problem("index-mismatch", pos, f"FILES_END.{k}", f"{end[k]}, the records give {v}")
        for eid, lst in sec.announced.items():
            self.problem("index-mismatch", pos, "FILES_EXTENTS.entry_id",
                         f"{len(lst)} extent(s) announced for entry {eid}, which never came")
        if 0 not in sec.entries:
            self.problem("record-malformed", pos, "FILES_END", f"section {sec.sid} has no root entry")

    # -- table records (9.1, 8.5, 8.6) ---------------------------------------------------
    def table_section(self, pos, typ, sid, kind):
        """The section a table record describes: the one whose begin record carried sid
        (11). A FILES_DIR or FILES_INDEX naming no file-tree section is record-malformed
        (8.5, 8.6); an IMAGE_INDEX naming no image section, index-mismatch (9.1)."""
        if self.phase >= 2:
            self.problem("record-malformed", pos, tname(typ), "a table record after the ARCHIVE_INDEX")
        elif self.ci_seen:              # 15.3: the CHAIN_INDEX comes after every section table
            self.problem("record-malformed", pos, tname(typ), "a table record after the CHAIN_INDEX")
        self.phase = max(self.phase, 1)
        named = [s for s in self.sections if s.begin["section_id"] == sid]
        sec = next((s for s in named if s.kind == kind), None)
        if sec is None:
            detail = f"{sid} is a {named[0].kind} section" if named else f"{sid}: no such section"
            self.problem("index-mismatch" if typ == IMAGE_INDEX else "record-malformed", pos,
                         f"{tname(typ)}.section_id", detail)
        return sec

    def on_image_index(self, pos, body):
        parsed, errs = parse_extents(body, "IMAGE_INDEX", False)
        self.errs(pos, errs)
        if parsed is None:
            self.phase = max(self.phase, 1)
            return
        sec = self.table_section(pos, IMAGE_INDEX, parsed[0], "image")
        # 15.1: its ancestor references are compared with the IMAGE_EXTENTS records (9.1)
        # and not reported again.
        if sec is not None:
            self.image_indexes.append((pos, sec, parsed[1]))
            self.summaries.append((pos, ("image-index", sec, parsed[1])))

    def summary_image_index(self, pos, sec, entries):
        """9.1: the index is the concatenation of the section's extents."""
        if entries != sec.extents:
            i = next((i for i, (a, b) in enumerate(zip(entries, sec.extents)) if a != b),
                     min(len(entries), len(sec.extents)))
            got = entries[i] if i < len(entries) else "nothing"
            want = sec.extents[i] if i < len(sec.extents) else "nothing"
            self.problem("index-mismatch", pos, f"IMAGE_INDEX.extents[{i}]",
                         f"{got} (start, length, chunk_ref, chunk_offset, reserved), the IMAGE_EXTENTS "
                         f"records give {want}; "
                         f"{len(entries)} extents against {len(sec.extents)}")

    def on_files_dir(self, pos, body):
        parsed, errs = parse_files_dir(body)
        self.errs(pos, errs)
        if parsed is None:              # a table that breaks a rule of its body is not used
            self.phase = max(self.phase, 1)
            return
        sec = self.table_section(pos, FILES_DIR, parsed["section_id"], "files")
        if sec is None:
            return
        sec.dirs.append((pos, parsed))
        sec.dir_of.setdefault(parsed["entries_record"], pos)
        self.summaries.append((pos, ("files-dir", sec, parsed)))

    def expected_dir(self, sec, grp):
        """The locators and fences of 8.5 for the group grp, from the entries read."""
        locs, fences = [], []
        for d in grp[3]:
            kids = sec.children.get(d, [])
            locs.append((d, len(kids), kids[0] if kids else 0, len(fences)))
            prev = None
            for c in kids:
                ent = sec.entries[c]
                if ent.rec != prev:
                    fences.append((ent.rec, sec.dir_record(ent.rec), c, ent.name))
                    prev = ent.rec
        return locs, fences

    def table_dir_ok(self, got, want):
        """A dir_record a table gives against the one it must give (FilesSection.dir_record):
        where no FILES_DIR of a group holding a directory was read, one in damage is
        charged to the damage (11)."""
        if want is None:
            return got != 0 and self.damage_at(got) is not None
        return got == want

    def summary_files_dir(self, pos, sec, parsed):
        """8.5: one FILES_DIR for each group holding a directory and none other, naming
        its group, a locator for each directory of the group in entry order with its run,
        and the fences of each run: each group holding part of it, in order, with that
        group's FILES_DIR (or 0), the run's first entry in it and that entry's name."""
        goff = parsed["entries_record"]
        grp = sec.group_at.get(goff)
        if grp is None:
            self.problem("index-mismatch", pos, "FILES_DIR.entries_record",
                         f"{goff} is not a FILES_ENTRIES record of section {sec.sid}")
            return
        if not grp[3]:
            self.problem("index-mismatch", pos, "FILES_DIR.entries_record",
                         f"the group at {goff} holds no directory")
            return
        if sec.dir_of.get(goff) != pos:
            self.problem("index-mismatch", pos, "FILES_DIR.entries_record",
                         f"a second FILES_DIR for the group at {goff} (the first is at {sec.dir_of.get(goff)})")
            return
        locs, fences = self.expected_dir(sec, grp)
        got_l, got_f = parsed["locators"], parsed["fences"]
        if got_l != locs:
            i = next((i for i, (a, b) in enumerate(zip(got_l, locs)) if a != b), min(len(got_l), len(locs)))
            self.problem("index-mismatch", pos, f"FILES_DIR.locators[{i}]",
                         f"{got_l[i] if i < len(got_l) else 'nothing'} (entry_id, child_count, first_child_id, "
                         f"first_fence), the entries give {locs[i] if i < len(locs) else 'nothing'}; "
                         f"{len(got_l)} locators against {len(locs)} directories")
            return
        bad = len(got_f) != len(fences)
        for i, (a, b) in enumerate(zip(got_f, fences)):
            if (a[0], a[2], a[3]) != (b[0], b[2], b[3]) or not self.table_dir_ok(a[1], b[1]):
                bad = True
                break
        if bad:
            i = next((i for i, (a, b) in enumerate(zip(got_f, fences))
                      if (a[0], a[2], a[3]) != (b[0], b[2], b[3]) or not self.table_dir_ok(a[1], b[1])),
                     min(len(got_f), len(fences)))
            show = lambda f: f"({f[0]}, {f[1]}, {f[2]}, {lossy(f[3])!r})"
            self.problem("index-mismatch", pos, f"FILES_DIR.fences[{i}]",
                         f"{show(got_f[i]) if i < len(got_f) else 'nothing'} (entries_record, dir_record, "
                         f"first_child_id, name), the entries give {show(fences[i]) if i < len(fences) else 'nothing'}; "
                         f"{len(got_f)} fences against {len(fences)}")

    def on_files_index(self, pos, body):
        parsed, errs = parse_files_index(body)
        self.errs(pos, errs)
        if parsed is None:
            self.phase = max(self.phase, 1)
            return
        sec = self.table_section(pos, FILES_INDEX, parsed["section_id"], "files")
        if sec is not None:
            sec.indexes.append((pos, parsed))
            self.summaries.append((pos, ("files-index", sec, parsed)))

    def summary_files_index(self, pos, sec, parsed):
        """8.6: a row for each group of the section, in order: its offset, its FILES_DIR
        (0 when it holds no directory) and its first_id."""
        rows = parsed["rows"]
        want = [(g[0], sec.dir_record(g[0]), g[1]) for g in sec.groups]
        if len(rows) != len(want):
            self.problem("index-mismatch", pos, "FILES_INDEX.group_count",
                         f"{len(rows)}, the section has {len(want)} FILES_ENTRIES records")
        for i, (a, b) in enumerate(zip(rows, want)):
            if a[0] != b[0] or a[2] != b[2] or not self.table_dir_ok(a[1], b[1]):
                self.problem("index-mismatch", pos, f"FILES_INDEX.groups[{i}]",
                             f"({a[0]}, {a[1]}, {a[2]}) (entries_record, dir_record, first_id), the records give "
                             f"({b[0]}, {'no FILES_DIR' if b[1] is None else b[1]}, {b[2]})")
                break

    def on_archive_index(self, pos, body):
        if self.phase >= 2:
            self.problem("record-malformed", pos, "ARCHIVE_INDEX", "a second ARCHIVE_INDEX")
        self.phase = 2
        self.before_ai = self.prev_rec
        parsed, errs = parse_archive_index(body, self.chained if self.bit1_known else None)
        self.errs(pos, errs)
        if parsed is not None and not errs:
            self.archive_index = (pos, parsed["entries"], parsed["chain"])
            self.summaries.append((pos, ("archive-index",)))

    def summary_archive_index(self, pos):
        """9.2: the sections the walk found, in order: kinds and record offsets."""
        entries = self.archive_index[1]
        tables = {}
        for o, s, _ in self.image_indexes:
            tables.setdefault(id(s), o)
        if len(entries) != len(self.sections):
            self.problem("index-mismatch", pos, "ARCHIVE_INDEX.section_count", f"{len(entries)}, the records hold {len(self.sections)} sections")
        for e, sec in zip(entries, self.sections):
            w = f"ARCHIVE_INDEX.sections[{sec.sid}]"
            if e["kind"] != (1 if sec.kind == "image" else 2):
                self.problem("index-mismatch", pos, f"{w}.kind", f"{e['kind']}, section {sec.sid} is a {sec.kind} section")
            if sec.kind == "image":
                table = tables.get(id(sec))
            else:
                table = sec.indexes[0][0] if sec.indexes else None
            for key, walked in (("begin", sec.begin_off), ("end", sec.end_off), ("table", table)):
                if e[key] != walked:
                    self.problem("index-mismatch", pos, f"{w}.{key}_offset", f"{e[key]}, the record is at {walked}")
        if self.archive_index[2] is not None:     # 9.2: the chain fields of an incremental archive
            cio, cib = self.archive_index[2]
            prev = self.before_ai
            if prev is None or prev[1] != CHAIN_INDEX or prev[2] != pos:
                self.problem("index-mismatch", pos, "ARCHIVE_INDEX.chain_index_offset",
                             f"{cio}: the record directly before the ARCHIVE_INDEX is not a CHAIN_INDEX")
            elif cio != prev[0]:
                self.problem("index-mismatch", pos, "ARCHIVE_INDEX.chain_index_offset",
                             f"{cio}, the CHAIN_INDEX is at {prev[0]}")
            elif self.ci_hash.get(cio) != cib:
                self.problem("index-mismatch", pos, "ARCHIVE_INDEX.chain_index_blake3",
                             f"{cib.hex()}, the CHAIN_INDEX body gives {(self.ci_hash.get(cio) or b'').hex()}")

    def summary_chain_index(self, pos):
        """15.3: the chain is a copy of the CHAIN record's body, and the rows are exactly
        the distinct ancestor references of the archive's extents."""
        parsed = self.chain_index[1]
        if self.chain_body is not None and parsed["chain_body"] != self.chain_body:
            self.problem("index-mismatch", pos, "CHAIN_INDEX.chain", "differs from the body of the CHAIN record")
        refs = sorted(self.anc_ref_set)
        rows = [ref for ref, _ in ROW.iter_unpack(parsed["rows"])]
        if rows != refs:
            extra = next((r for r in rows if r not in self.anc_ref_set), None)
            listed = set(rows)
            missing = next((r for r in refs if r not in listed), None)
            self.problem("index-mismatch", pos, "CHAIN_INDEX.rows",
                         f"{len(rows)} rows, the extents hold {len(refs)} distinct ancestor references"
                         + (f"; 0x{extra:016x} is referred to by no extent" if extra is not None else "")
                         + (f"; 0x{missing:016x} is not listed" if missing is not None else ""))

    def on_trailer(self, pos, body):
        self.phase = 3
        t, errs = parse_trailer(body)
        self.errs(pos, errs)
        if t is None:
            return
        if t["archive_length"] > self.size:
            self.problem("truncated", pos, "TRAILER.archive_length", f"{t['archive_length']}, file size {self.size}")
        elif t["archive_length"] != self.size:
            self.problem("index-mismatch", pos, "TRAILER.archive_length", f"{t['archive_length']}, file size {self.size}")
        self.trailer = (pos, t)
        self.summaries.append((pos, ("trailer",)))

    def summary_trailer(self, pos):
        """9.3: the ARCHIVE_INDEX the walk found, and the records before the trailer."""
        t = self.trailer[1]
        ai = self.archive_index[0] if self.archive_index else None
        if t["index_offset"] != ai:
            self.problem("index-mismatch", pos, "TRAILER.index_offset", f"{t['index_offset']}, the ARCHIVE_INDEX is at {ai}")
        if t["record_count"] != self.records - 1:
            self.problem("index-mismatch", pos, "TRAILER.record_count",
                         f"{t['record_count']}, {self.records - 1} records come before the trailer")

    # -- end of the walk -----------------------------------------------------------
    def finish(self):
        if self.tag is not None:
            self.end_run()
            self.open = None
            self.references()
            self.settle_chain()
            self.ancestor_references()
            for args in self.deferred_content:
                self.check_content(*args, deferred=True)
            if self.trailer_at is None and not self.span_to_end:
                self.problem("truncated", self.size, "TRAILER", "the file ends before the trailer")
            self.summary_checks()
        for p in self.problems:
            p["affects"] = self.affects(p["affects"])
        self.problems = merge_problems(self.problems)
        if self.status is None:
            self.status = "ok" if not self.problems else "damaged"

    def references(self):
        """7.2 rules 5 and 6: every data extent read against its chunk, forward references
        no run answered, and the gaps the damage left in the maps (11)."""
        for sec in self.sections:       # a gap still open at the end of its section
            if sec.kind == "image" and sec.gap is not None and sec.size() > sec.map.next:
                sec.gap["affects"].append((sec.sid, None, sec.map.next, sec.size()))
        for ref, targets in self.unanswered:
            prob = self.damage_at(ref)
            if prob is not None:
                prob["affects"] += targets
            else:
                self.problem("dangling-reference", ref, "chunk_ref",
                             f"{ref}: a forward reference to no CHUNK record in the run following its extents record",
                             targets)
        for sec, start, length, ref, coff in self.image_refs:
            self.check_ref(ref, (sec.sid, None, start, start + length),
                           lambda raw, coff=coff, length=length: extent_fits(coff, length, raw),
                           f"data extent at {start}: chunk_offset {coff} + length {length} > raw_length of chunk {ref},")
        for sec, eid, foff, length, ref, coff in self.file_refs:
            self.check_ref(ref, (sec.sid, eid, foff, file_extent_end(foff, length)),    # 8.2: end at most 2^64 - 1
                           lambda raw, coff=coff, length=length: extent_fits(coff, length, raw),
                           f"extent of entry {eid} at file offset {foff}: chunk_offset {coff} + length {length} > raw_length of chunk {ref},")

    def check_ref(self, ref, target, fits, what):
        raw_length = self.valid_chunk(ref)
        if raw_length is not None:
            if not fits(raw_length):
                self.problem("extent-map", ref, "chunk_ref", f"{what} {raw_length}", [target])
            return
        prob = self.damage_at(ref)
        if prob is not None:
            prob["affects"].append(target)
        else:
            self.problem("dangling-reference", ref, "chunk_ref", f"{ref}: not the offset of a CHUNK record", [target])

    # -- references into ancestors (15.1, 15.4) ------------------------------------
    def settle_chain(self):
        """The chain the references use: the CHAIN record's, else (a damaged CHAIN, 11)
        the copy in the CHAIN_INDEX."""
        if not self.chained:
            return
        chain = self.chain
        if chain is None and self.chain_index is not None and self.first_typ in (None, CHAIN):
            # a damaged CHAIN: the copy stands in for it (11); a first record that is not
            # a CHAIN leaves the chain unknown (15.4)
            chain = self.chain_index[1]["chain"]
        self.final_chain = chain
        if chain is not None and self.ancestors is None:
            self.ancestors = Ancestors(self.path, chain, self.first_off, self.parents)

    def chain_ancestors(self):
        """The ancestors of the CHAIN record's chain, opened during the walk as the
        prefixed tables need them (5.3: only once the CHAIN record passed, rule 5), and
        kept for the references checked after it (settle_chain: then the chain is the
        CHAIN record's too)."""
        if self.ancestors is None:
            self.ancestors = Ancestors(self.path, self.chain, self.first_off, self.parents)
        return self.ancestors

    def chain_damage(self):
        """The problem of the first record, where the chain should be: references into
        ancestors, which no chain names, are charged to it (15.4): record-malformed for a
        first record that is not a CHAIN, else the CHAIN's damage or broken rule."""
        if self.first_prob is not None:
            return self.first_prob
        prob = self.damage_at(self.first_off)
        if prob is None:
            prob = next((p for p in self.problems if p["offset"] == self.first_off), None)
        return prob

    def resolve_anc(self, ref):
        """15.4, rules 3 to 5 but the row: ("ok", raw_length, blake3), ("anc", error of
        the ancestor: missing or mismatched) or ("bad", class, what, detail) for a record
        at o that is not a CHUNK or fails sections 5 and 6. Memoised per chunk_ref."""
        r = self.anc_memo.get(ref)
        if r is not None:
            return r
        k, o = split_ref(ref)
        try:
            af = self.ancestors.get(k)
        except StrataError as e:
            r = ("anc", e)
        else:
            try:
                fields, raw = af.chunk(o)
            except StrataError as e:
                r = ("bad", e.cls, f"{e.what} (ancestor {k}, offset {o})",
                     f"{self.ancestors.name(k)}, file {af.path}, offset {o}: {e.detail}")
            else:
                r = ("ok", fields["raw_length"], fields["blake3"])
                self.cache[ref] = raw
                while len(self.cache) > 2:
                    self.cache.popitem(last=False)
        self.anc_memo[ref] = r
        return r

    def row(self, ref):
        """The blake3 the CHAIN_INDEX lists for ref, or None (no usable CHAIN_INDEX, or
        not listed: a summary check reports that)."""
        if self.chain_index is None:
            return None
        parsed = self.chain_index[1]
        return row_lookup(parsed["rows"], parsed["count"], ref)

    def valid_anc(self, ref):
        chain = self.final_chain
        k, o = split_ref(ref)
        if chain is None or self.ancestors is None or k > chain["depth"] or o < 128:
            return None
        r = self.resolve_anc(ref)
        # A chunk that is not the one its row lists is parent-mismatch at the extents
        # record; the digests are still computed over what the ancestor gives (15.4 rule 5).
        return r[1] if r[0] == "ok" else None

    def chunk_blake3(self, ref):
        """The blake3 field of the chunk a data extent refers to (7.3, 15.1)."""
        if self.chained and ref >> REF_SHIFT:
            return self.anc_memo[ref][2]
        return self.chunks[ref][1]

    def ancestor_references(self):
        """15.1 and 15.4 for every data extent read that refers into an ancestor: archive
        within the depth and offset of 128 or more (record-malformed at the record that
        holds it); an ancestor missing or mismatched is one problem at the CHAIN record,
        affecting every range that refers to it; else, at the referring record, the
        record at o is a CHUNK (dangling-reference) that passes sections 5 and 6 (the
        class of its damage), holds the extent (extent-map) and is the row's
        (parent-mismatch)."""
        if not self.chained:
            return
        chain = self.final_chain
        for pos, target, ref, length, coff in self.anc_refs:
            k, o = split_ref(ref)
            what = f"{tname(u16(self.mm, pos + 4))}.chunk_ref"
            if chain is None:           # the chain cannot be known: every reference into an ancestor
                prob = self.chain_damage()      # is charged to the first record's problem, and
                if prob is not None:            # nothing else is reported for it (15.4)
                    prob["affects"].append(target)
                continue
            if o < 128:
                self.problem("record-malformed", pos, what, f"0x{ref:016x}: archive {k} with an offset below 128",
                             [target])
                continue
            if k > chain["depth"]:
                self.problem("record-malformed", pos, what,
                             f"0x{ref:016x}: archive {k}, above the chain's depth {chain['depth']}", [target])
                continue
            r = self.resolve_anc(ref)
            if r[0] == "anc":
                prob = self.anc_probs.get(k)
                if prob is None:
                    e = r[1]
                    prob = self.anc_probs[k] = self.problem(e.cls, e.offset, e.what, e.detail)
                prob["affects"].append(target)
                continue
            if r[0] == "bad":
                self.problem(r[1], pos, r[2], r[3], [target])
                continue
            raw_length, digest = r[1], r[2]
            if not extent_fits(coff, length, raw_length):     # 7.2 rule 5, 8.2
                self.problem("extent-map", pos, what,
                             f"the extent of {length} bytes at chunk_offset {coff}"
                             f" does not fit the {raw_length} bytes of {self.ancestors.name(k)}'s chunk at {o}",
                             [target])
            row = self.row(ref)
            if row is not None and row != digest:
                self.problem("parent-mismatch", pos, what,
                             f"{self.ancestors.name(k)}, offset {o}: the chunk is {digest.hex()}, "
                             f"the CHAIN_INDEX lists {row.hex()}", [target])

    def summary_checks(self):
        """The checks of a record against the records before it as a whole, in archive
        order, each only when no problem is reported at a lower offset (11)."""
        lowest = min((p["offset"] for p in self.problems), default=None)
        for pos, check in sorted(self.summaries, key=lambda x: x[0]):
            if lowest is not None and lowest < pos:
                continue
            before = len(self.problems)
            self.summary_check(pos, check)
            if len(self.problems) > before:
                lowest = pos if lowest is None else min(lowest, pos)

    def summary_check(self, pos, check):
        """One summary check, by its kind."""
        kind, args = check[0], check[1:]
        if kind == "left-open":
            self.problem("record-malformed", pos, "section end", "a section was left open: this record came before its end record")
            return
        {"image-end": self.summary_image_end, "files-end": self.summary_files_end,
         "image-index": self.summary_image_index, "files-dir": self.summary_files_dir,
         "files-index": self.summary_files_index, "archive-index": self.summary_archive_index,
         "chain-index": self.summary_chain_index, "trailer": self.summary_trailer}[kind](pos, *args)

    def affects(self, items):
        """(section, entry or None, start, end) tuples as merged JSON objects; empty
        ranges name nothing."""
        out = []
        for sid, eid, start, end in sorted({t for t in items if t[3] > t[2]},
                                           key=lambda t: (t[0], -1 if t[1] is None else t[1], t[2], t[3])):
            if out and out[-1][0] == (sid, eid) and start <= out[-1][2]:
                out[-1][2] = max(out[-1][2], end)
            else:
                out.append([(sid, eid), start, end])
        res = []
        for (sid, eid), start, end in out:
            sec = self.sections[sid]
            if eid is None:
                res.append({"section": sec.name, "start": start, "end": end})
            else:
                ent = sec.entries.get(eid)
                res.append({"section": sec.name, "path": lossy(ent.path if ent else b"#%d" % eid),
                            "start": start, "end": end})
        return res

    def report(self):
        # verified_bytes: the records at whose offset no problem is reported (conformance.md).
        at_fault = {p["offset"] for p in self.problems}
        verified = (0 if 0 in at_fault else self.header_bytes) + sum(n for o, n in self.good if o not in at_fault)
        sections = []
        for s in self.sections:
            listing = s.listing()
            if s.kind == "files":       # conformance.md: entries flagged at backup time or by a salvage
                listing["flagged_entries"] = {
                    "unreadable": sum(x is s for x, _ in self.unreadable_entries),
                    "changed_while_read": sum(x is s for x, _ in self.changed_entries),
                    "lost_in_salvage": sum(x is s for x, _ in self.lost_entries)}
            sections.append(listing)
        listed = lambda entries: [{"section": sec.name, "path": lossy(path), "path_hex": path.hex()}
                                  for sec, path in entries]
        return {"archive": self.path, "status": self.status, "problems": self.problems,
                "sections": sections,
                "records": self.records, "chunks": self.chunk_records,
                "verified_bytes": verified, "archive_size": self.size,
                "lost_entries": listed(self.lost_entries),
                "unreadable_entries": listed(self.unreadable_entries),
                "changed_entries": listed(self.changed_entries)}


def merge_problems(problems):
    """One problem per class and offset, affecting the union of what they affect, in
    increasing offset (11, "What a verifier reports")."""
    out, at = [], {}
    for p in problems:
        key = (p["class"], p["offset"])
        if key in at:
            first = at[key]
            if p["detail"] != first["detail"]:
                first["detail"] += f"; {p['what']}: {p['detail']}"
            first["affects"] = merge_affects(first["affects"] + p["affects"])
        else:
            at[key] = p
            out.append(p)
    out.sort(key=lambda p: p["offset"])
    return out


def merge_affects(items):
    """JSON affects objects merged: per section and path, touching ranges joined."""
    by = {}
    for a in items:
        by.setdefault((a["section"], a.get("path")), []).append((a["start"], a["end"]))
    res = []
    for (section, path), ranges in sorted(by.items(), key=lambda kv: (str(kv[0][0]), kv[0][1] or "")):
        merged = []
        for s, e in sorted(ranges):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        for s, e in merged:
            res.append({"section": section, **({"path": path} if path is not None else {}), "start": s, "end": e})
    return res


# ----------------------------------------------------------------------------
# 7. Random access from the end (10.1)

def read_record(mm, size, tag, pos, typ, via=None, prefixes=None):
    """Read and check the record at pos of the archive in mm, of type typ, with the
    archive tag tag (checks in the order of 5); its body, decoded (5.2; 5.3 with the
    PrefixSource prefixes of the archive). Raises StrataError. A CHUNK expected where
    there is no record, or a record of another type, is dangling-reference (7.2 rule 5,
    15.4 rule 5); for other types a wrong offset read through an index field (via) is
    index-mismatch. A prefixed body's problems are at pos, whatever ancestor they are
    in (5.3)."""
    what = via or tname(typ)
    if pos < 128 or pos + 32 > size:
        raise StrataError("dangling-reference" if typ == CHUNK else ("index-mismatch" if via else "truncated"),
                          pos, what, f"offset {pos} cannot hold a record")
    magic, rtyp, flags, rtag, blen, bcrc, hcrc = REC_HDR.unpack_from(mm, pos)
    if magic != REC_MAGIC or crc(mm[pos:pos + 28]) != hcrc:
        if typ == CHUNK and magic != REC_MAGIC:
            raise StrataError("dangling-reference", pos, what, "not the offset of a record")
        raise StrataError("record-checksum", pos, tname(typ), "record header magic or CRC mismatch")
    if rtag != tag:
        raise StrataError("record-malformed", pos, "record.archive_tag", f"{rtag.hex()}, the archive tag is {tag.hex()}")
    if flags & ~R_KNOWN:
        raise StrataError("record-malformed", pos, "record.flags", f"reserved bits set: 0x{flags:04x}")
    fault = flag_fault(rtyp, flags)
    if fault:
        raise StrataError("record-malformed", pos, "record.flags", fault)
    if rtyp != typ:
        raise StrataError("dangling-reference" if typ == CHUNK else "index-mismatch", pos, what,
                          f"points at a {tname(rtyp)} record, expected {tname(typ)}")
    if blen > MAX_BODY[typ]:
        raise StrataError("limit-exceeded", pos, f"{tname(typ)}.body_length", f"{blen}, maximum {MAX_BODY[typ]}")
    if pos + 32 + blen > size:
        raise StrataError("truncated", pos, tname(typ), "the body runs past the end of the file")
    body = memoryview(mm)[pos + 32:pos + 32 + blen]
    if crc(body) != bcrc:
        raise StrataError("record-checksum", pos, f"{tname(typ)} body", "body_crc mismatch")
    body, errs = decode_table_body(typ, flags, body, prefixes=prefixes)     # 5.2, 5.3, after the CRC
    if errs:
        c, w, d = errs[0]
        raise StrataError(c, pos, w, d)
    return body


def parent_files(paths):
    """--parent PATH (15.4 rule 1): the files the user names for ancestors, by the
    archive_uuid in their header (read from the first 32 bytes only)."""
    out = {}
    for path in paths or ():
        try:
            with open(path, "rb") as f:
                head = f.read(32)
        except OSError as e:
            print(f"strata_ref: --parent {path}: {e.strerror}", file=sys.stderr)
            continue
        if len(head) == 32 and head[:8] == HEADER_MAGIC:
            out.setdefault(head[16:32], path)
        else:
            print(f"strata_ref: --parent {path}: not a Strata archive", file=sys.stderr)
    return out


class AncestorFile:
    """One open ancestor (15.4): its file, and its header, trailer and ARCHIVE_INDEX
    as far as the checks need them. Its chunks are read by random access."""

    def __init__(self, path, fd, size):
        self.path, self.fd, self.size = path, fd, size
        self.mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if size else b""
        self.hdr = self.tag = self.ai_body = None

    def close(self):
        if self.size:
            self.mm.close()
        os.close(self.fd)

    def bind(self, entry):
        """15.4 rule 3: its header passes section 3 (with the listed uuid), its size is
        archive_length, its trailer passes (9.3) and the BLAKE3 of its ARCHIVE_INDEX
        body is binding. Returns what differs, or None."""
        mm, size = self.mm, self.size
        hdr, probs, mode = check_header(mm, size)
        if probs or mode != "ok":
            c, _, w, d = probs[0]
            return f"its header fails section 3: {c}: {w}: {d}"
        self.hdr, self.tag = hdr, hdr["tag"]
        if hdr["uuid"] != entry["uuid"]:
            return f"its archive_uuid is {show_uuid(hdr['uuid'])}, the chain lists {show_uuid(entry['uuid'])}"
        if size != entry["archive_length"]:
            return f"its size is {size} bytes, the chain lists archive_length {entry['archive_length']}"
        try:
            if size < hdr["header_length"] + 64:
                raise StrataError("truncated", size, "TRAILER", "no room for a trailer")
            tpos = size - 64
            t, errs = parse_trailer(read_record(mm, size, self.tag, tpos, TRAILER))
            if errs:
                raise StrataError(errs[0][0], tpos, errs[0][1], errs[0][2])
            if t["archive_length"] != size:
                raise StrataError("index-mismatch", tpos, "TRAILER.archive_length", f"{t['archive_length']}, file size {size}")
            if not hdr["header_length"] <= t["index_offset"] < tpos:
                raise StrataError("index-mismatch", tpos, "TRAILER.index_offset", f"{t['index_offset']} is outside the records")
            body = read_record(mm, size, self.tag, t["index_offset"], ARCHIVE_INDEX, "TRAILER.index_offset")
        except StrataError as e:
            return f"its trailer or ARCHIVE_INDEX fails: {e}"
        digest = blake3.blake3(body).digest()
        if digest != entry["binding"]:
            return f"the BLAKE3 of its ARCHIVE_INDEX body is {digest.hex()}, the binding is {entry['binding'].hex()}"
        self.ai_body = bytes(body)
        return None

    def own_chain(self, chain, k):
        """15.4 rule 4: an ancestor with bit 1 lists, in its CHAIN_INDEX (bound by its
        ARCHIVE_INDEX), the child's ancestors after k, as far as both lists go, and has
        the child's id_scheme. Returns what disagrees, or None. Holds nothing after."""
        if not self.hdr["incompatible"] & F_INCREMENTAL:
            # no CHAIN: its chunk identities are those of section 6, scheme 0
            return None if chain["id_scheme"] == 0 else f"it has id_scheme 0, the child {chain['id_scheme']}"
        if len(self.ai_body) < 48:
            return "the chains disagree: its ARCHIVE_INDEX has no chain fields"
        cio, cib = u64(self.ai_body, 8), self.ai_body[16:48]
        try:
            body = read_record(self.mm, self.size, self.tag, cio, CHAIN_INDEX, "ARCHIVE_INDEX.chain_index_offset")
        except StrataError as e:
            return f"the chains disagree: its CHAIN_INDEX cannot be read: {e}"
        if blake3.blake3(body).digest() != cib:
            return "the chains disagree: its CHAIN_INDEX is not the one its ARCHIVE_INDEX binds"
        parsed, errs = parse_chain_index(body, self.hdr["uuid"])
        if errs or parsed["chain"] is None:
            return f"the chains disagree: its CHAIN_INDEX breaks a rule: {errs[0][1]}: {errs[0][2]}"
        its = parsed["chain"]
        if its["id_scheme"] != chain["id_scheme"]:
            return f"its id_scheme is {its['id_scheme']}, the child's {chain['id_scheme']}"
        for i, (mine, theirs) in enumerate(zip(chain["ancestors"][k:], its["ancestors"])):
            for key in ("uuid", "binding", "archive_length"):
                if mine[key] != theirs[key]:
                    return (f"the chains disagree: the child's ancestor {k + i + 1} and the ancestor's own "
                            f"ancestor {i + 1} differ in {key}")
        return None

    def record(self, o, typ, limit=TABLE_LIMIT):
        """(flags, body) of the record of type typ at offset o, its header checked by
        section 5 with this ancestor's tag, in its order, and its body CRC; the body is
        not decoded. Raises StrataError at o, with the classes of 15.4 rule 5 and 5.3
        rule 7: a record header that fails its magic or CRC is record-checksum, a record
        that runs past the ancestor's end (or an o at or past it) truncated, any other
        record header there (another archive's tag, reserved flags, another type, ZSTD
        or PREFIXED where section 5 refuses them, a body over the type's maximum or the
        reader's limit) dangling-reference (there is no record of that type of this ancestor at o), and
        a body that fails its CRC record-checksum."""
        mm, size = self.mm, self.size
        if o + 32 > size:
            raise StrataError("truncated", o, tname(typ), f"the record runs past the ancestor's end ({size} bytes)")
        magic, rtyp, flags, rtag, blen, bcrc, hcrc = REC_HDR.unpack_from(mm, o)
        if magic != REC_MAGIC or crc(mm[o:o + 28]) != hcrc:
            raise StrataError("record-checksum", o, "record header",
                              "bad magic" if magic != REC_MAGIC else "header_crc mismatch")
        if rtag != self.tag:
            raise StrataError("dangling-reference", o, "record.archive_tag",
                              f"a record of another archive (tag {rtag.hex()}, the ancestor's is {self.tag.hex()})")
        if flags & ~R_KNOWN:
            raise StrataError("dangling-reference", o, "record.flags", f"reserved flag bits set: 0x{flags:04x}")
        if rtyp != typ:
            raise StrataError("dangling-reference", o, "record.record_type", f"a {tname(rtyp)} record, not a {tname(typ)}")
        fault = flag_fault(rtyp, flags)
        if fault:
            raise StrataError("dangling-reference", o, "record.flags", fault)
        cap = MAX_BODY[CHUNK] if typ == CHUNK else type_bound(typ, limit)   # limit: the table limit (13)
        if blen > cap:
            raise StrataError("dangling-reference", o, f"{tname(typ)}.body_length", f"{blen}, maximum {cap}")
        if blen > size - o - 32:
            raise StrataError("truncated", o, tname(typ),
                              f"a body of {blen} bytes runs past the ancestor's end ({size} bytes)")
        body = memoryview(mm)[o + 32:o + 32 + blen]
        if crc(body) != bcrc:
            body.release()
            raise StrataError("record-checksum", o, f"{tname(typ)} body", "body_crc mismatch")
        return flags, body

    def chunk(self, o):
        """(fields, raw bytes) of the CHUNK record at offset o, read and checked as in
        sections 5 and 6 with this ancestor's tag (record); raises StrataError at o. A
        CHUNK record whose header passes and that fails a later check (body CRC, fields,
        frame, BLAKE3) has that check's class (15.4 rule 5)."""
        _, body = self.record(o, CHUNK)
        fields, errs = parse_chunk_fields(body)
        if not errs:
            raw, errs = decode_chunk(fields, body[40:])
        body.release()
        if errs:
            raise StrataError(errs[0][0], o, errs[0][1], errs[0][2])
        return fields, raw


class Ancestors:
    """The ancestors of a child (15.4), each opened when first needed: found by the
    user's --parent files (by UUID), else by its name beside the child; bound (rule 3)
    and its own chain checked (rule 4) before any chunk or prefix (5.3) is read from
    it. At most 16
    are open at once (least recently used closed first), and each holds its header,
    trailer and ARCHIVE_INDEX only, so memory and open files do not grow with the
    depth. An ancestor that fails stays failed: its error is raised again."""

    def __init__(self, child_path, chain, chain_off, explicit=None, max_open=MAX_OPEN_ANCESTORS):
        self.folder = os.getcwd() if child_path in (None, "-") else os.path.dirname(os.path.abspath(child_path))
        self.chain, self.chain_off = chain, chain_off
        self.explicit = explicit or {}
        self.max_open = max_open
        self.open = OrderedDict()       # k -> AncestorFile
        self.failed = {}                # k -> the StrataError that refused it
        self.chain_checked = set()      # k whose own chain agreed (rule 4; it is bound by rule 3)

    def close(self):
        while self.open:
            self.open.popitem(last=False)[1].close()

    def name(self, k):
        a = self.chain["ancestors"][k - 1]
        return f"ancestor {k} {lossy(a['name'])!r} (uuid {show_uuid(a['uuid'])})"

    def get(self, k):
        """The AncestorFile of ancestor k (1 = the parent), or StrataError
        parent-missing / parent-mismatch at the child's CHAIN record offset."""
        if k in self.failed:
            raise self.failed[k]
        if k in self.open:
            self.open.move_to_end(k)
            return self.open[k]
        try:
            af = self.load(k)
        except StrataError as e:
            self.failed[k] = e
            raise
        self.open[k] = af
        while len(self.open) > self.max_open:
            self.open.popitem(last=False)[1].close()
        return af

    def load(self, k):
        entry = self.chain["ancestors"][k - 1]
        path = self.explicit.get(entry["uuid"]) or os.path.join(self.folder, os.fsdecode(entry["name"]))
        show = f"{self.name(k)}, file {path}"
        try:                            # O_NONBLOCK: a fifo in its place must not hang the reader
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise StrataError("parent-missing", self.chain_off, "CHAIN.ancestors", f"{show}: {e.strerror}")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StrataError("parent-missing", self.chain_off, "CHAIN.ancestors", f"{show}: not a regular file")
            af = AncestorFile(path, fd, st.st_size)
        except (OSError, ValueError) as e:
            os.close(fd)
            raise StrataError("parent-missing", self.chain_off, "CHAIN.ancestors",
                              f"{show}: {getattr(e, 'strerror', None) or e}")
        except StrataError:
            os.close(fd)
            raise
        try:
            why = af.bind(entry)
            if why is None and k not in self.chain_checked:
                why = af.own_chain(self.chain, k)
                if why is None:
                    self.chain_checked.add(k)
            if why:
                raise StrataError("parent-mismatch", self.chain_off, "CHAIN.ancestors", f"{show}: {why}")
        except BaseException:
            af.close()
            raise
        af.ai_body = None               # checked: only the header is kept (15.4, bounded memory)
        return af



class Archive:
    """Opens an archive by its trailer and index; raises StrataError on any problem met."""

    def __init__(self, path, parents=None):
        self.path, self.parents = path, parents
        self.file = open(path, "rb")
        self.size = os.fstat(self.file.fileno()).st_size
        self.mm = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
        self.cache = OrderedDict()      # at most two decoded chunks
        self.tables = OrderedDict()     # the last few parsed groups, directory tables, extent records
        mm, size = self.mm, self.size
        hdr, probs, mode = check_header(mm, size)
        if probs:
            raise CannotOpen(*probs[0])
        self.hdr, self.tag, hl = hdr, hdr["tag"], hdr["header_length"]
        self.chained = bool(hdr["incompatible"] & F_INCREMENTAL)    # an incremental archive (15)
        self._chain = self._chain_index = self._ancestors = None
        self._chain_err = self._ci_err = None
        self._chain_copied = False      # the chain was taken from the CHAIN_INDEX's copy (11)
        # 5.3: prefixed tables are decoded against the CHAIN record's chain only
        self.prefixes = PrefixSource(lambda: self.chained, self.chain_record, self.ancestors)
        if size < hl + 64:
            raise StrataError("truncated", size, "TRAILER", f"a file of {size} bytes has no room for a trailer")
        tpos = size - 64
        if not record_header_ok(mm, tpos, size, None):     # 10.1 step 2
            raise StrataError("truncated", tpos, "TRAILER", "the last 64 bytes are not a trailer record")
        t, errs = parse_trailer(self.record(tpos, TRAILER))
        self.raise_first(tpos, errs)
        if t["archive_length"] != size:
            cls = "truncated" if t["archive_length"] > size else "index-mismatch"
            raise StrataError(cls, tpos, "TRAILER.archive_length", f"{t['archive_length']}, file size {size}")
        ipos = t["index_offset"]
        if not hl <= ipos < tpos:
            raise StrataError("index-mismatch", tpos, "TRAILER.index_offset", f"{ipos} is outside the records")
        body = self.record(ipos, ARCHIVE_INDEX, "TRAILER.index_offset")
        if ipos + 32 + len(body) != tpos:
            raise StrataError("index-mismatch", ipos, "ARCHIVE_INDEX", "is not the record before the trailer")
        parsed, errs = parse_archive_index(body, self.chained)
        self.raise_first(ipos, errs)
        self.index_offset, entries, self.chain_fields = ipos, parsed["entries"], parsed["chain"]
        self.sections = [self.load_image(e) if e["kind"] == 1 else self.load_files(e) for e in entries]
        names = [s["name"] for s in self.sections]
        for i, e in enumerate(entries):
            if names.index(names[i]) != i:
                raise StrataError("record-malformed", e["begin"], "section name", f"{names[i]!r} is not unique")

    @staticmethod
    def raise_first(offset, errs):
        if errs:
            c, w, d = errs[0]
            raise StrataError(c, offset, w, d)

    def record(self, pos, typ, via=None):
        """Read and check the record at pos, of type typ (checks in the order of 5); its
        body, decoded (5.2), against its prefix in an ancestor when it is prefixed (5.3:
        the ancestors a listing or info needs are those its prefixed tables name)."""
        return read_record(self.mm, self.size, self.tag, pos, typ, via, self.prefixes)

    def load_image(self, e):
        sid = e["section_id"]
        begin, errs = parse_image_begin(self.record(e["begin"], IMAGE_BEGIN, "ARCHIVE_INDEX.begin_offset"))
        self.raise_first(e["begin"], errs)
        end, errs = parse_image_end(self.record(e["end"], IMAGE_END, "ARCHIVE_INDEX.end_offset"))
        self.raise_first(e["end"], errs)
        parsed, errs = parse_extents(self.record(e["table"], IMAGE_INDEX, "ARCHIVE_INDEX.table_offset"), "IMAGE_INDEX", False)
        self.raise_first(e["table"], errs)
        tsid, extents = parsed
        for off, what, got in ((e["begin"], "IMAGE_BEGIN", begin["section_id"]), (e["end"], "IMAGE_END", end["section_id"]),
                               (e["table"], "IMAGE_INDEX", tsid)):
            if got != sid:
                raise StrataError("index-mismatch", off, f"{what}.section_id", f"{got}, ARCHIVE_INDEX entry {sid}")
        if end["begin_offset"] != e["begin"]:
            raise StrataError("index-mismatch", e["end"], "IMAGE_END.begin_offset", f"{end['begin_offset']}, the ARCHIVE_INDEX gives {e['begin']}")
        size = end["logical_size"]
        if begin["logical_size"] not in (ALL_ONES, size):
            raise StrataError("record-malformed", e["end"], "IMAGE_END.logical_size", f"{size}, IMAGE_BEGIN gave {begin['logical_size']}")
        check = MapChecker(begin["chunk_size"], size, begin["used_blocks"])
        errs = [("record-malformed", f"chunk_ref {why}") for why in
                (extent_kind_error(x[2], begin["used_blocks"]) for x in extents) if why]
        errs += [("record-malformed", f"{field} {why}") for x in extents
                 for field, why in extent_entry_errors(x[2], x[3], x[4])]     # 7.2, the 32-byte entry
        errs += [x for ext in extents for x in check.feed(*ext)] + check.finish(size)
        if errs:
            raise StrataError(errs[0][0], e["table"], "IMAGE_INDEX.extents", errs[0][1])
        for k, v in (("extent_count", check.count), ("data_bytes", check.data), ("lost_bytes", check.lost)):
            if end[k] != v:
                raise StrataError("index-mismatch", e["end"], f"IMAGE_END.{k}", f"{end[k]}, the IMAGE_INDEX gives {v}")
        # IMAGE_END has no free total (7.3): free_bytes comes from the IMAGE_INDEX.
        return {"kind": "image", "sid": sid, "name": begin["name"], "begin": begin, "end": end, "extents": extents,
                "free_bytes": check.free}

    def load_files(self, e):
        sid = e["section_id"]
        begin, errs = parse_files_begin(self.record(e["begin"], FILES_BEGIN, "ARCHIVE_INDEX.begin_offset"))
        self.raise_first(e["begin"], errs)
        end, errs = parse_files_end(self.record(e["end"], FILES_END, "ARCHIVE_INDEX.end_offset"))
        self.raise_first(e["end"], errs)
        index, errs = parse_files_index(self.record(e["table"], FILES_INDEX, "ARCHIVE_INDEX.table_offset"))
        self.raise_first(e["table"], errs)
        for off, what, got in ((e["begin"], "FILES_BEGIN", begin["section_id"]), (e["end"], "FILES_END", end["section_id"]),
                               (e["table"], "FILES_INDEX", index["section_id"])):
            if got != sid:
                raise StrataError("index-mismatch", off, f"{what}.section_id", f"{got}, ARCHIVE_INDEX entry {sid}")
        if end["begin_offset"] != e["begin"]:
            raise StrataError("index-mismatch", e["end"], "FILES_END.begin_offset", f"{end['begin_offset']}, the ARCHIVE_INDEX gives {e['begin']}")
        return {"kind": "files", "sid": sid, "name": begin["name"], "begin": begin, "end": end, "index": index,
                "table": e["table"], "first_ids": [r[2] for r in index["rows"]]}

    # -- file trees by random access (8.5, 8.6, 10.1 step 5) ---------------------------
    def cached(self, key, make):
        """A parsed table record, kept among the last few read (groups, directory tables
        and extent records are read again when a listing or a lookup comes back to them)."""
        c = self.tables
        if key in c:
            c.move_to_end(key)
            return c[key]
        v = make()
        c[key] = v
        while len(c) > 8:
            c.popitem(last=False)
        return v

    def group(self, sec, off, via):
        """The FILES_ENTRIES record at off, parsed (8.3): its head fits the section."""
        def make():
            g, errs = parse_group(self.record(off, FILES_ENTRIES, via))
            if g is None:
                self.raise_first(off, errs)
            if g["section_id"] != sec["sid"]:
                raise StrataError("index-mismatch", off, "FILES_ENTRIES.section_id",
                                  f"{g['section_id']}, reached through {via} of section {sec['sid']}")
            if g["captured"] != sec["begin"]["captured"]:
                raise StrataError("record-malformed", off, "FILES_ENTRIES.captured",
                                  f"0x{g['captured']:x}, the section's FILES_BEGIN gives 0x{sec['begin']['captured']:x}")
            g["offset"] = off
            return g
        return self.cached(("g", off), make)

    def files_dir(self, sec, off, via):
        def make():
            d, errs = parse_files_dir(self.record(off, FILES_DIR, via))
            if d is None:
                self.raise_first(off, errs)
            if d["section_id"] != sec["sid"]:
                raise StrataError("index-mismatch", off, "FILES_DIR.section_id",
                                  f"{d['section_id']}, reached through {via} of section {sec['sid']}")
            return d
        return self.cached(("d", off), make)

    def files_extents(self, sec, off, via):
        def make():
            x, errs = parse_files_extents(self.record(off, FILES_EXTENTS, via))
            if x is None:
                self.raise_first(off, errs)
            if x["section_id"] != sec["sid"]:
                raise StrataError("index-mismatch", off, "FILES_EXTENTS.section_id",
                                  f"{x['section_id']}, reached through {via} of section {sec['sid']}")
            return x
        return self.cached(("x", off), make)

    def entries(self, sec):
        """Every entry of a file-tree section, in entry order, from the groups its
        FILES_INDEX lists (8.6): [(group offset, row, entry)], each entry with "_group",
        its group (for its extents, 10.1 step 5). Reads no chunk."""
        out = []
        for i, (rec, _, fid) in enumerate(sec["index"]["rows"]):
            g = self.group(sec, rec, "FILES_INDEX.entries_record")
            if g["first_id"] != fid:
                raise StrataError("index-mismatch", sec["table"], f"FILES_INDEX.groups[{i}].first_id",
                                  f"{fid}, the group at {rec} has first_id {g['first_id']}")
            # A first_id out of sequence breaks a rule of 8.3: list reports it and extract
            # refuses the entries it cannot place by their ids (8.7 lets a reader stop
            # there; this one goes on), so it does not stop the reader.
            for e in g["entries"]:
                e["_group"] = g
                out.append((rec, e["row"], e))
        if len(out) != sec["end"]["entry_count"]:
            raise StrataError("index-mismatch", sec["table"], "FILES_INDEX.groups",
                              f"they hold {len(out)} entries, FILES_END counts {sec['end']['entry_count']}")
        return out

    def entry_by_id(self, sec, eid):
        """The entry eid, found by a binary search of the FILES_INDEX first_ids (8.6):
        (group, entry), or None when no group holds it."""
        i = bisect.bisect_right(sec["first_ids"], eid) - 1
        if i < 0:
            return None
        rec = sec["index"]["rows"][i][0]
        g = self.group(sec, rec, "FILES_INDEX.entries_record")
        if g["first_id"] != sec["first_ids"][i]:
            raise StrataError("index-mismatch", sec["table"], f"FILES_INDEX.groups[{i}].first_id",
                              f"{sec['first_ids'][i]}, the group at {rec} has first_id {g['first_id']}")
        if not g["first_id"] <= eid < g["first_id"] + g["count"]:
            return None
        return g, g["entries"][eid - g["first_id"]]

    def lookup(self, sec, path):
        """8.5 "Looking up a path": from the root, one FILES_DIR and one FILES_ENTRIES
        record per component, every pointer followed checked (index-mismatch). Returns
        (group, entry), or None when the path names no entry."""
        rows = sec["index"]["rows"]
        rec, dir_rec, fid = rows[0]
        g = self.group(sec, rec, "FILES_INDEX.entries_record")
        if g["first_id"] != fid or g["first_id"] != 0:
            raise StrataError("index-mismatch", sec["table"], "FILES_INDEX.groups[0]",
                              f"first_id {fid}, the group at {rec} has first_id {g['first_id']}: not the group of entry 0")
        d = g["entries"][0]
        if d["kind"] != K_DIR or d["parent_id"] != ALL_ONES or d["name"]:
            raise StrataError("index-mismatch", rec, "FILES_ENTRIES entry 0", "not the root directory")
        comps = [c for c in path.split(b"/") if c]
        for comp in comps:
            if d["kind"] != K_DIR:
                return None             # a component under an entry that is not a directory
            did, via = d["entry_id"], "FILES_INDEX.dir_record" if d["entry_id"] == 0 else "FILES_DIR.fences.dir_record"
            if dir_rec == 0:
                raise StrataError("index-mismatch", g["offset"], via,
                                  f"0, but the group at {g['offset']} holds the directory {did}")
            x = self.files_dir(sec, dir_rec, via)
            if x["entries_record"] != g["offset"]:
                raise StrataError("index-mismatch", dir_rec, "FILES_DIR.entries_record",
                                  f"{x['entries_record']}, expected the group at {g['offset']}")
            locs = x["locators"]
            i = bisect.bisect_left(locs, (did,))
            if i >= len(locs) or locs[i][0] != did:
                raise StrataError("index-mismatch", dir_rec, "FILES_DIR.locators",
                                  f"no locator for directory {did}")
            _, child_count, first_child, ff = locs[i]
            nf = locs[i + 1][3] if i + 1 < len(locs) else len(x["fences"])
            if not ff <= nf <= len(x["fences"]):
                raise StrataError("index-mismatch", dir_rec, f"FILES_DIR.locators[{i}].first_fence",
                                  f"fences {ff}..{nf} of {len(x['fences'])}")
            if child_count == 0:
                return None
            run_end = first_child + child_count
            fences = x["fences"][ff:nf]
            if first_child <= did or not fences or fences[0][2] != first_child or any(
                    not a[2] < b[2] for a, b in zip(fences, fences[1:])) or fences[-1][2] >= run_end:
                raise StrataError("index-mismatch", dir_rec, f"FILES_DIR.locators[{i}]",
                                  f"directory {did}: first_child_id {first_child}, {child_count} children, fences at "
                                  f"{[f[2] for f in fences]}: not ids growing from a first child after it inside its run")
            j = bisect.bisect_right([f[3] for f in fences], comp) - 1
            if j < 0:
                return None             # every fence's name is greater: not there
            frec, fdir, fchild, fname = fences[j]
            g = self.group(sec, frec, "FILES_DIR.fences.entries_record")
            base = g["first_id"]
            if not base <= fchild < base + g["count"]:
                raise StrataError("index-mismatch", frec, "FILES_ENTRIES.first_id",
                                  f"the group holds {base}..{base + g['count']}, the fence names entry {fchild}")
            ents = g["entries"]
            lo, hi = fchild - base, min(g["count"], run_end - base)
            if ents[lo]["name"] != fname:
                raise StrataError("index-mismatch", dir_rec, f"FILES_DIR.fences[{ff + j}].name",
                                  f"{lossy(fname)!r}, entry {fchild} is named {lossy(ents[lo]['name'])!r}")
            found = None
            while lo < hi:              # binary search of the run's names in this group
                mid = (lo + hi) // 2
                m = ents[mid]
                if m["parent_id"] != did:
                    raise StrataError("index-mismatch", frec, f"FILES_ENTRIES entry {m['entry_id']}.parent_id",
                                      f"{m['parent_id']}, reached as a child of directory {did}")
                if m["name"] == comp:
                    found = m
                    break
                if m["name"] < comp:
                    lo = mid + 1
                else:
                    hi = mid
            if found is None:
                return None
            d, dir_rec = found, fdir
        return g, d

    def file_extents(self, sec, g, e):
        """10.1 step 5, "Locating a file's extents": from index x = extent_base + the
        extent_count of the rows before it, through the group's extent list, into the
        following rows' records when a record ends; each extent is the file's, and none
        runs past the list (else index-mismatch). Returns [(file_offset, length,
        chunk_ref, chunk_offset, record)]; nothing is allocated by extent_count."""
        n, x, eid = e["extent_count"], e["extent_index"], e["entry_id"]
        out = []
        if n == 0:
            return out
        lst = g["list"]
        firsts = [f for _, f in lst]
        if any(not a < b for a, b in zip(firsts, firsts[1:])):
            raise StrataError("index-mismatch", g["offset"], "FILES_ENTRIES.extent_list",
                              f"first_index values {firsts[:8]} do not increase")
        i = bisect.bisect_right(firsts, x) - 1
        while len(out) < n:
            if i < 0 or i >= len(lst):
                raise StrataError("index-mismatch", g["offset"], "FILES_ENTRIES.extent_list",
                                  f"entry {eid}: its {n} extents from index {x} run past the extent list "
                                  f"({len(out)} found)")
            rec, fi = lst[i]
            fx = self.files_extents(sec, rec, "FILES_ENTRIES.extent_list")
            if fx["first_index"] != fi:
                raise StrataError("index-mismatch", rec, "FILES_EXTENTS.first_index",
                                  f"{fx['first_index']}, the extent list of the group at {g['offset']} gives {fi}")
            start = x + len(out) - fi
            if not 0 <= start < fx["count"]:
                raise StrataError("index-mismatch", g["offset"], "FILES_ENTRIES.extent_list",
                                  f"entry {eid}: extent {x + len(out)} is not in the record at {rec} "
                                  f"({fi}..{fi + fx['count']})")
            for xe, foff, length, ref, coff in fx["extents"][start:start + n - len(out)]:
                if xe != eid:
                    raise StrataError("index-mismatch", rec, "FILES_EXTENTS.entry_id",
                                      f"{xe}, extent {x + len(out)} was located for entry {eid}")
                out.append((foff, length, ref, coff, rec))
            i += 1
        return out

    def chunk(self, ref, via):
        """(fields, raw bytes) of the CHUNK record at ref, read, checked and decoded (6);
        in an incremental archive a reference into an ancestor is read there (15.4)."""
        if ref in self.cache:
            self.cache.move_to_end(ref)
            return self.cache[ref]
        if self.chained and ref >> REF_SHIFT:
            fields, raw = self.ancestor_chunk(ref, via)
        else:                           # without bit 1 a chunk_ref is an offset, whatever its bits (15.1)
            body = self.record(ref, CHUNK, via)
            fields, errs = parse_chunk_fields(body)
            self.raise_first(ref, errs)
            raw, errs = decode_chunk(fields, body[40:])
            self.raise_first(ref, errs)
        self.cache[ref] = (fields, raw)
        while len(self.cache) > 2:
            self.cache.popitem(last=False)
        return fields, raw

    # -- incremental archives (15) ---------------------------------------------------
    def chain(self):
        """The chain of an incremental archive (15.2): from its CHAIN record, the first
        record; when that record is damaged or breaks a rule, from the copy in the
        CHAIN_INDEX (11). Raises the CHAIN record's error when neither can be used."""
        if self._chain is not None or self._chain_err is not None:
            if self._chain_err is not None:
                raise self._chain_err
            return self._chain
        hl = self.hdr["header_length"]
        if record_header_ok(self.mm, hl, self.size, self.tag) and u16(self.mm, hl + 4) != CHAIN:
            # the chain cannot be known: the copy in the CHAIN_INDEX does not stand in (15.4)
            self._chain_err = StrataError("record-malformed", hl, "CHAIN",
                                          f"feature bit 1 is set, but the first record is a {tname(u16(self.mm, hl + 4))}")
            raise self._chain_err
        try:
            chain, errs = parse_chain(self.record(hl, CHAIN), self.hdr["uuid"])
            self.raise_first(hl, errs)
            self._chain = chain
        except StrataError as e:
            try:
                ci = self.chain_index()
            except StrataError:
                self._chain_err = e
                raise e
            print(f"strata_ref: the CHAIN record is unusable ({e}); the chain is taken from the CHAIN_INDEX",
                  file=sys.stderr)
            self._chain, self._chain_copied = ci["chain"], True
        return self._chain

    def chain_record(self):
        """5.3 rule 5: the chain of the CHAIN record when that record passed its checks,
        else None: the copy in the CHAIN_INDEX, which stands in for references into
        ancestors (11), does not for prefixed tables."""
        try:
            chain = self.chain()
        except StrataError:
            return None
        return None if self._chain_copied else chain

    def chain_index(self):
        """The CHAIN_INDEX the ARCHIVE_INDEX points at (9.2, 15.3): directly before the
        ARCHIVE_INDEX, with the BLAKE3 the ARCHIVE_INDEX gives, passing its rules, and
        its chain equal to the CHAIN record's body when that record is intact."""
        if self._ci_err is not None:
            raise self._ci_err
        if self._chain_index is not None:
            return self._chain_index
        try:
            cio, cib = self.chain_fields
            body = self.record(cio, CHAIN_INDEX, "ARCHIVE_INDEX.chain_index_offset")
            if cio + 32 + u64(self.mm, cio + 16) != self.index_offset:
                raise StrataError("index-mismatch", self.index_offset, "ARCHIVE_INDEX.chain_index_offset",
                                  f"{cio}: not the record directly before the ARCHIVE_INDEX")
            if blake3.blake3(body).digest() != cib:
                raise StrataError("index-mismatch", self.index_offset, "ARCHIVE_INDEX.chain_index_blake3",
                                  "differs from the BLAKE3 of the CHAIN_INDEX body")
            parsed, errs = parse_chain_index(body, self.hdr["uuid"])
            self.raise_first(cio, errs)
            hl = self.hdr["header_length"]
            try:
                first = bytes(self.record(hl, CHAIN))
            except StrataError:
                first = None            # a damaged CHAIN: the copy stands in for it (11)
            if first is not None and first != parsed["chain_body"]:
                raise StrataError("index-mismatch", cio, "CHAIN_INDEX.chain", "differs from the CHAIN record's body")
            parsed["offset"] = cio
            self._chain_index = parsed
        except StrataError as e:
            self._ci_err = e
            raise
        return parsed

    def ancestors(self):
        if self._ancestors is None:
            self._ancestors = Ancestors(self.path, self.chain(), self.hdr["header_length"], self.parents)
        return self._ancestors

    def ancestor_chunk(self, ref, via):
        """15.4 rule 5, by random access: (k, o) within the chain, listed in the
        CHAIN_INDEX rows, a CHUNK record of ancestor k that passes sections 5 and 6,
        and whose blake3 is the row's. Without a usable CHAIN_INDEX (damaged, 11) the
        rows' check is lost: the chunk's own checks and the end-to-end digests remain."""
        k, o = split_ref(ref)
        chain = self.chain()
        if k > chain["depth"] or o < 128:
            raise StrataError("record-malformed", ref, via or "chunk_ref",
                              f"0x{ref:016x}: archive {k}, offset {o}: the chain has depth {chain['depth']}, "
                              f"and an ancestor's chunk is at an offset of 128 or more")
        row = None
        try:
            ci = self.chain_index()
        except StrataError as e:
            if not getattr(self, "_ci_warned", False):
                self._ci_warned = True
                print(f"strata_ref: warning: the CHAIN_INDEX cannot be used ({e}): ancestor chunks are not "
                      f"checked against its rows, only by their own checks and the digests", file=sys.stderr)
        else:
            row = row_lookup(ci["rows"], ci["count"], ref)
            if row is None:
                raise StrataError("index-mismatch", ci["offset"], "CHAIN_INDEX.rows",
                                  f"the reference (archive {k}, offset {o}) is not listed")
        ancestors = self.ancestors()
        af = ancestors.get(k)
        try:
            fields, raw = af.chunk(o)
        except StrataError as e:
            raise StrataError(e.cls, o, e.what, f"{ancestors.name(k)}, file {af.path}, offset {o}: {e.detail}")
        if row is not None and fields["blake3"] != row:
            raise StrataError("parent-mismatch", o, "CHUNK.blake3",
                              f"{ancestors.name(k)}, file {af.path}, offset {o}: the chunk is "
                              f"{fields['blake3'].hex()}, the CHAIN_INDEX lists {row.hex()}")
        return fields, raw


def tree_listing(entries, captured):
    """Entries as the JSON objects of conformance.md (list), with the problems found
    by the rules of 8.3 as (path, detail) pairs."""
    ents, out, issues, names, order = {}, [], [], {}, RunOrder()
    for i, (rec, off, e) in enumerate(entries):
        eid, k = e["entry_id"], e["kind"]
        path = entry_path(e, ents.get)
        if eid != i:
            issues.append((path, f"entry_id: {eid}, expected {i}"))
        for _, what, d in entry_rule_errors(e, captured):
            issues.append((path, f"{what}: {d}"))
        for what, d in entry_place_errors(e, ents.get):
            issues.append((path, f"{what}: {d}"))
        if eid:
            sib = names.setdefault(e["parent_id"], set())
            if e["name"] in sib:
                issues.append((path, "name: not unique among its siblings"))
            sib.add(e["name"])
        bad = order.check(e)            # 8, "Entry order"
        if bad:
            issues.append((path, f"{bad[0]}: {bad[1]}"))
        if eid == i:
            ents[eid] = Ent(k, e["parent_id"], e["name"], rec, off, path)
        o = {"path": lossy(path), "path_hex": path.hex(), "kind": KIND_NAMES.get(k, f"kind-{k}"),
             "mode": e["mode"], "size": e["size"], "mtime_s": e["mtime_s"], "mtime_nsec": e["mtime_nsec"],
             "entry_id": eid,
             "uid": e["uid"], "gid": e["gid"], "user": lossy(e["user"]), "group": lossy(e["group"]),
             "xattrs": [lossy(n) for n, _ in e["xattrs"]]}
        if captured & CAP_ATIME:        # beyond the protocol's fields (more are allowed)
            o["atime_s"], o["atime_nsec"] = e["atime_s"], e["atime_nsec"]
        if captured & CAP_CTIME:
            o["ctime_s"], o["ctime_nsec"] = e["ctime_s"], e["ctime_nsec"]
        if e["flags"] & F_BTIME:
            o["btime_s"], o["btime_nsec"] = e["btime_s"], e["btime_nsec"]
        if captured & CAP_SOURCE:       # source identity (8.1 bit 6): information, not restored
            o["ino"], o["dev"] = e["ino"], [e["dev_major"], e["dev_minor"]]
        if k == K_FILE:
            o["digest"] = e["digest"].hex()
        elif k == K_SYMLINK:
            o["target"] = lossy(e["target"])
            o["target_hex"] = e["target"].hex()
        elif k == K_HARDLINK:
            t = ents.get(e["link_id"]) if e["link_id"] < eid else None
            o["link"] = lossy(t.path) if t else None
        elif k in (K_CHR, K_BLK):
            o["rdev"] = [e["rdev_major"], e["rdev_minor"]]
        if k == K_FILE and e["flags"] & F_CHANGED:   # bits 1 and 2 mean nothing on other kinds
            o["changed_while_read"] = True
        if k == K_FILE and e["flags"] & F_UNREAD:
            o["unreadable"] = True
        if e["flags"] & F_LOST:
            o["lost_in_salvage"] = True
        # Every flag by name, in bit order; bits 1 and 2 are named on regular files only.
        o["flags"] = [n for bit, n in ((F_BTIME, "birth_time"), (F_CHANGED, "changed_while_read"),
                                       (F_UNREAD, "unreadable"), (F_LOST, "lost_in_salvage"))
                      if e["flags"] & bit and (k == K_FILE or bit in (F_BTIME, F_LOST))]
        out.append(o)
    return out, issues


# ----------------------------------------------------------------------------
# 8. File-tree extraction (8.7)

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ACL_ACCESS, ACL_DEFAULT = b"system.posix_acl_access", b"system.posix_acl_default"
NO_XATTR_ERRNOS = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}   # "no such attribute", "not supported"


class Extractor:
    """Extracts the entries of one file-tree section into DEST.

    Every path is resolved component by component from a handle on DEST with
    O_NOFOLLOW (a directory is only ever entered through a handle opened on a
    directory this extraction created), so nothing outside DEST is created,
    written or changed. Per entry: content to a temporary name, renamed into
    place; then owner (root only), extended attributes (capabilities last), mode
    (not for symbolic links), times. Directories get their default ACL, mode and
    times last, deepest first. With captured bit 1, ACLs are exact: an access ACL
    (or a directory's default ACL) an entry does not record is removed. The root
    entry's metadata applies to DEST only if this extraction created it (8.7)."""

    def __init__(self, archive, sec, entries, dest):
        self.ar, self.sec, self.entries, self.dest = archive, sec, entries, dest
        self.captured = sec["begin"]["captured"]
        self.refused, self.warnings = [], []
        self.as_root = os.geteuid() == 0
        self.kinds = {}                 # entry_id -> kind, for every entry seen
        self.paths = {}                 # entry_id -> path bytes
        self.dirs = {}                  # entry_id -> (parent id, name, depth): directories created
        self.files = {}                 # entry_id -> (parent id, name): regular files extracted
        self.skipped = {}               # entry_id -> why: regular files with flag bit 2 or 3, not created
        self.refused_ids = set()        # entries refused (placed by their ids)
        self.taken = {}                 # directory id -> names of the entries placed in it
        self.fds = OrderedDict()        # directory id -> open handle (a few, reopened on demand)
        self.deferred = []              # (depth, entry_id, entry): directory mode and times
        self.extracted = 0
        self.root_fd = None
        self.dest_created = False       # 8.7 "The destination": set in run()
        self.order = RunOrder()         # 8, "Entry order", over the entries in entry order
        self.out_of_order = None

    def refuse(self, path, reason):
        self.refused.append({"path": lossy(path), "path_hex": path.hex(), "reason": reason})
        print(f"strata_ref: refusing {lossy(path)!r}: {reason}", file=sys.stderr)

    def warn(self, path, reason):
        self.warnings.append({"path": lossy(path), "path_hex": path.hex(), "reason": reason})
        print(f"strata_ref: warning: {lossy(path)!r}: {reason}", file=sys.stderr)

    def dirfd(self, eid):
        """A new handle (the caller closes it) on the extracted directory eid."""
        if eid == 0:
            return os.dup(self.root_fd)
        if eid in self.fds:
            self.fds.move_to_end(eid)
            return os.dup(self.fds[eid])
        parent, name, _ = self.dirs[eid]
        pfd = self.dirfd(parent)
        try:
            fd = os.open(name, O_DIR, dir_fd=pfd)
        finally:
            os.close(pfd)
        self.fds[eid] = fd
        while len(self.fds) > 32:
            os.close(self.fds.popitem(last=False)[1])
        return os.dup(fd)

    def run(self):
        self.dest_created = not os.path.lexists(self.dest)
        os.makedirs(self.dest, exist_ok=True)
        self.root_fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, (_, _, e) in enumerate(self.entries):
                self.one(e, i)
            for depth, eid, e in sorted(self.deferred, key=lambda t: (-t[0], -t[1])):
                fd = self.dirfd(eid)
                try:
                    self.set_default_acl(fd, e, self.paths[eid])
                    self.set_mode_times(fd, e, self.paths[eid])
                except (OSError, OverflowError, ValueError) as ex:
                    self.warn(self.paths[eid], f"mode or times: {getattr(ex, 'strerror', None) or ex}")
                finally:
                    os.close(fd)
        finally:
            for fd in self.fds.values():
                os.close(fd)
            os.close(self.root_fd)

    def rule_errors(self, e):
        """The rules of 8.3 an entry breaks on its own, as one reason (or None)."""
        errs = entry_rule_errors(e, self.captured)
        if not errs:
            return None
        return "breaks a rule of 8.3: " + "; ".join(f"{w}: {d}" for _, w, d in errs) + " [record-malformed]"

    def one(self, e, position):
        refused = len(self.refused)
        self.out_of_order = self.order.check(e)     # 8, "Entry order": a rule of 8.3, refused (8.7)
        self.place(e, position)
        if len(self.refused) > refused and e["entry_id"] == position:
            self.refused_ids.add(position)      # what is inside it is refused with it (8.7)

    def place(self, e, position):
        eid, k, parent, name = e["entry_id"], e["kind"], e["parent_id"], e["name"]
        path = entry_path(e, lambda i: Ent(0, 0, b"", 0, 0, self.paths[i]) if i in self.paths else None)
        if eid != position:             # it cannot be told apart from the entry whose id it takes
            self.refuse(path, f"entry_id {eid} out of sequence, expected {position} [record-malformed]")
            return
        self.paths[eid], self.kinds[eid] = path, k
        if eid == 0:
            if k != K_DIR or parent != ALL_ONES or name:
                self.refuse(path, "entry 0 is not a root directory: nothing can be extracted under it")
                return
            why = self.rule_errors(e)
            if why:
                self.refuse(path, f"the root {why}: nothing can be extracted under it")
                return
            self.dirs[0] = (None, b"", 0)
            if self.dest_created:       # 8.7: an existing destination keeps its own metadata
                fd = self.dirfd(0)
                try:
                    self.set_owner_xattrs(fd, None, None, e, path)
                finally:
                    os.close(fd)
                self.deferred.append((0, 0, e))
            self.extracted += 1
            return
        why = bad_name(name)
        if why:
            self.refuse(path, f"unsafe name ({why}): it could point outside the destination")
            return
        if parent in self.refused_ids:  # 8.7: refused with the directory it is in
            self.refuse(path, f"inside the refused entry {lossy(self.paths[parent])!r}: it has nowhere to go")
            return
        if parent == ALL_ONES or parent >= eid or parent not in self.dirs:
            self.refuse(path, "its parent is not a directory extracted before it")
            return
        taken = self.taken.setdefault(parent, set())
        if name in taken:
            self.refuse(path, "a second entry of the same name in one directory")
            return
        taken.add(name)
        if self.out_of_order:
            self.refuse(path, f"out of the entry order of section 8: {self.out_of_order[0]}: "
                              f"{self.out_of_order[1]} [record-malformed]")
            return
        why = self.rule_errors(e)       # 8.7: refused by path; the other entries are extracted
        if why:
            self.refuse(path, why)
            return
        if k == K_HARDLINK:
            lid = e["link_id"]
            if not (lid < eid and self.kinds.get(lid) == K_FILE):
                self.refuse(path, f"a hard link to entry {lid}, which is not an earlier regular file of this section")
                return
            if lid in self.refused_ids:     # no inode to share: refused with its file, as with a directory (8.7)
                self.refuse(path, f"a hard link to the refused entry {lossy(self.paths[lid])!r}")
                return
            if lid in self.skipped:     # 8.7: warned about like the file it links to
                self.warn(path, f"not extracted: a hard link to {lossy(self.paths[lid])!r}, whose content {self.skipped[lid]}")
                return
            if lid not in self.files:
                self.warn(path, f"not linked: its target {lossy(self.paths[lid])!r} was not extracted")
                return
        if k == K_FILE and e["flags"] & (F_LOST | F_UNREAD):   # 8.3 flag bits 3 and 2: not created, warned
            self.skipped[eid] = ("was lost in salvage" if e["flags"] & F_LOST
                                 else "could not be read when the archive was made")
            self.warn(path, f"not extracted: its content {self.skipped[eid]}")
            return
        pfd = self.dirfd(parent)
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not (k == K_DIR and stat.S_ISDIR(st.st_mode)):
                self.refuse(path, "it already exists in the destination")
                return
            {K_FILE: self.make_file, K_DIR: self.make_dir, K_SYMLINK: self.make_symlink,
             K_HARDLINK: self.make_hardlink}.get(k, self.make_special)(pfd, e, path, st)
        except OSError as ex:
            self.warn(path, f"not extracted: {ex.strerror or ex}")
        except (OverflowError, ValueError) as ex:     # a value this system cannot take
            self.warn(path, f"not extracted: {ex}")
        except StrataError as ex:
            self.warn(path, f"not extracted: {ex} [{ex.cls}]")
        finally:
            os.close(pfd)

    # -- one kind each ---------------------------------------------------------------
    def make_file(self, pfd, e, path, _):
        eid, name, size = e["entry_id"], e["name"], e["size"]
        # Its extents, announced in FILES_EXTENTS records and located through its
        # group's extent list (10.1 step 5); a problem there leaves it out with a warning.
        extents = self.ar.file_extents(self.sec, e["_group"], e)
        errs = file_extent_errors(extents, size)
        if errs:
            self.warn(path, f"not extracted: {errs[0]} [extent-map]")
            return
        low = next((x for x in extents if x[2] < 128), None)
        if low is not None:
            self.warn(path, f"not extracted: chunk_ref {low[2]} of the extent at {low[0]} is not a record "
                            f"offset [record-malformed]")
            return
        if size > MAX_IMAGE:            # beyond off_t: no file system holds it
            self.warn(path, f"not extracted: a size of {size} bytes is beyond 2^63-1 [limit-exceeded]")
            return
        tmp = None
        for _ in range(100):
            cand = b".strata-tmp-" + secrets.token_hex(8).encode()
            try:
                fd = os.open(cand, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
                tmp = cand
                break
            except FileExistsError:
                continue
        if tmp is None:
            raise OSError("cannot create a temporary file")
        try:
            digest = FileDigest(size)   # 8.3: over the data written; holes are neither written nor hashed
            for foff, length, ref, coff, _ in extents:
                fields, raw = self.ar.chunk(ref, "FILES_EXTENTS.chunk_ref")
                if coff + length > len(raw):
                    self.warn(path, f"not extracted: extent at {foff} runs past its chunk's {len(raw)} bytes [extent-map]")
                    return
                data = memoryview(raw)[coff:coff + length]
                done = 0
                while done < length:
                    done += os.pwrite(fd, data[done:], foff + done)
                digest.data(foff, data)
            os.ftruncate(fd, size)      # the rest of the file is a hole
            if digest.digest() != e["digest"]:
                self.warn(path, "not extracted: the content does not give its digest [chunk-corrupt]")
                return
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            tmp = None
            self.set_owner_xattrs(fd, None, None, e, path)
            self.set_mode_times(fd, e, path)
            self.files[eid] = (e["parent_id"], name)
            self.extracted += 1
            if e["flags"] & F_CHANGED:  # 8.3 bit 1: extracted as the archive holds it, with a warning
                self.warn(path, "extracted as read: it changed while it was read when the archive was written")
        finally:
            os.close(fd)
            if tmp is not None:
                os.unlink(tmp, dir_fd=pfd)

    def make_dir(self, pfd, e, path, existing):
        eid, name = e["entry_id"], e["name"]
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, O_DIR, dir_fd=pfd)
        try:
            depth = self.dirs[e["parent_id"]][2] + 1
            self.dirs[eid] = (e["parent_id"], name, depth)
            self.set_owner_xattrs(fd, None, None, e, path)
            self.deferred.append((depth, eid, e))
            self.extracted += 1
        finally:
            os.close(fd)

    def make_symlink(self, pfd, e, path, _):
        os.symlink(e["target"], e["name"], dir_fd=pfd)
        self.meta_by_name(pfd, e, path)

    def make_hardlink(self, pfd, e, path, _):
        """A link to the target's inode; no metadata of the link entry is applied: the
        inode keeps the target's mode, owner, times and xattrs (8.7)."""
        sparent, sname = self.files[e["link_id"]]
        sfd = self.dirfd(sparent)
        try:
            os.link(sname, e["name"], src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(sfd)
        self.extracted += 1

    def make_special(self, pfd, e, path, _):
        k, name = e["kind"], e["name"]
        if k == K_FIFO:
            os.mkfifo(name, 0o600, dir_fd=pfd)
        elif k == K_SOCK:
            os.mknod(name, 0o600 | stat.S_IFSOCK, dir_fd=pfd)
        else:
            if not self.as_root:
                self.warn(path, "not extracted: creating a device takes root")
                return
            kind = stat.S_IFCHR if k == K_CHR else stat.S_IFBLK
            os.mknod(name, 0o600 | kind, os.makedev(e["rdev_major"], e["rdev_minor"]), dir_fd=pfd)
        self.meta_by_name(pfd, e, path)

    # -- metadata, in the order of 8.7 ---------------------------------------------------
    def owner(self, e):
        uid, gid = e["uid"], e["gid"]
        if e["user"]:
            try:
                uid = pwd.getpwnam(os.fsdecode(e["user"])).pw_uid
            except (KeyError, ValueError):
                pass
        if e["group"]:
            try:
                gid = grp.getgrnam(os.fsdecode(e["group"])).gr_gid
            except (KeyError, ValueError):
                pass
        return uid, gid

    def set_owner_xattrs(self, fd, pfd, name, e, path):
        """Owner (as root only), then extended attributes, capabilities last. Through
        the handle fd, or (pfd, name) without following a symbolic link."""
        is_dir = e["kind"] == K_DIR
        if self.as_root:
            uid, gid = self.owner(e)
            try:
                if fd is not None:
                    os.fchown(fd, uid, gid)
                else:
                    os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            except OSError as ex:
                self.warn(path, f"owner {uid}:{gid}: {ex.strerror}")
        if self.captured & CAP_XATTRS and e["kind"] != K_SYMLINK:
            # 8.7 "ACLs are exact": drop an access ACL the entry does not record (one
            # inherited from a folder of the destination) and, on a directory, any default
            # ACL now: the recorded one is set with its mode and times, after its contents.
            recorded = {xn for xn, _ in e["xattrs"]}
            drop = ([] if ACL_ACCESS in recorded else [ACL_ACCESS]) + ([ACL_DEFAULT] if is_dir else [])
            for xn in drop:
                try:
                    self.xattr_call(os.removexattr, fd, pfd, name, xn)
                except OSError as ex:
                    if ex.errno not in NO_XATTR_ERRNOS:
                        self.warn(path, f"removing the unrecorded {lossy(xn)!r}: {ex.strerror}")
        xattrs = sorted((x for x in e["xattrs"] if not (is_dir and x[0] == ACL_DEFAULT)),
                        key=lambda x: x[0] == b"security.capability")
        for xn, xv in xattrs:
            try:
                self.xattr_call(os.setxattr, fd, pfd, name, xn, xv)
            except OSError as ex:
                self.warn(path, f"extended attribute {lossy(xn)!r}: {ex.strerror}")

    @staticmethod
    def xattr_call(fn, fd, pfd, name, *args):
        """fn (os.setxattr or os.removexattr) on the entry: through the handle fd, or an
        O_PATH handle on (pfd, name) opened without following a symbolic link (the
        /proc/self/fd name then leads to the entry itself, never to a link's target)."""
        if fd is not None:
            return fn(fd, *args)
        h = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            return fn(f"/proc/self/fd/{h}", *args)
        finally:
            os.close(h)

    def set_default_acl(self, fd, e, path):
        """A directory's recorded default ACL, set with its mode and times, once everything
        inside it is written, so that nothing extracted into it inherits from it (8.7)."""
        for xn, xv in e["xattrs"]:
            if xn == ACL_DEFAULT:
                try:
                    os.setxattr(fd, xn, xv)
                except OSError as ex:
                    self.warn(path, f"extended attribute {lossy(xn)!r}: {ex.strerror}")

    def set_times(self, e, path, set_ns, stat_now):
        """8.7: mtime, and atime when captured, set to the recorded (seconds, nanoseconds)
        exactly, as the integer seconds * 10^9 + ns, which cannot overflow or round; then
        read back from the entry (stat_now), with a warning naming the path, the recorded
        time and the one kept for each that differs. An atime not captured is not set: the
        entry keeps the one extraction gave it (passed back as read: os.utime has no
        UTIME_OMIT). A time the system refuses (OverflowError, OSError) is a warning."""
        mtime = e["mtime_s"] * NSEC + e["mtime_nsec"]
        atime = e["atime_s"] * NSEC + e["atime_nsec"] if self.captured & CAP_ATIME else None
        try:
            before = stat_now()
            set_ns((before.st_atime_ns if atime is None else atime, mtime))
            kept = stat_now()
        except (OSError, OverflowError, ValueError) as ex:
            wanted = f"mtime {civil(e['mtime_s'], e['mtime_nsec'])}"
            if atime is not None:
                wanted += f", atime {civil(e['atime_s'], e['atime_nsec'])}"
            self.warn(path, f"times not set ({wanted}): {getattr(ex, 'strerror', None) or ex}")
            return
        for which, want, got in (("mtime", mtime, kept.st_mtime_ns), ("atime", atime, kept.st_atime_ns)):
            if want is not None and got != want:
                self.warn(path, f"{which} {civil(*divmod(want, NSEC))} recorded, the destination kept "
                                f"{civil(*divmod(got, NSEC))}")

    def mode(self, e, path):
        """The permission bits to set; a mode beyond 0o7777 breaks 8.3 (warned, masked)."""
        if e["mode"] > 0o7777:
            self.warn(path, f"mode 0o{e['mode']:o} has bits beyond 0o7777: only 0o{e['mode'] & 0o7777:o} applied")
        return e["mode"] & 0o7777

    def set_mode_times(self, fd, e, path):
        os.fchmod(fd, self.mode(e, path))
        self.set_times(e, path, lambda t: os.utime(fd, ns=t), lambda: os.fstat(fd))

    def meta_by_name(self, pfd, e, path):
        """Metadata of an entry without a handle of its own (links, fifos, devices, sockets)."""
        name = e["name"]
        self.set_owner_xattrs(None, pfd, name, e, path)
        try:
            if e["kind"] != K_SYMLINK:
                h = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    os.chmod(f"/proc/self/fd/{h}", self.mode(e, path))
                finally:
                    os.close(h)
        except (OSError, ValueError) as ex:
            self.warn(path, f"mode: {getattr(ex, 'strerror', None) or ex}")
        self.set_times(e, path, lambda t: os.utime(name, ns=t, dir_fd=pfd, follow_symlinks=False),
                       lambda: os.stat(name, dir_fd=pfd, follow_symlinks=False))
        self.extracted += 1


# ----------------------------------------------------------------------------
# 9. Commands

def open_or_report(path, args=None):
    """(Archive, None), or (None, the StrataError that stopped it). args.parent: the
    --parent files (15.4 rule 1)."""
    try:
        return Archive(path, parent_files(getattr(args, "parent", None))), None
    except StrataError as e:
        return None, e
    except OSError as e:
        return None, CannotOpen("unreadable", 0, "archive", f"cannot read {path}: {e.strerror}")


def cmd_verify(args):
    try:
        f = open(args.archive, "rb")
        size = os.fstat(f.fileno()).st_size
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as e:
        print(f"strata_ref: cannot read {args.archive}: {e.strerror}", file=sys.stderr)
        if args.json:
            print(json.dumps({"archive": args.archive, "status": "unreadable", "problems": [], "sections": [],
                              "records": 0, "chunks": 0, "verified_bytes": 0, "archive_size": 0,
                              "lost_entries": [], "unreadable_entries": [], "changed_entries": []}))
        return 2
    w = Walker(args.archive, mm, size, parent_files(getattr(args, "parent", None)))
    w.run()
    rep = w.report()
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        for p in rep["problems"]:
            aff = ", ".join(f"section {a['section']}" + (f" {a['path']!r}" if "path" in a else "")
                            + f" bytes {a['start']}..{a['end']}" for a in p["affects"])
            print(f"{p['class']} at offset {p['offset']}: {p['what']}: {p['detail']}" + (f" (affects {aff})" if aff else ""))
        for key, what in (("unreadable_entries", "could not be read when the archive was written"),
                          ("changed_entries", "changed while it was read (kept as read)"),
                          ("lost_entries", "lost in salvage")):
            for x in rep[key]:
                print(f"{what}: section {x['section']}: {x['path']!r}")
        for s in rep["sections"]:       # 7: how many bytes of an image are free, not the source's
            if s.get("used_blocks"):
                print(f"section {s['name']}: used-blocks image, {s['free_bytes']} bytes of free space not stored "
                      f"(they restore as zeros)")
        print(f"{rep['status']}: {rep['records']} records, {rep['chunks']} chunks, "
              f"{rep['verified_bytes']} of {rep['archive_size']} bytes verified, {len(rep['problems'])} problem(s)")
    return {"ok": 0, "damaged": 1, "unsupported": 1}.get(rep["status"], 2)


def lost_ranges(extents):
    """The [start, end] ranges of an image recorded as lost in salvage (7, 11), for
    info: its lost extents (chunk_ref 1), neighbouring ones merged."""
    out = []
    for start, length, ref, _, _ in extents:
        if ref != 1:
            continue
        if out and out[-1][1] == start:
            out[-1][1] = start + length
        else:
            out.append([start, start + length])
    return out


FLAGGED = (("unreadable_entries", "unreadable"), ("changed_entries", "changed_while_read"),
           ("lost_entries", "lost_in_salvage"))


def flagged_entries(ar, sec):
    """For info: the paths of a file tree's entries flagged unreadable or changed
    while read (8.3 bits 2 and 1, regular files) or lost in salvage (bit 3, 11),
    under the keys of FLAGGED, and their counts (conformance.md); the lists are
    None when the entries cannot be read."""
    try:
        listed = tree_listing(ar.entries(sec), sec["begin"]["captured"])[0]
    except StrataError as e:
        print(f"strata_ref: section {sec['name']!r}: {e}", file=sys.stderr)
        return {key: None for key, _ in FLAGGED}
    out = {key: [o["path"] for o in listed if flag in o["flags"]] for key, flag in FLAGGED}
    out["flagged_entries"] = {flag: len(out[key]) for key, flag in FLAGGED}
    return out


def cmd_info(args):
    ar, err = open_or_report(args.archive, args)
    if ar is None:
        print(f"strata_ref: {err}", file=sys.stderr)
        if isinstance(err, CannotOpen):
            return 2
        # The index is damaged: list what a walk of the records finds (10.1, 11).
        print("strata_ref: random access failed; walking the records instead", file=sys.stderr)
        with open(args.archive, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            w = Walker(args.archive, mm, size, parent_files(getattr(args, "parent", None)))
            w.run()
        if w.tag is None:
            return 2
        secs = []
        for s in w.sections:
            l = s.listing()
            if s.kind == "image":
                img = {k: l[k] for k in ("logical_size", "data_bytes", "lost_bytes", "free_bytes", "used_blocks")}
                img["lost_ranges"] = lost_ranges(s.extents)    # those the walk met
                secs.append({"kind": "image", "name": s.name, "image": img})
            else:
                paths = {key: [lossy(p) for x, p in getattr(w, key) if x is s] for key, _ in FLAGGED}
                secs.append({"kind": "files", "name": s.name, **paths,
                             "flagged_entries": {flag: len(paths[key]) for key, flag in FLAGGED}})
        out = {"archive": args.archive, "archive_size": size, "sections": secs, "complete": False}
    else:
        h, secs = ar.hdr, []
        for s in ar.sections:
            if s["kind"] == "image":
                b, e, free = s["begin"], s["end"], s["free_bytes"]
                secs.append({"kind": "image", "name": s["name"], "image": {
                    "logical_size": e["logical_size"], "sector_size": b["sector_size"], "chunk_size": b["chunk_size"],
                    "data_bytes": e["data_bytes"],
                    "zero_bytes": e["logical_size"] - e["data_bytes"] - e["lost_bytes"] - free,
                    "lost_bytes": e["lost_bytes"], "free_bytes": free, "used_blocks": b["used_blocks"],
                    "extents": e["extent_count"], "chunks": e["chunk_count"],
                    "stored_bytes": e["chunk_bytes"], "lost_ranges": lost_ranges(s["extents"])}})
            else:
                b, e = s["begin"], s["end"]
                secs.append({"kind": "files", "name": s["name"], "files": {
                    "chunk_size": b["chunk_size"], "captured": b["captured"], "entries": e["entry_count"],
                    "regular_files": e["file_count"], "directories": e["directory_count"],
                    "content_bytes": e["content_bytes"], "chunks": e["chunk_count"], "stored_bytes": e["chunk_bytes"],
                    "extents": e["extent_count"], "groups": len(s["index"]["rows"])},
                    **flagged_entries(ar, s)})
        out = {"archive": args.archive, "format_version": f"{h['version_major']}.{h['version_minor']}",
               "uuid": show_uuid(h["uuid"]), "created_ns": h["created_ns"],
               "writer": h["writer"], "archive_size": ar.size,
               "features": {"incompatible": h["incompatible"], "compatible": h["compatible"], "autoclear": h["autoclear"]},
               "sections": secs}
        if ar.chained:                  # 15.2: the ancestors (info opens only those prefixed tables need, 15.4)
            try:
                chain = ar.chain()
                out["chain"] = {"depth": chain["depth"], "id_scheme": chain["id_scheme"], "ancestors": [
                    {"uuid": show_uuid(a["uuid"]), "name": lossy(a["name"]), "name_hex": a["name"].hex(),
                     "archive_length": a["archive_length"], "binding": a["binding"].hex()}
                    for a in chain["ancestors"]]}
            except StrataError as e:
                print(f"strata_ref: the chain cannot be read: {e}", file=sys.stderr)
                out["chain"] = None
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for s in out["sections"]:
            detail = s.get("image") or s.get("files") or {}
            print(f"{s['kind']:6} {s['name']!s:24} " + " ".join(f"{k}={v}" for k, v in detail.items()))
            for key, what in (("unreadable_entries", "could not be read"), ("changed_entries", "changed while read"),
                              ("lost_entries", "lost in salvage")):
                for path in s.get(key) or []:
                    print(f"       {what}: {path!r}")
    return 0


def cmd_restore(args):
    """Exit 0, or 2 when the restore fails (nothing usable: no file at DEST), as
    conformance.md says. Lost extents do not fail it: they are written as zeros and
    named on stderr, and the exit status stays 0 (7, 11). Free extents of a used-blocks
    section are holes too (10.2): the bytes they hold are counted on stderr (7)."""
    ar, err = open_or_report(args.archive, args)
    if ar is None:
        print(f"strata_ref: {err}", file=sys.stderr)
        return 2
    sec = next((s for s in ar.sections if s["kind"] == "image" and s["name"] == args.image), None)
    if sec is None:
        print(f"strata_ref: no image section named {args.image!r}", file=sys.stderr)
        return 2
    size, tmp = sec["end"]["logical_size"], None
    try:
        if args.dest == "-":
            out, seekable = sys.stdout.buffer, False
        elif os.path.exists(args.dest) and stat.S_ISBLK(os.stat(args.dest).st_mode):
            out, seekable = open(args.dest, "r+b"), False      # a device: write every byte
            if out.seek(0, 2) < size:
                raise StrataError("limit-exceeded", 0, "destination", "the device is smaller than the image")
            out.seek(0)
        elif os.path.isdir(args.dest):
            raise StrataError("unreadable", 0, "destination", f"{args.dest} is a directory")
        else:
            d = os.path.dirname(os.path.abspath(args.dest))
            tmp = os.path.join(d, ".strata-restore-" + secrets.token_hex(8))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            out, seekable = os.fdopen(fd, "wb"), True
        blakes = {}
        for start, length, ref, coff, _ in sec["extents"]:
            if ref >= 128:              # raw bytes chunk_offset .. chunk_offset + length (10.1 step 4)
                fields, raw = ar.chunk(ref, "IMAGE_INDEX.chunk_ref")
                if not extent_fits(coff, length, fields["raw_length"]):    # 7.2 rule 5
                    raise StrataError("extent-map", ref, "CHUNK.raw_length",
                                      f"{fields['raw_length']}, the extent reads chunk_offset {coff} + length {length}")
                blakes[ref] = fields["blake3"]
                if seekable:
                    out.seek(start)
                out.write(memoryview(raw)[coff:coff + length])
            else:                       # zero, lost, free: holes in a file, zeros elsewhere (10.2)
                if not seekable:
                    for o in range(0, length, len(ZEROS)):
                        out.write(memoryview(ZEROS)[:min(len(ZEROS), length - o)])
        digest = map_digest(sec["extents"], blakes.__getitem__)     # 7.3: from what was written
        if digest != sec["end"]["map_blake3"]:
            raise StrataError("index-mismatch", 0, "IMAGE_END.map_blake3",
                              f"{sec['end']['map_blake3'].hex()}, the restored map gives {digest.hex()}")
        if seekable:
            out.truncate(size)
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.replace(tmp, args.dest)
            tmp = None
        else:
            out.flush()
        for a, b in lost_ranges(sec["extents"]):   # recorded as lost: not a failure (7)
            print(f"strata_ref: note: image bytes {a}..{b} are recorded as lost; restored as zeros", file=sys.stderr)
        if sec["free_bytes"]:           # 7: say how many bytes are free, not the source's
            print(f"strata_ref: note: used-blocks image: {sec['free_bytes']} bytes of free space were not stored; "
                  f"restored as zeros (holes)", file=sys.stderr)
    except StrataError as e:
        print(f"strata_ref: restore failed: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"strata_ref: restore failed: {e}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            os.unlink(tmp)
    return 0


def cmd_list(args):
    ar, err = open_or_report(args.archive, args)
    if ar is None:
        print(f"strata_ref: {err}", file=sys.stderr)
        return 2 if isinstance(err, CannotOpen) else 1
    secs = [s for s in ar.sections if s["kind"] == "files" and args.files in (None, s["name"])]
    if args.files is not None and not secs:
        print(f"strata_ref: no file-tree section named {args.files!r}", file=sys.stderr)
        return 1
    out, rc = [], 0
    for s in secs:
        try:
            entries, issues = tree_listing(ar.entries(s), s["begin"]["captured"])
        except StrataError as e:
            print(f"strata_ref: section {s['name']!r}: {e}", file=sys.stderr)
            return 1
        for path, d in issues:
            print(f"strata_ref: section {s['name']!r}: {lossy(path)!r}: {d}", file=sys.stderr)
        rc = 1 if issues else rc
        out.append({"kind": "files", "name": s["name"], "entries": entries})
    if args.json:
        print(json.dumps({"archive": args.archive, "sections": out}, indent=2))
    else:
        for s in out:
            for e in s["entries"]:
                extra = f" -> {e['target']}" if "target" in e else (f" link to {e['link']}" if "link" in e else "")
                print(f"{e['kind']:10} {e['mode']:05o} {e['size']:>12} {e['path'] or '.'}{extra}")
    return rc


def cmd_cat(args):
    """conformance.md `cat ARCHIVE --files NAME PATH`: the content of the regular file
    (or of the file a hard link shares an inode with) at PATH, found by the lookup of
    8.5 (FILES_INDEX, then one FILES_DIR and one FILES_ENTRIES record per component)
    and read as 10.1 step 5 says: its extents located through its group's extent list,
    every chunk read and checked whole (section 6), holes as zeros, and the file's
    digest checked before a byte is written. Exit 0; 2 and nothing on standard output
    when PATH names no such entry or the content cannot be given whole and checked.
    Memory: a first pass hashes the content (at most two decoded chunks held), a
    second writes it."""
    ar, err = open_or_report(args.archive, args)
    if ar is None:
        print(f"strata_ref: {err}", file=sys.stderr)
        return 2
    sec = next((s for s in ar.sections if s["kind"] == "files" and s["name"] == args.files), None)
    if sec is None:
        print(f"strata_ref: no file-tree section named {args.files!r}", file=sys.stderr)
        return 2
    path = os.fsencode(args.path)
    try:
        found = ar.lookup(sec, path)
        if found is None:
            print(f"strata_ref: {lossy(path)!r}: no such entry in section {args.files!r}", file=sys.stderr)
            return 2
        g, e = found
        if e["kind"] == K_HARDLINK:     # the file it shares an inode with: an earlier regular file
            lid = e["link_id"]
            t = ar.entry_by_id(sec, lid) if lid < e["entry_id"] else None
            if t is None or t[1]["kind"] != K_FILE:
                print(f"strata_ref: {lossy(path)!r}: a hard link to entry {lid}, which is not an earlier "
                      f"regular file [record-malformed]", file=sys.stderr)
                return 2
            g, e = t
        elif e["kind"] != K_FILE:
            print(f"strata_ref: {lossy(path)!r} is a {KIND_NAMES.get(e['kind'], 'entry')}, not a regular file",
                  file=sys.stderr)
            return 2
        if e["flags"] & (F_LOST | F_UNREAD):
            why = "was lost in salvage" if e["flags"] & F_LOST else "could not be read when the archive was written"
            print(f"strata_ref: {lossy(path)!r}: its content {why}", file=sys.stderr)
            return 2
        size = e["size"]
        extents = ar.file_extents(sec, g, e)
        errs = file_extent_errors(extents, size)
        if errs:
            raise StrataError("extent-map", extents[0][4] if extents else g["offset"], "FILES_EXTENTS", errs[0])
        for foff, length, ref, coff, rec in extents:
            if ref < 128:
                raise StrataError("record-malformed", rec, "FILES_EXTENTS.chunk_ref", f"{ref}: not a record offset")

        def pieces():
            for foff, length, ref, coff, rec in extents:
                fields, raw = ar.chunk(ref, "FILES_EXTENTS.chunk_ref")
                if coff + length > len(raw):
                    raise StrataError("extent-map", ref, "FILES_EXTENTS.chunk_offset",
                                      f"the extent at file offset {foff} runs past the {len(raw)} bytes of its chunk")
                yield foff, memoryview(raw)[coff:coff + length]
        fd = FileDigest(size)
        for foff, data in pieces():
            fd.data(foff, data)
        digest = fd.digest()
        if digest != e["digest"]:
            raise StrataError("chunk-corrupt", g["offset"], f"FILES_ENTRIES entry {e['entry_id']}.digest",
                              f"stored {e['digest'].hex()}, the content gives {digest.hex()}")
        out, pos = sys.stdout.buffer, 0

        def zeros(n):
            for o in range(0, n, len(ZEROS)):
                out.write(memoryview(ZEROS)[:min(len(ZEROS), n - o)])
        for foff, data in pieces():     # the same chunks again: checked whole once more
            zeros(foff - pos)
            out.write(data)
            pos = foff + len(data)
        zeros(size - pos)
        out.flush()
    except StrataError as ex:
        print(f"strata_ref: cat {lossy(path)!r} failed: {ex}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


def cmd_extract(args):
    def fail(reason, rc):
        print(f"strata_ref: {reason}", file=sys.stderr)
        if args.json:
            print(json.dumps({"refused": [], "warnings": [{"path": "", "path_hex": "", "reason": reason}]}, indent=2))
        return rc
    ar, err = open_or_report(args.archive, args)
    if ar is None:
        return fail(str(err), 2 if isinstance(err, CannotOpen) else 1)
    sec = next((s for s in ar.sections if s["kind"] == "files" and s["name"] == args.files), None)
    if sec is None:
        return fail(f"no file-tree section named {args.files!r}", 1)
    try:
        entries = ar.entries(sec)
    except StrataError as e:
        return fail(f"section {args.files!r}: {e}", 1)
    ex = Extractor(ar, sec, entries, args.dest)
    try:
        ex.run()
    except OSError as e:
        return fail(f"{args.dest}: {e}", 1)
    if args.json:
        print(json.dumps({"refused": ex.refused, "warnings": ex.warnings, "entries": ex.extracted}, indent=2))
    else:
        print(f"{ex.extracted} entries extracted, {len(ex.refused)} refused, {len(ex.warnings)} warning(s)")
    return 1 if ex.refused or ex.warnings else 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="strata_ref.py", description="Independent reader for Strata archives (1.0-draft).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info", help="the sections, from the index")
    p.add_argument("archive")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("verify", help="walk and check every record")
    p.add_argument("archive")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("restore", help="restore one image")
    p.add_argument("archive")
    p.add_argument("--image", required=True)
    p.add_argument("dest", help="file path, block device, or - for standard output")
    p = sub.add_parser("list", help="list the entries of file trees")
    p.add_argument("archive")
    p.add_argument("--files", help="the file-tree section (default: every one)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("cat", help="write one file of a file tree to standard output")
    p.add_argument("archive")
    p.add_argument("--files", required=True)
    p.add_argument("path", help="the file's path in the section, components joined by '/'")
    p = sub.add_parser("extract", help="extract a file tree into DEST")
    p.add_argument("archive")
    p.add_argument("--files", required=True)
    p.add_argument("dest")
    p.add_argument("--json", action="store_true")
    for sp in sub.choices.values():     # 15.4 rule 1: files named for ancestors, matched by UUID
        sp.add_argument("--parent", action="append", metavar="PATH",
                        help="an ancestor of an incremental archive, found by its UUID (repeatable)")
    args = ap.parse_args(argv)
    return {"info": cmd_info, "verify": cmd_verify, "restore": cmd_restore,
            "list": cmd_list, "cat": cmd_cat, "extract": cmd_extract}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
