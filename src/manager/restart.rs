//! What happens after a container ends: `--rm` removes it, a restart policy
//! launches it again after a back-off; and `restart` by a user. See
//! decision 0027.
//!
//! Everything the policy needs is in the record (policy, count, back-off
//! step, next attempt time, whether a user stopped it), so a new agent picks
//! up where the old one left: [`Manager::resume_lifecycle`] at recovery
//! re-arms a pending restart and removes an ended `--rm` container.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_isolator::ContainerId;

use super::locked::locked;
use super::{now, Manager, ManagerError, Slot};
use crate::container::{reason, Container, ContainerView, LaunchRequest, State};
use crate::restart_policy::KEPT_ATTEMPTS;
use crate::store::Durability;
use crate::timestamp::Timestamp;

/// How long an ended `--rm` container stays at least, so that a client
/// that launched it in the foreground can still read its output and exit.
const AUTO_REMOVE_HOLD: Duration = Duration::from_secs(1);

/// The longest an ended `--rm` container waits for its followers (log
/// readers, waiters) to finish before it is removed anyway.
const AUTO_REMOVE_MAX_HOLD: Duration = Duration::from_secs(30);

/// Who asks for a relaunch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Trigger {
    /// `berth restart`: starts over (count and back-off reset).
    User,
    /// The policy's timer, armed for this attempt time.
    Policy { due: String },
}

/// Checks the lifecycle fields of a launch request.
pub(super) fn check_request(request: &LaunchRequest) -> Result<(), ManagerError> {
    if request.auto_remove && !request.restart.is_no() {
        return Err(ManagerError::invalid(
            "restart",
            format!(
                "a restart policy ({}) conflicts with auto_remove (--rm)",
                request.restart
            ),
        ));
    }
    for (key, value) in &request.labels {
        if key.is_empty() || key.contains('=') || key.chars().any(char::is_control) {
            return Err(ManagerError::invalid(
                "labels",
                format!("bad label name {key:?}"),
            ));
        }
        if value.contains('\0') {
            return Err(ManagerError::invalid(
                "labels",
                format!("the value of label {key:?} must not contain NUL"),
            ));
        }
    }
    Ok(())
}

impl Manager {
    /// Called once a container's end is recorded: removes it (`--rm`) or
    /// schedules its restart, as its record says.
    pub(super) fn after_exit(self: &Arc<Self>, id: &ContainerId) {
        let Some(slot) = locked(&self.slots).get(id).cloned() else {
            return;
        };
        let container = slot.get();
        if container.state != State::Exited {
            return;
        }
        if container.auto_remove {
            let manager = self.clone();
            let id = id.clone();
            self.runtime.spawn(async move {
                manager.auto_remove(&id, &slot, true).await;
            });
            return;
        }
        self.schedule_restart(&slot);
    }

    /// At recovery, after every record is back: removes ended `--rm`
    /// containers, re-arms pending restarts, and schedules the restart of
    /// those that ended while no agent ran.
    pub(super) fn resume_lifecycle(self: &Arc<Self>) {
        let slots: Vec<Arc<Slot>> = locked(&self.slots).values().cloned().collect();
        for slot in slots {
            let container = slot.get();
            if container.state != State::Exited {
                continue;
            }
            if container.auto_remove {
                let manager = self.clone();
                self.runtime.spawn(async move {
                    manager.auto_remove(&container.id, &slot, false).await;
                });
                continue;
            }
            match &container.restart.next_attempt_at {
                Some(due) => {
                    let delay = chrono::DateTime::parse_from_rfc3339(due)
                        .ok()
                        .and_then(|due| {
                            (due.with_timezone(&chrono::Utc) - chrono::Utc::now())
                                .to_std()
                                .ok()
                        })
                        .unwrap_or_default();
                    tracing::info!(id = %container.id, %due, "re-arming a pending restart");
                    self.arm(slot, due.clone(), delay);
                }
                None => self.schedule_restart(&slot),
            }
        }
    }

    /// Removes an ended `--rm` container; with `hold`, not before
    /// [`AUTO_REMOVE_HOLD`] and not while someone follows its record.
    async fn auto_remove(&self, id: &ContainerId, slot: &Arc<Slot>, hold: bool) {
        if hold {
            tokio::time::sleep(AUTO_REMOVE_HOLD).await;
            let deadline = tokio::time::Instant::now() + AUTO_REMOVE_MAX_HOLD;
            while slot.record.receiver_count() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        match self.remove(id.as_str(), false).await {
            Ok(()) => tracing::info!(%id, "removed (auto_remove)"),
            Err(ManagerError::NotFound(_)) => {}
            Err(e) => tracing::error!(%id, "auto_remove: {e}"),
        }
    }

    /// Decides, from the record, whether the ended container is restarted;
    /// if so records when and arms the timer.
    fn schedule_restart(self: &Arc<Self>, slot: &Arc<Slot>) {
        let settings = &self.config.restart;
        let mut scheduled = None;
        slot.record.send_if_modified(|c| {
            let restart = &c.restart;
            // The health check's `restart` restarts whatever the policy.
            let unhealthy_restart = c.reason.as_deref() == Some(reason::UNHEALTHY)
                && c.health_check
                    .as_ref()
                    .is_some_and(|h| h.on_unhealthy == crate::health::OnUnhealthy::Restart);
            if c.state != State::Exited
                || restart.stopped_by_user
                || restart.next_attempt_at.is_some()
                || !(unhealthy_restart
                    || restart
                        .policy
                        .wants_restart(c.shell_exit_code(), restart.count))
            {
                return false;
            }
            // A container that ran long enough starts the back-off over.
            let step = if ran_for(c) >= Duration::from_secs_f64(settings.reset_after_seconds) {
                0
            } else {
                c.restart.backoff_step
            };
            let delay = settings.delay(step);
            let due = chrono::Utc::now()
                + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
            let due = due.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            c.restart.backoff_step = step.saturating_add(1);
            c.restart.next_attempt_at = Some(due.clone());
            scheduled = Some((c.clone(), due, delay));
            true
        });
        let Some((container, due, delay)) = scheduled else {
            return;
        };
        tracing::info!(id = %container.id, %due, "restart scheduled by policy {}", container.restart.policy);
        self.save_record(&container, Durability::Durable);
        self.arm(slot.clone(), due, delay);
    }

    /// Relaunches the container after `delay`, if it is then still the
    /// attempt due at `due`.
    fn arm(self: &Arc<Self>, slot: Arc<Slot>, due: String, delay: Duration) {
        if self.shutting_down.load(Ordering::SeqCst) {
            // The next agent re-arms it from the record.
            return;
        }
        let manager = self.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            if manager.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            let relaunch = manager.clone();
            let slot_for_launch = slot.clone();
            let trigger = Trigger::Policy { due: due.clone() };
            let result = tokio::task::spawn_blocking(move || {
                relaunch.relaunch_blocking(&slot_for_launch, trigger)
            })
            .await;
            match result {
                Ok(Ok(Some(container))) => {
                    tracing::info!(id = %container.id, count = container.restart.count, "restarted by policy")
                }
                Ok(Ok(None)) => {
                    let id = slot.get().id.clone();
                    tracing::info!(%id, %due, "restart not made: stopped, removed or restarted meanwhile");
                }
                Ok(Err(e)) => {
                    tracing::warn!("restart by policy failed: {e}");
                    // Its failure is recorded as an end: the policy decides
                    // again (an on-failure count runs out; always backs off).
                    manager.schedule_restart(&slot);
                }
                Err(e) => tracing::error!("restart task: {e}"),
            }
        });
    }

    /// `berth restart`: stops the container if it runs (as `stop` does,
    /// with `grace`), then launches it again with the same request, id,
    /// sandbox and logs. Its restart count and back-off start over, and a
    /// user stop no longer holds its policy back.
    pub async fn restart(
        self: &Arc<Self>,
        id: &str,
        grace: Duration,
    ) -> Result<ContainerView, ManagerError> {
        let slot = self.slot(id)?;
        let container = slot.get();
        if container.auto_remove {
            return Err(ManagerError::Conflict(format!(
                "container {id} is removed when it ends (auto_remove, --rm): it cannot be restarted"
            )));
        }
        match container.state {
            State::Unknown => {
                return Err(ManagerError::Conflict(format!(
                    "container {id}'s state is unknown (its record was unreadable)"
                )))
            }
            State::Created => {
                return Err(ManagerError::Conflict(format!(
                    "container {id} is still starting"
                )))
            }
            State::Running => {
                self.stop(id, grace).await?;
            }
            State::Exited => {}
        }
        // The end is recorded once `stop` returns; its isolators' cleanup
        // (their cgroups, a net_cls class id) may still be under way.
        slot.cleaned(id).await?;
        let manager = self.clone();
        let relaunched =
            tokio::task::spawn_blocking(move || manager.relaunch_blocking(&slot, Trigger::User))
                .await
                .map_err(|e| ManagerError::Internal(format!("restart task: {e}")))??;
        match relaunched {
            Some(container) => Ok(container.public()),
            None => Err(ManagerError::Conflict(format!(
                "container {id} changed state during the restart"
            ))),
        }
    }

    /// Launches an ended container again in place. `Ok(None)` when the
    /// record no longer calls for it (removed, restarted or stopped
    /// meanwhile). A failure is recorded as the container's end.
    fn relaunch_blocking(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        trigger: Trigger,
    ) -> Result<Option<Container>, ManagerError> {
        // Claim it: from now on it is starting, which `rm` and a second
        // restart see.
        let mut claimed = None;
        slot.record.send_if_modified(|c| {
            if c.state != State::Exited {
                return false;
            }
            match &trigger {
                Trigger::Policy { due } => {
                    if c.restart.stopped_by_user
                        || c.restart.next_attempt_at.as_deref() != Some(due.as_str())
                    {
                        return false;
                    }
                    c.restart.count = c.restart.count.saturating_add(1);
                    c.restart.attempts.push(now());
                    let surplus = c.restart.attempts.len().saturating_sub(KEPT_ATTEMPTS);
                    c.restart.attempts.drain(..surplus);
                }
                Trigger::User => {
                    c.restart.count = 0;
                    c.restart.backoff_step = 0;
                    c.restart.stopped_by_user = false;
                }
            }
            c.restart.next_attempt_at = None;
            c.state = State::Created;
            claimed = Some(c.clone());
            true
        });
        let Some(old) = claimed else {
            return Ok(None);
        };
        // Not forgotten while starting: still in the slots map.
        if !locked(&self.slots)
            .get(&old.id)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            return Ok(None);
        }
        match self.relaunch_planned(slot, &old) {
            Ok(container) => Ok(Some(container)),
            Err(e) => {
                let mut failed = old.clone();
                failed.state = State::Exited;
                failed.pid = None;
                failed.started_at = None;
                failed.finished_at = Some(Timestamp::now());
                failed.exit_code = None;
                failed.signal = None;
                failed.limitation = None;
                failed.reason = Some(reason::LAUNCH_FAILED.into());
                failed.message = Some(format!("restart: {e}"));
                slot.finalized.store(true, Ordering::SeqCst);
                self.publish(slot, failed, Durability::Durable);
                Err(e)
            }
        }
    }

    fn relaunch_planned(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        old: &Container,
    ) -> Result<Container, ManagerError> {
        let request = old.request.clone().ok_or_else(|| {
            ManagerError::Conflict(format!(
                "container {} was launched by an older agent, whose record lacks its request: launch it anew",
                old.id
            ))
        })?;
        let mut plan = self.plan(*request, true)?;
        plan.container.created_at = old.created_at;
        plan.container.userns = old.userns;
        plan.container.restart = old.restart.clone();
        plan.container.restart.relaunching = true;
        // The new run's health starts over.
        let _ = std::fs::remove_file(
            self.store
                .state_dir(&old.id)
                .join(crate::health::STATE_FILE),
        );
        // The previous run's end must not be taken for this run's.
        let exit_file = self
            .store
            .state_dir(&old.id)
            .join(berth_protocol::exit::EXIT_FILE);
        match std::fs::remove_file(&exit_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ManagerError::Internal(format!(
                    "remove {}: {e}",
                    exit_file.display()
                )))
            }
        }
        *locked(&slot.limitation) = None;
        slot.finalized.store(false, Ordering::SeqCst);
        let started = self.start(&plan, slot, false);
        match started {
            Ok(running) => Ok(running),
            Err(e) => {
                // Its end is the failure, recorded by the caller.
                slot.finalized.store(true, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// At recovery: a container whose restart an agent crash interrupted.
    /// Whatever it started is ended and its isolators cleaned up; its
    /// sandbox and logs stay, and it is recorded as a failed restart, which
    /// the policy decides on again ([`Manager::resume_lifecycle`]).
    pub(super) fn end_interrupted_restart(&self, mut container: Container) {
        let id = container.id.clone();
        tracing::warn!(%id, "a restart was interrupted; recording it as failed");
        if let Some(process) = super::container_process(&container) {
            process.end(true, super::KILL_TIMEOUT);
        }
        if let Some(shim) = container.shim {
            shim.end(false, super::KILL_TIMEOUT);
        }
        let mut message = Some("restart: interrupted by an agent crash".to_string());
        super::exit::cleanup_isolators(
            &self.isolators.select(&container.isolation),
            &id,
            &mut message,
        );
        container.state = State::Exited;
        container.pid = None;
        container.started_at = None;
        container.finished_at = Some(Timestamp::now());
        container.reason = Some(reason::LAUNCH_FAILED.into());
        container.message = message;
        container.restart.relaunching = false;
        self.save_record(&container, Durability::Durable);
        let slot = Slot::new(container);
        slot.finalized.store(true, Ordering::SeqCst);
        locked(&self.slots).insert(id, slot);
    }

    /// A user stopped, killed or force-removed the container: its restart
    /// policy holds off until the next `restart`, and a pending restart is
    /// cancelled.
    pub(super) fn mark_stopped_by_user(&self, slot: &Slot) {
        let mut changed = None;
        slot.record.send_if_modified(|c| {
            if c.restart.policy.is_no()
                || (c.restart.stopped_by_user && c.restart.next_attempt_at.is_none())
            {
                return false;
            }
            c.restart.stopped_by_user = true;
            c.restart.next_attempt_at = None;
            changed = Some(c.clone());
            true
        });
        if let Some(container) = changed {
            self.save_record(&container, Durability::Durable);
        }
    }
}

/// How long the container's last run lasted (zero if unknown).
fn ran_for(container: &Container) -> Duration {
    match (&container.started_at, &container.finished_at) {
        (Some(start), Some(end)) => end.since(start),
        _ => Duration::ZERO,
    }
}
