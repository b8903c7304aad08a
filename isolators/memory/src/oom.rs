//! Noticing OOM kills: the counters, the message, and the watcher threads.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use berth_cgroups::{CgroupError, CgroupMode, ContainerCgroup, Controller};
use berth_isolator::{IsolatorError, Limitation, LimitationReporter};
use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::apply;
use crate::limits::format_bytes;

/// How long a v1 watcher waits, after an OOM notification, for the kill to
/// show in the counter.
const KILL_SETTLE: Duration = Duration::from_secs(1);

/// The number of OOM kills in the cgroup: v1 `oom_kill` of
/// `memory.oom_control` (kernels >= 4.13), v2 `oom_kill` of `memory.events`.
/// `None` when the kernel has no such counter.
pub(crate) fn oom_kills(cgroup: &ContainerCgroup) -> Result<Option<u64>, CgroupError> {
    let file = match cgroup.mode() {
        CgroupMode::V1 => "memory.oom_control",
        CgroupMode::V2 => "memory.events",
    };
    let [kills] = cgroup.read_keys(Controller::Memory, file, ["oom_kill"])?;
    Ok(kills)
}

/// The limitation for an OOM kill, naming the limit and the peak usage.
pub(crate) fn limitation(cgroup: &ContainerCgroup, limit: Option<u64>) -> Limitation {
    let limit = limit.or_else(|| apply::kernel_limit(cgroup).ok().flatten());
    let peak = apply::peak_usage(cgroup).ok();
    let mut message = match limit {
        Some(limit) => format!("memory limit of {} reached", format_bytes(limit)),
        None => "memory limit reached".to_string(),
    };
    if let Some(peak) = peak {
        message.push_str(&format!("; peak usage {}", format_bytes(peak)));
    }
    Limitation::new("memory", message)
}

/// A running watcher thread; stopping it is prompt.
#[derive(Debug)]
pub(crate) struct Watcher {
    cancel: Arc<AtomicBool>,
    /// v1: the eventfd the thread blocks on, written to wake it up.
    eventfd: Option<Arc<EventFd>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `cgroup` for OOM kills; `reporter` is called at most once.
    pub(crate) fn start(
        cgroup: ContainerCgroup,
        limit: Option<u64>,
        reporter: LimitationReporter,
        poll_interval: Duration,
    ) -> Result<Watcher, IsolatorError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let name = format!("berth-oom-{}", cgroup.id());
        let spawn_error =
            |e: std::io::Error| IsolatorError::Other(format!("memory: start oom watcher: {e}"));
        match cgroup.mode() {
            CgroupMode::V1 => {
                let eventfd = Arc::new(register_v1(&cgroup)?);
                let (fd, flag) = (eventfd.clone(), cancel.clone());
                let thread = thread::Builder::new()
                    .name(name)
                    .spawn(move || watch_v1(&cgroup, limit, &reporter, &fd, &flag))
                    .map_err(spawn_error)?;
                Ok(Watcher {
                    cancel,
                    eventfd: Some(eventfd),
                    thread: Some(thread),
                })
            }
            CgroupMode::V2 => {
                let flag = cancel.clone();
                let thread = thread::Builder::new()
                    .name(name)
                    .spawn(move || watch_v2(&cgroup, limit, &reporter, poll_interval, &flag))
                    .map_err(spawn_error)?;
                Ok(Watcher {
                    cancel,
                    eventfd: None,
                    thread: Some(thread),
                })
            }
        }
    }

    /// Stops the thread and waits for it, unless called from the thread
    /// itself (a reporter that cleans the container up synchronously).
    pub(crate) fn stop(mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        if let Some(eventfd) = &self.eventfd {
            let _ = eventfd.write(1);
        }
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // A watcher dropped without stop (isolator dropped): let the thread
        // end on its own, without waiting for it.
        self.cancel.store(true, Ordering::SeqCst);
        if let Some(eventfd) = &self.eventfd {
            let _ = eventfd.write(1);
        }
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

/// Registers an eventfd for OOM notifications of a v1 cgroup: writing
/// "<eventfd> <fd of memory.oom_control>" to `cgroup.event_control`.
fn register_v1(cgroup: &ContainerCgroup) -> Result<EventFd, IsolatorError> {
    let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)
        .map_err(|e| IsolatorError::Other(format!("memory: create eventfd: {e}")))?;
    let oom_control = cgroup.file_path(Controller::Memory, "memory.oom_control")?;
    let file = File::open(&oom_control).map_err(|e| IsolatorError::io("open", &oom_control, e))?;
    // The kernel only uses the oom_control fd to identify the file while
    // registering; the eventfd is what it keeps.
    let registration = format!("{} {}", eventfd.as_raw_fd(), file.as_raw_fd());
    cgroup.write(Controller::Memory, "cgroup.event_control", &registration)?;
    Ok(eventfd)
}

enum AfterEvent {
    Killed,
    Gone,
    NoKill,
}

fn watch_v1(
    cgroup: &ContainerCgroup,
    limit: Option<u64>,
    reporter: &LimitationReporter,
    eventfd: &EventFd,
    cancel: &AtomicBool,
) {
    loop {
        let read = eventfd.read();
        if cancel.load(Ordering::SeqCst) {
            return;
        }
        match read {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(container = cgroup.id(), error = %e, "memory: oom eventfd read failed; watcher stops");
                return;
            }
        }
        match after_event(cgroup, cancel) {
            AfterEvent::Killed => {
                reporter.report(limitation(cgroup, limit));
                return;
            }
            AfterEvent::Gone => return,
            AfterEvent::NoKill => {}
        }
    }
}

/// What an OOM notification meant. The kernel signals the eventfd when the
/// cgroup goes OOM, *before* the killer has picked and counted its victim,
/// and also when the cgroup is removed: so wait a little for the counter,
/// and tell a removal apart.
fn after_event(cgroup: &ContainerCgroup, cancel: &AtomicBool) -> AfterEvent {
    let start = Instant::now();
    loop {
        if cancel.load(Ordering::SeqCst) {
            return AfterEvent::Gone;
        }
        match oom_kills(cgroup) {
            Ok(Some(kills)) if kills > 0 => return AfterEvent::Killed,
            // An old kernel without the counter: the notification is all there is.
            Ok(None) => return AfterEvent::Killed,
            Ok(Some(_)) => {}
            Err(_) if !cgroup.exists(Controller::Memory) => return AfterEvent::Gone,
            Err(_) => {}
        }
        if start.elapsed() >= KILL_SETTLE {
            // OOM without a kill: memory was freed, or the killer is off.
            return AfterEvent::NoKill;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn watch_v2(
    cgroup: &ContainerCgroup,
    limit: Option<u64>,
    reporter: &LimitationReporter,
    interval: Duration,
    cancel: &AtomicBool,
) {
    while !cancel.load(Ordering::SeqCst) {
        match oom_kills(cgroup) {
            Ok(Some(kills)) if kills > 0 => {
                reporter.report(limitation(cgroup, limit));
                return;
            }
            Err(_) if !cgroup.exists(Controller::Memory) => return,
            _ => {}
        }
        // Woken early by stop().
        thread::park_timeout(interval);
    }
}
