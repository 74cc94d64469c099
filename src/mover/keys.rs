//! `pvc-backup mover keys DIR`: a fresh pair of certificates for `mover send` and `mover receive`.

use std::path::PathBuf;
use std::process::ExitCode;

use contract::ExitCode as Exit;

use crate::output;

/// Arguments of `pvc-backup mover keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// The folder to write sender.key, sender.crt, receiver.key and receiver.crt into (created
    /// if missing). Give the sender its key and the receiver's certificate, the receiver its key
    /// and the sender's certificate.
    dir: PathBuf,
}

/// Writes the four files, refusing to replace existing ones.
pub(super) fn run(a: KeysArgs) -> anyhow::Result<ExitCode> {
    match wire::keys::generate(&a.dir) {
        Ok(files) => {
            for f in files {
                eprintln!("pvc-backup mover keys: wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(output::failed("keys", &e, Exit::Fatal).into()),
    }
}
