//! `exec`: one more process in a running container, run by a per-exec
//! helper (`berth-shim exec`, see `shim::join`) that outlives the agent.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::{Manager, ManagerError};
use crate::container::{ExecRequest, State};
use berth_protocol::exit::EXIT_FILE;
use berth_protocol::helper_args::REQUEST_FILE;
use berth_protocol::ExitRecord;

/// Output returned in the answer, per stream; the files keep all of it.
const MAX_OUTPUT: u64 = berth_protocol::messages::EXEC_OUTPUT_CAP;

pub use crate::wire::exec::ExecResult;

impl Manager {
    /// Runs `request` in the running container `id` and waits for its end.
    pub async fn exec(
        &self,
        id: &str,
        mut request: ExecRequest,
    ) -> Result<ExecResult, ManagerError> {
        let (container, exec_id, dir) = self.exec_prepare(id, &mut request)?;
        let (Some(pid), Some(start_time)) = (container.pid, container.pid_start_time) else {
            return Err(ManagerError::Conflict(format!(
                "container {id} is not running"
            )));
        };
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            ManagerError::Internal(format!("exec in {id}: {what}: {e}"))
        };
        let mut child = self
            .exec_helper(&container.id, &dir, pid, start_time, None)?
            .spawn()
            .map_err(|e| internal("start the exec helper", &e))?;
        let status = child
            .wait()
            .await
            .map_err(|e| internal("wait for the exec helper", &e))?;
        let record: ExitRecord = ExitRecord::read(&dir).ok().flatten().ok_or_else(|| {
            let log = std::fs::read_to_string(dir.join("helper.log")).unwrap_or_default();
            internal(
                "the exec helper failed",
                &format!("{status}: {}", log.trim()),
            )
        })?;
        let Some(exit_code) = record.exit_code.or(record.signal.map(|s| 128 + s)) else {
            // Nothing ran: the container ended meanwhile, or it could not
            // be joined.
            let message = record.error.unwrap_or_else(|| "no exit status".into());
            return Err(if container_running(self, id) {
                ManagerError::Internal(format!("exec in {id}: {message}"))
            } else {
                ManagerError::Conflict(format!("container {id} is not running: {message}"))
            });
        };
        let result = ExecResult {
            id: exec_id,
            exit_code,
            signal: record.signal,
            stdout: read_capped(&dir.join("stdout")).await,
            stderr: read_capped(&dir.join("stderr")).await,
            error: record.error,
            started_at: record.started_at,
            finished_at: record.finished_at,
        };
        if let Some(execs) = dir.parent() {
            prune_finished_execs(execs);
        }
        Ok(result)
    }

    /// Checks `request` against the running container `id` and writes it
    /// into a new exec dir: the container, the exec's id and its dir.
    pub(super) fn exec_prepare(
        &self,
        id: &str,
        request: &mut ExecRequest,
    ) -> Result<(crate::container::Container, String, std::path::PathBuf), ManagerError> {
        if request.command.is_empty() || request.command[0].is_empty() {
            return Err(ManagerError::invalid(
                "command",
                "command must not be empty",
            ));
        }
        if let Some(dir) = &request.workdir {
            if !dir.starts_with('/') {
                return Err(ManagerError::invalid(
                    "workdir",
                    format!("workdir must be absolute, not {dir:?}"),
                ));
            }
        }
        let container = self.slot(id)?.get();
        let (Some(pid), Some(_), State::Running) =
            (container.pid, container.pid_start_time, container.state)
        else {
            return Err(ManagerError::Conflict(format!(
                "container {id} is not running"
            )));
        };
        if let Some(spec) = request.user_name.take() {
            if request.user.is_some() {
                return Err(ManagerError::invalid(
                    "user_name",
                    "give user or user_name, not both",
                ));
            }
            // The container's own root as it sees it (host root, `--rootfs`
            // overlay or image layers alike), read confined beneath it
            // (bounded, no FIFOs or devices). The trailing slash makes the
            // open follow the magic link itself; nothing below it is
            // followed.
            let root = std::path::PathBuf::from(format!("/proc/{pid}/root/"));
            let user = crate::rootfs_users::resolve(&root, &spec)
                .map_err(|e| ManagerError::invalid("user_name", e.to_string()))?;
            request.user = Some(user);
        }
        let exec_id = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let dir = self
            .store
            .state_dir(&container.id)
            .join("exec")
            .join(&exec_id);
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            ManagerError::Internal(format!("exec in {id}: {what}: {e}"))
        };
        std::fs::create_dir_all(&dir).map_err(|e| internal("create exec dir", &e))?;
        let raw = serde_json::to_vec(&request).map_err(|e| internal("request", &e))?;
        std::fs::write(dir.join(REQUEST_FILE), raw).map_err(|e| internal("write request", &e))?;
        Ok((container, exec_id, dir))
    }

    /// The exec helper's command for the exec dir `dir` of `container`.
    pub(super) fn exec_helper(
        &self,
        container: &berth_isolator::ContainerId,
        dir: &Path,
        pid: u32,
        start_time: u64,
        stream_fd: Option<i32>,
    ) -> Result<tokio::process::Command, ManagerError> {
        let helper_log = std::fs::File::create(dir.join("helper.log"))
            .map_err(|e| ManagerError::Internal(format!("exec in {container}: helper log: {e}")))?;
        let args = berth_protocol::ExecArgs {
            bundle: self.store.bundle_dir(container),
            dir: dir.to_path_buf(),
            pid,
            start_time,
            stream_fd,
        };
        let mut command = tokio::process::Command::new(self.config.shim_path());
        command
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(helper_log);
        Ok(command)
    }
}

pub(super) fn container_running(manager: &Manager, id: &str) -> bool {
    manager
        .slot(id)
        .map(|s| s.get())
        .ok()
        .and_then(|c| super::container_process(&c).filter(|_| c.state == State::Running))
        .is_some_and(|p| p.is_alive())
}

async fn read_capped(path: &Path) -> String {
    let mut out = Vec::new();
    if let Ok(file) = tokio::fs::File::open(path).await {
        let _ = file.take(MAX_OUTPUT).read_to_end(&mut out).await;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many finished execs a container keeps (their dirs: request, exit
/// record, up to 4 MiB of each output stream) beside the running ones.
const FINISHED_EXECS_KEPT: usize = 16;

/// Removes all but the newest [`FINISHED_EXECS_KEPT`] finished exec dirs
/// below `execs`, so that a container exec'd into every second does not
/// fill the runtime dir until it is removed. Exec ids are hex nanoseconds:
/// their value orders them. A dir without an exit record runs, or waits to
/// be attached, and stays.
pub(super) fn prune_finished_execs(execs: &Path) {
    let Ok(entries) = std::fs::read_dir(execs) else {
        return;
    };
    let mut finished: Vec<(u128, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let id = u128::from_str_radix(entry.file_name().to_str()?, 16).ok()?;
            let path = entry.path();
            path.join(EXIT_FILE).exists().then_some((id, path))
        })
        .collect();
    if finished.len() <= FINISHED_EXECS_KEPT {
        return;
    }
    finished.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
    for (_, path) in finished.drain(FINISHED_EXECS_KEPT..) {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!("remove the finished exec {}: {e}", path.display());
        }
    }
}
