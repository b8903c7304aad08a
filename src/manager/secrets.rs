//! Secrets and config files of a container (decision 0034): the values
//! taken out of a launch request, the tmpfs mounts given to the shim, and
//! the updates of `PUT .../secrets/{name}` and `PUT .../configs/{name}`.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{MountBuilder, Spec};

use super::{Manager, ManagerError};
use crate::container::{Container, LaunchRequest, State};
use crate::secrets::live::FilesError;
use crate::secrets::request::{read_value, InvalidField, TakenValues};
use crate::secrets::{ConfigChange, UpdateFileRequest, TMPFS_SOURCE};

/// How long a `restart` config change gives the container to stop.
const RESTART_GRACE: Duration = Duration::from_secs(10);

impl From<InvalidField> for ManagerError {
    fn from(e: InvalidField) -> Self {
        ManagerError::invalid(e.field, e.message)
    }
}

fn files_error(e: FilesError) -> ManagerError {
    match e {
        FilesError::Unknown { .. } => ManagerError::NotFound(e.to_string()),
        FilesError::Lost { .. } => ManagerError::Conflict(e.to_string()),
        FilesError::Tmpfs(_) => ManagerError::Internal(e.to_string()),
    }
}

impl Manager {
    /// Takes a new launch's values out of its request (which is recorded).
    pub(super) fn take_file_values(
        &self,
        request: &mut LaunchRequest,
    ) -> Result<TakenValues, ManagerError> {
        Ok(crate::secrets::request::take_values(request)?)
    }

    /// Keeps a new container's values in memory.
    pub(super) fn keep_file_values(&self, id: &str, taken: TakenValues) {
        self.files.insert(id, taken);
    }

    /// The `--secret-env` variables of a (re)launch.
    pub(super) fn secret_env(
        &self,
        container: &Container,
    ) -> Result<Vec<(String, String)>, ManagerError> {
        match container.request.as_deref() {
            Some(request) => self
                .files
                .env(container.id.as_str(), request)
                .map_err(files_error),
            None => Ok(Vec::new()),
        }
    }

    /// Creates the (re)launch's tmpfs mounts, names them in the bundle's
    /// spec (type tmpfs, source [`TMPFS_SOURCE`]: no value, no path) and
    /// returns the read-only mounts for the shim.
    pub(super) fn mount_files(
        &self,
        container: &Container,
        owner: (u32, u32),
        spec: &mut Spec,
    ) -> Result<Vec<(PathBuf, OwnedFd)>, ManagerError> {
        let Some(request) = container.request.as_deref() else {
            return Ok(Vec::new());
        };
        let mounts = self
            .files
            .mount(container.id.as_str(), request, owner)
            .map_err(files_error)?;
        if mounts.is_empty() {
            return Ok(mounts);
        }
        let mut all = spec.mounts().clone().unwrap_or_default();
        for (dest, _) in &mounts {
            all.push(
                MountBuilder::default()
                    .destination(dest)
                    .typ("tmpfs")
                    .source(TMPFS_SOURCE)
                    .options(vec![
                        "ro".into(),
                        "nosuid".into(),
                        "nodev".into(),
                        "noexec".into(),
                        format!("size={}", crate::secrets::TMPFS_SIZE),
                    ])
                    .build()
                    .map_err(|e| ManagerError::Internal(e.to_string()))?,
            );
        }
        spec.set_mounts(Some(all));
        Ok(mounts)
    }

    /// The container has ended: its tmpfs mounts go with its mount
    /// namespace; the values stay for a restart.
    pub(super) fn unmount_files(&self, id: &str) {
        self.files.unmount(id);
    }

    /// The container is removed: its values are forgotten.
    pub(super) fn forget_files(&self, id: &str) {
        self.files.remove(id);
    }

    /// The container `id` and the new value of its `kind` (`secret` or
    /// `config file`) `name`, which `has` finds in its launch request: 404
    /// for an unknown container or name, 400 for a bad name or value.
    fn file_update(
        &self,
        id: &str,
        name: &str,
        kind: &str,
        body: &UpdateFileRequest,
        has: impl Fn(&LaunchRequest) -> bool,
    ) -> Result<(Container, crate::secrets::request::Value), ManagerError> {
        let container = self.slot(id)?.get();
        crate::secrets::request::check_name("name", name)?;
        if !container.request.as_deref().is_some_and(has) {
            return Err(ManagerError::NotFound(format!(
                "container {id} has no {kind} {name:?}"
            )));
        }
        let value =
            read_value("", body.value_base64.as_ref(), body.file.as_deref()).map_err(strip_dot)?;
        Ok((container, value))
    }

    /// `PUT /v1/containers/{id}/secrets/{name}`: a new value, written
    /// atomically into the running container's `/run/secrets/NAME`.
    pub fn update_secret(
        &self,
        id: &str,
        name: &str,
        body: UpdateFileRequest,
    ) -> Result<(), ManagerError> {
        let (container, value) = self.file_update(id, name, "secret", &body, |r| {
            r.secrets.iter().any(|s| s.name == name)
        })?;
        self.files
            .update_secret(container.id.as_str(), name, value)
            .map_err(files_error)
    }

    /// `PUT /v1/containers/{id}/configs/{name}`: a new value, swapped in
    /// atomically, then the container's `config_change` action.
    pub async fn update_config(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        body: UpdateFileRequest,
    ) -> Result<(), ManagerError> {
        let (container, value) = self.file_update(id, name, "config file", &body, |r| {
            r.config_files.iter().any(|c| c.name == name)
        })?;
        let changed = self
            .files
            .update_config(container.id.as_str(), name, value)
            .map_err(files_error)?;
        let change = container
            .request
            .as_deref()
            .and_then(|r| r.config_change.as_deref())
            .and_then(ConfigChange::parse)
            .unwrap_or_default();
        if !changed || container.state != State::Running {
            return Ok(());
        }
        match change {
            ConfigChange::None => Ok(()),
            ConfigChange::Signal(number) => super::signal_first_process(&container, number),
            ConfigChange::Restart => self.restart(id, RESTART_GRACE).await.map(|_| ()),
        }
    }
}

/// `read_value("")` names fields `.value_base64`, `.file`, or ``: the body's
/// own fields.
fn strip_dot(mut e: InvalidField) -> InvalidField {
    e.field = e.field.trim_start_matches('.').to_string();
    if e.field.is_empty() {
        e.field = "value_base64".into();
    }
    e
}
