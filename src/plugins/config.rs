//! `[[plugins]]` in the agent's config: one isolator plugin each.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How berth talks to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginMode {
    /// One process for the agent's life, started and supervised by the
    /// agent, speaking JSON-RPC over its stdin and stdout.
    LongLived,
    /// One process per call (`PATH METHOD`, the request on stdin, the reply
    /// on stdout), like CNI.
    Exec,
}

/// What a plugin failure (crash, timeout, bad reply) does to a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginPolicy {
    /// The launch fails cleanly (earlier isolators undone).
    Required,
    /// Logged and skipped: the launch goes on without the plugin.
    Optional,
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The name the `isolation` list uses, and its resource section's.
    pub name: String,
    /// The plugin's executable.
    pub path: PathBuf,
    /// Arguments passed to it (before the method, in exec mode).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `long-lived` (default) or `exec`.
    #[serde(default = "default_mode")]
    pub mode: PluginMode,
    /// `required` (default) or `optional`.
    #[serde(default = "default_policy")]
    pub policy: PluginPolicy,
    /// Per-call timeouts.
    #[serde(default)]
    pub timeouts: PluginTimeouts,
    /// Seconds between `gc` calls (long-lived mode); 0 turns gc off.
    #[serde(default = "default_gc")]
    pub gc_interval_seconds: f64,
}

fn default_mode() -> PluginMode {
    PluginMode::LongLived
}

fn default_policy() -> PluginPolicy {
    PluginPolicy::Required
}

fn default_gc() -> f64 {
    60.0
}

/// Seconds each kind of call may take before it fails with a timeout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginTimeouts {
    /// `handshake` (and the wait for a restarting plugin to be ready).
    pub handshake_seconds: f64,
    /// `prepare`, `isolate`, `update`, `recover`, `gc`.
    pub call_seconds: f64,
    /// `validate`, `usage`, `status`, `exit_limitation`, `watch`.
    pub query_seconds: f64,
    /// `cleanup`.
    pub cleanup_seconds: f64,
}

impl Default for PluginTimeouts {
    fn default() -> Self {
        PluginTimeouts {
            handshake_seconds: 5.0,
            call_seconds: 10.0,
            query_seconds: 2.0,
            cleanup_seconds: 10.0,
        }
    }
}

impl PluginTimeouts {
    /// The timeout of a call to `method`.
    pub fn of(&self, method: &str) -> Duration {
        let seconds = match method {
            "handshake" => self.handshake_seconds,
            "validate" | "usage" | "status" | "exit_limitation" | "watch" => self.query_seconds,
            "cleanup" => self.cleanup_seconds,
            _ => self.call_seconds,
        };
        Duration::from_secs_f64(seconds)
    }
}

impl PluginConfig {
    /// Checks what can be checked without starting the plugin.
    pub fn check(&self, built_in: &[&str]) -> Result<(), String> {
        let name_ok = self.name.len() <= 64
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !name_ok {
            return Err(format!(
                "plugins.name must be lowercase letters, digits, _ or - (starting with a letter, at most 64), got {:?}",
                self.name
            ));
        }
        if built_in.contains(&self.name.as_str()) {
            return Err(format!(
                "plugins.name {:?} is a built-in isolator's name",
                self.name
            ));
        }
        if !self.path.is_absolute() {
            return Err(format!(
                "plugins.{}.path must be absolute, got {}",
                self.name,
                self.path.display()
            ));
        }
        let t = &self.timeouts;
        for (field, value) in [
            ("handshake_seconds", t.handshake_seconds),
            ("call_seconds", t.call_seconds),
            ("query_seconds", t.query_seconds),
            ("cleanup_seconds", t.cleanup_seconds),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= 3600.0) {
                return Err(format!(
                    "plugins.{}.timeouts.{field} must be in (0, 3600], got {value}",
                    self.name
                ));
            }
        }
        if !(self.gc_interval_seconds.is_finite() && self.gc_interval_seconds >= 0.0) {
            return Err(format!(
                "plugins.{}.gc_interval_seconds must be >= 0, got {}",
                self.name, self.gc_interval_seconds
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> PluginConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let p = parse("name = \"pool\"\npath = \"/usr/lib/berth/pool\"\n");
        assert_eq!(p.mode, PluginMode::LongLived);
        assert_eq!(p.policy, PluginPolicy::Required);
        assert_eq!(p.timeouts.of("prepare"), Duration::from_secs(10));
        p.check(&["cpu"]).unwrap();
        let p = parse("name = \"cpu\"\npath = \"/x\"\nmode = \"exec\"\npolicy = \"optional\"\n");
        assert!(p.check(&["cpu"]).unwrap_err().contains("built-in"));
        let p = parse("name = \"Pool\"\npath = \"/x\"\n");
        assert!(p.check(&[]).unwrap_err().contains("plugins.name"));
        let p = parse("name = \"p\"\npath = \"rel\"\n");
        assert!(p.check(&[]).unwrap_err().contains("plugins.p.path"));
        let p = parse("name = \"p\"\npath = \"/x\"\n[timeouts]\ncall_seconds = 0\n");
        assert!(p.check(&[]).unwrap_err().contains("timeouts.call_seconds"));
        assert!(
            toml::from_str::<PluginConfig>("name = \"p\"\npath = \"/x\"\nmode = \"dll\"\n")
                .is_err()
        );
    }
}
