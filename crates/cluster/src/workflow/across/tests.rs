use super::*;
use crate::security::Privilege;
use serde_json::json;

fn source(mode: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "fast",
            "volumeMode": mode,
            "resources": {"requests": {"storage": "1Gi"}}
        },
        "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}}
    }))
    .unwrap()
}

fn request(namespace: &str) -> AcrossRequest {
    AcrossRequest {
        claim: "data".into(),
        to: "copy".into(),
        namespace: namespace.into(),
        storage_class: None,
        size: None,
        scale_down: false,
        compress: false,
        expose: Expose::ClusterIp,
        address: None,
        via_local: false,
        cluster: None,
        checksum: false,
        role: Role::Clone,
        snapshot: None,
    }
}

fn keys() -> WireKeys {
    WireKeys {
        sender: vec![("sender.key".into(), "S".into())],
        receiver: vec![("receiver.key".into(), "R".into())],
    }
}

fn plan_of(
    req: &AcrossRequest,
    settings: &MoverSettings,
    src: &PersistentVolumeClaim,
    existing: Option<&PersistentVolumeClaim>,
) -> Result<AcrossPlan> {
    plan(
        req,
        settings,
        src,
        existing,
        &keys(),
        "data-clone-bcdfg",
        Placement::Anywhere,
        Placement::Anywhere,
    )
}

#[test]
fn the_sender_reaches_the_receivers_service_and_each_reads_its_own_secret() {
    let p = plan_of(
        &request("lab"),
        &MoverSettings::default(),
        &source("Filesystem"),
        None,
    )
    .unwrap();
    assert_eq!(
        p.service.as_ref().unwrap().metadata.name.as_deref(),
        Some("pvc-backup-bcdfg")
    );
    assert_eq!(
        p.service.as_ref().unwrap().metadata.namespace.as_deref(),
        Some("lab")
    );
    let to = p.sender.args.iter().position(|a| a == "--to").unwrap();
    assert_eq!(p.sender.args[to + 1], "pvc-backup-bcdfg.lab.svc:7443");
    assert_eq!(p.sender.namespace, "shop");
    assert_eq!(p.receiver.namespace, "lab");
    assert_eq!(
        p.sender.keys.as_ref().unwrap().secret,
        p.sender_secret.metadata.name.clone().unwrap()
    );
    assert_eq!(
        p.receiver.keys.as_ref().unwrap().secret,
        p.receiver_secret.metadata.name.clone().unwrap()
    );
    let data = |s: &Secret| s.string_data.clone().unwrap();
    assert!(data(&p.sender_secret).contains_key("sender.key"));
    assert!(!data(&p.sender_secret).contains_key("receiver.key"));
    assert!(!data(&p.receiver_secret).contains_key("sender.key"));
    // The Service selects the receiving pod and not the sending one.
    let selector = p.service.clone().unwrap().spec.unwrap().selector.unwrap();
    let matches = |job: &MoverJob| {
        let labels = job.pod_template().metadata.unwrap().labels.unwrap();
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(matches(&p.receiver) && !matches(&p.sender));
    let claim = p.claim.unwrap();
    assert_eq!(claim.metadata.namespace.as_deref(), Some("lab"));
    assert_eq!(
        claim.metadata.labels.unwrap()[SOURCE_NAMESPACE_LABEL],
        "shop"
    );
}

#[test]
fn into_another_cluster_the_sender_dials_a_node_port_or_the_address_given() {
    let s = MoverSettings::default();
    let fs = source("Filesystem");
    let other = AcrossRequest {
        cluster: Some(OtherCluster {
            kubeconfig: Some("/k".into()),
            context: Some("east".into()),
        }),
        ..request("shop")
    };
    // The same namespace name is another namespace in another cluster.
    let clusterip = plan_of(&other, &s, &fs, None).unwrap_err().to_string();
    assert!(
        clusterip.contains("--expose clusterip into context east of /k"),
        "{clusterip}"
    );
    let node_port = AcrossRequest {
        expose: other.default_expose(),
        ..other.clone()
    };
    assert_eq!(node_port.expose, Expose::NodePort);
    let p = plan_of(&node_port, &s, &fs, None).unwrap();
    assert_eq!(p.sender_to, None);
    assert!(p.sender.args.is_empty());
    assert_eq!(
        p.service
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("NodePort")
    );
    assert!(
        node_port
            .arguments()
            .ends_with("--to-kubeconfig /k --to-context east"),
        "{}",
        node_port.arguments()
    );
    let balanced = AcrossRequest {
        expose: Expose::LoadBalancer,
        address: Some("wire.example.com".into()),
        ..other.clone()
    };
    let p = plan_of(&balanced, &s, &fs, None).unwrap();
    assert_eq!(p.sender_to.as_deref(), Some("wire.example.com:7443"));
    let to = p.sender.args.iter().position(|a| a == "--to").unwrap();
    assert_eq!(p.sender.args[to + 1], "wire.example.com:7443");
    let v6 = AcrossRequest {
        address: Some("fd00::7".into()),
        ..balanced.clone()
    };
    assert_eq!(
        plan_of(&v6, &s, &fs, None).unwrap().sender_to.as_deref(),
        Some("[fd00::7]:7443")
    );
    for bad in ["node-1:30000", "", "http://node-1", "node 1"] {
        let r = AcrossRequest {
            address: Some(bad.into()),
            ..balanced.clone()
        };
        let e = plan_of(&r, &s, &fs, None).unwrap_err().to_string();
        assert!(e.contains("--to-address"), "{bad}: {e}");
    }
}

#[test]
fn through_a_route_the_sender_asks_for_its_host_once_the_cluster_gave_one() {
    let s = MoverSettings::default();
    let fs = source("Filesystem");
    let routed = AcrossRequest {
        expose: Expose::Route,
        cluster: Some(OtherCluster {
            kubeconfig: Some("/k".into()),
            context: None,
        }),
        ..request("shop")
    };
    let p = plan_of(&routed, &s, &fs, None).unwrap();
    // A ClusterIP Service behind the Route; the sender waits for the Route's host.
    assert_eq!(
        p.service
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("ClusterIP")
    );
    assert_eq!(p.sender_to, None);
    let route = p.route.clone().expect("a Route");
    assert_eq!(route["spec"]["tls"]["termination"], "passthrough");
    assert_eq!(
        route["spec"]["to"]["name"],
        p.service.as_ref().unwrap().metadata.name.clone().unwrap()
    );
    assert_eq!(route["spec"]["port"]["targetPort"], "wire");
    let objects = p.objects().unwrap();
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "PersistentVolumeClaim",
            "Secret",
            "Service",
            "Route",
            "Job",
            "Secret"
        ]
    );
    assert_eq!(routed.arguments().matches("--expose route").count(), 1);
    // The host: the one the API server set, else the one a router admitted.
    let mut seen = route.clone();
    assert_eq!(wire::route_host(&seen), None);
    seen["status"] = json!({"ingress": [{"host": "copy.apps.example", "conditions": [
        {"type": "Admitted", "status": "False"}]}]});
    assert_eq!(wire::route_host(&seen), None);
    seen["status"]["ingress"][0]["conditions"][0]["status"] = json!("True");
    assert_eq!(
        wire::route_host(&seen).as_deref(),
        Some("copy.apps.example")
    );
    seen["spec"]["host"] = json!("given.apps.example");
    assert_eq!(
        wire::route_host(&seen).as_deref(),
        Some("given.apps.example")
    );
    let args = sender_command(
        &routed,
        &s,
        false,
        SendPeer::To("10.0.0.9:443".into()),
        Some("given.apps.example"),
    );
    let name = args.iter().position(|a| a == "--server-name").unwrap();
    assert_eq!(args[name + 1], "given.apps.example");
}

#[test]
fn through_this_machine_both_movers_listen_and_no_service_is_made() {
    let s = MoverSettings::default();
    let fs = source("Filesystem");
    let local = AcrossRequest {
        via_local: true,
        cluster: Some(OtherCluster::default()),
        // Not used: no Service is made (a ClusterIP into another cluster is no error here).
        expose: Expose::ClusterIp,
        ..request("lab")
    };
    let p = plan_of(&local, &s, &fs, None).unwrap();
    assert!(p.service.is_none() && p.via_local);
    assert_eq!(p.sender_to, None);
    let listen = |job: &MoverJob| {
        let at = job.args.iter().position(|a| a == "--listen").unwrap();
        job.args[at + 1].clone()
    };
    assert_eq!(listen(&p.receiver), "0.0.0.0:7443");
    assert_eq!(listen(&p.sender), "0.0.0.0:7443");
    assert!(p.sender.args.iter().any(|a| a == "--tls-client"));
    assert!(!p.sender.args.iter().any(|a| a == "--to"));
    assert!(!p.receiver.args.iter().any(|a| a == "--tls-client"));
    let kinds: Vec<String> = p
        .objects()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["PersistentVolumeClaim", "Secret", "Job", "Secret", "Job"]
    );
    let dialled = AcrossRequest {
        address: Some("node-1".into()),
        ..local.clone()
    };
    let e = plan_of(&dialled, &s, &fs, None).unwrap_err().to_string();
    assert!(e.contains("--to-address with --via local"), "{e}");
}

#[test]
fn what_cannot_cross_is_refused_before_anything_is_made() {
    let s = MoverSettings::default();
    let fs = source("Filesystem");
    let err = |r: Result<AcrossPlan>| r.unwrap_err().to_string();
    let same = err(plan_of(&request("shop"), &s, &fs, None));
    assert!(same.contains("own namespace"), "{same}");
    let bad = err(plan_of(&request("Lab.x"), &s, &fs, None));
    assert!(bad.contains("namespace"), "{bad}");
    let excluding_block = MoverSettings {
        excludes: contract::Excludes {
            patterns: vec!["*.tmp".into()],
            ..Default::default()
        },
        ..MoverSettings::default()
    };
    let block = err(plan_of(
        &request("lab"),
        &excluding_block,
        &source("Block"),
        None,
    ));
    assert!(
        block.contains("Block claim") && block.contains("--exclude"),
        "{block}"
    );
    let unprivileged = MoverSettings {
        privilege: Privilege::Unprivileged { uid: None },
        ..MoverSettings::default()
    };
    let e = err(plan_of(&request("lab"), &unprivileged, &fs, None));
    assert!(e.contains("--unprivileged"), "{e}");
    let excluding = MoverSettings {
        excludes: contract::Excludes {
            patterns: vec!["*.tmp".into()],
            ..Default::default()
        },
        ..MoverSettings::default()
    };
    // Excludes go to the sending mover, which lists what it leaves out.
    let p = plan_of(&request("lab"), &excluding, &fs, None).unwrap();
    assert!(
        p.sender.args.iter().any(|a| a == "--exclude=*.tmp"),
        "{:?}",
        p.sender.args
    );
    assert!(!p.receiver.args.iter().any(|a| a.starts_with("--exclude")));
    // A claim of that name that is not our copy of this source.
    let theirs: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "copy", "namespace": "lab",
            "labels": {"app.kubernetes.io/managed-by": "pvc-backup",
                "pvc-backup.io/source": "data", "pvc-backup.io/role": "clone"}}
    }))
    .unwrap();
    let e = err(plan_of(&request("lab"), &s, &fs, Some(&theirs)));
    assert!(e.contains("not a copy of shop/data"), "{e}");
    let mut ours = theirs.clone();
    ours.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(SOURCE_NAMESPACE_LABEL.into(), "shop".into());
    let p = plan_of(&request("lab"), &s, &fs, Some(&ours)).unwrap();
    assert!(p.claim.is_none());
    // Our copy, but of the other volume mode than the source's.
    let e = err(plan_of(&request("lab"), &s, &source("Block"), Some(&ours)));
    assert!(
        e.contains("is a Filesystem claim and data a Block claim"),
        "{e}"
    );
}

#[test]
fn a_block_claim_crosses_as_devices_between_two_mover_blocks() {
    let req = AcrossRequest {
        compress: true,
        ..request("lab")
    };
    let p = plan_of(&req, &MoverSettings::default(), &source("Block"), None).unwrap();
    assert!(p.block);
    let claim = p.claim.as_ref().unwrap().spec.clone().unwrap();
    assert_eq!(claim.volume_mode.as_deref(), Some("Block"));
    assert_eq!(
        &p.receiver.args[..6],
        [
            "mover",
            "block",
            TARGET_MOUNT,
            "--listen",
            "0.0.0.0:7443",
            "--keys"
        ]
    );
    assert_eq!(
        &p.sender.args[..5],
        [
            "mover",
            "block",
            SOURCE_MOUNT,
            "--to",
            "pvc-backup-bcdfg.lab.svc:7443"
        ]
    );
    assert!(p.sender.args.iter().any(|a| a == "--compress"));
    // Each mover has its claim as a device, the source read-only.
    let (sm, rm) = (&p.sender.mounts[0], &p.receiver.mounts[0]);
    assert!(sm.block && sm.read_only && sm.claim == "data");
    assert!(rm.block && !rm.read_only && rm.claim == "copy");
    // Through this machine, the sender listens for the relay, as for folders.
    let local = AcrossRequest {
        via_local: true,
        ..request("lab")
    };
    let p = plan_of(&local, &MoverSettings::default(), &source("Block"), None).unwrap();
    assert_eq!(
        &p.sender.args[..7],
        [
            "mover",
            "block",
            SOURCE_MOUNT,
            "--listen",
            "0.0.0.0:7443",
            "--send",
            "--tls-client"
        ]
    );
    // The address of a node's port is known later; the command then is `mover block` too.
    let nodeport = AcrossRequest {
        expose: Expose::NodePort,
        ..request("lab")
    };
    let p = plan_of(&nodeport, &MoverSettings::default(), &source("Block"), None).unwrap();
    assert!(p.sender.args.is_empty());
    let later = sender_command(
        &nodeport,
        &MoverSettings::default(),
        p.block,
        SendPeer::To("10.0.0.1:30123".into()),
        None,
    );
    assert_eq!(&later[..3], ["mover", "block", SOURCE_MOUNT]);
}

#[test]
fn a_backup_adds_a_snapshot_to_any_filesystem_claim_and_refuses_a_block_source() {
    let backup = AcrossRequest {
        to: "data-backup".into(),
        role: Role::Backup,
        snapshot: Some(contract::Retention {
            daily: Some(7),
            ..Default::default()
        }),
        ..request("lab")
    };
    let settings = MoverSettings::default();
    // A claim someone made for the backups, without pvc-backup's labels: used as it is, as
    // within a namespace (a mirror would refuse it: it would delete what it holds).
    let theirs: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-backup", "namespace": "lab"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                 "resources": {"requests": {"storage": "5Gi"}}}
    }))
    .unwrap();
    let p = plan_of(&backup, &settings, &source("Filesystem"), Some(&theirs)).unwrap();
    assert!(p.claim.is_none());
    let args = p.receiver.args.join(" ");
    assert!(
        args.starts_with("mover receive /backup ") && args.contains(" --snapshot --keep-daily 7 "),
        "{args}"
    );
    let mirror = AcrossRequest {
        to: "data-backup".into(),
        ..request("lab")
    };
    let refused = plan_of(&mirror, &settings, &source("Filesystem"), Some(&theirs));
    assert!(refused.is_err());
    assert_eq!(backup.verb(), "backup");
    assert_eq!(mirror.verb(), "clone");
    let block = plan_of(&backup, &settings, &source("Block"), None).unwrap_err();
    assert!(block.to_string().contains("Block claim"), "{block}");
}
