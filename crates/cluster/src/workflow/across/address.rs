//! Where the sending mover dials the receiving one: the Service's node port on the receiving
//! pod's node, the load balancer's address, or the Route's host on the router's port; and the
//! Routes of a namespace, through which the Route of a run is made, read and deleted.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::DynamicObject;

use super::{AcrossPlan, AcrossRequest};
use crate::api;
use crate::connect::Kube;
use crate::names::WIRE_PORT;
use crate::objects::wire::{self, Expose};
use crate::workflow::MoverSettings;
use crate::{Error, Result};

/// The Routes of `kube`'s namespace.
pub(super) fn routes(kube: &Kube) -> kube::Api<DynamicObject> {
    kube::Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &wire::route_resource(),
    )
}

/// Finds `host:port` for the sending mover once the receiving side exists: `--to-address` or
/// the receiving pod's node, with the Service's node port; or the address the load balancer
/// gave the Service; or the Route's host (or `--to-address`) on the router's port, with that
/// host as the name the sender asks for. Waits at most `--start-timeout` for the pod's node,
/// the load balancer or the Route's host.
pub(super) async fn receiver_address(
    target: &Kube,
    request: &AcrossRequest,
    plan: &AcrossPlan,
    service: &Service,
    settings: &MoverSettings,
) -> Result<(String, Option<String>)> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let ns = &plan.namespace;
    let wait = settings.run.start_timeout;
    let deadline = tokio::time::Instant::now() + wait;
    let pause = Duration::from_secs(1);
    match request.expose {
        Expose::NodePort => {
            let port = wire::node_port(service).ok_or_else(|| {
                Error::Failed(format!(
                    "the API server gave Service {name} in namespace {ns} no node port"
                ))
            })?;
            if let Some(host) = &request.address {
                return Ok((wire::host_port(host, port), None));
            }
            // The port is open on every node; the receiving pod's node is one the cluster has.
            let selector = service
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let params = kube::api::ListParams::default().labels(&selector);
            loop {
                let pods: Vec<Pod> = api::list(&api::namespaced(target), "pods", &params).await?;
                if let Some(ip) = pods
                    .iter()
                    .find_map(|p| p.status.as_ref()?.host_ip.clone())
                    .filter(|ip| !ip.is_empty())
                {
                    return Ok((wire::host_port(&ip, port), None));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Failed(format!(
                        "the receiving mover's pod (Job {} in namespace {ns}) was on no node \
                         within {} s, so there is no node address to dial; see `kubectl get \
                         pods -n {ns}`, or give --to-address",
                        plan.receiver.name,
                        wait.as_secs()
                    )));
                }
                tokio::time::sleep(pause).await;
            }
        }
        Expose::LoadBalancer => loop {
            let now: Service = api::get(&api::namespaced(target), "Service", &name).await?;
            if let Some(host) = wire::load_balancer_address(&now) {
                return Ok((wire::host_port(&host, WIRE_PORT), None));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Failed(format!(
                    "Service {name} in namespace {ns} got no address from a load balancer \
                     within {} s: does the cluster have one? Use --expose nodeport, or give \
                     --to-address",
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
        },
        Expose::Route => loop {
            let now: DynamicObject = api::get(&routes(target), "Route", &name).await?;
            let value = serde_json::to_value(&now).unwrap_or_default();
            if let Some(host) = wire::route_host(&value) {
                let dial = request.address.as_deref().unwrap_or(&host);
                return Ok((wire::host_port(dial, wire::ROUTER_PORT), Some(host)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Failed(format!(
                    "Route {name} in namespace {ns} got no host within {} s (none in its spec, \
                     and no router admitted it): does the cluster run OpenShift's router? Use \
                     --expose nodeport or loadbalancer",
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
        },
        Expose::ClusterIp => Ok((wire::service_address(&name, ns), None)),
    }
}
