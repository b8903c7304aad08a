//! Rebuilding the manager from the runtime dir when the agent starts.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use berth_isolator::{ContainerConfig, RecoveredContainer};

use super::exit::cleanup_isolators;
use super::launch::limitation_reporter;
use super::{container_process, Manager, Slot};
use crate::container::{Container, State};

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Running containers reattached.
    pub reattached: usize,
    /// Containers that ended while the agent was away.
    pub ended_meanwhile: usize,
    /// Half-launched containers destroyed.
    pub destroyed: usize,
    /// Containers that had already ended.
    pub ended_before: usize,
}

impl Manager {
    /// Loads every recorded container: reattaches running ones, records the
    /// end of those that exited meanwhile, destroys half-launched ones.
    pub fn recover(self: &Arc<Self>) -> Result<Recovery, String> {
        self.store.init().map_err(|e| e.to_string())?;
        let records = self.store.load_all().map_err(|e| e.to_string())?;
        let mut containers = Vec::new();
        for record in records {
            match record {
                Ok(container) => containers.push(container),
                Err(e) => tracing::error!("skipping unreadable container record: {e}"),
            }
        }

        let recovered: Vec<RecoveredContainer> = containers
            .iter()
            .filter(|c| c.state != State::Exited)
            .map(|c| RecoveredContainer {
                config: self.isolator_config(c),
                pid: c
                    .pid
                    .filter(|_| container_process(c).is_some_and(|p| p.is_alive())),
            })
            .collect();
        for isolator in &self.isolators.ordered {
            if let Err(e) = isolator.recover(&recovered, &[]) {
                tracing::error!(isolator = isolator.name(), "recover: {e}");
            }
        }

        let mut summary = Recovery::default();
        for container in containers {
            let id = container.id.clone();
            match container.state {
                State::Exited => {
                    let slot = Slot::new(container);
                    slot.finalized.store(true, Ordering::SeqCst);
                    self.slots.lock().unwrap().insert(id, slot);
                    summary.ended_before += 1;
                }
                State::Created => {
                    self.destroy_half_launched(container);
                    summary.destroyed += 1;
                }
                State::Running => {
                    let shim = container.shim.filter(|s| s.is_alive());
                    let slot = Slot::new(container.clone());
                    self.slots.lock().unwrap().insert(id.clone(), slot.clone());
                    match shim {
                        Some(shim) => {
                            let weak: Weak<Manager> = Arc::downgrade(self);
                            for isolator in self.isolators.select(&container.isolation) {
                                let reporter =
                                    limitation_reporter(weak.clone(), id.clone(), slot.clone());
                                if let Err(e) = isolator.watch(&id, reporter) {
                                    tracing::error!(%id, isolator = isolator.name(), "watch: {e}");
                                }
                            }
                            let manager = self.clone();
                            self.runtime
                                .spawn(async move { manager.watch_exit(id, shim).await });
                            summary.reattached += 1;
                        }
                        None => {
                            self.finalize(&id);
                            summary.ended_meanwhile += 1;
                        }
                    }
                }
            }
        }
        Ok(summary)
    }

    /// A container caught between "created" and "running" by a crash: its
    /// launch never completed, so nobody was told it exists. End it and
    /// remove every trace.
    fn destroy_half_launched(&self, container: Container) {
        let id = container.id.clone();
        tracing::warn!(%id, "destroying a container whose launch was interrupted");
        if let Some(process) = container_process(&container) {
            for _ in 0..200 {
                match process.signal(libc::SIGKILL) {
                    Ok(true) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
        if let Some(shim) = container.shim {
            for _ in 0..200 {
                if !shim.is_alive() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let mut message = None;
        cleanup_isolators(
            &self.isolators.select(&container.isolation),
            &id,
            &mut message,
        );
        if let Err(e) = self.store.remove(&id) {
            tracing::error!(%id, "remove half-launched container: {e}");
        }
    }

    fn isolator_config(&self, container: &Container) -> ContainerConfig {
        ContainerConfig {
            id: container.id.clone(),
            command: container.command.clone(),
            env: container.env.clone(),
            resources: container.resources.clone(),
            sandbox: container.sandbox.clone(),
            rootfs: container.rootfs.clone(),
            runtime_dir: self.store.isolator_dir(&container.id),
        }
    }
}
