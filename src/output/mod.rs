//! How the binary's commands show themselves. The commands decide what happened; this module
//! decides how it reads: JSON lines on stdout for a program, a bar and text on stderr for a
//! person ([`Output`]), the summary lines of copies ([`summary`]), the reports of the commands
//! that only read ([`reports`]), progress while a command works ([`progress`]), and the
//! machine output (`-o yaml|json`) of the cluster commands.

pub mod progress;
pub mod reports;
pub mod summary;

use std::fmt::Display;
use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

pub use mover::space::human_bytes;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, nothing otherwise.
    Auto,
    /// A progress bar on stderr.
    Bar,
    /// One JSON object a line on stdout, then the summary as JSON.
    Json,
    /// Nothing but the final line.
    None,
}

/// How a mover command shows itself: the choice between JSON for a program and text for a
/// person, made once from `--progress`, `-q` and `-v`.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON progress lines and a JSON result on stdout.
    pub json: bool,
    /// A progress bar on stderr.
    pub bar: bool,
    /// Only errors and the final line.
    pub quiet: bool,
    /// Every error, not only the first ones.
    pub verbose: bool,
}

impl Output {
    /// The output `--progress MODE` asks for: a bar when asked, or by default on a terminal
    /// unless `quiet`.
    pub fn new(mode: ProgressMode, quiet: bool, verbose: bool) -> Output {
        let terminal = std::io::stderr().is_terminal();
        Output {
            json: mode == ProgressMode::Json,
            bar: mode == ProgressMode::Bar || (mode == ProgressMode::Auto && terminal && !quiet),
            quiet,
            verbose,
        }
    }

    /// Whether anything is shown while the command works.
    pub fn shows_progress(&self) -> bool {
        self.json || self.bar
    }
}

/// Prints why mover command `cmd` stopped (`pvc-backup mover CMD: MESSAGE` on stderr) and gives
/// back `code`, its exit code.
pub fn failed<C>(cmd: &str, message: impl Display, code: C) -> C {
    eprintln!("pvc-backup mover {cmd}: {message}");
    code
}

/// Prints a value as one line of JSON on stdout.
pub fn json_line(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Machine-readable output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// YAML (several objects as several documents).
    Yaml,
    /// JSON (several objects as a `List`).
    Json,
}

/// Prints objects (of a dry run) as YAML, or as a JSON `List` with [`Format::Json`].
pub fn print_objects(format: Option<Format>, objects: &[Value]) -> anyhow::Result<()> {
    let text = match format {
        Some(Format::Json) => cluster::objects::to_json(objects)?,
        _ => cluster::objects::to_yaml(objects)?,
    };
    write_stdout(&text)
}

/// Prints a cluster command's result: as YAML or JSON when a format is given, else the human
/// text.
pub fn print_result(format: Option<Format>, value: &Value, human: &str) -> anyhow::Result<()> {
    match format {
        Some(Format::Json) => write_stdout(&(serde_json::to_string_pretty(value)? + "\n")),
        Some(Format::Yaml) => write_stdout(&serde_saphyr::to_string(value)?),
        None => write_stdout(&format!("{human}\n")),
    }
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
