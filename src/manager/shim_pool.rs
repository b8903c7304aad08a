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
//!
//! The last idle shim that can still have successors is not handed to a
//! launch while the pool keeps two or more: a launch that finds no other
//! asks it for a successor and takes that (decision 0056). Launches that
//! come faster than the refill (a burst of parallel launches) are served by
//! forks, not by execs on their critical path.

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
    /// and every fork of it) has had or has been asked for.
    lineage: Arc<AtomicU32>,
    /// Its successors asked for and not yet idle: a shim handed a launch
    /// reads no further request, so it is handed none until they are.
    asked: Arc<AtomicU32>,
    pub(super) reader: BufReader<UnixStream>,
    pub(super) writer: UnixStream,
}

/// A successor keeps its parent's address space layout and stack canary:
/// after this many successors in a lineage the refill execs a fresh shim,
/// so that no more than this many and one share them (a canary guessed by
/// crashing shims one by one needs up to 256 tries per byte; decision
/// 0045).
const MAX_SUCCESSORS: u32 = 32;

/// How long after a launch took a shim the refill waits, while the pool
/// still has one, before it forks the replacement: the launch's shim and
/// container start meanwhile without the fork competing for the CPU.
const REFILL_AFTER: Duration = Duration::from_millis(5);

/// The refill execs a fresh shim, the next lineage's first, once the
/// youngest lineage can have no more than this many successors left.
const LINEAGE_RENEWED_AT: u32 = 4;

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

    /// A shim for a launch: an idle one if one can go, else a successor
    /// asked of the pool's parent (the last idle shim whose lineage may
    /// still grow), else none (the launch execs its own). The refill
    /// starts replacements. The oldest goes first: once its lineage has
    /// ended it can have no successor, and left in the pool it would make
    /// every refill exec.
    pub fn take(&self) -> Taken {
        let mut state = self.lock();
        self.changed.notify_all();
        let free = |s: &IdleShim| s.asked.load(Ordering::SeqCst) == 0;
        let Some(oldest) = state.idle.iter().position(free) else {
            return match parent_of(&state.idle) {
                Some(parent) => ask_successor(parent).map_or(Taken::None, Taken::Successor),
                None => Taken::None,
            };
        };
        // A pool of one hands out its only shim; a larger one keeps a
        // parent back for the launches that come before the refill.
        let keeps_parent = self.size >= 2
            && !(state.idle.iter().enumerate()).any(|(i, s)| i != oldest && can_fork(s));
        if keeps_parent && can_fork(&state.idle[oldest]) {
            if let Some(asked) = ask_successor(&state.idle[oldest]) {
                return Taken::Successor(asked);
            }
        }
        Taken::Idle(state.idle.remove(oldest))
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

/// What [`ShimPool::take`] gives a launch.
pub enum Taken {
    /// An idle shim, to hand the launch to.
    Idle(IdleShim),
    /// A successor asked of the pool's parent: an idle shim once it says so.
    Successor(AskedSuccessor),
    /// Nothing: the launch starts its own shim.
    None,
}

/// A successor asked of an idle shim, not yet idle.
pub struct AskedSuccessor {
    ours: UnixStream,
    lineage: Arc<AtomicU32>,
    /// The parent's count of successors under way, lowered once this one
    /// has answered (or failed to).
    parent_asked: Arc<AtomicU32>,
}

impl AskedSuccessor {
    /// Waits for the successor's [`ShimMessage::Idle`].
    pub fn idle(self) -> Result<IdleShim, ShimError> {
        let AskedSuccessor {
            ours,
            lineage,
            parent_asked,
        } = self;
        let successor = idle_on(ours);
        parent_asked.fetch_sub(1, Ordering::SeqCst);
        successor.map(|mut successor| {
            successor.lineage = lineage;
            successor
        })
    }
}

/// Whether `shim`'s lineage may have another successor.
fn can_fork(shim: &IdleShim) -> bool {
    shim.lineage.load(Ordering::SeqCst) < MAX_SUCCESSORS
}

/// The idle shim successors are asked of: the youngest that can fork (an
/// old lineage ends sooner; its shims go to launches first).
fn parent_of(idle: &[IdleShim]) -> Option<&IdleShim> {
    idle.iter().rev().find(|s| can_fork(s))
}

/// Asks `parent` for a successor on a new socket pair. The request is
/// counted in its lineage at once, so that concurrent asks never pass
/// [`MAX_SUCCESSORS`]. `None` if it could not be sent (the parent died).
fn ask_successor(parent: &IdleShim) -> Option<AskedSuccessor> {
    let (ours, theirs) = UnixStream::pair()
        .inspect_err(|e| tracing::debug!("socket pair for a successor: {e}"))
        .ok()?;
    berth_protocol::handover::send_successor(parent.writer.as_fd(), theirs.as_fd())
        .inspect_err(|e| tracing::debug!("ask idle shim {} for a successor: {e}", parent.pid))
        .ok()?;
    parent.lineage.fetch_add(1, Ordering::SeqCst);
    parent.asked.fetch_add(1, Ordering::SeqCst);
    Some(AskedSuccessor {
        ours,
        lineage: parent.lineage.clone(),
        parent_asked: parent.asked.clone(),
    })
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
            // The launch that took a shim runs first: its successor is
            // forked once that launch is under way, unless the pool has
            // no shim left for the next (decision 0056).
            if !state.idle.is_empty() {
                state = pool
                    .changed
                    .wait_timeout(state, REFILL_AFTER)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
                if state.stopped {
                    return;
                }
            }
        }
        // The parent stays in the pool while its successor starts; it is
        // handed no launch until the successor has answered. A lineage near
        // its end is followed by an exec'd shim now, from this thread, so
        // that the launches find a parent when it ends.
        let asked = pool.upgrade().and_then(|pool| {
            let state = pool.lock();
            let parent = parent_of(&state.idle)?;
            let left = MAX_SUCCESSORS.saturating_sub(parent.lineage.load(Ordering::SeqCst));
            (left > LINEAGE_RENEWED_AT).then(|| ask_successor(parent))?
        });
        let started = match asked {
            Some(asked) => asked.idle().or_else(|e| {
                tracing::debug!("successor of an idle shim: {e}; exec'ing one");
                start_idle(&shim, &runtime_dir)
            }),
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
            asked: Arc::new(AtomicU32::new(0)),
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
