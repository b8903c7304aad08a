//! The agent's side of health checks (decision 0028): checking the request,
//! starting the per-container checker (`berth-shim health`) once the
//! container runs, and reading what it found.

use std::process::Stdio;

use super::{Manager, ManagerError};
use crate::container::ProcessRef;
use crate::container::{Container, LaunchRequest, State};
use crate::health::{HealthState, CHECKER_FILE, CONFIG_FILE, LOG_FILE, STATE_FILE};

/// Checks a launch request's `health`; the error names the field.
pub(super) fn check_request(request: &LaunchRequest) -> Result<(), ManagerError> {
    if let Some(check) = &request.health {
        check
            .validate()
            .map_err(|(field, message)| ManagerError::invalid(field, message))?;
    }
    Ok(())
}

impl Manager {
    /// Starts the checker of a container that has just started running,
    /// if it has a health check. A checker that cannot start is logged and
    /// noted in the health file; the container runs on.
    pub(super) fn start_health_checker(&self, container: &Container) {
        let Some(check) = &container.health_check else {
            return;
        };
        let (Some(pid), Some(start_time)) = (container.pid, container.pid_start_time) else {
            return;
        };
        let id = &container.id;
        let state_dir = self.store.state_dir(id);
        let _ = std::fs::remove_file(state_dir.join(STATE_FILE));
        let config = serde_json::to_vec(check).expect("a health check serializes");
        if let Err(e) = crate::store::write_atomic(
            &state_dir.join(CONFIG_FILE),
            &config,
            crate::store::Durability::CrashSafe,
        ) {
            tracing::error!(%id, "health checker: {e}");
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join(LOG_FILE));
        let args = berth_protocol::HealthArgs {
            state_dir: state_dir.clone(),
            bundle: container.bundle.clone(),
            pid,
            start_time,
        };
        let started = std::process::Command::new(self.config.shim_path())
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            // Its first process forks the checker and exits at once.
            .status();
        self.watch_health(container, None);
        match started {
            Ok(status) if status.success() => {
                tracing::debug!(%id, "health checker started")
            }
            Ok(status) => tracing::error!(%id, "health checker: {status}"),
            Err(e) => tracing::error!(%id, "health checker: {e}"),
        }
    }

    /// At recovery, for a container still running: starts its checker
    /// again if it has one and the checker is gone (its health starts over
    /// at `starting`).
    pub(super) fn ensure_health_checker(&self, container: &Container) {
        if container.health_check.is_none() {
            return;
        }
        let path = self.store.state_dir(&container.id).join(CHECKER_FILE);
        let alive = std::fs::read(&path)
            .ok()
            .and_then(|raw| serde_json::from_slice::<ProcessRef>(&raw).ok())
            .is_some_and(|checker| checker.is_alive());
        if !alive {
            tracing::warn!(id = %container.id, "its health checker is gone; starting a new one");
            self.start_health_checker(container);
        } else {
            self.watch_health(
                container,
                self.events.last_health_change(container.id.as_str()),
            );
        }
    }

    /// Emits the container's health changes as events while it runs.
    fn watch_health(&self, container: &Container, seen: Option<String>) {
        let Ok(record) = self.subscribe(container.id.as_str()) else {
            return;
        };
        let watch = crate::events::health::watch(
            self.events.clone(),
            self.store.state_dir(&container.id),
            record,
            seen,
        );
        self.runtime.spawn(watch);
    }

    /// The container with its checker's latest findings, while it runs
    /// (an ended one keeps those in its record).
    pub(super) fn with_health(&self, mut container: Container) -> Container {
        if container.health_check.is_some() && container.state == State::Running {
            container.health = HealthState::read(&self.store.state_dir(&container.id));
        }
        container
    }
}
