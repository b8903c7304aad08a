//! A real agent for integration tests: temp work and runtime dirs, a socket
//! of its own, and a cgroup root below the test's own cgroup, all removed
//! when the test ends.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth::cli::client::{Client, ClientError};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

/// Returns from the test (listed and counted as skipped by `.ci/run`, see
/// `berth_cgroups::testing::skip`) unless running as root. Under CI a skip is a failure:
/// there the real tests must run.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            $crate::common::skip(
                concat!(file!(), ":", line!()),
                "needs root (namespaces, mounts, cgroups)",
            );
            return;
        }
    };
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips a test that CI must run (it has root and the packages): under
/// `CI=true` that is a failure.
pub fn skip(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI: {why}");
    }
    berth_cgroups::testing::skip(test, why);
}

/// Skips a test whose kernel feature no machine of ours has (CI included):
/// said loudly and counted, never a failure.
pub fn skip_missing_kernel_feature(test: &str, why: &str) {
    berth_cgroups::testing::skip(test, why);
}

pub mod cgroup;

/// The environment variable carrying an embedded agent's arguments, one a
/// line ([`Agent::start_embedded`]).
pub const EMBEDDED_AGENT_ARGS: &str = "BERTH_EMBEDDED_AGENT_ARGS";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Agent {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub work_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub cgroup_root: String,
    child: Option<Child>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    /// A program embedding the agent (and its arguments) instead of `berth agent`.
    program: Option<(PathBuf, Vec<String>)>,
    runtime: tokio::runtime::Runtime,
}

/// A response from the API.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Agent {
    /// Starts an agent offering its default isolators.
    pub fn start() -> Agent {
        Agent::start_with(&[])
    }

    /// Starts an agent embedded in this test binary: its test `entry` runs
    /// the agent with the arguments in [`EMBEDDED_AGENT_ARGS`] (see
    /// `tests/open_contract.rs`), so a test can offer isolators of its own.
    pub fn start_embedded(entry: &str, toml: &str) -> Agent {
        let mut agent = Agent::unstarted();
        let path = agent.dir.path().join("agent.toml");
        std::fs::write(&path, toml).unwrap();
        agent.extra = vec!["--config".into(), path.display().to_string()];
        agent.program = Some((
            std::env::current_exe().unwrap(),
            vec![
                "--exact".into(),
                entry.into(),
                "--nocapture".into(),
                "--test-threads=1".into(),
            ],
        ));
        agent.spawn();
        agent
    }

    /// Starts an agent with a TOML config file (flags the fixture passes,
    /// such as dirs and the cgroup root, still override it).
    pub fn start_with_config(toml: &str) -> Agent {
        let mut agent = Agent::unstarted();
        let path = agent.dir.path().join("berth.toml");
        std::fs::write(&path, toml).unwrap();
        agent.extra = vec!["--config".into(), path.display().to_string()];
        agent.spawn();
        agent
    }

    /// Starts an agent whose work dir is `work_dir`, with a TOML config.
    pub fn start_in(work_dir: &Path, toml: &str) -> Agent {
        let mut agent = Agent::unstarted();
        agent.work_dir = work_dir.to_path_buf();
        let path = agent.dir.path().join("berth.toml");
        std::fs::write(&path, toml).unwrap();
        agent.extra = vec!["--config".into(), path.display().to_string()];
        agent.spawn();
        agent
    }

    /// Starts an agent with extra flags.
    pub fn start_with(extra: &[&str]) -> Agent {
        let mut agent = Agent::unstarted();
        agent.extra = extra.iter().map(|s| s.to_string()).collect();
        agent.spawn();
        agent
    }

    /// Starts an agent with extra environment variables and a TOML config.
    pub fn start_with_env(env: &[(&str, &str)], toml: &str) -> Agent {
        let mut agent = Agent::unstarted();
        let path = agent.dir.path().join("berth.toml");
        std::fs::write(&path, toml).unwrap();
        agent.extra = vec!["--config".into(), path.display().to_string()];
        agent.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        agent.spawn();
        agent
    }

    /// The agent process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn unstarted() -> Agent {
        enter_agent_leaf();
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .unwrap();
        // Containers running as other users reach their sandbox through it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup_root = format!("berth-test-{}-{n}", std::process::id());
        Agent {
            socket: dir.path().join("berth.sock"),
            work_dir: dir.path().join("work"),
            runtime_dir: dir.path().join("run"),
            cgroup_root,
            dir,
            child: None,
            extra: Vec::new(),
            env: Vec::new(),
            program: None,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--socket".into(),
            self.socket.display().to_string(),
            "--work-dir".into(),
            self.work_dir.display().to_string(),
            "--runtime-dir".into(),
            self.runtime_dir.display().to_string(),
            "--cgroup-root".into(),
            self.cgroup_root.clone(),
            "--shim".into(),
            env!("CARGO_BIN_EXE_berth-shim").into(),
        ];
        args.extend(self.extra.iter().cloned());
        let mut command = match &self.program {
            // The embedding program reads the agent's arguments from the
            // environment (its own argv belongs to the test harness).
            Some((program, prefix)) => {
                let mut command = Command::new(program);
                command
                    .args(prefix)
                    .env(EMBEDDED_AGENT_ARGS, args.join("\n"));
                command
            }
            None => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
                command.args(&args);
                command
            }
        };
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start berth agent");
        self.child = Some(child);
        // Generous: a VM under emulation spawns ~75 times slower.
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent did not listen within 120s:\n{}", self.log());
    }

    /// `<work_dir>/containers/<id>`: everything of a container that
    /// outlives it.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.work_dir.join("containers").join(id)
    }

    /// A container's sandbox on the host, the only part mounted into it.
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("sandbox")
    }

    /// A container's log files on the host, beside its sandbox.
    pub fn log_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("logs")
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Stops the agent process (SIGKILL: containers must not care).
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again on the same dirs, with the same flags.
    pub fn restart(&mut self) {
        self.kill_agent();
        self.spawn();
    }

    /// Starts the agent after `kill_agent` or `stop_agent`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the agent still runs");
        self.spawn();
    }

    /// Stops the agent with SIGTERM and waits for it to exit.
    pub fn stop_agent(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the agent runs");
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// Runs the `berth` CLI against this agent.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    /// Calls the API with a JSON body.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let raw = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.api_raw(method, path, raw)
    }

    /// Calls the API with raw body bytes.
    pub fn api_raw(&self, method: &str, path: &str, body: Vec<u8>) -> Answer {
        let client = Client::new(&self.socket);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        self.runtime.block_on(async {
            match client.send_bytes(method, path, Bytes::from(body)).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let raw = response
                        .into_body()
                        .collect()
                        .await
                        .unwrap()
                        .to_bytes()
                        .to_vec();
                    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                    Answer { status, body, raw }
                }
                Err(ClientError::Api {
                    status,
                    code,
                    message,
                }) => Answer {
                    status: status.as_u16(),
                    body: serde_json::json!({"error": {"code": code, "message": message}}),
                    raw: Vec::new(),
                },
                Err(e) => panic!("API call failed: {e}"),
            }
        })
    }

    /// Launches a container through the API; panics unless 201.
    pub fn launch(&self, request: Value) -> Value {
        let answer = self.api("POST", "/v1/containers", Some(request));
        assert_eq!(
            answer.status,
            201,
            "launch: {:?}\n{}",
            answer.body,
            self.log()
        );
        answer.body
    }

    /// What `GET /v1/info` says of isolator `name`; panics unless offered.
    pub fn isolator_info(&self, name: &str) -> Value {
        let info = self.api("GET", "/v1/info", None);
        assert_eq!(info.status, 200, "{:?}", info.body);
        info.body["isolators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not offered: {}\n{}", info.body, self.log()))
            .clone()
    }

    /// Creates a named volume through the API; panics unless 201.
    pub fn create_volume(&self, body: Value) -> Value {
        let answer = self.api("POST", "/v1/volumes", Some(body));
        assert_eq!(answer.status, 201, "{:?}\n{}", answer.body, self.log());
        answer.body
    }

    /// Waits for a container to end and returns it.
    pub fn wait(&self, id: &str) -> Value {
        let answer = self.api("GET", &format!("/v1/containers/{id}/wait"), None);
        assert_eq!(answer.status, 200, "wait: {:?}", answer.body);
        answer.body
    }

    /// A container's stdout so far.
    pub fn stdout(&self, id: &str) -> String {
        let answer = self.api(
            "GET",
            &format!("/v1/containers/{id}/logs?stream=stdout"),
            None,
        );
        assert_eq!(answer.status, 200);
        String::from_utf8_lossy(&answer.raw).into_owned()
    }

    /// The cgroup directory of a container (or of the root, with `None`)
    /// for a v1 controller.
    pub fn cgroup_dir(&self, controller: &str, id: Option<&str>) -> PathBuf {
        let root = self.cgroup_layout();
        let parsed: berth_cgroups::Controller = controller.parse().unwrap();
        let dir = root
            .dir(parsed)
            .unwrap_or_else(|e| panic!("no {controller} hierarchy: {e}"));
        id.map_or_else(|| dir.to_path_buf(), |id| dir.join(id))
    }

    /// Waits until container `id`'s cgroup dir is gone from every
    /// hierarchy: the agent removes them after it has told the end
    /// (decision 0051), so a `wait` can return while they are still there.
    /// What reuses their paths (`runc run` of the container's bundle) must
    /// not race that removal.
    pub fn wait_cgroups_gone(&self, id: &str) {
        let layout = self.cgroup_layout();
        let dirs: Vec<PathBuf> = berth_cgroups::Controller::ALL
            .iter()
            .filter_map(|c| layout.dir(*c).ok())
            .map(|dir| dir.join(id))
            .collect();
        eventually(
            Duration::from_secs(5),
            "the container's cgroups to go",
            || dirs.iter().all(|dir| !dir.exists()).then_some(()),
        );
    }

    /// The agent's cgroup root as berth's own layer sees it, detected anew:
    /// the net_cls isolator may have mounted its hierarchy since.
    pub fn cgroup_layout(&self) -> berth_cgroups::CgroupRoot {
        berth_cgroups::CgroupRoot::detect(&self.cgroup_root).expect("detect the cgroup layout")
    }

    /// The entries of the agent's `containers` dirs and cgroup root: what a
    /// failed launch must not leave behind.
    /// The entries of the work dir's `containers/`, except the agent's
    /// spare trees (`.spare-N`, made ahead of launches), which must hold
    /// nothing but empty directories and empty files (their placeholders):
    /// one holding anything else is listed too.
    pub fn container_dirs(&self) -> Vec<PathBuf> {
        /// Dirs and empty files only: a spare's placeholders hold nothing
        /// until a launch takes it.
        fn nothing_in(dir: &std::path::Path) -> bool {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.flatten().all(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => nothing_in(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().is_ok_and(|m| m.len() == 0),
                    _ => false,
                })
            })
        }
        std::fs::read_dir(self.work_dir.join("containers"))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|path| {
                        let name = path.file_name().unwrap().to_string_lossy();
                        !(name.starts_with(".spare-") && nothing_in(path))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = (self.container_dirs().iter())
            .map(|p| p.display().to_string())
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.runtime_dir.join("containers")) {
            found.extend(entries.map(|e| e.unwrap().path().display().to_string()));
        }
        for controller in [
            "cpu", "cpuacct", "memory", "blkio", "net_cls", "devices", "pids",
        ] {
            if !self.cgroup_layout().has(controller.parse().unwrap()) {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(self.cgroup_dir(controller, None)) {
                found.extend(
                    entries
                        .map(|e| e.unwrap())
                        .filter(|e| e.file_type().unwrap().is_dir())
                        .map(|e| e.path().display().to_string()),
                );
            }
        }
        found
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_some() {
            let list = self.api("GET", "/v1/containers", None);
            for container in list.body.as_array().into_iter().flatten() {
                let id = container["id"].as_str().unwrap_or_default();
                let _ = self.api("DELETE", &format!("/v1/containers/{id}?force=true"), None);
            }
        }
        self.kill_agent();
        // Every hierarchy, not only the ones berth uses: runc (the interop
        // test) creates the cgroup path in all of them.
        for hierarchy in own_hierarchy_dirs() {
            remove_tree(&hierarchy.join(&self.cgroup_root));
        }
    }
}

/// Removes a cgroup directory and every cgroup below it, deepest first.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// This process's own cgroup directory in every mounted hierarchy.
pub fn own_hierarchy_dirs() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut dirs = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        for mount in mountinfo.lines() {
            let fields: Vec<&str> = mount.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (fstype, options) = (
                fields.get(dash + 1).copied(),
                fields.get(dash + 3).copied().unwrap_or(""),
            );
            let matches = match fstype {
                Some("cgroup2") => names.is_empty(),
                Some("cgroup") => {
                    !names.is_empty()
                        && names.split(',').all(|n| options.split(',').any(|o| o == n))
                }
                _ => false,
            };
            if matches {
                let mut dir = Path::new(fields[4]).join(path.trim_start_matches('/'));
                // In the agent's leaf (cgroup v2 delegation): the roots are
                // beside it, below the delegated cgroup.
                if fstype == Some("cgroup2")
                    && dir
                        .file_name()
                        .is_some_and(|n| n == berth_cgroups::AGENT_LEAF)
                {
                    dir.pop();
                }
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// On cgroup v2 in a cgroup other than the root (a systemd service with
/// `Delegate=yes`, a session scope): moves this test process into the leaf
/// the agent uses (`<own>/berth-agent`), as the agent would itself, so that
/// the agents it starts find their delegated cgroup free of processes and
/// can enable controllers below it. Once per process.
pub fn enter_agent_leaf() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(h) = berth_cgroups::Hierarchies::detect() else {
            return;
        };
        if h.mode() != berth_cgroups::CgroupMode::V2 {
            return;
        }
        let Ok(own) = h.own_dir(berth_cgroups::Controller::Memory) else {
            return;
        };
        let is_root = !own.join("cgroup.type").exists();
        if is_root
            || own
                .file_name()
                .is_some_and(|n| n == berth_cgroups::AGENT_LEAF)
        {
            return;
        }
        let leaf = own.join(berth_cgroups::AGENT_LEAF);
        let _ = std::fs::create_dir(&leaf);
        std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
            .unwrap_or_else(|e| panic!("move the test into {}: {e}", leaf.display()));
    });
}

/// How much longer than on a normal machine a condition may take to hold:
/// `BERTH_TEST_TIME_SCALE` (a whole number, default 1).
pub fn time_scale() -> u32 {
    std::env::var("BERTH_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// Polls `f` until it returns `Some`, or panics after `timeout` times
/// `BERTH_TEST_TIME_SCALE` (default 1; the emulated v2 VM sets it: its
/// guest runs ~12 times slower and spawns ~75 times slower).
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout * time_scale();
    loop {
        if let Some(value) = f() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `berth agent` started with `config` (written to `berth.toml`, if any),
/// then `args`, its socket, work and runtime dirs in a temp dir and the
/// shim built with the tests: for a start the test expects refused. The
/// temp dir (the socket is `s.sock` in it) and the agent's output.
pub fn agent_start_output<S: AsRef<std::ffi::OsStr>>(
    config: Option<&str>,
    args: impl IntoIterator<Item = S>,
) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_berth"));
    agent.arg("agent");
    if let Some(config) = config {
        std::fs::write(dir.path().join("berth.toml"), config).unwrap();
        agent.arg("--config").arg(dir.path().join("berth.toml"));
    }
    let out = agent
        .args(args)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--runtime-dir")
        .arg(dir.path().join("run"))
        .arg("--shim")
        .arg(env!("CARGO_BIN_EXE_berth-shim"))
        .output()
        .unwrap();
    (dir, out)
}

/// A minimal busybox root filesystem in `dir`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp", "sandbox", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (.ci/run installs it)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "ls", "id", "hostname", "touch", "sleep", "pwd", "head", "tail",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    rootfs
}

/// Debian's `runc`, or a skip naming `test` (a failure under CI).
pub fn runc(test: &str) -> Option<&'static str> {
    let found = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() {
        skip(test, "runc is not installed");
    }
    found
}

/// Runs a bundle berth wrote, unchanged, under `runc run` (then deletes
/// runc's container), and asserts that runc succeeds and prints exactly
/// `ours`, what the container printed under berth.
pub fn assert_runc_runs_the_same(runc: &str, bundle: &str, name: &str, ours: &str) {
    let runc_id = format!("berth-{name}-{}", std::process::id());
    let out = Command::new(runc)
        .args(["run", "--bundle", bundle, &runc_id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new(runc)
        .args(["delete", "--force", &runc_id])
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "runc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        ours,
        "runc and berth disagree"
    );
}
pub mod registry;
