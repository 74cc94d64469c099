//! Deciding whether a test can run here.

use std::io::Write;
use std::process::Command;

/// Whether this run is CI, where a skipped test is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips (returns `false` after printing why) or, under CI, panics.
pub fn skip(test: &str, why: &str) -> bool {
    if in_ci() {
        panic!("{test}: cannot run here ({why}), and CI=true forbids skipping");
    }
    // Straight to stderr: the test harness hides what eprintln! prints in a passing test.
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
    false
}

/// Whether `tool` can be run (found on PATH).
pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Returns whether the test may go on: root and every tool present.
pub fn need_root_and(test: &str, tools: &[&str]) -> bool {
    if !is_root() {
        return skip(test, "needs root (mounts, loop devices or other owners)");
    }
    need_tools(test, tools)
}

/// Returns whether the test may go on: every tool present.
pub fn need_tools(test: &str, tools: &[&str]) -> bool {
    for t in tools {
        if !have_tool(t) {
            return skip(
                test,
                &format!("needs `{t}` (scripts/test.sh installs it as root)"),
            );
        }
    }
    true
}

/// `setpriv` arguments (ending with `--`) that run a command as root without CAP_DAC_OVERRIDE
/// and CAP_DAC_READ_SEARCH, keeping the other capabilities: what root keeps on an NFS volume
/// exported with root_squash.
pub const ROOT_SQUASHED: [&str; 3] = [
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
    "--",
];

/// `setpriv` arguments (ending with `--`) that run a command as root with exactly the mover
/// pod's five capabilities: CHOWN, DAC_OVERRIDE, FOWNER, SETUID and SETGID. Without CAP_FSETID
/// the kernel silently drops a setgid bit from a `chmod` of an entry whose group is not root's.
pub const MOVER_POD: [&str; 3] = [
    "--bounding-set=-all,+chown,+dac_override,+fowner,+setuid,+setgid",
    "--inh-caps=-all",
    "--",
];

/// `setpriv` arguments (ending with `--`) that run a command as uid and gid 65534 with no
/// supplementary group and no capability at all: an unprivileged container's user.
pub const AS_NOBODY: [&str; 6] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--",
];
