//! `berth volume create|ls|inspect|rm|prune`, and `run`'s `-v`/`--mount`.

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::json;

use super::client::Client;
use super::output::{out, outln};
use super::{usage, Failure};
use crate::size::{format_size, parse_size};
use crate::volumes::request::{parse_mount_flag, parse_volume_flag};

/// `berth run`'s mount flags.
#[derive(Debug, Args, Default)]
pub struct MountArgs {
    /// Mount a host path (HOST absolute, under the agent's
    /// --allow-host-path) or a named volume at CONTAINER (repeatable).
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "HOST|NAME:CONTAINER[:ro|rw]"
    )]
    pub volumes: Vec<String>,
    /// Mount as `type=bind|volume,src=...,dst=...[,readonly]` (repeatable).
    #[arg(long = "mount", value_name = "type=bind,src=,dst=[,readonly]")]
    pub mounts: Vec<String>,
}

impl MountArgs {
    /// The request's `mounts`, `-v` ones first.
    pub fn to_json(&self) -> Result<Option<serde_json::Value>, Failure> {
        let mut out = Vec::new();
        for v in &self.volumes {
            out.push(parse_volume_flag(v).map_err(|e| usage(format!("invalid -v {v:?}: {e}")))?);
        }
        for m in &self.mounts {
            out.push(
                parse_mount_flag(m).map_err(|e| usage(format!("invalid --mount {m:?}: {e}")))?,
            );
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::to_value(out).expect("json")))
    }
}

/// `berth volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume (data under the agent's work dir).
    Create {
        /// The name: 1-64 of [A-Za-z0-9_.-].
        name: String,
        /// Limit its size (a loop filesystem; writes past it fail with ENOSPC).
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// Let several containers mount it at once.
        #[arg(long)]
        shared: bool,
    },
    /// List volumes.
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print volumes as JSON (size, usage, users).
    Inspect {
        /// The volumes' names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their data (refused while a container uses one).
    Rm {
        /// The volumes' names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no container uses.
    Prune,
}

fn volume_path(name: &str) -> Result<String, Failure> {
    crate::volumes::store::check_name(name).map_err(|e| usage(e.to_string()))?;
    Ok(format!("/v1/volumes/{name}"))
}

/// `berth volume ...`.
pub async fn volume(client: &Client, command: VolumeCommand) -> Result<i32, Failure> {
    match command {
        VolumeCommand::Create { name, size, shared } => {
            let mut body = json!({ "name": name, "shared": shared });
            if let Some(size) = size {
                let bytes = parse_size(&size).map_err(|e| usage(format!("invalid --size: {e}")))?;
                body["size"] = bytes.into();
            }
            let volume: serde_json::Value =
                client.json(Method::POST, "/v1/volumes", Some(body)).await?;
            outln!("{}", volume["name"].as_str().unwrap_or(&name));
        }
        VolumeCommand::Ls { json } => {
            let volumes: Vec<serde_json::Value> =
                client.json(Method::GET, "/v1/volumes", None).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&volumes).expect("json"));
                return Ok(0);
            }
            let mut text = format!(
                "{:<32} {:>10} {:>10} {:<6} {}\n",
                "NAME", "SIZE", "USED", "SHARED", "USED BY"
            );
            for v in &volumes {
                let size = v["size"]
                    .as_u64()
                    .map(format_size)
                    .unwrap_or_else(|| "-".into());
                let used = v["used_bytes"]
                    .as_u64()
                    .map(format_size)
                    .unwrap_or_else(|| "?".into());
                let users: Vec<&str> = v["used_by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str())
                    .collect();
                text.push_str(&format!(
                    "{:<32} {:>10} {:>10} {:<6} {}\n",
                    v["name"].as_str().unwrap_or("?"),
                    size,
                    used,
                    if v["shared"].as_bool().unwrap_or(false) {
                        "yes"
                    } else {
                        "no"
                    },
                    if users.is_empty() {
                        "-".to_string()
                    } else {
                        users.join(",")
                    }
                ));
            }
            out!("{text}");
        }
        VolumeCommand::Inspect { names } => {
            let mut all = Vec::new();
            for name in &names {
                let v: serde_json::Value =
                    client.json(Method::GET, &volume_path(name)?, None).await?;
                all.push(v);
            }
            let value = if all.len() == 1 {
                all.remove(0)
            } else {
                all.into()
            };
            outln!("{}", serde_json::to_string_pretty(&value).expect("json"));
        }
        VolumeCommand::Rm { names } => {
            for name in &names {
                client
                    .call(Method::DELETE, &volume_path(name)?, None)
                    .await?;
                outln!("{name}");
            }
        }
        VolumeCommand::Prune => {
            let answer: serde_json::Value =
                client.json(Method::POST, "/v1/volumes/prune", None).await?;
            for name in answer["removed"].as_array().into_iter().flatten() {
                outln!("removed {}", name.as_str().unwrap_or("?"));
            }
        }
    }
    Ok(0)
}
