//! The fake cluster, driven the way pvc-backup drives a real one: kube::Client and the typed
//! k8s-openapi objects. Each test reads as a situation a real cluster puts users in.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testcluster::fake::{ClaimOptions, FakeCluster, Options};

const WAIT: Duration = Duration::from_secs(20);

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture decodes")
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A stand-in for the mover binary, used only by these tests: `mover sync SRC DST` copies with
/// cp, prints a line, and fails with the code in FAIL_WITH when set.
fn stand_in(dir: &Path) -> PathBuf {
    let p = dir.join("mover.sh");
    std::fs::write(
        &p,
        "#!/bin/sh\nset -e\n[ -n \"$FAIL_WITH\" ] && { echo \"failing with $FAIL_WITH\" >&2; exit \"$FAIL_WITH\"; }\n\
         [ \"$1\" = sleep ] && { echo sleeping; exec sleep \"$2\"; }\n\
         [ \"$1\" = copyfile ] && { cp \"$2\" \"$3\"; echo \"copied $2 to $3\"; exit 0; }\n\
         [ \"$1 $2\" = \"mover sync\" ] || { echo \"usage: mover sync SRC DST\" >&2; exit 2; }\n\
         cp -a \"$3/.\" \"$4/\"\necho \"copied $3 to $4\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn cluster_with_mover() -> (FakeCluster, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mover = stand_in(tmp.path());
    let c = FakeCluster::start(Options {
        mover: Some(mover),
        ..Options::default()
    });
    (c, tmp)
}

fn claim(name: &str, size: &str, mode: &str) -> PersistentVolumeClaim {
    from(json!({"metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}}}))
}

fn mover_job(name: &str, source: &str, target: &str, node: Option<&str>, env: Value) -> Job {
    let mut j: Job = from(json!({
        "metadata": {"name": name},
        "spec": {"backoffLimit": 1, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "mover", "image": "ghcr.io/pvc-backup/pvc-backup:test",
                "command": ["/pvc-backup", "mover", "sync"], "args": ["/source", "/backup"], "env": env,
                "volumeMounts": [{"name": "source", "mountPath": "/source", "readOnly": true},
                                 {"name": "backup", "mountPath": "/backup"}]}],
            "volumes": [{"name": "source", "persistentVolumeClaim": {"claimName": source}},
                        {"name": "backup", "persistentVolumeClaim": {"claimName": target}}]}}}
    }));
    if let Some(n) = node {
        j.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_name = None;
        j.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector = Some([("kubernetes.io/hostname".to_string(), n.to_string())].into());
    }
    j
}

fn web(name: &str, claim: &str, node: &str) -> Deployment {
    from(json!({"metadata": {"name": name}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "app", "image": "nginx:1.27",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}}))
}

async fn bound(pvcs: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    let cond = |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound")
    };
    tokio::time::timeout(WAIT, await_condition(pvcs.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("claim {name} did not bind"))
        .unwrap()
        .unwrap()
}

async fn pods_of(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

async fn wait_events(events: &Api<Event>, reason: &str, about: &str) -> Vec<Event> {
    let fs = format!("involvedObject.name={about},reason={reason}");
    for _ in 0..400 {
        let evs = events
            .list(&ListParams::default().fields(&fs))
            .await
            .unwrap()
            .items;
        if !evs.is_empty() {
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {reason} event about {about}");
}

#[tokio::test]
async fn crud_answers_with_the_api_servers_status_codes() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = from(json!({"metadata": {"name": "conf"}, "data": {"a": "1"}}));
    let made = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(made.metadata.uid.is_some());
    assert_eq!(made.metadata.namespace.as_deref(), Some("default"));

    let e = api_err(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"conf\" already exists");

    let e = api_err(cms.get("missing").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));

    // A replace carrying an old resourceVersion loses.
    let mut stale = made.clone();
    let mut fresh = made.clone();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    cms.replace("conf", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let e = api_err(
        cms.replace("conf", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(cms.get("conf").await.unwrap().data.unwrap()["a"], "2");

    let bad: ConfigMap = from(json!({"metadata": {"name": "Bad_Name"}}));
    let e = api_err(cms.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{}",
        e.message
    );

    let long: ConfigMap = from(
        json!({"metadata": {"name": "long", "labels": {"pvc-backup.io/source": "x".repeat(64)}}}),
    );
    let e = api_err(cms.create(&PostParams::default(), &long).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("must be no more than 63 characters"),
        "{}",
        e.message
    );
    let e = api_err(cms.create(&PostParams::default(), &made).await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            400,
            "resourceVersion should not be set on objects to be created"
        )
    );

    // Namespaces: unknown ones are 404; new ones work; cluster-scoped kinds list.
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let e = api_err(
        nowhere
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    cluster.add_namespace("shop").unwrap();
    let shop: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    shop.create(&PostParams::default(), &cm).await.unwrap();
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    // Patches: merge, strategic and JSON.
    let p = cms
        .patch(
            "conf",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.as_ref().unwrap().len(), 2);
    let p = cms
        .patch(
            "conf",
            &PatchParams::default(),
            &Patch::Json::<()>(from(json!([{"op": "remove", "path": "/data/b"}]))),
        )
        .await
        .unwrap();
    assert_eq!(p.data.as_ref().unwrap().len(), 1);
    let e = api_err(
        cms.patch(
            "conf",
            &PatchParams::default(),
            &Patch::Json::<()>(from(
                json!([{"op": "test", "path": "/data/a", "value": "9"}]),
            )),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    let e = api_err(
        cms.delete("missing", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    cms.delete("conf", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("conf").await.unwrap().is_none());

    // Discovery works for the generic client.
    let discovery = kube::discovery::Discovery::new(client).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "batch",
        "apps",
        "snapshot.storage.k8s.io",
        "storage.k8s.io",
    ] {
        assert!(
            groups.iter().any(|x| x == g),
            "group {g:?} missing from {groups:?}"
        );
    }
    assert!(
        !groups.iter().any(|x| x == "apps.openshift.io"),
        "plain Kubernetes serves no OpenShift group"
    );
}

#[tokio::test]
async fn watchers_see_changes_and_selectors_filter() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let stream = watcher(cms.clone(), watcher::Config::default().labels("team=a"))
        .applied_objects()
        .map_ok(|c: ConfigMap| c.metadata.name.unwrap());
    let seen = tokio::spawn(async move {
        let mut s = Box::pin(stream);
        let mut names = Vec::new();
        while let Some(n) = s.try_next().await.unwrap() {
            names.push(n);
            if names.len() == 2 {
                break;
            }
        }
        names
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (name, team) in [("x", "b"), ("y", "a"), ("z", "a")] {
        let cm: ConfigMap = from(json!({"metadata": {"name": name, "labels": {"team": team}}}));
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = tokio::time::timeout(WAIT, seen).await.unwrap().unwrap();
    assert_eq!(names, ["y", "z"]);

    // A watch from a resourceVersion replays what came after it.
    let rv = cms
        .get("x")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = cms
        .watch(&kube::api::WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(WAIT, w.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first {
        kube::api::WatchEvent::Added(c) => assert_eq!(c.metadata.name.as_deref(), Some("y")),
        other => panic!("expected y added, got {other:?}"),
    }
}

#[tokio::test]
async fn claim_spec_is_immutable_except_growth() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client);
    pvcs.create(
        &PostParams::default(),
        &claim("data", "1Gi", "ReadWriteOnce"),
    )
    .await
    .unwrap();
    let c = bound(&pvcs, "data").await;
    assert_eq!(
        c.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    assert!(
        c.metadata
            .finalizers
            .unwrap()
            .contains(&"kubernetes.io/pvc-protection".to_string())
    );

    let e = api_err(
        pvcs.patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .contains("spec: Forbidden: spec is immutable after creation"),
        "{}",
        e.message
    );

    let e = api_err(
        pvcs.patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "512Mi"}}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.resources.requests.storage"),
        "{}",
        e.message
    );

    pvcs.patch(
        "data",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
    )
    .await
    .unwrap();
    let grown = |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|c| {
            c.status
                .as_ref()?
                .capacity
                .as_ref()?
                .get("storage")
                .cloned()
        })
        .is_some_and(|q| q.0 == "2Gi")
    };
    tokio::time::timeout(WAIT, await_condition(pvcs.clone(), "data", grown))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn provisioned_volume_keeps_its_data_across_a_rebind_under_the_same_name() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvcs.create(
        &PostParams::default(),
        &claim("data", "1Gi", "ReadWriteOnce"),
    )
    .await
    .unwrap();
    let old = bound(&pvcs, "data").await;
    let pv_name = old.spec.as_ref().unwrap().volume_name.clone().unwrap();
    assert_eq!(
        pv_name,
        format!("pvc-{}", old.metadata.uid.as_ref().unwrap())
    );
    let dir = cluster.volume_dir("default", "data").unwrap();
    std::fs::write(dir.join("f"), b"payload").unwrap();

    // Retain, delete the claim: the volume is Released and keeps the old claim's uid.
    pvs.patch(
        &pv_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}})),
    )
    .await
    .unwrap();
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    let released = |o: Option<&PersistentVolume>| {
        o.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Released")
    };
    let pv = tokio::time::timeout(WAIT, await_condition(pvs.clone(), &pv_name, released))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pv.spec.unwrap().claim_ref.unwrap().uid, old.metadata.uid);

    // A new claim naming the volume cannot bind while the old uid is in claimRef.
    let mut again = claim("data", "1Gi", "ReadWriteOnce");
    again.spec.as_mut().unwrap().volume_name = Some(pv_name.clone());
    pvcs.create(&PostParams::default(), &again).await.unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev = wait_events(&events, "FailedBinding", "data").await;
    assert!(
        ev[0]
            .message
            .as_deref()
            .unwrap()
            .contains("already bound to a different claim")
    );
    assert_eq!(
        pvcs.get("data")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );

    // Clearing the uid lets it bind; the data is still there.
    pvs.patch(
        &pv_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"claimRef": {"uid": null, "resourceVersion": null}}})),
    )
    .await
    .unwrap();
    let now = bound(&pvcs, "data").await;
    assert_eq!(
        now.spec.unwrap().volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    assert_eq!(
        std::fs::read(cluster.volume_dir("default", "data").unwrap().join("f")).unwrap(),
        b"payload"
    );

    // With Delete, deleting the claim removes the volume and its folder.
    pvs.patch(
        &pv_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}})),
    )
    .await
    .unwrap();
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pvs.clone(), &pv_name, conditions::is_deleted("")),
    )
    .await
    .unwrap()
    .unwrap();
    // The PV was made for the test's folder by the provisioner, so the folder goes too.
    assert!(cluster.wait_for(WAIT, |_| !dir.exists()));
}

#[tokio::test]
async fn a_rwo_claim_in_use_on_one_node_leaves_a_pod_on_another_node_in_container_creating() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pvcs.create(
        &PostParams::default(),
        &claim("data", "1Gi", "ReadWriteOnce"),
    )
    .await
    .unwrap();
    let pv = bound(&pvcs, "data")
        .await
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    deps.create(&PostParams::default(), &web("web", "data", "node-a"))
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(deps.clone(), "web", |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref()?.ready_replicas) == Some(1)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let web_pod = pods_of(&pods, "app=web")
        .await
        .remove(0)
        .metadata
        .name
        .unwrap();

    let other: Pod = from(json!({"metadata": {"name": "reader"}, "spec": {
        "nodeSelector": {"kubernetes.io/hostname": "node-b"},
        "containers": [{"name": "c", "image": "busybox:1.36", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}));
    pods.create(&PostParams::default(), &other).await.unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev = wait_events(&events, "FailedAttachVolume", "reader").await;
    assert_eq!(
        ev[0].message.as_deref().unwrap(),
        format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already used by pod(s) {web_pod}"
        )
    );
    let p = pods.get("reader").await.unwrap();
    let st = p.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let waiting = st.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));

    // Once the workload is scaled to zero, the pod on node-b starts.
    deps.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "reader", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn a_rwop_claim_in_use_makes_another_pod_unschedulable() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pvcs.create(
        &PostParams::default(),
        &claim("solo", "1Gi", "ReadWriteOncePod"),
    )
    .await
    .unwrap();
    bound(&pvcs, "solo").await;
    let pod = |name: &str| -> Pod {
        from(json!({"metadata": {"name": name}, "spec": {
            "containers": [{"name": "c", "image": "busybox:1.36"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "solo"}}]}}))
    };
    pods.create(&PostParams::default(), &pod("first"))
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "first", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    pods.create(&PostParams::default(), &pod("second"))
        .await
        .unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev = wait_events(&events, "FailedScheduling", "second").await;
    assert!(
        ev[0].message.as_deref().unwrap().contains("2 node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"),
        "{:?}",
        ev[0].message
    );
    let cond = pods
        .get("second")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap();
    assert!(cond.iter().any(|c| c.type_ == "PodScheduled"
        && c.status == "False"
        && c.reason.as_deref() == Some("Unschedulable")));
}

#[tokio::test]
async fn a_job_runs_the_mover_with_claims_mapped_to_folders() {
    let (cluster, _tmp) = cluster_with_mover();
    let client = cluster.client();
    let src = cluster
        .add_bound_claim("default", "data", ClaimOptions::default())
        .unwrap();
    std::fs::create_dir(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file"), b"hello").unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    pvcs.create(
        &PostParams::default(),
        &claim("data-backup", "1Gi", "ReadWriteOnce"),
    )
    .await
    .unwrap();
    bound(&pvcs, "data-backup").await;

    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.create(
        &PostParams::default(),
        &mover_job("backup", "data", "data-backup", None, json!([])),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(p) = pods_of(&pods, "job-name=backup").await.pop() {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Job", "backup", Some(true))
    );
    assert!(pod.metadata.name.as_deref().unwrap().starts_with("backup-"));

    tokio::time::timeout(
        WAIT,
        await_condition(jobs.clone(), "backup", conditions::is_job_completed()),
    )
    .await
    .unwrap()
    .unwrap();
    let dst = cluster.volume_dir("default", "data-backup").unwrap();
    assert_eq!(std::fs::read(dst.join("sub/file")).unwrap(), b"hello");
    let name = pod.metadata.name.unwrap();
    let log = pods.logs(&name, &Default::default()).await.unwrap();
    assert_eq!(
        log.trim(),
        format!("copied {} to {}", src.display(), dst.display())
    );
    let done = pods.get(&name).await.unwrap().status.unwrap();
    assert_eq!(done.phase.as_deref(), Some("Succeeded"));
    let term = done.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    let job = jobs.get("backup").await.unwrap().status.unwrap();
    assert_eq!(job.succeeded, Some(1));

    // Deleting a batch/v1 Job without a propagation policy orphans its pod, as on a real cluster.
    jobs.delete("backup", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = pods.get(&name).await.unwrap();
    assert!(
        left.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn a_failing_job_retries_up_to_its_backoff_limit() {
    let (cluster, _tmp) = cluster_with_mover();
    let client = cluster.client();
    cluster
        .add_bound_claim("default", "data", ClaimOptions::default())
        .unwrap();
    cluster
        .add_bound_claim("default", "copy", ClaimOptions::default())
        .unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let env = json!([{"name": "FAIL_WITH", "value": "23"}]);
    jobs.create(
        &PostParams::default(),
        &mover_job("broken", "data", "copy", None, env),
    )
    .await
    .unwrap();
    let failed = |o: Option<&Job>| {
        o.and_then(|j| j.status.as_ref()?.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
    };
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), "broken", failed))
        .await
        .unwrap()
        .unwrap();
    let job = jobs.get("broken").await.unwrap();
    let st = job.status.unwrap();
    assert_eq!(st.failed, Some(2), "backoffLimit 1 allows one retry");
    let failed = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let ps = pods_of(&pods, "job-name=broken").await;
    assert_eq!(ps.len(), 2);
    for p in ps {
        let s = p.status.unwrap();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let t = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (23, Some("Error")));
        let log = pods
            .logs(&p.metadata.name.unwrap(), &Default::default())
            .await
            .unwrap();
        assert_eq!(log, "failing with 23\n");
    }
}

#[tokio::test]
async fn follow_streams_a_running_log_and_quota_refusals_become_job_events() {
    let (cluster, _tmp) = cluster_with_mover();
    let client = cluster.client();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = from(
        json!({"metadata": {"name": "sleeper"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "m", "image": "x:1", "command": ["/pvc-backup"], "args": ["sleep", "1"]}]}}),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "sleeper", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    let params = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let stream = pods.log_stream("sleeper", &params).await.unwrap();
    let mut text = String::new();
    use futures::AsyncReadExt;
    let mut s = Box::pin(stream);
    tokio::time::timeout(WAIT, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "sleeping\n");
    let p = pods.get("sleeper").await.unwrap();
    assert_eq!(
        p.status.unwrap().phase.as_deref(),
        Some("Succeeded"),
        "follow ends when the container does"
    );

    cluster.add_namespace("tight").unwrap();
    cluster.set_pod_quota("tight", "compute", 0);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "tight");
    let j: Job = from(
        json!({"metadata": {"name": "refused"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}),
    );
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "tight");
    let ev = wait_events(&events, "FailedCreate", "refused").await;
    let msg = ev[0].message.clone().unwrap();
    assert!(msg.starts_with("Error creating: pods \"refused-"), "{msg}");
    assert!(msg.contains("is forbidden: exceeded quota: compute, requested: pods=1, used: pods=0, limited: pods=0"), "{msg}");
}

#[tokio::test]
async fn scale_subresource_adds_and_removes_pods() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let d: Deployment = from(json!({"metadata": {"name": "app"}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "app"}},
        "template": {"metadata": {"labels": {"app": "app"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}));
    deps.create(&PostParams::default(), &d).await.unwrap();
    let ready = |n: i32| {
        move |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.ready_replicas.unwrap_or(0) == n && s.replicas.unwrap_or(0) == n)
        }
    };
    tokio::time::timeout(WAIT, await_condition(deps.clone(), "app", ready(1)))
        .await
        .unwrap()
        .unwrap();
    let scale = deps.get_scale("app").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    deps.patch_scale(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    tokio::time::timeout(WAIT, await_condition(deps.clone(), "app", ready(3)))
        .await
        .unwrap()
        .unwrap();
    let ps = pods_of(&pods, "app=app").await;
    assert_eq!(ps.len(), 3);
    let nodes: std::collections::BTreeSet<String> = ps
        .iter()
        .map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap())
        .collect();
    assert_eq!(nodes.len(), 2, "pods spread over both nodes");
    let rs_owner = &ps[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(rs_owner.kind, "ReplicaSet");
    deps.patch_scale(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    tokio::time::timeout(WAIT, async {
        while !pods_of(&pods, "app=app").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();

    // A StatefulSet makes one claim per replica from its template.
    let sts_api: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let sts: StatefulSet = from(
        json!({"metadata": {"name": "db"}, "spec": {"replicas": 2, "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "postgres:17",
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}]}}),
    );
    sts_api.create(&PostParams::default(), &sts).await.unwrap();
    let sts_ready =
        |o: Option<&StatefulSet>| o.and_then(|s| s.status.as_ref()?.ready_replicas) == Some(2);
    tokio::time::timeout(WAIT, await_condition(sts_api.clone(), "db", sts_ready))
        .await
        .unwrap()
        .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    for i in 0..2 {
        bound(&pvcs, &format!("data-db-{i}")).await;
        let p = pods.get(&format!("db-{i}")).await.unwrap();
        let vols = p.spec.unwrap().volumes.unwrap();
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            format!("data-db-{i}")
        );
    }
    let e = api_err(
        sts_api
            .patch(
                "db",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"volumeClaimTemplates": []}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("updates to statefulset spec for fields other than"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn cronjob_schedules_are_validated_and_firing_makes_an_owned_job() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let cjs: Api<CronJob> = Api::default_namespaced(client.clone());
    let cj = |name: &str, schedule: &str| -> CronJob {
        from(
            json!({"metadata": {"name": name}, "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}}),
        )
    };
    for bad in [
        "0 0 * * * *",
        "61 * * * *",
        "every hour",
        "CRON_TZ=UTC 0 * * * *",
    ] {
        let e = api_err(
            cjs.create(&PostParams::default(), &cj("bad", bad))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{bad}");
        assert!(
            e.message.contains("spec.schedule: Invalid value"),
            "{}",
            e.message
        );
    }
    let e = api_err(
        cjs.create(&PostParams::default(), &cj(&"n".repeat(53), "@daily"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    cjs.create(&PostParams::default(), &cj("nightly", "30 2 * * mon-fri"))
        .await
        .unwrap();
    let job_name = cluster.fire_cronjob("default", "nightly").unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job = jobs.get(&job_name).await.unwrap();
    let owner = &job.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CronJob", "nightly")
    );
    assert!(
        job.metadata
            .annotations
            .unwrap()
            .contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp")
    );
    // A plain container runs until deleted, so the Job stays active with a ready pod.
    let active = |o: Option<&Job>| o.and_then(|j| j.status.as_ref()?.ready) == Some(1);
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), &job_name, active))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        jobs.get(&job_name).await.unwrap().status.unwrap().active,
        Some(1)
    );

    // The Job template is immutable.
    let e = api_err(
        jobs.patch(&job_name, &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.template: Invalid value"),
        "{}",
        e.message
    );
    assert!(e.message.contains("field is immutable"), "{}", e.message);
}

#[tokio::test]
async fn snapshots_and_clones_copy_data_only_where_the_driver_can() {
    let cluster = FakeCluster::start(Options::default());
    cluster
        .add_storage_class("plain", "example.com/nfs", false, "Delete", false)
        .unwrap();
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    pvcs.create(
        &PostParams::default(),
        &claim("data", "1Gi", "ReadWriteOnce"),
    )
    .await
    .unwrap();
    bound(&pvcs, "data").await;
    std::fs::write(
        cluster.volume_dir("default", "data").unwrap().join("f"),
        b"v1",
    )
    .unwrap();

    // Snapshot: the data as it was at that moment.
    let snaps: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        )),
    );
    let snap: kube::api::DynamicObject = from(
        json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "snap"}, "spec": {"source": {"persistentVolumeClaimName": "data"}}}),
    );
    snaps.create(&PostParams::default(), &snap).await.unwrap();
    assert!(cluster.wait_for(WAIT, |c| {
        c.get_value(
            "snapshot.storage.k8s.io/v1",
            "VolumeSnapshot",
            "default",
            "snap",
        )
        .is_some_and(|v| v["status"]["readyToUse"] == true)
    }));
    std::fs::write(
        cluster.volume_dir("default", "data").unwrap().join("f"),
        b"v2",
    )
    .unwrap();

    let with_source =
        |name: &str, kind: &str, group: Option<&str>, src: &str, class: Option<&str>| {
            let mut c = claim(name, "1Gi", "ReadWriteOnce");
            let spec = c.spec.as_mut().unwrap();
            spec.data_source = Some(from(json!({"kind": kind, "name": src, "apiGroup": group})));
            spec.storage_class_name = class.map(String::from);
            c
        };
    pvcs.create(
        &PostParams::default(),
        &with_source(
            "restored",
            "VolumeSnapshot",
            Some("snapshot.storage.k8s.io"),
            "snap",
            None,
        ),
    )
    .await
    .unwrap();
    bound(&pvcs, "restored").await;
    assert_eq!(
        std::fs::read(cluster.volume_dir("default", "restored").unwrap().join("f")).unwrap(),
        b"v1"
    );

    pvcs.create(
        &PostParams::default(),
        &with_source("cloned", "PersistentVolumeClaim", None, "data", None),
    )
    .await
    .unwrap();
    bound(&pvcs, "cloned").await;
    assert_eq!(
        std::fs::read(cluster.volume_dir("default", "cloned").unwrap().join("f")).unwrap(),
        b"v2"
    );

    // Across classes there is no clone: the claim stays Pending with ProvisioningFailed.
    pvcs.create(
        &PostParams::default(),
        &with_source(
            "elsewhere",
            "PersistentVolumeClaim",
            None,
            "data",
            Some("plain"),
        ),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev = wait_events(&events, "ProvisioningFailed", "elsewhere").await;
    assert!(
        ev[0]
            .message
            .as_deref()
            .unwrap()
            .contains("must be in the same storage class"),
        "{:?}",
        ev[0].message
    );
    assert_eq!(
        pvcs.get("elsewhere")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );
}

fn plain_pod(name: &str, claim: Option<&str>, extra_spec: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox:1.36"}]});
    if let Some(c) = claim {
        spec["containers"][0]["volumeMounts"] = json!([{"name": "d", "mountPath": "/d"}]);
        spec["volumes"] = json!([{"name": "d", "persistentVolumeClaim": {"claimName": c}}]);
    }
    json_patch::merge(&mut spec, &extra_spec);
    from(json!({"metadata": {"name": name}, "spec": spec}))
}

#[tokio::test]
async fn wait_for_first_consumer_binds_where_the_pod_goes_and_local_volumes_pin_pods() {
    let cluster = FakeCluster::start(Options {
        local_drivers: vec!["rancher.io/local-path".into()],
        ..Options::default()
    });
    cluster
        .add_storage_class("local", "rancher.io/local-path", true, "Delete", false)
        .unwrap();
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let mut c = claim("local", "1Gi", "ReadWriteOnce");
    c.spec.as_mut().unwrap().storage_class_name = Some("local".into());
    pvcs.create(&PostParams::default(), &c).await.unwrap();
    wait_events(&events, "WaitForFirstConsumer", "local").await;
    assert_eq!(
        pvcs.get("local")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );

    pods.create(
        &PostParams::default(),
        &plain_pod("first", Some("local"), json!({})),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "first", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    let node = pods
        .get("first")
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap();
    let bound_claim = bound(&pvcs, "local").await;
    assert_eq!(
        bound_claim.metadata.annotations.unwrap()["volume.kubernetes.io/selected-node"],
        node
    );
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get(&bound_claim.spec.unwrap().volume_name.unwrap())
        .await
        .unwrap();
    let term = &pv
        .spec
        .unwrap()
        .node_affinity
        .unwrap()
        .required
        .unwrap()
        .node_selector_terms[0];
    assert_eq!(
        term.match_expressions.as_ref().unwrap()[0].values,
        Some(vec![node.clone()])
    );

    // A pod forced onto the other node cannot use the volume.
    let other = if node == "node-a" { "node-b" } else { "node-a" };
    let forced = plain_pod(
        "second",
        Some("local"),
        json!({"nodeSelector": {"kubernetes.io/hostname": other}}),
    );
    pods.create(&PostParams::default(), &forced).await.unwrap();
    let ev = wait_events(&events, "FailedScheduling", "second").await;
    let msg = ev[0].message.clone().unwrap();
    assert!(msg.starts_with("0/2 nodes are available: "), "{msg}");
    assert!(
        msg.contains("1 node(s) didn't match Pod's node affinity/selector"),
        "{msg}"
    );
    assert!(
        msg.contains("1 node(s) had volume node affinity conflict"),
        "{msg}"
    );
}

#[tokio::test]
async fn pods_that_ask_for_more_than_a_node_has_left_stay_pending() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let asking = |name: &str, cpu: &str, memory: &str| {
        plain_pod(
            name,
            None,
            json!({"containers": [{"name": "c", "image": "busybox:1.36",
                "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
        )
    };
    // Each node has 4 CPUs and 16Gi allocatable.
    for (name, cpu, memory, why) in [
        ("cpus", "1000", "1Mi", "2 Insufficient cpu"),
        ("memory", "100m", "17Gi", "2 Insufficient memory"),
    ] {
        pods.create(&PostParams::default(), &asking(name, cpu, memory))
            .await
            .unwrap();
        let ev = wait_events(&events, "FailedScheduling", name).await;
        let msg = ev[0].message.as_deref().unwrap();
        assert!(
            msg.starts_with(&format!("0/2 nodes are available: {why}.")),
            "{msg}"
        );
    }
    // What running pods requested counts: three pods of 3 CPUs find room for two.
    for name in ["a", "b", "c"] {
        pods.create(&PostParams::default(), &asking(name, "3", "1Gi"))
            .await
            .unwrap();
    }
    for name in ["a", "b"] {
        tokio::time::timeout(
            WAIT,
            await_condition(pods.clone(), name, conditions::is_pod_running()),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let ev = wait_events(&events, "FailedScheduling", "c").await;
    let msg = ev[0].message.as_deref().unwrap();
    assert!(msg.contains("2 Insufficient cpu"), "{msg}");
}

#[tokio::test]
async fn cordoned_and_tainted_nodes_are_skipped_and_missing_claims_block_scheduling() {
    let cluster = FakeCluster::start(Options::default());
    cluster.set_unschedulable("node-a", true).unwrap();
    cluster
        .taint_node("node-b", "dedicated", "db", "NoSchedule")
        .unwrap();
    let client = cluster.client();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &plain_pod("p", None, json!({})))
        .await
        .unwrap();
    let ev = wait_events(&events, "FailedScheduling", "p").await;
    assert_eq!(
        ev[0].message.as_deref().unwrap(),
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    let tolerant = plain_pod(
        "q",
        None,
        json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
    );
    pods.create(&PostParams::default(), &tolerant)
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "q", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        pods.get("q")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("node-b")
    );

    pods.create(
        &PostParams::default(),
        &plain_pod(
            "r",
            Some("nothing"),
            json!({"tolerations": [{"operator": "Exists"}]}),
        ),
    )
    .await
    .unwrap();
    let ev = wait_events(&events, "FailedScheduling", "r").await;
    assert!(
        ev[0]
            .message
            .as_deref()
            .unwrap()
            .contains("persistentvolumeclaim \"nothing\" not found")
    );
}

#[tokio::test]
async fn an_unpullable_image_keeps_the_pod_waiting_with_pull_events() {
    let cluster = FakeCluster::start(Options::default());
    cluster.set_unpullable("registry.invalid/pvc-backup:0");
    let client = cluster.client();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let j: Job = from(
        json!({"metadata": {"name": "pull"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "registry.invalid/pvc-backup:0"}]}}}}),
    );
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let pod_name = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(p) = pods_of(&pods, "job-name=pull").await.pop() {
                return p.metadata.name.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev = wait_events(&events, "Failed", &pod_name).await;
    assert!(ev.iter().any(|e| {
        e.message
            .as_deref()
            .unwrap()
            .starts_with("Failed to pull image \"registry.invalid/pvc-backup:0\"")
    }));
    let waiting = |o: Option<&Pod>| {
        o.and_then(|p| {
            p.status.as_ref()?.container_statuses.as_ref()?[0]
                .state
                .as_ref()?
                .waiting
                .as_ref()?
                .reason
                .clone()
        })
        .is_some_and(|r| r == "ImagePullBackOff")
    };
    tokio::time::timeout(WAIT, await_condition(pods.clone(), &pod_name, waiting))
        .await
        .unwrap()
        .unwrap();
    let e = api_err(pods.logs(&pod_name, &Default::default()).await.unwrap_err());
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        format!(
            "container \"c\" in pod \"{pod_name}\" is waiting to start: trying and failing to pull image"
        )
    );
    assert_eq!(
        jobs.get("pull").await.unwrap().status.unwrap().active,
        Some(1)
    );
}

#[tokio::test]
async fn deleting_pods_jobs_and_namespaces_follows_the_api_servers_rules() {
    let (cluster, _tmp) = cluster_with_mover();
    let client = cluster.client();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    // A running mover process gets SIGTERM; the pod goes once it ended.
    let sleeper: Pod = from(
        json!({"metadata": {"name": "sleeper"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "m", "image": "x:1", "command": ["/pvc-backup"], "args": ["sleep", "600"]}]}}),
    );
    pods.create(&PostParams::default(), &sleeper).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "sleeper", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    let uid = pods.get("sleeper").await.unwrap().metadata.uid.unwrap();
    let deleted = pods
        .delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    let pending = deleted.left().expect("a running pod is deleted gracefully");
    assert!(pending.metadata.deletion_timestamp.is_some());
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "sleeper", conditions::is_deleted(&uid)),
    )
    .await
    .unwrap()
    .unwrap();

    // A stale precondition is a conflict.
    pods.create(&PostParams::default(), &plain_pod("keep", None, json!({})))
        .await
        .unwrap();
    let e = api_err(
        pods.delete(
            "keep",
            &DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some("other".into()),
                    resource_version: None,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 409);

    // Background propagation takes a Job's pods along; ttlSecondsAfterFinished removes a finished Job.
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let j: Job = from(
        json!({"metadata": {"name": "bg"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}),
    );
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let running = |o: Option<&Job>| o.and_then(|j| j.status.as_ref()?.ready) == Some(1);
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), "bg", running))
        .await
        .unwrap()
        .unwrap();
    jobs.delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while !pods_of(&pods, "job-name=bg").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let quick: Job = from(
        json!({"metadata": {"name": "quick"}, "spec": {"ttlSecondsAfterFinished": 0, "template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "x:1", "command": ["/pvc-backup"], "args": ["sleep", "0"]}]}}}}),
    );
    let quick = jobs.create(&PostParams::default(), &quick).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(
            jobs.clone(),
            "quick",
            conditions::is_deleted(&quick.metadata.uid.unwrap()),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(pods_of(&pods, "job-name=quick").await.is_empty());

    // A namespace empties before it goes, and takes no new objects meanwhile.
    cluster.add_namespace("gone").unwrap();
    let gone_pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "gone");
    let gone_pods: Api<Pod> = Api::namespaced(client.clone(), "gone");
    gone_pvcs
        .create(
            &PostParams::default(),
            &claim("data", "1Gi", "ReadWriteOnce"),
        )
        .await
        .unwrap();
    let pv = bound(&gone_pvcs, "data")
        .await
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    gone_pods
        .create(
            &PostParams::default(),
            &plain_pod("user", Some("data"), json!({})),
        )
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(gone_pods.clone(), "user", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns_uid = nss.get("gone").await.unwrap().metadata.uid.unwrap();
    nss.delete("gone", &DeleteParams::default()).await.unwrap();
    let e = api_err(
        gone_pvcs
            .create(
                &PostParams::default(),
                &claim("late", "1Gi", "ReadWriteOnce"),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert!(
        e.message.contains("because it is being terminated"),
        "{}",
        e.message
    );
    tokio::time::timeout(
        WAIT,
        await_condition(nss.clone(), "gone", conditions::is_deleted(&ns_uid)),
    )
    .await
    .unwrap()
    .unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    assert!(
        tokio::time::timeout(WAIT, async {
            while pvs.get_opt(&pv).await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn block_claims_map_device_paths_to_image_files() {
    let (cluster, _tmp) = cluster_with_mover();
    let client = cluster.client();
    let block = ClaimOptions {
        block: true,
        size: "1Mi".into(),
        ..ClaimOptions::default()
    };
    let src = cluster
        .add_bound_claim("default", "disk", block.clone())
        .unwrap();
    let dst = cluster
        .add_bound_claim("default", "disk-copy", block)
        .unwrap();
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 1 << 20);
    std::fs::write(&src, vec![7u8; 4096]).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = from(
        json!({"metadata": {"name": "blk"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "m", "image": "x:1", "command": ["/pvc-backup", "copyfile"], "args": ["/dev/source", "/dev/target"],
            "volumeDevices": [{"name": "s", "devicePath": "/dev/source"}, {"name": "t", "devicePath": "/dev/target"}]}],
        "volumes": [{"name": "s", "persistentVolumeClaim": {"claimName": "disk"}}, {"name": "t", "persistentVolumeClaim": {"claimName": "disk-copy"}}]}}),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let done =
        |o: Option<&Pod>| o.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Succeeded");
    tokio::time::timeout(WAIT, await_condition(pods.clone(), "blk", done))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), vec![7u8; 4096]);
    assert_eq!(cluster.volume_dir("default", "disk-copy").unwrap(), dst);
}

#[tokio::test]
async fn deployment_configs_scale_and_redeploy_on_template_change() {
    // A plain Kubernetes cluster has no DeploymentConfigs.
    let plain = FakeCluster::start(Options::default());
    let ar = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "apps.openshift.io",
        "v1",
        "DeploymentConfig",
    ));
    let none: Api<kube::api::DynamicObject> = Api::default_namespaced_with(plain.client(), &ar);
    assert_eq!(
        api_err(none.list(&ListParams::default()).await.unwrap_err()).code,
        404
    );

    let cluster = FakeCluster::start(Options {
        openshift: true,
        ..Options::default()
    });
    let client = cluster.client();
    let ar = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "apps.openshift.io",
        "v1",
        "DeploymentConfig",
    ));
    let dcs: Api<kube::api::DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let dc: kube::api::DynamicObject = from(
        json!({"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
        "metadata": {"name": "shop"}, "spec": {"replicas": 1, "selector": {"app": "shop"},
        "template": {"metadata": {"labels": {"app": "shop"}}, "spec": {"containers": [{"name": "c", "image": "shop:1"}]}}}}),
    );
    dcs.create(&PostParams::default(), &dc).await.unwrap();
    let ready = |n: i64| {
        let cluster = &cluster;
        move || {
            cluster
                .get_value(
                    "apps.openshift.io/v1",
                    "DeploymentConfig",
                    "default",
                    "shop",
                )
                .is_some_and(|v| v["status"]["readyReplicas"] == n && v["status"]["replicas"] == n)
        }
    };
    let wait = |f: &dyn Fn() -> bool| cluster.wait_for(WAIT, |_| f());
    assert!(wait(&ready(1)));
    let ps = pods_of(&pods, "deploymentconfig=shop").await;
    assert_eq!(ps.len(), 1);
    assert!(
        ps[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("shop-1-")
    );
    assert_eq!(
        ps[0].metadata.owner_references.as_ref().unwrap()[0].kind,
        "ReplicationController"
    );

    dcs.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    assert!(wait(&ready(2)));
    dcs.patch("shop", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "shop:2"}]}}}})))
        .await
        .unwrap();
    assert!(cluster.wait_for(WAIT, |c| {
        c.get_value(
            "apps.openshift.io/v1",
            "DeploymentConfig",
            "default",
            "shop",
        )
        .is_some_and(|v| {
            v["status"]["latestVersion"] == 2
                && v["status"]["updatedReplicas"] == 2
                && v["status"]["replicas"] == 2
        })
    }));
    // The old version's pods go away (after their short termination).
    tokio::time::timeout(WAIT, async {
        loop {
            let ps = pods_of(&pods, "deploymentconfig=shop").await;
            if ps.len() == 2
                && ps
                    .iter()
                    .all(|p| p.metadata.name.as_deref().unwrap().starts_with("shop-2-"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_kubeconfig_works_and_server_side_apply_creates_then_updates() {
    let cluster = FakeCluster::start(Options::default());
    let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    testcluster::use_ring_for_tls();
    let client = kube::Client::try_from(config).unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let ssa = PatchParams::apply("pvc-backup");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "1"}});
    cms.patch("applied", &ssa, &Patch::Apply(&body))
        .await
        .unwrap();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "2"}});
    cms.patch("applied", &ssa, &Patch::Apply(&body))
        .await
        .unwrap();
    assert_eq!(cms.get("applied").await.unwrap().data.unwrap()["k"], "2");
    let e = api_err(
        cms.patch("applied", &PatchParams::default(), &Patch::Apply(&body))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400, "apply needs a field manager");
}

#[tokio::test]
async fn claims_and_volumes_in_use_are_protected_and_resize_needs_an_expandable_class() {
    let cluster = FakeCluster::start(Options::default());
    cluster
        .add_storage_class("fixed", "example.com/fixed", false, "Delete", false)
        .unwrap();
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut c = claim("data", "1Gi", "ReadWriteOnce");
    c.spec.as_mut().unwrap().storage_class_name = Some("fixed".into());
    pvcs.create(&PostParams::default(), &c).await.unwrap();
    let pv = bound(&pvcs, "data")
        .await
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    let e = api_err(
        pvcs.patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert!(
        e.message
            .contains("only dynamically provisioned pvc can be resized"),
        "{}",
        e.message
    );

    pods.create(
        &PostParams::default(),
        &plain_pod("user", Some("data"), json!({})),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "user", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    // Both deletions wait: the claim for its pod, the volume for its claim.
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    pvs.delete(&pv, &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = pvcs.get("data").await.unwrap();
    assert!(
        left.metadata.deletion_timestamp.is_some(),
        "{}",
        cluster.dump()
    );
    assert_eq!(left.status.unwrap().phase.as_deref(), Some("Bound"));
    assert!(
        pvs.get(&pv)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    // A new pod cannot use a claim that is being deleted.
    pods.create(
        &PostParams::default(),
        &plain_pod("late", Some("data"), json!({})),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev = wait_events(&events, "FailedScheduling", "late").await;
    assert!(
        ev[0]
            .message
            .as_deref()
            .unwrap()
            .contains("persistentvolumeclaim \"data\" is being deleted")
    );
    pods.delete("late", &DeleteParams::default()).await.unwrap();
    pods.delete("user", &DeleteParams::default()).await.unwrap();
    let uid = left.metadata.uid.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pvcs.clone(), "data", conditions::is_deleted(&uid)),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(pvs.clone(), &pv, conditions::is_deleted("")),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn a_new_claim_in_the_pod_template_replaces_the_pods() {
    let cluster = FakeCluster::start(Options::default());
    let client = cluster.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for n in ["old", "new"] {
        pvcs.create(&PostParams::default(), &claim(n, "1Gi", "ReadWriteOnce"))
            .await
            .unwrap();
        bound(&pvcs, n).await;
    }
    deps.create(&PostParams::default(), &web("web", "old", "node-a"))
        .await
        .unwrap();
    let on_claim = |claim: &'static str| {
        let pods = pods.clone();
        async move {
            loop {
                let ps = pods_of(&pods, "app=web").await;
                let uses = |p: &Pod| {
                    p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
                        .persistent_volume_claim
                        .as_ref()
                        .unwrap()
                        .claim_name
                        == claim
                };
                let running =
                    |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if ps.len() == 1 && uses(&ps[0]) && running(&ps[0]) {
                    return ps[0].metadata.name.clone().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = tokio::time::timeout(WAIT, on_claim("old")).await.unwrap();
    // The strategic merge patch merges the volume by name.
    let patch = json!({"spec": {"template": {"spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "new"}}]}}}});
    deps.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let second = tokio::time::timeout(WAIT, on_claim("new"))
        .await
        .unwrap_or_else(|_| panic!("{}", cluster.dump()));
    assert_ne!(first, second);
    let rolled = |o: Option<&Deployment>| {
        o.and_then(|d| d.status.as_ref()).is_some_and(|s| {
            s.observed_generation == Some(2)
                && s.updated_replicas == Some(1)
                && s.replicas == Some(1)
        })
    };
    tokio::time::timeout(WAIT, await_condition(deps.clone(), "web", rolled))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deps.get("web").await.unwrap().metadata.generation, Some(2));
}

#[tokio::test]
async fn a_job_past_its_active_deadline_fails_and_its_running_pod_is_stopped() {
    let (cluster, _tmp) = cluster_with_mover();
    let client = cluster.client();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let j: Job = from(
        json!({"metadata": {"name": "slow"}, "spec": {"activeDeadlineSeconds": 1, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "m", "image": "x:1", "command": ["/pvc-backup"], "args": ["sleep", "600"]}]}}}}),
    );
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let failed = |o: Option<&Job>| {
        o.and_then(|j| j.status.as_ref()?.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Failed" && c.reason.as_deref() == Some("DeadlineExceeded"))
            })
    };
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), "slow", failed))
        .await
        .unwrap()
        .unwrap();
    // The pod's process got SIGTERM and the pod went away well before its 600 s sleep.
    tokio::time::timeout(WAIT, async {
        while !pods_of(&pods, "job-name=slow").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{}", cluster.dump()));
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev = wait_events(&events, "DeadlineExceeded", "slow").await;
    assert_eq!(
        ev[0].message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
}
