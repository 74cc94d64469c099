//! The objects of a transfer between namespaces, besides the two mover Jobs: a Secret per side
//! holding that side's key and certificate and its peer's certificate, and the Service through
//! which the sending mover reaches the receiving one (a ClusterIP within a cluster, a NodePort or
//! a LoadBalancer from another).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{SIDE_LABEL, TRANSFER_LABEL, WIRE_PORT};
use crate::objects::claim::{Role, labels};
use crate::objects::mover::WIRE_PORT_NAME;

/// Which end of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The mover that reads the source claim (`mover send`).
    Sender,
    /// The mover that writes the target claim (`mover receive`).
    Receiver,
}

impl Side {
    /// The value of the side label.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Sender => "sender",
            Side::Receiver => "receiver",
        }
    }
}

/// The labels of a transfer's objects on `side`: pvc-backup's own, the transfer's name and the
/// side. The Service selects the receiving pod by the last two.
pub fn transfer_labels(
    source: &str,
    role: Role,
    transfer: &str,
    side: Side,
) -> BTreeMap<String, String> {
    let mut l = labels(source, role);
    l.insert(TRANSFER_LABEL.to_owned(), transfer.to_owned());
    l.insert(SIDE_LABEL.to_owned(), side.as_str().to_owned());
    l
}

/// The Secret of one side: `files` are (file name, PEM content), as the wire crate names them
/// (`sender.key`, `receiver.crt`, ...). Immutable: nobody changes a run's keys under it.
pub fn keys_secret(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    files: &[(String, String)],
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        immutable: Some(true),
        string_data: Some(files.iter().cloned().collect()),
        ..Secret::default()
    }
}

/// How the receiving mover's Service is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expose {
    /// A ClusterIP, by the Service's DNS name: from the same cluster only.
    ClusterIp,
    /// A port on every node (`nodePort`), dialled at a node's address.
    NodePort,
    /// An address the cluster's load balancer gives the Service.
    LoadBalancer,
    /// An OpenShift Route with TLS passthrough in front of a ClusterIP Service, dialled at the
    /// Route's host on port 443 with that host in the TLS hello (the router picks the backend by
    /// it).
    Route,
}

impl Expose {
    /// The Service type, as Kubernetes spells it.
    pub fn service_type(self) -> &'static str {
        match self {
            Expose::ClusterIp | Expose::Route => "ClusterIP",
            Expose::NodePort => "NodePort",
            Expose::LoadBalancer => "LoadBalancer",
        }
    }

    /// The value of `--expose` that chooses it.
    pub fn flag(self) -> &'static str {
        match self {
            Expose::ClusterIp => "clusterip",
            Expose::NodePort => "nodeport",
            Expose::LoadBalancer => "loadbalancer",
            Expose::Route => "route",
        }
    }
}

/// The port a router serves Routes with TLS on.
pub const ROUTER_PORT: i32 = 443;

/// OpenShift's Route (`route.openshift.io/v1`): not among the types k8s-openapi knows.
pub fn route_resource() -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: "route.openshift.io".to_owned(),
        version: "v1".to_owned(),
        api_version: "route.openshift.io/v1".to_owned(),
        kind: "Route".to_owned(),
        plural: "routes".to_owned(),
    }
}

/// The Route in front of the receiving mover's Service `service`: TLS passthrough, so that the
/// movers' mutual TLS goes through the router untouched; the host is the one the cluster gives.
pub fn receiver_route(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    service: &str,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "to": {"kind": "Service", "name": service, "weight": 100},
            "port": {"targetPort": WIRE_PORT_NAME},
            "tls": {"termination": "passthrough", "insecureEdgeTerminationPolicy": "None"},
            "wildcardPolicy": "None",
        },
    })
}

/// The host a Route is served at, once known: `spec.host` (OpenShift's API server sets it when
/// the Route is made), else the host a router admitted it with.
pub fn route_host(route: &serde_json::Value) -> Option<String> {
    let given = route["spec"]["host"].as_str().filter(|h| !h.is_empty());
    let admitted = || {
        route["status"]["ingress"].as_array()?.iter().find_map(|i| {
            let ok = i["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Admitted" && c["status"] == "True");
            i["host"].as_str().filter(|h| ok && !h.is_empty())
        })
    };
    given.or_else(admitted).map(str::to_owned)
}

/// The Service in front of the receiving mover, of the type `expose` names: port [`WIRE_PORT`]
/// to the pod's `wire` port, selecting the pod by `selector` (its transfer and side labels).
pub fn receiver_service(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    expose: Expose,
) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(expose.service_type().to_owned()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(WIRE_PORT_NAME.to_owned()),
                port: WIRE_PORT,
                target_port: Some(IntOrString::String(WIRE_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The address the sending mover connects to: the Service's name in its namespace
/// (`NAME.NAMESPACE.svc`, which the pod's DNS search list completes with the cluster's domain)
/// and its port.
pub fn service_address(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc:{WIRE_PORT}")
}

/// The port the sending mover dials on a node for `service` (its `nodePort`), once the API
/// server has given it one.
pub fn node_port(service: &Service) -> Option<i32> {
    service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == WIRE_PORT)?
        .node_port
}

/// The address a load balancer gave `service` (an IP, else a host name), once it has one.
pub fn load_balancer_address(service: &Service) -> Option<String> {
    let ingress = service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?;
    ingress
        .iter()
        .find_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .filter(|a| !a.is_empty())
}

/// `host:port`, with an IPv6 address in brackets.
pub fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
