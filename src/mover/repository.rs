//! `--repository URL` on the mover's backup, snapshots, restore and verify: a restic-format
//! repository (a local folder, S3 or a REST server) in place of a backup folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use contract::ExitCode as Exit;
use repository::{Location, PasswordSource, S3Env};

use super::{CopyArgs, ImpersonateArg};
use crate::output;

/// Where a repository is and how to open it.
#[derive(Debug, clap::Args)]
pub struct RepositoryArgs {
    /// A restic-format repository instead of a backup folder: a local path,
    /// s3:http(s)://HOST:PORT/BUCKET/PREFIX (credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY) or rest:http(s)://HOST:PORT/PATH. The password comes from
    /// --password-file, RESTIC_PASSWORD_FILE or RESTIC_PASSWORD.
    #[arg(
        long,
        value_name = "URL",
        env = "RESTIC_REPOSITORY",
        hide_env_values = true
    )]
    pub repository: Option<String>,
    /// Read the repository's password from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "repository")]
    pub password_file: Option<PathBuf>,
}

/// An opened repository address with its password and S3 credentials.
pub struct Repo {
    pub location: Location,
    pub password: String,
    pub env: S3Env,
}

impl RepositoryArgs {
    /// The location, password and credentials, or the exit code of a usage error (printed).
    pub fn open(&self, cmd: &str) -> Result<Option<Repo>, ExitCode> {
        let Some(url) = &self.repository else {
            return Ok(None);
        };
        let fail =
            |e: repository::Error| -> ExitCode { output::failed(cmd, &e, e.exit_code().into()) };
        let location = Location::parse(url).map_err(fail)?;
        let password = PasswordSource::from_env(self.password_file.as_deref())
            .read()
            .map_err(fail)?;
        Ok(Some(Repo {
            location,
            password,
            env: S3Env::from_env(),
        }))
    }
}

/// Refuses the tree-copy options that mean nothing for a repository; `Some(exit code)` when
/// one was given.
pub fn not_for_repository(cmd: &str, c: &CopyArgs, extra: &[(bool, &str)]) -> Option<ExitCode> {
    let mut given = vec![
        (c.checksum, "--checksum"),
        (c.manifest, "--manifest"),
        (c.fsync, "--fsync"),
        (c.no_space_check, "--no-space-check"),
        (c.excludes.delete_excluded, "--delete-excluded"),
    ];
    given.extend_from_slice(extra);
    let (_, flag) = given.iter().find(|(on, _)| *on)?;
    Some(output::failed(
        cmd,
        format_args!("{flag} applies to backup folders, not to a repository; leave it out"),
        Exit::Usage.into(),
    ))
}

/// What `mover backup --repository` needs beyond the copy options.
pub struct BackupSettings<'a> {
    pub src: &'a Path,
    pub init: bool,
    pub host: Option<String>,
    pub tags: Vec<String>,
    pub keep: store::retention::Policy,
}

/// `mover backup SRC --repository URL`.
pub fn backup(repo: Repo, s: BackupSettings<'_>, c: &CopyArgs) -> anyhow::Result<ExitCode> {
    super::init_logging(c.verbose, c.quiet);
    if let Some(code) = not_for_repository("backup", c, &[(c.no_delete, "--no-delete")]) {
        return Ok(code);
    }
    let excludes = match c.excludes.excludes() {
        Ok(e) => e,
        Err(e) => return Ok(output::failed("backup", &e, e.exit_code().into())),
    };
    let opts = repository::backup::Options {
        subdir: c.subdir.clone(),
        impersonate: c.impersonate.into(),
        excludes,
        allow_empty: c.allow_empty,
        host: s.host,
        tags: s.tags,
        keep: s.keep,
        init: s.init,
    };
    let r = match repository::backup::backup(s.src, &repo.location, &repo.password, &repo.env, opts)
    {
        Ok(r) => r,
        Err(e) => return Ok(output::failed("backup", &e, e.exit_code().into())),
    };
    let out = c.output();
    if out.json {
        output::json_line(&r)?;
    }
    if !out.quiet || r.exit_code != 0 {
        eprintln!(
            "pvc-backup mover backup: snapshot {} of {} in {}: {} new, {} changed, {} unchanged \
             files, {} folders, {} read, {} added ({} stored)",
            &r.snapshot[..8.min(r.snapshot.len())],
            r.path,
            repo.location,
            r.files_new,
            r.files_changed,
            r.files_unmodified,
            r.dirs,
            output::human_bytes(r.bytes),
            output::human_bytes(r.data_added),
            output::human_bytes(r.data_added_packed),
        );
        if !r.forgotten.is_empty() {
            eprintln!(
                "pvc-backup mover backup: retention forgot {} snapshot(s) and pruned their data",
                r.forgotten.len()
            );
        }
        for f in r.failed.iter().take(20) {
            eprintln!("  failed: {}: {}", f.path, f.error);
        }
        if r.failed.len() > 20 {
            eprintln!("  ... and {} more", r.failed.len() - 20);
        }
        if !r.failed.is_empty() {
            eprintln!(
                "pvc-backup mover backup: {} entries could not be read and are not in the \
                 snapshot (exit 23)",
                r.failed.len()
            );
        }
    }
    Ok(ExitCode::from(r.exit_code))
}

/// `mover snapshots --repository URL`.
pub fn snapshots(repo: Repo, json: bool) -> anyhow::Result<ExitCode> {
    let list = match repository::snapshots::list(&repo.location, &repo.password, &repo.env) {
        Ok(l) => l,
        Err(e) => return Ok(output::failed("snapshots", &e, e.exit_code().into())),
    };
    if json {
        output::json_line(&list)?;
    } else {
        println!(
            "{:<10} {:<21} {:<20} {:>8} {:>10}  PATH",
            "ID", "TIME", "HOST", "FILES", "SIZE"
        );
        for s in &list {
            println!(
                "{:<10} {:<21} {:<20} {:>8} {:>10}  {}",
                &s.id[..8.min(s.id.len())],
                s.time.get(..19).unwrap_or(&s.time).replace('T', " "),
                s.host,
                s.files.map_or_else(|| "-".into(), |f| f.to_string()),
                s.bytes.map_or_else(|| "-".into(), output::human_bytes),
                s.paths.join(","),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mover restore --repository URL TARGET`.
pub fn restore(
    repo: Repo,
    target: &Path,
    snapshot: &str,
    host: Option<String>,
    c: &CopyArgs,
) -> anyhow::Result<ExitCode> {
    super::init_logging(c.verbose, c.quiet);
    let extra = [
        (c.allow_empty, "--allow-empty"),
        (c.impersonate != ImpersonateArg::Auto, "--impersonate"),
        (c.excludes.given(), "--exclude"),
    ];
    if let Some(code) = not_for_repository("restore", c, &extra) {
        return Ok(code);
    }
    let opts = repository::restore::Options {
        snapshot: snapshot.to_string(),
        subdir: c.subdir.clone(),
        no_delete: c.no_delete,
        host,
    };
    let r = match repository::restore::restore(
        &repo.location,
        &repo.password,
        &repo.env,
        target,
        &opts,
    ) {
        Ok(r) => r,
        Err(e) => return Ok(output::failed("restore", &e, e.exit_code().into())),
    };
    let out = c.output();
    if out.json {
        output::json_line(&r)?;
    }
    if !out.quiet {
        eprintln!(
            "pvc-backup mover restore: snapshot {} ({}) restored into {}, {} entries removed",
            &r.snapshot[..8.min(r.snapshot.len())],
            r.path,
            target.display(),
            r.removed
        );
    }
    Ok(ExitCode::from(r.exit_code))
}

/// `mover verify --repository URL [--read-data]`.
pub fn verify(repo: Repo, read_data: bool, json: bool) -> anyhow::Result<ExitCode> {
    let r = match repository::verify::verify(&repo.location, &repo.password, &repo.env, read_data) {
        Ok(r) => r,
        Err(e) => return Ok(output::failed("verify", &e, e.exit_code().into())),
    };
    if json {
        output::json_line(&r)?;
    } else {
        for w in &r.warnings {
            eprintln!("pvc-backup mover verify: warning: {w}");
        }
        for e in &r.errors {
            eprintln!("pvc-backup mover verify: error: {e}");
        }
        eprintln!(
            "pvc-backup mover verify: {} {}: {}",
            repo.location,
            if read_data {
                "(structure and every pack's content)"
            } else {
                "(structure; add --read-data to read every pack)"
            },
            if r.errors.is_empty() {
                "no errors"
            } else {
                "DAMAGED"
            }
        );
    }
    Ok(if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        Exit::Partial.into()
    })
}
