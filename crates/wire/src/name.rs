//! The receiver's check of every name a sender gives: one path component, nothing else.

use std::ffi::CString;

use crate::{Error, Result};

/// The longest name Linux filesystems accept.
pub const NAME_MAX: usize = 255;

/// Checks that `name` is a single path component (not empty, not `.` or `..`, no `/`, no NUL,
/// at most [`NAME_MAX`] bytes) and returns it for system calls. Anything else is a protocol
/// violation: a sender never lists such a name.
pub fn component(name: &[u8]) -> Result<CString> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name == b"." || name == b".." {
        Some("is . or ..")
    } else if name.contains(&b'/') {
        Some("holds a /")
    } else if name.contains(&0) {
        Some("holds a NUL byte")
    } else if name.len() > NAME_MAX {
        Some("is longer than 255 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::protocol(format!(
            "the entry name {:?} {why}; only single path components are accepted",
            String::from_utf8_lossy(name)
        ))),
        None => Ok(CString::new(name).expect("checked for NUL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_components_pass() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a/b",
            b"/etc",
            b"../x",
            b"a\0b",
            &[b'n'; 256],
        ] {
            assert!(component(bad).is_err(), "{bad:?}");
        }
        for good in [&b"a"[..], b"...", b".hidden", b"\xff\n", &[b'n'; 255]] {
            assert_eq!(component(good).unwrap().as_bytes(), good);
        }
    }
}
