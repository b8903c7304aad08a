//! What a process the agent asks for runs as: the exec request (the body of
//! `POST /v1/containers/{id}/exec`, and the `request.json` the agent
//! writes for the exec helper, `berth-shim exec`, which reads it) and a
//! numeric user.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/containers/{id}/exec`: a further process in a running
/// container. Also the `request.json` the agent writes for the exec helper
/// (`berth-shim exec`), which reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Environment variables set over the container's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory inside the container (default: the
    /// container's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The user to run as (default: the container's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// `NAME|UID[:GROUP|GID]` resolved in the container's root
    /// filesystem (`-u NAME`); instead of `user`. The agent resolves it
    /// before writing the helper's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Keep stdin open, fed by the attached client (`-i`); the exec is
    /// started by `GET .../exec/{exec}/attach` (decision 0026).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Run on a pty opened inside the container (`-t`); attached as with
    /// `stdin`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

/// A numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub uid: u32,
    /// Defaults to the uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

impl User {
    /// Parses `UID[:GID]`.
    pub fn parse(value: &str) -> Option<User> {
        let (uid, gid) = match value.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid.parse().ok()?)),
            None => (value, None),
        };
        Some(User {
            uid: uid.parse().ok()?,
            gid,
        })
    }

    pub fn gid(&self) -> u32 {
        self.gid.unwrap_or(self.uid)
    }
}
