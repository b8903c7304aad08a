//! Noticing a container's end and recording it: exit status, reason,
//! limitation; then the isolators' cleanup in reverse order.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_isolator::ContainerId;
use berth_protocol::ExitRecord;
use futures_util::future::{FusedFuture, FutureExt};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::end_notice::{EndNotice, Heard};
use super::locked::locked;
use super::{container_process, Manager, KILL_TIMEOUT};
use crate::container::{reason, ProcessRef, State};
use crate::store::Durability;
use crate::timestamp::Timestamp;

impl Manager {
    /// Waits for the shim to say the end is recorded (`notice`, decision
    /// 0052) or to exit (through a pidfd, so pid reuse cannot fool it),
    /// then records the end. A remove or a restart waits for the shim's
    /// exit too: nothing of the container's is left running then.
    pub(super) async fn watch_exit(
        self: Arc<Self>,
        id: ContainerId,
        shim: ProcessRef,
        notice: Option<EndNotice>,
    ) {
        // Fused: whether the shim is gone is whether this has finished.
        let gone = shim_gone(&id, &shim).fuse();
        tokio::pin!(gone);
        let heard = match notice {
            Some(notice) => tokio::select! {
                () = &mut gone => Heard::Nothing,
                heard = notice.exited() => heard,
            },
            None => Heard::Nothing,
        };
        let told = match heard {
            Heard::Exited(record) => {
                berth_sys::launch_marks::mark("agent: heard exited");
                record
            }
            Heard::Nothing => {
                if !gone.is_terminated() {
                    (&mut gone).await;
                }
                berth_sys::launch_marks::mark("agent: shim gone");
                None
            }
        };
        let manager = self.clone();
        let ended = id.clone();
        let _ = crate::blocking::run(move || manager.finalize(&ended, told)).await;
        if !gone.is_terminated() {
            gone.await;
        }
        self.after_exit(&id);
    }

    /// Records the end of a container whose shim has gone, once: from the
    /// exit record the shim `told` along with its word, else from the one
    /// it left in the state dir.
    pub(super) fn finalize(&self, id: &ContainerId, told: Option<ExitRecord>) {
        let Some(slot) = locked(&self.slots).get(id).cloned() else {
            return;
        };
        if slot.finalized.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut container = slot.get();
        let exit = match told {
            Some(record) => Ok(Some(record)),
            None => self.store.exit_record(id),
        };
        match exit {
            Ok(Some(exit)) => {
                container.exit_code = exit.exit_code;
                container.signal = exit.signal;
                container.finished_at =
                    Some(Timestamp::parse(&exit.finished_at).unwrap_or_else(Timestamp::now));
                if container.started_at.is_none() {
                    container.started_at = exit.started_at.as_deref().and_then(Timestamp::parse);
                }
                if let Some(error) = exit.error {
                    container.reason = Some(reason::LAUNCH_FAILED.into());
                    container.message = Some(error);
                }
            }
            Ok(None) => {
                container.reason = Some(reason::SHIM_LOST.into());
                container.message =
                    Some("the shim ended without recording the container's exit".into());
                container.finished_at = Some(Timestamp::now());
                // Without its supervisor the container may still run: end it,
                // so its cgroups can be removed.
                if let Some(process) = container_process(&container) {
                    process.end(true, KILL_TIMEOUT);
                }
            }
            Err(e) => {
                container.reason = Some(reason::SHIM_LOST.into());
                container.message = Some(format!("unreadable exit record: {e}"));
                container.finished_at = Some(Timestamp::now());
            }
        }

        berth_sys::launch_marks::mark("agent: exit record read");
        let isolators = self.isolators.select(&container.isolation);
        let mut limitation = locked(&slot.limitation).take();
        if limitation.is_none() {
            for isolator in &isolators {
                match isolator.exit_limitation(id) {
                    Ok(Some(found)) => {
                        limitation = Some(found);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(%id, isolator = isolator.name(), "exit limitation: {e}")
                    }
                }
            }
        }
        let health = crate::health::HealthState::read(&self.store.state_dir(id));
        let unhealthy = health.as_ref().is_some_and(|h| h.killed);
        if container.health_check.is_some() {
            container.health = health;
        }
        if let Some(limitation) = limitation {
            container.reason = Some(limitation.reason());
            container.limitation = Some(limitation);
        } else if unhealthy && container.reason.is_none() {
            container.reason = Some(reason::UNHEALTHY.into());
        } else if container.reason.is_none() {
            container.reason = Some(
                if container.exit_code.is_some() {
                    reason::EXITED
                } else {
                    reason::KILLED
                }
                .to_string(),
            );
        }

        container.state = State::Exited;
        container.pid = None;
        tracing::info!(%id, reason = container.reason.as_deref().unwrap_or(""), "container ended");
        // Waiters are told as soon as the end is known, before the final
        // figures are read and the record is written (decision 0047: an
        // agent that dies in between finds the shim's exit record at
        // recovery and ends the container the same way); the isolators'
        // cleanup follows, and a remove, and `stats`, wait for it
        // (decisions 0044, 0051).
        slot.cleanup_pending.send_replace(true);
        berth_sys::launch_marks::mark("agent: tells the end");
        self.tell(&slot, container.clone());
        // What follows (the final figures, the record, the cleanup) yields
        // the CPU to the waiters just told (decision 0052).
        let _yielding = berth_sys::thread_priority::Lowered::by(10)
            .inspect_err(|e| tracing::debug!(%id, "lower the cleanup's priority: {e}"))
            .ok();
        // The final figures, for `stats` of the ended container, while its
        // cgroups are still there. The slot gets them without a word to its
        // watchers: nothing they wait for changed.
        for isolator in &isolators {
            if let Ok(usage) = isolator.usage(id) {
                let usage = serde_json::Value::Object(usage);
                container
                    .final_usage
                    .insert(isolator.name().to_string(), usage);
            }
        }
        slot.record.send_if_modified(|recorded| {
            recorded.final_usage = container.final_usage.clone();
            false
        });
        self.save_record(&container, crate::store::Durability::CrashSafe);
        // The container's mounts go now, before its isolators' cleanup and
        // any relaunch (an overlay refuses an upper dir still in use).
        drop(locked(&slot.mount_namespace).take());
        let mut message = container.message.clone();
        cleanup_isolators(&isolators, id, &mut message);
        self.unmount_files(id.as_str());
        if message != container.message {
            // A failed cleanup is part of the record.
            container.message = message;
            self.publish(&slot, container, Durability::CrashSafe);
        }
        // How it ended is kept across a power loss too: synced to disk after
        // waiters are told, so the fsyncs are not part of the exit's latency
        // (decision 0035; a power loss in between shows the container as
        // lost after the reboot, as one before the exit would).
        if let Err(e) = self.store.sync_record(id) {
            tracing::error!(%id, "sync the final record: {e}");
        }
        slot.cleanup_pending.send_replace(false);
    }
}

/// Runs isolators' cleanup in reverse order; failures are logged and noted
/// in the container's message, and do not stop the others.
pub(super) fn cleanup_isolators(
    isolators: &[Arc<dyn berth_isolator::Isolator>],
    id: &ContainerId,
    message: &mut Option<String>,
) {
    for isolator in isolators.iter().rev() {
        if let Err(e) = isolator.cleanup(id) {
            tracing::error!(%id, isolator = isolator.name(), "cleanup: {e}");
            let note = format!("cleanup of {} failed: {e}", isolator.name());
            *message = Some(match message.take() {
                Some(m) => format!("{m}; {note}"),
                None => note,
            });
        }
    }
}

/// Resolves once the shim has exited.
async fn shim_gone(id: &ContainerId, shim: &ProcessRef) {
    let Some(pidfd) = shim.open() else {
        return;
    };
    // SAFETY: the AsyncFd owns the pidfd, which stays open and the same
    // for the AsyncFd's whole life.
    let registered = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) };
    match registered.map_err(|e| e.into_parts().1) {
        // A pidfd turns readable when the process exits.
        Ok(fd) => {
            let _ = fd.readable().await;
        }
        Err(e) => {
            tracing::error!(%id, "watch shim {}: {e}; polling instead", shim.pid);
            while shim.is_alive() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}
