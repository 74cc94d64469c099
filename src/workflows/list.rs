//! `pvc-backup list`: what pvc-backup made, and how its last run went.

use std::process::ExitCode;

use serde_json::json;

use super::{KubeArgs, OutputArgs, with_cluster};

/// Arguments of `pvc-backup list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// List all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `pvc-backup list`.
pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let entries = with_cluster(&args.kube, async |kube| {
        Ok(cluster::workflow::list::list(kube, args.all_namespaces).await?)
    })?;
    let mut human = format!(
        "{:<16} {:<24} {:<8} {:<20} {:<8} {:<21} {:<8} {:<10} {:<22} {}",
        "NAMESPACE",
        "NAME",
        "ROLE",
        "SOURCE",
        "SIZE",
        "LAST RUN",
        "RESULT",
        "COPIED",
        "SNAPSHOT",
        "SCHEDULE"
    );
    for e in &entries {
        let run = e.last_run.clone().unwrap_or_default();
        let copied = run["bytesCopied"]
            .as_u64()
            .map(|b| cluster::quantity::human(u128::from(b)))
            .unwrap_or_else(|| "-".to_owned());
        human.push_str(&format!(
            "\n{:<16} {:<24} {:<8} {:<20} {:<8} {:<21} {:<8} {:<10} {:<22} {}",
            e.namespace,
            e.name,
            e.role,
            e.source,
            e.size.as_deref().unwrap_or("-"),
            run["at"].as_str().unwrap_or("never"),
            run["result"].as_str().unwrap_or("-"),
            copied,
            run["snapshot"].as_str().unwrap_or("-"),
            e.schedules
                .iter()
                .map(|s| s.schedule.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if entries.is_empty() {
        human = "no claims made by pvc-backup here (-A lists all namespaces)".to_owned();
    }
    args.output
        .print_result(&json!({"items": entries}), &human)?;
    Ok(ExitCode::SUCCESS)
}
