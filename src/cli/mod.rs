//! The `berth` command line: talks to the agent's API.

pub mod client;
mod table;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::json;

use crate::container::{Container, State, User};
use crate::size::parse_size;
use client::{Client, ClientError};

/// Commands that talk to the agent.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a container; without -d, print its output and exit with its code.
    Run(RunArgs),
    /// List containers (running ones unless -a).
    Ps {
        /// Include ended containers.
        #[arg(short, long)]
        all: bool,
        /// Print a JSON array of container objects.
        #[arg(long)]
        json: bool,
    },
    /// Print a container as JSON.
    Inspect { id: String },
    /// Wait for a container to end; print its exit code and exit with it.
    Wait { id: String },
    /// Send a signal to a container (default KILL).
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        id: String,
    },
    /// Remove a container and its sandbox.
    Rm {
        /// Kill it first if it runs.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a container's output.
    Logs {
        /// Print stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Keep printing until the container ends.
        #[arg(short, long)]
        follow: bool,
        id: String,
    },
    /// Print a container's resource usage as JSON.
    Stats { id: String },
    /// Print what the agent is and offers.
    Info {
        #[arg(long)]
        json: bool,
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
    /// CPUs, fractional.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Memory limit: bytes, or with K, M, G.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long, value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// An environment variable.
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The user to run as.
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// The isolators to use, comma-separated (default: all the agent offers).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub isolation: Option<Vec<String>>,
    /// The network: host (default), none (loopback only) or ns:PATH.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Print the id and return at once.
    #[arg(short, long)]
    pub detach: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A CLI failure: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
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
        Command::Run(args) => run_container(&client, args).await,
        Command::Ps { all, json } => {
            let containers: Vec<Container> =
                client.json(Method::GET, "/v1/containers", None).await?;
            let shown: Vec<&Container> = containers
                .iter()
                .filter(|c| all || c.state != State::Exited)
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&shown).expect("json"));
            } else {
                print!("{}", table::containers(&shown));
            }
            Ok(0)
        }
        Command::Inspect { id } => {
            let container: serde_json::Value =
                client.json(Method::GET, &container_path(&id), None).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&container).expect("json")
            );
            Ok(0)
        }
        Command::Wait { id } => {
            let container: Container = client
                .json(Method::GET, &format!("{}/wait", container_path(&id)), None)
                .await?;
            let code = container.shell_exit_code();
            println!("{code}");
            Ok(code)
        }
        Command::Kill { signal, id } => {
            client
                .call(
                    Method::POST,
                    &format!("{}/kill", container_path(&id)),
                    Some(json!({"signal": signal})),
                )
                .await?;
            Ok(0)
        }
        Command::Rm { force, ids } => {
            for id in ids {
                let path = format!(
                    "{}{}",
                    container_path(&id),
                    if force { "?force=true" } else { "" }
                );
                client.call(Method::DELETE, &path, None).await?;
                println!("{id}");
            }
            Ok(0)
        }
        Command::Logs { stderr, follow, id } => {
            let stream = if stderr { "stderr" } else { "stdout" };
            let path = format!(
                "{}/logs?stream={stream}&follow={follow}",
                container_path(&id)
            );
            if stderr {
                client.stream_to(&path, &mut tokio::io::stderr()).await?;
            } else {
                client.stream_to(&path, &mut tokio::io::stdout()).await?;
            }
            Ok(0)
        }
        Command::Stats { id } => {
            let stats: serde_json::Value = client
                .json(Method::GET, &format!("{}/stats", container_path(&id)), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&stats).expect("json"));
            Ok(0)
        }
        Command::Info { json } => {
            let info: serde_json::Value = client.json(Method::GET, "/v1/info", None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info).expect("json"));
            } else {
                print!("{}", table::info(&info));
            }
            Ok(0)
        }
    }
}

fn container_path(id: &str) -> String {
    // Ids never need escaping, but a typo might: keep the path well-formed
    // and let the agent answer 404.
    let escaped: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/v1/containers/{escaped}")
}

/// Turns `berth run` flags into a launch request body.
pub fn launch_request(args: &RunArgs) -> Result<serde_json::Value, Failure> {
    let mut env = serde_json::Map::new();
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| usage(format!("invalid --env {pair:?}: expected K=V")))?;
        env.insert(key.to_string(), value.into());
    }
    let mut resources = serde_json::Map::new();
    if let Some(cpus) = args.cpus {
        resources.insert("cpus".into(), cpus.into());
    }
    for (flag, key, value) in [
        ("--memory", "memory", &args.memory),
        (
            "--memory-reservation",
            "memory_reservation",
            &args.memory_reservation,
        ),
    ] {
        if let Some(value) = value {
            let bytes = parse_size(value).map_err(|e| usage(format!("invalid {flag}: {e}")))?;
            resources.insert(key.into(), bytes.into());
        }
    }
    let mut request = json!({
        "command": args.command,
        "env": env,
        "resources": resources,
    });
    if let Some(name) = &args.name {
        request["id"] = name.clone().into();
    }
    if let Some(rootfs) = &args.rootfs {
        // The agent has another working directory: send an absolute path.
        let absolute =
            std::path::absolute(rootfs).map_err(|e| usage(format!("invalid --rootfs: {e}")))?;
        request["rootfs"] = absolute.display().to_string().into();
    }
    if let Some(workdir) = &args.workdir {
        request["workdir"] = workdir.clone().into();
    }
    if let Some(user) = &args.user {
        let user = User::parse(user)
            .ok_or_else(|| usage(format!("invalid --user {user:?}: expected UID[:GID]")))?;
        request["user"] = serde_json::to_value(user).expect("json");
    }
    if let Some(isolation) = &args.isolation {
        request["isolation"] = isolation.clone().into();
    }
    if let Some(network) = &args.network {
        request["network"] = network.clone().into();
    }
    Ok(request)
}

async fn run_container(client: &Client, args: RunArgs) -> Result<i32, Failure> {
    let request = launch_request(&args)?;
    let container: Container = client
        .json(Method::POST, "/v1/containers", Some(request))
        .await?;
    if args.detach {
        println!("{}", container.id);
        return Ok(0);
    }
    let base = container_path(container.id.as_str());
    let stdout_path = format!("{base}/logs?stream=stdout&follow=true");
    let stderr_path = format!("{base}/logs?stream=stderr&follow=true");
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let (out, err) = tokio::join!(
        client.stream_to(&stdout_path, &mut stdout),
        client.stream_to(&stderr_path, &mut stderr),
    );
    out?;
    err?;
    let ended: Container = client
        .json(Method::GET, &format!("{base}/wait"), None)
        .await?;
    if let Some(limitation) = &ended.limitation {
        eprintln!(
            "berth: container {} ended: {}",
            ended.id, limitation.message
        );
    }
    Ok(ended.shell_exit_code())
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

    fn run_args(argv: &[&str]) -> RunArgs {
        match Cli::try_parse_from(std::iter::once("berth").chain(argv.iter().copied()))
            .unwrap()
            .command
        {
            Command::Run(args) => args,
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
    fn bad_flags_are_refused_before_asking_the_agent() {
        assert!(launch_request(&run_args(&["run", "--memory", "lots", "--", "true"])).is_err());
        assert!(launch_request(&run_args(&["run", "-e", "NOEQUALS", "--", "true"])).is_err());
        assert!(launch_request(&run_args(&["run", "--user", "root", "--", "true"])).is_err());
    }

    #[test]
    fn odd_ids_are_escaped_in_paths() {
        assert_eq!(container_path("a/b"), "/v1/containers/a%2Fb");
    }
}
