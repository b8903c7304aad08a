//! `berth agent`'s flags and the config they make, and the global
//! `--socket` the CLI takes too. The CLI parses them
//! (for its help, and to refuse a bad flag before anything starts) and
//! execs `berth-agent`, which parses them again and runs the agent
//! (decision 0052).

use std::path::PathBuf;

use clap::Args;

use crate::config::{AgentConfig, ConfigError};

/// The global `--socket`: the API socket the CLI talks to and the agent
/// serves. One definition for the CLI's parsers and `berth-agent`'s, which
/// must take the same command line.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// The agent's API socket.
    #[arg(long, global = true, env = "BERTH_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// Flags of `berth agent` that make a config unusable.
#[derive(Debug, thiserror::Error)]
pub enum AgentArgsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{flag} {}: {source}", path.display())]
    Path {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Tcp(&'static str),
}

/// `path` made absolute (the agent's dirs must not depend on its cwd).
fn absolute(flag: &'static str, path: PathBuf) -> Result<PathBuf, AgentArgsError> {
    std::path::absolute(&path).map_err(|source| AgentArgsError::Path { flag, path, source })
}

// `berth agent`'s flags. (No doc comment: clap would take it for the
// command's about, which the CLI's `agent` command gives.)
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where sandboxes live.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Where state, bundles and shim records live.
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// `/path` below each hierarchy's root, or relative to the agent's own cgroup.
    #[arg(long, value_name = "VALUE")]
    pub cgroup_root: Option<String>,
    /// The isolators to offer, comma-separated, in order.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub isolation: Option<Vec<String>>,
    /// The berth-shim binary.
    #[arg(long, value_name = "PATH")]
    pub shim: Option<PathBuf>,
    /// Host uids and gids for `--userns auto` containers, as in /etc/subuid.
    #[arg(long, value_name = "START:COUNT")]
    pub userns_range: Option<String>,
    /// A registry spoken to over plain HTTP (repeatable), as dockerd.
    #[arg(long, value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// Also serve the API on TCP, over TLS (`[api.tcp] listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub tcp: Option<String>,
    /// The TCP listener's certificate chain, PEM (`[api.tcp] cert`).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The TCP listener's private key, PEM (`[api.tcp] key`).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates client certificates must chain to (`[api.tcp] client_ca`).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// A host path prefix bind mounts may come from (repeatable; adds to
    /// `[volumes] allowed_host_paths`).
    #[arg(long, value_name = "PREFIX")]
    pub allow_host_path: Vec<PathBuf>,
    /// The group owning the API socket, name or number (`[api] socket_group`).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
}

impl AgentArgs {
    /// The agent's config: the `--config` file's (or the defaults), then
    /// these flags over it, and `socket` (the global `--socket`).
    pub fn config(self, socket: Option<PathBuf>) -> Result<AgentConfig, AgentArgsError> {
        let args = self;
        let mut config = match &args.config {
            Some(path) => AgentConfig::load(path)?,
            None => AgentConfig::default(),
        };
        if let Some(socket) = socket {
            config.socket = socket;
        }
        if let Some(dir) = args.work_dir {
            config.work_dir = absolute("--work-dir", dir)?;
        }
        if let Some(dir) = args.runtime_dir {
            config.runtime_dir = absolute("--runtime-dir", dir)?;
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
                .push(absolute("--allow-host-path", prefix)?);
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
                .ok_or(AgentArgsError::Tcp(
                    "--tls-* flags need --tcp (or [api.tcp] listen)",
                ))?;
            let cert = args
                .tls_cert
                .or_else(|| file.as_ref().map(|t| t.cert.clone()))
                .ok_or(AgentArgsError::Tcp(
                    "--tcp needs --tls-cert (or [api.tcp] cert)",
                ))?;
            let key = args
                .tls_key
                .or_else(|| file.as_ref().map(|t| t.key.clone()))
                .ok_or(AgentArgsError::Tcp(
                    "--tcp needs --tls-key (or [api.tcp] key)",
                ))?;
            let client_ca = args
                .tls_client_ca
                .or_else(|| file.as_ref().and_then(|t| t.client_ca.clone()));
            config.api.tcp = Some(crate::api::tls::TcpSettings {
                listen,
                cert,
                key,
                client_ca,
            });
        }
        Ok(config)
    }
}
