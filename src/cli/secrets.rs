//! `berth run --secret NAME=FILE`, `--secret-env NAME=VAR`,
//! `--config-file NAME=FILE:/dir/in/container` and `--config-change`
//! (decision 0034). The CLI reads each FILE itself, with the permissions
//! of the user running it, and sends the content as `value_base64`: the
//! agent (root) never opens a path on the CLI user's behalf, and the same
//! flags work against a remote agent.

use base64::Engine;
use clap::Args;

use super::{usage, Failure};
use crate::container::LaunchRequest;
use crate::secrets::{ConfigFileSource, SecretSource, SecretText, UpdateFileRequest};
// Names are checked by the agent; keep the path well-formed meanwhile.
use crate::wire::query::segment;

/// The largest file the CLI sends (the agent's limit too).
const MAX_FILE: u64 = crate::secrets::MAX_VALUE as u64;

#[derive(Debug, Args, Default)]
pub struct FileArgs {
    /// A secret: the content of FILE (read here) at /run/secrets/NAME on a
    /// tmpfs of the container's own (0400, never on disk); repeatable.
    #[arg(long = "secret", value_name = "NAME=FILE")]
    pub secrets: Vec<String>,
    /// Also put secret NAME in the environment variable VAR (then it is in
    /// the process's environment and the bundle's config.json; only on
    /// request); repeatable.
    #[arg(long = "secret-env", value_name = "NAME=VAR")]
    pub secret_env: Vec<String>,
    /// A config file: the content of FILE (read here) at DIR/NAME in a
    /// read-only dir updated atomically by `PUT .../configs/NAME`;
    /// repeatable.
    #[arg(long = "config-file", value_name = "NAME=FILE:DIR")]
    pub config_files: Vec<String>,
    /// What a config file update does: none (default), restart or
    /// signal:SIGNAL (e.g. signal:SIGHUP).
    #[arg(long = "config-change", value_name = "ACTION")]
    pub config_change: Option<String>,
}

fn read(flag: &str, path: &str) -> Result<String, Failure> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| usage(format!("invalid {flag}: {path}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| usage(format!("invalid {flag}: {path}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(usage(format!(
            "invalid {flag}: {path} is larger than {MAX_FILE} bytes"
        )));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    bytes.fill(0);
    Ok(encoded)
}

/// Adds the flags' fields to a launch request.
pub fn add_to_request(args: &FileArgs, request: &mut LaunchRequest) -> Result<(), Failure> {
    let mut secrets = Vec::new();
    for pair in &args.secrets {
        let Some((name, path)) = pair.split_once('=') else {
            return Err(usage(format!(
                "invalid --secret {pair:?}: expected NAME=FILE"
            )));
        };
        secrets.push(SecretSource {
            name: name.to_string(),
            value_base64: Some(SecretText(read("--secret", path)?)),
            file: None,
            env: None,
        });
    }
    for pair in &args.secret_env {
        let Some((name, var)) = pair.split_once('=') else {
            return Err(usage(format!(
                "invalid --secret-env {pair:?}: expected NAME=VAR"
            )));
        };
        let Some(secret) = secrets.iter_mut().find(|s| s.name == name) else {
            return Err(usage(format!(
                "invalid --secret-env {pair:?}: no --secret {name}"
            )));
        };
        secret.env = Some(var.to_string());
    }
    let mut configs = Vec::new();
    for spec in &args.config_files {
        let parsed = spec
            .split_once('=')
            .and_then(|(name, rest)| rest.rsplit_once(':').map(|(file, dir)| (name, file, dir)));
        let Some((name, file, dir)) = parsed else {
            return Err(usage(format!(
                "invalid --config-file {spec:?}: expected NAME=FILE:DIR"
            )));
        };
        configs.push(ConfigFileSource {
            name: name.to_string(),
            value_base64: Some(SecretText(read("--config-file", file)?)),
            file: None,
            path: dir.to_string(),
        });
    }
    request.secrets = secrets;
    request.config_files = configs;
    request.config_change = args.config_change.clone();
    Ok(())
}

/// `berth secret` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Replace a running container's secret with the content of FILE (read
    /// here); the container sees the old or the new value, never a part.
    Update {
        /// The container's id.
        id: String,
        /// The secret's name.
        name: String,
        /// The file holding the new value.
        file: String,
    },
}

/// `berth config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Replace a container's config file with the content of FILE (read
    /// here), swapped in atomically; then the container's --config-change.
    Update {
        /// The container's id.
        id: String,
        /// The config file's name.
        name: String,
        /// The file holding the new content.
        file: String,
    },
}

async fn update(
    client: &super::client::Client,
    flag: &str,
    kind: &str,
    id: &str,
    name: &str,
    file: &str,
) -> Result<i32, Failure> {
    let body = UpdateFileRequest {
        value_base64: Some(SecretText(read(flag, file)?)),
        file: None,
    };
    let path = format!("{}/{kind}/{}", super::container_path(id), segment(name));
    client
        .call(hyper::Method::PUT, &path, super::client::body(&body))
        .await?;
    Ok(0)
}

/// `berth secret update ID NAME FILE`.
pub async fn secret(
    client: &super::client::Client,
    command: SecretCommand,
) -> Result<i32, Failure> {
    match command {
        SecretCommand::Update { id, name, file } => {
            update(client, "secret update", "secrets", &id, &name, &file).await
        }
    }
}

/// `berth config update ID NAME FILE`.
pub async fn config(
    client: &super::client::Client,
    command: ConfigCommand,
) -> Result<i32, Failure> {
    match command {
        ConfigCommand::Update { id, name, file } => {
            update(client, "config update", "configs", &id, &name, &file).await
        }
    }
}
