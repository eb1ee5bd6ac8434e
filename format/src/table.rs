//! The column codec of file-tree tables (`spec/FORMAT.md` section 8, "Tables").
//!
//! A table is described as a row layout, but stored column by column: the
//! values of the first field for every row, then those of the second, and so
//! on. A field coded `delta` stores, from its second row on, the difference to
//! the previous row's value modulo 2^64. Runs of equal modes, owners and
//! parents, and ids that grow by one, then become runs of equal bytes, which
//! zstd stores in almost nothing.
//!
//! The codec works on row-major bytes (rows encoded with the fixed layouts of
//! this crate, back to back), so one mechanism serves every table.

use crate::FormatError;

/// One field of a row: its width in bytes and whether it is coded `delta`
/// (only u64 fields are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Width of the field in bytes.
    pub width: usize,
    /// Whether the stored value is the difference to the previous row's.
    pub delta: bool,
}

impl Column {
    /// A field stored as it is.
    pub const fn plain(width: usize) -> Column {
        Column { width, delta: false }
    }

    /// A u64 field stored as the difference to the previous row's value.
    pub const fn delta() -> Column {
        Column { width: 8, delta: true }
    }
}

/// The width of a row of `columns`.
pub fn row_width(columns: &[Column]) -> usize {
    columns.iter().map(|c| c.width).sum()
}

/// Stores `rows` (row-major, each row `row_width(columns)` bytes) column by
/// column, appending to `out`.
pub fn encode_columns(rows: &[u8], columns: &[Column], out: &mut Vec<u8>) {
    let width = row_width(columns);
    debug_assert!(width > 0 && rows.len().is_multiple_of(width));
    let count = rows.len().checked_div(width).unwrap_or(0);
    out.reserve(rows.len());
    let mut at = 0;
    for column in columns {
        if column.delta {
            let mut previous = 0u64;
            for row in 0..count {
                let value = read_u64(&rows[row * width + at..]);
                out.extend_from_slice(&value.wrapping_sub(previous).to_le_bytes());
                previous = value;
            }
        } else {
            for row in 0..count {
                out.extend_from_slice(&rows[row * width + at..row * width + at + column.width]);
            }
        }
        at += column.width;
    }
}

/// Turns `count` rows stored column by column (exactly `count *
/// row_width(columns)` bytes of `stored`) back into row-major bytes. The
/// caller has checked the length against the body before calling, so this
/// allocates no more than the body holds.
pub fn decode_columns(stored: &[u8], count: usize, columns: &[Column]) -> Result<Vec<u8>, FormatError> {
    let width = row_width(columns);
    if count.checked_mul(width) != Some(stored.len()) {
        return Err(FormatError::malformed(
            "table",
            format!("{count} rows of {width} bytes do not fill {} bytes", stored.len()),
        ));
    }
    let mut rows = vec![0u8; stored.len()];
    let mut from = 0;
    let mut at = 0;
    for column in columns {
        if column.delta {
            let mut value = 0u64;
            for row in 0..count {
                value = value.wrapping_add(read_u64(&stored[from + row * 8..]));
                rows[row * width + at..row * width + at + 8].copy_from_slice(&value.to_le_bytes());
            }
        } else {
            for row in 0..count {
                let field = &stored[from + row * column.width..from + (row + 1) * column.width];
                rows[row * width + at..row * width + at + column.width].copy_from_slice(field);
            }
        }
        from += count * column.width;
        at += column.width;
    }
    Ok(rows)
}

fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [Column::delta(), Column::plain(2), Column::plain(8)];

    fn rows(values: &[(u64, u16, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(a, b, c) in values {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    #[test]
    fn columns_round_trip_and_are_stored_field_by_field() {
        let input = rows(&[(5, 1, 9), (6, 2, 9), (3, 3, 9)]);
        let mut stored = Vec::new();
        encode_columns(&input, &COLUMNS, &mut stored);
        // First column: 5, then +1, then 3 - 6 modulo 2^64.
        assert_eq!(&stored[0..8], &5u64.to_le_bytes());
        assert_eq!(&stored[8..16], &1u64.to_le_bytes());
        assert_eq!(&stored[16..24], &3u64.wrapping_sub(6).to_le_bytes());
        // Second column: the three u16 values back to back.
        assert_eq!(&stored[24..30], &[1, 0, 2, 0, 3, 0]);
        assert_eq!(decode_columns(&stored, 3, &COLUMNS).unwrap(), input);
    }

    #[test]
    fn a_length_that_does_not_fit_the_rows_is_refused() {
        assert!(decode_columns(&[0u8; 17], 1, &COLUMNS).is_err());
        assert!(decode_columns(&[0u8; 18], usize::MAX, &COLUMNS).is_err());
        assert_eq!(decode_columns(&[], 0, &COLUMNS).unwrap(), Vec::<u8>::new());
    }
}
