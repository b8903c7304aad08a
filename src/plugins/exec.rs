//! The exec transport, for the simplest plugins: one process per call,
//! like CNI. berth runs `PATH ARGS... METHOD` with the JSON-RPC request on
//! stdin and reads one JSON-RPC reply from stdout; a crash or hang fails
//! only that call (the process is killed at the timeout).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

use serde_json::{Map, Value};

use super::config::PluginConfig;
use super::protocol::{self, HandshakeParams, HandshakeResult, Incoming, Request};
use super::transport::{self, CallError, Transport};

/// An exec-mode plugin.
pub struct Exec {
    config: PluginConfig,
    state_dir: PathBuf,
    next_id: AtomicU64,
    handshake: Mutex<Option<HandshakeResult>>,
    last_error: Mutex<Option<String>>,
}

impl Exec {
    /// Runs the plugin's `handshake` once.
    pub fn start(
        config: PluginConfig,
        state_dir: PathBuf,
        settings: Value,
    ) -> (Exec, Result<(), String>) {
        let exec = Exec {
            config,
            state_dir,
            next_id: AtomicU64::new(1),
            handshake: Mutex::new(None),
            last_error: Mutex::new(None),
        };
        let started = std::fs::create_dir_all(&exec.state_dir)
            .map_err(|e| format!("create {}: {e}", exec.state_dir.display()))
            .and_then(|()| {
                let hello = HandshakeParams {
                    versions: protocol::VERSIONS.to_vec(),
                    name: exec.config.name.clone(),
                    berth_version: env!("CARGO_PKG_VERSION").into(),
                    settings,
                    state_dir: exec.state_dir.display().to_string(),
                };
                transport::handshake(&exec.config.name, &hello, |p| exec.run("handshake", p))
            });
        match &started {
            Ok(result) => *lock(&exec.handshake) = Some(result.clone()),
            Err(e) => *lock(&exec.last_error) = Some(e.clone()),
        }
        let started = started.map(drop);
        (exec, started)
    }

    fn run(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let name = &self.config.name;
        let failed = |what: String| CallError::Failed(format!("plugin {name}: {method}: {what}"));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = serde_json::to_vec(&Request::new(id, method, params))
            .map_err(|e| failed(e.to_string()))?;
        let mut command = Command::new(&self.config.path);
        // The calling thread waits for it: it dies with the agent.
        super::long_lived::die_with_spawner(&mut command);
        let mut child = command
            .args(&self.config.args)
            .arg(method)
            .envs(&self.config.env)
            .env("BERTH_PLUGIN_NAME", name)
            .env("BERTH_PLUGIN_STATE_DIR", &self.state_dir)
            .env("BERTH_PLUGIN_METHOD", method)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(format!("start {}: {e}", self.config.path.display())))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        // Both ends in threads: a plugin that reads nothing or writes
        // without end blocks neither the caller nor the timeout.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&request);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let read = stdout
                .take(protocol::MAX_LINE as u64 + 1)
                .read_to_end(&mut out);
            let _ = tx.send(read.map(|_| out));
        });
        let timeout = self.config.timeouts.of(method);
        let out = match rx.recv_timeout(timeout) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("read its reply: {e}")));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "timed out after {:.1}s",
                    timeout.as_secs_f64()
                )));
            }
        };
        if out.len() > protocol::MAX_LINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "a reply longer than {} bytes",
                protocol::MAX_LINE
            )));
        }
        // Its stdout is closed: wait for the exit, still bounded.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(2)),
                Err(e) => return Err(failed(e.to_string())),
            }
        };
        let text = String::from_utf8_lossy(&out);
        let line = text.trim();
        if line.is_empty() {
            return Err(failed(format!("no reply ({status})")));
        }
        let incoming: Incoming = serde_json::from_str(line)
            .map_err(|e| failed(format!("its reply is not JSON-RPC: {e} ({status})")))?;
        if incoming.id.as_ref().and_then(Value::as_u64) != Some(id) || incoming.jsonrpc != "2.0" {
            return Err(failed(
                "its reply has the wrong id or no jsonrpc 2.0".into(),
            ));
        }
        match (incoming.result, incoming.error) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(CallError::Rpc(error)),
            _ => Err(failed(
                "a reply needs exactly one of result and error".into(),
            )),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport for Exec {
    fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let result = self.run(method, params);
        if let Err(CallError::Failed(e)) = &result {
            *lock(&self.last_error) = Some(e.clone());
        }
        result
    }

    fn handshake(&self) -> Option<HandshakeResult> {
        lock(&self.handshake).clone()
    }

    fn describe(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let state = if lock(&self.handshake).is_some() {
            "ready"
        } else {
            "failed"
        };
        map.insert("state".into(), state.into());
        map.insert("last_error".into(), lock(&self.last_error).clone().into());
        map
    }
}
