//! Seed inputs captured from real transfers: the wire's own sender and receiver, each on a
//! thread of its own, joined by an in-memory pipe that records what each side sends. What the
//! sender sent is a seed of the `receiver` target, what the receiver sent one of the `sender`
//! target, and every frame of either one of the `message` target.
//!
//! Each target writes its seeds into its corpus folder (the first folder named on its command
//! line) when it starts, so the seeds always speak the protocol of the code being fuzzed.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use wire::frame::Conn;
use wire::receive::ReceiveOptions;
use wire::send::SendOptions;

use crate::scene::{Scene, clear};
use crate::{ReceiverInput, SenderInput, frames};

/// One side's end of an in-memory connection, recording what it sends.
struct Pipe {
    rx: Receiver<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    pending: Vec<u8>,
    pos: usize,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.pending.len() {
            match self.rx.recv() {
                Ok(v) => (self.pending, self.pos) = (v, 0),
                // The other side is gone: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = (self.pending.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        self.tx
            .send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Two connected ends, and what each sends.
fn pair() -> ((Pipe, Arc<Mutex<Vec<u8>>>), (Pipe, Arc<Mutex<Vec<u8>>>)) {
    let (a_tx, b_rx) = channel();
    let (b_tx, a_rx) = channel();
    let end = |rx, tx| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let pipe = Pipe {
            rx,
            tx,
            pending: Vec::new(),
            pos: 0,
            log: log.clone(),
        };
        (pipe, log)
    };
    (end(a_rx, a_tx), end(b_rx, b_tx))
}

/// A transfer to capture.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Names its seeds.
    pub name: &'static str,
    /// Into the scene's laid-out target (else into an empty one).
    pub into_target: bool,
    /// `send --subdir`.
    pub subdir: Option<&'static str>,
    /// `send --compress`.
    pub compress: bool,
    /// `receive --checksum`.
    pub checksum: bool,
    /// `receive --no-delete`.
    pub no_delete: bool,
    /// The exit code both sides end with.
    pub expect: u8,
}

const BASE: Scenario = Scenario {
    name: "",
    into_target: true,
    subdir: None,
    compress: true,
    checksum: false,
    no_delete: false,
    expect: 0,
};

/// The transfers seeds are captured from. Content is compressed except in one, so that the
/// large file's zeros take a few bytes and the seeds stay small.
pub const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "full",
        into_target: false,
        ..BASE
    },
    // Goes on from the partly received large file; removes what the source lacks, replaces
    // the symlinks and the file where the source has folders.
    Scenario {
        name: "update",
        ..BASE
    },
    Scenario {
        name: "checksum",
        checksum: true,
        ..BASE
    },
    Scenario {
        name: "keep",
        no_delete: true,
        ..BASE
    },
    Scenario {
        name: "subdir",
        subdir: Some("dir"),
        compress: false,
        ..BASE
    },
    Scenario {
        name: "refused",
        subdir: Some("empty-dir"),
        expect: 254,
        ..BASE
    },
];

/// What a captured transfer sent each way, and how each side ended.
#[derive(Debug)]
pub struct Capture {
    /// What was run.
    pub scenario: Scenario,
    /// The sender's bytes.
    pub from_sender: Vec<u8>,
    /// The receiver's bytes.
    pub from_receiver: Vec<u8>,
    /// The sender's exit code.
    pub sender_code: u8,
    /// The receiver's exit code.
    pub receiver_code: u8,
}

impl Capture {
    /// The seed of the `receiver` target.
    pub fn receiver_seed(&self) -> Vec<u8> {
        let mut seed = vec![ReceiverInput::flags(&self.receive_options())];
        seed.extend_from_slice(&self.from_sender);
        seed
    }

    /// The seed of the `sender` target.
    pub fn sender_seed(&self) -> Vec<u8> {
        let mut seed = vec![SenderInput::flags(&self.send_options())];
        seed.extend_from_slice(&self.from_receiver);
        seed
    }

    fn receive_options(&self) -> ReceiveOptions {
        ReceiveOptions {
            checksum: self.scenario.checksum,
            no_delete: self.scenario.no_delete,
            ..ReceiveOptions::default()
        }
    }

    fn send_options(&self) -> SendOptions {
        SendOptions {
            subdir: self.scenario.subdir.map(PathBuf::from),
            compress: self.scenario.compress,
            ..SendOptions::default()
        }
    }
}

/// Runs one transfer from the scene's source and records it.
pub fn capture(scene: &Scene, scenario: Scenario) -> Capture {
    if scenario.into_target {
        scene.reset_target();
    } else {
        scene.clear_target();
    }
    let ((s_end, s_log), (r_end, r_log)) = pair();
    let mut cap = Capture {
        scenario,
        from_sender: Vec::new(),
        from_receiver: Vec::new(),
        sender_code: 0,
        receiver_code: 0,
    };
    let (ropts, sopts) = (cap.receive_options(), cap.send_options());
    let target = scene.target.clone();
    let receiver = std::thread::spawn(move || {
        let mut conn = Conn::without_keepalives(Box::new(r_end));
        match wire::receive::receive(&mut conn, &target, ropts, "capture") {
            Ok(s) => s.exit_code,
            Err(e) => e.exit_code().code(),
        }
    });
    let mut conn = Conn::without_keepalives(Box::new(s_end));
    let mut sent = wire::send::Sent::default();
    cap.sender_code = match wire::send::send_counted(&mut conn, &scene.source, &sopts, &mut sent) {
        Ok(s) => s.exit_code,
        Err(e) => e.exit_code().code(),
    };
    drop(conn);
    cap.receiver_code = receiver.join().expect("the receiver thread");
    let take = |log: Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *log.lock().expect("log"));
    cap.from_sender = take(s_log);
    cap.from_receiver = take(r_log);
    cap
}

/// The seeds of `target` (`message`, `receiver` or `sender`), by name, captured in a scene of
/// their own below `root`; panics when a transfer did not end as its scenario says.
pub fn seeds(target: &str, root: &Path) -> Vec<(String, Vec<u8>)> {
    let scene = Scene::new(root.to_path_buf());
    let mut out = Vec::new();
    let mut frames_seen = BTreeSet::new();
    for sc in SCENARIOS {
        let cap = capture(&scene, sc);
        assert_eq!(
            (cap.sender_code, cap.receiver_code),
            (sc.expect, sc.expect),
            "the seed transfer {:?} ended otherwise than expected",
            sc.name
        );
        match target {
            "receiver" => out.push((format!("seed-{}", sc.name), cap.receiver_seed())),
            "sender" => out.push((format!("seed-{}", sc.name), cap.sender_seed())),
            _ => {
                for f in frames(&cap.from_sender)
                    .into_iter()
                    .chain(frames(&cap.from_receiver))
                {
                    if frames_seen.insert(f.to_vec()) {
                        out.push((format!("seed-frame-{}", frames_seen.len()), f.to_vec()));
                    }
                }
            }
        }
    }
    clear(root);
    out
}

/// Writes the seeds of `target` into its corpus folder: the first folder named on the command
/// line, as `cargo fuzz run` names it. Without one (a single input being run again, say),
/// nothing is written.
pub fn write_seeds(target: &str) {
    let Some(corpus) = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .find(|p| p.is_dir())
    else {
        return;
    };
    let root = std::env::temp_dir().join(format!("pvc-backup-fuzz-seeds.{}", std::process::id()));
    for (name, bytes) in seeds(target, &root) {
        let path = corpus.join(name);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("cannot write the seed {}: {e}", path.display()));
    }
}
