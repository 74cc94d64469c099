//! How a run of a binary ended, said with everything it printed so a failure explains itself.

use std::process::Output;

/// Panics with the command's stdout and stderr when it did not exit with `code`.
pub fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
