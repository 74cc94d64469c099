//! Object builders: pure functions from a request to the Kubernetes objects that carry it out.

pub mod claim;
pub mod mover;
