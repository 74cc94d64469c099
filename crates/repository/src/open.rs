//! Opening a repository (creating it with `--init`), with its password.

use std::path::Path;

use rustic_core::repofile::MasterKey;
use rustic_core::{
    ConfigOptions, Credentials, KeyOptions, OpenStatus, Repository, RepositoryOptions, RusticError,
    WriteBackend,
};

use crate::location::{Location, S3Env};
use crate::{Error, Result};

/// Where the repository's password comes from, in restic's order: `--password-file`, then
/// `RESTIC_PASSWORD_FILE`, then `RESTIC_PASSWORD`.
#[derive(Debug, Clone, Default)]
pub struct PasswordSource {
    /// `--password-file`.
    pub file: Option<std::path::PathBuf>,
    /// `RESTIC_PASSWORD_FILE`.
    pub env_file: Option<std::path::PathBuf>,
    /// `RESTIC_PASSWORD`.
    pub env: Option<String>,
}

impl PasswordSource {
    /// `--password-file` (if given) and this process's environment.
    pub fn from_env(file: Option<&Path>) -> PasswordSource {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        PasswordSource {
            file: file.map(Path::to_path_buf),
            env_file: var("RESTIC_PASSWORD_FILE").map(Into::into),
            env: var("RESTIC_PASSWORD").map(|v| v.to_string_lossy().into_owned()),
        }
    }

    /// Reads the password. A file's password is its first line, as restic reads it.
    pub fn read(&self) -> Result<String> {
        let from_file = |p: &Path, what: &str| -> Result<String> {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Error::Usage(format!(
                    "cannot read the repository password from {what} {}: {e}",
                    p.display()
                ))
            })?;
            let line = text.lines().next().unwrap_or_default();
            if line.is_empty() {
                return Err(Error::Usage(format!(
                    "the password file {} ({what}) is empty; write the repository's password in it",
                    p.display()
                )));
            }
            Ok(line.to_string())
        };
        if let Some(p) = &self.file {
            return from_file(p, "--password-file");
        }
        if let Some(p) = &self.env_file {
            return from_file(p, "RESTIC_PASSWORD_FILE");
        }
        if let Some(p) = &self.env {
            return Ok(p.clone());
        }
        Err(Error::Usage(
            "no repository password: set RESTIC_PASSWORD or RESTIC_PASSWORD_FILE, or give \
             --password-file (in a cluster: name the Secret that holds it)"
                .into(),
        ))
    }
}

/// An open repository.
pub type Open = Repository<OpenStatus>;

/// Opens the repository at `location`; with `init`, creates it first when it does not exist.
/// Without `init`, a location that holds no repository is an error that says to add `--init`,
/// and nothing is written there.
pub fn open(location: &Location, password: &str, init: bool, env: &S3Env) -> Result<Open> {
    let url = location.url();
    let backends = location.backends(env)?;
    // No cache: a mover pod's root filesystem is read-only, and each run starts afresh.
    let options = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&options, &backends).map_err(|e| Error::repo(url, describe(&e)))?;
    let exists = repo
        .config_id()
        .map_err(|e| Error::repo(url, describe(&e)))?
        .is_some();
    let credentials = Credentials::password(password);
    if !exists {
        if !init {
            return Err(Error::repo(
                url,
                "there is no repository here; create it with --init (or check the URL)",
            ));
        }
        // Data packs of 16 MiB, restic's own default, instead of rustic's 32 MiB: a backup holds
        // a few packs in memory while it compresses, encrypts and uploads them.
        let mut config = ConfigOptions::default();
        config.set_datapack_size = Some(bytesize::ByteSize::mib(16));
        // The key file first, in restic's settings; then rustic_core writes the config with
        // the master key, and derives no key of its own.
        let create = |e: &dyn std::fmt::Display| Error::repo(url, format!("cannot create it: {e}"));
        let be = backends.repository();
        be.create().map_err(|e| create(&describe(&e)))?;
        // Key files without a config: an --init cut off between the two. A second key of
        // another master key would make the first one restic tries open nothing; say so instead.
        let keys = be
            .list(rustic_core::FileType::Key)
            .map_err(|e| create(&describe(&e)))?;
        if !keys.is_empty() {
            return Err(Error::repo(
                url,
                format!(
                    "it holds {} key file(s) but no config, as an --init that was cut off \
                     leaves it; remove its keys/ folder (a repository without a config holds \
                     nothing usable) or give another location",
                    keys.len()
                ),
            ));
        }
        let master = MasterKey::new();
        crate::key::write_key(be.as_ref(), &master, password).map_err(|e| create(&e))?;
        let repo = repo
            .init(
                &Credentials::Masterkey(master),
                &KeyOptions::default(),
                &config,
            )
            .map_err(|e| create(&describe(&e)))?;
        return Ok(repo);
    }
    repo.open(&credentials).map_err(|e| {
        if e.is_incorrect_password() {
            Error::repo(
                url,
                "the password opens none of its keys; give the password it was created with",
            )
        } else {
            Error::repo(url, describe(&e))
        }
    })
}

/// One line for a rustic error: its guidance with the context filled in, and its cause. A
/// refusal of the storage behind it comes first, in words that say what to check.
pub(crate) fn describe(e: &RusticError) -> String {
    let log = e.display_log();
    let log = log.strip_prefix("Error: ").unwrap_or(&log);
    if log.contains("PermissionDenied") {
        return format!(
            "the storage refused access (for S3: check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, and that they may read and write this bucket); it said: {log}"
        );
    }
    if log.contains("ConnectionRefused") || log.contains("error sending request") {
        return format!(
            "the storage cannot be reached (check the host and port of the URL); it said: {log}"
        );
    }
    log.to_string()
}

/// An id in full (64 hex digits): rustic's `Display` gives restic's 8-digit short form.
pub(crate) fn hex(id: &rustic_core::Id) -> String {
    id.to_hex().as_str().to_string()
}
