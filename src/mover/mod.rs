//! `pvc-backup mover ...`: the copy engine's commands, one file per verb, and the flags they
//! share.

mod backup;
mod block;
mod block_wire;
mod check;
mod copy;
mod keys;
mod receive;
mod repository;
mod restore;
mod send;
mod snapshots;
mod sync;
mod verify;
mod wire_args;

use contract::ExitCode as Exit;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use crate::output::{self, Output, ProgressMode};

/// Arguments of `pvc-backup mover`.
#[derive(Debug, clap::Args)]
pub struct MoverArgs {
    #[command(subcommand)]
    command: MoverCommand,
}

#[derive(Debug, Subcommand)]
enum MoverCommand {
    /// Make DST an exact mirror of SRC: content, sparse files, owners, modes, times, xattrs,
    /// ACLs, hard links, symlinks and special files. Entries only in DST are removed.
    Sync(sync::SyncArgs),
    /// Add a snapshot of SRC to DST/snapshots/ (unchanged entries are hard links to the previous
    /// snapshot), point DST/latest at it, and apply the --keep-* retention rules.
    Backup(backup::BackupArgs),
    /// List the snapshots in DST.
    Snapshots(snapshots::SnapshotsArgs),
    /// Re-read snapshots and check them against their manifests (or a copy against a live
    /// source, --against): exit 0 only when nothing differs.
    Verify(verify::VerifyArgs),
    /// Copy a snapshot of BACKUP (or one folder of it, --subdir) into TARGET with every
    /// attribute, removing what the snapshot lacks unless --no-delete.
    Restore(restore::RestoreArgs),
    /// Copy a raw block device or image file to another, writing only what differs.
    Block(block::BlockArgs),
    /// Walk SRC without copying: owners and groups found, entries this process cannot read, and
    /// whether a copy with the current privileges would be complete (exit 0) or not (exit 23).
    Check(check::CheckArgs),
    /// Make a fresh pair of self-signed certificates for `send` and `receive` in DIR:
    /// sender.key, sender.crt, receiver.key, receiver.crt (refuses to replace existing ones).
    Keys(keys::KeysArgs),
    /// Mirror SRC into a `receive` on another machine over mutual TLS 1.3 (pinned
    /// certificates); only files that differ are sent. Exits with the receiver's result.
    Send(send::SendArgs),
    /// Make DST an exact mirror of what a `send` sends, as `sync` would: same attributes,
    /// deletions, exit codes and safety (temporary names, the target lock).
    Receive(receive::ReceiveArgs),
}

/// When to act as each entry's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImpersonateArg {
    /// After the mover itself was refused (EACCES/EPERM).
    Auto,
    /// Read every source entry as its owner.
    Always,
    /// Never.
    Never,
}

impl From<ImpersonateArg> for mover::Impersonate {
    fn from(a: ImpersonateArg) -> Self {
        match a {
            ImpersonateArg::Auto => mover::Impersonate::Auto,
            ImpersonateArg::Always => mover::Impersonate::Always,
            ImpersonateArg::Never => mover::Impersonate::Never,
        }
    }
}

/// Options shared by the commands that copy a tree.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// Copy only this folder of SRC (relative, no `..`, no symlinks), like BCK_FOLDER.
    #[arg(long, value_name = "DIR")]
    subdir: Option<PathBuf>,
    /// Also compare the content of files whose size and mtime are equal.
    #[arg(long, short = 'c')]
    checksum: bool,
    /// Keep entries of the target that the source lacks, instead of removing them.
    #[arg(long)]
    no_delete: bool,
    /// Record a manifest with BLAKE3 hashes of what the target holds (always done for backups),
    /// so that `mover verify` can check the copy later without its source.
    #[arg(long)]
    manifest: bool,
    /// Copy an empty source (a mirror then deletes everything in DST); refused by default with
    /// exit code 254.
    #[arg(long)]
    allow_empty: bool,
    /// At the end, flush DST's filesystem to the disk (one `syncfs`) and fail with exit code 1
    /// when a write did not reach it. Backups always do.
    #[arg(long)]
    fsync: bool,
    /// When to act as each entry's owner (root_squash NFS, no CAP_DAC_OVERRIDE).
    #[arg(long, value_enum, default_value_t = ImpersonateArg::Auto)]
    impersonate: ImpersonateArg,
    #[command(flatten)]
    excludes: ExcludeArgs,
    /// Copy without first checking that the target's free space and inodes hold what the copy
    /// adds (the copy still stops at the first write that finds no room).
    #[arg(long)]
    no_space_check: bool,
    /// Worker threads (default: twice the CPUs this process may use, at least 4).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    threads: usize,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Seconds between JSON progress lines.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    progress_interval: f64,
    /// Log each entry as it is handled (-vv for more).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
}

/// In a pod the mover is process 1, for which the kernel ignores a signal without a handler: a
/// deleted pod (or Job) would wait its whole grace period for a SIGKILL. SIGTERM and SIGINT are
/// blocked here, before any other thread starts (threads inherit the mask), and one thread waits
/// for them and ends the process with 128 + the signal's number. What was being written stays a
/// temporary file that the next run removes; the target's lock is an flock, released on exit.
fn stop_on_sigterm() {
    // SAFETY: sigset operations on a local set; pthread_sigmask on the calling thread.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        set
    };
    let waiter = std::thread::Builder::new()
        .name("sigterm".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait on a set of blocked signals, writing into a local.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                let name = if sig == libc::SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                eprintln!("pvc-backup: stopped by {name}; the next run completes the copy");
                std::process::exit(128 + sig);
            }
        });
    if waiter.is_err() {
        // Without the waiter the signals must not stay blocked.
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }
}

/// What a copy leaves out; the same flags on the cluster commands are passed on to the mover.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExcludeArgs {
    /// Leave out entries matching this gitignore-style pattern, relative to SRC (or --subdir):
    /// `*.tmp` at any depth, `/cache` at the top only, `logs/` folders only, `!keep.tmp`
    /// re-includes. Repeatable; the last matching pattern wins.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from FILE, one a line as in a .gitignore (`#` comments); they come
    /// before the --exclude patterns. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
    /// Leave out folders that hold a CACHEDIR.TAG file with the standard signature.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Also delete the target's entries that an exclude matches (they are left alone
    /// otherwise).
    #[arg(long)]
    pub delete_excluded: bool,
}

impl ExcludeArgs {
    /// All patterns in order: those of the --exclude-from files first, then the --exclude
    /// ones. A file that cannot be read is a usage error that names it.
    pub fn patterns(&self) -> mover::Result<Vec<String>> {
        let mut all = Vec::new();
        for f in &self.exclude_from {
            all.extend(mover::exclude::Excludes::read_file(f)?);
        }
        all.extend(self.exclude.iter().cloned());
        Ok(all)
    }

    /// The mover's excludes, checked.
    pub fn excludes(&self) -> mover::Result<mover::exclude::Excludes> {
        mover::exclude::Excludes::new(&self.patterns()?, self.exclude_caches, self.delete_excluded)
    }

    /// Whether any exclude flag was given.
    pub fn given(&self) -> bool {
        !self.exclude.is_empty()
            || !self.exclude_from.is_empty()
            || self.exclude_caches
            || self.delete_excluded
    }
}

/// Runs a mover subcommand and returns its exit code.
pub fn run(args: MoverArgs) -> anyhow::Result<ExitCode> {
    stop_on_sigterm();
    match args.command {
        MoverCommand::Sync(a) => sync::run(a),
        MoverCommand::Backup(a) => backup::run(a),
        MoverCommand::Snapshots(a) => snapshots::run(a),
        MoverCommand::Restore(a) => restore::run(a),
        MoverCommand::Verify(a) => verify::run(a),
        MoverCommand::Block(a) => block::run(a),
        MoverCommand::Check(a) => check::run(a),
        MoverCommand::Keys(a) => keys::run(a),
        MoverCommand::Send(a) => send::run(a),
        MoverCommand::Receive(a) => receive::run(a),
    }
}

/// Sets up logging on stderr: errors with `-q`, warnings by default, entries with `-v`.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        // The repository libraries log what the command reports itself (a missing file at an
        // S3 path, a damaged pack, entries a restore removes); -v shows their logs.
        (false, 0) => "warn,opendal=off,rustic_core=off,rustic_backend=off",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PVC_BACKUP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::logging::colour())
        .with_target(false)
        .without_time()
        .try_init();
}

/// Refuses the options of tree copies that mean nothing for a block volume; `Some(exit code)`
/// when one was given.
fn not_for_block(cmd: &str, c: &CopyArgs) -> Option<ExitCode> {
    let given = [
        (c.subdir.is_some(), "--subdir"),
        (c.checksum, "--checksum"),
        (c.no_delete, "--no-delete"),
        (c.manifest, "--manifest"),
        (c.allow_empty, "--allow-empty"),
        (c.impersonate != ImpersonateArg::Auto, "--impersonate"),
        (c.excludes.given(), "--exclude"),
    ];
    let (_, flag) = given.iter().find(|(on, _)| *on)?;
    Some(output::failed(
        cmd,
        format_args!("{flag} applies to folders, not to block volumes; leave it out"),
        Exit::Usage.into(),
    ))
}

fn block_threads(c: &CopyArgs) -> usize {
    if c.threads == 0 {
        ::block::default_threads()
    } else {
        c.threads
    }
}

impl CopyArgs {
    /// How the command shows itself, from --progress, -q and -v.
    fn output(&self) -> Output {
        Output::new(self.progress, self.quiet, self.verbose > 0)
    }
}
