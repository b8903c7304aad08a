//! `berth attach` / `run -i` (decision 0026): where the shim of a running
//! container started with `-i` listens for its stdin.

use std::path::PathBuf;

use super::{Manager, ManagerError};

impl Manager {
    /// The shim's attach socket of the running container `id`.
    pub fn attach_socket(&self, id: &str) -> Result<PathBuf, ManagerError> {
        let container = self.slot(id)?.get();
        if !container.stdin && !container.tty {
            return Err(ManagerError::Conflict(format!(
                "container {id} was not started with stdin open (-i)"
            )));
        }
        if container.state != crate::container::State::Running {
            return Err(ManagerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        Ok(self
            .store
            .state_dir(&container.id)
            .join(berth_protocol::bundle::ATTACH_SOCKET))
    }
}
