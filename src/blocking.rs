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
//!
//! Side work that such blocking work starts and waits for later (a
//! launch's prepares, its record's fsync) goes to [`detach`]: a thread of
//! the runtime's blocking pool, which outlives the work, rather than a
//! thread made and ended for it (decision 0057).

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

/// Runs `work` on another thread and returns at once: on a thread of the
/// blocking pool of the runtime this is called in (kept for the next
/// work once done), else on a new thread named `name` (unit tests, work
/// outside the agent's runtime), else here, if no thread can be started.
/// The work hands its results back itself (a channel); a panic ends it
/// with whatever it holds dropped.
///
/// ```
/// let (done, said) = std::sync::mpsc::channel();
/// berth::blocking::detach("berth-example", move || done.send(6 * 7).unwrap());
/// assert_eq!(said.recv().unwrap(), 42);
/// ```
pub fn detach(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn_blocking(work));
        return;
    }
    // Shared so that the work can still run here if the thread cannot be
    // started (the closure given to a failed spawn is gone).
    let work = std::sync::Arc::new(std::sync::Mutex::new(Some(work)));
    let for_thread = work.clone();
    let take = |slot: &std::sync::Mutex<Option<_>>| {
        slot.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    };
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(work) = take(&for_thread) {
                work();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("start a {name} thread: {e}; working in line");
        if let Some(work) = take(&work) {
            work();
        }
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
    fn detached_work_reuses_the_blocking_pools_threads() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let thread_of_a_job = || {
            let (done, said) = std::sync::mpsc::channel();
            detach("berth-test", move || {
                done.send(std::thread::current().id()).unwrap();
            });
            said.recv().unwrap()
        };
        let first = thread_of_a_job();
        assert_ne!(first, std::thread::current().id());
        // One after the other: the idle pool thread takes the next job.
        let mut threads = std::collections::HashSet::new();
        for _ in 0..20 {
            threads.insert(thread_of_a_job());
        }
        assert!(threads.len() < 10, "a thread per job: {}", threads.len());
    }

    #[test]
    fn detached_work_outside_a_runtime_runs_on_a_named_thread() {
        let (done, said) = std::sync::mpsc::channel();
        detach("berth-test", move || {
            let name = std::thread::current().name().map(str::to_string);
            done.send(name).unwrap();
        });
        assert_eq!(said.recv().unwrap().as_deref(), Some("berth-test"));
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
