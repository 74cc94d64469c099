//! pvc-backup's Kubernetes side.
//!
//! Building objects is pure (no I/O): the functions here turn a request ("back up claim `data`")
//! into the claims, Jobs and CronJobs that carry it out, so they can be tested without a cluster.
//! Talking to the API server is a thin layer over them.

pub mod access;
pub mod api;
pub mod connect;
pub mod cron;
pub mod error;
pub mod install;
pub mod names;
pub mod objects;
pub mod placement;
pub mod quantity;
pub mod run;
pub mod security;
pub mod workflow;
pub mod workload;

pub use error::{Error, Result};
