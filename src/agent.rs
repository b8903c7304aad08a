//! `berth agent`: wires config, cgroups, isolators, the manager and the API
//! together and serves until SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_cgroups::CgroupRoot;
use berth_isolator::Isolator;
use tokio::net::UnixListener;

use crate::config::AgentConfig;
use crate::manager::{HostCgroups, Isolators, Manager};

/// The built-in isolators by name.
pub const BUILT_IN_ISOLATORS: &[&str] = &["cpu", "memory"];

/// Creates the configured isolators, in the configured order.
pub fn build_isolators(config: &AgentConfig, root: &Arc<CgroupRoot>) -> anyhow::Result<Isolators> {
    // All names are checked before any isolator is made: making one creates
    // its cgroup root dirs.
    if let Some(name) = config
        .isolation
        .iter()
        .find(|n| !BUILT_IN_ISOLATORS.contains(&n.as_str()))
    {
        bail!(
            "unknown isolator {name:?} in isolation (known: {})",
            BUILT_IN_ISOLATORS.join(", ")
        );
    }
    let mut ordered: Vec<Arc<dyn Isolator>> = Vec::new();
    for name in &config.isolation {
        let isolator: Arc<dyn Isolator> = match name.as_str() {
            "cpu" => Arc::new(berth_isolator_cpu::CpuIsolator::new(
                root.clone(),
                berth_isolator_cpu::CpuOptions {
                    cfs_quota: config.cpu.cfs_quota,
                },
            )?),
            "memory" => Arc::new(berth_isolator_memory::MemoryIsolator::new(
                root.clone(),
                berth_isolator_memory::MemoryOptions::default(),
            )?),
            _ => unreachable!("checked against BUILT_IN_ISOLATORS"),
        };
        ordered.push(isolator);
    }
    Ok(Isolators { ordered })
}

/// Runs the agent until SIGTERM or SIGINT. Containers keep running.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    config.validate()?;
    let root = Arc::new(
        CgroupRoot::detect(&config.cgroup_root)
            .with_context(|| format!("cgroup root {:?}", config.cgroup_root))?,
    );
    let isolators = build_isolators(&config, &root)?;
    let shim = config.shim_path();
    if !shim.is_file() {
        bail!(
            "shim binary {} not found (set `shim` in the config)",
            shim.display()
        );
    }
    let socket = config.socket.clone();
    let cgroups_root = root.clone();
    let manager = Manager::new(
        config,
        isolators,
        HostCgroups {
            mode: root.mode().to_string(),
            cgroups_path: Box::new(move |id| cgroups_root.oci_cgroups_path(id.as_str())),
        },
    );
    let recovery = {
        let manager = manager.clone();
        tokio::task::spawn_blocking(move || manager.recover()).await?
    }
    .map_err(|e| anyhow::anyhow!("recover containers: {e}"))?;
    tracing::info!(?recovery, "recovered containers");

    let listener = bind(&socket)?;
    tracing::info!(socket = %socket.display(), "berth agent listening");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down; containers keep running");
    };
    axum::serve(listener, crate::api::router(manager))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serve the API")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Binds the API socket (mode 0660), replacing a stale socket file but never
/// a live agent's.
fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            bail!("another agent is listening on {}", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("remove stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", socket.display()))?;
    Ok(listener)
}
