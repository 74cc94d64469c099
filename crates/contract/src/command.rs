//! The command line a mover is started with. A caller (the cluster crate, for the mover pod)
//! builds a [`MoverCommand`] and asks it for its arguments, instead of writing flags by hand.

/// Retention of versioned backups: the `--keep-*` flags of `mover backup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the N newest snapshots.
    pub last: Option<u32>,
    /// One per hour for N hours.
    pub hourly: Option<u32>,
    /// One per day for N days.
    pub daily: Option<u32>,
    /// One per week for N weeks.
    pub weekly: Option<u32>,
    /// One per month for N months.
    pub monthly: Option<u32>,
}

impl Retention {
    /// The flags of this retention.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in [
            ("--keep-last", self.last),
            ("--keep-hourly", self.hourly),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
        ] {
            if let Some(v) = value {
                args.push(flag.to_owned());
                args.push(v.to_string());
            }
        }
        args
    }
}

/// What a copy leaves out: the `--exclude`, `--exclude-caches` and `--delete-excluded` flags
/// (patterns of an `--exclude-from` file are read by the caller and passed as `--exclude`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Excludes {
    /// Gitignore-style patterns, in order.
    pub patterns: Vec<String>,
    /// Leave out folders tagged with a `CACHEDIR.TAG`.
    pub caches: bool,
    /// Delete the target's entries that an exclude matches.
    pub delete_excluded: bool,
}

impl Excludes {
    /// Whether nothing is left out.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && !self.caches
    }

    /// The flags of a copy (`mover sync`, `backup`, `restore`).
    pub fn copy_args(&self) -> Vec<String> {
        let mut args = self.verify_args();
        if self.delete_excluded {
            args.push("--delete-excluded".to_owned());
        }
        args
    }

    /// The flags of a comparison with the source (`mover verify --against`), which must leave
    /// out what the copy did.
    pub fn verify_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for p in &self.patterns {
            // `--exclude=PATTERN`: a pattern that starts with `-` stays a value.
            args.push(format!("--exclude={p}"));
        }
        if self.caches {
            args.push("--exclude-caches".to_owned());
        }
        args
    }
}

/// A mover command, as the mover pod runs it. Every copy prints JSON progress lines and its
/// summary (`--progress json`), which is what the caller follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoverCommand {
    /// `mover sync`: make `dst` an exact mirror of `src`, then each `also` folder a mirror of
    /// `dst` (N copies read `src` once).
    Sync {
        /// The source folder.
        src: String,
        /// The target folder.
        dst: String,
        /// More targets, mirrored from `dst`.
        also: Vec<String>,
        /// Flush the targets to the disk before reporting success.
        fsync: bool,
        /// What the copy leaves out.
        excludes: Excludes,
    },
    /// `mover backup`: add a snapshot of `src` to `dst` and apply the retention.
    Backup {
        /// The source folder (or block volume).
        src: String,
        /// The backup folder.
        dst: String,
        /// Which snapshots to keep.
        retention: Retention,
        /// Back up only this folder of `src`.
        subdir: Option<String>,
        /// What the copy leaves out.
        excludes: Excludes,
    },
    /// `mover restore`: copy a snapshot of `backup` into `target`.
    Restore {
        /// The backup folder.
        backup: String,
        /// Where to restore to.
        target: String,
        /// The snapshot's name, or `latest`.
        snapshot: String,
        /// Flush the target to the disk before reporting success.
        fsync: bool,
        /// What the copy leaves out.
        excludes: Excludes,
    },
    /// `mover backup SRC --repository URL`: add a snapshot of `src` to a restic-format
    /// repository and apply the retention to the snapshots of `host`.
    RepositoryBackup {
        /// The source folder.
        src: String,
        /// The repository's URL (a path, `s3:...` or `rest:...`).
        repository: String,
        /// The snapshot's host name: successive runs with the same one form a series, for
        /// retention and for the parent snapshot.
        host: String,
        /// Create the repository when it does not exist yet.
        init: bool,
        /// Which snapshots of the series to keep.
        retention: Retention,
        /// Back up only this folder of `src`.
        subdir: Option<String>,
        /// What the backup leaves out (`delete_excluded` means nothing here).
        excludes: Excludes,
    },
    /// `mover restore --repository URL TARGET`: copy a repository's snapshot into `target`.
    RepositoryRestore {
        /// The repository's URL.
        repository: String,
        /// Where to restore to.
        target: String,
        /// The snapshot's id (or a unique prefix), or `latest`.
        snapshot: String,
        /// The host whose newest snapshot `latest` is.
        host: String,
    },
    /// `mover verify DST --against SRC`: compare a copy with its live source.
    VerifyAgainst {
        /// The copy.
        dst: String,
        /// Its source.
        src: String,
        /// What the copy left out, left out of the comparison too.
        excludes: Excludes,
    },
    /// `mover block`: copy a block volume to another, writing only what differs.
    Block {
        /// The source device.
        src: String,
        /// The target device.
        dst: String,
    },
    /// `mover block --verify-only`: compare two block volumes chunk by chunk, writing nothing.
    BlockCompare {
        /// The source device.
        src: String,
        /// The target device.
        dst: String,
    },
    /// `mover snapshots --json`: list the snapshots of a backup folder.
    Snapshots {
        /// The backup folder.
        dst: String,
    },
    /// `mover send`: mirror `src` into a `mover receive` (met as `peer` says), over mutual TLS.
    Send {
        /// The source folder.
        src: String,
        /// How it meets the receiver.
        peer: SendPeer,
        /// The folder with this side's key and certificate and the receiver's certificate.
        keys: String,
        /// How long to keep trying to connect (and to connect again after a drop), in seconds.
        retry_for_secs: u64,
        /// Compress file content on the wire.
        compress: bool,
        /// What the transfer leaves out.
        excludes: Excludes,
        /// The name to ask for in the TLS hello (SNI), when not the default: a Route's host.
        server_name: Option<String>,
    },
    /// `mover receive`: make `dst` a mirror of what one `mover send` sends to `listen`, or
    /// (`snapshot`) add a snapshot of it to the backup folder `dst`.
    Receive {
        /// The target folder.
        dst: String,
        /// The `ADDR:PORT` to listen at.
        listen: String,
        /// The folder with this side's key and certificate and the sender's certificate.
        keys: String,
        /// How long to wait for the sender to connect again after a drop, in seconds.
        retry_for_secs: u64,
        /// Flush the target to the disk before reporting success.
        fsync: bool,
        /// Compare files whose size and mtime are equal by content too (`--checksum`).
        checksum: bool,
        /// Add a snapshot to `dst`, keeping these (`--snapshot --keep-...`), instead of
        /// making it a mirror.
        snapshot: Option<Retention>,
    },
    /// `mover block SRC --to HOST:PORT` (or `--listen ADDR:PORT --send --tls-client`): send a
    /// block volume to a `mover block DST --listen` over mutual TLS, only the chunks whose hash
    /// differs from the receiver's. Prints the receiver's summary with a `sent` field.
    BlockSend {
        /// The source device or image file.
        src: String,
        /// How it meets the receiver.
        peer: SendPeer,
        /// The folder with this side's key and certificate and the receiver's certificate.
        keys: String,
        /// How long to keep trying to connect (and to connect again after a drop), in seconds.
        retry_for_secs: u64,
        /// Compress chunk data on the wire.
        compress: bool,
        /// The name to ask for in the TLS hello (SNI), when not the default: a Route's host.
        server_name: Option<String>,
    },
    /// `mover block DST --listen ADDR:PORT`: receive a block volume from one
    /// `mover block SRC --to`, writing it as a local `mover block` does.
    BlockReceive {
        /// The destination device or image file.
        dst: String,
        /// The `ADDR:PORT` to listen at.
        listen: String,
        /// The folder with this side's key and certificate and the sender's certificate.
        keys: String,
        /// How long to wait for the sender to connect again after a drop, in seconds.
        retry_for_secs: u64,
    },
    /// `--version`: print the version and exit 0. A pod that mounts claims and does nothing
    /// else (a storage class that provisions only for a pod then provisions them).
    Version,
}

/// How `mover send` meets its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPeer {
    /// It connects to the receiver listening at this `HOST:PORT` (`--to`).
    To(String),
    /// It listens at this `ADDR:PORT` and starts the TLS handshake on the connection it
    /// accepts (`--listen ADDR:PORT --tls-client`): a relay that reaches both movers (the
    /// command's own machine, through port-forwards) joins it to a receiver that listens too.
    Relayed(String),
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const PROGRESS_JSON: [&str; 2] = ["--progress", "json"];

impl MoverCommand {
    /// The arguments of the `pvc-backup` binary that run this command.
    pub fn args(&self) -> Vec<String> {
        let fsync = |on: bool| {
            if on {
                vec!["--fsync".to_owned()]
            } else {
                Vec::new()
            }
        };
        match self {
            MoverCommand::Sync {
                src,
                dst,
                also,
                fsync: f,
                excludes,
            } => {
                let mut args = strings(&["mover", "sync", src, dst]);
                args.extend(fsync(*f));
                args.extend(strings(&PROGRESS_JSON));
                args.extend(excludes.copy_args());
                for a in also {
                    args.extend(strings(&["--also", a]));
                }
                args
            }
            MoverCommand::Backup {
                src,
                dst,
                retention,
                subdir,
                excludes,
            } => {
                let mut args = strings(&["mover", "backup", src, dst]);
                args.extend(strings(&PROGRESS_JSON));
                args.extend(retention.args());
                if let Some(d) = subdir {
                    args.extend(strings(&["--subdir", d]));
                }
                args.extend(excludes.copy_args());
                args
            }
            MoverCommand::Restore {
                backup,
                target,
                snapshot,
                fsync: f,
                excludes,
            } => {
                let mut args =
                    strings(&["mover", "restore", backup, target, "--snapshot", snapshot]);
                args.extend(fsync(*f));
                args.extend(strings(&PROGRESS_JSON));
                args.extend(excludes.copy_args());
                args
            }
            MoverCommand::RepositoryBackup {
                src,
                repository,
                host,
                init,
                retention,
                subdir,
                excludes,
            } => {
                let mut args = strings(&[
                    "mover",
                    "backup",
                    src,
                    "--repository",
                    repository,
                    "--host",
                    host,
                ]);
                if *init {
                    args.push("--init".to_owned());
                }
                args.extend(strings(&PROGRESS_JSON));
                args.extend(retention.args());
                if let Some(d) = subdir {
                    args.extend(strings(&["--subdir", d]));
                }
                args.extend(excludes.verify_args());
                args
            }
            MoverCommand::RepositoryRestore {
                repository,
                target,
                snapshot,
                host,
            } => {
                let mut args = strings(&[
                    "mover",
                    "restore",
                    "--repository",
                    repository,
                    target,
                    "--snapshot",
                    snapshot,
                    "--host",
                    host,
                ]);
                args.extend(strings(&PROGRESS_JSON));
                args
            }
            MoverCommand::VerifyAgainst { dst, src, excludes } => {
                let mut args = strings(&["mover", "verify", dst, "--against", src]);
                args.extend(excludes.verify_args());
                args
            }
            MoverCommand::Block { src, dst } => {
                let mut args = strings(&["mover", "block", src, dst]);
                args.extend(strings(&PROGRESS_JSON));
                args
            }
            MoverCommand::BlockCompare { src, dst } => {
                strings(&["mover", "block", src, dst, "--verify-only"])
            }
            MoverCommand::Snapshots { dst } => strings(&["mover", "snapshots", dst, "--json"]),
            // The wire's sides print their summary with `--json` (after a `done` progress line).
            MoverCommand::Send {
                src,
                peer,
                keys,
                retry_for_secs,
                compress,
                excludes,
                server_name,
            } => {
                let mut args = strings(&["mover", "send", src]);
                match peer {
                    SendPeer::To(to) => args.extend(strings(&["--to", to])),
                    SendPeer::Relayed(listen) => {
                        args.extend(strings(&["--listen", listen, "--tls-client"]));
                    }
                }
                args.extend(strings(&["--keys", keys]));
                if let Some(name) = server_name {
                    args.extend(["--server-name".to_owned(), name.clone()]);
                }
                args.push("--json".to_owned());
                args.extend(["--retry-for".to_owned(), format!("{retry_for_secs}s")]);
                if *compress {
                    args.push("--compress".to_owned());
                }
                args.extend(excludes.copy_args());
                args
            }
            MoverCommand::Receive {
                dst,
                listen,
                keys,
                retry_for_secs,
                fsync: f,
                checksum,
                snapshot,
            } => {
                let mut args =
                    strings(&["mover", "receive", dst, "--listen", listen, "--keys", keys]);
                args.extend(fsync(*f));
                if *checksum {
                    args.push("--checksum".to_owned());
                }
                if let Some(keep) = snapshot {
                    args.push("--snapshot".to_owned());
                    args.extend(keep.args());
                }
                args.push("--json".to_owned());
                args.extend(["--retry-for".to_owned(), format!("{retry_for_secs}s")]);
                args
            }
            // Block volumes over the wire print the summary like a local `mover block`.
            MoverCommand::BlockSend {
                src,
                peer,
                keys,
                retry_for_secs,
                compress,
                server_name,
            } => {
                let mut args = strings(&["mover", "block", src]);
                match peer {
                    SendPeer::To(to) => args.extend(strings(&["--to", to])),
                    SendPeer::Relayed(listen) => {
                        args.extend(strings(&["--listen", listen, "--send", "--tls-client"]));
                    }
                }
                args.extend(strings(&["--keys", keys]));
                if let Some(name) = server_name {
                    args.extend(["--server-name".to_owned(), name.clone()]);
                }
                args.extend(strings(&PROGRESS_JSON));
                args.extend(["--retry-for".to_owned(), format!("{retry_for_secs}s")]);
                if *compress {
                    args.push("--compress".to_owned());
                }
                args
            }
            MoverCommand::BlockReceive {
                dst,
                listen,
                keys,
                retry_for_secs,
            } => {
                let mut args =
                    strings(&["mover", "block", dst, "--listen", listen, "--keys", keys]);
                args.extend(strings(&PROGRESS_JSON));
                args.extend(["--retry-for".to_owned(), format!("{retry_for_secs}s")]);
                args
            }
            MoverCommand::Version => strings(&["--version"]),
        }
    }

    /// One of each command with every option given, for checks that the binary accepts what
    /// [`MoverCommand::args`] renders.
    pub fn examples() -> Vec<MoverCommand> {
        let excludes = Excludes {
            patterns: vec!["*.tmp".into(), "-odd".into()],
            caches: true,
            delete_excluded: true,
        };
        let retention = Retention {
            last: Some(1),
            hourly: Some(2),
            daily: Some(3),
            weekly: Some(4),
            monthly: Some(5),
        };
        vec![
            MoverCommand::Sync {
                src: "/source".into(),
                dst: "/backup".into(),
                also: vec!["/backup-2".into(), "/backup-3".into()],
                fsync: true,
                excludes: excludes.clone(),
            },
            MoverCommand::Backup {
                src: "/source".into(),
                dst: "/backup".into(),
                retention,
                subdir: Some("data".into()),
                excludes: excludes.clone(),
            },
            MoverCommand::Restore {
                backup: "/backup".into(),
                target: "/source".into(),
                snapshot: "latest".into(),
                fsync: true,
                excludes: excludes.clone(),
            },
            MoverCommand::RepositoryBackup {
                src: "/source".into(),
                repository: "s3:http://s3.example:8333/bucket/shop".into(),
                host: "shop/data".into(),
                init: true,
                retention,
                subdir: Some("data".into()),
                excludes: Excludes {
                    delete_excluded: false,
                    ..excludes.clone()
                },
            },
            MoverCommand::RepositoryRestore {
                repository: "s3:http://s3.example:8333/bucket/shop".into(),
                target: "/target".into(),
                snapshot: "latest".into(),
                host: "shop/data".into(),
            },
            MoverCommand::VerifyAgainst {
                dst: "/backup".into(),
                src: "/source".into(),
                excludes: excludes.clone(),
            },
            MoverCommand::Block {
                src: "/source".into(),
                dst: "/backup".into(),
            },
            MoverCommand::BlockCompare {
                src: "/source".into(),
                dst: "/backup".into(),
            },
            MoverCommand::Snapshots {
                dst: "/backup".into(),
            },
            MoverCommand::Send {
                src: "/source".into(),
                peer: SendPeer::To("receiver.shop.svc:7443".into()),
                keys: "/keys".into(),
                retry_for_secs: 120,
                compress: true,
                excludes: excludes.clone(),
                server_name: Some("copy-lab.apps.example.com".into()),
            },
            MoverCommand::Send {
                src: "/source".into(),
                peer: SendPeer::Relayed("0.0.0.0:7443".into()),
                keys: "/keys".into(),
                retry_for_secs: 120,
                compress: false,
                excludes: Excludes::default(),
                server_name: None,
            },
            MoverCommand::Receive {
                dst: "/backup".into(),
                listen: "0.0.0.0:7443".into(),
                keys: "/keys".into(),
                retry_for_secs: 120,
                fsync: true,
                checksum: true,
                snapshot: None,
            },
            MoverCommand::Receive {
                dst: "/backup".into(),
                listen: "0.0.0.0:7443".into(),
                keys: "/keys".into(),
                retry_for_secs: 120,
                fsync: true,
                checksum: false,
                snapshot: Some(Retention {
                    last: Some(3),
                    daily: Some(7),
                    ..Retention::default()
                }),
            },
            MoverCommand::BlockSend {
                src: "/dev/source".into(),
                peer: SendPeer::To("receiver.shop.svc:7443".into()),
                keys: "/keys".into(),
                retry_for_secs: 120,
                compress: true,
                server_name: Some("copy-lab.apps.example.com".into()),
            },
            MoverCommand::BlockSend {
                src: "/dev/source".into(),
                peer: SendPeer::Relayed("0.0.0.0:7443".into()),
                keys: "/keys".into(),
                retry_for_secs: 120,
                compress: false,
                server_name: None,
            },
            MoverCommand::BlockReceive {
                dst: "/dev/target".into(),
                listen: "0.0.0.0:7443".into(),
                keys: "/keys".into(),
                retry_for_secs: 120,
            },
            MoverCommand::Version,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(c: &MoverCommand) -> String {
        c.args().join(" ")
    }

    #[test]
    fn each_command_renders_its_flags_in_order() {
        let lines: Vec<String> = MoverCommand::examples().iter().map(line).collect();
        assert_eq!(
            lines,
            [
                "mover sync /source /backup --fsync --progress json --exclude=*.tmp --exclude=-odd \
                 --exclude-caches --delete-excluded --also /backup-2 --also /backup-3",
                "mover backup /source /backup --progress json --keep-last 1 --keep-hourly 2 \
                 --keep-daily 3 --keep-weekly 4 --keep-monthly 5 --subdir data --exclude=*.tmp \
                 --exclude=-odd --exclude-caches --delete-excluded",
                "mover restore /backup /source --snapshot latest --fsync --progress json \
                 --exclude=*.tmp --exclude=-odd --exclude-caches --delete-excluded",
                "mover backup /source --repository s3:http://s3.example:8333/bucket/shop --host \
                 shop/data --init --progress json --keep-last 1 --keep-hourly 2 --keep-daily 3 \
                 --keep-weekly 4 --keep-monthly 5 --subdir data --exclude=*.tmp --exclude=-odd \
                 --exclude-caches",
                "mover restore --repository s3:http://s3.example:8333/bucket/shop /target \
                 --snapshot latest --host shop/data --progress json",
                "mover verify /backup --against /source --exclude=*.tmp --exclude=-odd \
                 --exclude-caches",
                "mover block /source /backup --progress json",
                "mover block /source /backup --verify-only",
                "mover snapshots /backup --json",
                "mover send /source --to receiver.shop.svc:7443 --keys /keys --server-name copy-lab.apps.example.com --json --retry-for \
                 120s --compress --exclude=*.tmp --exclude=-odd --exclude-caches --delete-excluded",
                "mover send /source --listen 0.0.0.0:7443 --tls-client --keys /keys --json \
                 --retry-for 120s",
                "mover receive /backup --listen 0.0.0.0:7443 --keys /keys --fsync --checksum --json --retry-for 120s",
                "mover receive /backup --listen 0.0.0.0:7443 --keys /keys --fsync --snapshot \
                 --keep-last 3 --keep-daily 7 --json --retry-for 120s",
                "mover block /dev/source --to receiver.shop.svc:7443 --keys /keys --server-name \
                 copy-lab.apps.example.com --progress json --retry-for 120s --compress",
                "mover block /dev/source --listen 0.0.0.0:7443 --send --tls-client --keys /keys \
                 --progress json --retry-for 120s",
                "mover block /dev/target --listen 0.0.0.0:7443 --keys /keys --progress json \
                 --retry-for 120s",
                "--version",
            ]
        );
    }

    #[test]
    fn options_left_out_render_no_flag() {
        let c = MoverCommand::Backup {
            src: "/source".into(),
            dst: "/backup".into(),
            retention: Retention::default(),
            subdir: None,
            excludes: Excludes::default(),
        };
        assert_eq!(line(&c), "mover backup /source /backup --progress json");
        let c = MoverCommand::Sync {
            src: "/a".into(),
            dst: "/b".into(),
            also: Vec::new(),
            fsync: false,
            excludes: Excludes::default(),
        };
        assert_eq!(line(&c), "mover sync /a /b --progress json");
    }
}
