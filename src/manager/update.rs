//! Live resource updates: every isolator of the container gets the merged
//! resources, or none keeps them.

use berth_isolator::{ContainerConfig, IsolatorError, RequestForm, ResourceTable, Resources};

use super::{Manager, ManagerError};
use crate::container::{Container, ContainerView, State};
use crate::store::Durability;

impl Manager {
    /// Applies `update` (fields left unset keep their value) to a running
    /// container. A change an isolator refuses changes nothing: isolators
    /// already updated are put back to the old resources.
    pub async fn update(
        &self,
        id: &str,
        update: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ContainerView, ManagerError> {
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
        let table = self.isolators.resource_table();
        let (update, form) = table.from_request(&update)?;
        let old = table.from_stored(&container.resources);
        let mut new = old.clone();
        for (section, asked) in update.sections() {
            let owner = self
                .isolators
                .section_owner(section)
                .filter(|i| container.isolation.iter().any(|n| n == i.name()));
            let Some(owner) = owner else {
                let isolator = self
                    .isolators
                    .section_owner(section)
                    .map_or(section.to_string(), |i| i.name().to_string());
                return Err(ManagerError::invalid(
                    form.field_of(section),
                    format!("needs the {isolator} isolator, which this container does not use"),
                ));
            };
            // The isolator owns its section: how an update merges, and
            // what may not change while the container runs.
            let current = old.raw_section(section).cloned().unwrap_or_default();
            let merged = owner
                .merge_resources(&current, asked)
                .map_err(|e| named_as_asked(e, &table, &form))?;
            new.set_raw_section(section, merged);
        }
        let config = ContainerConfig {
            resources: new.clone(),
            ..self.isolator_config(&container)
        };
        let isolators = self.isolators.select(&container.isolation);
        for isolator in &isolators {
            isolator
                .validate(&config)
                .map_err(|e| named_as_asked(e, &table, &form))?;
        }
        let cid = container.id.clone();
        let applied = tokio::task::spawn_blocking({
            let new = new.clone();
            let table_for_undo = table.clone();
            let form_for_undo = form.clone();
            move || {
                for (done, isolator) in isolators.iter().enumerate() {
                    if let Err(e) = isolator.update(&cid, &new) {
                        let e = named_as_asked(e, &table_for_undo, &form_for_undo);
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
        self.rewrite_bundle_resources(&container, &new);
        container = slot.get();
        container.resources = table.to_v1(&new);
        self.publish(&slot, container.clone(), Durability::CrashSafe);
        Ok(container.public())
    }
}

/// An isolator's refusal, with the field named the way the request wrote it
/// (`resources.cpus` for a flat request, `resources.cpu.cpus` for a
/// sectioned one).
pub(super) fn named_as_asked(
    e: IsolatorError,
    table: &ResourceTable,
    form: &RequestForm,
) -> IsolatorError {
    match e {
        IsolatorError::InvalidConfig { field, message } => IsolatorError::InvalidConfig {
            field: table.request_field(&field, form),
            message,
        },
        other => other,
    }
}

impl Manager {
    /// Rewrites `linux.resources` of the container's bundle after an
    /// update, so that `config.json` says what the isolators applied (see
    /// docs/decisions/0037). Keys an isolator does not describe are kept.
    /// A failure is logged: the limits are applied; only the record lags.
    fn rewrite_bundle_resources(&self, container: &Container, resources: &Resources) {
        let path = container.bundle.join("config.json");
        let result = (|| -> Result<(), String> {
            let text = std::fs::read(&path).map_err(|e| e.to_string())?;
            let mut spec: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) else {
                return Ok(());
            };
            let current = linux
                .entry("resources")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            let Some(current) = current.as_object_mut() else {
                return Ok(());
            };
            for isolator in self.isolators.select(&container.isolation) {
                let fragment = isolator
                    .oci_resources(&container.id, resources)
                    .map_err(|e| e.to_string())?;
                for (key, value) in fragment.into_iter().flatten() {
                    if value.as_object().is_some_and(|o| o.is_empty()) {
                        current.remove(&key);
                    } else {
                        current.insert(key, value);
                    }
                }
            }
            let text = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
            crate::store::write_atomic(&path, &text, Durability::CrashSafe)
                .map_err(|e| e.to_string())
        })();
        if let Err(e) = result {
            tracing::warn!(id = %container.id, "rewrite {}: {e}", path.display());
        }
    }
}
