//! The CLI's writes to its stdout: a reader that went away (`berth ps |
//! head -1`) ends the command quietly with status 0 (the reader got what it
//! wanted; decision 0012), never a panic, an error line or a blame on the
//! agent.

use std::io::Write;

use super::Failure;

/// The exit status after the output's reader went away: success, so
/// `set -o pipefail; berth logs X | head` does not fail (decision 0012).
pub const CLOSED_OUTPUT_STATUS: i32 = 0;

/// Writes to stdout and flushes, so a closed pipe is seen here.
pub fn write_stdout(text: std::fmt::Arguments) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|e| output_failure(&e))
}

/// The failure for an error writing the CLI's own output.
pub fn output_failure(e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure {
            message: String::new(),
            code: CLOSED_OUTPUT_STATUS,
        }
    } else {
        Failure {
            message: format!("writing output: {e}"),
            code: 1,
        }
    }
}

/// `print!` for CLI commands: returns the failure from the enclosing fn.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($arg)*))?
    };
}

/// `println!` for CLI commands: returns the failure from the enclosing fn.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};

/// An answer as `--json` prints it: a JSON value, so its keys come out
/// sorted, as when the CLI printed the agent's JSON untyped.
pub fn json_value(answer: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(answer).expect("an answer type serializes")
}
