//! The agent's settings: defaults, then the TOML file, then flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The isolators an agent offers when its config names none.
pub const DEFAULT_ISOLATION: &[&str] = &["cpu", "memory"];

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
    /// The isolators offered, in the order they are applied.
    pub isolation: Vec<String>,
    /// The `berth-shim` binary; default: next to the running `berth`.
    pub shim: Option<PathBuf>,
    /// cpu isolator settings.
    pub cpu: CpuSettings,
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
            isolation: DEFAULT_ISOLATION.iter().map(|s| s.to_string()).collect(),
            shim: None,
            cpu: CpuSettings::default(),
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
            if !path.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be an absolute path, got {}",
                    path.display()
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.isolation {
            if !seen.insert(name) {
                return Err(ConfigError::Invalid(format!(
                    "isolator {name} is listed twice"
                )));
            }
        }
        Ok(())
    }

    /// The shim binary to exec.
    pub fn shim_path(&self) -> PathBuf {
        if let Some(path) = &self.shim {
            return path.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("berth-shim")))
            .unwrap_or_else(|| PathBuf::from("/usr/libexec/berth/berth-shim"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(config.isolation, vec!["memory"]);
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
        assert_eq!(config, AgentConfig::default());
    }

    #[test]
    fn relative_paths_and_duplicate_isolators_are_invalid() {
        let config = AgentConfig {
            work_dir: PathBuf::from("relative"),
            ..Default::default()
        };
        assert!(config.validate().is_err());
        let config = AgentConfig {
            isolation: vec!["cpu".into(), "cpu".into()],
            ..Default::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("twice"));
    }
}
