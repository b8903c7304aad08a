//! The du backend's watcher: one thread per watched container, measuring its
//! sandbox every interval and reporting the first time it is over quota.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use berth_isolator::{IsolatorError, Limitation, LimitationReporter};

use crate::du::{self, Stop};
use crate::quota::over_quota;

/// A container's sandbox and quota, shared by the isolator (which may
/// change the quota) and the watcher (which records what it reported).
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) sandbox: PathBuf,
    quota: Mutex<Option<u64>>,
    reported: Mutex<Option<Limitation>>,
}

impl Watched {
    pub(crate) fn new(sandbox: PathBuf, quota: Option<u64>) -> Self {
        Watched {
            sandbox,
            quota: Mutex::new(quota),
            reported: Mutex::new(None),
        }
    }

    pub(crate) fn quota(&self) -> Option<u64> {
        *lock(&self.quota)
    }

    pub(crate) fn set_quota(&self, quota: Option<u64>) {
        *lock(&self.quota) = quota;
    }

    /// The limitation the watcher reported, if it did.
    pub(crate) fn reported(&self) -> Option<Limitation> {
        lock(&self.reported).clone()
    }

    /// Measures the sandbox once against the quota: the limitation if over.
    pub(crate) fn check(&self, cancel: &AtomicBool) -> Option<Limitation> {
        let quota = self.quota()?;
        match du::measure(&self.sandbox, Some(quota), cancel) {
            Ok(measured) if measured.stopped == Some(Stop::OverLimit) => {
                Some(over_quota(measured.bytes, quota))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(sandbox = %self.sandbox.display(), "disk: measure: {e}");
                None
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind the lock: a panic elsewhere leaves it usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The flag that stops a watcher, with a condvar so that a sleeping watcher
/// wakes at once rather than at the end of its interval.
#[derive(Debug, Default)]
struct StopSignal {
    cancelled: AtomicBool,
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        // The walk looks at the atomic; the sleep at the mutex-guarded flag.
        self.cancelled.store(true, Ordering::SeqCst);
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    /// Sleeps for `interval`; true when stopped meanwhile.
    fn sleep(&self, interval: Duration) -> bool {
        let deadline = Instant::now() + interval;
        let mut stopped = lock(&self.stopped);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A running watcher thread. [`Watcher::stop`] is prompt even mid-walk.
#[derive(Debug)]
pub(crate) struct Watcher {
    signal: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts measuring `watched` every `interval`; `reporter` is called at
    /// most once, and the thread ends after it.
    pub(crate) fn start(
        name: &str,
        watched: Arc<Watched>,
        interval: Duration,
        reporter: LimitationReporter,
    ) -> Result<Watcher, IsolatorError> {
        let signal = Arc::new(StopSignal::default());
        let thread_signal = signal.clone();
        let thread = thread::Builder::new()
            .name(format!("berth-du-{name}"))
            .spawn(move || run(&watched, interval, &reporter, &thread_signal))
            .map_err(|e| IsolatorError::Other(format!("disk: start du watcher: {e}")))?;
        Ok(Watcher {
            signal,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it, unless called from the thread
    /// itself (a reporter that cleans up synchronously).
    pub(crate) fn stop(mut self) {
        self.signal.stop();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropped without stop (the isolator itself is dropped): let the
        // thread end on its own.
        self.signal.stop();
    }
}

fn run(watched: &Watched, interval: Duration, reporter: &LimitationReporter, signal: &StopSignal) {
    while !signal.sleep(interval) {
        let Some(limitation) = watched.check(&signal.cancelled) else {
            continue;
        };
        if signal.cancelled.load(Ordering::SeqCst) {
            return;
        }
        lock(&watched.reported).get_or_insert(limitation.clone());
        reporter.report(limitation);
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn channel_reporter() -> (LimitationReporter, mpsc::Receiver<Limitation>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let reporter = LimitationReporter::new(move |l| {
            let _ = lock(&tx).send(l);
        });
        (reporter, rx)
    }

    #[test]
    fn reports_once_when_over_quota_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let watched = Arc::new(Watched::new(dir.path().to_path_buf(), Some(1 << 20)));
        let (reporter, rx) = channel_reporter();
        let watcher =
            Watcher::start("t", watched.clone(), Duration::from_millis(20), reporter).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "reported under quota");
        std::fs::write(dir.path().join("big"), vec![1u8; 3 << 20]).unwrap();
        let limitation = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            limitation.message.ends_with("exceeds quota 1.0 MiB"),
            "{}",
            limitation.message
        );
        assert_eq!(watched.reported(), Some(limitation));
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "reported twice");
        watcher.stop();
    }

    #[test]
    fn stop_is_prompt_even_with_a_long_interval() {
        let dir = tempfile::tempdir().unwrap();
        let watched = Arc::new(Watched::new(dir.path().to_path_buf(), Some(1 << 20)));
        let (reporter, _rx) = channel_reporter();
        let watcher = Watcher::start("t", watched, Duration::from_secs(3600), reporter).unwrap();
        let start = Instant::now();
        watcher.stop();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_raised_quota_is_used_by_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![1u8; 2 << 20]).unwrap();
        let watched = Watched::new(dir.path().to_path_buf(), Some(1 << 20));
        let cancel = AtomicBool::new(false);
        assert!(watched.check(&cancel).is_some());
        watched.set_quota(Some(8 << 20));
        assert!(watched.check(&cancel).is_none());
        watched.set_quota(None);
        assert!(watched.check(&cancel).is_none());
    }
}
