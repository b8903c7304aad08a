//! Threads kept for the side work that a launch starts and waits for later
//! (its helper's prepares, its record's fsync; decisions 0046, 0050): an
//! idle one takes the next work, and without one a new thread is made.
//! Work never waits in a queue, behind work that may itself be waiting for
//! it (a pool of a fixed size, the runtime's blocking pool among them,
//! could fill with launches that wait for their queued side work). A
//! thread idle for [`IDLE_KEPT`] ends (decision 0057).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// How long an idle thread waits for more work before it ends.
pub const IDLE_KEPT: Duration = Duration::from_secs(10);

/// The name of the threads.
pub const THREAD_NAME: &str = "berth-side";

type Work = Box<dyn FnOnce() + Send>;

/// A set of side threads; the process has one ([`run`]).
struct SideThreads {
    state: Mutex<State>,
    /// Signalled for each work queued for an idle thread.
    queued: Condvar,
    /// Threads made so far.
    made: AtomicUsize,
}

struct State {
    /// Work handed to idle threads, not yet taken; never longer than
    /// `idle`.
    queue: VecDeque<Work>,
    /// Threads waiting for work.
    idle: usize,
}

fn side_threads() -> &'static SideThreads {
    static SIDE: OnceLock<SideThreads> = OnceLock::new();
    SIDE.get_or_init(SideThreads::new)
}

/// Runs `work` on a side thread and returns at once: an idle one if there
/// is one, else a new one (else here, if no thread can be started). The
/// work hands its results back itself (a channel); a panic ends its thread
/// with whatever the work held dropped.
///
/// ```
/// let (done, said) = std::sync::mpsc::channel();
/// berth::side_threads::run(move || done.send(6 * 7).unwrap());
/// assert_eq!(said.recv().unwrap(), 42);
/// ```
pub fn run(work: impl FnOnce() + Send + 'static) {
    side_threads().run(work)
}

impl SideThreads {
    fn new() -> SideThreads {
        SideThreads {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: 0,
            }),
            queued: Condvar::new(),
            made: AtomicUsize::new(0),
        }
    }

    /// See [`run`].
    fn run(&'static self, work: impl FnOnce() + Send + 'static) {
        let mut state = self.lock();
        if state.idle > state.queue.len() {
            state.queue.push_back(Box::new(work));
            self.queued.notify_one();
            return;
        }
        drop(state);
        // Shared so that the work can still run here if the thread cannot be
        // started (the closure given to a failed spawn is gone).
        let work = std::sync::Arc::new(Mutex::new(Some(work)));
        let for_thread = work.clone();
        let take = |slot: &Mutex<Option<_>>| {
            slot.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take()
        };
        let spawned = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                if let Some(work) = take(&for_thread) {
                    work();
                }
                self.serve();
            });
        match spawned {
            Ok(_) => {
                self.made.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!("start a side thread: {e}; working in line");
                if let Some(work) = take(&work) {
                    work();
                }
            }
        }
    }

    /// A thread's life after its first work: the work queued for it, until
    /// none comes for [`IDLE_KEPT`].
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(work) = state.queue.pop_front() {
                drop(state);
                work();
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (woken, waited) = self
                .queued
                .wait_timeout(state, IDLE_KEPT)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state = woken;
            state.idle -= 1;
            // Work queued while this thread still counted as idle is
            // taken above, timed out or not.
            if waited.timed_out() && state.queue.is_empty() {
                return;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// A set of side threads of the test's own.
    fn side_threads() -> &'static SideThreads {
        Box::leak(Box::new(SideThreads::new()))
    }

    #[test]
    fn idle_threads_take_the_next_work() {
        let side = side_threads();
        for _ in 0..20 {
            let (done, said) = channel();
            side.run(move || done.send(std::thread::current().id()).unwrap());
            assert_ne!(said.recv().unwrap(), std::thread::current().id());
            // Let the thread go idle, as between two launches.
            std::thread::sleep(Duration::from_millis(2));
        }
        let made = side.made.load(Ordering::Relaxed);
        assert!(made < 10, "a thread per work: {made}");
    }

    #[test]
    fn work_never_waits_behind_work_that_waits_for_it() {
        // Work `i` waits for the word of work `i + 1`, queued after it, then
        // tells work `i - 1`: behind a fixed number of threads the last
        // ones would never start and the first ones wait in vain.
        const N: usize = 40;
        let (words, waits): (Vec<_>, Vec<_>) = (0..N).map(|_| channel::<()>()).unzip();
        let mut words: Vec<Option<std::sync::mpsc::Sender<()>>> =
            words.into_iter().map(Some).collect();
        let (done, ended) = channel();
        let side = side_threads();
        for (i, wait) in waits.into_iter().enumerate() {
            let tell = if i > 0 { words[i - 1].take() } else { None };
            let done = done.clone();
            side.run(move || {
                let heard = i == N - 1 || wait.recv_timeout(Duration::from_secs(10)).is_ok();
                if let Some(tell) = tell {
                    let _ = tell.send(());
                }
                done.send(heard).unwrap();
            });
        }
        for _ in 0..N {
            let heard = ended.recv_timeout(Duration::from_secs(30)).unwrap();
            assert!(heard, "a work waited in vain for one queued after it");
        }
    }

    #[test]
    fn the_threads_carry_their_name() {
        let (done, said) = channel();
        run(move || {
            done.send(std::thread::current().name().map(str::to_string))
                .unwrap()
        });
        assert_eq!(said.recv().unwrap().as_deref(), Some(THREAD_NAME));
    }
}
