//! `PluginIsolator`: an [`Isolator`] whose every step is a call to a plugin
//! process, under the plugin's failure policy.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use berth_isolator::{
    ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError, Limitation,
    LimitationReporter, RecoveredContainer, ResourceSection, Resources, Status, Usage,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::config::{PluginConfig, PluginMode, PluginPolicy};
use super::contribution::{self, HostDirs};
use super::exec::Exec;
use super::long_lived::LongLived;
use super::protocol::{
    self, code, ExitLimitationResult, GcParams, GcResult, IdParams, IsolateParams,
    LimitationNotice, PrepareParams, RecoverParams, UpdateParams, ValidateParams,
};
use super::transport::{CallError, Transport};

/// What the agent told the plugin, to replay after the plugin restarts.
#[derive(Default)]
struct Known {
    containers: Mutex<BTreeMap<ContainerId, RecoveredContainer>>,
    watched: Mutex<HashMap<ContainerId, LimitationReporter>>,
    /// `recover` was called: `gc` may run (before, every container would
    /// look leaked).
    recovered: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An isolator plugin.
pub struct PluginIsolator {
    config: PluginConfig,
    transport: Box<dyn Transport>,
    known: Arc<Known>,
    state_dir: PathBuf,
    berth_dirs: Vec<PathBuf>,
}

impl PluginIsolator {
    /// Starts the plugin (long-lived) or runs its handshake (exec). A
    /// required plugin that fails here stops the agent's start; an optional
    /// one is offered anyway and retried.
    pub fn start(
        config: PluginConfig,
        settings: Option<&toml::Value>,
        work_dir: PathBuf,
        runtime_dir: PathBuf,
    ) -> anyhow::Result<Arc<PluginIsolator>> {
        let state_dir = work_dir.join("plugins").join(&config.name);
        let settings = settings
            .map(serde_json::to_value)
            .transpose()?
            .unwrap_or(Value::Null);
        let known = Arc::new(Known::default());
        let required = config.policy == PluginPolicy::Required;
        let (transport, started): (Box<dyn Transport>, _) = match config.mode {
            PluginMode::LongLived => {
                let notices = Arc::downgrade(&known);
                let name = config.name.clone();
                let (plugin, started) = LongLived::start(
                    config.clone(),
                    state_dir.clone(),
                    settings,
                    Box::new(move |method, params| notice(&name, &notices, method, params)),
                    !required,
                );
                let replay_known = Arc::downgrade(&known);
                plugin.set_replay(Box::new(move |call| {
                    let Some(known) = replay_known.upgrade() else {
                        return Ok(());
                    };
                    replay(&known, call)
                }));
                (Box::new(plugin), started)
            }
            PluginMode::Exec => {
                let (plugin, started) = Exec::start(config.clone(), state_dir.clone(), settings);
                (Box::new(plugin), started)
            }
        };
        if let Err(e) = started {
            if required {
                anyhow::bail!("plugin {}: {e}", config.name);
            }
            tracing::error!(plugin = %config.name, "optional plugin not started (retrying): {e}");
        }
        let gc_interval = config.gc_interval_seconds;
        let isolator = Arc::new(PluginIsolator {
            config,
            transport,
            known,
            state_dir,
            berth_dirs: vec![work_dir, runtime_dir],
        });
        if gc_interval > 0.0 {
            start_gc(
                Arc::downgrade(&isolator),
                Duration::from_secs_f64(gc_interval),
            );
        }
        Ok(isolator)
    }

    /// Calls `method` and reads its result as `T`, under the policy: a
    /// failure of the plugin (not an error it answers) of an optional
    /// plugin is logged and `skip` returned.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        skip: impl FnOnce() -> T,
    ) -> Result<T, IsolatorError> {
        let name = &self.config.name;
        let started = std::time::Instant::now();
        let result = self.transport.call(method, params);
        tracing::debug!(plugin = %name, method, elapsed_us = started.elapsed().as_micros() as u64, "plugin call");
        let failure = match result {
            Ok(value) => match serde_json::from_value(value) {
                Ok(result) => return Ok(result),
                Err(e) => format!("plugin {name}: its {method} result is not valid: {e}"),
            },
            Err(CallError::Rpc(e)) if e.code == code::METHOD_NOT_FOUND => return Ok(skip()),
            Err(CallError::Rpc(e)) => return Err(protocol::isolator_error(name, e)),
            Err(CallError::Failed(e)) => e,
        };
        self.failed(method, failure).map(|()| skip())
    }

    /// A failure of the plugin: an error if it is required, else logged.
    fn failed(&self, method: &str, failure: String) -> Result<(), IsolatorError> {
        match self.config.policy {
            PluginPolicy::Required => Err(IsolatorError::Other(failure)),
            PluginPolicy::Optional => {
                tracing::warn!(plugin = %self.config.name, "optional plugin skipped in {method}: {failure}");
                Ok(())
            }
        }
    }

    fn id_params(id: &ContainerId) -> Value {
        params(&IdParams { id })
    }

    /// The containers the agent knows of, for `gc`.
    fn gc(&self) {
        if !self.known.recovered.load(Ordering::SeqCst) {
            return;
        }
        let live: Vec<ContainerId> = lock(&self.known.containers).keys().cloned().collect();
        match self.call::<GcResult>("gc", params(&GcParams { live: &live }), GcResult::default) {
            Ok(result) if !result.reaped.is_empty() => {
                tracing::info!(plugin = %self.config.name, reaped = ?result.reaped, "plugin gc");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(plugin = %self.config.name, "gc: {e}"),
        }
    }
}

/// A request's params as JSON (the protocol's types always serialize).
fn params<T: serde::Serialize>(params: &T) -> Value {
    serde_json::to_value(params).unwrap_or(Value::Null)
}

/// A notification from the plugin.
fn notice(plugin: &str, known: &Weak<Known>, method: &str, params: Value) {
    let Some(known) = known.upgrade() else {
        return;
    };
    if method != "limitation" {
        tracing::warn!(
            plugin,
            "unknown notification {:?}",
            protocol::bounded(method, 64)
        );
        return;
    }
    let notice: LimitationNotice = match serde_json::from_value(params) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(plugin, "a limitation notice berth refuses: {e}");
            return;
        }
    };
    let resource_ok = !notice.resource.is_empty()
        && notice.resource.len() <= 64
        && notice
            .resource
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !resource_ok {
        tracing::warn!(plugin, "a limitation with a bad resource name refused");
        return;
    }
    let reporter = lock(&known.watched).get(&notice.id).cloned();
    match reporter {
        Some(reporter) => reporter.report(Limitation::new(
            notice.resource,
            protocol::bounded(&notice.message, 1024),
        )),
        None => tracing::warn!(plugin, id = %notice.id, "a limitation for a container not watched"),
    }
}

/// After a restart of the plugin: `recover` with what it knew, and its
/// watches again.
fn replay(known: &Known, call: super::long_lived::DirectCall) -> Result<(), String> {
    let containers: Vec<RecoveredContainer> = lock(&known.containers).values().cloned().collect();
    let recover = params(&RecoverParams {
        containers: &containers,
        orphans: &[],
        replay: true,
    });
    call("recover", recover).map_err(|e| format!("recover: {e}"))?;
    let watched: Vec<ContainerId> = lock(&known.watched).keys().cloned().collect();
    for id in watched {
        call("watch", params(&IdParams { id: &id })).map_err(|e| format!("watch {id}: {e}"))?;
    }
    Ok(())
}

fn start_gc(isolator: Weak<PluginIsolator>, interval: Duration) {
    let _ = std::thread::Builder::new()
        .name("berth-plugin-gc".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            match isolator.upgrade() {
                Some(isolator) => isolator.gc(),
                None => return,
            }
        });
}

impl Isolator for PluginIsolator {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn describe(&self) -> Map<String, Value> {
        let mut plugin = self.transport.describe();
        let mode = match self.config.mode {
            PluginMode::LongLived => "long-lived",
            PluginMode::Exec => "exec",
        };
        let policy = match self.config.policy {
            PluginPolicy::Required => "required",
            PluginPolicy::Optional => "optional",
        };
        plugin.insert("mode".into(), mode.into());
        plugin.insert("policy".into(), policy.into());
        plugin.insert("path".into(), self.config.path.display().to_string().into());
        let hello = self.transport.handshake();
        plugin.insert(
            "protocol_version".into(),
            hello.as_ref().map(|h| h.version).into(),
        );
        plugin.insert(
            "version".into(),
            hello.as_ref().and_then(|h| h.plugin_version.clone()).into(),
        );
        plugin.insert(
            "schema".into(),
            hello
                .as_ref()
                .and_then(|h| h.section.as_ref())
                .and_then(|s| s.schema.clone())
                .unwrap_or(Value::Null),
        );
        let mut map = hello.map(|h| h.supports).unwrap_or_default();
        map.insert("plugin".into(), Value::Object(plugin));
        map
    }

    fn resource_section(&self) -> Option<ResourceSection> {
        Some(ResourceSection::new(self.config.name.clone()))
    }

    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        {
            let mut known = lock(&self.known.containers);
            for c in containers {
                known.insert(c.config.id.clone(), c.clone());
            }
        }
        self.known.recovered.store(true, Ordering::SeqCst);
        let recover = params(&RecoverParams {
            containers,
            orphans,
            replay: false,
        });
        self.call::<Value>("recover", recover, || Value::Null)
            .map(drop)
    }

    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        self.call::<Value>("validate", params(&ValidateParams { config }), || {
            Value::Null
        })
        .map(drop)
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        lock(&self.known.containers).insert(
            id.clone(),
            RecoveredContainer {
                config: config.clone(),
                pid: None,
            },
        );
        let contribution: Contribution = self.call(
            "prepare",
            params(&PrepareParams { id, config }),
            Contribution::default,
        )?;
        let berth: Vec<&std::path::Path> = self.berth_dirs.iter().map(PathBuf::as_path).collect();
        let dirs = HostDirs {
            berth: &berth,
            plugin_state: &self.state_dir,
        };
        match contribution::check(&self.config.name, &contribution, &dirs) {
            Ok(()) => Ok(contribution),
            Err(refused) => self
                .failed("prepare", refused.to_string())
                .map(|()| Contribution::default()),
        }
    }

    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        if let Some(c) = lock(&self.known.containers).get_mut(id) {
            c.pid = Some(pid);
        }
        self.call::<Value>("isolate", params(&IsolateParams { id, pid }), || {
            Value::Null
        })
        .map(drop)
    }

    fn watch(&self, id: &ContainerId, reporter: LimitationReporter) -> Result<(), IsolatorError> {
        if self.config.mode == PluginMode::Exec {
            // No process outlives the call to report one: exec plugins
            // report limitations from `exit_limitation` only.
            return Ok(());
        }
        lock(&self.known.watched).insert(id.clone(), reporter);
        self.call::<Value>("watch", Self::id_params(id), || Value::Null)
            .map(drop)
    }

    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        self.call::<Value>("update", params(&UpdateParams { id, resources }), || {
            Value::Null
        })?;
        if let Some(c) = lock(&self.known.containers).get_mut(id) {
            c.config.resources = resources.clone();
        }
        Ok(())
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        self.call("usage", Self::id_params(id), Usage::new)
    }

    /// Nothing, and no call: no metric shows a plugin's figures, and a
    /// scrape of many containers must not wait on a plugin for each.
    fn scrape(&self, _id: &ContainerId) -> Result<Usage, IsolatorError> {
        Ok(Usage::new())
    }

    fn status(&self, id: &ContainerId) -> Result<Status, IsolatorError> {
        self.call("status", Self::id_params(id), Status::new)
    }

    fn exit_limitation(&self, id: &ContainerId) -> Result<Option<Limitation>, IsolatorError> {
        let result: ExitLimitationResult = self.call(
            "exit_limitation",
            Self::id_params(id),
            ExitLimitationResult::default,
        )?;
        Ok(result.limitation)
    }

    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        lock(&self.known.watched).remove(id);
        let result = self.call::<Value>("cleanup", Self::id_params(id), || Value::Null);
        // Known no more either way: if the call failed, the plugin's next
        // `gc` does not list it and it may reap it then.
        lock(&self.known.containers).remove(id);
        result.map(drop)
    }
}
