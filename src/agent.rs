//! `berth agent`: wires config, cgroups, isolators, the manager and the API
//! together and serves until SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_cgroups::CgroupRoot;
use berth_isolator::Isolator;
use tokio::net::UnixListener;

use crate::config::AgentConfig;
use crate::manager::{HostCgroups, Isolators, Manager};

/// The built-in isolators by name, in their default order.
pub const BUILT_IN_ISOLATORS: &[&str] = &[
    "cpu", "memory", "net_cls", "blkio", "disk", "devices", "pids",
];

/// Makes an isolator that is not built in (a test's, or a site's own
/// compiled into its agent binary) from the agent's config and its
/// `[isolators.NAME]` table, if the config has one.
pub type IsolatorFactory =
    fn(&AgentConfig, Option<&toml::Value>) -> anyhow::Result<Arc<dyn Isolator>>;

static REGISTERED: std::sync::Mutex<Vec<(String, IsolatorFactory)>> =
    std::sync::Mutex::new(Vec::new());

/// Offers one more isolator by `name`, after the built-ins, to every agent
/// this process starts afterwards ([`run`]). A binary that embeds the agent
/// calls this before running it; the isolator then takes part exactly as a
/// built-in does (its resource section, validation, usage, lifecycle).
///
/// ```no_run
/// use std::sync::Arc;
/// use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError};
/// struct Quiet;
/// impl Isolator for Quiet {
///     fn name(&self) -> &str { "quiet" }
///     fn prepare(&self, _: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
///         Ok(Contribution::default())
///     }
/// }
/// berth::agent::register_isolator("quiet", |_config, _table| Ok(Arc::new(Quiet)));
/// ```
pub fn register_isolator(name: &str, factory: IsolatorFactory) {
    let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    registered.retain(|(n, _)| n != name);
    registered.push((name.to_string(), factory));
}

fn registered() -> Vec<(String, IsolatorFactory)> {
    REGISTERED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Creates the configured isolators, in the configured order. Without an
/// `isolation` list, every built-in isolator this host supports is offered,
/// and the ones it does not support are logged and left out.
pub fn build_isolators(config: &AgentConfig, root: &Arc<CgroupRoot>) -> anyhow::Result<Isolators> {
    // All names are checked before any isolator is made: making one creates
    // its cgroup root dirs.
    let explicit = config.isolation.is_some();
    let registered = registered();
    let known: Vec<String> = BUILT_IN_ISOLATORS
        .iter()
        .map(|n| n.to_string())
        .chain(registered.iter().map(|(n, _)| n.clone()))
        .chain(config.plugins.iter().map(|p| p.name.clone()))
        .collect();
    let names: Vec<String> = match &config.isolation {
        Some(names) => names.clone(),
        None => known.clone(),
    };
    if let Some(name) = names.iter().find(|n| !known.contains(n)) {
        bail!(
            "unknown isolator {name:?} in isolation (known: {})",
            known.join(", ")
        );
    }
    let mut ordered: Vec<Arc<dyn Isolator>> = Vec::new();
    for name in &names {
        match make_isolator(name, config, root) {
            Ok(isolator) => ordered.push(isolator),
            Err(e) if explicit => return Err(e.context(format!("isolator {name}"))),
            // A required plugin that cannot start stops the agent, named.
            Err(e) if config.plugins.iter().any(|p| &p.name == name) => return Err(e),
            Err(e) => tracing::warn!("isolator {name} is not offered on this host: {e:#}"),
        }
    }
    check_resource_sections(&ordered)?;
    Ok(Isolators { ordered })
}

/// Two isolators may not claim the same resource section or flat key: a
/// request's field must reach exactly one of them.
fn check_resource_sections(isolators: &[Arc<dyn Isolator>]) -> anyhow::Result<()> {
    let mut claimed: std::collections::BTreeMap<String, String> = Default::default();
    for isolator in isolators {
        let Some(section) = isolator.resource_section() else {
            continue;
        };
        let keys = std::iter::once(&section.name)
            .chain(section.flat_keys.iter().filter(|k| **k != section.name));
        for key in keys {
            if let Some(other) = claimed.insert(key.clone(), isolator.name().to_string()) {
                bail!(
                    "isolators {other} and {} both claim the resource key {key:?}",
                    isolator.name()
                );
            }
        }
    }
    Ok(())
}

/// Makes one built-in isolator from the agent's settings.
fn make_isolator(
    name: &str,
    config: &AgentConfig,
    root: &Arc<CgroupRoot>,
) -> anyhow::Result<Arc<dyn Isolator>> {
    Ok(match name {
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
        "net_cls" => Arc::new(berth_isolator_net_cls::NetClsIsolator::new(
            root.clone(),
            berth_isolator_net_cls::NetClsOptions {
                primary: config.net_cls.primary,
                secondary_min: config.net_cls.secondary_min,
                secondary_max: config.net_cls.secondary_max,
                ..Default::default()
            },
        )?),
        "blkio" => Arc::new(berth_isolator_blkio::BlkioIsolator::new(root.clone())?),
        "disk" => {
            use berth_isolator_disk::{DiskBackend, DiskIsolator, DiskOptions};
            Arc::new(DiskIsolator::new(DiskOptions {
                backend: match config.disk.backend {
                    crate::config::DiskBackend::Du => DiskBackend::Du,
                    crate::config::DiskBackend::Loop => DiskBackend::Loop,
                    crate::config::DiskBackend::Xfs => DiskBackend::Xfs,
                },
                interval: Duration::from_secs_f64(config.disk.interval_seconds),
                work_dir: config.work_dir.clone(),
                xfs_projects: config.disk.xfs_project_min..=config.disk.xfs_project_max,
            })?)
        }
        "devices" => Arc::new(berth_isolator_devices::DevicesIsolator::new(root.clone())?),
        "pids" => Arc::new(berth_isolator_pids::PidsIsolator::new(
            root.clone(),
            berth_isolator_pids::PidsOptions {
                default_limit: config.pids.default_limit.0,
                allow_unlimited: config.pids.allow_unlimited,
            },
        )?),
        other if config.plugins.iter().any(|p| p.name == other) => {
            let plugin = config.plugins.iter().find(|p| p.name == other).cloned();
            crate::plugins::PluginIsolator::start(
                plugin.expect("found above"),
                config.isolators.get(other),
                config.work_dir.clone(),
                config.runtime_dir.clone(),
            )?
        }
        other => match registered().into_iter().find(|(n, _)| n == other) {
            Some((_, factory)) => factory(config, config.isolators.get(other))?,
            None => bail!("no built-in isolator {other:?}"),
        },
    })
}

/// Runs the agent until SIGTERM or SIGINT. Containers keep running.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    config.validate()?;
    if let Some(tcp) = &config.api.tcp {
        crate::api::tls::check(tcp)?;
    }
    let tokens = crate::api::tokens::Tokens::new(&config.api.tokens)?;
    let socket_gid = match &config.api.socket_group {
        Some(group) => Some(crate::api::socket_group::resolve(group)?),
        None => None,
    };
    // Before anything reads or changes the dirs: a second agent would
    // destroy the first one's in-flight launches as "interrupted".
    let _lock = crate::store::RuntimeLock::acquire(&config.runtime_dir)?;
    // A bad profile file stops the agent here, not every launch later.
    crate::seccomp::SeccompSetting::from_config(&config.security.seccomp)?;
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
    let root_value = config.cgroup_root.clone();
    let kill_value = config.cgroup_root.clone();
    let warm_root = root.clone();
    let manager = Manager::new(
        config,
        isolators,
        HostCgroups {
            mode: root.mode().to_string(),
            cgroups_path: Box::new(move |id| cgroups_root.oci_cgroups_path(id.as_str())),
            children: Box::new(move || container_cgroups(&root_value)),
            kill: Box::new(move |id| kill_cgroup_processes(&kill_value, id.as_str())),
            warm_attach: Box::new(move || {
                if let Err(e) = warm_root.hierarchies().warm_attach() {
                    tracing::debug!("warm the cgroup attach: {e}");
                }
            }),
        },
    );
    {
        let settings = &manager.config().images;
        let store = crate::images::ImageStore::open(&manager.config().work_dir)
            .context("open the image store")?;
        manager.set_images(Arc::new(crate::images::Images::new(
            store,
            settings.pull_options(),
        )));
    }
    let recovery = {
        let manager = manager.clone();
        tokio::task::spawn_blocking(move || manager.recover()).await?
    }
    .map_err(|e| anyhow::anyhow!("recover containers: {e}"))?;
    tracing::info!(?recovery, "recovered containers");

    // The remote API's listener: bound (and its settings checked) before
    // the socket, so a refused `[api.tcp]` stops the start.
    let tcp = match manager.config().api.tcp.clone() {
        Some(settings) => {
            let api = crate::api::tls::bind_with_tokens(&settings, tokens).await?;
            tracing::info!(address = %api.local_addr()?, "berth agent listening on TCP");
            Some(api)
        }
        None => None,
    };
    let listener = bind(&socket)?;
    if let Some(gid) = socket_gid {
        crate::api::socket_group::apply(&socket, gid)?;
    }
    tracing::info!(socket = %socket.display(), "berth agent listening");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down; containers keep running");
        if let Err(e) = crate::notify::notify(crate::notify::STOPPING) {
            tracing::warn!("tell systemd we are stopping: {e}");
        }
    };
    let gc_manager = manager.clone();
    let gc_interval = Duration::from_secs_f64(manager.config().gc.interval_seconds);
    let gc = tokio::spawn(async move {
        loop {
            tokio::time::sleep(gc_interval).await;
            if let Err(e) = gc_manager.gc().await {
                tracing::error!("gc: {e}");
            }
            if let Err(e) = gc_manager.images_gc().await {
                tracing::error!("image gc: {e}");
            }
        }
    });
    let header_timeout = Duration::from_secs_f64(manager.config().api.header_timeout_seconds);
    // The socket is bound and recovery is done: a request now is answered.
    if let Err(e) = crate::notify::notify(crate::notify::READY) {
        tracing::warn!("tell systemd we are ready: {e}");
    }
    let (stop_tcp, tcp_stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tcp.send(true);
    };
    let tcp = tcp.map(|api| {
        let mut stopped = tcp_stopped;
        tokio::spawn(crate::api::serve_tcp(
            api,
            crate::api::router(manager.clone()),
            manager.config().api.roles.clone(),
            header_timeout,
            async move {
                let _ = stopped.changed().await;
            },
        ))
    });
    crate::api::serve(
        listener,
        crate::api::router(manager.clone()),
        header_timeout,
        shutdown,
    )
    .await;
    if let Some(tcp) = tcp {
        let _ = tcp.await;
    }
    gc.abort();
    let _ = std::fs::remove_file(&socket);
    if manager.config().shutdown.stop_containers {
        let grace = Duration::from_secs_f64(manager.config().shutdown.grace_seconds);
        manager.stop_all(grace).await;
    }
    Ok(())
}

/// The container cgroups below the root in every hierarchy. Detected anew
/// each time: an isolator may have mounted a hierarchy (net_cls) since start.
fn container_cgroups(root_value: &str) -> Vec<String> {
    let Ok(root) = CgroupRoot::detect(root_value) else {
        return Vec::new();
    };
    let mut names: Vec<String> = root
        .hierarchies()
        .controllers()
        .into_iter()
        .filter_map(|c| root.children(c).ok())
        .flatten()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// SIGKILLs every process in a container's cgroups, in every hierarchy.
fn kill_cgroup_processes(root_value: &str, id: &str) {
    let Ok(root) = CgroupRoot::detect(root_value) else {
        return;
    };
    let Ok(cgroup) = root.container(id) else {
        return;
    };
    for controller in root.hierarchies().controllers() {
        for pid in cgroup.pids(controller).unwrap_or_default() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Binds the API socket (mode 0660), replacing a stale socket file but never
/// a live agent's.
fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        crate::store::create_runtime_dir(dir)?;
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

#[cfg(test)]
mod tests {
    use berth_isolator::{
        ContainerConfig, ContainerId, Contribution, IsolatorError, ResourceSection,
    };

    use super::*;

    struct Claims(&'static str, &'static [&'static str]);

    impl Isolator for Claims {
        fn name(&self) -> &str {
            self.0
        }
        fn resource_section(&self) -> Option<ResourceSection> {
            Some(ResourceSection::new(self.0).with_flat_keys(self.1))
        }
        fn prepare(
            &self,
            _: &ContainerId,
            _: &ContainerConfig,
        ) -> Result<Contribution, IsolatorError> {
            Ok(Contribution::default())
        }
    }

    #[test]
    fn two_isolators_may_not_claim_one_resource_key() {
        let ok: Vec<Arc<dyn Isolator>> = vec![
            Arc::new(Claims("memory", &["memory", "memory_reservation"])),
            Arc::new(Claims("example", &[])),
        ];
        check_resource_sections(&ok).unwrap();
        let clash: Vec<Arc<dyn Isolator>> = vec![
            Arc::new(Claims("memory", &["memory"])),
            Arc::new(Claims("mem2", &["memory"])),
        ];
        let err = check_resource_sections(&clash).unwrap_err().to_string();
        assert!(err.contains("memory") && err.contains("mem2"), "{err}");
        let section_vs_key: Vec<Arc<dyn Isolator>> = vec![
            Arc::new(Claims("cpu", &["cpus"])),
            Arc::new(Claims("cpus", &[])),
        ];
        assert!(check_resource_sections(&section_vs_key).is_err());
    }
}
