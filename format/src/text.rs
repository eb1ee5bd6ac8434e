//! How a name or path from an archive or a source is shown to a person: one
//! rule for every listing, warning and error, so that a name cannot write to
//! the terminal or forge a line. The format stores names as bytes
//! (`spec/FORMAT.md` section 8.3); this module owns only how they are shown.

/// `bytes` (a name, a path, a link target) as text that holds no control
/// character and says exactly which bytes it stands for, as GNU tar's
/// escapes do: printable UTF-8 as it is; `\` as `\\`; newline, tab and
/// carriage return as `\n`, `\t`, `\r`; every other control character
/// (C0, DEL, C1) and the bidirectional overrides that reorder what a
/// terminal shows as `\u{..}`; a byte that is not UTF-8 as `\xNN`.
///
/// ```
/// assert_eq!(strata_format::escaped(b"notes.txt"), "notes.txt");
/// assert_eq!(strata_format::escaped(b"a\nb\x1b[31m\xff\\"), "a\\nb\\u{1b}[31m\\xff\\\\");
/// ```
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                    out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn nothing_that_controls_a_terminal_gets_through() {
        for byte in 0..=255u8 {
            let shown = escaped(&[b'a', byte, b'b']);
            assert!(shown.chars().all(|c| !c.is_control()), "{byte:#x}: {shown:?}");
        }
        assert_eq!(escaped("é日本".as_bytes()), "é日本");
        assert_eq!(escaped("\u{85}\u{202e}".as_bytes()), "\\u{85}\\u{202e}");
        assert_eq!(escaped(b"\x7f\x00"), "\\u{7f}\\u{0}");
        // Distinct names stay distinct.
        assert_ne!(escaped(b"a\\nb"), escaped(b"a\nb"));
        assert_ne!(escaped(b"\\xff"), escaped(b"\xff"));
    }
}
