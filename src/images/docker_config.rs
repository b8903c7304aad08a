//! Credentials from a docker-style `config.json`:
//! `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}` (also
//! `username`/`password` fields, and keys written as URLs, as
//! `docker login` does for Docker Hub). Read at each pull, so a new
//! `docker login` is seen without restarting the agent; never logged.

use std::path::Path;

use base64::Engine as _;

use super::pull::Credentials;
use super::reference::{DOCKER_HUB, DOCKER_HUB_API};

/// The credentials `config.json` at `path` holds for `host`, if any. A
/// missing or malformed file holds none (the pull then goes without and
/// the registry's 401 says so).
pub fn lookup(path: &Path, host: &str) -> Option<Credentials> {
    let data = std::fs::read(path).ok()?;
    let config: serde_json::Value = serde_json::from_slice(&data).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let hub = host == DOCKER_HUB || host == DOCKER_HUB_API || host == "index.docker.io";
    for (key, entry) in auths {
        let key_host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let matches = key_host == host
            || (hub && [DOCKER_HUB, DOCKER_HUB_API, "index.docker.io"].contains(&key_host));
        if !matches {
            continue;
        }
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()?;
            let raw = String::from_utf8(raw).ok()?;
            let (username, password) = raw.split_once(':')?;
            return Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|v| v.as_str()),
            entry.get("password").and_then(|v| v.as_str()),
        ) {
            return Some(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_by_host_and_hub_url_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD;
        let config = serde_json::json!({"auths": {
            "127.0.0.1:5000": {"auth": b64.encode("u:p:w")},
            "https://index.docker.io/v1/": {"auth": b64.encode("hub:pw")},
        }});
        std::fs::write(&path, config.to_string()).unwrap();
        let c = lookup(&path, "127.0.0.1:5000").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        assert_eq!(lookup(&path, "docker.io").unwrap().username, "hub");
        assert!(lookup(&path, "other:5000").is_none());
        assert!(lookup(&dir.path().join("none.json"), "127.0.0.1:5000").is_none());
    }
}
