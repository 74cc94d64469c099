//! `clone --via local`: the bytes of a transfer between two movers go through the command's own
//! machine, for two namespaces or clusters where neither mover can reach the other.
//!
//! Both movers listen in their pods (the sending one takes the TLS client's part on the
//! connection it accepts, `mover send --listen ADDR --tls-client`). The command opens a
//! port-forward to each pod (through each side's API server and the pod's kubelet) and joins the
//! two streams. The movers' TLS runs end to end through it: this side sees only ciphertext and
//! holds no key. When the joined connection ends while both movers still run (a port-forward or
//! the network broke), it opens fresh port-forwards and joins them again; the movers, run with
//! `--retry-for`, wait for it and go on where they stopped. Port-forwards to running pods that
//! keep failing (a proxy that refuses WebSockets, a kubelet the API server cannot reach) end the
//! run once they have failed for as long as a pod may take to start.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Portforwarder};

use crate::api;
use crate::connect::Kube;
use crate::run::Observer;
use crate::{Error, Result};

/// One mover to reach: the pod of Job `job` in the namespace of `kube`.
#[derive(Clone, Copy)]
pub struct End<'a> {
    /// The client of the mover's cluster, in the mover's namespace.
    pub kube: &'a Kube,
    /// The mover's Job.
    pub job: &'a str,
}

/// How long a port-forward has to report that nothing listens in the pod before it is used.
const SETTLE: Duration = Duration::from_millis(500);

/// The pause between two attempts to join the movers.
const PAUSE: Duration = Duration::from_secs(1);

/// How long port-forwards may fail before the user is told (a mover that does not listen yet
/// refuses the first ones).
const QUIET: Duration = Duration::from_secs(10);

/// Why an attempt to join the movers did not.
enum Missed {
    /// A mover's pod does not run (yet, or any more): following its Job says why.
    NotRunning,
    /// A port-forward to a running pod failed.
    Forward(Error),
}

/// Joins the receiving mover's `port` to the sending mover's, again each time the joined
/// connection ends, until the future is dropped (when both movers' Jobs have been followed to
/// their end). Pods that do not run yet, or do not listen yet, are waited for. Port-forwards to
/// running pods that fail for `give_up` in a row end it with the last failure.
pub async fn relay(
    sender: End<'_>,
    receiver: End<'_>,
    port: u16,
    give_up: Duration,
    observer: &mut dyn Observer,
) -> Result<Infallible> {
    let mut joined = 0u32;
    let mut failing_since: Option<Instant> = None;
    let mut told = false;
    loop {
        let attempt = join_once(sender, receiver, port, &mut |pods| {
            joined += 1;
            if joined == 1 {
                observer.step(&format!(
                    "carrying the transfer through this machine: port-forwards to pod {} in \
                     namespace {} and pod {} in namespace {}",
                    pods.0, sender.kube.namespace, pods.1, receiver.kube.namespace
                ));
            } else {
                observer.step(&format!(
                    "the connection through this machine ended; joined the movers again \
                     (attempt {joined})"
                ));
            }
        })
        .await;
        match attempt {
            Ok(bytes) => {
                tracing::debug!(bytes, "the connection between the movers ended");
                (failing_since, told) = (None, false);
            }
            Err(Missed::NotRunning) => failing_since = None,
            Err(Missed::Forward(e)) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= give_up {
                    return Err(e.context(format!(
                        "cannot carry the transfer through this machine: port-forwards to the \
                         movers failed for {} s",
                        give_up.as_secs()
                    )));
                }
                if since.elapsed() >= QUIET && !told {
                    observer.step(&format!(
                        "cannot join the movers yet ({e}); trying again for up to {} s",
                        give_up.as_secs()
                    ));
                    told = true;
                }
                tracing::debug!("cannot join the movers yet: {e}");
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// The name of the running pod of Job `job`, if there is one.
async fn running_pod(end: End<'_>) -> Result<String, Missed> {
    let params = ListParams::default().labels(&format!("job-name={}", end.job));
    // A failed list is the API server's hiccup, or a lost right: both show in following the Job.
    let pods: Vec<Pod> = api::list(&api::namespaced(end.kube), "pods", &params)
        .await
        .map_err(|_| Missed::NotRunning)?;
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .and_then(|p| p.metadata.name)
        .ok_or(Missed::NotRunning)
}

/// A port-forward to `port` of `pod`, once it has had [`SETTLE`] to say that nothing listens
/// there. The background task is stopped when it is dropped.
struct Forward {
    pf: Portforwarder,
    stream: tokio::io::DuplexStream,
    error: std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.pf.abort();
    }
}

async fn forward(end: End<'_>, pod: &str, port: u16) -> Result<Forward> {
    let pods: kube::Api<Pod> = api::namespaced(end.kube);
    let mut pf = pods
        .portforward(pod, &[port])
        .await
        .map_err(Error::api(format!(
            "open a port-forward to pod {pod} in namespace {} (create pods/portforward)",
            end.kube.namespace
        )))?;
    let stream = pf
        .take_stream(port)
        .ok_or_else(|| Error::Failed(format!("the port-forward to pod {pod} gave no stream")))?;
    let mut error: std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>> =
        match pf.take_error(port) {
            Some(e) => Box::pin(e),
            None => Box::pin(std::future::pending()),
        };
    let f = |why: String| {
        Error::Failed(format!(
            "the port-forward to port {port} of pod {pod} in namespace {} failed: {why}",
            end.kube.namespace
        ))
    };
    if let Ok(Some(why)) = tokio::time::timeout(SETTLE, &mut error).await {
        pf.abort();
        return Err(f(why));
    }
    Ok(Forward { pf, stream, error })
}

/// Opens a port-forward to each mover and joins them until the connection ends; the number of
/// bytes it carried. `joined` is told the two pods once both port-forwards are open.
async fn join_once(
    sender: End<'_>,
    receiver: End<'_>,
    port: u16,
    joined: &mut dyn FnMut((&str, &str)),
) -> Result<u64, Missed> {
    let (sending_pod, receiving_pod) = (running_pod(sender).await?, running_pod(receiver).await?);
    // The receiver waits for the ClientHello, which the sender sends as soon as it is reached.
    let mut to_receiver = forward(receiver, &receiving_pod, port)
        .await
        .map_err(Missed::Forward)?;
    let mut to_sender = forward(sender, &sending_pod, port)
        .await
        .map_err(Missed::Forward)?;
    joined((&sending_pod, &receiving_pod));
    let carried = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut to_sender.stream, &mut to_receiver.stream) => {
            copied.map(|(up, down)| up + down).map_err(|e| {
                Error::Failed(format!("the connection between the movers broke: {e}"))
            })
        }
        Some(why) = &mut to_sender.error => Err(Error::Failed(format!(
            "the port-forward to pod {sending_pod} failed: {why}"
        ))),
        Some(why) = &mut to_receiver.error => Err(Error::Failed(format!(
            "the port-forward to pod {receiving_pod} failed: {why}"
        ))),
    };
    // Joined, however it ended: a break is what the next attempt is for.
    Ok(carried.unwrap_or_else(|e| {
        tracing::debug!("{e}");
        0
    }))
}
