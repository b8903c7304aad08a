use std::path::PathBuf;
use std::process::ExitCode;

use berth::cli;
use berth::config::AgentConfig;
use clap::{Args, CommandFactory, Parser, Subcommand};

/// berth: a per-host container agent and its command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    after_help = "Exit status: 0 ok (also when the reader of the output went away, as in \
                  `berth ps | head -1`); 1 an error the agent reported or could not be reached; \
                  2 a usage error (a bad flag or value, refused before asking the agent). \
                  `run` and `wait` exit with the container's code (128+n for a signal n)."
)]
struct Cli {
    /// The agent's API socket.
    #[arg(long, global = true, env = "BERTH_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: TopCommand,
}

#[derive(Debug, Subcommand)]
enum TopCommand {
    /// Run the agent.
    Agent(AgentArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (berth.1 and one per command) into DIR.
    #[command(hide = true)]
    Man {
        /// The directory, made if missing.
        dir: PathBuf,
    },
    /// Bearer tokens for the remote API (`[[api.tokens]]`).
    #[command(subcommand)]
    Token(TokenCommand),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Read a token on stdin and print its `[[api.tokens]]` config entry
    /// (a salted SHA-256 of it, never the token itself).
    Hash {
        /// The token holder's name, shown in audit lines.
        #[arg(long)]
        name: String,
        /// The role the token grants.
        #[arg(long, value_parser = ["operator", "read-only"], default_value = "read-only")]
        role: String,
    },
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// A TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where sandboxes live.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Where state, bundles and shim records live.
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
    /// `/path` below each hierarchy's root, or relative to the agent's own cgroup.
    #[arg(long, value_name = "VALUE")]
    cgroup_root: Option<String>,
    /// The isolators to offer, comma-separated, in order.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    isolation: Option<Vec<String>>,
    /// The berth-shim binary.
    #[arg(long, value_name = "PATH")]
    shim: Option<PathBuf>,
    /// Host uids and gids for `--userns auto` containers, as in /etc/subuid.
    #[arg(long, value_name = "START:COUNT")]
    userns_range: Option<String>,
    /// A registry spoken to over plain HTTP (repeatable), as dockerd.
    #[arg(long, value_name = "HOST:PORT")]
    insecure_registry: Vec<String>,
    /// Also serve the API on TCP, over TLS (`[api.tcp] listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    tcp: Option<String>,
    /// The TCP listener's certificate chain, PEM (`[api.tcp] cert`).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The TCP listener's private key, PEM (`[api.tcp] key`).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA certificates client certificates must chain to (`[api.tcp] client_ca`).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// A host path prefix bind mounts may come from (repeatable; adds to
    /// `[volumes] allowed_host_paths`).
    #[arg(long, value_name = "PREFIX")]
    allow_host_path: Vec<PathBuf>,
    /// The group owning the API socket, name or number (`[api] socket_group`).
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
}

/// Writes `berth.1` and `berth-<command>.1` for every visible command.
fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    let write = |name: String, page: clap::Command| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)
    };
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("berth-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name))?;
    }
    write("berth".to_string(), command)
}

fn agent_config(args: AgentArgs, socket: Option<PathBuf>) -> anyhow::Result<AgentConfig> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    if let Some(socket) = socket {
        config.socket = socket;
    }
    if let Some(dir) = args.work_dir {
        config.work_dir = std::path::absolute(dir)?;
    }
    if let Some(dir) = args.runtime_dir {
        config.runtime_dir = std::path::absolute(dir)?;
    }
    if let Some(root) = args.cgroup_root {
        config.cgroup_root = root;
    }
    if let Some(isolation) = args.isolation {
        config.isolation = Some(isolation.into_iter().filter(|s| !s.is_empty()).collect());
    }
    if let Some(shim) = args.shim {
        config.shim = Some(shim);
    }
    if let Some(range) = args.userns_range {
        config.userns.subordinate_uids = Some(range.clone());
        config.userns.subordinate_gids = Some(range);
    }
    if let Some(group) = args.socket_group {
        config.api.socket_group = Some(group);
    }
    config
        .images
        .insecure_registries
        .extend(args.insecure_registry);
    for prefix in args.allow_host_path {
        config
            .volumes
            .allowed_host_paths
            .push(std::path::absolute(prefix)?);
    }
    if args.tcp.is_some()
        || args.tls_cert.is_some()
        || args.tls_key.is_some()
        || args.tls_client_ca.is_some()
    {
        let file = config.api.tcp.take();
        let listen = args
            .tcp
            .or_else(|| file.as_ref().map(|t| t.listen.clone()))
            .ok_or_else(|| anyhow::anyhow!("--tls-* flags need --tcp (or [api.tcp] listen)"))?;
        let cert = args
            .tls_cert
            .or_else(|| file.as_ref().map(|t| t.cert.clone()))
            .ok_or_else(|| anyhow::anyhow!("--tcp needs --tls-cert (or [api.tcp] cert)"))?;
        let key = args
            .tls_key
            .or_else(|| file.as_ref().map(|t| t.key.clone()))
            .ok_or_else(|| anyhow::anyhow!("--tcp needs --tls-key (or [api.tcp] key)"))?;
        let client_ca = args
            .tls_client_ca
            .or_else(|| file.as_ref().and_then(|t| t.client_ca.clone()));
        config.api.tcp = Some(berth::api::tls::TcpSettings {
            listen,
            cert,
            key,
            client_ca,
        });
    }
    Ok(config)
}

/// The command line with `run` its only command: `berth run`, the command
/// whose start a user waits on most, is parsed against this tree first.
/// clap builds every command's arguments before it parses anything, and
/// for the whole tree that is a sixth of the CLI's start (0052).
#[derive(Debug, Parser)]
#[command(name = "berth")]
struct RunOnly {
    /// The agent's API socket.
    #[arg(long, global = true, env = "BERTH_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    Run(Box<cli::RunArgs>),
}

/// Parses `args` (the program's name first): a `run` against [`RunOnly`],
/// anything that tree does not take (another command, help, version, a
/// mistake) against the whole tree, which then gives the answer and any
/// message, exactly as without the first try.
fn parse_from(args: Vec<std::ffi::OsString>) -> Cli {
    match RunOnly::try_parse_from(&args) {
        Ok(RunOnly {
            socket,
            command: RunCommand::Run(args),
        }) => Cli {
            socket,
            command: TopCommand::Client(cli::Command::Run(args)),
        },
        Err(_) => Cli::parse_from(args),
    }
}

fn main() -> ExitCode {
    berth_sys::launch_marks::mark("cli: main");
    let cli = parse_from(std::env::args_os().collect());
    match cli.command {
        TopCommand::Agent(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                // Colour only for a terminal: a log file gets plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let result = agent_config(args, cli.socket).and_then(|config| {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?
                    .block_on(berth::agent::run(config))
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth agent: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        TopCommand::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "berth", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        TopCommand::Man { dir } => match write_man_pages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: write man pages to {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        TopCommand::Token(TokenCommand::Hash { name, role }) => {
            use berth::api::tokens::{config_entry, TokenRole};
            let role = match role.as_str() {
                "operator" => TokenRole::Operator,
                _ => TokenRole::ReadOnly,
            };
            match config_entry(&mut std::io::stdin().lock(), &name, role) {
                Ok(entry) => {
                    print!("{entry}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        TopCommand::Client(command) => {
            let socket = cli.socket.unwrap_or_else(|| AgentConfig::default().socket);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(cli::run(socket, command)) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(failure) => {
                    // Empty when the output's reader went away: nothing to say.
                    if !failure.message.is_empty() {
                        use std::io::Write;
                        let _ = writeln!(std::io::stderr(), "berth: {}", failure.message);
                    }
                    // 0 only for a closed output (decision 0012).
                    ExitCode::from(failure.code.clamp(0, 255) as u8)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn a_run_parses_alone_as_in_the_whole_tree() {
        for line in [
            "berth run --rootfs /r -- /bin/true",
            "berth --socket /s.sock run --rm -e A=1 -l k=v alpine:3 echo hi",
            "berth run --socket /s.sock -it --cpus 0.5 --memory 64m alpine -- sh -c x",
            "berth run -d --name web --restart on-failure:3 img",
            "berth run img -- --rootfs",
            "berth run",
        ] {
            let alone = RunOnly::try_parse_from(words(line));
            let whole = Cli::try_parse_from(words(line));
            assert!(alone.is_ok(), "{line}: {alone:?}");
            let alone = format!("{:?}", parse_from(words(line)));
            assert_eq!(alone, format!("{:?}", whole.unwrap()), "{line}");
            assert!(alone.contains("Client(Run("), "{line}: {alone}");
        }
    }

    #[test]
    fn what_run_alone_does_not_take_goes_to_the_whole_tree() {
        for line in [
            "berth ps -a",
            "berth --version",
            "berth run --help",
            "berth run --no-such-flag img",
            "berth agent --config /c.toml",
        ] {
            assert!(RunOnly::try_parse_from(words(line)).is_err(), "{line}");
        }
        let cli = parse_from(words("berth ps -a"));
        assert!(format!("{cli:?}").contains("Ps {"), "{cli:?}");
        let cli = parse_from(words("berth agent --config /c.toml"));
        assert!(matches!(cli.command, TopCommand::Agent(_)), "{cli:?}");
    }
}
