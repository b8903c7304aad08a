//! Live resource updates: every isolator of the container gets the merged
//! resources, or none keeps them.

use berth_isolator::{ContainerConfig, Resources};

use super::{Manager, ManagerError};
use crate::container::{Container, State};
use crate::store::Durability;

impl Manager {
    /// Applies `update` (fields left unset keep their value) to a running
    /// container. A change an isolator refuses changes nothing: isolators
    /// already updated are put back to the old resources.
    pub async fn update(&self, id: &str, update: Resources) -> Result<Container, ManagerError> {
        let slot = self.slot(id)?;
        // One update at a time per agent: two interleaved updates could each
        // roll back over the other's values.
        let _guard = self.update_lock.lock().await;
        let mut container = slot.get();
        if container.state != State::Running {
            return Err(ManagerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        if update.net_cls_handle.is_some() {
            return Err(ManagerError::invalid(
                "resources.net_cls_handle",
                "cannot be changed while the container runs",
            ));
        }
        if !update.devices.is_empty() {
            return Err(ManagerError::invalid(
                "resources.devices",
                "cannot be changed while the container runs",
            ));
        }
        for (field, isolator) in update.requested_isolators() {
            if !container.isolation.iter().any(|n| n == isolator) {
                return Err(ManagerError::invalid(
                    field,
                    format!("needs the {isolator} isolator, which this container does not use"),
                ));
            }
        }
        let old = container.resources.clone();
        let new = old.merged_with(&update);
        let config = ContainerConfig {
            resources: new.clone(),
            ..self.isolator_config(&container)
        };
        let isolators = self.isolators.select(&container.isolation);
        for isolator in &isolators {
            isolator.validate(&config)?;
        }
        let cid = container.id.clone();
        let applied = tokio::task::spawn_blocking({
            let new = new.clone();
            move || {
                for (done, isolator) in isolators.iter().enumerate() {
                    if let Err(e) = isolator.update(&cid, &new) {
                        for earlier in isolators[..done].iter().rev() {
                            if let Err(undo) = earlier.update(&cid, &old) {
                                tracing::error!(id = %cid, isolator = earlier.name(), "undo update: {undo}");
                            }
                        }
                        return Err(ManagerError::from(e));
                    }
                }
                Ok(())
            }
        })
        .await
        .map_err(|e| ManagerError::Internal(format!("update task: {e}")))?;
        applied?;
        container = slot.get();
        container.resources = new;
        self.publish(&slot, container.clone(), Durability::CrashSafe);
        Ok(container.public())
    }
}
