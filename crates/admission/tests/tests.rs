//! Integration tests of the admission guard: one table of cases, two implementations (the
//! webhook and the ValidatingAdmissionPolicy's CEL), the real server over TLS, the manifests,
//! and property tests.

mod cel;
mod cost;
mod manifests;
mod props;
mod server;
mod util;
mod webhook;
