//! The container as the API shows it and as the agent records it on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_isolator::{ContainerId, Limitation};
use serde::{Deserialize, Serialize};

use crate::bundle::capabilities::CapabilityChanges;
use crate::restart_policy::{RestartPolicy, RestartState};
use crate::timestamp::Timestamp;

/// A launch request: the body of `POST /v1/containers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// The id; a random one is chosen when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The command and its arguments (with an `image`: its arguments,
    /// replacing the image's `Cmd`; empty keeps the image's).
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables added to the defaults (`PATH`, `HOME`, ...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory inside the container; default: the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The user to run as; default root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// A root filesystem directory on the host; default: the host's root,
    /// read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    /// The resources asked for: per-isolator sections, and the built-ins'
    /// flat `/v1` keys (see [`berth_isolator::ResourceTable`]).
    #[serde(default)]
    pub resources: serde_json::Map<String, serde_json::Value>,
    /// The isolators to apply, a subset of what the agent offers; default:
    /// all it offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Vec<String>>,
    /// `host` (default), `none` (own namespace, loopback only) or `ns:PATH`
    /// (join an existing network namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Overrides of the agent's log settings for this container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverrides>,
    /// Capabilities added to or dropped from the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<CapabilityChanges>,
    /// Bytes of the container's `/tmp` (default: the agent's
    /// `container.tmp_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_size: Option<u64>,
    /// `host` (default: no user namespace) or `auto` (container ids 0..65535
    /// mapped to a range of unprivileged host ids of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    /// Overrides of the agent's confinement defaults (`--security-opt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_opt: Option<SecurityOpt>,
    /// Run a reaper as pid 1 that forwards signals to the command and reaps
    /// orphaned processes (`--init`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Free-form `key: value` metadata (`--label K=V`), shown and
    /// filterable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Remove the container once it has ended (`--rm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_remove: bool,
    /// `no` (default), `on-failure[:N]` or `always` (`--restart`).
    #[serde(default, skip_serializing_if = "RestartPolicy::is_no")]
    pub restart: RestartPolicy,
    /// `NAME|UID[:GROUP|GID]` resolved in the root filesystem's
    /// `/etc/passwd` and `/etc/group` (`-u NAME`); instead of `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// A health check (`--health-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthCheck>,
    /// An image reference (`name[:tag][@digest]`) whose layers are the root
    /// filesystem and whose config supplies the command, env, working dir
    /// and user the request leaves out. Excludes `rootfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When the image is pulled: `missing`, `always` or `never` (default:
    /// the agent's `[images] pull`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<crate::images::PullPolicy>,
    /// Replaces the image's `Entrypoint` and clears its `Cmd` (Docker's
    /// `--entrypoint`); `[]` runs `command` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Keep an image's or a `--rootfs` root read-only (it has its own
    /// writable layer otherwise). The host root is always read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Keep the first process's stdin open, fed by `attach` (`-i`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Run the first process on a pty (`-t`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Secrets at `/run/secrets/NAME` (`--secret`); the recorded request
    /// keeps their names only (decision 0034).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::secrets::SecretSource>,
    /// Config files in read-only dirs, updated live (`--config-file`); the
    /// recorded request keeps their names and dirs only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<crate::secrets::ConfigFileSource>,
    /// What an update of a config file does: `none` (default), `restart`
    /// or `signal:NAME` (`--config-change`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_change: Option<String>,
    /// Bind mounts of host paths and named volumes (`-v`, `--mount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::volumes::MountRequest>,
}

/// Per-container `--security-opt` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityOpt {
    /// `"default"`, `"unconfined"` or a seccomp profile (Docker or OCI
    /// JSON); default: the agent's `[security] seccomp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<crate::seccomp::SeccompSetting>,
}

/// Per-container overrides of the agent's `[log]` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::config::LogMode>,
}

fn unconfined() -> String {
    "unconfined".to_string()
}

fn default_network() -> String {
    "host".to_string()
}

pub use berth_protocol::exec_request::{ExecRequest, User};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being launched.
    Created,
    /// The command runs.
    Running,
    /// It ended (or never started); see the termination fields.
    Exited,
    /// Its record could not be read: it was quarantined (see `message`) and
    /// whatever runs is left alone.
    Unknown,
}

/// Why a container ended.
pub mod reason {
    /// The command exited by itself.
    pub const EXITED: &str = "exited";
    /// A signal ended it.
    pub const KILLED: &str = "killed";
    /// It could not be started.
    pub const LAUNCH_FAILED: &str = "launch-failed";
    /// Its supervisor vanished without recording the end.
    pub const SHIM_LOST: &str = "shim-lost";
    /// The host went down under it (its runtime state is gone).
    pub const AGENT_LOST: &str = "agent-lost";
    /// Its health check ended it (`on_unhealthy: kill|restart`).
    pub const UNHEALTHY: &str = "unhealthy";
}

/// A container as the API shows it (`GET /v1/containers/{id}`, `ps`,
/// `wait`, events): what a client may know of it. The record the agent
/// keeps ([`Container`]) holds this and the agent's own fields besides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerView {
    pub id: ContainerId,
    pub state: State,
    /// The container's first process on the host, while it runs.
    pub pid: Option<u32>,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<User>,
    pub rootfs: Option<PathBuf>,
    /// In the `/v1` shape: flat keys for what the built-ins declare flat,
    /// sections for the rest ([`berth_isolator::ResourceTable::to_v1`]).
    pub resources: serde_json::Map<String, serde_json::Value>,
    /// The isolators applied, in order.
    pub isolation: Vec<String>,
    /// `host`, `none` or `ns:PATH`.
    #[serde(default = "default_network")]
    pub network: String,
    /// The log settings in force for this container.
    #[serde(default)]
    pub log: crate::config::LogSettings,
    /// Capability changes asked for (normalized names).
    #[serde(default, skip_serializing_if = "CapabilityChanges::is_empty")]
    pub capabilities: CapabilityChanges,
    /// Bytes of the container's `/tmp` (absent in records older than it:
    /// the agent's default then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_size: Option<u64>,
    /// The seccomp filter in force: `default`, `unconfined` or `custom`.
    /// Records from before seccomp support ran unconfined.
    #[serde(default = "unconfined")]
    pub seccomp: String,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub limitation: Option<Limitation>,
    /// Details of a failure, for people.
    pub message: Option<String>,
    pub sandbox: PathBuf,
    /// Where the container's logs are, out of its reach. Absent in records
    /// of containers launched before logs moved out of the sandbox: their
    /// logs are in the sandbox (see [`Container::log_dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    pub bundle: PathBuf,
    /// The container's id mapping when it has a user namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<crate::userns::UsernsMapping>,
    /// What each isolator reports for the container (filled in on request).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub status: serde_json::Map<String, serde_json::Value>,
    /// The shim's log counters, `{"stdout": {...}, "stderr": {...}}`
    /// (filled in on request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<crate::logs::counters::LogCounters>,
    /// Whether a reaper runs as pid 1 (`--init`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Its labels (`--label K=V`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Removed once it has ended (`--rm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_remove: bool,
    /// Its restart policy, restarts made and the next one due.
    #[serde(default)]
    pub restart: RestartState,
    /// Its health check, as asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<crate::health::HealthCheck>,
    /// What its checks found (read from the checker's file on request;
    /// kept in the record once it has ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthState>,
    /// The image it runs, as a normalized reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Its own root (an image's or a `--rootfs` overlay) is read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// The image's `ExposedPorts` (`80/tcp`, ...), for people: berth
    /// publishes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// The image's `Labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub image_labels: BTreeMap<String, String>,
    /// Keep the first process's stdin open, fed by `attach` (`-i`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Run the first process on a pty (`-t`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

/// Everything the agent knows about one container: its [`ContainerView`]
/// and the agent's own fields, which no API answer shows. Written to
/// `<runtime_dir>/containers/<id>/container.json` (and the work dir's
/// copy); the view's fields sit at the top level of that file beside
/// these, so records written before the split read unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    #[serde(flatten)]
    pub view: ContainerView,
    /// How the agent finds the supervisor again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim: Option<ProcessRef>,
    /// The first process's start time, which guards against pid reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    /// Each isolator's usage just before its cleanup, what `stats` shows of
    /// an ended container.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub final_usage: serde_json::Map<String, serde_json::Value>,
    /// The request it was launched with, which a restart launches again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Box<LaunchRequest>>,
}

impl std::ops::Deref for Container {
    type Target = ContainerView;

    fn deref(&self) -> &ContainerView {
        &self.view
    }
}

impl std::ops::DerefMut for Container {
    fn deref_mut(&mut self) -> &mut ContainerView {
        &mut self.view
    }
}

pub use berth_protocol::process::ProcessRef;

impl ContainerView {
    /// A container's exit code as a shell would report it: the code, or
    /// 128 + signal.
    pub fn shell_exit_code(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            _ => 255,
        }
    }

    /// Where the container's log files are: its log dir, or for a
    /// container launched by an older agent, its sandbox (readers go
    /// through `berth_confined` either way).
    pub fn log_dir(&self) -> &std::path::Path {
        self.log_dir.as_deref().unwrap_or(&self.sandbox)
    }
}

impl Container {
    /// The container as the API shows it: a signal death shows
    /// `exit_code` 128 + n beside `signal`, as `ps` and `wait` (and shells)
    /// report it.
    pub fn public(&self) -> ContainerView {
        let mut view = self.view.clone();
        if let (None, Some(_)) = (view.exit_code, view.signal) {
            view.exit_code = Some(self.shell_exit_code());
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as an agent before the view/record split wrote it: every
    /// field at the top level, the agent's own (`shim`, `pid_start_time`,
    /// `request`) among them.
    const OLD_RECORD: &str = r#"{
        "id": "old1", "state": "running", "pid": 4242, "command": ["sleep", "9"],
        "env": {}, "workdir": null, "user": null, "rootfs": null, "resources": {},
        "isolation": ["cpu"], "network": "host", "seccomp": "default",
        "created_at": "2026-12-01T10:00:00Z", "started_at": "2026-12-01T10:00:01Z",
        "finished_at": null, "exit_code": null, "signal": null, "reason": null,
        "limitation": null, "message": null, "sandbox": "/var/lib/berth/containers/old1/sandbox",
        "bundle": "/run/berth/containers/old1/bundle",
        "shim": {"pid": 4240, "start_time": 77}, "pid_start_time": 78,
        "final_usage": {"cpu": {"user_seconds": 1.5}},
        "request": {"command": ["sleep", "9"]}
    }"#;

    #[test]
    fn a_record_written_before_the_split_reads_with_its_own_fields() {
        let record: Container = serde_json::from_str(OLD_RECORD).unwrap();
        assert_eq!(record.id.as_str(), "old1");
        assert_eq!(record.pid, Some(4242));
        assert_eq!(
            record.shim,
            Some(ProcessRef {
                pid: 4240,
                start_time: 77
            })
        );
        assert_eq!(record.pid_start_time, Some(78));
        assert_eq!(record.final_usage["cpu"]["user_seconds"], 1.5);
        assert_eq!(record.request.as_ref().unwrap().command, ["sleep", "9"]);
        // Written again, it keeps the same flat shape and reads back equal.
        let again = serde_json::to_value(&record).unwrap();
        assert_eq!(again["shim"]["pid"], 4240);
        assert_eq!(again["id"], "old1");
        let back: Container = serde_json::from_value(again).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn the_api_view_has_none_of_the_agents_own_fields() {
        let record: Container = serde_json::from_str(OLD_RECORD).unwrap();
        let view = serde_json::to_value(record.public()).unwrap();
        for internal in ["shim", "pid_start_time", "final_usage", "request"] {
            assert!(view.get(internal).is_none(), "{internal} in {view}");
        }
        assert_eq!(view["pid"], 4242);
        // A client reading a view into the view type gets it whole.
        let read: ContainerView = serde_json::from_value(view).unwrap();
        assert_eq!(read, record.public());
    }

    #[test]
    fn user_parses_uid_and_gid() {
        assert_eq!(
            User::parse("1000"),
            Some(User {
                uid: 1000,
                gid: None
            })
        );
        assert_eq!(User::parse("1000:100").unwrap().gid(), 100);
        assert_eq!(User::parse("1000").unwrap().gid(), 1000);
        assert_eq!(User::parse("root"), None);
        assert_eq!(User::parse("1:x"), None);
    }

    #[test]
    fn launch_request_refuses_unknown_fields() {
        let err =
            serde_json::from_str::<LaunchRequest>(r#"{"command":["true"],"cpus":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `cpus`"), "{err}");
    }
}
