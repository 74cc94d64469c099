//! `pvc-backup`: back up, clone and migrate Kubernetes PersistentVolumeClaims.
//!
//! The binary is thin: it parses the command line, calls into the library crates and prints.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod completions;
mod logging;
mod manifests;
mod mover;
mod operator_cmd;
mod output;
mod webhook;
mod workflows;

/// Back up, clone and migrate Kubernetes PersistentVolumeClaims with full fidelity.
#[derive(Debug, Parser)]
#[command(name = "pvc-backup", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Back up a claim into another claim: a new browsable snapshot each run, with retention.
    Backup(workflows::backup::BackupArgs),
    /// Back up a claim on a schedule (a CronJob).
    Schedule(workflows::schedule::ScheduleArgs),
    /// List scheduled backups.
    Schedules(workflows::schedule::SchedulesArgs),
    /// Remove the scheduled backups of a claim (the backups stay).
    Unschedule(workflows::schedule::UnscheduleArgs),
    /// Copy a claim into one or N new claims (CSI clone or the mover).
    Clone(workflows::clone::CloneArgs),
    /// Move a claim to another storage class: copy live, stop the workload, copy the rest,
    /// verify, cut over, start it again (--rollback goes back).
    Migrate(workflows::migrate::MigrateArgs),
    /// Bring a backup's snapshot back into a claim (the workload stopped meanwhile), or with
    /// --swap point the workload at the snapshot in the backup claim.
    Restore(workflows::restore::RestoreArgs),
    /// Point a workload back at the claims pvc-backup recorded before restore --swap (or
    /// migrate) changed them; scale it back up if a --scale-down run died and left it at zero.
    Rollback(workflows::restore::RollbackArgs),
    /// List the claims pvc-backup made, their source, last run and schedule.
    List(workflows::list::ListArgs),
    /// The copy engine that runs inside the mover pod (works on any two local folders).
    Mover(mover::MoverArgs),
    /// The validating admission webhook that guards the backup service account.
    Webhook(webhook::WebhookArgs),
    /// Carry out the pvc-backup.io resources (Backup today) as their controller.
    Operator(operator_cmd::OperatorArgs),
    /// Print install manifests (YAML) for kubectl, GitOps and OpenShift.
    Manifests(manifests::ManifestsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one for every command into a folder.
    Man(completions::ManArgs),
}

/// Parses the command line; installed as `kubectl-pvc_backup`, usage and help speak of
/// `kubectl pvc-backup`, the name kubectl runs it under.
fn parse() -> Cli {
    let plugin = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().starts_with("kubectl-"))
        })
        .unwrap_or(false);
    let mut command = Cli::command();
    if plugin {
        command = command.bin_name("kubectl pvc-backup");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse();
    let result = match cli.command {
        Command::Backup(args) => workflows::backup::run(args),
        Command::Schedule(args) => workflows::schedule::schedule(args),
        Command::Schedules(args) => workflows::schedule::schedules(args),
        Command::Unschedule(args) => workflows::schedule::unschedule(args),
        Command::List(args) => workflows::list::run(args),
        Command::Clone(args) => workflows::clone::run(args),
        Command::Migrate(args) => workflows::migrate::run(args),
        Command::Restore(args) => workflows::restore::run(args),
        Command::Rollback(args) => workflows::restore::rollback(args),
        Command::Mover(args) => mover::run(args),
        Command::Webhook(args) => webhook::run(args),
        Command::Operator(args) => operator_cmd::run(args),
        Command::Manifests(args) => manifests::run(args),
        Command::Completions(args) => completions::completions(args, Cli::command()),
        Command::Man(args) => completions::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pvc-backup: error: {}", message(&err));
            ExitCode::from(1)
        }
    }
}

/// The error with its causes, each once (see [`cluster::error::chain_text`]).
fn message(err: &anyhow::Error) -> String {
    cluster::error::chain_text(err.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once() {
        let mut status = kube::core::Status::failure("claims \"data\" not found", "NotFound");
        status.code = 404;
        let err = cluster::Error::api("read claim data")(kube::Error::Api(status.boxed()))
            .context("nothing was changed");
        let text = message(&anyhow::Error::new(err));
        assert_eq!(
            text.matches("not found").count(),
            1,
            "the API server's message is printed once: {text}"
        );
        assert_eq!(
            text,
            "nothing was changed: read claim data: claims \"data\" not found (NotFound)"
        );
        let plain = anyhow::anyhow!("the cause").context("the step");
        assert_eq!(message(&plain), "the step: the cause");
        // A cause that prints its own source ("what: cause") is not followed by it again; one
        // that does not is.
        #[derive(Debug)]
        struct PrintsItsSource(std::io::Error);
        impl std::fmt::Display for PrintsItsSource {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "write x: {}", self.0)
            }
        }
        impl std::error::Error for PrintsItsSource {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let full = std::io::Error::other("disk full");
        let printed = anyhow::Error::new(PrintsItsSource(full)).context("the step");
        assert_eq!(message(&printed), "the step: write x: disk full");
        let wrapped = anyhow::Error::new(std::io::Error::other("disk full"))
            .context("write y")
            .context("the step");
        assert_eq!(message(&wrapped), "the step: write y: disk full");
    }

    #[test]
    fn the_binary_accepts_every_mover_command_the_contract_renders() {
        for command in contract::MoverCommand::examples() {
            let args = command.args();
            let parsed = Cli::try_parse_from(std::iter::once("pvc-backup".to_owned()).chain(args));
            match parsed {
                Ok(cli) => assert!(matches!(cli.command, Command::Mover(_)), "{command:?}"),
                // `--version` is answered by clap itself, before any command.
                Err(e) => assert!(
                    command == contract::MoverCommand::Version
                        && e.kind() == clap::error::ErrorKind::DisplayVersion,
                    "{command:?}: {e}"
                ),
            }
        }
    }
}
