//! `pvc-backup mover ...`: the copy engine's commands.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use contract::{ExitCode as Exit, Summary};
use mover::Stats;

use crate::block_cmd;

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
    Sync(SyncArgs),
    /// Add a snapshot of SRC to DST/snapshots/ (unchanged entries are hard links to the previous
    /// snapshot), point DST/latest at it, and apply the --keep-* retention rules.
    Backup(BackupArgs),
    /// List the snapshots in DST.
    Snapshots(SnapshotsArgs),
    /// Re-read snapshots and check them against their manifests (or a copy against a live
    /// source, --against): exit 0 only when nothing differs.
    Verify(VerifyArgs),
    /// Copy a snapshot of BACKUP (or one folder of it, --subdir) into TARGET with every
    /// attribute, removing what the snapshot lacks unless --no-delete.
    Restore(RestoreArgs),
    /// Copy a raw block device or image file to another, writing only what differs.
    Block(block_cmd::BlockArgs),
    /// Walk SRC without copying: owners and groups found, entries this process cannot read, and
    /// whether a copy with the current privileges would be complete (exit 0) or not (exit 23).
    Check(CheckArgs),
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

/// Arguments of `pvc-backup mover check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The source folder.
    src: PathBuf,
    /// Check only this folder of SRC.
    #[arg(long, value_name = "DIR")]
    subdir: Option<PathBuf>,
    /// When to act as each entry's owner.
    #[arg(long, value_enum, default_value_t = ImpersonateArg::Auto)]
    impersonate: ImpersonateArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, nothing otherwise.
    Auto,
    /// A progress bar on stderr.
    Bar,
    /// One JSON object a line on stdout, then the summary as JSON.
    Json,
    /// Nothing but the final line.
    None,
}

/// Arguments of `pvc-backup mover sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The source folder (in the mover pod: /source).
    src: PathBuf,
    /// The target folder (in the mover pod: /backup); created if missing.
    dst: PathBuf,
    /// Once DST is done, make DIR a mirror of DST too (repeatable): N copies read SRC once.
    #[arg(long, value_name = "DIR")]
    also: Vec<PathBuf>,
    #[command(flatten)]
    copy: CopyArgs,
}

/// Arguments of `pvc-backup mover backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The source folder (in the mover pod: /source).
    src: PathBuf,
    /// The backup folder (in the mover pod: /backup); created if missing.
    dst: PathBuf,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent days (UTC).
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Back up SRC as a block volume even though it is a regular file (a raw disk image); a block
    /// device always is one. Each snapshot is then a sparse image of the volume.
    #[arg(long)]
    block: bool,
    /// Bytes per chunk of a block volume's snapshots, a multiple of 4K [default: 4M].
    #[arg(long, value_name = "SIZE", value_parser = block_cmd::parse_chunk_size)]
    chunk_size: Option<u64>,
    #[command(flatten)]
    copy: CopyArgs,
}

/// Arguments of `pvc-backup mover verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The backup folder (or a mirror, with --against).
    dst: PathBuf,
    /// Which snapshot: its name, `latest` or `all`.
    #[arg(long, value_name = "ID", default_value = "latest")]
    snapshot: String,
    /// Compare with this live source instead of the manifest.
    #[arg(long, value_name = "SRC")]
    against: Option<PathBuf>,
    /// With --against: leave out what the copy left out (the same --exclude, --exclude-from
    /// and --exclude-caches flags).
    #[command(flatten)]
    excludes: ExcludeArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `pvc-backup mover restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup folder (the DST of `mover backup`).
    backup: PathBuf,
    /// Where to restore to; created if missing.
    target: PathBuf,
    /// Which snapshot: its name, or `latest`.
    #[arg(long, value_name = "ID", default_value = "latest")]
    snapshot: String,
    /// Block volumes: after restoring, read both sides again and compare BLAKE3 per chunk.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    copy: CopyArgs,
}

/// Arguments of `pvc-backup mover snapshots`.
#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// The backup folder.
    dst: PathBuf,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
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
        MoverCommand::Sync(a) => sync(a),
        MoverCommand::Backup(a) => backup(a),
        MoverCommand::Snapshots(a) => snapshots(a),
        MoverCommand::Restore(a) => restore(a),
        MoverCommand::Verify(a) => verify(a),
        MoverCommand::Block(a) => block_cmd::run(a),
        MoverCommand::Check(a) => check(a),
    }
}

/// Sets up logging on stderr: errors with `-q`, warnings by default, entries with `-v`.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
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

fn sync(a: SyncArgs) -> anyhow::Result<ExitCode> {
    if let Some(bad) = overlapping_also(&a.src, &a.dst, &a.also) {
        eprintln!("pvc-backup mover sync: {bad}");
        return Ok(Exit::Usage.into());
    }
    let first = copy_code(
        "sync",
        &a.copy,
        |opts| mover::Mirror::prepare(&a.src, &a.dst, opts),
        mover::Mirror::stats,
        |job| job.run().map(|s| (s, None)),
    )?;
    // The extra copies mirror what DST now holds, so they are only worth making from a DST
    // that was written (done or partial), never after a refusal or a fatal error.
    if !Exit::try_from(first).is_ok_and(Exit::wrote_target) {
        return Ok(ExitCode::from(first));
    }
    let mut worst = first;
    for extra in &a.also {
        let code = copy_code(
            &format!("sync (also {})", extra.display()),
            &a.copy,
            // DST already is the --subdir, and an empty one was accepted by the first copy.
            |opts| {
                let opts = mover::Options {
                    subdir: None,
                    allow_empty: true,
                    ..opts
                };
                mover::Mirror::prepare(&a.dst, extra, opts)
            },
            mover::Mirror::stats,
            |job| job.run().map(|s| (s, None)),
        )?;
        if code != Exit::Ok && (worst == Exit::Ok || code != Exit::Partial) {
            worst = code;
        }
    }
    Ok(ExitCode::from(worst))
}

/// Refuses an `--also` folder that is SRC, DST or another one, or lies inside or around one of
/// them: the mirror would copy into its own source or delete another copy's files.
fn overlapping_also(src: &Path, dst: &Path, also: &[PathBuf]) -> Option<String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let nested = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
    let (src, dst) = (abs(src), abs(dst));
    for (i, extra) in also.iter().enumerate() {
        let e = abs(extra);
        for (what, other) in [("SRC", &src), ("DST", &dst)] {
            if nested(&e, other) {
                return Some(format!(
                    "--also {} overlaps {what} {}: give a folder outside both",
                    extra.display(),
                    other.display()
                ));
            }
        }
        if let Some(prev) = also[..i].iter().find(|p| nested(&e, &abs(p))) {
            return Some(format!(
                "--also {} overlaps --also {}: give each copy its own folder",
                extra.display(),
                prev.display()
            ));
        }
    }
    None
}

fn backup(a: BackupArgs) -> anyhow::Result<ExitCode> {
    let policy = mover::retention::Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
    };
    let is_device = std::fs::metadata(&a.src)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
    if a.block || is_device {
        if let Some(code) = not_for_block("backup", &a.copy) {
            return Ok(code);
        }
        let options = block::versions::BackupOptions {
            copy: block::Options {
                chunk_size: a.chunk_size.unwrap_or(block::DEFAULT_CHUNK_SIZE),
                threads: block_threads(&a.copy),
                ..block::Options::default()
            },
            policy,
        };
        return block_cmd::backup(&a.src, &a.dst, &options, block_output(&a.copy));
    }
    if a.chunk_size.is_some() {
        eprintln!(
            "pvc-backup mover backup: --chunk-size applies to block volumes only ({} is not a \
             block device; add --block to back up an image file as a volume)",
            a.src.display()
        );
        return Ok(Exit::Usage.into());
    }
    copy_command(
        "backup",
        &a.copy,
        |opts| mover::snapshot::Backup::prepare(&a.src, &a.dst, opts, policy),
        mover::snapshot::Backup::stats,
        |job| {
            job.run().map(|r| {
                let line = format!(
                    "snapshot {}{}{}",
                    r.snapshot,
                    r.previous.as_ref().map_or(String::new(), |p| format!(
                        " (unchanged entries linked to {p})"
                    )),
                    removed_note(&r.removed, &r.cleaned),
                );
                let json = serde_json::to_value(&r).unwrap_or_default();
                (r.summary, Some((json, line)))
            })
        },
    )
}

fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    if block::versions::is_block_backup(&a.dst) || a.dst.is_file() {
        return block_cmd::verify(&a.dst, &a.snapshot, a.against.as_deref(), a.json);
    }
    if a.excludes.given() && (a.against.is_none() || a.excludes.delete_excluded) {
        eprintln!(
            "pvc-backup mover verify: --exclude, --exclude-from and --exclude-caches apply to a \
             comparison with a live source (--against SRC), and --delete-excluded to copies; \
             leave them out"
        );
        return Ok(Exit::Usage.into());
    }
    let excludes = match a.excludes.excludes() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pvc-backup mover verify: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let results =
        match mover::verify::verify_excluding(&a.dst, &a.snapshot, a.against.as_deref(), &excludes)
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("pvc-backup mover verify: {e}");
                return Ok(ExitCode::from(e.exit_code()));
            }
        };
    let ok = results.iter().all(|(_, o)| o.ok());
    if a.json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|(id, o)| serde_json::json!({"snapshot": id, "ok": o.ok(), "outcome": o}))
            .collect();
        println!("{}", serde_json::to_string(&list)?);
    } else {
        for (id, o) in &results {
            let head = if o.ok() { "ok" } else { "FAILED" };
            println!(
                "{id}: {head}: {} entries, {} read, {} differences",
                o.entries,
                human_bytes(o.bytes_read),
                o.differences_total
            );
            for d in &o.differences {
                println!("  {}: {}", d.path, d.what);
            }
        }
    }
    Ok(if ok { Exit::Ok } else { Exit::Partial }.into())
}

fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    if block::versions::is_block_backup(&a.backup) {
        if let Some(code) = not_for_block("restore", &a.copy) {
            return Ok(code);
        }
        let options = block::Options {
            threads: block_threads(&a.copy),
            verify: a.verify,
            ..block::Options::default()
        };
        return block_cmd::restore(
            &a.backup,
            &a.snapshot,
            &a.target,
            &options,
            block_output(&a.copy),
        );
    }
    if a.verify {
        eprintln!(
            "pvc-backup mover restore: --verify applies to block volumes; check a restored folder \
             with `pvc-backup mover verify {} --against {}`",
            a.target.display(),
            a.backup.display()
        );
        return Ok(Exit::Usage.into());
    }
    let from = match mover::snapshot::resolve(&a.backup, &a.snapshot) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pvc-backup mover restore: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    copy_command(
        "restore",
        &a.copy,
        |opts| mover::Mirror::prepare(&from, &a.target, opts),
        mover::Mirror::stats,
        |job| job.run().map(|s| (s, None)),
    )
}

fn snapshots(a: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    if block::versions::is_block_backup(&a.dst) {
        return block_cmd::snapshots(&a.dst, a.json);
    }
    let list = match mover::snapshot::list(&a.dst) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pvc-backup mover snapshots: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:<8} {:<10}",
        "SNAPSHOT", "ENTRIES", "SIZE", "UNIQUE", "RESULT", "VERIFIED"
    );
    for s in &list {
        let opt = |v: Option<u64>, f: &dyn Fn(u64) -> String| v.map_or("?".to_string(), f);
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:<8} {:<10}{}",
            s.id,
            opt(s.entries, &|n| n.to_string()),
            opt(s.bytes, &human_bytes),
            human_bytes(s.unique_bytes),
            s.result.as_deref().unwrap_or("?"),
            s.verified.as_deref().unwrap_or("never"),
            if s.latest { "  <- latest" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
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
    eprintln!(
        "pvc-backup mover {cmd}: {flag} applies to folders, not to block volumes; leave it out"
    );
    Some(Exit::Usage.into())
}

fn block_threads(c: &CopyArgs) -> usize {
    if c.threads == 0 {
        block::default_threads()
    } else {
        c.threads
    }
}

fn block_output(c: &CopyArgs) -> block_cmd::Output {
    let terminal = std::io::stderr().is_terminal();
    block_cmd::Output {
        json: c.progress == ProgressMode::Json,
        bar: c.progress == ProgressMode::Bar
            || (c.progress == ProgressMode::Auto && terminal && !c.quiet),
        quiet: c.quiet,
        verbose: c.verbose > 0,
    }
}

/// Runs a copy (`sync` or `backup`): progress while it works, then the summary. `run` may give
/// a JSON document to print instead of the summary and a line to add to the human summary.
fn copy_command<J>(
    cmd: &str,
    c: &CopyArgs,
    prepare: impl FnOnce(mover::Options) -> mover::Result<J>,
    stats_of: impl Fn(&J) -> Arc<Stats>,
    run: impl FnOnce(J) -> mover::Result<(Summary, Option<(serde_json::Value, String)>)>,
) -> anyhow::Result<ExitCode> {
    copy_code(cmd, c, prepare, stats_of, run).map(ExitCode::from)
}

/// [`copy_command`], returning the exit code as a number.
fn copy_code<J>(
    cmd: &str,
    c: &CopyArgs,
    prepare: impl FnOnce(mover::Options) -> mover::Result<J>,
    stats_of: impl Fn(&J) -> Arc<Stats>,
    run: impl FnOnce(J) -> mover::Result<(Summary, Option<(serde_json::Value, String)>)>,
) -> anyhow::Result<u8> {
    init_logging(c.verbose, c.quiet);
    if c.excludes.delete_excluded && c.no_delete {
        eprintln!(
            "pvc-backup mover {cmd}: --delete-excluded deletes what --no-delete keeps; give one \
             of them"
        );
        return Ok(Exit::Usage.code());
    }
    let excludes = match c.excludes.excludes() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pvc-backup mover {cmd}: {e}");
            return Ok(e.exit_code());
        }
    };
    let mode = match c.progress {
        ProgressMode::Auto if std::io::stderr().is_terminal() && !c.quiet => ProgressMode::Bar,
        ProgressMode::Auto => ProgressMode::None,
        m => m,
    };
    let opts = mover::Options {
        subdir: c.subdir.clone(),
        checksum: c.checksum,
        allow_empty: c.allow_empty,
        threads: c.threads,
        count_ahead: matches!(mode, ProgressMode::Bar | ProgressMode::Json),
        impersonate: c.impersonate.into(),
        no_delete: c.no_delete,
        manifest: c.manifest,
        fsync: c.fsync,
        excludes,
        no_space_check: c.no_space_check,
    };
    let job = match prepare(opts) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("pvc-backup mover {cmd}: {e}");
            return Ok(e.exit_code());
        }
    };
    let stats = stats_of(&job);
    let done = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(c.progress_interval.max(0.05));
    // Without progress output there is nothing to wake up for.
    let reporter = (mode != ProgressMode::None).then(|| {
        let (stats, done) = (stats.clone(), done.clone());
        std::thread::spawn(move || report(mode, &stats, &done, interval))
    });
    let result = run(job);
    done.store(true, Ordering::Relaxed);
    if let Some(r) = reporter {
        let _ = r.join();
    }
    let (summary, extra) = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pvc-backup mover {cmd}: {e}");
            return Ok(e.exit_code());
        }
    };
    if mode == ProgressMode::Json {
        let mut out = std::io::stdout().lock();
        let last = stats.event("done", Duration::from_millis(summary.duration_ms), 0);
        writeln!(out, "{}", serde_json::to_string(&last)?)?;
        match &extra {
            Some((json, _)) => writeln!(out, "{}", serde_json::to_string(json)?)?,
            None => writeln!(out, "{}", serde_json::to_string(&summary)?)?,
        }
    }
    if !c.quiet || summary.exit_code != 0 {
        let mut text = human_summary(cmd, &summary);
        if let Some((_, line)) = extra {
            text = format!("pvc-backup mover {cmd}: {line}\n{text}");
        }
        eprintln!("{text}");
    }
    Ok(summary.exit_code)
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    let report = match mover::check::check(&a.src, a.subdir.as_deref(), a.impersonate.into()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pvc-backup mover check: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::from(report.exit_code));
    }
    let p = &report.privileges;
    println!(
        "source {}: {} entries, {}",
        report.source,
        report.entries,
        human_bytes(report.bytes)
    );
    println!(
        "running as uid {} with capabilities [{}]{}",
        p.euid,
        p.capabilities.join(" "),
        if p.can_act_as_owners {
            ", can act as each owner"
        } else {
            ""
        }
    );
    let ids = |v: &[mover::check::IdCount]| {
        v.iter()
            .map(|c| format!("{} ({} entries, {})", c.id, c.entries, human_bytes(c.bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("owners (uid): {}", ids(&report.owners));
    println!("groups (gid): {}", ids(&report.groups));
    if report.identities_total > 0 {
        println!(
            "{} entries refuse their owner and are read as another identity:",
            report.identities_total
        );
        for u in &report.identities {
            println!(
                "  {}: as uid {} gid {} ({})",
                u.path,
                u.uid,
                u.gid,
                u.via.describe()
            );
        }
    }
    if report.complete {
        println!("complete: a copy with these privileges would read everything");
    } else {
        println!(
            "INCOMPLETE: {} entries cannot be read with these privileges:",
            report.unreadable_total
        );
        for e in &report.unreadable {
            println!("  {}: {}: {}", e.path, e.op, e.error);
        }
    }
    Ok(ExitCode::from(report.exit_code))
}

fn human_summary(cmd: &str, s: &Summary) -> String {
    let e = &s.entries;
    let mut line = format!(
        "pvc-backup mover {cmd}: {}: {} entries ({} copied, {} linked, {} updated, {} unchanged, \
         {} deleted{}{}), {} of {} copied in {:.1}s",
        s.result,
        e.total,
        e.copied,
        e.linked,
        e.updated,
        e.unchanged,
        e.deleted,
        if e.skipped > 0 {
            format!(", {} skipped", e.skipped)
        } else {
            String::new()
        },
        if e.excluded > 0 {
            format!(", {} excluded", e.excluded)
        } else {
            String::new()
        },
        human_bytes(s.bytes.copied),
        human_bytes(s.bytes.total),
        s.duration_ms as f64 / 1000.0
    );
    if e.failed > 0 {
        line.push_str(&format!(
            "\n{} entries FAILED; the summary in the target's .pvc-backup/last-sync.json lists each:",
            e.failed
        ));
        for err in s.errors.iter().take(20) {
            line.push_str(&format!("\n  {}: {}: {}", err.path, err.op, err.error));
        }
    }
    line
}

/// What a backup run removed besides making its snapshot (empty when nothing), for the line that
/// reports the snapshot: file and block backups say it alike.
pub(crate) fn removed_note(removed: &[String], cleaned: &[String]) -> String {
    let mut note = String::new();
    if !removed.is_empty() {
        note.push_str(&format!("; removed by retention: {}", removed.join(", ")));
    }
    if !cleaned.is_empty() {
        note.push_str(&format!(
            "; removed left-overs of runs that died: {}",
            cleaned.join(", ")
        ));
    }
    note
}

pub(crate) use mover::space::human_bytes;

fn report(mode: ProgressMode, stats: &Stats, done: &AtomicBool, interval: Duration) {
    let t0 = Instant::now();
    match mode {
        ProgressMode::Json => {
            let mut last = (Instant::now(), 0u64);
            while !sleep_until_done(done, interval) {
                let now = Instant::now();
                let bytes = stats.bytes_done.load(Ordering::Relaxed);
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let rate = ((bytes.saturating_sub(last.1)) as f64 / secs) as u64;
                last = (now, bytes);
                let ev = stats.event("sync", t0.elapsed(), rate);
                if let Ok(line) = serde_json::to_string(&ev) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
        }
        ProgressMode::Bar => {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} \
                     {binary_bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            while !sleep_until_done(done, Duration::from_millis(200)) {
                let ev = stats.event("sync", t0.elapsed(), 0);
                bar.set_length(ev.bytes_known);
                bar.set_position(ev.bytes_done);
                let eta = if ev.scan_complete {
                    format!(" ETA {}", indicatif::HumanDuration(bar.eta()))
                } else {
                    " (counting)".to_string()
                };
                bar.set_message(format!(
                    "{}/{} entries{}{}",
                    ev.entries_done,
                    ev.entries_known,
                    if ev.errors > 0 {
                        format!(", {} errors", ev.errors)
                    } else {
                        String::new()
                    },
                    eta
                ));
            }
            bar.finish_and_clear();
        }
        ProgressMode::Auto | ProgressMode::None => {}
    }
}

/// Sleeps up to `d`, waking early when the run is done; returns whether it is.
fn sleep_until_done(done: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if done.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
    done.load(Ordering::Relaxed)
}
