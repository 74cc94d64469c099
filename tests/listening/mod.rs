//! A `pvc-backup mover ...` that listens, as the tests of the wire start one: its address read
//! from its stderr, the rest of its stderr gathered as it comes. Shared by the test binaries
//! of `mover send`/`receive` and of `mover block` over the wire.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `pvc-backup mover ...` that listens: its address, read from its stderr, and the rest of
/// its stderr as it comes. Killed when dropped.
pub struct Listening {
    pub child: Child,
    pub addr: String,
    err: Arc<Mutex<String>>,
}

impl Listening {
    pub fn start(mut cmd: Command) -> Listening {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pvc-backup");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut addr = String::new();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(a) = line.split("listening on ").nth(1) {
                addr = a.trim().to_string();
                break;
            }
        }
        assert!(!addr.is_empty(), "it did not listen:\n{seen}");
        let err = Arc::new(Mutex::new(seen));
        let sink = err.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Listening { child, addr, err }
    }

    /// Waits for it to exit (at most `limit`): its exit code, stdout and stderr.
    pub fn wait(mut self, limit: Duration) -> (i32, String, String) {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                self.child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(100));
                let err = self.err.lock().unwrap().clone();
                return (status.code().unwrap_or(-1), out, err);
            }
            assert!(
                t0.elapsed() < limit,
                "still running after {limit:?}:\n{}",
                self.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
