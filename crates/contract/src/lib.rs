//! The mover's contract: what its caller and the mover agree on, with no engine inside.
//!
//! The mover runs in a pod (or on two local folders) and speaks to its caller in four ways, each
//! owned here: the [`command`] line it is started with, the [`progress`] lines it prints while it
//! works, the [`summary`] it prints (and writes to the target) at the end, and its [`exit`] code.
//! The [`snapshots`] listing is what `mover snapshots --json` prints about a backup.
//! The engine (the mover and block crates, the binary's mover verbs) writes them; the cluster
//! crate and the binary's cluster commands read them.

pub mod command;
pub mod exit;
pub mod progress;
pub mod snapshots;
pub mod summary;

pub use command::{Excludes, MoverCommand, Retention, SendPeer};
pub use exit::ExitCode;
pub use progress::{Line, Progress};
pub use snapshots::Listing;
pub use summary::{Report, Summary};
