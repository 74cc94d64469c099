//! The admission guard of pvc-backup: only the mover may use the backup service account.
//!
//! The mover's service account may add five capabilities; without a guard, anyone who can create
//! a pod in the namespace could run any image under it. The guard comes in two forms that
//! enforce one [`policy`]:
//!
//! - a validating webhook [`server`] (HTTPS, AdmissionReview v1 and v1beta1), and
//! - a ValidatingAdmissionPolicy in CEL ([`vap`]) that the API server evaluates itself.
//!
//! [`manifests`] prints what installs either form.

pub mod error;
pub mod image;
pub mod manifests;
pub mod metrics;
pub mod policy;
pub mod review;
pub mod server;
pub mod tls;
pub mod vap;

pub use error::{Error, Result};
pub use image::{ImageRef, ImageRule};
pub use policy::{Decision, Policy};
pub use server::{ServerOptions, Webhook};
