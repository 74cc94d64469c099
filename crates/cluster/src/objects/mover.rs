//! The mover's Job and CronJob: one pod that runs `pvc-backup mover ...` with the claims mounted,
//! next to the workload when a ReadWriteOnce claim requires it.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvVar, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimVolumeSource, PodAffinity,
    PodAffinityTerm, PodSpec, PodTemplateSpec, ResourceRequirements, SecretVolumeSource,
    Toleration, Volume, VolumeDevice, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::names::{ENTRYPOINT, REQUIRED_SCC_ANNOTATION, SCC, SERVICE_ACCOUNT};
use crate::objects::claim::{Role, labels};
use crate::security::{self, Privilege};

/// The node label the mover is pinned by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The mover container's name; the pod log followed is this container's.
pub const CONTAINER: &str = "mover";

/// The pod volume of a transfer's keys Secret.
pub const KEYS_VOLUME: &str = "keys";

/// The name of the port a receiving mover listens on, which its Service targets.
pub const WIRE_PORT_NAME: &str = "wire";

/// A claim as the mover pod sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The volume's name inside the pod (`source`, `backup`, `target-2`, ...).
    pub volume: String,
    /// The claim.
    pub claim: String,
    /// Where it appears in the pod: a folder, or a device node for a `Block` claim.
    pub path: String,
    /// Mounted read-only (the source of a copy).
    pub read_only: bool,
    /// A raw block claim (`volumeMode: Block`), given to the pod as a device.
    pub block: bool,
}

/// A Secret the mover reads its transfer keys from, mounted read-only with files of mode 0400
/// (the mover refuses a key others may read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysVolume {
    /// The Secret's name.
    pub secret: String,
    /// Where it appears in the pod (the `--keys` folder).
    pub path: String,
}

/// Where the mover pod may run.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Placement {
    /// Wherever the scheduler likes: no claim is attached to a node yet.
    #[default]
    Anywhere,
    /// On this node, because a running pod there has a ReadWriteOnce claim attached that the
    /// mover needs too. Its tolerations let the mover onto a tainted node the workload runs on.
    Node {
        /// The node's name (its `kubernetes.io/hostname` label).
        node: String,
        /// Tolerations copied from the workload's pods.
        tolerations: Vec<Toleration>,
    },
    /// Next to pods with these labels when they run (a scheduled backup cannot know the node
    /// in advance): a strong preference for their node.
    NextTo {
        /// Labels of the workload's pods.
        labels: BTreeMap<String, String>,
        /// Tolerations copied from the workload's pods.
        tolerations: Vec<Toleration>,
    },
}

/// Limits that keep a mover Job from running or lingering forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Pod retries after a failure.
    pub backoff_limit: i32,
    /// The Job fails after this many seconds.
    pub active_deadline_seconds: i64,
    /// The finished Job (and its pod's log) is removed after this many seconds.
    pub ttl_seconds_after_finished: i32,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            backoff_limit: 0,
            active_deadline_seconds: 24 * 3600,
            ttl_seconds_after_finished: 24 * 3600,
        }
    }
}

/// Everything a mover Job is made of.
#[derive(Debug, Clone)]
pub struct MoverJob {
    /// The Job's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The source claim (recorded as a label).
    pub source: String,
    /// What the run is for (recorded as a label).
    pub role: Role,
    /// The pvc-backup image.
    pub image: String,
    /// Root with five capabilities, or unprivileged.
    pub privilege: Privilege,
    /// The arguments after the entrypoint, starting with `mover`.
    pub args: Vec<String>,
    /// The claims it uses.
    pub mounts: Vec<Mount>,
    /// Where it runs.
    pub placement: Placement,
    /// CPU and memory requests and limits.
    pub resources: Option<ResourceRequirements>,
    /// Retries, deadline, clean-up.
    pub limits: JobLimits,
    /// Extra labels (for example the schedule's name on a CronJob's Jobs).
    pub extra_labels: BTreeMap<String, String>,
    /// The container's environment (a repository's password and keys, from a Secret).
    pub env: Vec<EnvVar>,
    /// The keys of a transfer between namespaces (`mover send` and `mover receive`).
    pub keys: Option<KeysVolume>,
    /// A port the mover listens on (`mover receive --listen`), named `wire` in the pod.
    pub port: Option<i32>,
}

impl MoverJob {
    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = labels(&self.source, self.role);
        l.extend(self.extra_labels.clone());
        l
    }

    /// The pod template.
    pub fn pod_template(&self) -> PodTemplateSpec {
        let (mounts, devices): (Vec<&Mount>, Vec<&Mount>) =
            self.mounts.iter().partition(|m| !m.block);
        let mut volume_mounts: Vec<VolumeMount> = mounts
            .iter()
            .map(|m| VolumeMount {
                name: m.volume.clone(),
                mount_path: m.path.clone(),
                read_only: Some(m.read_only).filter(|r| *r),
                ..VolumeMount::default()
            })
            .collect();
        if let Some(k) = &self.keys {
            volume_mounts.push(VolumeMount {
                name: KEYS_VOLUME.to_owned(),
                mount_path: k.path.clone(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        let volume_devices: Vec<VolumeDevice> = devices
            .iter()
            .map(|m| VolumeDevice {
                name: m.volume.clone(),
                device_path: m.path.clone(),
            })
            .collect();
        let mut volumes: Vec<Volume> = self
            .mounts
            .iter()
            .map(|m| Volume {
                name: m.volume.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: m.claim.clone(),
                    // A block device given read-only cannot be opened at all by some drivers;
                    // the mover opens a source device read-only itself.
                    read_only: Some(m.read_only && !m.block).filter(|r| *r),
                }),
                ..Volume::default()
            })
            .collect();
        if let Some(k) = &self.keys {
            volumes.push(Volume {
                name: KEYS_VOLUME.to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(k.secret.clone()),
                    default_mode: Some(0o400),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        let ports = self.port.map(|p| {
            vec![ContainerPort {
                name: Some(WIRE_PORT_NAME.to_owned()),
                container_port: p,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]
        });
        let (affinity, tolerations) = match &self.placement {
            Placement::Anywhere => (None, None),
            Placement::Node { node, tolerations } => (
                Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: vec![NodeSelectorTerm {
                                match_expressions: Some(vec![NodeSelectorRequirement {
                                    key: HOSTNAME_LABEL.to_owned(),
                                    operator: "In".to_owned(),
                                    values: Some(vec![node.clone()]),
                                }]),
                                ..NodeSelectorTerm::default()
                            }],
                        }),
                        ..NodeAffinity::default()
                    }),
                    ..Affinity::default()
                }),
                Some(tolerations.clone()).filter(|t| !t.is_empty()),
            ),
            Placement::NextTo {
                labels,
                tolerations,
            } => (
                Some(Affinity {
                    pod_affinity: Some(PodAffinity {
                        preferred_during_scheduling_ignored_during_execution: Some(vec![
                            WeightedPodAffinityTerm {
                                weight: 100,
                                pod_affinity_term: PodAffinityTerm {
                                    label_selector: Some(LabelSelector {
                                        match_labels: Some(labels.clone()),
                                        ..LabelSelector::default()
                                    }),
                                    topology_key: HOSTNAME_LABEL.to_owned(),
                                    ..PodAffinityTerm::default()
                                },
                            },
                        ]),
                        ..PodAffinity::default()
                    }),
                    ..Affinity::default()
                }),
                Some(tolerations.clone()).filter(|t| !t.is_empty()),
            ),
        };
        // On OpenShift the privileged mover is admitted with its own SCC or not at all (the
        // failure event then names the SCC to install); other clusters ignore the annotation.
        // An unprivileged mover is left to the namespace's default SCC.
        let annotations = (self.privilege == Privilege::Mover)
            .then(|| BTreeMap::from([(REQUIRED_SCC_ANNOTATION.to_owned(), SCC.to_owned())]));
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(self.labels()),
                annotations,
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".to_owned()),
                service_account_name: Some(SERVICE_ACCOUNT.to_owned()),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                security_context: Some(security::pod(self.privilege)),
                affinity,
                tolerations,
                containers: vec![Container {
                    name: CONTAINER.to_owned(),
                    image: Some(self.image.clone()),
                    image_pull_policy: Some("IfNotPresent".to_owned()),
                    command: Some(vec![ENTRYPOINT.to_owned()]),
                    args: Some(self.args.clone()),
                    env: Some(self.env.clone()).filter(|e| !e.is_empty()),
                    security_context: Some(security::container(self.privilege)),
                    resources: self.resources.clone(),
                    volume_mounts: Some(volume_mounts).filter(|v| !v.is_empty()),
                    volume_devices: Some(volume_devices).filter(|v| !v.is_empty()),
                    ports,
                    termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
                    ..Container::default()
                }],
                volumes: Some(volumes),
                ..PodSpec::default()
            }),
        }
    }

    fn job_spec(&self) -> JobSpec {
        JobSpec {
            backoff_limit: Some(self.limits.backoff_limit),
            active_deadline_seconds: Some(self.limits.active_deadline_seconds),
            ttl_seconds_after_finished: Some(self.limits.ttl_seconds_after_finished),
            template: self.pod_template(),
            ..JobSpec::default()
        }
    }

    /// The Job that runs the mover once.
    pub fn job(&self) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels()),
                ..ObjectMeta::default()
            },
            spec: Some(self.job_spec()),
            status: None,
        }
    }

    /// A CronJob that runs the mover on `schedule` (a checked 5-field cron expression), never
    /// two at once.
    pub fn cron_job(&self, schedule: &str, time_zone: Option<&str>) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels()),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.to_owned(),
                time_zone: time_zone.map(str::to_owned),
                concurrency_policy: Some("Forbid".to_owned()),
                starting_deadline_seconds: Some(3600),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(3),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(self.job_spec()),
                },
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }
}
