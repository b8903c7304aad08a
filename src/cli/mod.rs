//! The `berth` command line: talks to the agent's API.

pub mod arena;
mod attach;
mod attach_first;
pub mod client;
mod events;
pub use images::ImageCommand;
mod images;
mod logs_stream;
mod output;
mod plugins_table;
mod ps_filter;
mod secrets;
mod security;
mod sig_proxy;
mod stats;
mod stdin_send;
mod table;
mod time_arg;
pub mod volumes;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::json;

use std::collections::BTreeMap;

use crate::bundle::capabilities::CapabilityChanges;
use crate::config::LogMode;
use crate::container::{
    ContainerView as Container, ExecRequest, LaunchRequest, LogOverrides, State, User,
};
use crate::health::HealthCheck;
use crate::images::PullPolicy;
use crate::size::parse_size;
use crate::wire::control::MAX_STOP_TIMEOUT;
use crate::wire::files::Entry;
use crate::wire::info::Info;
use crate::wire::query::{segment, to_query, FilesQuery, LogsQuery, RemoveQuery};
use crate::wire::{ExecCreated, ExecResult, GcReport, KillRequest, StopRequest};
use client::{Client, ClientError};
use output::{out, outln};

/// Commands that talk to the agent.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a container; without -d, print its output and exit with its code.
    #[command(
        after_help = "`berth run [OPTIONS] IMAGE [ARGS...]` runs an image (ARGS replace \
its Cmd; `IMAGE -- ARGS...` too); `berth run [OPTIONS] -- CMD...` runs a host command on the \
host's root, read-only; with `--rootfs DIR`, every word after the options is the command."
    )]
    Run(Box<RunArgs>),
    /// List containers (running ones unless -a).
    Ps {
        /// Include ended containers.
        #[arg(short, long)]
        all: bool,
        /// Print a JSON array of container objects.
        #[arg(long)]
        json: bool,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
        /// Show only containers matching state=S, name=ID or label=K[=V]
        /// (repeatable: the same key matches any of its values, different
        /// keys all must match). A state filter includes ended ones.
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Print containers as JSON (one: its object; several: an array).
    Inspect {
        /// The containers' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Wait for containers to end; print each one's exit code and exit
    /// with the last one's.
    Wait {
        /// The containers' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal to containers (default KILL).
    Kill {
        /// The signal: a name (TERM, SIGTERM) or a number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// The containers' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove a container and its sandbox.
    Rm {
        /// Kill it first if it runs.
        #[arg(short, long)]
        force: bool,
        /// The containers' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a container's output.
    Logs {
        /// Which output: stdout, stderr, or all (both interleaved in
        /// arrival order, on stdout). Default: stdout to stdout and
        /// stderr to stderr.
        #[arg(long, value_parser = ["stdout", "stderr", "all"])]
        stream: Option<String>,
        /// Same as --stream stderr.
        #[arg(long, conflicts_with = "stream")]
        stderr: bool,
        /// Keep printing until the container ends.
        #[arg(short, long)]
        follow: bool,
        /// Print only the last N lines (`all`: everything).
        #[arg(short = 'n', long, value_name = "N", value_parser = parse_tail)]
        tail: Option<Tail>,
        /// Prefix each line with its arrival time (RFC 3339).
        #[arg(short, long)]
        timestamps: bool,
        /// Print only what arrived at or after TIME: RFC 3339 with or
        /// without a zone (local time), a date, a duration before now
        /// (10m, 2h) or epoch seconds.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Print only what arrived before or at TIME (same forms as
        /// --since); with -f, stop once TIME has passed.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// `raw` (the bytes as written) or `jsonl`: one JSON object per
        /// line with time, stream, log and the container's id, name and
        /// labels, all on stdout (both streams unless --stream says).
        #[arg(long, value_parser = ["raw", "jsonl"], default_value = "raw")]
        format: String,
        /// The container's id (or name).
        id: String,
    },
    /// Browse a container's sandbox.
    #[command(subcommand)]
    Files(FilesCommand),
    /// Show containers' resource usage: a live table, like `docker stats`.
    Stats {
        /// Print one sample and return.
        #[arg(long)]
        no_stream: bool,
        /// Print one sample as a JSON array of stats objects.
        #[arg(long)]
        json: bool,
        /// Containers to show (default: all running).
        ids: Vec<String>,
    },
    /// Change a running container's resources; unset flags keep their value.
    Update {
        /// The container's id.
        id: String,
        #[command(flatten)]
        resources: ResourceArgs,
    },
    /// Remove the sandboxes of ended containers that are past their age.
    Gc {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what the agent is and offers.
    Info {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the grace period; print
    /// each id once it has ended.
    Stop {
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(
            short = 't',
            long = "time",
            value_name = "SECS",
            default_value_t = 10.0
        )]
        time: f64,
        /// The containers' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run a command in a running container, confined as its first
    /// process; print its output and exit with its code.
    Exec {
        /// An environment variable (repeatable).
        #[arg(short, long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// The working directory inside the container (absolute).
        #[arg(short, long, value_name = "DIR")]
        workdir: Option<String>,
        /// The user to run as (default: the container's): UID[:GID] or a
        /// name (NAME[:GROUP]) looked up in the container's root filesystem.
        #[arg(short, long, value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// The container's id.
        id: String,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
        /// Keep stdin open and send it to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Run the command on a pty opened inside the container; the local
        /// terminal is put in raw mode while attached.
        #[arg(short, long)]
        tty: bool,
    },
    /// Attach to a running container's first process: its output from now
    /// on, and this stdin to it if it was started with -i. Ends when the
    /// container does (with its exit code) or on a signal, which leaves
    /// the container running; the end of this stdin does not close the
    /// container's.
    Attach {
        /// The container's id.
        id: String,
    },
    /// Restart containers: stop each running one (as `stop`), then start
    /// it again with the same command, id, sandbox and logs; print each id.
    Restart {
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(
            short = 't',
            long = "time",
            value_name = "SECS",
            default_value_t = 10.0
        )]
        time: f64,
        /// The containers' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Pull an image into the agent's store, showing progress per layer.
    Pull {
        /// The image reference: NAME[:TAG][@DIGEST].
        image: String,
    },
    /// List stored images.
    Images {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Manage stored images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Remove images (refused while a container uses one, unless --force).
    Rmi {
        /// Remove even if containers use it.
        #[arg(short, long)]
        force: bool,
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load images from an OCI layout directory or archive, or a `docker
    /// save` tarball.
    Load {
        /// The directory or archive (read by the agent on this host).
        #[arg(short, long, value_name = "PATH")]
        input: PathBuf,
    },
    /// Update a container's secrets.
    #[command(subcommand)]
    Secret(secrets::SecretCommand),
    /// Update a container's config files.
    #[command(subcommand)]
    Config(secrets::ConfigCommand),
    /// Manage named volumes.
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Follow the agent's events (containers, images, the agent), one line
    /// each; `--since` replays what the agent kept.
    Events(events::EventsArgs),
}

/// `berth files` subcommands.
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// List a directory of the sandbox (default: its top).
    Ls {
        /// The container's id.
        id: String,
        /// A directory, relative to the sandbox (`/` is its root).
        path: Option<String>,
        /// Print a JSON array of entry objects (type, mode, size, mtime, name).
        #[arg(long)]
        json: bool,
    },
    /// Print a file of the sandbox.
    Cat {
        /// The container's id.
        id: String,
        /// A file, relative to the sandbox (`/` is its root).
        path: String,
    },
}

/// `berth run`'s flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The container's id (default: random).
    #[arg(long = "name", value_name = "ID")]
    pub name: Option<String>,
    /// A root filesystem directory (default: the host's, read-only).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// A specific net_cls secondary handle.
    #[arg(long, value_name = "N")]
    pub net_cls_handle: Option<u32>,
    /// Pass a host device node through (repeatable).
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:rwm]")]
    pub devices: Vec<String>,
    /// Rotate each log file at this size.
    #[arg(long, value_name = "SIZE")]
    pub log_max_size: Option<String>,
    /// Log files kept per stream.
    #[arg(long, value_name = "N")]
    pub log_max_files: Option<u32>,
    /// Compress rotated log files.
    #[arg(long)]
    pub log_compress: bool,
    /// What to do when output outpaces the disk: block (default) or drop.
    #[arg(long, value_name = "MODE")]
    pub log_mode: Option<String>,
    /// An environment variable.
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The user to run as: UID[:GID], or a name (NAME[:GROUP]) looked up
    /// in the root filesystem's /etc/passwd and /etc/group.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// The isolators to use, comma-separated (default: all the agent offers).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub isolation: Option<Vec<String>>,
    /// The network: host (default), none (loopback only) or ns:PATH.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Add a capability to the default set (NET_RAW, CAP_NET_RAW, ALL); repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (or ALL); repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Size of the container's /tmp tmpfs (counted against its memory).
    #[arg(long, value_name = "SIZE")]
    pub tmp_size: Option<String>,
    /// User namespace: host (default, none) or auto (an unprivileged id
    /// range of its own).
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// A security option: seccomp=default, seccomp=unconfined or
    /// seccomp=FILE (a Docker or OCI seccomp profile, read here).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Print the id and return at once.
    #[arg(short, long)]
    pub detach: bool,
    /// Run a tiny init as the container's pid 1: it forwards signals to
    /// the command and reaps orphaned processes (a pid 1 without it ignores
    /// TERM and INT unless it handles them).
    #[arg(long)]
    pub init: bool,
    /// In the foreground, forward SIGINT, SIGTERM and SIGHUP to the
    /// container (default true; --sig-proxy=false to turn off). A second
    /// SIGINT (Ctrl-C again) sends KILL.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Keep the command's stdin open and send this one to it (a pipe; EOF
    /// when this stdin ends). With -d, `berth attach` sends it later.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command on a pty opened inside the container; in the
    /// foreground the local terminal is in raw mode meanwhile.
    #[arg(short, long)]
    pub tty: bool,
    /// The image to run (`name[:tag][@digest]`); with --rootfs, the
    /// command.
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    /// The image's arguments (replacing its Cmd); with --rootfs, the
    /// command's.
    #[arg(value_name = "ARGS", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// The command and its arguments (with an image: its arguments).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Remove the container once it has ended (by the agent, also if the
    /// container ends while no agent runs).
    #[arg(long)]
    pub rm: bool,
    /// Restart policy: no (default), on-failure[:N] (at most N times) or
    /// always; restarts back off exponentially. A user's stop or kill
    /// holds the policy off until `berth restart`.
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// A label K=V (repeatable), shown by inspect and filterable in ps.
    #[arg(short = 'l', long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub health: HealthArgs,
    /// Replace the image's Entrypoint (and clear its Cmd); "" for none.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// When to pull the image: missing (agent default), always or never.
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    /// Keep an image's or a --rootfs root read-only (default: the container
    /// writes to a layer of its own, removed with it).
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub files: secrets::FileArgs,
    #[command(flatten)]
    pub mounts: volumes::MountArgs,
}

/// `berth run`'s health check flags (Docker's names; Mesos semantics).
#[derive(Debug, Args, Default)]
pub struct HealthArgs {
    /// Health check: a shell command run in the container (as an exec);
    /// healthy when it exits 0.
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Health check: GET http://127.0.0.1:PORT/PATH from inside the
    /// container's network namespace; healthy on 2xx or 3xx.
    #[arg(long, value_name = "PORT/PATH")]
    pub health_http: Option<String>,
    /// Health check: connect to 127.0.0.1:PORT from inside the container's
    /// network namespace.
    #[arg(long, value_name = "PORT")]
    pub health_tcp: Option<u16>,
    /// Time between checks (500ms, 1s, 2m; default 30s).
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// A check taking longer fails (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures that make it unhealthy (default 3).
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Failures in this time after the start do not count until the first
    /// success (default 0s).
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Once unhealthy: report (default), kill (ends with reason unhealthy)
    /// or restart.
    #[arg(long, value_name = "ACTION", value_parser = ["report", "kill", "restart"])]
    pub health_on_unhealthy: Option<String>,
}

impl HealthArgs {
    /// The launch request's `health` check, if one is asked for (the
    /// settings left out get the agent's defaults, as the agent reads it).
    fn to_check(&self) -> Result<Option<HealthCheck>, Failure> {
        let mut check = serde_json::Map::new();
        if let Some(cmd) = &self.health_cmd {
            check.insert("cmd".into(), json!(["/bin/sh", "-c", cmd]));
        }
        if let Some(http) = &self.health_http {
            check.insert("http".into(), http.clone().into());
        }
        if let Some(port) = self.health_tcp {
            check.insert("tcp".into(), port.into());
        }
        let probes = check.len();
        for (flag, key, value) in [
            ("--health-interval", "interval", &self.health_interval),
            ("--health-timeout", "timeout", &self.health_timeout),
            (
                "--health-start-period",
                "start_period",
                &self.health_start_period,
            ),
        ] {
            if let Some(value) = value {
                value
                    .parse::<crate::health::HealthDuration>()
                    .map_err(|e| usage(format!("invalid {flag}: {e}")))?;
                check.insert(key.into(), value.clone().into());
            }
        }
        if let Some(retries) = self.health_retries {
            check.insert("retries".into(), retries.into());
        }
        if let Some(action) = &self.health_on_unhealthy {
            check.insert("on_unhealthy".into(), action.clone().into());
        }
        match probes {
            0 if check.is_empty() => Ok(None),
            0 => Err(usage(
                "the --health-* settings need a check: --health-cmd, --health-http or --health-tcp",
            )),
            1 => serde_json::from_value(check.into())
                .map(Some)
                .map_err(|e| usage(format!("invalid health check: {e}"))),
            _ => Err(usage(
                "give one of --health-cmd, --health-http and --health-tcp",
            )),
        }
    }
}

impl RunArgs {
    /// The image, if one is run, and the command or the image's arguments.
    fn image_and_command(&self) -> Result<(Option<String>, Vec<String>), Failure> {
        let positional: Vec<String> = self.image.iter().chain(&self.args).cloned().collect();
        if self.rootfs.is_some() {
            let command: Vec<String> = positional.into_iter().chain(self.command.clone()).collect();
            if command.is_empty() {
                return Err(usage(
                    "with --rootfs, give the command: --rootfs DIR -- CMD...",
                ));
            }
            return Ok((None, command));
        }
        match &self.image {
            Some(image) => Ok((
                Some(image.clone()),
                self.args.iter().chain(&self.command).cloned().collect(),
            )),
            None if self.command.is_empty() => Err(usage(
                "give an IMAGE [ARGS...] to run, or -- CMD... for a host command",
            )),
            None => Ok((None, self.command.clone())),
        }
    }
}

/// A CLI failure: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        if let ClientError::Output(e) = &e {
            return output::output_failure(e);
        }
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 2,
    }
}

/// Runs a CLI command; returns the process exit code.
pub async fn run(socket: PathBuf, command: Command) -> Result<i32, Failure> {
    let client = Client::new(&socket);
    match command {
        Command::Run(args) => run_container(&client, *args).await,
        Command::Ps {
            all,
            json,
            quiet,
            filter,
        } => {
            let filter = ps_filter::Filter::parse(&filter).map_err(usage)?;
            let containers: Vec<Container> =
                client.json(Method::GET, "/v1/containers", None).await?;
            let all = all || filter.has_state();
            let shown: Vec<&Container> = containers
                .iter()
                .filter(|c| all || c.state != State::Exited)
                .filter(|c| filter.matches(c))
                .collect();
            if quiet {
                for container in &shown {
                    outln!("{}", container.id);
                }
            } else if json {
                outln!("{}", serde_json::to_string_pretty(&shown).expect("json"));
            } else {
                out!("{}", table::containers(&shown));
            }
            Ok(0)
        }
        Command::Inspect { ids } => {
            let mut found = Vec::new();
            let mut failed = Failed::default();
            for id in &ids {
                match client
                    .json::<Container>(Method::GET, &container_path(id), None)
                    .await
                {
                    Ok(container) => found.push(container),
                    Err(e) => failed.note(e)?,
                }
            }
            let shown = match (ids.len(), found.len()) {
                (_, 0) => None,
                (1, _) => found.pop().map(|c| output::json_value(&c)),
                _ => Some(output::json_value(&found)),
            };
            if let Some(shown) = shown {
                outln!("{}", serde_json::to_string_pretty(&shown).expect("json"));
            }
            failed.result(0)
        }
        Command::Wait { ids } => {
            let mut failed = Failed::default();
            let mut last = 0;
            for id in &ids {
                match client
                    .json::<Container>(Method::GET, &format!("{}/wait", container_path(id)), None)
                    .await
                {
                    Ok(container) => {
                        last = container.shell_exit_code();
                        outln!("{last}");
                    }
                    Err(e) => failed.note(e)?,
                }
            }
            failed.result(last)
        }
        Command::Kill { signal, ids } => {
            let mut failed = Failed::default();
            for id in &ids {
                let sent = client
                    .call(
                        Method::POST,
                        &format!("{}/kill", container_path(id)),
                        client::body(&KillRequest {
                            signal: signal.clone(),
                        }),
                    )
                    .await;
                if let Err(e) = sent {
                    failed.note(e)?;
                }
            }
            failed.result(0)
        }
        Command::Rm { force, ids } => {
            let mut failed = Failed::default();
            for id in ids {
                let path = to_query(&container_path(&id), &RemoveQuery { force });
                match client.call(Method::DELETE, &path, None).await {
                    Ok(_) => outln!("{id}"),
                    Err(e) => failed.note(e)?,
                }
            }
            failed.result(0)
        }
        Command::Logs {
            stream,
            stderr,
            follow,
            tail,
            timestamps,
            since,
            until,
            format,
            id,
        } => {
            let stream = if stderr {
                Some("stderr".to_string())
            } else {
                stream
            };
            let mut query = LogsQuery {
                follow,
                timestamps,
                ..Default::default()
            };
            if let Some(Tail::Lines(lines)) = tail {
                query.tail = Some(lines);
            }
            if let Some(since) = &since {
                let time = time_arg::parse_time(since, chrono::Utc::now())
                    .map_err(|e| usage(format!("invalid --since {e}")))?;
                query.since = Some(time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            }
            if let Some(until) = &until {
                let time = time_arg::parse_time(until, chrono::Utc::now())
                    .map_err(|e| usage(format!("invalid --until {e}")))?;
                query.until = Some(time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            }
            let base = format!("{}/logs", container_path(&id));
            if format == "jsonl" {
                query.stream = Some(stream.unwrap_or_else(|| "all".into()));
                query.format = Some("jsonl".into());
                let path = to_query(&base, &query);
                logs_stream::stream_log(&client, &path, &mut tokio::io::stdout()).await?;
                return Ok(0);
            }
            match stream.as_deref() {
                Some("stderr") => {
                    query.stream = stream.clone();
                    let path = to_query(&base, &query);
                    logs_stream::stream_log(&client, &path, &mut tokio::io::stderr()).await?;
                }
                Some(_) => {
                    query.stream = stream.clone();
                    let path = to_query(&base, &query);
                    logs_stream::stream_log(&client, &path, &mut tokio::io::stdout()).await?;
                }
                None => {
                    // Each stream to its own fd, as `docker logs` does,
                    // in the order the lines arrived.
                    query.stream = Some("all".into());
                    query.frames = true;
                    let path = to_query(&base, &query);
                    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
                    logs_stream::stream_framed(&client, &path, &mut stdout, &mut stderr).await?;
                }
            }
            Ok(0)
        }
        Command::Files(FilesCommand::Ls { id, path, json }) => {
            let query = FilesQuery {
                path: Some(path.unwrap_or_default()),
            };
            let path = to_query(&format!("{}/files", container_path(&id)), &query);
            let entries: Vec<Entry> = client.json(Method::GET, &path, None).await?;
            if json {
                let entries = output::json_value(&entries);
                outln!("{}", serde_json::to_string_pretty(&entries).expect("json"));
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = entries
                .into_iter()
                .map(|e| vec![e.kind, e.mode, e.size.to_string(), e.mtime, e.name])
                .collect();
            out!(
                "{}",
                table::render(&["TYPE", "MODE", "SIZE", "MODIFIED", "NAME"], &rows)
            );
            Ok(0)
        }
        Command::Files(FilesCommand::Cat { id, path }) => {
            let query = FilesQuery { path: Some(path) };
            let path = to_query(&format!("{}/files/content", container_path(&id)), &query);
            client.stream_to(&path, &mut tokio::io::stdout()).await?;
            Ok(0)
        }
        Command::Stats {
            no_stream,
            json,
            ids,
        } => stats::run(&client, ids, no_stream, json).await,
        Command::Update { id, resources } => {
            let update = resources.to_json()?;
            if update.is_empty() {
                return Err(usage("nothing to update: give at least one resource flag"));
            }
            let path = format!("{}/resources", container_path(&id));
            let container: Container = client
                .json(Method::PATCH, &path, client::body(&update))
                .await?;
            outln!("{}", container.id);
            Ok(0)
        }
        Command::Gc { json } => {
            let report: GcReport = client.json(Method::POST, "/v1/gc", None).await?;
            if json {
                let report = output::json_value(&report);
                outln!("{}", serde_json::to_string_pretty(&report).expect("json"));
                return Ok(0);
            }
            outln!(
                "disk usage {:.1}%: sandboxes may stay {:.0}s after their container ended; removed {}",
                report.disk_usage * 100.0,
                report.max_age_seconds,
                report.removed.len()
            );
            for entry in &report.removed {
                outln!(
                    "{}\tended {}\t{:.0}s ago",
                    entry.id,
                    entry
                        .finished_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    entry.age_seconds
                );
            }
            Ok(0)
        }
        Command::Stop { time, ids } => stop_each(&client, "stop", time, ids).await,
        Command::Restart { time, ids } => stop_each(&client, "restart", time, ids).await,
        Command::Exec {
            env,
            workdir,
            user,
            id,
            command,
            interactive,
            tty,
        } => {
            let mut request = ExecRequest {
                command,
                env: env_vars(&env)?,
                workdir,
                ..Default::default()
            };
            if let Some(user) = &user {
                (request.user, request.user_name) = user_arg(user)?;
            }
            let path = format!("{}/exec", container_path(&id));
            if interactive || tty {
                request.stdin = interactive;
                request.tty = tty;
                let created: ExecCreated = client
                    .json(Method::POST, &path, client::body(&request))
                    .await?;
                let options = attach::Attach {
                    stdin: interactive,
                    tty,
                };
                return Ok(attach::attach(client.socket(), &created.attach, options).await?);
            }
            let result: ExecResult = client
                .json(Method::POST, &path, client::body(&request))
                .await?;
            out!("{}", result.stdout);
            {
                use std::io::Write;
                let mut err = std::io::stderr();
                let _ = err.write_all(result.stderr.as_bytes());
                if let Some(error) = &result.error {
                    let _ = writeln!(err, "berth: {error}");
                }
            }
            Ok(result.exit_code)
        }
        Command::Pull { image } => images::pull(&client, &image).await,
        Command::Images { json } => images::list(&client, json).await,
        Command::Image(command) => images::image(&client, command).await,
        Command::Rmi { force, images } => images::rmi(&client, force, &images).await,
        Command::Load { input } => images::load(&client, &input).await,
        Command::Secret(command) => secrets::secret(&client, command).await,
        Command::Config(command) => secrets::config(&client, command).await,
        Command::Volume(command) => volumes::volume(&client, command).await,
        Command::Info { json } => {
            let info: Info = client.json(Method::GET, "/v1/info", None).await?;
            if json {
                let info = output::json_value(&info);
                outln!("{}", serde_json::to_string_pretty(&info).expect("json"));
            } else {
                out!("{}", table::info(&info));
            }
            Ok(0)
        }
        Command::Attach { id } => attach_first::attach_first(&client, &id).await,
        Command::Events(args) => events::events(&client, args).await,
    }
}

/// `--tail`: a number of lines or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    All,
    Lines(u64),
}

fn parse_tail(value: &str) -> Result<Tail, String> {
    match value {
        "all" => Ok(Tail::All),
        n => n
            .parse()
            .map(Tail::Lines)
            .map_err(|_| format!("{value:?}: expected a number of lines or all")),
    }
}

pub(crate) fn container_path(id: &str) -> String {
    // Ids never need escaping, but a typo might: keep the path well-formed
    // and let the agent answer 404.
    format!("/v1/containers/{}", segment(id))
}

/// Resource flags shared by `berth run` and `berth update`.
#[derive(Debug, Args, Default)]
pub struct ResourceArgs {
    /// CPUs, fractional.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Memory limit: bytes, or with K, M, G.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long, value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// Read throttle for a device, in bytes per second.
    #[arg(long, value_name = "DEV:RATE")]
    pub device_read_bps: Vec<String>,
    /// Write throttle for a device, in bytes per second.
    #[arg(long, value_name = "DEV:RATE")]
    pub device_write_bps: Vec<String>,
    /// Read throttle for a device, in operations per second.
    #[arg(long, value_name = "DEV:N")]
    pub device_read_iops: Vec<String>,
    /// Write throttle for a device, in operations per second.
    #[arg(long, value_name = "DEV:N")]
    pub device_write_iops: Vec<String>,
    /// Bytes the container may keep in its sandbox.
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// The most processes and threads at once (`max`, 0 or -1: none, if
    /// the agent allows it).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// A field of any isolator's resource section, `SECTION.FIELD=VALUE`
    /// (repeatable; VALUE is JSON, or else a string): `example.tokens=3`;
    /// or a whole section's fields as a JSON object: `example={"tokens":3}`.
    #[arg(long, value_name = "SECTION.FIELD=VALUE")]
    pub resource: Vec<String>,
}

impl ResourceArgs {
    /// The `resources` object of a launch or update request.
    pub fn to_json(&self) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
        let mut resources = serde_json::Map::new();
        if let Some(cpus) = self.cpus {
            resources.insert("cpus".into(), cpus.into());
        }
        for (flag, key, value) in [
            ("--memory", "memory", &self.memory),
            (
                "--memory-reservation",
                "memory_reservation",
                &self.memory_reservation,
            ),
            ("--disk", "disk", &self.disk),
        ] {
            if let Some(value) = value {
                let bytes = parse_size(value).map_err(|e| usage(format!("invalid {flag}: {e}")))?;
                resources.insert(key.into(), bytes.into());
            }
        }
        if let Some(weight) = self.blkio_weight {
            resources.insert("blkio_weight".into(), weight.into());
        }
        if let Some(limit) = &self.pids_limit {
            let limit: u64 = match limit.as_str() {
                "max" | "-1" => 0,
                n => n.parse().map_err(|_| {
                    usage(format!(
                        "invalid --pids-limit {limit:?}: expected a whole number or max"
                    ))
                })?,
            };
            resources.insert("pids_limit".into(), limit.into());
        }
        for (flag, key, values, sized) in [
            (
                "--device-read-bps",
                "device_read_bps",
                &self.device_read_bps,
                true,
            ),
            (
                "--device-write-bps",
                "device_write_bps",
                &self.device_write_bps,
                true,
            ),
            (
                "--device-read-iops",
                "device_read_iops",
                &self.device_read_iops,
                false,
            ),
            (
                "--device-write-iops",
                "device_write_iops",
                &self.device_write_iops,
                false,
            ),
        ] {
            if values.is_empty() {
                continue;
            }
            let limits = values
                .iter()
                .map(|v| device_limit(flag, v, sized))
                .collect::<Result<Vec<_>, _>>()?;
            resources.insert(key.into(), limits.into());
        }
        for field in &self.resource {
            section_field(&mut resources, field)?;
        }
        Ok(resources)
    }
}

/// Puts `--resource SECTION.FIELD=VALUE` into its section of `resources`:
/// the flag every isolator's section is reachable by, the ones berth does
/// not know included.
fn section_field(
    resources: &mut serde_json::Map<String, serde_json::Value>,
    arg: &str,
) -> Result<(), Failure> {
    let bad = |why: &str| usage(format!("invalid --resource {arg:?}: {why}"));
    const EXPECTED: &str = "expected SECTION.FIELD=VALUE or SECTION={JSON object}";
    let (key, value) = arg.split_once('=').ok_or_else(|| bad(EXPECTED))?;
    let (section, fields): (&str, Vec<(String, serde_json::Value)>) = match key.split_once('.') {
        // SECTION={...}: the fields of a whole section at once.
        None if !key.is_empty() => match serde_json::from_str(value) {
            Ok(serde_json::Value::Object(fields)) => (key, fields.into_iter().collect()),
            _ => return Err(bad(EXPECTED)),
        },
        Some((section, field)) if !section.is_empty() && !field.is_empty() => {
            let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
            (section, vec![(field.to_string(), value)])
        }
        _ => return Err(bad(EXPECTED)),
    };
    let entry = resources
        .entry(section.to_string())
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(entry) = entry.as_object_mut() else {
        return Err(bad(&format!("{section} is also given by its own flag")));
    };
    entry.extend(fields);
    Ok(())
}

/// Parses `DEV:RATE` where DEV is a path or `MAJOR:MINOR` (so the rate is
/// after the last colon) and RATE a size (`5M`) or a plain count.
fn device_limit(flag: &str, value: &str, sized: bool) -> Result<serde_json::Value, Failure> {
    let bad = |why: &str| usage(format!("invalid {flag} {value:?}: {why}"));
    let (device, rate) = value
        .rsplit_once(':')
        .ok_or_else(|| bad("expected DEV:RATE"))?;
    if device.is_empty() {
        return Err(bad("no device"));
    }
    let rate = if sized {
        parse_size(rate).map_err(|e| bad(&e.to_string()))?
    } else {
        rate.parse::<u64>()
            .map_err(|_| bad("the rate must be a whole number"))?
    };
    Ok(json!({"device": device, "rate": rate}))
}

/// Parses `--device HOST[:CONTAINER][:rwm]` as Docker does: a second part
/// made only of `r`, `w` and `m` is the access, anything else the path in
/// the container. The agent checks the paths and the access.
fn device_mapping(value: &str) -> Result<serde_json::Value, Failure> {
    let is_access = |s: &str| !s.is_empty() && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let parts: Vec<&str> = value.split(':').collect();
    let (host, container, access) = match parts[..] {
        [host] => (host, None, None),
        [host, access] if is_access(access) => (host, None, Some(access)),
        [host, container] => (host, Some(container), None),
        [host, container, access] => (host, Some(container), Some(access)),
        _ => {
            return Err(usage(format!(
                "invalid --device {value:?}: expected HOST[:CONTAINER][:rwm]"
            )))
        }
    };
    if host.is_empty() || container.is_some_and(str::is_empty) {
        return Err(usage(format!(
            "invalid --device {value:?}: expected HOST[:CONTAINER][:rwm]"
        )));
    }
    let mut mapping = json!({ "host": host });
    if let Some(container) = container {
        mapping["container"] = container.into();
    }
    if let Some(access) = access {
        mapping["access"] = access.into();
    }
    Ok(mapping)
}

/// Turns `berth run` flags into a launch request.
pub fn launch_request(args: &RunArgs) -> Result<LaunchRequest, Failure> {
    let env = env_vars(&args.env)?;
    let mut resources = args.resources.to_json()?;
    if let Some(handle) = args.net_cls_handle {
        resources.insert("net_cls_handle".into(), handle.into());
    }
    if !args.devices.is_empty() {
        let devices = args
            .devices
            .iter()
            .map(|d| device_mapping(d))
            .collect::<Result<Vec<_>, _>>()?;
        resources.insert("devices".into(), devices.into());
    }
    let (image, command) = args.image_and_command()?;
    let mut request = LaunchRequest {
        id: args.name.clone(),
        command,
        env,
        workdir: args.workdir.clone(),
        user: None,
        rootfs: None,
        resources,
        isolation: args.isolation.clone(),
        network: args.network.clone(),
        log: None,
        capabilities: None,
        tmp_size: None,
        userns: args.userns.clone(),
        security_opt: None,
        init: args.init,
        labels: Default::default(),
        auto_remove: args.rm,
        restart: Default::default(),
        user_name: None,
        health: args.health.to_check()?,
        image,
        pull: None,
        entrypoint: None,
        read_only: args.read_only,
        stdin: args.interactive,
        tty: args.tty,
        secrets: Vec::new(),
        config_files: Vec::new(),
        config_change: None,
        mounts: args.mounts.to_mounts()?,
    };
    if let Some(entrypoint) = &args.entrypoint {
        request.entrypoint = Some(match entrypoint.as_str() {
            "" => Vec::new(),
            e => vec![e.to_string()],
        });
    }
    if let Some(pull) = &args.pull {
        request.pull = Some(match pull.as_str() {
            "missing" => PullPolicy::Missing,
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            _ => {
                return Err(usage(format!(
                    "invalid --pull {pull:?}: expected missing, always or never"
                )))
            }
        });
    }
    if let Some(rootfs) = &args.rootfs {
        // The agent has another working directory: send an absolute path.
        let absolute =
            std::path::absolute(rootfs).map_err(|e| usage(format!("invalid --rootfs: {e}")))?;
        request.rootfs = Some(absolute);
    }
    if let Some(user) = &args.user {
        (request.user, request.user_name) = user_arg(user)?;
    }
    if !args.cap_add.is_empty() || !args.cap_drop.is_empty() {
        // The agent checks the names and answers 400 naming the field.
        request.capabilities = Some(CapabilityChanges {
            add: args.cap_add.clone(),
            drop: args.cap_drop.clone(),
        });
    }
    if let Some(size) = &args.tmp_size {
        let bytes = parse_size(size).map_err(|e| usage(format!("invalid --tmp-size: {e}")))?;
        request.tmp_size = Some(bytes);
    }
    if !args.security_opt.is_empty() {
        request.security_opt = Some(security::security_opt(&args.security_opt)?);
    }
    if let Some(policy) = &args.restart {
        let policy: crate::restart_policy::RestartPolicy = policy
            .parse()
            .map_err(|e| usage(format!("invalid --restart: {e}")))?;
        if args.rm && !policy.is_no() {
            return Err(usage("--rm and --restart conflict: choose one"));
        }
        request.restart = policy;
    }
    for pair in &args.labels {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.is_empty() {
            return Err(usage(format!("invalid --label {pair:?}: expected K=V")));
        }
        request.labels.insert(key.to_string(), value.to_string());
    }
    let mut log = LogOverrides::default();
    if let Some(size) = &args.log_max_size {
        let bytes = parse_size(size).map_err(|e| usage(format!("invalid --log-max-size: {e}")))?;
        log.max_size = Some(bytes);
    }
    log.max_files = args.log_max_files;
    if args.log_compress {
        log.compress = Some(true);
    }
    if let Some(mode) = &args.log_mode {
        log.mode = Some(match mode.as_str() {
            "block" => LogMode::Block,
            "drop" => LogMode::Drop,
            _ => {
                return Err(usage(format!(
                    "invalid --log-mode {mode:?}: expected block or drop"
                )))
            }
        });
    }
    if log != LogOverrides::default() {
        request.log = Some(log);
    }
    secrets::add_to_request(&args.files, &mut request)?;
    Ok(request)
}

/// `--user`: `UID[:GID]`, or a name the agent resolves in the root
/// filesystem.
fn user_arg(user: &str) -> Result<(Option<User>, Option<String>), Failure> {
    match User::parse(user) {
        Some(user) => Ok((Some(user), None)),
        None if !user.is_empty() => Ok((None, Some(user.to_string()))),
        None => Err(usage("invalid --user \"\": expected NAME|UID[:GROUP|GID]")),
    }
}

async fn run_container(client: &Client, args: RunArgs) -> Result<i32, Failure> {
    let request = launch_request(&args)?;
    let proxy = if args.sig_proxy && !args.detach {
        sig_proxy::Proxy::install()
    } else {
        None
    };
    if args.detach {
        let container: Container = client
            .json(Method::POST, "/v1/containers", client::body(&request))
            .await
            .map_err(command_failure)?;
        outln!("{}", container.id);
        return Ok(0);
    }
    // One request: the create's answer is the container's output, framed,
    // from its first byte, and its exit last (decision 0042).
    berth_sys::launch_marks::mark("cli: sends the run");
    let answer = client
        .send(
            Method::POST,
            "/v1/containers?attach=true",
            client::body(&request),
        )
        .await
        .map_err(command_failure)?;
    berth_sys::launch_marks::mark("cli: has the create's answer");
    let id = answer
        .headers()
        .get(crate::api::CONTAINER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| {
            command_failure(client::ClientError::Http(
                "the agent's answer names no container".into(),
            ))
        })?;
    let base = container_path(&id);
    let _raw = if args.tty {
        attach::RawMode::enter()
    } else {
        None
    };
    if args.interactive || args.tty {
        let (close, tty, interactive) = (args.interactive && !args.tty, args.tty, args.interactive);
        let socket = client.socket().to_path_buf();
        let path = format!("{base}/attach");
        tokio::spawn(async move {
            if let Err(e) = stdin_send::send_stdin(&socket, &path, close, tty, interactive).await {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "berth: stdin: {e}");
            }
        });
    }
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let follow = async {
        let ended = logs_stream::stream_answer(answer, &mut stdout, &mut stderr).await?;
        match ended {
            Some(ended) => Ok(ended),
            // The answer ended without the container's end (an agent going
            // away): ask for it.
            None => {
                client
                    .json::<Container>(Method::GET, &format!("{base}/wait"), None)
                    .await
            }
        }
    };
    let ended = match proxy {
        Some(proxy) => tokio::select! {
            ended = follow => ended?,
            never = proxy.forward(client, &id) => match never {},
        },
        None => follow.await?,
    };
    berth_sys::launch_marks::mark("cli: has the exit");
    if let Some(limitation) = &ended.limitation {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "berth: container {} ended: {}",
            ended.id,
            limitation.message
        );
    }
    Ok(ended.shell_exit_code())
}

/// `-e K=V` sets K; `-e K` passes the CLI's own value of K, or nothing
/// when K is not set here (as Docker).
fn env_vars(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut env = BTreeMap::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((key, value)) => {
                env.insert(key.to_string(), value.to_string());
            }
            None if pair.is_empty() => {
                return Err(usage("invalid --env \"\": expected K=V or K"));
            }
            None => {
                if let Some(value) = std::env::var_os(pair) {
                    let value = value.into_string().map_err(|_| {
                        usage(format!("invalid --env {pair}: its value here is not UTF-8"))
                    })?;
                    env.insert(pair.clone(), value);
                }
            }
        }
    }
    Ok(env)
}

/// The failures of a command over several containers: each is printed as
/// one `berth: ...` line as it happens, and the command exits 1 at the end
/// if any failed. A failure to reach the agent at all ends it at once.
#[derive(Default)]
struct Failed {
    any: bool,
}

impl Failed {
    fn note(&mut self, e: ClientError) -> Result<(), Failure> {
        if !matches!(e, ClientError::Api { .. }) {
            return Err(e.into());
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "berth: {e}");
        self.any = true;
        Ok(())
    }

    fn result(self, code: i32) -> Result<i32, Failure> {
        Ok(if self.any { 1 } else { code })
    }
}

/// `berth stop` and `berth restart`: POSTs `{"timeout": time}` to each
/// container's `action` (`stop` or `restart`), printing the ids done.
async fn stop_each(
    client: &Client,
    action: &str,
    time: f64,
    ids: Vec<String>,
) -> Result<i32, Failure> {
    if !(0.0..=MAX_STOP_TIMEOUT).contains(&time) {
        return Err(usage(format!(
            "invalid --time {time}: expected seconds between 0 and 86400"
        )));
    }
    let mut failed = Failed::default();
    for id in ids {
        let done = client
            .call(
                Method::POST,
                &format!("{}/{action}", container_path(&id)),
                client::body(&StopRequest { timeout: time }),
            )
            .await;
        match done {
            Ok(_) => outln!("{id}"),
            Err(e) => failed.note(e)?,
        }
    }
    failed.result(0)
}

/// A launch refused because the command cannot be exec'd exits as a shell
/// would: 127 when it is not found, 126 when it cannot be run (the shim
/// reports `exec "ARG0": REASON`, as runc does).
fn command_failure(e: ClientError) -> Failure {
    let code = match &e {
        ClientError::Api {
            status,
            code,
            message,
        } if status.as_u16() == 400
            && code == "launch_failed"
            && message.starts_with("launch failed: exec \"") =>
        {
            if message.ends_with(": no such file or directory") {
                127
            } else {
                126
            }
        }
        _ => return e.into(),
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    /// The request as the agent receives it.
    fn launch_request(args: &RunArgs) -> Result<serde_json::Value, Failure> {
        super::launch_request(args).map(|r| serde_json::to_value(r).expect("json"))
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        match Cli::try_parse_from(std::iter::once("berth").chain(argv.iter().copied()))
            .unwrap()
            .command
        {
            Command::Run(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn run_flags_become_a_request() {
        let args = run_args(&[
            "run", "--name", "w1", "--cpus", "0.5", "--memory", "64M", "-e", "A=b=c", "--user",
            "1000:100", "--", "sh", "-c", "echo hi",
        ]);
        let request = launch_request(&args).unwrap();
        assert_eq!(request["id"], "w1");
        assert_eq!(request["resources"]["cpus"], 0.5);
        assert_eq!(request["resources"]["memory"], 64 << 20);
        assert_eq!(request["env"]["A"], "b=c");
        assert_eq!(request["user"], json!({"uid": 1000, "gid": 100}));
        assert_eq!(request["command"], json!(["sh", "-c", "echo hi"]));
    }

    #[test]
    fn init_and_sig_proxy_flags() {
        let args = run_args(&["run", "--init", "--", "true"]);
        assert!(args.sig_proxy, "on by default");
        assert_eq!(launch_request(&args).unwrap()["init"], true);
        let args = run_args(&["run", "--sig-proxy=false", "--", "true"]);
        assert!(!args.sig_proxy);
        assert!(launch_request(&args).unwrap().get("init").is_none());
        assert!(run_args(&["run", "--sig-proxy", "--", "true"]).sig_proxy);
    }

    #[test]
    fn bad_flags_are_refused_before_asking_the_agent() {
        assert!(launch_request(&run_args(&["run", "--memory", "lots", "--", "true"])).is_err());
        assert!(launch_request(&run_args(&["run", "-e", "", "--", "true"])).is_err());
        assert!(
            launch_request(&run_args(&["run", "--restart", "sometimes", "--", "true"])).is_err()
        );
        assert!(launch_request(&run_args(&[
            "run",
            "--rm",
            "--restart",
            "always",
            "--",
            "true"
        ]))
        .is_err());
        assert_eq!(
            launch_request(&run_args(&["run", "--user", "web:staff", "--", "true"])).unwrap()
                ["user_name"],
            "web:staff"
        );
        assert!(launch_request(&run_args(&["run", "--pull", "often", "img"])).is_err());
        assert!(launch_request(&run_args(&["run", "--name", "x"])).is_err());
        assert!(launch_request(&run_args(&["run", "--rootfs", "/r"])).is_err());
    }

    #[test]
    fn run_takes_an_image_or_a_command() {
        let r = launch_request(&run_args(&["run", "--user", "root", "--", "true"])).unwrap();
        assert_eq!(r["user_name"], "root");
        assert!(r.get("image").is_none());
        assert_eq!(r["command"], json!(["true"]));
        let r = launch_request(&run_args(&["run", "busybox:1", "sh", "-c", "echo hi"])).unwrap();
        assert_eq!(r["image"], "busybox:1");
        assert_eq!(r["command"], json!(["sh", "-c", "echo hi"]));
        let r = launch_request(&run_args(&[
            "run",
            "--pull",
            "never",
            "--entrypoint",
            "",
            "--read-only",
            "img",
            "--",
            "-x",
        ]))
        .unwrap();
        assert_eq!(r["image"], "img");
        assert_eq!(r["command"], json!(["-x"]));
        assert_eq!(r["entrypoint"], json!([]));
        assert_eq!(r["pull"], "never");
        assert_eq!(r["read_only"], true);
        let r = launch_request(&run_args(&["run", "img"])).unwrap();
        assert_eq!(r["command"], json!([]));
        // With --rootfs, the words are the command, as with `--`.
        let r = launch_request(&run_args(&["run", "--rootfs", "/r", "sh", "-c", "x"])).unwrap();
        assert!(r.get("image").is_none());
        assert_eq!(r["command"], json!(["sh", "-c", "x"]));
        let r = launch_request(&run_args(&["run", "--rootfs", "/r", "--", "true"])).unwrap();
        assert_eq!(r["command"], json!(["true"]));
    }

    #[test]
    fn resource_flags_fill_any_isolators_section() {
        let args = run_args(&[
            "run",
            "--cpus",
            "0.5",
            "--resource",
            "example.tokens=3",
            "--resource",
            "example.label=blue",
            "--resource",
            r#"other={"slots": 2, "names": ["a"]}"#,
            "--",
            "true",
        ]);
        let request = launch_request(&args).unwrap();
        assert_eq!(
            request["resources"],
            json!({"cpus": 0.5, "example": {"tokens": 3, "label": "blue"},
                   "other": {"slots": 2, "names": ["a"]}})
        );
        for bad in [
            "example",
            "example.tokens",
            ".x=1",
            "x.=1",
            "x=3",
            "x=[1]",
            "={}",
        ] {
            let args = run_args(&["run", "--resource", bad, "--", "true"]);
            assert!(launch_request(&args).is_err(), "{bad}");
        }
        let args = run_args(&[
            "run",
            "--memory",
            "64m",
            "--resource",
            "memory.memory=1",
            "--",
            "true",
        ]);
        assert!(launch_request(&args).is_err());
    }

    #[test]
    fn device_and_pids_flags_become_resources() {
        let args = run_args(&[
            "run",
            "--device",
            "/dev/kvm",
            "--device",
            "/dev/loop-control:r",
            "--device",
            "/dev/sda:/dev/xvda:rw",
            "--device",
            "/dev/fuse:/dev/f",
            "--pids-limit",
            "100",
            "--",
            "true",
        ]);
        let request = launch_request(&args).unwrap();
        assert_eq!(
            request["resources"]["devices"],
            json!([
                {"host": "/dev/kvm"},
                {"host": "/dev/loop-control", "access": "r"},
                {"host": "/dev/sda", "container": "/dev/xvda", "access": "rw"},
                {"host": "/dev/fuse", "container": "/dev/f"},
            ])
        );
        assert_eq!(request["resources"]["pids_limit"], 100);
        for none in ["max", "-1", "0"] {
            let args = run_args(&["run", "--pids-limit", none, "--", "true"]);
            assert_eq!(launch_request(&args).unwrap()["resources"]["pids_limit"], 0);
        }
        for bad in [
            &["run", "--pids-limit", "-2", "--", "true"][..],
            &["run", "--pids-limit", "lots", "--", "true"],
            &["run", "--device", "/a:/b:rw:x", "--", "true"],
            &["run", "--device", ":/b", "--", "true"],
        ] {
            assert!(launch_request(&run_args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn odd_ids_are_escaped_in_paths() {
        assert_eq!(container_path("a/b"), "/v1/containers/a%2Fb");
    }

    #[test]
    fn logs_flags_parse_and_query_values_are_escaped() {
        let parse = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("berth").chain(argv.iter().copied()))
                .map(|cli| cli.command)
        };
        match parse(&["logs", "--stderr", "-f", "--tail", "3", "x"]).unwrap() {
            Command::Logs {
                stderr,
                follow,
                tail,
                ..
            } => assert!(stderr && follow && tail == Some(Tail::Lines(3))),
            other => panic!("{other:?}"),
        }
        match parse(&["logs", "-n", "all", "x"]).unwrap() {
            Command::Logs { tail, stream, .. } => {
                assert_eq!((tail, stream), (Some(Tail::All), None))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["logs", "-n", "some", "x"]).is_err());
        assert!(parse(&["logs", "--stderr", "--stream", "all", "x"]).is_err());
        assert!(parse(&["logs", "--stream", "both", "x"]).is_err());
        assert!(parse(&["files", "ls", "x"]).is_ok());
        let query = LogsQuery {
            since: Some("2024-05-01T12:00:00+02:00".into()),
            ..Default::default()
        };
        assert_eq!(
            to_query("/l", &query),
            "/l?since=2024-05-01T12%3A00%3A00%2B02%3A00"
        );
        let query = FilesQuery {
            path: Some("a b/c&d".into()),
        };
        assert_eq!(to_query("/f", &query), "/f?path=a+b%2Fc%26d");
    }
}
