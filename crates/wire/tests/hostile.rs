//! A sender that breaks the rules, against a real receiver: a test-only peer with a valid
//! certificate writes frames by hand. Each attack must be refused, and nothing outside the
//! target may change.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use mover::meta::{Kind, Ts};
use wire::frame::Conn;
use wire::keys::{self, Side};
use wire::message::{Attrs, Message};
use wire::net::{self, Listener};
use wire::receive::{self, ReceiveOptions};
use wire::{PROTOCOL_VERSION, tls};

/// A target next to a folder that must not change, and a receiver waiting for one transfer.
struct Scene {
    _dir: tempfile::TempDir,
    dst: PathBuf,
    outside: PathBuf,
    keys: PathBuf,
    receiver: Option<JoinHandle<wire::Result<contract::Summary>>>,
    addr: String,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        keys::generate(&keys).unwrap();
        let dst = dir.path().join("dst");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep me").unwrap();
        let mut s = Scene {
            _dir: dir,
            dst,
            outside,
            keys,
            receiver: None,
            addr: String::new(),
        };
        s.listen();
        s
    }

    /// Starts a receiver for one transfer into the target.
    fn listen(&mut self) {
        let id = keys::load(&self.keys, Side::Receiver).unwrap();
        let l = Listener::bind(
            "127.0.0.1:0",
            net::Handshake::Server(tls::server_config(&id).unwrap()),
            timeouts(),
        )
        .unwrap();
        self.addr = l.local_addr().to_string();
        let dst = self.dst.clone();
        self.receiver = Some(std::thread::spawn(move || {
            let (stream, from) = l.next()?;
            let mut conn = Conn::new(stream, timeouts().idle);
            receive::receive(
                &mut conn,
                &dst,
                ReceiveOptions::default(),
                &from.to_string(),
            )
        }));
    }

    /// Connects as the sender and says hello.
    fn connect(&self) -> Conn {
        self.connect_with(timeouts().idle)
    }

    /// [`Scene::connect`], sending keepalives after a quarter of `idle` without a frame.
    fn connect_with(&self, idle: Duration) -> Conn {
        let id = keys::load(&self.keys, Side::Sender).unwrap();
        let (stream, _) = net::connect(
            &self.addr,
            tls::client_config(&id).unwrap(),
            timeouts(),
            tls::SERVER_NAME,
        )
        .unwrap();
        let mut conn = Conn::new(stream, idle);
        conn.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            side: 0,
            checksum: false,
        })
        .unwrap();
        match conn.recv().unwrap() {
            Message::Hello { side: 1, .. } => {}
            other => panic!("expected the receiver's hello, got {other:?}"),
        }
        conn.send(&Message::Root(attrs(Kind::Dir, 0))).unwrap();
        conn
    }

    fn result(&mut self) -> wire::Result<contract::Summary> {
        self.receiver.take().unwrap().join().unwrap()
    }

    /// The receiver refused the transfer as a protocol violation.
    fn assert_refused(&mut self, what: &str) {
        match self.result() {
            Err(wire::Error::Protocol(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("expected a protocol error about {what:?}, got {other:?}"),
        }
        self.assert_outside_untouched();
    }

    fn assert_outside_untouched(&self) {
        let seen = tree(&self.outside);
        assert_eq!(
            seen.keys().cloned().collect::<Vec<_>>(),
            vec!["precious".to_string()],
            "something was written outside the target"
        );
        assert_eq!(
            std::fs::read(self.outside.join("precious")).unwrap(),
            b"keep me"
        );
        assert!(!Path::new("/etc/pwned").exists());
    }
}

fn timeouts() -> tls::Timeouts {
    tls::Timeouts {
        handshake: Duration::from_secs(5),
        idle: Duration::from_secs(2),
    }
}

fn attrs(kind: Kind, size: u64) -> Attrs {
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Attrs {
        kind,
        perm: if kind == Kind::Dir { 0o755 } else { 0o644 },
        uid,
        gid,
        size,
        mtime: Ts {
            sec: 1_700_000_000,
            nsec: 5,
        },
        atime: Ts {
            sec: 1_700_000_000,
            nsec: 5,
        },
        rdev: 0,
        nlink: 1,
        xattrs: Vec::new(),
    }
}

fn file(name: &[u8], size: u64) -> Message {
    Message::Entry {
        name: name.to_vec(),
        attrs: attrs(Kind::File, size),
        target: Vec::new(),
        group: None,
        hash: None,
    }
}

/// Every path below `root` (not followed through symlinks) with its size.
fn tree(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, m.size());
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out
}

/// The receiver asks for what it wants: read its requests.
fn wants(conn: &mut Conn) -> Vec<u64> {
    let mut all = Vec::new();
    loop {
        match conn.recv().unwrap() {
            Message::Want(w) => all.extend(w),
            Message::WantEnd => return all,
            other => panic!("expected requests, got {other:?}"),
        }
    }
}

#[test]
fn a_dot_dot_name_is_refused() {
    let mut s = Scene::new();
    let mut c = s.connect();
    c.send(&Message::Dir {
        name: b"..".to_vec(),
        attrs: attrs(Kind::Dir, 0),
    })
    .unwrap();
    c.send(&file(b"pwned", 1)).unwrap();
    let _ = c.flush();
    s.assert_refused("..");
}

#[test]
fn an_absolute_path_is_refused() {
    let mut s = Scene::new();
    let mut c = s.connect();
    c.send(&file(b"/etc/pwned", 1)).unwrap();
    let _ = c.flush();
    s.assert_refused("/");
}

#[test]
fn a_name_with_a_slash_is_refused() {
    let mut s = Scene::new();
    let mut c = s.connect();
    c.send(&file(b"../outside/pwned", 1)).unwrap();
    let _ = c.flush();
    s.assert_refused("/");
}

#[test]
fn empty_and_dot_and_nul_names_are_refused() {
    for bad in [&b""[..], b".", b"a\0b"] {
        let mut s = Scene::new();
        let mut c = s.connect();
        c.send(&file(bad, 1)).unwrap();
        let _ = c.flush();
        s.assert_refused("entry name");
    }
}

#[test]
fn a_name_listed_twice_is_refused() {
    let mut s = Scene::new();
    let mut c = s.connect();
    c.send(&Message::Entry {
        name: b"x".to_vec(),
        attrs: attrs(Kind::Symlink, 0),
        target: s.outside.as_os_str().as_encoded_bytes().to_vec(),
        group: None,
        hash: None,
    })
    .unwrap();
    c.send(&Message::Dir {
        name: b"x".to_vec(),
        attrs: attrs(Kind::Dir, 0),
    })
    .unwrap();
    let _ = c.flush();
    s.assert_refused("out of order or twice");
}

/// A symlink the sender had made, pointing outside, then used as a folder: the receiver
/// replaces it with a real folder and never follows it.
#[test]
fn a_symlink_made_earlier_is_never_followed() {
    let mut s = Scene::new();
    let outside = s.outside.as_os_str().as_encoded_bytes().to_vec();
    // First transfer: the symlink, pointing outside the target.
    let mut c = s.connect();
    c.send(&Message::Entry {
        name: b"evil".to_vec(),
        attrs: attrs(Kind::Symlink, 0),
        target: outside,
        group: None,
        hash: None,
    })
    .unwrap();
    c.send(&Message::ListEnd).unwrap();
    assert!(wants(&mut c).is_empty());
    assert!(matches!(c.recv().unwrap(), Message::Done(_)));
    let sum = s.result().unwrap();
    assert_eq!(sum.exit_code, 0);
    assert!(
        std::fs::symlink_metadata(s.dst.join("evil"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Second transfer: the same name as a folder with a file in it.
    s.listen();
    let mut c = s.connect();
    c.send(&Message::Dir {
        name: b"evil".to_vec(),
        attrs: attrs(Kind::Dir, 0),
    })
    .unwrap();
    c.send(&file(b"pwned", 5)).unwrap();
    c.send(&Message::Up).unwrap();
    c.send(&Message::ListEnd).unwrap();
    assert_eq!(wants(&mut c), vec![0]);
    c.send(&Message::FileBegin { file: 0, size: 5 }).unwrap();
    c.send(&Message::Data {
        offset: 0,
        bytes: b"gotya".to_vec(),
    })
    .unwrap();
    c.send(&Message::FileEnd { data_bytes: 5 }).unwrap();
    assert!(matches!(c.recv().unwrap(), Message::Done(_)));
    let sum = s.result().unwrap();
    assert_eq!(sum.exit_code, 0, "{sum:?}");
    let evil = std::fs::symlink_metadata(s.dst.join("evil")).unwrap();
    assert!(evil.is_dir(), "the symlink was replaced by a real folder");
    assert_eq!(std::fs::read(s.dst.join("evil/pwned")).unwrap(), b"gotya");
    s.assert_outside_untouched();
}

/// A symlink planted in the target (by anyone) where the source has a folder.
#[test]
fn a_planted_symlink_in_the_target_is_replaced_not_followed() {
    let mut s = Scene::new();
    std::fs::create_dir_all(&s.dst).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.dst.join("d")).unwrap();
    let mut c = s.connect();
    c.send(&Message::Dir {
        name: b"d".to_vec(),
        attrs: attrs(Kind::Dir, 0),
    })
    .unwrap();
    c.send(&file(b"precious", 3)).unwrap();
    c.send(&Message::Up).unwrap();
    c.send(&Message::ListEnd).unwrap();
    assert_eq!(wants(&mut c), vec![0]);
    c.send(&Message::FileBegin { file: 0, size: 3 }).unwrap();
    c.send(&Message::Data {
        offset: 0,
        bytes: b"bad".to_vec(),
    })
    .unwrap();
    c.send(&Message::FileEnd { data_bytes: 3 }).unwrap();
    assert!(matches!(c.recv().unwrap(), Message::Done(_)));
    assert_eq!(s.result().unwrap().exit_code, 0);
    assert!(std::fs::symlink_metadata(s.dst.join("d")).unwrap().is_dir());
    s.assert_outside_untouched();
}

#[test]
fn an_oversized_frame_is_refused_without_allocating_it() {
    let mut s = Scene::new();
    let mut c = s.connect();
    let mut raw = (u32::MAX - 1).to_be_bytes().to_vec();
    raw.extend_from_slice(b"\x05");
    c.send_raw(&raw).unwrap();
    s.assert_refused("frame");
}

/// Lists one file of `listed` bytes, then sends what `content` sends; returns the summary.
fn lying_file(content: impl FnOnce(&mut Conn)) -> (Scene, contract::Summary) {
    let mut s = Scene::new();
    let mut c = s.connect();
    c.send(&file(b"f", 10)).unwrap();
    c.send(&file(b"g", 2)).unwrap();
    c.send(&Message::ListEnd).unwrap();
    assert_eq!(wants(&mut c), vec![0, 1]);
    content(&mut c);
    // The next file is still received: one lie fails one entry.
    c.send(&Message::FileBegin { file: 1, size: 2 }).unwrap();
    c.send(&Message::Data {
        offset: 0,
        bytes: b"ok".to_vec(),
    })
    .unwrap();
    c.send(&Message::FileEnd { data_bytes: 2 }).unwrap();
    assert!(matches!(c.recv().unwrap(), Message::Done(_)));
    let sum = s.result().unwrap();
    assert_eq!(std::fs::read(s.dst.join("g")).unwrap(), b"ok");
    let names: Vec<String> = tree(&s.dst).into_keys().collect();
    assert!(
        !names.iter().any(|n| n.contains(".pvcb-tmp")),
        "a temporary file was left: {names:?}"
    );
    s.assert_outside_untouched();
    (s, sum)
}

fn assert_failed_f(s: &Scene, sum: &contract::Summary, what: &str) {
    assert_eq!(sum.exit_code, 23, "{sum:?}");
    assert_eq!(sum.entries.failed, 1, "{sum:?}");
    assert_eq!(sum.errors[0].path, "f");
    assert!(sum.errors[0].error.contains(what), "{:?}", sum.errors);
    assert!(!s.dst.join("f").exists());
}

#[test]
fn more_bytes_than_the_file_has_fail_that_entry() {
    let (s, sum) = lying_file(|c| {
        c.send(&Message::FileBegin { file: 0, size: 10 }).unwrap();
        c.send(&Message::Data {
            offset: 0,
            bytes: vec![b'x'; 20],
        })
        .unwrap();
        c.send(&Message::FileEnd { data_bytes: 20 }).unwrap();
    });
    assert_failed_f(&s, &sum, "past its end");
}

#[test]
fn fewer_bytes_than_announced_fail_that_entry() {
    let (s, sum) = lying_file(|c| {
        c.send(&Message::FileBegin { file: 0, size: 10 }).unwrap();
        c.send(&Message::Data {
            offset: 0,
            bytes: vec![b'x'; 5],
        })
        .unwrap();
        c.send(&Message::FileEnd { data_bytes: 10 }).unwrap();
    });
    assert_failed_f(&s, &sum, "announced 10 bytes of data and sent 5");
}

#[test]
fn a_size_other_than_the_listed_one_fails_that_entry() {
    let (s, sum) = lying_file(|c| {
        c.send(&Message::FileBegin { file: 0, size: 11 }).unwrap();
        c.send(&Message::Data {
            offset: 0,
            bytes: vec![b'x'; 11],
        })
        .unwrap();
        c.send(&Message::FileEnd { data_bytes: 11 }).unwrap();
    });
    assert_failed_f(&s, &sum, "announced 11 bytes");
}

#[test]
fn compressed_data_that_expands_beyond_its_announced_length_fails_that_entry() {
    let (s, sum) = lying_file(|c| {
        c.send(&Message::FileBegin { file: 0, size: 10 }).unwrap();
        // Ten bytes announced, a megabyte inside.
        let bomb = zstd_frame(&vec![0u8; 1 << 20]);
        c.send(&Message::Compressed {
            offset: 0,
            raw_len: 10,
            bytes: bomb,
        })
        .unwrap();
        c.send(&Message::FileEnd { data_bytes: 10 }).unwrap();
    });
    assert_failed_f(&s, &sum, "does not expand to its announced length");
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

#[test]
fn a_silent_sender_is_given_up_after_the_idle_timeout() {
    let mut s = Scene::new();
    // Keepalives only after half an hour: this sender just stops.
    let mut c = s.connect_with(Duration::from_secs(3600));
    c.flush().unwrap();
    let t0 = std::time::Instant::now();
    match s.result() {
        Err(wire::Error::Net { what, .. }) => assert!(what.contains("sent nothing"), "{what}"),
        other => panic!("expected an idle timeout, got {other:?}"),
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[test]
fn a_busy_sender_stays_connected_through_keepalives() {
    let mut s = Scene::new();
    let mut c = s.connect();
    c.send(&file(b"f", 0)).unwrap();
    c.flush().unwrap();
    // Twice the receiver's idle timeout without a frame of the transfer.
    std::thread::sleep(Duration::from_secs(4));
    c.send(&Message::ListEnd).unwrap();
    assert_eq!(wants(&mut c), vec![0]);
    c.send(&Message::FileBegin { file: 0, size: 0 }).unwrap();
    c.send(&Message::FileEnd { data_bytes: 0 }).unwrap();
    assert!(matches!(c.recv().unwrap(), Message::Done(_)));
    assert_eq!(s.result().unwrap().exit_code, 0);
    assert!(s.dst.join("f").exists());
}

#[test]
fn an_unchanged_chunk_without_an_older_version_fails_that_entry() {
    let (s, sum) = lying_file(|c| {
        c.send(&Message::FileBegin { file: 0, size: 10 }).unwrap();
        c.send(&Message::Same { offset: 0, len: 10 }).unwrap();
        c.send(&Message::FileEnd { data_bytes: 0 }).unwrap();
    });
    assert_failed_f(&s, &sum, "unchanged");
}

#[test]
fn a_sender_that_skips_a_file_breaks_the_protocol() {
    let mut s = Scene::new();
    let mut c = s.connect();
    c.send(&file(b"f", 1)).unwrap();
    c.send(&Message::ListEnd).unwrap();
    assert_eq!(wants(&mut c), vec![0]);
    c.send(&Message::FileBegin { file: 7, size: 1 }).unwrap();
    let _ = c.flush();
    s.assert_refused("file 7");
}

/// A sender that listed file `a` (number 0), paused, and sent it as asked.
fn one_batch_sent() -> (Scene, Conn) {
    let s = Scene::new();
    let mut c = s.connect();
    c.send(&file(b"a", 1)).unwrap();
    c.send(&Message::ListPause).unwrap();
    assert_eq!(wants(&mut c), vec![0]);
    c.send(&Message::FileBegin { file: 0, size: 1 }).unwrap();
    c.send(&Message::Data {
        offset: 0,
        bytes: b"a".to_vec(),
    })
    .unwrap();
    c.send(&Message::FileEnd { data_bytes: 1 }).unwrap();
    (s, c)
}

/// After a pause of the listing, the receiver asks only for the files listed since: a sender
/// that sends one of the batch before breaks the protocol, and a file that says it shares the
/// content of a file of an earlier batch that was not listed as hard-linked is refused, before
/// anything is linked to it.
#[test]
fn after_a_pause_a_file_of_an_earlier_batch_is_refused() {
    let (mut s, mut c) = one_batch_sent();
    c.send(&file(b"b", 1)).unwrap();
    c.send(&Message::ListPause).unwrap();
    assert_eq!(wants(&mut c), vec![1]);
    c.send(&Message::FileBegin { file: 0, size: 1 }).unwrap();
    let _ = c.flush();
    s.assert_refused("file 0");
    assert_eq!(std::fs::read(s.dst.join("a")).unwrap(), b"a");

    let (mut s, mut c) = one_batch_sent();
    let mut link = file(b"b", 1);
    if let Message::Entry { group, .. } = &mut link {
        *group = Some(0);
    }
    c.send(&link).unwrap();
    let _ = c.flush();
    s.assert_refused("not listed as hard-linked");
    assert!(!s.dst.join("b").exists());
}

/// A transfer that ends in the middle of a file, by a protocol violation or a dropped
/// connection, does not leave the file's temporary copy in the target (with `--no-delete`
/// nothing would ever remove it).
#[test]
fn a_transfer_ended_mid_file_leaves_no_temporary_file() {
    for broken in [false, true] {
        let mut s = Scene::new();
        let mut c = s.connect();
        c.send(&file(b"f", 10)).unwrap();
        c.send(&Message::ListEnd).unwrap();
        assert_eq!(wants(&mut c), vec![0]);
        c.send(&Message::FileBegin { file: 0, size: 10 }).unwrap();
        c.send(&Message::Data {
            offset: 0,
            bytes: b"12345".to_vec(),
        })
        .unwrap();
        if broken {
            c.flush().unwrap();
            drop(c);
            match s.result() {
                Err(wire::Error::Net { what, .. }) => assert!(what.contains("closed"), "{what}"),
                other => panic!("expected a broken connection, got {other:?}"),
            }
        } else {
            c.send(&Message::Up).unwrap();
            let _ = c.flush();
            s.assert_refused("expected a data message");
        }
        let names: Vec<String> = tree(&s.dst).into_keys().collect();
        assert!(
            !names.iter().any(|n| n.contains(".pvcb-tmp")),
            "a temporary file was left: {names:?}"
        );
    }
}

/// The names of the entries of `dir` opened (`IN_OPEN`) while `f` runs, as inotify reports them.
fn opened_in(dir: &Path, f: impl FnOnce()) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: no pointer arguments.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(
        fd >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid descriptor and path.
    let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_OPEN) };
    assert!(
        wd >= 0,
        "inotify_add_watch: {}",
        std::io::Error::last_os_error()
    );
    f();
    let mut names = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: a valid descriptor and a buffer with its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at < n as usize {
            // struct inotify_event: wd, mask, cookie, len, then len bytes of NUL-padded name.
            let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
            let name = &buf[at + 16..at + 16 + len];
            let end = name.iter().position(|&b| b == 0).unwrap_or(len);
            names.push(name[..end].to_vec());
            at += 16 + len;
        }
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    names
}

/// A special file listed under the name of a partly received large file, just before that file:
/// the receiver looks at what is there before it opens it, and never opens anything but a
/// regular file (a device node of that name could be a watchdog or a tape).
#[test]
fn a_special_file_under_the_name_of_a_partly_received_file_is_never_opened() {
    let mut s = Scene::new();
    let big = attrs(Kind::File, wire::delta::DELTA_MIN);
    let part = wire::receive::part_name(c"big", &big.meta())
        .to_bytes()
        .to_vec();
    // What an earlier, broken transfer left of the large file.
    std::fs::create_dir_all(&s.dst).unwrap();
    let part_path = s.dst.join(String::from_utf8(part.clone()).unwrap());
    std::fs::write(&part_path, vec![0u8; 4096]).unwrap();
    let dst = s.dst.clone();
    let opened = opened_in(&dst, || {
        let mut c = s.connect();
        c.send(&Message::Entry {
            name: part.clone(),
            attrs: attrs(Kind::Fifo, 0),
            target: Vec::new(),
            group: None,
            hash: None,
        })
        .unwrap();
        c.send(&Message::Entry {
            name: b"big".to_vec(),
            attrs: big.clone(),
            target: Vec::new(),
            group: None,
            hash: None,
        })
        .unwrap();
        c.send(&Message::ListEnd).unwrap();
        assert_eq!(wants(&mut c), vec![0]);
        drop(c);
        assert!(s.result().is_err(), "the transfer was cut off");
    });
    assert!(
        !opened.contains(&part),
        "the special file was opened: {:?}",
        opened
            .iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect::<Vec<_>>()
    );
    // Listed, so kept: the special file is not removed as an entry the source lacks.
    let kind = std::fs::symlink_metadata(&part_path).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind), "{kind:?}");
}
