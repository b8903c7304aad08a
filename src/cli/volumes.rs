//! `berth volume create|ls|inspect|rm|prune`, and `run`'s `-v`/`--mount`.

use clap::{Args, Subcommand};
use hyper::Method;

use super::client::Client;
use super::output::{out, outln};
use super::{usage, Failure};
use crate::size::{format_size, parse_size};
use crate::volumes::request::{parse_mount_flag, parse_volume_flag};
use crate::volumes::MountRequest;
use crate::wire::volumes::{CreateVolume, Volume, VolumesPruned};

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
    pub fn to_mounts(&self) -> Result<Vec<MountRequest>, Failure> {
        let mut out = Vec::new();
        for v in &self.volumes {
            out.push(parse_volume_flag(v).map_err(|e| usage(format!("invalid -v {v:?}: {e}")))?);
        }
        for m in &self.mounts {
            out.push(
                parse_mount_flag(m).map_err(|e| usage(format!("invalid --mount {m:?}: {e}")))?,
            );
        }
        Ok(out)
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
            let size = size
                .map(|size| parse_size(&size).map_err(|e| usage(format!("invalid --size: {e}"))))
                .transpose()?;
            let body = CreateVolume { name, size, shared };
            let volume: Volume = client
                .json(Method::POST, "/v1/volumes", super::client::body(&body))
                .await?;
            outln!("{}", volume.name);
        }
        VolumeCommand::Ls { json } => {
            let volumes: Vec<Volume> = client.json(Method::GET, "/v1/volumes", None).await?;
            if json {
                let volumes = super::output::json_value(&volumes);
                outln!("{}", serde_json::to_string_pretty(&volumes).expect("json"));
                return Ok(0);
            }
            let mut text = format!(
                "{:<32} {:>10} {:>10} {:<6} {}\n",
                "NAME", "SIZE", "USED", "SHARED", "USED BY"
            );
            for v in &volumes {
                let size = v.size.map(format_size).unwrap_or_else(|| "-".into());
                let used = v.used_bytes.map(format_size).unwrap_or_else(|| "?".into());
                text.push_str(&format!(
                    "{:<32} {:>10} {:>10} {:<6} {}\n",
                    v.name,
                    size,
                    used,
                    if v.shared { "yes" } else { "no" },
                    if v.used_by.is_empty() {
                        "-".to_string()
                    } else {
                        v.used_by.join(",")
                    }
                ));
            }
            out!("{text}");
        }
        VolumeCommand::Inspect { names } => {
            let mut all = Vec::new();
            for name in &names {
                let v: Volume = client.json(Method::GET, &volume_path(name)?, None).await?;
                all.push(v);
            }
            let value = if all.len() == 1 {
                super::output::json_value(&all[0])
            } else {
                super::output::json_value(&all)
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
            let answer: VolumesPruned =
                client.json(Method::POST, "/v1/volumes/prune", None).await?;
            for name in &answer.removed {
                outln!("removed {name}");
            }
        }
    }
    Ok(0)
}
