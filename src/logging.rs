//! Logs on stderr: colour only where a person reads them.

use std::io::IsTerminal;

/// Whether log lines on stderr get ANSI colours: only when stderr is a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>). A pod's log, a
/// file or a pipe gets plain text.
pub fn colour() -> bool {
    colour_for(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// Sets up the logs of a long-running server (the webhook, the operator): `RUST_LOG` as a
/// `tracing` filter, `info` without it, on stderr.
pub fn server() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .try_init();
}

fn colour_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour_for;
    use std::ffi::OsStr;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour_for(true, None));
        assert!(colour_for(true, Some(OsStr::new(""))));
        assert!(!colour_for(true, Some(OsStr::new("1"))));
        assert!(!colour_for(false, None));
    }
}
