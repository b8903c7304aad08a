//! Shims started ahead of launches (decision 0043). A launch takes an idle
//! shim (`berth-shim pool`, already exec'd, loaded and detached) and hands
//! it its container over the socket, instead of exec'ing one and waiting
//! for it to start: the exec, the dynamic loader and the shim's
//! daemonizing fork leave the launch's critical path. A background thread
//! keeps the pool full. Each idle shim serves one container; nothing of
//! one launch is ever seen by another.
//!
//! An idle shim holds nothing but its socket to this agent: when the
//! agent goes (stops, crashes, `kill -9`), the socket closes and the idle
//! shims exit by themselves, so recovery has none to reap.
//!
//! The refill asks an idle shim for a successor (a fork of it on a new
//! socket, decision 0045) and execs the shim binary only when none is idle:
//! a fork of a small process that has served nobody costs a fraction of an
//! exec and its dynamic loading.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use berth_protocol::handover::{POOL_COMMAND, RUNTIME_DIR_OPTION};
use berth_protocol::ShimMessage;

use super::shim_client::ShimError;

/// How long a starting idle shim may take to say it is idle.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed start, the refill waits this long before the next.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A detached shim waiting for its container.
pub struct IdleShim {
    /// The supervisor's pid (as it said in [`ShimMessage::Idle`]).
    pub pid: u32,
    /// How many successors its lineage (the exec'd shim it descends from
    /// and every fork of it) has had.
    lineage: Arc<AtomicU32>,
    pub(super) reader: BufReader<UnixStream>,
    pub(super) writer: UnixStream,
}

/// A successor keeps its parent's address space layout and stack canary:
/// after this many successors in a lineage the refill execs a fresh shim,
/// so that no more than this many and one share them (a canary guessed by
/// crashing shims one by one needs up to 256 tries per byte; decision
/// 0045).
const MAX_SUCCESSORS: u32 = 32;

/// The idle shims and the thread that refills them.
pub struct ShimPool {
    state: Mutex<PoolState>,
    changed: Condvar,
    size: usize,
}

struct PoolState {
    idle: Vec<IdleShim>,
    stopped: bool,
}

impl ShimPool {
    /// A pool of `size` idle shims started from `shim` by a background
    /// thread; `size` 0 keeps none (every launch execs its shim).
    /// `runtime_dir` only names the agent on the idle shims' command line
    /// (`berth-shim pool --runtime-dir DIR`), for `ps` and tests.
    pub fn start(shim: PathBuf, runtime_dir: PathBuf, size: usize) -> Arc<ShimPool> {
        let pool = Arc::new(ShimPool {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                stopped: false,
            }),
            changed: Condvar::new(),
            size,
        });
        if size > 0 {
            let weak = Arc::downgrade(&pool);
            let spawned = std::thread::Builder::new()
                .name("berth-shim-pool".into())
                .spawn(move || refill(weak, shim, runtime_dir));
            if let Err(e) = spawned {
                tracing::warn!("start the shim pool's thread: {e}; launches exec their shims");
            }
        }
        pool
    }

    /// An idle shim, if one is ready; the refill starts its successor.
    /// The oldest goes first: once its lineage has ended it can have no
    /// successor, and left in the pool it would make every refill exec.
    pub fn take(&self) -> Option<IdleShim> {
        let mut state = self.lock();
        let shim = (!state.idle.is_empty()).then(|| state.idle.remove(0));
        self.changed.notify_all();
        shim
    }

    /// The pids of the idle shims now.
    pub fn idle_pids(&self) -> Vec<u32> {
        self.lock().idle.iter().map(|s| s.pid).collect()
    }

    /// How many idle shims the pool keeps.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Stops refilling and lets the idle shims go (their sockets close,
    /// they exit).
    pub fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        state.idle.clear();
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ShimPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The refill thread: keeps `size` idle shims until the pool is stopped or
/// dropped.
fn refill(pool: Weak<ShimPool>, shim: PathBuf, runtime_dir: PathBuf) {
    loop {
        {
            let Some(pool) = pool.upgrade() else { return };
            let mut state = pool.lock();
            while !state.stopped && state.idle.len() >= pool.size {
                // Woken by `take` and `stop`; the timeout only lets a
                // dropped pool end this thread.
                state = pool
                    .changed
                    .wait_timeout(state, Duration::from_secs(5))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
                if Arc::strong_count(&pool) == 1 {
                    return;
                }
            }
            if state.stopped {
                return;
            }
        }
        let parent = pool.upgrade().and_then(|pool| {
            let mut state = pool.lock();
            let young = (state.idle.iter())
                .rposition(|s| s.lineage.load(Ordering::SeqCst) < MAX_SUCCESSORS)?;
            Some(state.idle.remove(young))
        });
        let started = match parent {
            Some(parent) => {
                let (parent, successor) = successor_of(parent);
                if let (Some(parent), Some(pool)) = (parent, pool.upgrade()) {
                    pool.lock().idle.push(parent);
                }
                successor.or_else(|e| {
                    tracing::debug!("successor of an idle shim: {e}; exec'ing one");
                    start_idle(&shim, &runtime_dir)
                })
            }
            None => start_idle(&shim, &runtime_dir),
        };
        match started {
            Ok(idle) => {
                let Some(pool) = pool.upgrade() else { return };
                let mut state = pool.lock();
                if state.stopped {
                    return;
                }
                state.idle.push(idle);
            }
            Err(e) => {
                tracing::warn!("start an idle shim: {e}");
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}

/// Asks `parent`, an idle shim, for a successor on a new socket pair and
/// waits for the successor's [`ShimMessage::Idle`]. Gives `parent` back
/// unless it could not be asked (it died idle).
fn successor_of(parent: IdleShim) -> (Option<IdleShim>, Result<IdleShim, ShimError>) {
    let (ours, theirs) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => return (Some(parent), Err(e.into())),
    };
    if let Err(e) = berth_protocol::handover::send_successor(parent.writer.as_fd(), theirs.as_fd())
    {
        return (None, Err(ShimError::Protocol(e.to_string())));
    }
    drop(theirs);
    let successor = idle_on(ours).map(|mut successor| {
        parent.lineage.fetch_add(1, Ordering::SeqCst);
        successor.lineage = parent.lineage.clone();
        successor
    });
    (Some(parent), successor)
}

/// Starts `shim pool` (`posix_spawn`, see `berth_sys::spawn`), reaps its first process and waits for the detached
/// supervisor's [`ShimMessage::Idle`].
fn start_idle(shim: &Path, runtime_dir: &Path) -> Result<IdleShim, ShimError> {
    let args = [
        std::ffi::OsStr::new(POOL_COMMAND),
        std::ffi::OsStr::new(RUNTIME_DIR_OPTION),
        runtime_dir.as_os_str(),
    ];
    idle_on(super::shim_client::start_shim(shim, &args, &[])?)
}

/// Waits on `ours` for an idle shim's [`ShimMessage::Idle`].
fn idle_on(ours: UnixStream) -> Result<IdleShim, ShimError> {
    ours.set_read_timeout(Some(START_TIMEOUT))?;
    let writer = ours.try_clone()?;
    let mut reader = BufReader::new(ours);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    match ShimMessage::parse_line(&line) {
        Ok(ShimMessage::Idle { shim_pid }) => Ok(IdleShim {
            pid: shim_pid,
            lineage: Arc::new(AtomicU32::new(0)),
            reader,
            writer,
        }),
        Ok(ShimMessage::Failed { message, .. }) => Err(ShimError::Protocol(format!(
            "idle shim failed to start: {message}"
        ))),
        _ => Err(ShimError::Protocol(format!(
            "idle shim said {:?} instead of idle",
            line.trim_end()
        ))),
    }
}
