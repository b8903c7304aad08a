//! Attached execs (`-i`, `-t`, decision 0026): `POST .../exec` with
//! `stdin` or `tty` only records the request and answers with the exec's
//! id; `GET .../exec/{exec}/attach` (a WebSocket) starts its helper with
//! one end of a socket pair as `--stream-fd 3` and hands the other end to
//! the API, which relays frames between it and the client.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use super::exec::container_running;
use super::{Manager, ManagerError};
use crate::container::ExecRequest;
use crate::streams::status::Status;
use berth_protocol::ExitRecord;

/// Marks an exec dir whose exec has been attached (and so started): a
/// second attach is a conflict.
const ATTACHED_FILE: &str = "attached";

/// The fd number the helper gets the agent's socket on.
const STREAM_FD: i32 = 3;

pub use crate::wire::exec::ExecCreated;

/// A started attached exec: the socket to its helper and the helper.
pub struct ExecStream {
    socket: Option<tokio::net::UnixStream>,
    container: String,
    dir: PathBuf,
    helper: tokio::process::Child,
}

impl Manager {
    /// Records an attached exec of `request` in the running container `id`.
    pub fn exec_create(
        &self,
        id: &str,
        mut request: ExecRequest,
    ) -> Result<ExecCreated, ManagerError> {
        let (_, exec_id, _) = self.exec_prepare(id, &mut request)?;
        Ok(ExecCreated {
            attach: format!("/v1/containers/{id}/exec/{exec_id}/attach"),
            id: exec_id,
        })
    }

    /// Starts the attached exec `exec_id` of container `id`.
    pub fn exec_attach(&self, id: &str, exec_id: &str) -> Result<ExecStream, ManagerError> {
        let container = self.slot(id)?.get();
        let not_found = || ManagerError::NotFound(format!("exec {exec_id} of container {id}"));
        // Exec ids are hex: nothing else may name a path.
        if exec_id.is_empty() || !exec_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let dir = self
            .store
            .state_dir(&container.id)
            .join("exec")
            .join(exec_id);
        let request: ExecRequest =
            std::fs::read(dir.join(berth_protocol::helper_args::REQUEST_FILE))
                .ok()
                .and_then(|raw| serde_json::from_slice(&raw).ok())
                .ok_or_else(not_found)?;
        if !request.stdin && !request.tty {
            return Err(ManagerError::Conflict(format!(
                "exec {exec_id} is not attachable (it has neither stdin nor tty)"
            )));
        }
        let (Some(pid), Some(start_time), crate::container::State::Running) =
            (container.pid, container.pid_start_time, container.state)
        else {
            return Err(ManagerError::Conflict(format!(
                "container {id} is not running"
            )));
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(ATTACHED_FILE))
            .map_err(|_| ManagerError::Conflict(format!("exec {exec_id} is already attached")))?;
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            ManagerError::Internal(format!("exec in {id}: {what}: {e}"))
        };
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| internal("socketpair", &e))?;
        ours.set_nonblocking(true)
            .map_err(|e| internal("socketpair", &e))?;
        let socket =
            tokio::net::UnixStream::from_std(ours).map_err(|e| internal("socketpair", &e))?;
        let theirs = OwnedFd::from(theirs);
        let raw = theirs.as_raw_fd();
        let mut command =
            self.exec_helper(&container.id, &dir, pid, start_time, Some(STREAM_FD))?;
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork
        // and exec; `raw` stays open until spawn returns.
        unsafe {
            command.pre_exec(move || {
                if raw == STREAM_FD {
                    if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, STREAM_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let helper = command
            .spawn()
            .map_err(|e| internal("start the exec helper", &e))?;
        drop(theirs);
        Ok(ExecStream {
            socket: Some(socket),
            container: id.to_string(),
            dir,
            helper,
        })
    }
}

impl ExecStream {
    /// The socket to the helper (once).
    pub fn take_socket(&mut self) -> tokio::net::UnixStream {
        self.socket.take().expect("the socket is taken once")
    }

    /// Waits for the helper (after the socket has ended) and says how the
    /// exec ended, as the Kubernetes status sent on channel 3.
    pub async fn finish(mut self, manager: &Manager) -> Status {
        let status = self.helper.wait().await;
        let ended = self.ended(status, manager);
        if let Some(execs) = self.dir.parent() {
            super::exec::prune_finished_execs(execs);
        }
        ended
    }

    /// The exec's end as its helper recorded it.
    fn ended(
        &self,
        status: std::io::Result<std::process::ExitStatus>,
        manager: &Manager,
    ) -> Status {
        let record: Option<ExitRecord> = ExitRecord::read(&self.dir).ok().flatten();
        let Some(record) = record else {
            let log = std::fs::read_to_string(self.dir.join("helper.log")).unwrap_or_default();
            return Status::failure(format!(
                "the exec helper failed: {status:?}: {}",
                log.trim()
            ));
        };
        match record.exit_code.or(record.signal.map(|s| 128 + s)) {
            Some(code) => {
                let mut status = Status::exited(code);
                if let Some(error) = record.error {
                    status.message = error;
                }
                status
            }
            None => {
                let message = record.error.unwrap_or_else(|| "no exit status".into());
                if container_running(manager, &self.container) {
                    Status::failure(message)
                } else {
                    Status::failure(format!(
                        "container {} is not running: {message}",
                        self.container
                    ))
                }
            }
        }
    }
}
