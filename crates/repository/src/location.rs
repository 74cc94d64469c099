//! Where a repository is: restic's own URL syntax, turned into rustic's backends.
//!
//! - a local path, or `local:PATH`;
//! - `s3:http://HOST:PORT/BUCKET/PREFIX` or `s3:https://...`, and restic's short form
//!   `s3:HOST/BUCKET/PREFIX` (HTTPS); the credentials come from `AWS_ACCESS_KEY_ID` and
//!   `AWS_SECRET_ACCESS_KEY`, the region from `AWS_DEFAULT_REGION` or `AWS_REGION` (default
//!   `us-east-1`). Buckets are addressed by path, as SeaweedFS, MinIO and Ceph want;
//! - `rest:http(s)://HOST:PORT/PATH`, a restic REST server.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rustic_backend::BackendOptions;
use rustic_core::RepositoryBackends;

use crate::{Error, Result};

/// A parsed repository URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    url: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Local(PathBuf),
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
    },
    Rest(String),
}

/// S3 credentials and region, read from the environment by [`S3Env::from_env`].
#[derive(Debug, Clone, Default)]
pub struct S3Env {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// `AWS_DEFAULT_REGION` or `AWS_REGION`.
    pub region: Option<String>,
}

impl S3Env {
    /// The variables of this process's environment (empty ones count as unset).
    pub fn from_env() -> S3Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Env {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            region: var("AWS_DEFAULT_REGION").or_else(|| var("AWS_REGION")),
        }
    }
}

impl Location {
    /// Parses a repository URL in restic's syntax.
    pub fn parse(url: &str) -> Result<Location> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "repository URL {url:?}: {why} (use a local path, s3:http(s)://HOST:PORT/BUCKET/PREFIX or rest:http(s)://HOST:PORT/PATH)"
            ))
        };
        let kind = if url.is_empty() {
            return Err(bad("it is empty"));
        } else if let Some(rest) = url.strip_prefix("s3:") {
            let (scheme, rest) = match rest.split_once("://") {
                Some(("http", r)) => ("http", r),
                Some(("https", r)) => ("https", r),
                Some((s, _)) => return Err(bad(&format!("S3 needs http or https, not {s:?}"))),
                None => ("https", rest),
            };
            let mut parts = rest.splitn(3, '/');
            let host = parts.next().unwrap_or_default();
            let bucket = parts.next().unwrap_or_default();
            let prefix = parts.next().unwrap_or_default().trim_matches('/');
            if host.is_empty() {
                return Err(bad("it names no S3 host"));
            }
            if bucket.is_empty() {
                return Err(bad("it names no bucket after the host"));
            }
            Kind::S3 {
                endpoint: format!("{scheme}://{host}"),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            }
        } else if let Some(rest) = url.strip_prefix("rest:") {
            if !(rest.starts_with("http://") || rest.starts_with("https://")) {
                return Err(bad(
                    "a REST repository needs an http:// or https:// address",
                ));
            }
            Kind::Rest(rest.to_string())
        } else if let Some(path) = url.strip_prefix("local:") {
            Kind::Local(PathBuf::from(path))
        } else if let Some((scheme, _)) = url.split_once(':')
            && !scheme.contains('/')
            && !scheme.is_empty()
        {
            return Err(bad(&format!("the kind {scheme:?} is not supported here")));
        } else {
            Kind::Local(PathBuf::from(url))
        };
        if let Kind::Local(p) = &kind
            && p.as_os_str().is_empty()
        {
            return Err(bad("it names no folder"));
        }
        Ok(Location {
            url: url.to_string(),
            kind,
        })
    }

    /// The URL as the user gave it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The folder of a local repository.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match &self.kind {
            Kind::Local(p) => Some(p),
            _ => None,
        }
    }

    /// rustic's options for this location, credentials included.
    pub(crate) fn backend_options(&self, env: &S3Env) -> Result<BackendOptions> {
        let mut options = BTreeMap::new();
        let repository = match &self.kind {
            Kind::Local(p) => format!("local:{}", p.display()),
            Kind::Rest(url) => format!("rest:{url}"),
            Kind::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let (Some(key), Some(secret)) = (&env.access_key_id, &env.secret_access_key) else {
                    return Err(Error::Usage(format!(
                        "repository {}: no S3 credentials; set AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY (in a cluster: name the Secret that holds them)",
                        self.url
                    )));
                };
                options.insert("endpoint".into(), endpoint.clone());
                options.insert("bucket".into(), bucket.clone());
                options.insert("root".into(), format!("/{prefix}"));
                options.insert(
                    "region".into(),
                    env.region.clone().unwrap_or_else(|| "us-east-1".into()),
                );
                options.insert("access_key_id".into(), key.clone());
                options.insert("secret_access_key".into(), secret.clone());
                // Only what is given here counts: no ~/.aws files, no instance metadata.
                options.insert("disable_config_load".into(), "true".into());
                options.insert("disable_ec2_metadata".into(), "true".into());
                "opendal:s3".to_string()
            }
        };
        Ok(BackendOptions::default()
            .repository(repository)
            .options(options))
    }

    /// The backends of this location.
    pub(crate) fn backends(&self, env: &S3Env) -> Result<RepositoryBackends> {
        self.backend_options(env)?
            .to_backends()
            .map_err(|e| Error::repo(&self.url, crate::open::describe(&e)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(url: &str) -> (String, String, String) {
        match Location::parse(url).unwrap().kind {
            Kind::S3 {
                endpoint,
                bucket,
                prefix,
            } => (endpoint, bucket, prefix),
            k => panic!("{url} parsed as {k:?}"),
        }
    }

    #[test]
    fn s3_urls_in_restics_forms() {
        assert_eq!(
            s3("s3:http://127.0.0.1:8333/bucket/a/b"),
            (
                "http://127.0.0.1:8333".into(),
                "bucket".into(),
                "a/b".into()
            )
        );
        assert_eq!(
            s3("s3:s3.example.com/bkt"),
            ("https://s3.example.com".into(), "bkt".into(), String::new())
        );
        assert_eq!(
            s3("s3:https://h/bkt/p/"),
            ("https://h".into(), "bkt".into(), "p".into())
        );
    }

    #[test]
    fn local_and_rest() {
        assert_eq!(
            Location::parse("/backups/repo").unwrap().local_path(),
            Some(std::path::Path::new("/backups/repo"))
        );
        assert_eq!(
            Location::parse("local:rel/repo").unwrap().local_path(),
            Some(std::path::Path::new("rel/repo"))
        );
        assert!(matches!(
            Location::parse("rest:http://h:8000/r").unwrap().kind,
            Kind::Rest(u) if u == "http://h:8000/r"
        ));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("", "empty"),
            ("s3:http://host", "no bucket"),
            ("s3:ftp://host/b", "http or https"),
            ("rest:host/x", "http://"),
            ("sftp:user@host:/r", "\"sftp\" is not supported"),
            ("local:", "no folder"),
        ] {
            let e = Location::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(e.contains("s3:http(s)://"), "{url}: {e}");
        }
    }

    #[test]
    fn s3_without_credentials_is_refused_before_any_request() {
        let l = Location::parse("s3:http://127.0.0.1:1/bucket").unwrap();
        let e = l.backend_options(&S3Env::default()).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        assert_eq!(e.exit_code(), contract::ExitCode::Usage);
    }
}
