//! Paths relative to a tree's root, as bytes, and how they are shown to people and programs.
//!
//! File names on Linux are bytes. Summaries and logs show a path as UTF-8 where it is valid and
//! escape the rest: every byte that is not part of valid UTF-8, and every control character, is
//! written `\xNN`; a backslash is written `\\`. The escaping is reversible.

/// Joins a directory's relative path and an entry name into a new relative path.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        p.extend_from_slice(dir);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Splits a relative path into its directory's path and its last name (the inverse of
/// [`join`]); a name at the root has an empty directory path.
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

/// Shows a byte path as text, escaping invalid UTF-8, control characters and backslashes.
pub fn display(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
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

/// Reverses [`display`].
pub fn parse_display(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b.get(i + 1)? {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                _ => return None,
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_splits_at_its_last_slash() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"top"), (&b""[..], &b"top"[..]));
        assert_eq!(split(b"d/\xff\n"), (&b"d"[..], &b"\xff\n"[..]));
    }

    #[test]
    fn plain_names_are_shown_as_they_are() {
        assert_eq!(display(b"a/b c/\xc3\xa9t\xc3\xa9"), "a/b c/été");
    }

    #[test]
    fn invalid_utf8_controls_and_backslashes_are_escaped() {
        assert_eq!(display(b"a\xffb\nc\\d"), "a\\xffb\\x0ac\\\\d");
    }

    #[test]
    fn escaping_round_trips_any_bytes() {
        let all: Vec<u8> = (0..=255u8).chain(b"\\x41\\".iter().copied()).collect();
        assert_eq!(parse_display(&display(&all)).unwrap(), all);
    }

    #[test]
    fn join_leaves_the_root_empty() {
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"a/b", b"x"), b"a/b/x");
    }
}
