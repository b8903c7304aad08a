//! `health_status` events. The checker is a separate process (decision
//! 0028) that rewrites `health.json` in the container's state dir; while
//! the container runs, a task looks at the file's modification time every
//! [`POLL`] and emits each status change it has not emitted yet.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{attributes, Actor, EventBus, Kind};
use crate::container::{Container, State};
use crate::health::HealthState;

/// How often the checker's file is looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// Follows a running container's health until it has ended. `seen`: the
/// latest change already emitted (its `at`), at recovery.
pub async fn watch(
    bus: Arc<EventBus>,
    state_dir: PathBuf,
    mut record: watch::Receiver<Container>,
    seen: Option<String>,
) {
    let mut seen = seen;
    let mut modified = None;
    loop {
        let container = record.borrow_and_update().clone();
        let path = state_dir.join(crate::health::STATE_FILE);
        let stamp = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if stamp.is_some() && stamp != modified {
            modified = stamp;
            if let Some(state) = HealthState::read(&state_dir) {
                emit_new(&bus, &container, &state, &mut seen);
            }
        }
        if container.state != State::Running {
            return;
        }
        tokio::select! {
            changed = record.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Emits the changes after `seen`, oldest first.
fn emit_new(bus: &EventBus, container: &Container, state: &HealthState, seen: &mut Option<String>) {
    let after = seen.clone();
    let fresh = state
        .changes
        .iter()
        .filter(|c| after.as_ref().is_none_or(|s| c.at > *s));
    for change in fresh {
        bus.emit(
            Kind::Container,
            "health_status",
            Actor::of(container),
            attributes([
                ("status", change.status.to_string().into()),
                ("at", change.at.clone().into()),
            ]),
        );
        *seen = Some(change.at.clone());
    }
}
