//! Following a running container: its isolators' limitation watches and
//! its shim's exit. One path for a container just launched
//! ([`Manager::watch_limitations`] while it sets itself up, then
//! [`Manager::follow_exit`]) and for one found running at recovery
//! ([`Manager::reattach`], which does both and restarts its health
//! checker if that is gone).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use berth_isolator::{ContainerId, Isolator, LimitationReporter};

use super::end_notice::EndNotice;
use super::locked::locked;
use super::{Manager, Slot};
use crate::container::{Container, ProcessRef};

impl Manager {
    /// Starts each isolator's limitation watch for the container; a
    /// limitation ends it (see [`limitation_reporter`]).
    pub(super) fn watch_limitations(
        self: &Arc<Self>,
        id: &ContainerId,
        slot: &Arc<Slot>,
        isolators: &[Arc<dyn Isolator>],
    ) {
        let weak: Weak<Manager> = Arc::downgrade(self);
        for isolator in isolators {
            let reporter = limitation_reporter(weak.clone(), id.clone(), slot.clone());
            if let Err(e) = isolator.watch(id, reporter) {
                tracing::error!(%id, isolator = isolator.name(), "watch: {e}");
            }
        }
    }

    /// Waits for the container's shim to say its end is recorded (on the
    /// launch's socket, `notice`) or to exit, then records the end.
    pub(super) fn follow_exit(
        self: &Arc<Self>,
        id: ContainerId,
        shim: ProcessRef,
        notice: Option<EndNotice>,
    ) {
        let manager = self.clone();
        self.runtime
            .spawn(async move { manager.watch_exit(id, shim, notice).await });
    }

    /// Follows a container found running at recovery, whose shim `shim`
    /// is alive: its health checker, its isolators' watches, its exit.
    pub(super) fn reattach(
        self: &Arc<Self>,
        container: &Container,
        slot: &Arc<Slot>,
        shim: ProcessRef,
    ) {
        self.ensure_health_checker(container);
        let isolators = self.isolators.select(&container.isolation);
        self.watch_limitations(&container.id, slot, &isolators);
        // Recovered: its launch's socket went with the agent before.
        self.follow_exit(container.id.clone(), shim, None);
    }
}

/// The reporter handed to isolators' `watch`: records the first limitation
/// and kills the container, whose exit then carries the limitation's reason.
pub(super) fn limitation_reporter(
    manager: Weak<Manager>,
    id: ContainerId,
    slot: Arc<Slot>,
) -> LimitationReporter {
    LimitationReporter::new(move |limitation| {
        if slot.finalized.load(Ordering::SeqCst) {
            return;
        }
        tracing::info!(%id, resource = %limitation.resource, "limitation: {}", limitation.message);
        {
            let mut first = locked(&slot.limitation);
            if first.is_none() {
                *first = Some(limitation);
            }
        }
        if manager.upgrade().is_some() {
            if let Some(process) = super::container_process(&slot.get()) {
                let _ = process.signal(libc::SIGKILL);
            }
        }
    })
}
