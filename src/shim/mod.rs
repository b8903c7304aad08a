//! berth-shim: the per-container supervisor the agent execs (see `protocol`).

pub mod protocol;

/// The shim's entry point; returns the process exit code.
pub fn main() -> i32 {
    0
}
