//! Which cgroups a launch's process moves itself into instead of being
//! moved by its isolators' `isolate`, and the pipe on which the launch
//! tells it they exist (decision 0047).
//!
//! A process moved by another (a `cgroup.procs` write of its pid) goes
//! through the kernel's global migration lock, whose first taker after a
//! quiet spell waits for an RCU grace period (6–14 ms here): a launch that
//! follows no other paid it on its critical path. A thread that writes `0`
//! to a v1 hierarchy's `tasks` moves itself without that lock. The
//! container's process does so during its setup, after the agent's byte on
//! the pipe says every `prepare` has ended, and before it confines itself
//! (it still has every capability) and before its command runs. Cgroup v2
//! refuses a thread's own move between domains, and a process in a new
//! user namespace cannot open the host's cgroup files: those launches keep
//! `isolate`.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use berth_isolator::{ContainerId, Isolator};

use super::ManagerError;

/// A launch's self-join: the cgroup dirs, the isolators whose `isolate`
/// it replaces, and both ends of the pipe.
pub(super) struct SelfJoin {
    /// The distinct cgroup directories, in isolator order.
    pub(super) dirs: Vec<PathBuf>,
    /// The names of the isolators whose `isolate` is not called.
    isolators: Vec<String>,
    /// The pipe's read end, for the shim (and, through its fork, the
    /// container's process).
    pub(super) ready: OwnedFd,
    /// The launch's end: one byte once the cgroups exist; closed without
    /// it, the container's process gives up.
    release: Option<std::fs::File>,
}

impl SelfJoin {
    /// The self-join of a launch with `isolators` on a host in cgroup
    /// `mode` (`v1`/`v2`), `None` where the process cannot move itself or
    /// no isolator lets it.
    pub(super) fn plan(
        id: &ContainerId,
        isolators: &[Arc<dyn Isolator>],
        mode: &str,
        userns: bool,
    ) -> Result<Option<SelfJoin>, ManagerError> {
        if mode != "v1" || userns {
            return Ok(None);
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut names = Vec::new();
        for isolator in isolators {
            let own = isolator.joinable_cgroups(id).map_err(ManagerError::from)?;
            if own.is_empty() {
                continue;
            }
            names.push(isolator.name().to_string());
            for dir in own {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        if dirs.is_empty() {
            return Ok(None);
        }
        let (ready, release) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| ManagerError::Internal(format!("create the cgroups-ready pipe: {e}")))?;
        Ok(Some(SelfJoin {
            dirs,
            isolators: names,
            ready,
            release: Some(std::fs::File::from(release)),
        }))
    }

    /// Whether the process moves itself into `isolator`'s cgroups (its
    /// `isolate` is then not called).
    pub(super) fn replaces(&self, isolator: &dyn Isolator) -> bool {
        self.isolators.iter().any(|n| n == isolator.name())
    }

    /// Tells the container's process that its cgroups exist (every
    /// `prepare` has ended). Once only; an error means it is gone.
    pub(super) fn release(&mut self) -> std::io::Result<()> {
        match self.release.take() {
            Some(mut pipe) => pipe.write_all(&[1]),
            None => Ok(()),
        }
    }
}
