//! The plugin side of the protocol over any [`Isolator`].

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex};

use berth_isolator::{
    ContainerConfig, ContainerId, Isolator, IsolatorError, LimitationReporter, RecoveredContainer,
    Resources,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::protocol::{self, code, HandshakeParams, RpcError};

type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// Serves `isolator` as the plugin `name` (the name in the agent's
/// `[[plugins]]`): reads requests from `input` until it ends, writes
/// replies and `limitation` notifications to `output`.
///
/// When the isolator's own section name differs from `name` (a built-in
/// served under another name), the plugin's section is handed to the
/// isolator under the isolator's name, and field names in its errors are
/// given back under the plugin's.
pub fn serve<I: Isolator + 'static>(
    isolator: I,
    name: &str,
    mut input: impl BufRead,
    output: impl Write + Send + 'static,
) -> io::Result<()> {
    let out: Out = Arc::new(Mutex::new(Box::new(output)));
    let server = Server {
        own: isolator.resource_section().map(|s| s.name),
        isolator,
        name: name.to_string(),
        out: out.clone(),
        live: Mutex::new(BTreeSet::new()),
    };
    while let Some(line) = protocol::read_line(&mut input)? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request: Value = serde_json::from_slice(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = request["method"].as_str().unwrap_or_default();
        let reply = match server.handle(method, &request["params"]) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
        };
        send(&out, &reply)?;
    }
    Ok(())
}

fn send(out: &Out, message: &Value) -> io::Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    out.write_all(&line)?;
    out.flush()
}

struct Server<I> {
    isolator: I,
    name: String,
    own: Option<String>,
    out: Out,
    live: Mutex<BTreeSet<ContainerId>>,
}

fn param<T: DeserializeOwned>(params: &Value, key: &str) -> Result<T, RpcError> {
    serde_json::from_value(params.get(key).cloned().unwrap_or(Value::Null)).map_err(|e| RpcError {
        code: -32602,
        message: format!("params.{key}: {e}"),
        data: None,
    })
}

impl<I: Isolator + 'static> Server<I> {
    /// The plugin's section under the isolator's own name.
    fn inward(&self, mut resources: Resources) -> Resources {
        if let Some(own) = self.own.as_deref().filter(|own| *own != self.name) {
            let mine = resources
                .raw_section(&self.name)
                .cloned()
                .unwrap_or_default();
            resources.set_raw_section(&self.name, Default::default());
            resources.set_raw_section(own, mine);
        }
        resources
    }

    /// A field the isolator named (`resources.pids.limit`, or a built-in's
    /// flat `resources.pids_limit`) under the plugin's section.
    fn outward(&self, own: &str, field: &str) -> String {
        let section = format!("resources.{own}");
        let rest = match field.strip_prefix(&section) {
            Some(rest) if rest.is_empty() || rest.starts_with('.') => rest.to_string(),
            _ => match field.strip_prefix("resources.") {
                Some(key) => format!(".{key}"),
                None => return field.to_string(),
            },
        };
        format!("resources.{}{rest}", self.name)
    }

    fn config(&self, params: &Value) -> Result<ContainerConfig, RpcError> {
        let mut config: ContainerConfig = param(params, "config")?;
        config.resources = self.inward(config.resources);
        Ok(config)
    }

    fn error(&self, e: IsolatorError) -> RpcError {
        let (code, data) = match &e {
            IsolatorError::InvalidConfig { field, .. } => {
                let field = match self.own.as_deref() {
                    Some(own) if own != self.name => self.outward(own, field),
                    _ => field.clone(),
                };
                (code::INVALID_CONFIG, Some(json!({ "field": field })))
            }
            IsolatorError::Conflict { .. } => (code::CONFLICT, None),
            IsolatorError::Refused { .. } => (code::REFUSED, None),
            IsolatorError::Unsupported { .. } => (code::UNSUPPORTED, None),
            IsolatorError::UnknownContainer { id } => {
                (code::UNKNOWN_CONTAINER, Some(json!({ "id": id })))
            }
            _ => (-32000, None),
        };
        let message = match &e {
            IsolatorError::InvalidConfig { message, .. } => message.clone(),
            other => other.to_string(),
        };
        RpcError {
            code,
            message,
            data,
        }
    }

    fn handle(&self, method: &str, params: &Value) -> Result<Value, RpcError> {
        let done = |r: Result<(), IsolatorError>| r.map(|()| json!({})).map_err(|e| self.error(e));
        match method {
            "handshake" => {
                let hello: HandshakeParams =
                    serde_json::from_value(params.clone()).map_err(|e| RpcError {
                        code: -32602,
                        message: e.to_string(),
                        data: None,
                    })?;
                let Some(version) = protocol::VERSIONS
                    .iter()
                    .find(|v| hello.versions.contains(v))
                else {
                    return Err(RpcError {
                        code: code::VERSION_MISMATCH,
                        message: format!(
                            "{} speaks protocol versions {:?}, berth offered {:?}",
                            self.name,
                            protocol::VERSIONS,
                            hello.versions
                        ),
                        data: None,
                    });
                };
                Ok(json!({
                    "version": version,
                    "name": self.name,
                    "plugin_version": env!("CARGO_PKG_VERSION"),
                    "section": self.own.as_ref().map(|_| json!({"name": self.name})),
                    "supports": self.isolator.describe(),
                }))
            }
            "recover" => {
                let mut containers: Vec<RecoveredContainer> = param(params, "containers")?;
                for c in &mut containers {
                    c.config.resources = self.inward(std::mem::take(&mut c.config.resources));
                }
                let orphans: Vec<ContainerId> = param(params, "orphans")?;
                self.lock_live()
                    .extend(containers.iter().map(|c| c.config.id.clone()));
                done(self.isolator.recover(&containers, &orphans))
            }
            "validate" => done(self.isolator.validate(&self.config(params)?)),
            "prepare" => {
                let id: ContainerId = param(params, "id")?;
                let config = self.config(params)?;
                self.lock_live().insert(id.clone());
                let contribution = self
                    .isolator
                    .prepare(&id, &config)
                    .map_err(|e| self.error(e))?;
                serde_json::to_value(contribution).map_err(|e| RpcError {
                    code: -32000,
                    message: e.to_string(),
                    data: None,
                })
            }
            "isolate" => done(
                self.isolator
                    .isolate(&param(params, "id")?, param(params, "pid")?),
            ),
            "watch" => {
                let id: ContainerId = param(params, "id")?;
                let out = self.out.clone();
                let watched = id.clone();
                let reporter = LimitationReporter::new(move |l| {
                    let notice = json!({"jsonrpc": "2.0", "method": "limitation", "params": {
                        "id": watched, "resource": l.resource, "message": l.message,
                    }});
                    let _ = send(&out, &notice);
                });
                done(self.isolator.watch(&id, reporter))
            }
            "update" => {
                let resources = self.inward(param(params, "resources")?);
                done(self.isolator.update(&param(params, "id")?, &resources))
            }
            "usage" => self
                .isolator
                .usage(&param(params, "id")?)
                .map(Value::Object)
                .map_err(|e| self.error(e)),
            "status" => self
                .isolator
                .status(&param(params, "id")?)
                .map(Value::Object)
                .map_err(|e| self.error(e)),
            "exit_limitation" => self
                .isolator
                .exit_limitation(&param(params, "id")?)
                .map(|l| json!({ "limitation": l }))
                .map_err(|e| self.error(e)),
            "cleanup" => {
                let id: ContainerId = param(params, "id")?;
                self.lock_live().remove(&id);
                done(self.isolator.cleanup(&id))
            }
            "gc" => {
                let live: BTreeSet<ContainerId> = param(params, "live")?;
                let leaked: Vec<ContainerId> = self
                    .lock_live()
                    .iter()
                    .filter(|id| !live.contains(*id))
                    .cloned()
                    .collect();
                let mut reaped = Vec::new();
                for id in leaked {
                    if self.isolator.cleanup(&id).is_ok() {
                        self.lock_live().remove(&id);
                        reaped.push(id);
                    }
                }
                Ok(json!({ "reaped": reaped }))
            }
            other => Err(RpcError {
                code: code::METHOD_NOT_FOUND,
                message: format!("no method {}", protocol::bounded(other, 64)),
                data: None,
            }),
        }
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, BTreeSet<ContainerId>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}
