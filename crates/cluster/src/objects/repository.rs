//! A restic-format repository as the mover pod's target: its URL on the command line, its
//! password and S3 keys from a Secret the user names, as environment variables.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};

use crate::{Error, Result};

/// The Secret key (and environment variable) of the repository's password.
pub const PASSWORD_KEY: &str = "RESTIC_PASSWORD";
/// The Secret key (and environment variable) of the S3 access key id.
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// The Secret key (and environment variable) of the S3 secret key.
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// A repository and the Secret that opens it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryTarget {
    /// The URL the mover gets with `--repository`: a path inside the pod, `s3:...` or `rest:...`.
    pub url: String,
    /// The Secret in the claim's namespace with the password (and the S3 keys for `s3:`).
    pub secret: String,
    /// A backup's snapshot series (restic's host); `None`: `NAMESPACE/CLAIM` (see [`host`]).
    pub host: Option<String>,
    /// Do not read the Secret before the Job is made. The command line reads it, with its
    /// user's rights, to stop at once when a key is missing; the operator has no right to read
    /// Secrets, and learns of a missing one from the pod's `CreateContainerConfigError`.
    pub skip_secret_check: bool,
}

impl RepositoryTarget {
    /// Whether the repository is in S3 (and so needs the S3 keys).
    pub fn is_s3(&self) -> bool {
        self.url.starts_with("s3:")
    }

    /// The Secret keys the mover needs, in the order they are given to it.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = vec![PASSWORD_KEY];
        if self.is_s3() {
            keys.extend([ACCESS_KEY_ID, SECRET_ACCESS_KEY]);
        }
        keys
    }

    /// Checks what can be checked without the cluster: a URL and a Secret name.
    pub fn check(&self) -> Result<()> {
        if self.url.trim().is_empty() {
            return Err(Error::Invalid("--repository needs a URL".to_owned()));
        }
        if self.url.starts_with("s3:") && !self.url.starts_with("s3:http") {
            return Err(Error::Invalid(format!(
                "repository {}: give S3 as s3:http(s)://HOST:PORT/BUCKET[/PREFIX]; the mover \
                 has no default endpoint",
                self.url
            )));
        }
        crate::names::check_name("repository Secret", &self.secret, 253)
    }

    /// The mover container's environment: each key from the Secret, never its value.
    pub fn env(&self) -> Vec<EnvVar> {
        self.keys()
            .into_iter()
            .map(|key| EnvVar {
                name: key.to_owned(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: self.secret.clone(),
                        key: key.to_owned(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            })
            .collect()
    }

    /// Whether the Secret is read and checked before anything is made.
    pub fn checks_secret(&self) -> bool {
        !self.skip_secret_check
    }

    /// Checks the Secret as read from the cluster (`None`: it does not exist): every key the
    /// mover needs is there and not empty. Without this, the pod would wait in
    /// `CreateContainerConfigError` until the start timeout.
    pub fn check_secret(&self, namespace: &str, secret: Option<&Secret>) -> Result<()> {
        let Some(secret) = secret else {
            return Err(Error::NotFound(format!(
                "Secret {} not found in namespace {namespace}: create it with the repository's \
                 password{} (kubectl create secret generic {} --from-literal={PASSWORD_KEY}=...{})",
                self.secret,
                if self.is_s3() { " and S3 keys" } else { "" },
                self.secret,
                if self.is_s3() {
                    format!(
                        " --from-literal={ACCESS_KEY_ID}=... --from-literal={SECRET_ACCESS_KEY}=..."
                    )
                } else {
                    String::new()
                }
            )));
        };
        let present = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .is_some_and(|v| !v.0.is_empty())
                || secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .is_some_and(|v| !v.is_empty())
        };
        let missing: Vec<&str> = self.keys().into_iter().filter(|k| !present(k)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "Secret {} in namespace {namespace} has no {} (or it is empty): the mover needs {} \
             for repository {}",
            self.secret,
            missing.join(", "),
            self.keys().join(", "),
            self.url
        )))
    }
}

/// The snapshot host of a claim's backups: the same for every run, so that they form one
/// series for retention and for the parent snapshot.
pub fn host(namespace: &str, claim: &str) -> String {
    format!("{namespace}/{claim}")
}
