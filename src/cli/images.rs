//! `berth pull`, `images`, `image inspect|prune|ls`, `rmi`, `load`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Subcommand;
use http_body_util::BodyExt;
use hyper::Method;

use super::client::{Client, ClientError};
use super::output::{out, outln};
use super::Failure;
use crate::images::pull::Progress;
use crate::size::format_size;
use crate::wire::images::{
    ImageListed, ImageRemoved, ImagesPruned, LoadRequest, Loaded, PullRequest,
};
use crate::wire::query::{segment, to_query, RemoveQuery};

/// `berth image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Print a stored image (config, layers, digests) as JSON.
    Inspect {
        /// The image reference.
        image: String,
    },
    /// Remove every image no container uses.
    Prune {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List stored images (as `berth images`).
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// An image reference as a URL path segment (percent-encoded).
fn image_path(image: &str) -> String {
    format!("/v1/images/{}", segment(image))
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// Per-layer progress lines, redrawn in place on a terminal.
struct Display {
    tty: bool,
    order: Vec<String>,
    lines: BTreeMap<String, String>,
    drawn: usize,
}

impl Display {
    fn set(&mut self, digest: &str, text: String) -> Result<(), Failure> {
        if !self.lines.contains_key(digest) {
            self.order.push(digest.to_owned());
        }
        self.lines.insert(digest.to_owned(), text);
        if self.tty {
            self.redraw()?;
        }
        Ok(())
    }

    fn redraw(&mut self) -> Result<(), Failure> {
        let mut text = String::new();
        if self.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for d in &self.order {
            text.push_str(&format!("\x1b[2K{}: {}\n", short(d), self.lines[d]));
        }
        self.drawn = self.order.len();
        out!("{text}");
        Ok(())
    }
}

/// `berth pull IMAGE`: streams the agent's progress.
pub async fn pull(client: &Client, image: &str) -> Result<i32, Failure> {
    let response = client
        .send(
            Method::POST,
            "/v1/images/pull",
            super::client::body(&PullRequest {
                image: image.to_string(),
            }),
        )
        .await?;
    let mut display = Display {
        tty: std::io::stdout().is_terminal(),
        order: Vec::new(),
        lines: BTreeMap::new(),
        drawn: 0,
    };
    let mut body = response.into_body();
    let mut pending = Vec::new();
    let mut result = Err(Failure {
        message: "the agent ended the pull without saying how it went".into(),
        code: 1,
    });
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Progress>(&line) else {
                continue;
            };
            match event {
                Progress::Resolved {
                    reference,
                    manifest,
                    layers,
                    layer_digests,
                } => {
                    outln!("{reference}: manifest {manifest}, {layers} layers");
                    if display.tty {
                        for digest in &layer_digests {
                            display.order.push(digest.clone());
                            display.lines.insert(digest.clone(), "waiting".into());
                        }
                        display.redraw()?;
                    }
                }
                Progress::LayerExists { digest, size } => {
                    if display.tty {
                        display.set(&digest, format!("already present ({})", format_size(size)))?;
                    } else {
                        outln!("{digest}: already present ({})", format_size(size));
                    }
                }
                Progress::Downloading { digest, done, size } => {
                    if display.tty {
                        let pct = (done * 100).checked_div(size).unwrap_or(100);
                        display.set(
                            &digest,
                            format!(
                                "downloading {} / {} ({pct}%)",
                                format_size(done),
                                format_size(size)
                            ),
                        )?;
                    }
                }
                Progress::LayerDone { digest, size } => {
                    if display.tty {
                        display.set(&digest, format!("verified ({})", format_size(size)))?;
                    } else {
                        outln!("{digest}: verified ({})", format_size(size));
                    }
                }
                Progress::Done {
                    reference,
                    manifest,
                } => {
                    outln!("pulled {reference} ({manifest})");
                    result = Ok(0);
                }
                Progress::Error { message } => {
                    result = Err(Failure { message, code: 1 });
                }
                Progress::Unpacked { reference, layers } => {
                    outln!("unpacked {reference} ({layers} layers)");
                }
            }
        }
    }
    result
}

/// `berth images [--json]`.
pub async fn list(client: &Client, json: bool) -> Result<i32, Failure> {
    let images: Vec<ImageListed> = client.json(Method::GET, "/v1/images", None).await?;
    if json {
        let images = super::output::json_value(&images);
        outln!("{}", serde_json::to_string_pretty(&images).expect("json"));
        return Ok(0);
    }
    let mut text = format!(
        "{:<60} {:<19} {:>10} {}\n",
        "IMAGE", "DIGEST", "SIZE", "IN USE"
    );
    for i in &images {
        text.push_str(&format!(
            "{:<60} {:<19} {:>10} {}\n",
            i.image.reference,
            format!("sha256:{}", short(&i.image.manifest_digest.to_string())),
            format_size(i.image.size),
            if i.in_use { "yes" } else { "no" }
        ));
    }
    out!("{text}");
    Ok(0)
}

/// `berth image ...`.
pub async fn image(client: &Client, command: ImageCommand) -> Result<i32, Failure> {
    match command {
        ImageCommand::Inspect { image } => {
            let value: serde_json::Value =
                client.json(Method::GET, &image_path(&image), None).await?;
            outln!("{}", serde_json::to_string_pretty(&value).expect("json"));
            Ok(0)
        }
        ImageCommand::Prune { json } => {
            let report: ImagesPruned = client.json(Method::POST, "/v1/images/prune", None).await?;
            if json {
                let report = super::output::json_value(&report);
                outln!("{}", serde_json::to_string_pretty(&report).expect("json"));
                return Ok(0);
            }
            for name in &report.removed {
                outln!("removed {name}");
            }
            outln!("freed {}", format_size(report.freed));
            Ok(0)
        }
        ImageCommand::Ls { json } => list(client, json).await,
    }
}

/// `berth rmi [--force] IMAGE...`: removes each; the first failure ends
/// the command.
pub async fn rmi(client: &Client, force: bool, images: &[String]) -> Result<i32, Failure> {
    for image in images {
        let path = to_query(&image_path(image), &RemoveQuery { force });
        let answer: ImageRemoved = client.json(Method::DELETE, &path, None).await?;
        for name in &answer.removed {
            outln!("removed {name}");
        }
    }
    Ok(0)
}

/// `berth load PATH`: the agent reads PATH (it runs on this host).
pub async fn load(client: &Client, path: &PathBuf) -> Result<i32, Failure> {
    let path = std::path::absolute(path).map_err(|e| Failure {
        message: format!("{}: {e}", path.display()),
        code: 1,
    })?;
    let answer: Loaded = client
        .json(
            Method::POST,
            "/v1/images/load",
            super::client::body(&LoadRequest { path }),
        )
        .await?;
    for name in &answer.loaded {
        outln!("loaded {name}");
    }
    Ok(0)
}
