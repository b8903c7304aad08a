//! The agent config's `[images]` table.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ensure::PullPolicy;
use super::pull::{Credentials, PullOptions};

/// `[images]`: registries, credentials, pull policy, store size.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesSettings {
    /// `HOST:PORT` of registries spoken to over plain HTTP (also
    /// `berth agent --insecure-registry`, repeatable).
    pub insecure_registries: Vec<String>,
    /// The pull policy of launches whose request names none.
    pub pull_policy: PullPolicy,
    /// Image GC removes unused images above this many bytes of blobs.
    pub max_store_bytes: Option<u64>,
    /// Credentials by registry `HOST[:PORT]` (never logged or recorded).
    pub credentials: BTreeMap<String, RegistryCredentials>,
    /// The registry of names without one (default `docker.io`).
    pub default_registry: Option<String>,
    /// Mirrors by registry, `HOST[:PORT]` each (TLS unless the mirror is
    /// also in `insecure_registries`), tried in order before the registry.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Extra CA certificates (PEM files) trusted for a registry or mirror
    /// `HOST[:PORT]`, on top of the bundled and system roots.
    pub ca_certs: BTreeMap<String, Vec<std::path::PathBuf>>,
    /// A docker-style `config.json` whose `auths.<host>.auth` (base64
    /// `user:password`) is used for registries the agent config has no
    /// credentials for. Read at each pull; none unless set.
    pub docker_config: Option<std::path::PathBuf>,
}

/// `[images.credentials."HOST:PORT"]`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryCredentials({}, <redacted>)", self.username)
    }
}

impl ImagesSettings {
    /// The registry client's options.
    pub fn pull_options(&self) -> PullOptions {
        PullOptions {
            insecure_registries: self.insecure_registries.clone(),
            credentials: self
                .credentials
                .iter()
                .map(|(registry, c)| {
                    (
                        registry.clone(),
                        Credentials {
                            username: c.username.clone(),
                            password: c.password.clone(),
                        },
                    )
                })
                .collect(),
            platform: None,
            default_registry: self.default_registry.clone(),
            mirrors: self
                .mirrors
                .iter()
                .map(|(registry, mirrors)| {
                    let hosts = mirrors.iter().map(|m| strip_scheme(m)).collect();
                    (registry.clone(), hosts)
                })
                .collect(),
            ca_certs: self
                .ca_certs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            docker_config: self.docker_config.clone(),
        }
    }
}

/// `https://mirror:5000/` -> `mirror:5000`.
fn strip_scheme(mirror: &str) -> String {
    let m = mirror
        .strip_prefix("https://")
        .or_else(|| mirror.strip_prefix("http://"))
        .unwrap_or(mirror);
    m.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_settings_parse() {
        let s: ImagesSettings = toml::from_str(
            "default_registry = \"r.example:5000\"\ndocker_config = \"/etc/berth/docker.json\"\n[mirrors]\n\"docker.io\" = [\"https://m1:5000/\", \"m2:5000\"]\n[ca_certs]\n\"r.example:5000\" = [\"/etc/berth/ca.pem\"]\n",
        )
        .unwrap();
        let o = s.pull_options();
        assert_eq!(o.mirrors["docker.io"], vec!["m1:5000", "m2:5000"]);
        assert_eq!(o.ca_certs["r.example:5000"].len(), 1);
        assert_eq!(
            o.parse_reference("app:v1").unwrap().to_string(),
            "r.example:5000/app:v1"
        );
        assert!(o.docker_config.is_some());
    }

    #[test]
    fn parses_and_redacts() {
        let s: ImagesSettings = toml::from_str(
            "insecure_registries = [\"127.0.0.1:5000\"]\npull_policy = \"never\"\n[credentials.\"r.example:443\"]\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        assert_eq!(s.pull_policy, PullPolicy::Never);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            s.pull_options().credentials["r.example:443"].password,
            "hunter2"
        );
    }
}
