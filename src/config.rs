//! The agent's settings: defaults, then the TOML file, then flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading the agent config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse config {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The agent's settings. Every field can be set in the TOML file; the
/// commonly changed ones also by flag.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The API's unix socket.
    pub socket: PathBuf,
    /// Sandboxes live here (persistent).
    pub work_dir: PathBuf,
    /// Container state, bundles and shim records live here (a tmpfs).
    pub runtime_dir: PathBuf,
    /// `/path` below each hierarchy's root, or a path relative to the
    /// agent's own cgroup.
    pub cgroup_root: String,
    /// The isolators offered, in the order they are applied; default: every
    /// built-in isolator this host supports.
    pub isolation: Option<Vec<String>>,
    /// The `berth-shim` binary; default: next to the running `berth`.
    pub shim: Option<PathBuf>,
    /// cpu isolator settings.
    pub cpu: CpuSettings,
    /// net_cls isolator settings.
    pub net_cls: NetClsSettings,
    /// disk isolator settings.
    pub disk: DiskSettings,
    /// pids isolator settings.
    pub pids: PidsSettings,
    /// Container log settings (each container may override them).
    pub log: LogSettings,
    /// Sandbox garbage collection.
    pub gc: GcSettings,
    /// What the agent does with containers when it stops.
    pub shutdown: ShutdownSettings,
    /// What every container gets unless its request says otherwise.
    pub container: ContainerSettings,
    /// Limits of the API server.
    pub api: ApiSettings,
    /// Subordinate id ranges for containers with `userns: auto`.
    pub userns: crate::userns::UsernsSettings,
    /// Confinement defaults for containers.
    pub security: SecuritySettings,
    /// Registries, credentials, pull policy and image store size: `[images]`.
    pub images: crate::images::settings::ImagesSettings,
    /// Back-off of restart policies: `[restart]`.
    pub restart: crate::restart_policy::RestartSettings,
    /// Bind mounts' allowed host paths: `[volumes]`.
    pub volumes: crate::volumes::VolumeSettings,
    /// The event stream's ring and heartbeat: `[events]`.
    pub events: crate::events::EventSettings,
    /// Settings of isolators that are not built in, one table each:
    /// `[isolators.NAME]`, handed to the isolator's factory as it is.
    #[serde(default)]
    pub isolators: std::collections::BTreeMap<String, toml::Value>,
    /// Isolator plugins, `[[plugins]]` (decision 0041).
    #[serde(default)]
    pub plugins: Vec<crate::plugins::PluginConfig>,
}

/// Per-container defaults of the agent: `[container]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerSettings {
    /// Bytes of the container's `/tmp` tmpfs (and of its private `/run` in
    /// host-root mode); the pages count against its memory limit.
    pub tmp_size: u64,
    /// Host paths hidden behind empty read-only mounts from containers on
    /// the host's root; `*` and `?` may appear in the last component.
    pub hidden_paths: Vec<String>,
    /// `UID[:GID]` for containers whose request names no user; default root.
    pub default_user: Option<String>,
    /// Shims kept started ahead of launches (decision 0043); 0 execs a
    /// shim per launch. With 2 or more, the last is kept back as the
    /// parent of the shims launches take when the others are gone
    /// (decision 0056).
    pub idle_shims: usize,
}

/// The most idle shims `container.idle_shims` may ask for.
pub const MAX_IDLE_SHIMS: usize = 64;

/// The smallest `tmp_size` accepted, per container or agent-wide.
pub const MIN_TMP_SIZE: u64 = 4096;

impl Default for ContainerSettings {
    fn default() -> Self {
        ContainerSettings {
            tmp_size: 64 << 20,
            hidden_paths: crate::bundle::hidden::DEFAULT_HIDDEN_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect(),
            default_user: None,
            idle_shims: 2,
        }
    }
}

impl ContainerSettings {
    /// The parsed `default_user`.
    pub fn default_user(&self) -> Option<crate::container::User> {
        self.default_user
            .as_deref()
            .and_then(crate::container::User::parse)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tmp_size < MIN_TMP_SIZE {
            return Err(ConfigError::Invalid(format!(
                "container.tmp_size must be at least {MIN_TMP_SIZE} bytes"
            )));
        }
        for pattern in &self.hidden_paths {
            crate::bundle::hidden::check_pattern(pattern)
                .map_err(|e| ConfigError::Invalid(format!("container.{e}")))?;
        }
        if self.idle_shims > MAX_IDLE_SHIMS {
            return Err(ConfigError::Invalid(format!(
                "container.idle_shims must be at most {MAX_IDLE_SHIMS}, got {}",
                self.idle_shims
            )));
        }
        if let Some(user) = &self.default_user {
            if self.default_user().is_none() {
                return Err(ConfigError::Invalid(format!(
                    "container.default_user must be UID[:GID], got {user:?}"
                )));
            }
        }
        Ok(())
    }
}

/// How long the API server waits for a client's request: a client that
/// sends part of its headers or body and stops is disconnected then.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Seconds to receive a request's headers, from the connection's first
    /// byte (or the end of the previous request).
    pub header_timeout_seconds: f64,
    /// Seconds to receive a request's body, once its headers are in.
    pub body_timeout_seconds: f64,
    /// The remote API: a TCP listener with TLS (`[api.tcp]`); none by default.
    #[serde(default)]
    pub tcp: Option<crate::api::tls::TcpSettings>,
    /// Which client-certificate identities hold which role (`[api.roles]`).
    #[serde(default)]
    pub roles: crate::api::roles::RoleSettings,
    /// Bearer tokens (`[[api.tokens]]`: name, role, salted hash) accepted
    /// on the TLS listener.
    #[serde(default)]
    pub tokens: Vec<crate::api::tokens::TokenSettings>,
    /// The group owning the unix socket (a name or a number); the socket
    /// is mode 0660. Default: root's.
    #[serde(default)]
    pub socket_group: Option<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            header_timeout_seconds: 10.0,
            body_timeout_seconds: 30.0,
            tcp: None,
            roles: Default::default(),
            tokens: Vec::new(),
            socket_group: None,
        }
    }
}

/// Confinement defaults; a container's request may override them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// The seccomp profile of containers that name none: `default`
    /// (Docker's), `unconfined`, or the absolute path of a profile file
    /// (Docker or OCI JSON), read when the agent starts.
    pub seccomp: String,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            seccomp: "default".to_string(),
        }
    }
}

/// Garbage collection of ended containers' sandboxes, as Mesos'
/// `--gc_delay` and `--gc_disk_headroom`: a sandbox may stay
/// `delay_seconds × max(0, 1 − disk_headroom − disk usage)` after its
/// container ended.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSettings {
    pub delay_seconds: f64,
    /// The fraction of the work dir's disk to keep free.
    pub disk_headroom: f64,
    /// Seconds between two collections.
    pub interval_seconds: f64,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            delay_seconds: 7.0 * 24.0 * 3600.0,
            disk_headroom: 0.1,
            interval_seconds: 60.0,
        }
    }
}

/// What happens to containers when the agent gets SIGTERM.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// Stop every container (TERM, then KILL after the grace period). By
    /// default containers keep running, and a new agent takes them over.
    pub stop_containers: bool,
    pub grace_seconds: f64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            stop_containers: false,
            grace_seconds: 10.0,
        }
    }
}

/// Settings of the net_cls isolator: classids are `primary << 16 | secondary`
/// with the secondary handle taken from `secondary_min..=secondary_max`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetClsSettings {
    pub primary: u16,
    pub secondary_min: u16,
    pub secondary_max: u16,
}

impl Default for NetClsSettings {
    fn default() -> Self {
        NetClsSettings {
            primary: 0xAAAA,
            secondary_min: 1,
            secondary_max: 0xFFFF,
        }
    }
}

/// How the disk isolator enforces `resources.disk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskBackend {
    /// Periodic accounting; the container ends when over quota.
    Du,
    /// A per-sandbox filesystem image: writes past the quota get ENOSPC.
    Loop,
    /// XFS project quotas on a work dir mounted with prjquota.
    Xfs,
}

/// Settings of the disk isolator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSettings {
    pub backend: DiskBackend,
    /// Seconds between two accountings (du backend).
    pub interval_seconds: f64,
    /// The XFS project ids berth may use (xfs backend).
    pub xfs_project_min: u32,
    pub xfs_project_max: u32,
}

impl Default for DiskSettings {
    fn default() -> Self {
        DiskSettings {
            backend: DiskBackend::Du,
            interval_seconds: 15.0,
            xfs_project_min: 5000,
            xfs_project_max: 9999,
        }
    }
}

/// Log rotation and backpressure: handed to the shim on its command line,
/// so they live with it in berth-protocol.
pub use berth_protocol::{LogMode, LogSettings};

/// The largest `log.max_size`: one file of a stream, before it rotates.
pub const MAX_LOG_FILE_SIZE: u64 = 1 << 30;
/// The most `log.max_files`.
pub const MAX_LOG_FILES: u32 = 10_000;

/// Settings of the pids isolator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PidsSettings {
    /// `pids.max` of a container that asks for no limit; `0` or `"max"`:
    /// none.
    pub default_limit: PidsLimit,
    /// Whether a container may ask for no limit (`pids_limit: 0`).
    pub allow_unlimited: bool,
}

impl Default for PidsSettings {
    fn default() -> Self {
        PidsSettings {
            default_limit: PidsLimit(berth_isolator_pids::DEFAULT_PIDS_LIMIT),
            allow_unlimited: false,
        }
    }
}

/// A task limit in the config: a number, with `0` or `"max"` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidsLimit(pub u64);

impl<'de> Deserialize<'de> for PidsLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(PidsLimit(n)),
            Raw::Text(t) if t == "max" => Ok(PidsLimit(0)),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected a number or \"max\", got {t:?}"
            ))),
        }
    }
}

/// Settings of the cpu isolator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuSettings {
    /// Cap usage with a CFS quota, not only weight it with shares.
    pub cfs_quota: bool,
}

impl Default for CpuSettings {
    fn default() -> Self {
        CpuSettings { cfs_quota: true }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            socket: PathBuf::from("/run/berth/berth.sock"),
            work_dir: PathBuf::from("/var/lib/berth"),
            runtime_dir: PathBuf::from("/run/berth"),
            cgroup_root: "/berth".to_string(),
            isolation: None,
            shim: None,
            cpu: CpuSettings::default(),
            net_cls: NetClsSettings::default(),
            disk: DiskSettings::default(),
            pids: PidsSettings::default(),
            log: LogSettings::default(),
            gc: GcSettings::default(),
            shutdown: ShutdownSettings::default(),
            container: ContainerSettings::default(),
            api: ApiSettings::default(),
            userns: Default::default(),
            security: SecuritySettings::default(),
            images: Default::default(),
            restart: Default::default(),
            volumes: Default::default(),
            events: Default::default(),
            isolators: Default::default(),
            plugins: Default::default(),
        }
    }
}

impl AgentConfig {
    /// Reads a TOML config file over the defaults.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks what can be checked without touching the host.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, path) in [
            ("socket", &self.socket),
            ("work_dir", &self.work_dir),
            ("runtime_dir", &self.runtime_dir),
        ] {
            if !path.is_absolute() || path.parent().is_none() {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be an absolute path other than /, got {}",
                    path.display()
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in self.isolation.iter().flatten() {
            if !seen.insert(name) {
                return Err(ConfigError::Invalid(format!(
                    "isolator {name} is listed twice"
                )));
            }
        }
        let mut plugins = std::collections::BTreeSet::new();
        for plugin in &self.plugins {
            plugin
                .check(crate::agent::BUILT_IN_ISOLATORS)
                .map_err(ConfigError::Invalid)?;
            if !plugins.insert(&plugin.name) {
                return Err(ConfigError::Invalid(format!(
                    "plugin {} is declared twice",
                    plugin.name
                )));
            }
        }
        if self.net_cls.secondary_min == 0
            || self.net_cls.secondary_min > self.net_cls.secondary_max
        {
            return Err(ConfigError::Invalid(format!(
                "net_cls secondary range {}..={} must be non-empty and start at 1 or above",
                self.net_cls.secondary_min, self.net_cls.secondary_max
            )));
        }
        if !(self.disk.interval_seconds.is_finite() && self.disk.interval_seconds > 0.0) {
            return Err(ConfigError::Invalid(
                "disk.interval_seconds must be positive".into(),
            ));
        }
        if self.disk.xfs_project_min == 0 || self.disk.xfs_project_min > self.disk.xfs_project_max {
            return Err(ConfigError::Invalid(
                "disk xfs project range must be non-empty and above 0".into(),
            ));
        }
        let gc = &self.gc;
        let valid = gc.delay_seconds.is_finite()
            && gc.delay_seconds >= 0.0
            && (0.0..=1.0).contains(&gc.disk_headroom)
            && gc.interval_seconds.is_finite()
            && gc.interval_seconds > 0.0;
        if !valid {
            return Err(ConfigError::Invalid(
                "gc: delay_seconds must be >= 0, disk_headroom within 0..=1, interval_seconds > 0"
                    .into(),
            ));
        }
        if !(self.shutdown.grace_seconds.is_finite() && self.shutdown.grace_seconds >= 0.0) {
            return Err(ConfigError::Invalid(
                "shutdown.grace_seconds must be >= 0".into(),
            ));
        }
        if self.pids.default_limit.0 > berth_isolator_pids::MAX_PIDS_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "pids.default_limit must be at most {}",
                berth_isolator_pids::MAX_PIDS_LIMIT
            )));
        }
        if !(4096..=MAX_LOG_FILE_SIZE).contains(&self.log.max_size)
            || !(1..=MAX_LOG_FILES).contains(&self.log.max_files)
        {
            return Err(ConfigError::Invalid(format!(
                "log.max_size must be within 4096..={MAX_LOG_FILE_SIZE} and log.max_files within 1..={MAX_LOG_FILES}"
            )));
        }
        self.userns
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.restart.validate().map_err(ConfigError::Invalid)?;
        self.events.validate().map_err(ConfigError::Invalid)?;
        for (name, seconds) in [
            (
                "api.header_timeout_seconds",
                self.api.header_timeout_seconds,
            ),
            ("api.body_timeout_seconds", self.api.body_timeout_seconds),
        ] {
            if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be within 0..=3600 and above 0, got {seconds}"
                )));
            }
        }
        self.container.validate()?;
        Ok(())
    }

    /// The shim binary to exec.
    /// The shim binary: the configured one, else `berth-shim` next to this
    /// binary (a build tree, a tarball), else the packaged
    /// [`PACKAGED_SHIM`].
    pub fn shim_path(&self) -> PathBuf {
        if let Some(path) = &self.shim {
            return path.clone();
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("berth-shim")));
        shim_beside_or_packaged(beside)
    }
}

/// Where the RPM installs the shim (`/usr/libexec` is for programs other
/// programs run).
pub const PACKAGED_SHIM: &str = "/usr/libexec/berth/berth-shim";

fn shim_beside_or_packaged(beside: Option<PathBuf>) -> PathBuf {
    match beside {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(PACKAGED_SHIM),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_beside_the_binary_else_the_packaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let beside = dir.path().join("berth-shim");
        assert_eq!(
            shim_beside_or_packaged(Some(beside.clone())),
            Path::new(PACKAGED_SHIM)
        );
        std::fs::write(&beside, b"").unwrap();
        assert_eq!(shim_beside_or_packaged(Some(beside.clone())), beside);
        assert_eq!(shim_beside_or_packaged(None), Path::new(PACKAGED_SHIM));
    }

    #[test]
    fn file_overrides_defaults_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "work_dir = \"/srv/berth\"\nisolation = [\"memory\"]\n[cpu]\ncfs_quota = false\n",
        )
        .unwrap();
        let config = AgentConfig::load(&path).unwrap();
        assert_eq!(config.work_dir, PathBuf::from("/srv/berth"));
        assert_eq!(config.isolation, Some(vec!["memory".to_string()]));
        assert!(!config.cpu.cfs_quota);
        assert_eq!(config.runtime_dir, PathBuf::from("/run/berth"));

        std::fs::write(&path, "workdir = \"/x\"\n").unwrap();
        let err = AgentConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("workdir"), "{err}");
    }

    #[test]
    fn the_packaged_config_parses_to_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/berth.toml"));
        let config = AgentConfig::load(path).unwrap();
        // Except the cgroup root: relative, inside the unit's delegated
        // subtree (decision 0015).
        assert_eq!(config.cgroup_root, "berth");
        let config = AgentConfig {
            cgroup_root: AgentConfig::default().cgroup_root,
            ..config
        };
        assert_eq!(config, AgentConfig::default());
    }

    #[test]
    fn pids_default_limit_takes_a_number_or_max() {
        let parse = |text: &str| toml::from_str::<AgentConfig>(text).map(|c| c.pids);
        assert_eq!(parse("").unwrap().default_limit, PidsLimit(4096));
        assert_eq!(
            parse("[pids]\ndefault_limit = 100\n")
                .unwrap()
                .default_limit,
            PidsLimit(100)
        );
        let max = parse("[pids]\ndefault_limit = \"max\"\nallow_unlimited = true\n").unwrap();
        assert_eq!(max.default_limit, PidsLimit(0));
        assert!(max.allow_unlimited);
        assert!(parse("[pids]\ndefault_limit = \"lots\"\n").is_err());
    }

    #[test]
    fn relative_paths_and_duplicate_isolators_are_invalid() {
        let config = AgentConfig {
            work_dir: PathBuf::from("relative"),
            ..Default::default()
        };
        assert!(config.validate().is_err());
        let config = AgentConfig {
            isolation: Some(vec!["cpu".into(), "cpu".into()]),
            ..Default::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn container_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "[container]\ntmp_size = 1048576\nhidden_paths = [\"/srv/secret\"]\ndefault_user = \"65534:65534\"\n",
        )
        .unwrap();
        let config = AgentConfig::load(&path).unwrap();
        config.validate().unwrap();
        assert_eq!(config.container.tmp_size, 1 << 20);
        assert_eq!(config.container.hidden_paths, ["/srv/secret"]);
        assert_eq!(config.container.default_user().unwrap().gid(), 65534);
        for (bad, field) in [
            ("tmp_size = 10", "tmp_size"),
            ("hidden_paths = [\"etc/shadow\"]", "hidden_paths"),
            ("hidden_paths = [\"/etc/*/x\"]", "hidden_paths"),
            ("default_user = \"nobody\"", "default_user"),
        ] {
            std::fs::write(&path, format!("[container]\n{bad}\n")).unwrap();
            let err = AgentConfig::load(&path).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
    }
}
