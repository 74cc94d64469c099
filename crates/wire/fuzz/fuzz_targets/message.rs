//! One frame as a peer could make it up: it decodes to a message or is refused, never panics;
//! a message decoded encodes to a frame that decodes to the same message; and the checks the
//! receiver makes next on a listing's names and attributes hold for any of them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::message::{Attrs, Message};

fuzz_target!(
    init: wire_fuzz::capture::write_seeds("message"),
    |data: &[u8]| {
        let Ok(msg) = Message::decode(data) else {
            return;
        };
        let mut again = Vec::new();
        msg.encode(&mut again);
        assert_eq!(
            Message::decode(&again).expect("a re-encoded message decodes"),
            msg
        );
        match &msg {
            Message::Root(a) => attrs(a),
            Message::Dir { name, attrs: a } | Message::Entry { name, attrs: a, .. } => {
                check_name(name);
                attrs(a);
            }
            Message::Unreadable { name, .. } if !name.is_empty() => check_name(name),
            Message::Excluded { name, .. } => check_name(name),
            _ => {}
        }
    }
);

/// A name is accepted exactly when it is one path component.
fn check_name(name: &[u8]) {
    let single = !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name.len() <= 255;
    match wire::name::component(name) {
        Ok(c) => {
            assert!(single, "{name:?} accepted");
            assert_eq!(c.as_bytes(), name);
        }
        Err(_) => assert!(!single, "{name:?} refused"),
    }
}

/// Attributes become the mover's, and their extended attributes a set or a refusal.
fn attrs(a: &Attrs) {
    let m = a.meta();
    assert_eq!((m.kind, m.perm, m.size), (a.kind, a.perm, a.size));
    assert!(m.perm <= 0o7777);
    if let Ok(x) = a.xattr_set() {
        assert_eq!(x.iter().count(), a.xattrs.len());
    }
}
