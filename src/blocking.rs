//! Blocking work (files, cgroups, the shim's handshake) that a request's or
//! a container's task waits for, run on that task's own thread where the
//! runtime allows it (decision 0055).
//!
//! `tokio::task::spawn_blocking` hands the work to a thread of the blocking
//! pool and its result back to a worker: two wake-ups of parked threads,
//! each about 50 µs when it lands on an idle CPU of a VM (an IPI and the
//! vCPU's return from halt), both on a launch's path. `block_in_place`
//! runs the work where the task is, after handing this worker's other
//! tasks to another thread, whose wake-up is then off the task's path.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `work` on this thread (`block_in_place`) on a multi-threaded
/// runtime, the agent's; on the blocking pool on a current-thread runtime
/// (unit tests), which `block_in_place` refuses. A panic in `work` comes
/// back as `Err` with its message, as from `spawn_blocking`.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
/// let sum = berth::blocking::run(|| (1..=10).sum::<u32>()).await.unwrap();
/// assert_eq!(sum, 55);
/// # });
/// ```
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| catch_unwind(AssertUnwindSafe(work)))
            .map_err(|panic| panic_message(&*panic))
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What a panic said, if it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let said = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    format!("panicked: {}", said.unwrap_or("(no message)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_this_thread_on_a_multi_threaded_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (caller, worker) = runtime.block_on(async {
            tokio::spawn(async {
                let caller = std::thread::current().id();
                (caller, run(|| std::thread::current().id()).await.unwrap())
            })
            .await
            .unwrap()
        });
        assert_eq!(caller, worker);
    }

    #[test]
    fn uses_the_blocking_pool_on_a_current_thread_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (caller, worker) = runtime.block_on(async {
            let caller = std::thread::current().id();
            (caller, run(|| std::thread::current().id()).await.unwrap())
        });
        assert_ne!(caller, worker);
    }

    #[test]
    fn a_panic_is_an_error_naming_it() {
        for flavor in ["multi", "current"] {
            let runtime = match flavor {
                "multi" => tokio::runtime::Builder::new_multi_thread().build(),
                _ => tokio::runtime::Builder::new_current_thread().build(),
            }
            .unwrap();
            let got = runtime.block_on(async {
                tokio::spawn(async { run(|| -> u32 { panic!("the work broke") }).await }).await
            });
            let message = got.unwrap().unwrap_err();
            assert!(message.contains("the work broke"), "{flavor}: {message}");
        }
    }
}
