//! Reaching the cluster as kubectl does: `--kubeconfig`, `KUBECONFIG`, `~/.kube/config`, or the
//! pod's service account when run inside a cluster; `--context` and `-n/--namespace` on top.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::{Error, Result};

/// How to reach the cluster (the flags kubectl users know).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// A kubeconfig file instead of `KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig instead of its current one.
    pub context: Option<String>,
    /// The namespace instead of the context's.
    pub namespace: Option<String>,
}

/// A client and the namespace commands work in.
#[derive(Clone)]
pub struct Kube {
    /// The API client.
    pub client: Client,
    /// The namespace of the claims named on the command line.
    pub namespace: String,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Connects as kubectl would.
pub async fn connect(options: &ConnectOptions) -> Result<Kube> {
    let kc_options = KubeConfigOptions {
        context: options.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&options.kubeconfig, &options.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                Error::Connect(format!(
                    "cannot read the kubeconfig {}: {e}",
                    path.display()
                ))
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &kc_options)
                .await
                .map_err(|e| Error::Connect(format!("kubeconfig {}: {e}", path.display())))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&kc_options)
            .await
            .map_err(|e| Error::Connect(format!("context {context:?}: {e}")))?,
        (None, None) => Config::infer().await.map_err(|e| {
            Error::Connect(format!(
                "no cluster configured ({e}); set KUBECONFIG, pass --kubeconfig, or run inside a \
                 cluster"
            ))
        })?,
    };
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    use_ring_for_tls();
    let client = Client::try_from(config)
        .map_err(|e| Error::Connect(format!("cannot make a client: {e}")))?;
    Ok(Kube { client, namespace })
}

/// The namespace the context `context` (default: the current one) of a kubeconfig names, as
/// kubectl reads it: `default` when it names none. `kubeconfig` is a file, or `None` for
/// `KUBECONFIG` / `~/.kube/config`. For the side of a command in another cluster.
pub fn context_namespace(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<String> {
    let config = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path).map_err(|e| {
            Error::Connect(format!(
                "cannot read the kubeconfig {}: {e}",
                path.display()
            ))
        })?,
        None => Kubeconfig::read().map_err(|e| {
            Error::Connect(format!(
                "cannot read the kubeconfig (KUBECONFIG or ~/.kube/config): {e}"
            ))
        })?,
    };
    let name = context
        .map(str::to_owned)
        .or_else(|| config.current_context.clone())
        .ok_or_else(|| {
            Error::Connect(
                "the kubeconfig has no current context: name one with --to-context".to_owned(),
            )
        })?;
    let found = config
        .contexts
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            Error::Connect(format!(
                "the kubeconfig has no context {name:?}; `kubectl config get-contexts` lists them"
            ))
        })?;
    Ok(found
        .context
        .as_ref()
        .and_then(|c| c.namespace.clone())
        .unwrap_or_else(|| "default".to_owned()))
}

/// Makes ring the process's TLS provider, once, before a client is made. Two providers are
/// compiled in (ring, which the project uses, and aws-lc-rs, which the S3 client of the
/// repository crate brings), and with two rustls will not pick one by itself: kube's client
/// would panic.
pub fn use_ring_for_tls() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one in between; either is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
