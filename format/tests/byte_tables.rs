//! The byte tables of `spec/FORMAT.md`, checked against the code.
//!
//! For each fixed structure the expected bytes are written out here from the
//! specification's table, field by field at the offsets the table gives (never
//! by calling an encoder), then compared with what the crate encodes; the same
//! bytes are decoded back; and each rule that the structure alone decides is
//! broken once, asserting the error's class (`spec/FORMAT.md` section 12), not
//! its text. CRCs are computed here with the `crc32c` crate over the bytes the
//! specification says they cover.

use strata_format::{ErrorClass, FormatError};

/// Writes `bytes` at offset `at` of `buf`, as one row of a byte table.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The class of the error a check returned (the check must fail).
fn class<T: std::fmt::Debug>(result: Result<T, FormatError>) -> ErrorClass {
    result.expect_err("the check must refuse this").class
}

const UUID: [u8; 16] = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8];
/// The archive tag: bytes 16..24 of the header, the UUID's first 8 bytes.
const TAG: [u8; 8] = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8];

#[test]
fn crc32c_is_the_castagnoli_crc_of_section_1() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(strata_format::crc32c(b"123456789"), 0xE306_9283);
}

mod archive_header {
    use super::*;
    use strata_format::{ArchiveHeader, Features};

    const WRITER: &str = "strata-test 1.0";

    /// Section 3: `header_crc` is the CRC-32C of the header with bytes
    /// 124..128 taken as zero.
    fn reseal(bytes: &mut [u8]) {
        bytes[124..128].fill(0);
        let crc = crc32c::crc32c(bytes);
        put(bytes, 124, &crc.to_le_bytes());
    }

    /// The header of section 3, one table row at a time.
    fn spec_bytes(compatible: u64, autoclear: u64, created_ns: i64) -> [u8; 128] {
        let mut b = [0u8; 128];
        put(&mut b, 0, &[0x89, 0x53, 0x54, 0x52, 0x41, 0x54, 0x41, 0x0A]); // magic
        put(&mut b, 8, &1u16.to_le_bytes()); // version_major
        put(&mut b, 10, &0u16.to_le_bytes()); // version_minor
        put(&mut b, 12, &128u32.to_le_bytes()); // header_length
        put(&mut b, 16, &UUID); // archive_uuid
        put(&mut b, 32, &0u64.to_le_bytes()); // incompatible_features
        put(&mut b, 40, &compatible.to_le_bytes()); // compatible_features
        put(&mut b, 48, &autoclear.to_le_bytes()); // autoclear_features
        put(&mut b, 56, &created_ns.to_le_bytes()); // created_ns, i64
        put(&mut b, 64, WRITER.as_bytes()); // writer, zero padded to 32
                                            // 96..124 reserved: zero.
        reseal(&mut b);
        b
    }

    fn value(compatible: u64, autoclear: u64, created_ns: i64, header_crc: u32) -> ArchiveHeader {
        let mut writer = [0u8; 32];
        writer[..WRITER.len()].copy_from_slice(WRITER.as_bytes());
        ArchiveHeader {
            magic: *b"\x89STRATA\n",
            version_major: 1,
            version_minor: 0,
            header_length: 128,
            archive_uuid: UUID,
            incompatible_features: 0,
            compatible_features: compatible,
            autoclear_features: autoclear,
            created_ns,
            writer,
            reserved: [0; 28],
            header_crc,
        }
    }

    fn crc_of(bytes: &[u8; 128]) -> u32 {
        u32::from_le_bytes(bytes[124..128].try_into().unwrap())
    }

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        let spec = spec_bytes(0x0807_0605_0403_0201, 0x1122_3344_5566_7788, -1_234_567_890_123);
        let header = value(0x0807_0605_0403_0201, 0x1122_3344_5566_7788, -1_234_567_890_123, crc_of(&spec));
        assert_eq!(ArchiveHeader::SIZE, 128);
        assert_eq!(header.encode(), spec);
        assert_eq!(ArchiveHeader::decode(&spec), header);
        assert_eq!(header.archive_tag(), TAG);
        header.validate(&spec, &[]).expect("the table's header is valid");
    }

    #[test]
    fn new_writes_the_table_with_its_crc() {
        let spec = spec_bytes(0, 0, 1_700_000_000_000_000_000);
        assert_eq!(ArchiveHeader::new(UUID, 1_700_000_000_000_000_000, WRITER).encode(), spec);
        assert_eq!(ArchiveHeader::compute_crc(&spec, &[]), crc_of(&spec));
    }

    fn check(bytes: &[u8; 128]) -> Result<(), FormatError> {
        ArchiveHeader::decode(bytes).validate(bytes, &[])
    }

    #[test]
    fn a_wrong_magic_is_not_strata() {
        let mut b = spec_bytes(0, 0, 0);
        b[7] = b'\r';
        reseal(&mut b);
        assert_eq!(class(check(&b)), ErrorClass::NotStrata);
        assert!(!ArchiveHeader::has_magic(&b));
        assert!(!ArchiveHeader::has_magic(&spec_bytes(0, 0, 0)[..7]), "a prefix of the magic is not the magic");
    }

    #[test]
    fn a_header_length_out_of_rule_is_a_bad_header() {
        for length in [0u32, 120, 127, 129, 132, 4097, 4104, u32::MAX] {
            let mut b = spec_bytes(0, 0, 0);
            put(&mut b, 12, &length.to_le_bytes());
            reseal(&mut b);
            assert_eq!(class(check(&b)), ErrorClass::BadHeader, "header_length {length}");
            assert_eq!(class(ArchiveHeader::decode(&b).validate_length()), ErrorClass::BadHeader);
        }
    }

    #[test]
    fn an_extension_area_is_covered_by_the_crc() {
        let mut b = [0u8; 136];
        b[..128].copy_from_slice(&spec_bytes(0, 0, 0));
        put(&mut b, 12, &136u32.to_le_bytes());
        put(&mut b, 128, b"extended");
        reseal(&mut b);
        let fixed: [u8; 128] = b[..128].try_into().unwrap();
        ArchiveHeader::decode(&fixed).validate(&fixed, &b[128..]).expect("header_length 136 with its extension");
        let mut other = b;
        other[135] ^= 1;
        let err = ArchiveHeader::decode(&fixed).validate(&fixed, &other[128..]);
        assert_eq!(class(err), ErrorClass::BadHeader);
        let mut b = spec_bytes(0, 0, 0);
        put(&mut b, 12, &4096u32.to_le_bytes());
        ArchiveHeader::decode(&b).validate_length().expect("4096 is allowed");
    }

    #[test]
    fn a_crc_mismatch_is_a_bad_header() {
        let mut b = spec_bytes(0, 0, 0);
        b[40] ^= 1;
        assert_eq!(class(check(&b)), ErrorClass::BadHeader);
    }

    #[test]
    fn another_major_version_is_unsupported_but_only_after_the_crc() {
        let mut b = spec_bytes(0, 0, 0);
        put(&mut b, 8, &2u16.to_le_bytes());
        assert_eq!(class(check(&b)), ErrorClass::BadHeader, "a damaged version reads as damage");
        reseal(&mut b);
        assert_eq!(class(check(&b)), ErrorClass::UnsupportedVersion);
    }

    #[test]
    fn any_minor_version_is_accepted() {
        let mut b = spec_bytes(0, 0, 0);
        put(&mut b, 10, &7u16.to_le_bytes());
        reseal(&mut b);
        check(&b).expect("minor versions only add what is safe to ignore");
    }

    #[test]
    fn a_reserved_byte_set_is_a_bad_header() {
        for at in [96, 110, 123] {
            let mut b = spec_bytes(0, 0, 0);
            b[at] = 1;
            reseal(&mut b);
            assert_eq!(class(check(&b)), ErrorClass::BadHeader, "reserved byte {at}");
        }
    }

    #[test]
    fn unimplemented_incompatible_bits_are_unsupported() {
        for (bits, ok) in [(1u64 << 0, false), (1 << 1, true), (1 << 2, false), (1 << 63, false)] {
            let mut b = spec_bytes(0, 0, 0);
            put(&mut b, 32, &bits.to_le_bytes());
            reseal(&mut b);
            match ok {
                true => check(&b).expect("bit 1, incremental, is implemented"),
                false => assert_eq!(class(check(&b)), ErrorClass::UnsupportedFeature, "bits {bits:#x}"),
            }
        }
        assert_eq!(Features::INCOMPAT_ENCRYPTION, 1);
        assert_eq!(Features::INCOMPAT_INCREMENTAL, 2);
        assert_eq!(Features::incompatible_name(0), Some("encryption"));
        assert_eq!(Features::incompatible_name(1), Some("incremental"));
    }

    #[test]
    fn the_writer_text_ends_at_its_first_zero() {
        let mut b = spec_bytes(0, 0, 0);
        put(&mut b, 64 + WRITER.len() + 1, b"ignored");
        reseal(&mut b);
        let header = ArchiveHeader::decode(&b);
        check(&b).expect("bytes after the first zero are not checked");
        assert_eq!(header.writer_name(), WRITER);
        put(&mut b, 64, &[b'x'; 32]);
        assert_eq!(ArchiveHeader::decode(&b).writer_name(), "x".repeat(32));
    }
}

mod record_header {
    use super::*;
    use strata_format::{RecordFlags, RecordHeader, RecordType};

    /// Section 5: `header_crc` is the CRC-32C of bytes 0..28.
    fn reseal(b: &mut [u8; 32]) {
        let crc = crc32c::crc32c(&b[..28]);
        put(b, 28, &crc.to_le_bytes());
    }

    fn spec_bytes(record_type: u16, flags: u16, body: &[u8]) -> [u8; 32] {
        let mut b = [0u8; 32];
        put(&mut b, 0, &[0xD3, 0x52, 0x45, 0x43]); // magic
        put(&mut b, 4, &record_type.to_le_bytes());
        put(&mut b, 6, &flags.to_le_bytes());
        put(&mut b, 8, &TAG);
        put(&mut b, 16, &(body.len() as u64).to_le_bytes());
        put(&mut b, 24, &crc32c::crc32c(body).to_le_bytes());
        reseal(&mut b);
        b
    }

    fn check(b: &[u8; 32]) -> Result<Option<RecordType>, FormatError> {
        RecordHeader::decode(b).validate(b, TAG)
    }

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        let body: Vec<u8> = (0..96u8).collect();
        let spec = spec_bytes(0x0012, 0, &body);
        let header = RecordHeader::new(RecordType::ImageEnd, 0, TAG, &body);
        assert_eq!(RecordHeader::SIZE, 32);
        assert_eq!(header.encode(), spec);
        let value = RecordHeader {
            magic: *b"\xd3REC",
            record_type: 0x0012,
            flags: 0,
            archive_tag: TAG,
            body_length: 96,
            body_crc: crc32c::crc32c(&body),
            header_crc: u32::from_le_bytes(spec[28..32].try_into().unwrap()),
        };
        assert_eq!(RecordHeader::decode(&spec), value);
        assert_eq!(check(&spec), Ok(Some(RecordType::ImageEnd)));
        assert!(RecordHeader::is_intact(&spec));
        assert!(RecordHeader::looks_valid(&spec, TAG));
        assert_eq!(RecordHeader::compute_crc(&spec), crc32c::crc32c(&spec[..28]));
    }

    #[test]
    fn the_type_codes_and_maximum_lengths_are_those_of_table_5_1() {
        let table: [(u16, &str, u64); 15] = [
            (0x0001, "CHUNK", 40 + 16_777_216),
            (0x0002, "CHAIN", 20_464),
            (0x0010, "IMAGE_BEGIN", 24 + 255),
            (0x0011, "IMAGE_EXTENTS", 16 + 65_536 * 32),
            (0x0012, "IMAGE_END", 96),
            (0x0013, "IMAGE_INDEX", u64::MAX),
            (0x0020, "FILES_BEGIN", 24 + 255),
            (0x0021, "FILES_EXTENTS", 24 + 65_536 * 36),
            (0x0022, "FILES_ENTRIES", 64 << 20),
            (0x0023, "FILES_END", 72),
            (0x0024, "FILES_DIR", u64::MAX),
            (0x0025, "FILES_INDEX", u64::MAX),
            (0x00F0, "ARCHIVE_INDEX", 48 + 65_536 * 32),
            (0x00F1, "CHAIN_INDEX", u64::MAX),
            (0x00FF, "TRAILER", 32),
        ];
        for (code, name, max) in table {
            let t = RecordType::from_code(code).unwrap_or_else(|| panic!("{code:#06x} is {name}"));
            assert_eq!((t.code(), t.name(), t.max_body_length()), (code, name, max));
        }
        for code in [0x0000, 0x0003, 0x000F, 0x0014, 0x0026, 0x002F, 0x00EF, 0x00F2, 0x00FE, 0x0100, 0xFFFF] {
            assert_eq!(RecordType::from_code(code), None, "{code:#06x} is unassigned");
        }
        assert_eq!((RecordFlags::ANCILLARY, RecordFlags::ZSTD), (1, 2));
    }

    #[test]
    fn a_wrong_magic_is_a_record_checksum() {
        let mut b = spec_bytes(0x0012, 0, &[0; 96]);
        b[3] = 0x44;
        reseal(&mut b);
        assert_eq!(class(check(&b)), ErrorClass::RecordChecksum);
        assert!(!RecordHeader::is_intact(&b));
    }

    #[test]
    fn a_header_crc_mismatch_is_a_record_checksum() {
        for at in [4, 8, 16, 24, 28] {
            let mut b = spec_bytes(0x0012, 0, &[0; 96]);
            b[at] ^= 0x10;
            assert_eq!(class(check(&b)), ErrorClass::RecordChecksum, "byte {at}");
        }
    }

    #[test]
    fn another_archives_tag_is_malformed() {
        let b = spec_bytes(0x0012, 0, &[0; 96]);
        assert_eq!(class(RecordHeader::decode(&b).validate(&b, [0; 8])), ErrorClass::RecordMalformed);
        assert!(!RecordHeader::looks_valid(&b, [0; 8]));
        assert!(RecordHeader::is_intact(&b));
    }

    #[test]
    fn reserved_flag_bits_are_malformed() {
        for bit in (2..16).filter(|&bit| bit != 3) {
            let b = spec_bytes(0x0012, 1 << bit, &[0; 96]);
            assert_eq!(class(check(&b)), ErrorClass::RecordMalformed, "flag bit {bit}");
        }
    }

    /// Bit 3 `PREFIXED` (FORMAT.md 5.3): only with `ZSTD`, on any type, and
    /// never on a `CHAIN_INDEX`; with `ZSTD` on a table it passes the header.
    #[test]
    fn prefixed_needs_zstd_and_a_table_other_than_the_chain_index() {
        const PREFIXED: u16 = 1 << 3;
        assert_eq!(RecordFlags::PREFIXED, PREFIXED);
        for code in [0x0021u16, 0x0022, 0x0024, 0x0011, 0x1234] {
            let b = spec_bytes(code, 1 | PREFIXED, b"note");
            assert_eq!(class(check(&b)), ErrorClass::RecordMalformed, "{code:#06x}: PREFIXED without ZSTD");
        }
        for code in [0x0021u16, 0x0022, 0x0024, 0x0025, 0x0011, 0x0013] {
            let b = spec_bytes(code, 2 | PREFIXED, b"note");
            assert!(check(&b).is_ok(), "{code:#06x}: a prefixed table passes the header");
        }
        let b = spec_bytes(0x00F1, 2 | PREFIXED, b"note");
        assert_eq!(class(check(&b)), ErrorClass::RecordMalformed, "a prefixed CHAIN_INDEX");
        let b = spec_bytes(0x0012, 2 | PREFIXED, &[0; 96]);
        assert_eq!(class(check(&b)), ErrorClass::RecordMalformed, "IMAGE_END is never compressed");
        let b = spec_bytes(0x1234, PREFIXED, b"note");
        assert_eq!(class(check(&b)), ErrorClass::UnknownRecord, "the type is checked first");
        let b = spec_bytes(0x1234, 1 | 2 | PREFIXED, b"note");
        assert_eq!(check(&b), Ok(None), "an unknown ancillary prefixed body is skipped");
    }

    #[test]
    fn an_unknown_type_is_unknown_unless_ancillary() {
        for code in [0x0000u16, 0x0003, 0x0026, 0x1234] {
            let b = spec_bytes(code, 0, b"note");
            assert_eq!(class(check(&b)), ErrorClass::UnknownRecord, "{code:#06x}");
            let b = spec_bytes(code, 1, b"note");
            assert_eq!(check(&b), Ok(None), "{code:#06x} ancillary is skipped");
            let b = spec_bytes(code, 1 | 2, b"note");
            assert_eq!(check(&b), Ok(None), "ZSTD on an unknown ancillary type is allowed");
        }
        // ANCILLARY is ignored on a known type.
        assert_eq!(check(&spec_bytes(0x0012, 1, &[0; 96])), Ok(Some(RecordType::ImageEnd)));
    }

    #[test]
    fn zstd_on_a_type_never_compressed_is_malformed() {
        for code in [0x0001u16, 0x0002, 0x0010, 0x0012, 0x0020, 0x0023, 0x00F0, 0x00FF] {
            let b = spec_bytes(code, 2, &[0; 8]);
            assert_eq!(class(check(&b)), ErrorClass::RecordMalformed, "{code:#06x}");
        }
        for code in [0x0011u16, 0x0013, 0x0021, 0x0022, 0x0024, 0x0025, 0x00F1] {
            let b = spec_bytes(code, 2, &[0; 8]);
            assert!(check(&b).is_ok(), "{code:#06x} may be compressed");
        }
    }

    #[test]
    fn a_body_over_the_types_maximum_is_limit_exceeded() {
        for (code, max) in [(0x0012u16, 96u64), (0x0023, 72), (0x00FF, 32), (0x0001, 40 + (1 << 24)), (0x0002, 20_464)]
        {
            let mut b = spec_bytes(code, 0, &[]);
            put(&mut b, 16, &max.to_le_bytes());
            reseal(&mut b);
            assert!(check(&b).is_ok(), "{code:#06x} at its maximum {max}");
            put(&mut b, 16, &(max + 1).to_le_bytes());
            reseal(&mut b);
            assert_eq!(class(check(&b)), ErrorClass::LimitExceeded, "{code:#06x} over {max}");
        }
    }
}

mod chunk_header {
    use super::*;
    use strata_format::{ChunkEncoding, ChunkHeader};

    fn spec_bytes(raw_length: u32, encoding: u8) -> [u8; 40] {
        let mut b = [0u8; 40];
        put(&mut b, 0, &[0x5a; 32]); // blake3
        put(&mut b, 32, &raw_length.to_le_bytes());
        put(&mut b, 36, &[encoding]);
        // 37..40 reserved: zero.
        b
    }

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        let value = ChunkHeader { blake3: [0x5a; 32], raw_length: 0x0001_0203, encoding: 1, reserved: [0; 3] };
        let spec = spec_bytes(0x0001_0203, 1);
        assert_eq!(ChunkHeader::SIZE, 40);
        assert_eq!(value.encode(), spec);
        assert_eq!(ChunkHeader::decode(&spec), value);
        assert_eq!(value.validate(100), Ok(ChunkEncoding::Zstd));
        assert_eq!((ChunkEncoding::Raw.code(), ChunkEncoding::Zstd.code()), (0, 1));
    }

    fn check(b: &[u8; 40], stored: u64) -> Result<ChunkEncoding, FormatError> {
        ChunkHeader::decode(b).validate(stored)
    }

    #[test]
    fn a_raw_length_of_zero_is_malformed() {
        assert_eq!(class(check(&spec_bytes(0, 0), 0)), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_raw_length_over_16_mib_is_limit_exceeded_whatever_the_stored_length() {
        assert_eq!(check(&spec_bytes(1 << 24, 0), 1 << 24), Ok(ChunkEncoding::Raw));
        assert_eq!(class(check(&spec_bytes((1 << 24) + 1, 0), 5)), ErrorClass::LimitExceeded);
        assert_eq!(class(check(&spec_bytes(u32::MAX, 9), 5)), ErrorClass::LimitExceeded);
    }

    #[test]
    fn reserved_bytes_set_are_malformed() {
        for at in 37..40 {
            let mut b = spec_bytes(5, 0);
            b[at] = 1;
            assert_eq!(class(check(&b, 5)), ErrorClass::RecordMalformed, "byte {at}");
        }
    }

    #[test]
    fn an_unknown_encoding_is_malformed() {
        for encoding in [2u8, 3, 0xFF] {
            assert_eq!(class(check(&spec_bytes(5, encoding), 5)), ErrorClass::RecordMalformed);
        }
    }

    #[test]
    fn a_stored_length_that_breaks_its_encodings_rule_is_malformed() {
        // raw: exactly raw_length bytes.
        assert_eq!(class(check(&spec_bytes(5, 0), 4)), ErrorClass::RecordMalformed);
        assert_eq!(class(check(&spec_bytes(5, 0), 6)), ErrorClass::RecordMalformed);
        // zstd: fewer than raw_length bytes.
        assert_eq!(check(&spec_bytes(5, 1), 4), Ok(ChunkEncoding::Zstd));
        assert_eq!(class(check(&spec_bytes(5, 1), 5)), ErrorClass::RecordMalformed);
    }
}

mod image_begin {
    use super::*;
    use strata_format::image::UNKNOWN_SIZE;
    use strata_format::{ImageBegin, ImageFlags};

    fn spec_bytes(sector_size: u32, logical_size: u64, chunk_size: u32, flags: u16, name: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 24 + name.len()];
        put(&mut b, 0, &3u32.to_le_bytes()); // section_id
        put(&mut b, 4, &sector_size.to_le_bytes());
        put(&mut b, 8, &logical_size.to_le_bytes());
        put(&mut b, 16, &chunk_size.to_le_bytes());
        put(&mut b, 20, &(name.len() as u16).to_le_bytes()); // name_length
        put(&mut b, 22, &flags.to_le_bytes());
        put(&mut b, 24, name);
        b
    }

    fn value(logical_size: u64, flags: u16) -> ImageBegin {
        ImageBegin {
            section_id: 3,
            sector_size: 4096,
            logical_size,
            chunk_size: 1 << 20,
            flags,
            name: "disk-ä".as_bytes().to_vec(),
        }
    }

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        for (size, flags) in [(0x0102_0304_0506_0708u64, 0u16), (UNKNOWN_SIZE, ImageFlags::USED_BLOCKS)] {
            let spec = spec_bytes(4096, size, 1 << 20, flags, "disk-ä".as_bytes());
            assert_eq!(value(size, flags).to_bytes(), spec);
            assert_eq!(ImageBegin::parse(&spec), Ok(value(size, flags)));
        }
        assert_eq!(ImageFlags::USED_BLOCKS, 1);
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(ImageBegin::parse(b))
    }

    #[test]
    fn a_body_length_other_than_24_plus_name_length_is_malformed() {
        let spec = spec_bytes(512, 4096, 4096, 0, b"disk");
        let mut long = spec.clone();
        long.push(b'x');
        assert_eq!(check(&long), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec[..spec.len() - 1]), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec[..10]), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_sector_size_out_of_rule_is_malformed() {
        for sector in [512u32, 65_536] {
            ImageBegin::parse(&spec_bytes(sector, 4096, 4096, 0, b"disk")).expect("allowed sector size");
        }
        for sector in [0u32, 256, 1000, 4095, 131_072] {
            assert_eq!(check(&spec_bytes(sector, 4096, 4096, 0, b"disk")), ErrorClass::RecordMalformed, "{sector}");
        }
    }

    #[test]
    fn a_chunk_size_out_of_rule_is_malformed_even_a_power_of_two_above_16_mib() {
        for chunk in [4096u32, 1 << 24] {
            ImageBegin::parse(&spec_bytes(512, 4096, chunk, 0, b"disk")).expect("allowed chunk size");
        }
        for chunk in [0u32, 2048, 4097, 3 << 12, 1 << 25, 1 << 31] {
            assert_eq!(check(&spec_bytes(512, 4096, chunk, 0, b"disk")), ErrorClass::RecordMalformed, "{chunk}");
        }
    }

    #[test]
    fn a_bad_name_is_malformed() {
        for name in [&b""[..], b".", b"..", b"a/b", b"a\0b", b"\xff\xfe"] {
            assert_eq!(check(&spec_bytes(512, 4096, 4096, 0, name)), ErrorClass::RecordMalformed, "{name:?}");
        }
        ImageBegin::parse(&spec_bytes(512, 4096, 4096, 0, &[b'n'; 255])).expect("255 bytes");
    }

    #[test]
    fn a_reserved_flag_bit_is_malformed() {
        for bit in 1..16 {
            assert_eq!(check(&spec_bytes(512, 4096, 4096, 1 << bit, b"disk")), ErrorClass::RecordMalformed);
        }
    }

    #[test]
    fn a_logical_size_above_2_63_minus_1_is_limit_exceeded() {
        ImageBegin::parse(&spec_bytes(512, (1 << 63) - 1, 4096, 0, b"disk")).expect("2^63 - 1");
        ImageBegin::parse(&spec_bytes(512, u64::MAX, 4096, 0, b"disk")).expect("unknown size");
        for size in [1u64 << 63, u64::MAX - 1] {
            assert_eq!(check(&spec_bytes(512, size, 4096, 0, b"disk")), ErrorClass::LimitExceeded);
        }
    }
}

mod image_extents {
    use super::*;
    use strata_format::image::{
        encode_extent_table, extents_of, parse_extent_table, ExtentMapCheck, REF_FREE, REF_LOST, REF_ZERO,
    };
    use strata_format::{Extent, ExtentKind, ImageBegin, RecordType};

    /// One extent entry of 7.2.
    fn spec_extent(image_offset: u64, length: u64, chunk_ref: u64) -> [u8; 32] {
        spec_extent_at(image_offset, length, chunk_ref, 0)
    }

    fn spec_extent_at(image_offset: u64, length: u64, chunk_ref: u64, chunk_offset: u32) -> [u8; 32] {
        let mut b = [0u8; 32];
        put(&mut b, 0, &image_offset.to_le_bytes());
        put(&mut b, 8, &length.to_le_bytes());
        put(&mut b, 16, &chunk_ref.to_le_bytes());
        put(&mut b, 24, &chunk_offset.to_le_bytes());
        // Bytes 28..32: `reserved`, zero.
        b
    }

    /// An `IMAGE_EXTENTS` (or `IMAGE_INDEX`) body: the 16-byte head, then the entries.
    fn spec_body(section_id: u32, reserved: u32, count: u64, extents: &[[u8; 32]]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        put(&mut b, 0, &section_id.to_le_bytes());
        put(&mut b, 4, &reserved.to_le_bytes());
        put(&mut b, 8, &count.to_le_bytes());
        for e in extents {
            b.extend_from_slice(e);
        }
        b
    }

    const A: Extent =
        Extent { image_offset: 0, length: 4096, chunk_ref: 0x0000_0000_0001_0080, chunk_offset: 0, reserved: 0 };
    const B: Extent =
        Extent { image_offset: 4096, length: 0x0102_0304_0506_0000, chunk_ref: 1, chunk_offset: 0, reserved: 0 };

    #[test]
    fn an_extent_encodes_and_decodes_as_the_table_says() {
        let spec = spec_extent(A.image_offset, A.length, A.chunk_ref);
        assert_eq!(Extent::SIZE, 32);
        assert_eq!(A.encode(), spec);
        assert_eq!(Extent::decode(&spec), A);
        let part = Extent::data(8192, 512, 0x1_0080, 0x0102_0304);
        assert_eq!(part.encode(), spec_extent_at(8192, 512, 0x1_0080, 0x0102_0304));
    }

    #[test]
    fn a_body_encodes_and_decodes_as_the_table_says() {
        let rows = [spec_extent(0, 4096, 0x1_0080), spec_extent(4096, B.length, 1)];
        let spec = spec_body(7, 0, 2, &rows);
        assert_eq!(encode_extent_table(7, &[A, B]), spec);
        let (head, table) = parse_extent_table(&spec, RecordType::ImageExtents).unwrap();
        assert_eq!((head.section_id, head.reserved, head.count), (7, 0, 2));
        assert_eq!(extents_of(table).collect::<Vec<_>>(), [A, B]);
    }

    #[test]
    fn chunk_ref_kinds_follow_the_table() {
        let kind = |chunk_ref| Extent { chunk_ref, ..A }.kind();
        assert_eq!(kind(0), Ok(ExtentKind::Zero));
        assert_eq!(kind(1), Ok(ExtentKind::Lost));
        assert_eq!(kind(2), Ok(ExtentKind::Free));
        assert_eq!(kind(128), Ok(ExtentKind::Data(128)));
        assert_eq!((REF_ZERO, REF_LOST, REF_FREE), (0, 1, 2));
        for reserved in [3u64, 64, 127] {
            assert_eq!(class(kind(reserved)), ErrorClass::RecordMalformed, "chunk_ref {reserved}");
        }
    }

    #[test]
    fn a_reserved_field_set_is_malformed() {
        let spec = spec_body(0, 1, 1, &[spec_extent(0, 4096, 0)]);
        assert_eq!(class(parse_extent_table(&spec, RecordType::ImageExtents)), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_count_that_disagrees_with_the_length_is_malformed() {
        let rows = [spec_extent(0, 4096, 0), spec_extent(4096, 4096, 0)];
        for count in [1u64, 3, u64::MAX / 16] {
            let spec = spec_body(0, 0, count, &rows);
            assert_eq!(class(parse_extent_table(&spec, RecordType::ImageExtents)), ErrorClass::RecordMalformed);
        }
        let mut cut = spec_body(0, 0, 2, &rows);
        cut.pop();
        assert_eq!(class(parse_extent_table(&cut, RecordType::ImageExtents)), ErrorClass::RecordMalformed);
        assert_eq!(class(parse_extent_table(&cut[..15], RecordType::ImageExtents)), ErrorClass::RecordMalformed);
    }

    #[test]
    fn an_image_index_of_no_extent_has_count_0() {
        let spec = spec_body(0, 0, 0, &[]);
        let (head, table) = parse_extent_table(&spec, RecordType::ImageIndex).expect("an image of size 0");
        assert_eq!((head.count, table.len()), (0, 0));
        assert_eq!(encode_extent_table(0, &[]), spec);
    }

    #[test]
    fn an_image_extents_count_of_0_is_malformed() {
        let spec = spec_body(0, 0, 0, &[]);
        assert_eq!(class(parse_extent_table(&spec, RecordType::ImageExtents)), ErrorClass::RecordMalformed);
    }

    fn begin(flags: u16) -> ImageBegin {
        ImageBegin { section_id: 0, sector_size: 512, logical_size: 8192, chunk_size: 4096, flags, name: b"d".to_vec() }
    }

    #[test]
    fn an_extent_of_length_0_is_an_extent_map_problem() {
        let mut check = ExtentMapCheck::new(&begin(0));
        assert_eq!(class(check.push(&Extent::hole(0, 0, ExtentKind::Zero))), ErrorClass::ExtentMap);
    }

    #[test]
    fn a_free_extent_outside_a_used_blocks_section_is_malformed() {
        let free = Extent::hole(0, 8192, ExtentKind::Free);
        assert_eq!(free.chunk_ref, 2);
        assert_eq!(class(ExtentMapCheck::new(&begin(0)).push(&free)), ErrorClass::RecordMalformed);
        assert_eq!(ExtentMapCheck::new(&begin(1)).push(&free), Ok(ExtentKind::Free));
    }
}

mod image_end {
    use super::*;
    use strata_format::ImageEnd;

    fn spec_bytes(reserved: u32, logical: u64, data: u64, lost: u64) -> [u8; 96] {
        let mut b = [0u8; 96];
        put(&mut b, 0, &5u32.to_le_bytes()); // section_id
        put(&mut b, 4, &reserved.to_le_bytes());
        put(&mut b, 8, &logical.to_le_bytes());
        put(&mut b, 16, &0x11u64.to_le_bytes()); // extent_count
        put(&mut b, 24, &data.to_le_bytes());
        put(&mut b, 32, &lost.to_le_bytes());
        put(&mut b, 40, &0x22u64.to_le_bytes()); // chunk_count
        put(&mut b, 48, &0x0333_0000_0000u64.to_le_bytes()); // chunk_bytes
        put(&mut b, 56, &0x0444_0000_0080u64.to_le_bytes()); // begin_offset
        put(&mut b, 64, &[0xee; 32]); // map_blake3
        b
    }

    fn value(reserved: u32, logical_size: u64, data_bytes: u64, lost_bytes: u64) -> ImageEnd {
        ImageEnd {
            section_id: 5,
            reserved,
            logical_size,
            extent_count: 0x11,
            data_bytes,
            lost_bytes,
            chunk_count: 0x22,
            chunk_bytes: 0x0333_0000_0000,
            begin_offset: 0x0444_0000_0080,
            map_blake3: [0xee; 32],
        }
    }

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        let spec = spec_bytes(0, 1 << 40, 1 << 39, 1 << 38);
        let end = value(0, 1 << 40, 1 << 39, 1 << 38);
        assert_eq!(ImageEnd::SIZE, 96);
        assert_eq!(end.encode(), spec);
        assert_eq!(ImageEnd::decode(&spec), end);
        end.validate().expect("valid");
    }

    fn check(b: &[u8; 96]) -> ErrorClass {
        class(ImageEnd::decode(b).validate())
    }

    #[test]
    fn a_reserved_field_set_is_malformed() {
        assert_eq!(check(&spec_bytes(1, 100, 0, 0)), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_logical_size_above_2_63_minus_1_is_limit_exceeded() {
        ImageEnd::decode(&spec_bytes(0, (1 << 63) - 1, 0, 0)).validate().expect("2^63 - 1");
        assert_eq!(check(&spec_bytes(0, 1 << 63, 0, 0)), ErrorClass::LimitExceeded);
        assert_eq!(check(&spec_bytes(0, u64::MAX, 0, 0)), ErrorClass::LimitExceeded);
    }

    #[test]
    fn data_and_lost_bytes_above_the_size_are_malformed_overflow_included() {
        ImageEnd::decode(&spec_bytes(0, 100, 60, 40)).validate().expect("equal to the size");
        assert_eq!(check(&spec_bytes(0, 100, 60, 41)), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_bytes(0, 100, u64::MAX, 2)), ErrorClass::RecordMalformed);
    }
}

mod files_begin {
    use super::*;
    use strata_format::files::{Captured, FilesBegin};

    fn spec_bytes(chunk_size: u32, captured: u64, name_length: u16, reserved: [u8; 6], name: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 24 + name.len()];
        put(&mut b, 0, &9u32.to_le_bytes()); // section_id
        put(&mut b, 4, &chunk_size.to_le_bytes());
        put(&mut b, 8, &captured.to_le_bytes());
        put(&mut b, 16, &name_length.to_le_bytes());
        put(&mut b, 18, &reserved);
        put(&mut b, 24, name);
        b
    }

    fn ok(chunk_size: u32, captured: u64, name: &[u8]) -> Vec<u8> {
        spec_bytes(chunk_size, captured, name.len() as u16, [0; 6], name)
    }

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        let value = FilesBegin { section_id: 9, chunk_size: 1 << 22, captured: 0x7f, name: b"home".to_vec() };
        let spec = ok(1 << 22, 0x7f, b"home");
        assert_eq!(value.to_bytes(), spec);
        assert_eq!(FilesBegin::parse(&spec), Ok(value));
        let bits = [
            Captured::OWNER_NAMES,
            Captured::XATTRS,
            Captured::ATIME,
            Captured::CTIME,
            Captured::BTIME,
            Captured::HOLES,
            Captured::IDENTITY,
        ];
        assert_eq!(bits, [1, 2, 4, 8, 16, 32, 64]);
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(FilesBegin::parse(b))
    }

    #[test]
    fn a_name_length_that_disagrees_with_the_body_is_malformed() {
        assert_eq!(check(&spec_bytes(4096, 0, 5, [0; 6], b"home")), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_bytes(4096, 0, 3, [0; 6], b"home")), ErrorClass::RecordMalformed);
        assert_eq!(check(&ok(4096, 0, b"home")[..20]), ErrorClass::RecordMalformed);
    }

    #[test]
    fn reserved_bytes_set_are_malformed() {
        for at in 0..6 {
            let mut reserved = [0u8; 6];
            reserved[at] = 1;
            assert_eq!(check(&spec_bytes(4096, 0, 4, reserved, b"home")), ErrorClass::RecordMalformed);
        }
    }

    #[test]
    fn reserved_captured_bits_are_malformed() {
        for bit in [7, 8, 31, 63] {
            assert_eq!(check(&ok(4096, 1 << bit, b"home")), ErrorClass::RecordMalformed, "bit {bit}");
        }
    }

    #[test]
    fn a_chunk_size_out_of_rule_is_malformed_even_a_power_of_two_above_16_mib() {
        FilesBegin::parse(&ok(1 << 24, 0, b"home")).expect("16 MiB");
        for chunk in [0u32, 2048, 5000, 1 << 25] {
            assert_eq!(check(&ok(chunk, 0, b"home")), ErrorClass::RecordMalformed, "{chunk}");
        }
    }

    #[test]
    fn a_bad_name_is_malformed() {
        for name in [&b""[..], b".", b"..", b"a/b", b"a\0", b"\xc3"] {
            assert_eq!(check(&ok(4096, 0, name)), ErrorClass::RecordMalformed, "{name:?}");
        }
    }
}

mod file_extents {
    use super::*;
    use strata_format::files::{encode_file_extents, parse_file_extents, FileExtent};

    /// One row of the file extent table of 8.2, in its row layout.
    fn spec_row(e: &FileExtent) -> [u8; 36] {
        let mut b = [0u8; 36];
        put(&mut b, 0, &e.entry_id.to_le_bytes());
        put(&mut b, 8, &e.file_offset.to_le_bytes());
        put(&mut b, 16, &e.length.to_le_bytes());
        put(&mut b, 24, &e.chunk_ref.to_le_bytes());
        put(&mut b, 32, &e.chunk_offset.to_le_bytes());
        b
    }

    fn head(reserved: u32, count: u64, first_index: u64) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        put(&mut b, 0, &2u32.to_le_bytes()); // section_id
        put(&mut b, 4, &reserved.to_le_bytes());
        put(&mut b, 8, &count.to_le_bytes());
        put(&mut b, 16, &first_index.to_le_bytes());
        b
    }

    const E0: FileExtent = FileExtent { entry_id: 5, file_offset: 0, length: 100, chunk_ref: 1000, chunk_offset: 0 };
    const E1: FileExtent = FileExtent { entry_id: 5, file_offset: 100, length: 50, chunk_ref: 900, chunk_offset: 7 };
    const E2: FileExtent =
        FileExtent { entry_id: 8, file_offset: 1 << 40, length: 4096, chunk_ref: 1 << 56 | 128, chunk_offset: 0 };

    /// The body of E0, E1, E2 stored column by column (section 8, "Tables"):
    /// `entry_id` and `chunk_ref` coded `delta`, the others `plain`.
    fn spec_body() -> Vec<u8> {
        let mut b = head(0, 3, 17);
        for v in [5u64, 0, 3] {
            b.extend_from_slice(&v.to_le_bytes()); // entry_id, delta
        }
        for v in [0u64, 100, 1 << 40] {
            b.extend_from_slice(&v.to_le_bytes()); // file_offset
        }
        for v in [100u64, 50, 4096] {
            b.extend_from_slice(&v.to_le_bytes()); // length
        }
        for v in [1000u64, 100u64.wrapping_neg(), (1 << 56 | 128) - 900] {
            b.extend_from_slice(&v.to_le_bytes()); // chunk_ref, delta modulo 2^64
        }
        for v in [0u32, 7, 0] {
            b.extend_from_slice(&v.to_le_bytes()); // chunk_offset
        }
        b
    }

    #[test]
    fn a_row_encodes_and_decodes_as_the_table_says() {
        assert_eq!(FileExtent::SIZE, 36);
        for e in [E0, E1, E2] {
            assert_eq!(e.encode(), spec_row(&e));
            assert_eq!(FileExtent::decode(&spec_row(&e)), e);
        }
    }

    #[test]
    fn a_body_is_stored_column_by_column() {
        let spec = spec_body();
        assert_eq!(spec.len(), 24 + 3 * 36);
        assert_eq!(encode_file_extents(2, 17, &[E0, E1, E2]), spec);
        let parsed = parse_file_extents(&spec).unwrap();
        assert_eq!(
            (parsed.head.section_id, parsed.head.reserved, parsed.head.count, parsed.head.first_index),
            (2, 0, 3, 17)
        );
        assert_eq!(parsed.extents, [E0, E1, E2]);
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(parse_file_extents(b))
    }

    #[test]
    fn a_reserved_field_set_is_malformed() {
        let mut b = spec_body();
        put(&mut b, 4, &1u32.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_count_out_of_range_or_not_matching_the_length_is_malformed() {
        assert_eq!(check(&head(0, 0, 0)), ErrorClass::RecordMalformed);
        let mut b = head(0, 65_537, 0);
        b.resize(24 + 65_537 * 36, 0);
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        let mut b = head(0, 65_536, 0);
        b.resize(24 + 65_536 * 36, 0);
        parse_file_extents(&b).expect("65,536 extents");
        let mut b = spec_body();
        put(&mut b, 8, &2u64.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_body()[..spec_body().len() - 1]), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_body()[..23]), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_chunk_ref_below_128_is_malformed() {
        for chunk_ref in [0u64, 1, 2, 127] {
            assert_eq!(class(FileExtent { chunk_ref, ..E0 }.validate()), ErrorClass::RecordMalformed);
        }
        E0.validate().expect("valid");
        E2.validate().expect("a reference into an ancestor is still an offset");
    }

    #[test]
    fn an_empty_extent_or_one_past_any_chunk_is_an_extent_map_problem() {
        assert_eq!(class(FileExtent { length: 0, ..E0 }.validate()), ErrorClass::ExtentMap);
        let past = FileExtent { chunk_offset: (1 << 24) - 10, length: 11, ..E0 };
        assert_eq!(class(past.validate()), ErrorClass::ExtentMap);
        FileExtent { chunk_offset: (1 << 24) - 10, length: 10, ..E0 }.validate().expect("ends at 16 MiB");
    }
}

mod files_end {
    use super::*;
    use strata_format::files::FilesEnd;

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        let mut spec = [0u8; 72];
        put(&mut spec, 0, &4u32.to_le_bytes()); // section_id
        put(&mut spec, 4, &0u32.to_le_bytes()); // reserved
        let totals = [11u64, 12, 13, 1 << 33, 15, 1 << 34, 0x0102_0304_0506_0708, 18];
        for (i, v) in totals.iter().enumerate() {
            // entry_count, file_count, directory_count, content_bytes,
            // chunk_count, chunk_bytes, begin_offset, extent_count
            put(&mut spec, 8 + 8 * i, &v.to_le_bytes());
        }
        let value = FilesEnd {
            section_id: 4,
            reserved: 0,
            entry_count: 11,
            file_count: 12,
            directory_count: 13,
            content_bytes: 1 << 33,
            chunk_count: 15,
            chunk_bytes: 1 << 34,
            begin_offset: 0x0102_0304_0506_0708,
            extent_count: 18,
        };
        assert_eq!(FilesEnd::SIZE, 72);
        assert_eq!(value.encode(), spec);
        assert_eq!(FilesEnd::decode(&spec), value);
    }
}

mod archive_index {
    use super::*;
    use strata_format::index::ChainIndexPointer;
    use strata_format::{ArchiveIndex, SectionEntry, SectionKind};

    /// A section entry of 9.2.
    fn spec_entry(kind: u8, reserved: [u8; 3], section_id: u32, offsets: [u64; 3]) -> [u8; 32] {
        let mut b = [0u8; 32];
        put(&mut b, 0, &[kind]);
        put(&mut b, 1, &reserved);
        put(&mut b, 4, &section_id.to_le_bytes());
        put(&mut b, 8, &offsets[0].to_le_bytes()); // begin_offset
        put(&mut b, 16, &offsets[1].to_le_bytes()); // end_offset
        put(&mut b, 24, &offsets[2].to_le_bytes()); // table_offset
        b
    }

    fn spec_body(count: u32, reserved: u32, chain: Option<(u64, [u8; 32])>, entries: &[[u8; 32]]) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        put(&mut b, 0, &count.to_le_bytes()); // section_count
        put(&mut b, 4, &reserved.to_le_bytes());
        if let Some((offset, blake3)) = chain {
            b.extend_from_slice(&offset.to_le_bytes()); // chain_index_offset, at 8
            b.extend_from_slice(&blake3); // chain_index_blake3, at 16
        }
        for e in entries {
            b.extend_from_slice(e);
        }
        b
    }

    const IMAGE: SectionEntry = SectionEntry {
        kind: 1,
        reserved: [0; 3],
        section_id: 0,
        begin_offset: 128,
        end_offset: 9000,
        table_offset: 1 << 33,
    };
    const TREE: SectionEntry = SectionEntry {
        kind: 2,
        reserved: [0; 3],
        section_id: 1,
        begin_offset: 9096,
        end_offset: 1 << 32,
        table_offset: (1 << 33) + 64,
    };

    fn entries() -> [[u8; 32]; 2] {
        [spec_entry(1, [0; 3], 0, [128, 9000, 1 << 33]), spec_entry(2, [0; 3], 1, [9096, 1 << 32, (1 << 33) + 64])]
    }

    #[test]
    fn a_section_entry_encodes_and_decodes_as_the_table_says() {
        assert_eq!(SectionEntry::SIZE, 32);
        assert_eq!(IMAGE.encode(), entries()[0]);
        assert_eq!(SectionEntry::decode(&entries()[1]), TREE);
        assert_eq!((SectionKind::Image.code(), SectionKind::FileTree.code()), (1, 2));
    }

    #[test]
    fn a_body_without_chain_fields_is_as_the_table_says() {
        let spec = spec_body(2, 0, None, &entries());
        let index = ArchiveIndex { reserved: 0, chain_index: None, sections: vec![IMAGE, TREE] };
        assert_eq!(index.to_bytes(), spec);
        assert_eq!(ArchiveIndex::parse(&spec), Ok(index));
        let empty = spec_body(0, 0, None, &[]);
        assert_eq!(ArchiveIndex::default().to_bytes(), empty);
        assert_eq!(ArchiveIndex::parse(&empty), Ok(ArchiveIndex::default()));
    }

    #[test]
    fn a_body_with_chain_fields_is_as_the_table_says() {
        let spec = spec_body(2, 0, Some((0x0102_0304_0506, [0xcd; 32])), &entries());
        assert_eq!(spec.len(), 48 + 2 * 32);
        let index = ArchiveIndex {
            reserved: 0,
            chain_index: Some(ChainIndexPointer { offset: 0x0102_0304_0506, blake3: [0xcd; 32] }),
            sections: vec![IMAGE, TREE],
        };
        assert_eq!(index.to_bytes(), spec);
        assert_eq!(ArchiveIndex::parse(&spec), Ok(index));
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(ArchiveIndex::parse(b))
    }

    #[test]
    fn a_length_that_fits_no_layout_is_malformed() {
        let spec = spec_body(2, 0, None, &entries());
        assert_eq!(check(&spec[..spec.len() - 1]), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_body(3, 0, None, &entries())), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_body(1, 0, None, &entries())), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec[..4]), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_section_count_above_65_536_is_limit_exceeded() {
        assert_eq!(check(&spec_body(65_537, 0, None, &[])), ErrorClass::LimitExceeded);
    }

    #[test]
    fn a_reserved_field_set_is_malformed() {
        assert_eq!(check(&spec_body(2, 1, None, &entries())), ErrorClass::RecordMalformed);
        let e = spec_entry(1, [0, 0, 1], 0, [128, 9000, 1 << 33]);
        assert_eq!(check(&spec_body(1, 0, None, &[e])), ErrorClass::RecordMalformed);
    }

    #[test]
    fn an_unknown_kind_is_malformed() {
        for kind in [0u8, 3, 0xFF] {
            let e = spec_entry(kind, [0; 3], 0, [128, 9000, 1 << 33]);
            assert_eq!(check(&spec_body(1, 0, None, &[e])), ErrorClass::RecordMalformed, "kind {kind}");
        }
    }

    #[test]
    fn a_section_id_other_than_the_position_is_an_index_mismatch() {
        let e = spec_entry(1, [0; 3], 1, [128, 9000, 1 << 33]);
        assert_eq!(check(&spec_body(1, 0, None, &[e])), ErrorClass::IndexMismatch);
    }

    #[test]
    fn offsets_out_of_order_are_an_index_mismatch() {
        for offsets in [[9000u64, 9000, 1 << 33], [9000, 128, 1 << 33], [128, 9000, 9000], [128, 9000, 200]] {
            let e = spec_entry(1, [0; 3], 0, offsets);
            assert_eq!(check(&spec_body(1, 0, None, &[e])), ErrorClass::IndexMismatch, "{offsets:?}");
        }
    }
}

mod trailer {
    use super::*;
    use strata_format::index::{TRAILER_MAGIC, TRAILER_RECORD_SIZE};
    use strata_format::Trailer;

    fn spec_bytes(index_offset: u64, archive_length: u64, magic: [u8; 8]) -> [u8; 32] {
        let mut b = [0u8; 32];
        put(&mut b, 0, &index_offset.to_le_bytes());
        put(&mut b, 8, &archive_length.to_le_bytes());
        put(&mut b, 16, &0x0001_0002_0003u64.to_le_bytes()); // record_count
        put(&mut b, 24, &magic);
        b
    }

    const MAGIC: [u8; 8] = [0x53, 0x54, 0x52, 0x41, 0x54, 0x41, 0x0D, 0x0A];

    #[test]
    fn encodes_and_decodes_as_the_table_says() {
        let value = Trailer {
            index_offset: 1 << 40,
            archive_length: (1 << 40) + 136,
            record_count: 0x0001_0002_0003,
            magic: MAGIC,
        };
        let spec = spec_bytes(1 << 40, (1 << 40) + 136, MAGIC);
        assert_eq!(Trailer::SIZE, 32);
        assert_eq!(TRAILER_RECORD_SIZE, 64);
        assert_eq!(TRAILER_MAGIC, MAGIC);
        assert_eq!(value.encode(), spec);
        assert_eq!(Trailer::decode(&spec), value);
        value.validate().expect("valid");
    }

    fn check(b: &[u8; 32]) -> ErrorClass {
        class(Trailer::decode(b).validate())
    }

    #[test]
    fn a_wrong_magic_is_malformed() {
        let mut magic = MAGIC;
        magic[6] = b'\n';
        assert_eq!(check(&spec_bytes(128, 4096, magic)), ErrorClass::RecordMalformed);
    }

    #[test]
    fn an_index_offset_outside_128_to_the_length_is_an_index_mismatch() {
        Trailer::decode(&spec_bytes(128, 129, MAGIC)).validate().expect("128 is the first record offset");
        assert_eq!(check(&spec_bytes(127, 4096, MAGIC)), ErrorClass::IndexMismatch);
        assert_eq!(check(&spec_bytes(0, 4096, MAGIC)), ErrorClass::IndexMismatch);
        assert_eq!(check(&spec_bytes(4096, 4096, MAGIC)), ErrorClass::IndexMismatch);
        assert_eq!(check(&spec_bytes(u64::MAX, 4096, MAGIC)), ErrorClass::IndexMismatch);
    }
}

mod files_index {
    use super::*;
    use strata_format::files::{encode_files_index, parse_files_index, GroupRow};

    fn head(reserved: u32, group_count: u64, reserved2: u64) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        put(&mut b, 0, &6u32.to_le_bytes()); // section_id
        put(&mut b, 4, &reserved.to_le_bytes());
        put(&mut b, 8, &group_count.to_le_bytes());
        put(&mut b, 16, &reserved2.to_le_bytes());
        b
    }

    const ROWS: [GroupRow; 2] = [
        GroupRow { entries_record: 4096, dir_record: 8192, first_id: 0 },
        GroupRow { entries_record: 20_000, dir_record: 0, first_id: 300 },
    ];

    /// Two rows stored column by column, every field coded `delta` (8.6).
    fn spec_body() -> Vec<u8> {
        let mut b = head(0, 2, 0);
        for v in [4096u64, 20_000 - 4096, 8192, 8192u64.wrapping_neg(), 0, 300] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn a_row_encodes_and_decodes_as_the_table_says() {
        let mut spec = [0u8; 24];
        put(&mut spec, 0, &20_000u64.to_le_bytes()); // entries_record
        put(&mut spec, 8, &0u64.to_le_bytes()); // dir_record
        put(&mut spec, 16, &300u64.to_le_bytes()); // first_id
        assert_eq!(GroupRow::SIZE, 24);
        assert_eq!(ROWS[1].encode(), spec);
        assert_eq!(GroupRow::decode(&spec), ROWS[1]);
    }

    #[test]
    fn a_body_is_stored_column_by_column() {
        let spec = spec_body();
        assert_eq!(encode_files_index(6, &ROWS), spec);
        let (h, rows) = parse_files_index(&spec).unwrap();
        assert_eq!((h.section_id, h.reserved, h.group_count, h.reserved2), (6, 0, 2, 0));
        assert_eq!(rows, ROWS);
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(parse_files_index(b))
    }

    #[test]
    fn reserved_fields_set_are_malformed() {
        let mut b = spec_body();
        put(&mut b, 4, &1u32.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        let mut b = spec_body();
        put(&mut b, 16, &1u64.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_group_count_of_0_or_not_matching_the_length_is_malformed() {
        assert_eq!(check(&head(0, 0, 0)), ErrorClass::RecordMalformed);
        let mut b = spec_body();
        put(&mut b, 8, &3u64.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_body()[..spec_body().len() - 1]), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec_body()[..23]), ErrorClass::RecordMalformed);
    }
}

mod files_dir {
    use super::*;
    use strata_format::files::{Fence, GroupDir, Locator};

    fn head(reserved: u32, dir_count: u64, fence_count: u64, names_length: u64) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        put(&mut b, 0, &1u32.to_le_bytes()); // section_id
        put(&mut b, 4, &reserved.to_le_bytes());
        put(&mut b, 8, &4096u64.to_le_bytes()); // entries_record
        put(&mut b, 16, &dir_count.to_le_bytes());
        put(&mut b, 24, &fence_count.to_le_bytes());
        put(&mut b, 32, &names_length.to_le_bytes());
        b
    }

    const L0: Locator = Locator { entry_id: 0, child_count: 3, first_child_id: 1, first_fence: 0 };
    const L1: Locator = Locator { entry_id: 2, child_count: 0, first_child_id: 0, first_fence: 1 };
    const F0: Fence = Fence { entries_record: 4096, dir_record: 8192, first_child_id: 1, name_length: 3 };

    fn value() -> GroupDir {
        GroupDir { section_id: 1, entries_record: 4096, locators: vec![L0, L1], fences: vec![(F0, b"bin".to_vec())] }
    }

    /// Two locators and one fence, column by column (8.5), then the names.
    fn spec_body() -> Vec<u8> {
        let mut b = head(0, 2, 1, 3);
        // Locators: entry_id delta, child_count plain, first_child_id delta, first_fence delta.
        for v in [0u64, 2, 3, 0, 1, 1u64.wrapping_neg(), 0, 1] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        // Fences: entries_record, dir_record, first_child_id delta; name_length plain u8.
        for v in [4096u64, 8192, 1] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(3);
        b.extend_from_slice(b"bin");
        b
    }

    #[test]
    fn rows_encode_and_decode_as_the_tables_say() {
        let mut locator = [0u8; 32];
        put(&mut locator, 0, &2u64.to_le_bytes()); // entry_id
        put(&mut locator, 8, &0u64.to_le_bytes()); // child_count
        put(&mut locator, 16, &0u64.to_le_bytes()); // first_child_id
        put(&mut locator, 24, &1u64.to_le_bytes()); // first_fence
        assert_eq!((Locator::SIZE, L1.encode()), (32, locator));
        assert_eq!(Locator::decode(&locator), L1);
        let mut fence = [0u8; 25];
        put(&mut fence, 0, &4096u64.to_le_bytes()); // entries_record
        put(&mut fence, 8, &8192u64.to_le_bytes()); // dir_record
        put(&mut fence, 16, &1u64.to_le_bytes()); // first_child_id
        put(&mut fence, 24, &[3]); // name_length
        assert_eq!((Fence::SIZE, F0.encode()), (25, fence));
        assert_eq!(Fence::decode(&fence), F0);
    }

    #[test]
    fn a_body_is_stored_column_by_column() {
        let spec = spec_body();
        assert_eq!(spec.len(), 40 + 2 * 32 + 25 + 3);
        assert_eq!(value().encode(), spec);
        assert_eq!(GroupDir::parse(&spec), Ok(value()));
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(GroupDir::parse(b))
    }

    #[test]
    fn a_reserved_field_set_is_malformed() {
        let mut b = spec_body();
        put(&mut b, 4, &1u32.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_dir_count_out_of_range_is_malformed() {
        assert_eq!(check(&head(0, 0, 0, 0)), ErrorClass::RecordMalformed);
        let mut b = head(0, 65_537, 0, 0);
        b.resize(40 + 65_537 * 32, 0);
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_length_that_does_not_fit_is_malformed() {
        let spec = spec_body();
        assert_eq!(check(&spec[..spec.len() - 1]), ErrorClass::RecordMalformed);
        let mut long = spec.clone();
        long.push(b'x');
        assert_eq!(check(&long), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec[..39]), ErrorClass::RecordMalformed);
    }

    #[test]
    fn fence_name_lengths_that_do_not_add_up_to_names_length_are_malformed() {
        // names_length 4 and four name bytes, but the one fence's name_length is 3.
        let mut b = spec_body();
        put(&mut b, 32, &4u64.to_le_bytes());
        b.push(b'x');
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        // names_length 2 and two name bytes for a fence of name_length 3.
        let mut b = spec_body();
        put(&mut b, 32, &2u64.to_le_bytes());
        b.pop();
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }
}

mod chain {
    use super::*;
    use strata_format::chain::MAX_CHAIN_BODY;
    use strata_format::{Ancestor, Chain, ChainIndex, ChainRef, ChunkRef};

    const OWN: [u8; 16] = UUID;

    /// An ancestor entry of 15.2.
    fn spec_ancestor(uuid: u8, archive_length: u64, name: &[u8], reserved: [u8; 7]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + name.len()];
        put(&mut b, 0, &[uuid; 16]);
        put(&mut b, 16, &[uuid ^ 0xff; 32]); // binding
        put(&mut b, 48, &archive_length.to_le_bytes());
        put(&mut b, 56, &[name.len() as u8]); // name_length
        put(&mut b, 57, &reserved);
        put(&mut b, 64, name);
        b
    }

    /// A `CHAIN` body: the 48-byte head, then the ancestors.
    fn spec_chain(depth: u8, id_scheme: u8, ancestors: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        put(&mut b, 0, &[depth]);
        put(&mut b, 1, &[id_scheme]);
        // 2..8 reserved, 8..40 id_key_check (zero with scheme 0), 40..48 reserved.
        for a in ancestors {
            b.extend_from_slice(a);
        }
        b
    }

    fn ancestor(uuid: u8, archive_length: u64, name: &[u8]) -> Ancestor {
        Ancestor { uuid: [uuid; 16], binding: [uuid ^ 0xff; 32], archive_length, name: name.to_vec() }
    }

    fn two() -> Vec<u8> {
        spec_chain(2, 0, &[spec_ancestor(1, 1 << 40, b"mon.strata", [0; 7]), spec_ancestor(2, 4096, b"sun", [0; 7])])
    }

    #[test]
    fn a_chain_encodes_and_decodes_as_the_table_says() {
        let chain = Chain::new(vec![ancestor(1, 1 << 40, b"mon.strata"), ancestor(2, 4096, b"sun")]);
        assert_eq!(chain.to_bytes(), two());
        assert_eq!(Chain::parse(&two(), &OWN, 64), Ok(chain));
        assert_eq!(MAX_CHAIN_BODY, 20_464);
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(Chain::parse(b, &OWN, 64))
    }

    fn one(name: &[u8], reserved: [u8; 7]) -> Vec<u8> {
        spec_chain(1, 0, &[spec_ancestor(1, 4096, name, reserved)])
    }

    #[test]
    fn a_depth_of_0_is_malformed() {
        assert_eq!(check(&spec_chain(0, 0, &[])), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_depth_above_64_or_the_readers_limit_is_limit_exceeded() {
        let many: Vec<Vec<u8>> = (1..=65).map(|n| spec_ancestor(n, 4096, b"a", [0; 7])).collect();
        Chain::parse(&spec_chain(64, 0, &many[..64]), &OWN, 64).expect("64 ancestors");
        assert_eq!(check(&spec_chain(65, 0, &many)), ErrorClass::LimitExceeded);
        assert_eq!(class(Chain::parse(&two(), &OWN, 1)), ErrorClass::LimitExceeded);
    }

    #[test]
    fn another_id_scheme_is_malformed() {
        let mut b = one(b"a", [0; 7]);
        b[1] = 1;
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn reserved_bytes_and_a_key_check_set_are_malformed() {
        for at in [2, 7, 8, 39, 40, 47] {
            let mut b = one(b"a", [0; 7]);
            b[at] = 1;
            assert_eq!(check(&b), ErrorClass::RecordMalformed, "byte {at}");
        }
        assert_eq!(check(&one(b"a", [0, 0, 0, 0, 0, 0, 1])), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_name_that_is_not_a_base_name_is_malformed() {
        for name in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert_eq!(check(&one(name, [0; 7])), ErrorClass::RecordMalformed, "{name:?}");
        }
        Chain::parse(&one(&[b'n'; 255], [0; 7]), &OWN, 64).expect("255 bytes");
    }

    #[test]
    fn a_repeated_uuid_is_malformed() {
        let b = spec_chain(2, 0, &[spec_ancestor(1, 1, b"a", [0; 7]), spec_ancestor(1, 2, b"b", [0; 7])]);
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        let own = spec_chain(1, 0, &[spec_ancestor(OWN[0], 1, b"a", [0; 7])]);
        assert_eq!(class(Chain::parse(&own, &[OWN[0]; 16], 64)), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_body_length_other_than_48_plus_the_ancestors_is_malformed() {
        let b = two();
        assert_eq!(check(&b[..b.len() - 1]), ErrorClass::RecordMalformed);
        let mut long = b.clone();
        long.push(0);
        assert_eq!(check(&long), ErrorClass::RecordMalformed);
        assert_eq!(check(&b[..47]), ErrorClass::RecordMalformed);
        let mut b = two();
        b[0] = 3;
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_chunk_ref_splits_at_bit_56() {
        let r = ChunkRef::split(0x0300_0000_0000_1000);
        assert_eq!(r, ChunkRef { archive: 3, offset: 0x1000 });
        assert_eq!(r.join(), 0x0300_0000_0000_1000);
        assert_eq!(ChunkRef::split(0x00ff_ffff_ffff_ffff), ChunkRef { archive: 0, offset: (1 << 56) - 1 });
    }

    /// A `CHAIN_INDEX` body of 15.3: head, the chain copy, then rows of
    /// `chunk_ref` (u64) and `blake3`.
    fn spec_index(reserved: u32, ref_count: u64, chain: &[u8], rows: &[(u64, u8)]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        put(&mut b, 0, &(chain.len() as u32).to_le_bytes()); // chain_length
        put(&mut b, 4, &reserved.to_le_bytes());
        put(&mut b, 8, &ref_count.to_le_bytes());
        b.extend_from_slice(chain);
        for &(chunk_ref, blake3) in rows {
            b.extend_from_slice(&chunk_ref.to_le_bytes());
            b.extend_from_slice(&[blake3; 32]);
        }
        b
    }

    const R1: u64 = 1 << 56 | 128;
    const R2: u64 = 2 << 56 | 4096;

    #[test]
    fn a_chain_index_encodes_and_decodes_as_the_table_says() {
        let spec = spec_index(0, 2, &two(), &[(R1, 0x11), (R2, 0x22)]);
        let rows = [
            ChainRef { chunk_ref: ChunkRef::split(R1), blake3: [0x11; 32] },
            ChainRef { chunk_ref: ChunkRef::split(R2), blake3: [0x22; 32] },
        ];
        assert_eq!(ChainIndex::encode(&two(), &rows), spec);
        let index = ChainIndex::parse(&spec, &OWN, 64).unwrap();
        assert_eq!(index.chain_body, two());
        assert_eq!(index.chain, Chain::parse(&two(), &OWN, 64).unwrap());
        assert_eq!(index.refs, rows);
    }

    fn check_index(b: &[u8]) -> ErrorClass {
        class(ChainIndex::parse(b, &OWN, 64))
    }

    #[test]
    fn a_chain_index_reserved_field_set_is_malformed() {
        assert_eq!(check_index(&spec_index(1, 1, &two(), &[(R1, 0)])), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_chain_index_length_other_than_16_plus_chain_plus_rows_is_malformed() {
        assert_eq!(check_index(&spec_index(0, 2, &two(), &[(R1, 0)])), ErrorClass::RecordMalformed);
        let b = spec_index(0, 1, &two(), &[(R1, 0)]);
        assert_eq!(check_index(&b[..b.len() - 1]), ErrorClass::RecordMalformed);
        assert_eq!(check_index(&b[..15]), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_chain_copy_that_breaks_15_2_is_malformed() {
        let mut chain = two();
        chain[2] = 1; // a reserved byte
        assert_eq!(check_index(&spec_index(0, 0, &chain, &[])), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_depth_above_the_limit_inside_the_copy_is_malformed() {
        assert_eq!(class(ChainIndex::parse(&spec_index(0, 0, &two(), &[]), &OWN, 1)), ErrorClass::RecordMalformed);
        let many: Vec<Vec<u8>> = (1..=65).map(|n| spec_ancestor(n, 4096, b"a", [0; 7])).collect();
        assert_eq!(check_index(&spec_index(0, 0, &spec_chain(65, 0, &many), &[])), ErrorClass::RecordMalformed);
    }

    #[test]
    fn rows_not_strictly_increasing_are_malformed() {
        assert_eq!(check_index(&spec_index(0, 2, &two(), &[(R2, 0), (R1, 0)])), ErrorClass::RecordMalformed);
        assert_eq!(check_index(&spec_index(0, 2, &two(), &[(R1, 0), (R1, 0)])), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_row_outside_the_ancestors_is_malformed() {
        for chunk_ref in [128u64, 3 << 56 | 128, 1 << 56 | 127, 1 << 56] {
            let b = spec_index(0, 1, &two(), &[(chunk_ref, 0)]);
            assert_eq!(check_index(&b), ErrorClass::RecordMalformed, "{chunk_ref:#x}");
        }
    }
}

mod files_entries {
    use super::*;
    use strata_format::files::{
        encode_group, parse_group, Captured, Entry, EntryKind, EntryRow, ExtentListRow, GroupHead, Timestamp,
    };

    /// `captured` of the sample: owner names, atime and source identity.
    const CAPTURED: u64 = Captured::OWNER_NAMES | Captured::ATIME | Captured::IDENTITY;

    fn entry() -> Entry {
        Entry {
            entry_id: 7,
            parent_id: 2,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            mtime: Timestamp { secs: -1, nsec: 500_000_000 },
            atime: Timestamp { secs: 1 << 33, nsec: 999_999_999 },
            size: 5,
            extent_count: 1,
            digest: [0x77; 16],
            ino: 0x0102_0304_0506_0708,
            dev: (8, 1),
            user: b"root".to_vec(),
            ..Entry::bare(EntryKind::File, b"ab")
        }
    }

    fn head(reserved: u64, count: u32, captured: u64) -> Vec<u8> {
        let mut b = vec![0u8; 56];
        put(&mut b, 0, &3u32.to_le_bytes()); // section_id
        put(&mut b, 4, &count.to_le_bytes());
        put(&mut b, 8, &7u64.to_le_bytes()); // first_id
        put(&mut b, 16, &captured.to_le_bytes());
        put(&mut b, 24, &40u64.to_le_bytes()); // extent_base
        put(&mut b, 32, &1u32.to_le_bytes()); // list_count
        put(&mut b, 36, &2u32.to_le_bytes()); // names_length
        put(&mut b, 40, &4u64.to_le_bytes()); // strings_length
        put(&mut b, 48, &reserved.to_le_bytes());
        b
    }

    /// The row of `entry()`, *W* = 87 + 12 (bit 2) + 16 (bit 6) = 115 bytes,
    /// at the offsets of the 8.3 table and its worked example.
    fn spec_row(kind: u8, flags: u8, mode: u16, mtime_nsec: u32) -> [u8; 115] {
        let mut b = [0u8; 115];
        put(&mut b, 0, &[kind]);
        put(&mut b, 1, &[flags]);
        put(&mut b, 2, &mode.to_le_bytes());
        put(&mut b, 4, &[2]); // name_length
        put(&mut b, 5, &[4]); // user_length
        put(&mut b, 6, &[0]); // group_length
        put(&mut b, 7, &0u16.to_le_bytes()); // target_length
        put(&mut b, 9, &0u16.to_le_bytes()); // xattr_count
        put(&mut b, 11, &1000u32.to_le_bytes()); // uid
        put(&mut b, 15, &100u32.to_le_bytes()); // gid
        put(&mut b, 19, &0u32.to_le_bytes()); // rdev_major
        put(&mut b, 23, &0u32.to_le_bytes()); // rdev_minor
        put(&mut b, 27, &(-1i64).to_le_bytes()); // mtime_s
        put(&mut b, 35, &mtime_nsec.to_le_bytes());
        put(&mut b, 39, &2u64.to_le_bytes()); // parent_id
        put(&mut b, 47, &5u64.to_le_bytes()); // size
        put(&mut b, 55, &0u64.to_le_bytes()); // link_id
        put(&mut b, 63, &1u64.to_le_bytes()); // extent_count
        put(&mut b, 71, &[0x77; 16]); // digest
        put(&mut b, 87, &(1i64 << 33).to_le_bytes()); // atime_s
        put(&mut b, 95, &999_999_999u32.to_le_bytes()); // atime_nsec
        put(&mut b, 99, &0x0102_0304_0506_0708u64.to_le_bytes()); // ino
        put(&mut b, 107, &8u32.to_le_bytes()); // dev_major
        put(&mut b, 111, &1u32.to_le_bytes()); // dev_minor
        b
    }

    /// A group of one entry: head, extent list, the row (one row stored by
    /// columns is the row itself), names, strings.
    fn spec_body(row: &[u8; 115]) -> Vec<u8> {
        let mut b = head(0, 1, CAPTURED);
        b.extend_from_slice(&4096u64.to_le_bytes()); // extent list: extents_record
        b.extend_from_slice(&40u64.to_le_bytes()); // extent list: first_index
        b.extend_from_slice(row);
        b.extend_from_slice(b"ab"); // names
        b.extend_from_slice(b"root"); // strings: user, group, target
        b
    }

    fn good_row() -> [u8; 115] {
        spec_row(1, 0, 0o4755, 500_000_000)
    }

    #[test]
    fn the_head_and_the_fixed_row_are_the_tables_sizes() {
        assert_eq!((GroupHead::SIZE, EntryRow::SIZE, ExtentListRow::SIZE), (56, 87, 16));
        let h = GroupHead::decode(head(0, 1, CAPTURED)[..].try_into().unwrap());
        assert_eq!(
            (h.section_id, h.count, h.first_id, h.captured, h.extent_base, h.list_count, h.names_length),
            (3, 1, 7, CAPTURED, 40, 1, 2)
        );
        assert_eq!((h.strings_length, h.reserved), (4, 0));
        let fixed: [u8; 87] = good_row()[..87].try_into().unwrap();
        let row = EntryRow::decode(&fixed);
        assert_eq!(row.encode(), fixed);
        assert_eq!((row.kind, row.mode, row.mtime_s, row.parent_id, row.digest), (1, 0o4755, -1, 2, [0x77; 16]));
    }

    #[test]
    fn a_group_encodes_and_decodes_as_the_table_says() {
        let spec = spec_body(&good_row());
        let list = [ExtentListRow { extents_record: 4096, first_index: 40 }];
        assert_eq!(encode_group(3, 7, CAPTURED, 40, &list, &[entry()]), spec);
        let group = parse_group(&spec).unwrap();
        assert_eq!(group.extent_list, list);
        let entries: Vec<Entry> = group.entries.into_iter().map(Result::unwrap).collect();
        assert_eq!(entries, [entry()]);
        entry().check(CAPTURED).expect("a valid entry");
    }

    fn check(b: &[u8]) -> ErrorClass {
        class(parse_group(b))
    }

    #[test]
    fn a_reserved_field_or_captured_bit_set_is_malformed() {
        let mut b = spec_body(&good_row());
        put(&mut b, 48, &1u64.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        let mut b = spec_body(&good_row());
        put(&mut b, 16, &(CAPTURED | 1 << 7).to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn a_count_out_of_range_is_malformed() {
        let mut b = spec_body(&good_row());
        put(&mut b, 4, &0u32.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
        let mut b = spec_body(&good_row());
        put(&mut b, 4, &65_537u32.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    #[test]
    fn lengths_that_do_not_fit_are_malformed() {
        let spec = spec_body(&good_row());
        assert_eq!(check(&spec[..spec.len() - 1]), ErrorClass::RecordMalformed);
        assert_eq!(check(&spec[..55]), ErrorClass::RecordMalformed);
        // names_length 3 and strings_length 3: the body's length fits, the rows' lengths do not.
        let mut b = spec.clone();
        put(&mut b, 36, &3u32.to_le_bytes());
        put(&mut b, 40, &3u64.to_le_bytes());
        assert_eq!(check(&b), ErrorClass::RecordMalformed);
    }

    /// The class of the one row's problem: an `Err` in its place, or the
    /// first rule [`Entry::check`] finds.
    fn row_class(row: &[u8; 115]) -> ErrorClass {
        let group = parse_group(&spec_body(row)).expect("the head is sound");
        match group.entries.into_iter().next().unwrap() {
            Err(e) => e.class,
            Ok(entry) => class(entry.check(CAPTURED)),
        }
    }

    #[test]
    fn an_unknown_kind_is_malformed() {
        for kind in [0u8, 9, 0xFF] {
            assert_eq!(row_class(&spec_row(kind, 0, 0o644, 0)), ErrorClass::RecordMalformed, "kind {kind}");
        }
    }

    #[test]
    fn reserved_entry_flags_are_malformed() {
        for bit in 4..8 {
            assert_eq!(row_class(&spec_row(1, 1 << bit, 0o644, 0)), ErrorClass::RecordMalformed, "bit {bit}");
        }
    }

    #[test]
    fn a_mode_above_0o7777_is_malformed() {
        assert_eq!(row_class(&spec_row(1, 0, 0o10000, 0)), ErrorClass::RecordMalformed);
    }

    #[test]
    fn nanoseconds_of_a_second_or_more_are_malformed() {
        assert_eq!(row_class(&spec_row(1, 0, 0o644, 1_000_000_000)), ErrorClass::RecordMalformed);
    }
}
