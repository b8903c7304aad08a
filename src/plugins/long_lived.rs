//! The long-lived transport: one plugin process, started and supervised by
//! the agent, newline-delimited JSON-RPC 2.0 over its stdin and stdout.
//!
//! Calls are multiplexed by id, so a call the plugin never answers blocks
//! only its caller, until its timeout. When the process dies (or sends a
//! line berth refuses) every call in flight ends at once with an error
//! naming the plugin and the method, and a supervisor thread starts it
//! again with back-off (100 ms doubling to 5 s): handshake, then the
//! `replay` hook (`recover` of the containers it knew, and their watches),
//! and only then are calls let through again.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::config::{PluginConfig, PluginPolicy};
use super::protocol::{self, HandshakeParams, HandshakeResult, Incoming, Request};
use super::transport::{self, CallError, Transport};

/// Calls the current process directly (the replay hook runs before calls
/// are let through).
pub type DirectCall<'a> = &'a dyn Fn(&str, Value) -> Result<Value, CallError>;
/// Runs after every successful handshake of a restarted process.
pub type ReplayHook = Box<dyn Fn(DirectCall) -> Result<(), String> + Send + Sync>;
/// Receives the plugin's notifications (`limitation`).
pub type NoticeHook = Box<dyn Fn(&str, Value) + Send + Sync>;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

type Pending = HashMap<u64, (String, mpsc::Sender<Result<Value, CallError>>)>;

struct Process {
    pid: u32,
    /// Lines to its writer thread, which owns its stdin: a plugin that
    /// stops reading blocks that thread, never a caller (who times out).
    requests: Mutex<mpsc::Sender<Vec<u8>>>,
    /// `None` once the process is dead: no call may start on it.
    pending: Mutex<Option<Pending>>,
}

#[derive(Default)]
struct Status {
    state: &'static str,
    process: Option<Arc<Process>>,
    handshake: Option<HandshakeResult>,
    last_error: Option<String>,
    restarts: u64,
}

struct Shared {
    config: PluginConfig,
    state_dir: PathBuf,
    settings: Value,
    status: Mutex<Status>,
    ready: Condvar,
    next_id: AtomicU64,
    replay: Mutex<Option<ReplayHook>>,
    notice: NoticeHook,
    /// Tells the supervisor thread the current process died.
    died: Mutex<Option<mpsc::Sender<()>>>,
}

/// A supervised long-lived plugin.
pub struct LongLived {
    shared: Arc<Shared>,
}

impl LongLived {
    /// Starts the plugin and does the handshake. On failure the error is
    /// returned and (for an optional plugin, which the agent then still
    /// offers) the supervisor keeps trying in the background.
    pub fn start(
        config: PluginConfig,
        state_dir: PathBuf,
        settings: Value,
        notice: NoticeHook,
        keep_trying: bool,
    ) -> (LongLived, Result<(), String>) {
        let (died, deaths) = mpsc::channel();
        let shared = Arc::new(Shared {
            config,
            state_dir,
            settings,
            status: Mutex::new(Status {
                state: "starting",
                ..Default::default()
            }),
            ready: Condvar::new(),
            next_id: AtomicU64::new(1),
            replay: Mutex::new(None),
            notice,
            died: Mutex::new(Some(died)),
        });
        // Every process is spawned by one thread that lives as long as the
        // agent: the processes die with it (PR_SET_PDEATHSIG follows the
        // spawning thread), even when the agent is SIGKILLed.
        let (first, started) = mpsc::channel();
        let supervisor = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("berth-plugin-{}", supervisor.config.name))
            .spawn(move || supervise(supervisor, deaths, first, keep_trying));
        let started = match spawned {
            Ok(_) => started
                .recv()
                .unwrap_or_else(|_| Err("the supervisor thread ended".into())),
            Err(e) => Err(format!("start the supervisor thread: {e}")),
        };
        if let Err(e) = &started {
            let mut status = lock(&shared.status);
            status.state = "failed";
            status.last_error = Some(e.clone());
        }
        (LongLived { shared }, started)
    }

    /// Sets the hook run after a restart's handshake.
    pub fn set_replay(&self, hook: ReplayHook) {
        *lock(&self.shared.replay) = Some(hook);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport for LongLived {
    fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let shared = &self.shared;
        let timeout = shared.config.timeouts.of(method);
        let deadline = Instant::now() + timeout;
        let process = {
            let mut status = lock(&shared.status);
            loop {
                if let (true, Some(p)) = (status.state == "ready", &status.process) {
                    break p.clone();
                }
                let now = Instant::now();
                // An optional plugin is skipped while down; a required one
                // is waited for (a restart takes ~100 ms) up to the timeout.
                if now >= deadline || shared.config.policy == PluginPolicy::Optional {
                    return Err(CallError::Failed(format!(
                        "plugin {} is not running ({}{}), {method} not sent",
                        shared.config.name,
                        status.state,
                        status
                            .last_error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    )));
                }
                status = shared
                    .ready
                    .wait_timeout(status, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        call_on(
            shared,
            &process,
            method,
            params,
            deadline.saturating_duration_since(Instant::now()),
        )
    }

    fn handshake(&self) -> Option<HandshakeResult> {
        lock(&self.shared.status).handshake.clone()
    }

    fn describe(&self) -> Map<String, Value> {
        let status = lock(&self.shared.status);
        let mut map = Map::new();
        map.insert("state".into(), status.state.into());
        map.insert("pid".into(), status.process.as_ref().map(|p| p.pid).into());
        map.insert("restarts".into(), status.restarts.into());
        map.insert("last_error".into(), status.last_error.clone().into());
        map
    }
}

/// One call on one process.
fn call_on(
    shared: &Shared,
    process: &Process,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, CallError> {
    let name = &shared.config.name;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let mut line = serde_json::to_vec(&Request::new(id, method, params))
        .map_err(|e| CallError::Failed(format!("plugin {name}: encode {method}: {e}")))?;
    if line.len() > protocol::MAX_LINE {
        return Err(CallError::Failed(format!(
            "plugin {name}: the {method} request is longer than {} bytes",
            protocol::MAX_LINE
        )));
    }
    line.push(b'\n');
    let (tx, rx) = mpsc::channel();
    match lock(&process.pending).as_mut() {
        Some(pending) => {
            pending.insert(id, (method.to_string(), tx));
        }
        None => {
            return Err(CallError::Failed(format!(
                "plugin {name} died before {method} was sent"
            )))
        }
    }
    let forget = || {
        if let Some(pending) = lock(&process.pending).as_mut() {
            pending.remove(&id);
        }
    };
    if lock(&process.requests).send(line).is_err() {
        forget();
        return Err(CallError::Failed(format!(
            "plugin {name}: send {method}: its input is closed"
        )));
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            forget();
            Err(CallError::Failed(format!(
                "plugin {name}: {method} timed out after {:.1}s",
                timeout.as_secs_f64()
            )))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(CallError::Failed(format!(
            "plugin {name} died during {method}"
        ))),
    }
}

/// Spawns the process, handshakes, replays, and makes it the current one.
fn start_once(shared: &Arc<Shared>) -> Result<(), String> {
    let config = &shared.config;
    std::fs::create_dir_all(&shared.state_dir)
        .map_err(|e| format!("create {}: {e}", shared.state_dir.display()))?;
    let mut command = Command::new(&config.path);
    die_with_spawner(&mut command);
    let mut child = command
        .args(&config.args)
        .envs(&config.env)
        .env("BERTH_PLUGIN_NAME", &config.name)
        .env("BERTH_PLUGIN_STATE_DIR", &shared.state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start {}: {e}", config.path.display()))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let (requests, lines) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("berth-plugin-{}-in", config.name))
        .spawn(move || write_requests(stdin, lines))
        .map_err(|e| format!("start the writer thread: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let process = Arc::new(Process {
        pid: child.id(),
        requests: Mutex::new(requests),
        pending: Mutex::new(Some(HashMap::new())),
    });
    {
        let shared = shared.clone();
        let process = process.clone();
        std::thread::Builder::new()
            .name(format!("berth-plugin-{}", config.name))
            .spawn(move || read_replies(shared, process, child, stdout))
            .map_err(|e| format!("start the reader thread: {e}"))?;
    }
    let hello = HandshakeParams {
        versions: protocol::VERSIONS.to_vec(),
        name: config.name.clone(),
        berth_version: env!("CARGO_PKG_VERSION").into(),
        settings: shared.settings.clone(),
        state_dir: shared.state_dir.display().to_string(),
    };
    let timeout = config.timeouts.of("handshake");
    let result = transport::handshake(&config.name, &hello, |params| {
        call_on(shared, &process, "handshake", params, timeout)
    });
    let result = match result {
        Ok(result) => result,
        Err(e) => {
            kill(&process);
            return Err(e);
        }
    };
    if let Some(replay) = lock(&shared.replay).as_ref() {
        let direct = |method: &str, params: Value| {
            call_on(shared, &process, method, params, config.timeouts.of(method))
        };
        if let Err(e) = replay(&direct) {
            tracing::error!(plugin = %config.name, "replay after restart: {e}");
            lock(&shared.status).last_error = Some(format!("replay after restart: {e}"));
        }
    }
    let mut status = lock(&shared.status);
    if lock(&process.pending).is_none() {
        return Err(format!(
            "plugin {} died right after its handshake",
            config.name
        ));
    }
    tracing::info!(plugin = %config.name, pid = process.pid, version = result.version, "plugin ready");
    status.state = "ready";
    status.process = Some(process);
    status.handshake = Some(result);
    drop(status);
    shared.ready.notify_all();
    Ok(())
}

fn kill(process: &Process) {
    let pending = lock(&process.pending);
    if pending.is_some() {
        // SAFETY: kill(2) of our own child, which its reader thread reaps
        // only after it took `pending` (held here): the pid is still ours.
        unsafe { libc::kill(process.pid as i32, libc::SIGKILL) };
    }
}

/// The reader thread of one process: dispatches replies and notices until
/// the process ends or breaks the protocol, then fails what is in flight
/// and, if it was the current process, has it restarted.
fn read_replies(
    shared: Arc<Shared>,
    process: Arc<Process>,
    mut child: Child,
    stdout: std::process::ChildStdout,
) {
    let name = shared.config.name.clone();
    let mut input = BufReader::new(stdout);
    let why = loop {
        let line = match transport::read_line(&mut input) {
            Ok(Some(line)) => line,
            Ok(None) => break "it exited".to_string(),
            Err(e) => break format!("refused: {e}"),
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let incoming: Incoming = match serde_json::from_slice(&line) {
            Ok(i) => i,
            Err(e) => break format!("refused a line that is not JSON-RPC: {e}"),
        };
        if incoming.jsonrpc != "2.0" {
            break "refused a line without jsonrpc 2.0".to_string();
        }
        match (incoming.id, incoming.method) {
            (None, Some(method)) => {
                (shared.notice)(&method, incoming.params.unwrap_or(Value::Null));
            }
            (Some(id), None) => {
                let Some(id) = id.as_u64() else {
                    break format!("refused a reply with id {id}");
                };
                let waiter = lock(&process.pending).as_mut().and_then(|p| p.remove(&id));
                let Some((_, tx)) = waiter else {
                    // A reply to a call that timed out.
                    continue;
                };
                let result = match (incoming.result, incoming.error) {
                    (Some(result), None) => Ok(result),
                    (None, Some(error)) => Err(CallError::Rpc(error)),
                    _ => Err(CallError::Failed(format!(
                        "plugin {name}: a reply needs exactly one of result and error"
                    ))),
                };
                let _ = tx.send(result);
            }
            _ => break "refused a line that is neither a reply nor a notification".to_string(),
        }
    };
    kill(&process);
    let pending = lock(&process.pending).take().unwrap_or_default();
    let exit = child
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    let why = format!("{why} ({exit})");
    for (_, (method, tx)) in pending {
        let _ = tx.send(Err(CallError::Failed(format!(
            "plugin {name} died during {method}: {why}"
        ))));
    }
    let current = {
        let mut status = lock(&shared.status);
        let current = status
            .process
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &process));
        if current {
            status.state = "restarting";
            status.process = None;
            status.last_error = Some(format!("died: {why}"));
        }
        current
    };
    if current {
        tracing::error!(plugin = %name, "plugin died: {why}; restarting");
        if let Some(died) = lock(&shared.died).as_ref() {
            let _ = died.send(());
        }
    }
}

/// The writer thread of one process: until the process is gone (a write
/// fails) or dropped (the channel closes).
fn write_requests(mut stdin: ChildStdin, lines: mpsc::Receiver<Vec<u8>>) {
    for line in lines {
        if stdin.write_all(&line).is_err() {
            return;
        }
    }
}

/// The supervisor thread: the first start (its result to `first`), then a
/// restart after each death, for the agent's life.
fn supervise(
    shared: Arc<Shared>,
    deaths: mpsc::Receiver<()>,
    first: mpsc::Sender<Result<(), String>>,
    keep_trying: bool,
) {
    let started = start_once(&shared);
    let up = started.is_ok();
    let _ = first.send(started);
    if !up {
        if !keep_trying {
            return;
        }
        restart(&shared);
    }
    while deaths.recv().is_ok() {
        restart(&shared);
    }
}

/// Starts the plugin again, with back-off, until it is up.
fn restart(shared: &Arc<Shared>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        std::thread::sleep(backoff);
        lock(&shared.status).restarts += 1;
        match start_once(shared) {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(plugin = %shared.config.name, "restart: {e}");
                let mut status = lock(&shared.status);
                status.state = "restarting";
                status.last_error = Some(e);
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Makes `command`'s process get SIGKILL when the thread spawning it ends
/// (with the agent).
pub(super) fn die_with_spawner(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl(2), which is async-signal-safe, with constant arguments.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
