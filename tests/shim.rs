//! Runs real containers through `berth-shim`, playing the agent's side of the
//! protocol over a socketpair. Needs root.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_protocol::exit::EXIT_FILE;
use berth_protocol::logs::segment::parse_name;
use berth_protocol::messages::{GO, SYNC_FD};
use berth_protocol::{ExitRecord, FailureKind, ShimMessage};
use serde_json::{json, Value};

const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");
const TIMEOUT: Duration = Duration::from_secs(30);

/// Docker's default capability set.
const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];
/// CapBnd in /proc/PID/status for exactly [`DOCKER_CAPS`].
const DOCKER_CAPBND: &str = "00000000a80425fb";

fn skip_unless_root() -> bool {
    berth_cgroups::testing::skip_unless_root()
}

/// A container's directories on the host, laid out like the agent does.
struct Fixture {
    // Held for cleanup on drop.
    _base: tempfile::TempDir,
    bundle: PathBuf,
    sandbox: PathBuf,
    state: PathBuf,
    logs: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        // Under /var/tmp rather than /tmp: the container gets a tmpfs on
        // /tmp, and the sandbox must exist at its host path in the read-only
        // host root, as with the agent's work dir.
        let base = tempfile::Builder::new()
            .prefix("berth-shim-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        let p = base.path();
        let f = Fixture {
            bundle: p.join("bundle"),
            sandbox: p.join("sandbox"),
            state: p.join("state"),
            logs: p.join("logs"),
            _base: base,
        };
        for d in [&f.bundle, &f.sandbox, &f.state, &f.logs] {
            std::fs::create_dir_all(d).unwrap();
        }
        f
    }

    /// berth's default spec: the host's `/` read-only, the sandbox and a
    /// tmpfs /tmp writable.
    fn host_root_spec(&self, args: &[&str]) -> Value {
        let sandbox = self.sandbox.to_str().unwrap();
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "BERTH_TEST=1"],
                "cwd": sandbox,
                "capabilities": {
                    "bounding": DOCKER_CAPS, "effective": DOCKER_CAPS,
                    "permitted": DOCKER_CAPS, "inheritable": [], "ambient": []
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "/", "readonly": true},
            "hostname": "berth-test",
            "mounts": standard_mounts(&[
                json!({"destination": sandbox, "type": "bind", "source": sandbox,
                       "options": ["rbind", "rw", "rprivate"]}),
                json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "mode=1777"]}),
            ]),
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
                "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                                "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                                  "/proc/sys", "/proc/sysrq-trigger"],
                "resources": {"memory": {"limit": 1073741824}},
                "cgroupsPath": "/berth/ignored"
            }
        })
    }

    fn write_spec(&self, spec: &Value) {
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
    }

    /// Starts the shim as the agent does and returns our end of fd 3.
    /// Waits for the shim's `Ready`: `(shim_pid, pid)`.
    fn ready(&self, agent: &mut Agent) -> (u32, u32) {
        match agent.recv() {
            Some(ShimMessage::Ready { shim_pid, pid }) => {
                // `Forked` came first, naming the same processes, while the
                // container was still setting itself up (decision 0035).
                assert_eq!(agent.forked, Some((shim_pid, pid)), "forked before ready");
                (shim_pid, pid)
            }
            other => panic!(
                "expected ready, got {other:?}; shim.log:\n{}",
                self.shim_log()
            ),
        }
    }

    /// Waits for `Ready`, sends `go` and waits for `Running`.
    fn started(&self, agent: &mut Agent) -> (u32, u32) {
        let pids = self.ready(agent);
        agent.go();
        assert_eq!(
            agent.recv(),
            Some(ShimMessage::Running),
            "shim.log:\n{}",
            self.shim_log()
        );
        pids
    }

    fn start(&self) -> Agent {
        self.start_with(&[])
    }

    /// Starts the shim with extra options (log settings).
    fn start_with(&self, extra: &[&str]) -> Agent {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(SHIM);
        cmd.arg("--id")
            .arg("test")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--log-dir")
            .arg(&self.logs)
            .args(extra);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if fd == SYNC_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, SYNC_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "first shim process exited with {status}");
        drop(theirs);
        ours.set_read_timeout(Some(TIMEOUT)).unwrap();
        Agent {
            reader: BufReader::new(ours.try_clone().unwrap()),
            writer: ours,
            forked: None,
        }
    }

    fn exit_record(&self) -> ExitRecord {
        let path = self.state.join(EXIT_FILE);
        let deadline = Instant::now() + TIMEOUT;
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "no {} after {TIMEOUT:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    /// All kept bytes of the container's stdout, through the segment files.
    fn stdout(&self) -> String {
        String::from_utf8(stream_bytes(&self.logs, "stdout")).unwrap()
    }

    fn stderr(&self) -> String {
        String::from_utf8(stream_bytes(&self.logs, "stderr")).unwrap()
    }

    /// `<state-dir>/logs.json`, once the shim wrote it.
    fn logs_json(&self) -> Value {
        let path = self.state.join("logs.json");
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).unwrap_or(Value::Null)
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.state.join("shim.log")).unwrap_or_default()
    }

    /// Runs `args` to the end with the default spec.
    fn run(&self, args: &[&str]) -> ExitRecord {
        self.write_spec(&self.host_root_spec(args));
        self.run_written()
    }

    /// A busybox root in the bundle: `dirs`, and `bin/` with `applets`.
    fn busybox_root(&self, dirs: &[&str], applets: &[&str]) -> PathBuf {
        let rootfs = self.bundle.join("rootfs");
        for d in dirs.iter().chain(&["bin"]) {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in applets {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        rootfs
    }

    /// [`Fixture::run_written`], which must end with exit code 0.
    fn run_written_ok(&self) -> ExitRecord {
        let rec = self.run_written();
        assert_eq!(
            rec.exit_code,
            Some(0),
            "{rec:?}\n{}\n{}",
            self.stderr(),
            self.shim_log()
        );
        rec
    }

    fn run_written(&self) -> ExitRecord {
        self.run_written_with(&[]).0
    }

    /// Runs the written spec with extra shim options; also returns the
    /// shim's pid.
    fn run_written_with(&self, extra: &[&str]) -> (ExitRecord, u32) {
        let mut agent = self.start_with(extra);
        let msg = agent.recv();
        let Some(ShimMessage::Ready { shim_pid, .. }) = msg else {
            panic!(
                "expected ready, got {msg:?}; shim.log:\n{}",
                self.shim_log()
            );
        };
        agent.go();
        assert_eq!(agent.recv(), Some(ShimMessage::Running));
        let said = agent.recv();
        let Some(ShimMessage::Exited { exit: Some(told) }) = said else {
            panic!(
                "expected exited with its record, got {said:?}; shim.log:\n{}",
                self.shim_log()
            );
        };
        // Said once the end is recorded: the record is there already, and
        // the message carries the same.
        let recorded = self.state.join(EXIT_FILE);
        assert!(recorded.exists(), "exited before {}", recorded.display());
        assert_eq!(agent.recv(), None, "shim should close fd 3 after exited");
        let record = self.exit_record();
        assert_eq!(told, record, "the message's record is exit.json's");
        (record, shim_pid)
    }
}

fn standard_mounts(extra: &[Value]) -> Vec<Value> {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    mounts.extend_from_slice(extra);
    mounts
}

struct Agent {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The pids of the shim's `Forked`, which `recv` passes over.
    forked: Option<(u32, u32)>,
}

impl Agent {
    /// The next message but `Forked` (kept in `forked`), or `None` when
    /// the shim closed the socket.
    fn recv(&mut self) -> Option<ShimMessage> {
        loop {
            match self.next()? {
                ShimMessage::Forked { shim_pid, pid } => {
                    assert_eq!(self.forked, None, "forked twice");
                    self.forked = Some((shim_pid, pid));
                }
                message => return Some(message),
            }
        }
    }

    /// The next message, whatever it is; `None` when the shim closed the
    /// socket.
    fn next(&mut self) -> Option<ShimMessage> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read from shim");
        (n > 0).then(|| serde_json::from_str(line.trim()).expect("a protocol message"))
    }

    fn go(&mut self) {
        self.try_go().unwrap();
    }

    /// Sends the go; `EPIPE` when the shim is gone already (its container's
    /// setup failed before the go came, and the shim reported it and ended).
    fn try_go(&mut self) -> std::io::Result<()> {
        self.writer.write_all(format!("{GO}\n").as_bytes())
    }

    /// Sends the go to a container whose setup fails: the shim may have
    /// reported the failure and ended before the go came.
    fn go_to_a_failing_setup(&mut self) {
        match self.try_go() {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => panic!("send the go: {e}"),
        }
    }

    /// Waits for the shim's first message, which must be `Forked`, as the
    /// agent does before it isolates the process and sends its go.
    fn forked(&mut self) -> (u32, u32) {
        match self.next() {
            Some(ShimMessage::Forked { shim_pid, pid }) => {
                self.forked = Some((shim_pid, pid));
                (shim_pid, pid)
            }
            other => panic!("expected forked first, got {other:?}"),
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + TIMEOUT;
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kept segment of a stream: its start offset, whether it is gzipped, and
/// its (decompressed) bytes.
struct Segment {
    start: u64,
    gz: bool,
    data: Vec<u8>,
}

/// The segments of `stream` in `dir`, oldest first, per docs/log-format.md.
fn segments(dir: &Path, stream: &str) -> Vec<Segment> {
    let mut segs: Vec<Segment> = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return segs;
    };
    for entry in entries {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some((start, gz)) = parse_name(stream, &name) else {
            continue;
        };
        let raw = std::fs::read(dir.join(&name)).unwrap();
        let data = if gz {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw
        };
        // A segment caught between compression and removal shows up twice.
        if let Some(seen) = segs.iter().find(|s| s.start == start) {
            assert_eq!(seen.data, data, "{name} differs from its twin");
            continue;
        }
        segs.push(Segment { start, gz, data });
    }
    segs.sort_by_key(|s| s.start);
    // Contiguous: each segment ends where the next starts.
    for pair in segs.windows(2) {
        assert_eq!(
            pair[0].start + pair[0].data.len() as u64,
            pair[1].start,
            "segments of {stream} not contiguous"
        );
    }
    segs
}

fn stream_bytes(dir: &Path, stream: &str) -> Vec<u8> {
    segments(dir, stream)
        .into_iter()
        .flat_map(|s| s.data)
        .collect()
}

/// What `seq 1 n` prints.
fn seq_output(n: u32) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn output_exit_code_pid1_and_hostname() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    let rec = f.run(&[
        "sh",
        "-c",
        "echo out; echo err >&2; echo pid=$$; hostname; exit 3",
    ]);
    assert_eq!(rec.exit_code, Some(3), "{rec:?}\n{}", f.shim_log());
    assert_eq!(rec.signal, None);
    assert_eq!(rec.error, None);
    assert!(rec.started_at.is_some());
    chrono::DateTime::parse_from_rfc3339(&rec.finished_at).unwrap();
    assert_eq!(f.stdout(), "out\npid=1\nberth-test\n");
    assert_eq!(f.stderr(), "err\n");
}

#[test]
fn credentials_masks_and_devices() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.host_root_spec(&[
        "sh",
        "-c",
        r#"grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status
           test -d /sys/fs/cgroup/memory -o -f /sys/fs/cgroup/cgroup.controllers && echo cgroup=present
           mkdir /sys/fs/cgroup/memory/berth-probe /sys/fs/cgroup/berth-probe 2>/dev/null || echo cgroup=read-only
           echo timer_list=$(wc -c < /proc/timer_list) firmware=$(ls -A /sys/firmware | wc -l)
           grep -q ' /proc/sys ro,' /proc/self/mountinfo && echo procsys=ro
           for d in null zero full random urandom tty; do test -c /dev/$d && echo dev:$d; done
           readlink /dev/fd /dev/ptmx
           echo cwd=$(pwd) env=$BERTH_TEST nofile=$(ulimit -n)
           ls /proc | grep -cE '^[0-9]+$'"#,
    ]);
    // Docker's spec mounts the cgroup tree read-only.
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
    }));
    f.write_spec(&spec);
    let rec = f.run_written();
    let _ = std::fs::remove_dir("/sys/fs/cgroup/memory/berth-probe");
    assert_eq!(
        rec.exit_code,
        Some(0),
        "{rec:?}\n{}\n{}",
        f.stderr(),
        f.shim_log()
    );
    let out = f.stdout();
    assert!(out.contains(&format!("CapBnd:\t{DOCKER_CAPBND}")), "{out}");
    assert!(out.contains(&format!("CapEff:\t{DOCKER_CAPBND}")), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("cgroup=present\ncgroup=read-only\n"), "{out}");
    // Masked: a file shows /dev/null, a directory an empty tmpfs.
    assert!(out.contains("timer_list=0 firmware=0\n"), "{out}");
    assert!(out.contains("procsys=ro"), "{out}");
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(out.contains(&format!("dev:{d}\n")), "{out}");
    }
    assert!(out.contains("/proc/self/fd\npts/ptmx\n"), "{out}");
    assert!(
        out.contains(&format!("cwd={} env=1 nofile=1024", f.sandbox.display())),
        "{out}"
    );
    // Only the container's own processes (sh, ls, grep) are visible.
    let procs: u32 = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(procs <= 4, "{out}");
}

#[test]
fn host_root_is_read_only_but_sandbox_and_tmp_are_writable() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    let probe = format!(".berth-shim-probe-{}", std::process::id());
    let script = format!(
        r#"for p in / /usr /run /var/tmp; do
             if touch $p/{probe} 2>/dev/null; then echo "$p writable"; else echo "$p read-only"; fi
           done
           touch {sandbox}/made-inside && echo "sandbox writable"
           touch /tmp/x && echo "tmp writable""#,
        sandbox = f.sandbox.display()
    );
    let rec = f.run(&["sh", "-c", &script]);
    // Whatever happened, do not leave probes on the host.
    for p in ["/", "/usr", "/run", "/var/tmp"] {
        let _ = std::fs::remove_file(Path::new(p).join(&probe));
    }
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.stderr());
    assert_eq!(
        f.stdout(),
        "/ read-only\n/usr read-only\n/run read-only\n/var/tmp read-only\n\
         sandbox writable\ntmp writable\n"
    );
    assert!(f.sandbox.join("made-inside").exists());
}

#[test]
fn signal_death_is_recorded() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.write_spec(&f.host_root_spec(&["sleep", "100"]));
    let mut agent = f.start();
    let (shim_pid, pid) = f.ready(&mut agent);
    assert_ne!(pid, shim_pid);
    agent.go();
    assert_eq!(agent.recv(), Some(ShimMessage::Running));
    // Only SIGKILL reaches a pid-namespace init that has no handlers.
    // SAFETY: pid is the container we just started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let rec = f.exit_record();
    assert_eq!(rec.signal, Some(libc::SIGKILL), "{rec:?}");
    assert_eq!(rec.exit_code, None);
    assert_eq!(rec.error, None);
}

#[test]
fn unknown_executable_fails_clearly() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.write_spec(&f.host_root_spec(&["nosuchcmd", "arg"]));
    let mut agent = f.start();
    assert!(matches!(agent.recv(), Some(ShimMessage::Ready { .. })));
    agent.go();
    let expected = r#"exec "nosuchcmd": no such file or directory"#;
    assert_eq!(
        agent.recv(),
        Some(ShimMessage::Failed {
            message: expected.into(),
            kind: FailureKind::Exec,
        })
    );
    let rec = f.exit_record();
    assert_eq!(rec.error.as_deref(), Some(expected));
    assert_eq!(rec.started_at, None);
}

/// The agent sends its go while the process still sets itself up, as soon
/// as it has isolated it (decision 0058): the process finds the go when it
/// is ready and runs; a setup that fails after such a go is reported with
/// its reason, and nothing runs.
#[test]
fn a_go_before_ready_is_kept_and_a_setup_failing_after_it_is_reported() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.write_spec(&f.host_root_spec(&["sh", "-c", "echo early; exit 4"]));
    let mut agent = f.start();
    agent.forked();
    agent.go();
    f.ready(&mut agent);
    assert_eq!(
        agent.recv(),
        Some(ShimMessage::Running),
        "shim.log:\n{}",
        f.shim_log()
    );
    let rec = f.exit_record();
    assert_eq!(rec.exit_code, Some(4), "{rec:?}\n{}", f.shim_log());
    assert_eq!(f.stdout(), "early\n");

    // A working directory that is not there: the process fails at its
    // chdir, after the go reached it.
    let f = Fixture::new();
    let mut spec = f.host_root_spec(&["sh", "-c", "echo ran"]);
    spec["process"]["cwd"] = json!("/no/such/dir");
    f.write_spec(&spec);
    let mut agent = f.start();
    agent.forked();
    agent.go_to_a_failing_setup();
    match agent.recv() {
        Some(ShimMessage::Failed { message, kind }) => {
            assert_eq!(kind, FailureKind::Workdir, "{message}");
            assert!(message.contains("/no/such/dir"), "{message}");
        }
        other => panic!(
            "expected failed, got {other:?}; shim.log:\n{}",
            f.shim_log()
        ),
    }
    let rec = f.exit_record();
    assert_eq!(rec.started_at, None, "{rec:?}");
    assert_eq!(f.stdout(), "", "nothing ran");

    // A setup that fails at its start, dead before or as the go comes (a
    // go written into its pipe then finds no reader): still reported with
    // the process's own reason.
    for _ in 0..5 {
        let f = Fixture::new();
        let mut spec = f.host_root_spec(&["sh", "-c", "echo ran"]);
        for ns in spec["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "ipc" {
                ns["path"] = json!("/no/such/ns");
            }
        }
        f.write_spec(&spec);
        let mut agent = f.start();
        agent.forked();
        agent.go_to_a_failing_setup();
        match agent.recv() {
            Some(ShimMessage::Failed { message, .. }) => {
                assert!(message.contains("/no/such/ns"), "{message}")
            }
            other => panic!(
                "expected failed, got {other:?}; shim.log:\n{}",
                f.shim_log()
            ),
        }
        assert_eq!(f.stdout(), "", "nothing ran");
    }
}

#[test]
fn bad_spec_fails_before_ready() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.host_root_spec(&["true"]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    f.write_spec(&spec);
    let mut agent = f.start();
    let expected = "a new user namespace needs linux.uidMappings and linux.gidMappings";
    assert_eq!(
        agent.recv(),
        Some(ShimMessage::Failed {
            message: expected.into(),
            kind: FailureKind::Setup,
        })
    );
    assert_eq!(f.exit_record().error.as_deref(), Some(expected));
}

#[test]
fn agent_gone_before_go_leaves_nothing_behind() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.write_spec(&f.host_root_spec(&["sleep", "100"]));
    let mut agent = f.start();
    let (shim_pid, pid) = f.ready(&mut agent);
    assert!(pid_alive(pid));
    drop(agent);
    let rec = f.exit_record();
    assert_eq!(
        rec.error.as_deref(),
        Some("agent went away before the container started")
    );
    assert_eq!(rec.started_at, None);
    let deadline = Instant::now() + TIMEOUT;
    while pid_alive(pid) || pid_alive(shim_pid) {
        assert!(
            Instant::now() < deadline,
            "container {pid} or shim {shim_pid} still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(f.stdout(), "");
}

#[test]
fn keeps_running_when_agent_goes_away_after_go() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.write_spec(&f.host_root_spec(&["sh", "-c", "sleep 0.3; echo still here"]));
    let mut agent = f.start();
    assert!(matches!(agent.recv(), Some(ShimMessage::Ready { .. })));
    agent.go();
    drop(agent);
    let rec = f.exit_record();
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.shim_log());
    assert_eq!(f.stdout(), "still here\n");
}

#[test]
fn new_network_namespace_has_loopback_up() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    let mut spec =
        f.host_root_spec(&["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network"}));
    f.write_spec(&spec);
    let rec = f.run_written();
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.stderr());
    // IFF_UP | IFF_LOOPBACK, plus IFF_RUNNING once the kernel marks it.
    let out = f.stdout();
    assert!(out == "lo\n0x9\n" || out == "lo\n0x49\n", "{out}");
}

#[test]
fn joins_namespaces_by_path() {
    if skip_unless_root() {
        return;
    }
    // A first container owns a uts namespace with its hostname...
    let first = Fixture::new();
    first.write_spec(&first.host_root_spec(&["sleep", "100"]));
    let mut agent = first.start();
    let (_, pid) = first.started(&mut agent);

    // ...which a second one joins instead of creating its own.
    let second = Fixture::new();
    let mut spec = second.host_root_spec(&["hostname"]);
    spec["hostname"] = Value::Null;
    spec["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
        {"type": "uts", "path": format!("/proc/{pid}/ns/uts")}
    ]);
    second.write_spec(&spec);
    let rec = second.run_written();

    // SAFETY: pid is the first container, started by this test.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(first.exit_record().signal, Some(libc::SIGKILL));
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", second.stderr());
    assert_eq!(second.stdout(), "berth-test\n");
}

#[test]
fn busybox_rootfs() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.busybox_root(
        &["proc", "dev", "sys", "tmp", "etc"],
        &["sh", "ls", "cat", "echo", "touch"],
    );
    let mut spec = f.host_root_spec(&[
        "sh",
        "-c",
        "ls /; ls /bin; echo pid=$$; touch /etc/x 2>/dev/null || echo etc read-only; \
         touch /tmp/x && echo tmp writable",
    ]);
    spec["root"] = json!({"path": "rootfs", "readonly": true});
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["process"]["cwd"] = json!("/");
    spec["mounts"] = json!(standard_mounts(&[json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]
    })]));
    f.write_spec(&spec);
    f.run_written_ok();
    assert_eq!(
        f.stdout(),
        "bin\ndev\netc\nproc\nsys\ntmp\n\
         busybox\ncat\necho\nls\nsh\ntouch\n\
         pid=1\netc read-only\ntmp writable\n"
    );
}

/// A mount point that the root makes a symlink out of it (absolute, or
/// climbing with `..`) is looked up inside the root: the mount lands on
/// the root's own directory of that name, never on the host's; a link to
/// a directory only the host has fails the launch, the host untouched.
#[test]
fn a_symlinked_mount_point_is_resolved_inside_the_root() {
    if skip_unless_root() {
        return;
    }
    let busybox_root =
        |f: &Fixture| f.busybox_root(&["proc", "dev", "sys", "etc"], &["sh", "ls", "touch"]);
    let tmpfs = |at: &str| json!({"destination": at, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]});
    let spec_for = |f: &Fixture, command: &str| {
        let mut spec = f.host_root_spec(&["sh", "-c", command]);
        spec["root"] = json!({"path": "rootfs", "readonly": false});
        spec["process"]["env"] = json!(["PATH=/bin"]);
        spec["process"]["cwd"] = json!("/");
        spec["mounts"] = json!(standard_mounts(&[tmpfs("/tmp"), tmpfs("/run")]));
        spec
    };

    // /tmp names /etc, /run climbs out to it: both are the root's /etc.
    let f = Fixture::new();
    let rootfs = busybox_root(&f);
    std::os::unix::fs::symlink("/etc", rootfs.join("tmp")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../etc", rootfs.join("run")).unwrap();
    f.write_spec(&spec_for(
        &f,
        "touch /tmp/made-tmp /run/made-run && ls /etc",
    ));
    f.run_written_ok();
    assert_eq!(f.stdout(), "made-run\nmade-tmp\n");
    // Written to the tmpfs over the root's /etc: not to the root's files
    // (as they would be had the mount gone to the host's /etc instead),
    // nor to the host's.
    assert!(!rootfs.join("etc/made-tmp").exists());
    assert!(!Path::new("/etc/made-tmp").exists() && !Path::new("/etc/made-run").exists());

    // A link to a directory that only the host has: refused, nothing made.
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(host.path().join("secret"), "host\n").unwrap();
    let f = Fixture::new();
    let rootfs = busybox_root(&f);
    std::os::unix::fs::symlink(host.path(), rootfs.join("tmp")).unwrap();
    std::os::unix::fs::symlink("/etc", rootfs.join("run")).unwrap();
    f.write_spec(&spec_for(&f, "touch /tmp/made"));
    let mut agent = f.start_with(&[]);
    let said = agent.recv();
    assert!(
        matches!(&said, Some(ShimMessage::Failed { message, .. }) if message.contains("/tmp")),
        "{said:?}"
    );
    let host_names: Vec<_> = (std::fs::read_dir(host.path()).unwrap())
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(host_names, ["secret"]);
}

#[test]
fn rotation_keeps_the_newest_segments_at_their_offsets() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.write_spec(&f.host_root_spec(&["seq", "1", "5000"]));
    let (rec, _) = f.run_written_with(&["--log-max-size", "4096", "--log-max-files", "3"]);
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.shim_log());
    let want = seq_output(5000);
    assert_eq!(want.len(), 23893);
    let segs = segments(&f.logs, "stdout");
    let starts: Vec<u64> = segs.iter().map(|s| s.start).collect();
    // 4096-byte segments at 0, 4096, ..., 20480; the newest three are kept.
    assert_eq!(starts, [12288, 16384, 20480]);
    assert!(segs.iter().all(|s| !s.gz));
    assert_eq!(segs[0].data.len(), 4096);
    assert_eq!(stream_bytes(&f.logs, "stdout"), &want[12288..]);
    assert_eq!(
        std::fs::read_link(f.logs.join("stdout")).unwrap(),
        Path::new("stdout.00000000000000020480")
    );
    assert!(!f.logs.join("stdout.00000000000000008192").exists());
    // The index starts at the oldest kept offset and never goes back.
    let idx = std::fs::read_to_string(f.logs.join("stdout.idx")).unwrap();
    let entries: Vec<(u64, u64)> = idx
        .lines()
        .map(|l| {
            let (o, t) = l.split_once(' ').unwrap();
            (o.parse().unwrap(), t.parse().unwrap())
        })
        .collect();
    assert!(!entries.is_empty(), "{idx}");
    assert!(entries[0].0 >= 12288, "{idx}");
    assert!(entries.windows(2).all(|w| w[0] <= w[1]), "{idx}");
    let counters = f.logs_json();
    assert_eq!(counters["stdout"]["bytes"], 23893, "{counters}");
    assert_eq!(counters["stdout"]["dropped_bytes"], 0);
    assert_eq!(counters["stderr"]["bytes"], 0);
}

#[test]
fn rotated_segments_are_compressed() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    f.write_spec(&f.host_root_spec(&["seq", "1", "5000"]));
    let (rec, shim_pid) = f.run_written_with(&[
        "--log-max-size",
        "4096",
        "--log-max-files",
        "3",
        "--log-compress",
    ]);
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.shim_log());
    // The shim finishes compressing after the exit record.
    wait_gone(shim_pid);
    let segs = segments(&f.logs, "stdout");
    let kinds: Vec<(u64, bool)> = segs.iter().map(|s| (s.start, s.gz)).collect();
    assert_eq!(
        kinds,
        [(12288, true), (16384, true), (20480, false)],
        "{}",
        f.shim_log()
    );
    assert_eq!(stream_bytes(&f.logs, "stdout"), &seq_output(5000)[12288..]);
    let mut names: Vec<String> = std::fs::read_dir(&f.logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("stdout"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "stdout",
            "stdout.00000000000000012288.gz",
            "stdout.00000000000000016384.gz",
            "stdout.00000000000000020480",
            "stdout.idx",
        ],
        "{}",
        f.shim_log()
    );
}

/// Stops the shim while the container writes 4 MiB, so that the pipe fills
/// up as if the disk had stalled: `drop` throws the oldest bytes away and
/// counts them, `block` keeps everything.
#[test]
fn drop_mode_counts_what_a_stalled_writer_drops() {
    if skip_unless_root() {
        return;
    }
    const TOTAL: u64 = 4 << 20;
    for mode in ["drop", "block"] {
        let f = Fixture::new();
        f.write_spec(&f.host_root_spec(&["sh", "-c", "sleep 0.3; head -c 4194304 /dev/zero"]));
        let mut agent = f.start_with(&["--log-mode", mode]);
        let (shim_pid, pid) = f.started(&mut agent);
        // SAFETY: the shim started by this test.
        unsafe { libc::kill(shim_pid as i32, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(1000));
        let blocked =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        // SAFETY: as above.
        unsafe { libc::kill(shim_pid as i32, libc::SIGCONT) };
        let rec = f.exit_record();
        assert_eq!(rec.exit_code, Some(0), "{mode}: {rec:?}\n{}", f.shim_log());
        let c = &f.logs_json()["stdout"];
        let bytes = c["bytes"].as_u64().unwrap();
        let dropped = c["dropped_bytes"].as_u64().unwrap();
        assert_eq!(c["lost_bytes"], 0, "{mode}: {c}");
        assert_eq!(bytes + dropped, TOTAL, "{mode}: {c} ({blocked})");
        assert_eq!(stream_bytes(&f.logs, "stdout").len() as u64, bytes);
        if mode == "drop" {
            // At least the three quarters of the 1 MiB pipe above the mark.
            assert!(dropped >= 3 << 18, "{mode}: {c}");
        } else {
            assert_eq!(dropped, 0, "{c}");
        }
    }
}

/// Mounts a small tmpfs and unmounts it when dropped.
struct TinyFs(PathBuf);

impl TinyFs {
    fn mount(dir: &Path, size: &str) -> TinyFs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        TinyFs(dir.to_path_buf())
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_loses_output_but_never_blocks_and_resumes() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    let _fs = TinyFs::mount(&f.logs, "64k");
    // Half the file system taken by something else, freed later.
    let filler = f.logs.join("filler");
    std::fs::write(&filler, vec![0u8; 32 << 10]).unwrap();
    let phase1 = f.sandbox.join("phase1");
    let resume = f.sandbox.join("resume");
    let script = format!(
        "head -c 1048576 /dev/zero; touch {p}; \
         while [ ! -e {r} ]; do sleep 0.05; done; echo later-bytes",
        p = phase1.display(),
        r = resume.display()
    );
    f.write_spec(&f.host_root_spec(&["sh", "-c", &script]));
    let mut agent = f.start();
    let (shim_pid, _) = f.started(&mut agent);
    // The 1 MiB does not fit, yet the container gets past it.
    let deadline = Instant::now() + TIMEOUT;
    while !phase1.exists() {
        assert!(
            Instant::now() < deadline,
            "container stuck; {}",
            f.shim_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lost = loop {
        let lost = f.logs_json()["stdout"]["lost_bytes"].as_u64().unwrap_or(0);
        if lost > 0 {
            break lost;
        }
        assert!(Instant::now() < deadline, "no lost bytes counted");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(pid_alive(shim_pid));
    std::fs::remove_file(&filler).unwrap();
    std::fs::write(&resume, b"").unwrap();
    let rec = f.exit_record();
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.shim_log());
    let out = stream_bytes(&f.logs, "stdout");
    assert!(out.ends_with(b"later-bytes\n"), "{} bytes", out.len());
    let c = &f.logs_json()["stdout"];
    let (bytes, final_lost) = (
        c["bytes"].as_u64().unwrap(),
        c["lost_bytes"].as_u64().unwrap(),
    );
    assert!(final_lost >= lost);
    assert_eq!(bytes + final_lost, 1048576 + 12, "{c}");
    assert_eq!(out.len() as u64, bytes);
    assert!(
        f.shim_log().contains("No space left on device"),
        "{}",
        f.shim_log()
    );
}

#[test]
fn user_namespace_maps_ids_and_binds_a_host_mount_read_only() {
    if skip_unless_root() {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = Fixture::new();
    let base = f.sandbox.parent().unwrap().to_path_buf();
    // The container's root is an unprivileged host user: it must reach its
    // sandbox's host path, and own the sandbox.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let start = 8_000_000u32;
    std::os::unix::fs::chown(&f.sandbox, Some(start), Some(start)).unwrap();
    // A host mount with flags a user namespace could not drop on a bind
    // made by path (EPERM); the shim binds a detached copy of it instead.
    let locked = base.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "nosuid,nodev,noexec,size=1m", "tmpfs"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(mounted.success());
    // Unmounted however the test ends.
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(locked.clone());
    std::fs::write(locked.join("f"), "locked\n").unwrap();
    let sandbox = f.sandbox.to_str().unwrap();
    let mut spec = f.host_root_spec(&[
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map; cat locked/f; \
         touch locked/g 2>/dev/null || echo locked=ro; echo x > w && echo sandbox=rw",
    ]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": start, "size": 65536}]);
    spec["linux"]["uidMappings"] = map.clone();
    spec["linux"]["gidMappings"] = map;
    spec["process"]["user"] = json!({"uid": 0, "gid": 0});
    for m in spec["mounts"].as_array_mut().unwrap() {
        // sysfs belongs to the owner of the network namespace (the host).
        if m["destination"] == "/sys" {
            *m = json!({"destination": "/sys", "type": "bind", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
    }
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": format!("{sandbox}/locked"), "type": "bind",
        "source": locked, "options": ["bind", "ro"]
    }));
    f.write_spec(&spec);
    let rec = f.run_written();
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.shim_log());
    let words: Vec<String> = f.stdout().split_whitespace().map(str::to_string).collect();
    assert_eq!(
        words,
        [
            "0",
            "0",
            "0",
            &start.to_string(),
            "65536",
            "locked",
            "locked=ro",
            "sandbox=rw"
        ],
        "{}",
        f.stderr()
    );
    assert_eq!(std::fs::metadata(f.sandbox.join("w")).unwrap().uid(), start);
    assert!(!locked.join("g").exists());
}

#[test]
fn seccomp_is_installed_with_and_without_no_new_privs() {
    if skip_unless_root() {
        return;
    }
    let seccomp = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    });
    let script = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; id -u; \
                  mkdir /tmp/d 2>/dev/null && echo mkdir=ok || echo mkdir=refused";
    for (no_new_privs, uid) in [(true, 0), (false, 1000)] {
        let f = Fixture::new();
        let mut spec = f.host_root_spec(&["sh", "-c", script]);
        spec["linux"]["seccomp"] = seccomp.clone();
        spec["process"]["noNewPrivileges"] = no_new_privs.into();
        // Without no_new_privs and as a user without capabilities, the
        // filter must go on before the user switch.
        spec["process"]["user"] = json!({"uid": uid, "gid": uid});
        if uid != 0 {
            for set in ["effective", "permitted"] {
                spec["process"]["capabilities"][set] = json!([]);
            }
        }
        f.write_spec(&spec);
        let rec = f.run_written();
        assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.shim_log());
        assert_eq!(
            f.stdout(),
            format!(
                "NoNewPrivs:\t{}\nSeccomp:\t2\n{uid}\nmkdir=refused\n",
                no_new_privs as u8
            ),
            "{}",
            f.stderr()
        );
    }

    // What berth cannot honour fails before ready.
    let f = Fixture::new();
    let mut spec = f.host_root_spec(&["true"]);
    spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOTIFY"});
    f.write_spec(&spec);
    let mut agent = f.start();
    match agent.recv() {
        Some(ShimMessage::Failed { message, .. }) => {
            assert!(message.contains("defaultAction"), "{message}")
        }
        other => panic!("expected failed, got {other:?}"),
    }
}

/// A container's bind (decision 0033): the agent checked the source path,
/// then someone swapped a symlink in. The shim opens it with no symlink
/// followed: the launch fails instead of mounting where the link points.
#[test]
fn a_symlink_swapped_into_a_checked_bind_source_is_refused() {
    if skip_unless_root() {
        return;
    }
    let f = Fixture::new();
    let base = f.sandbox.parent().unwrap().to_path_buf();
    let real = base.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("f"), "real\n").unwrap();
    std::os::unix::fs::symlink(&real, base.join("swapped")).unwrap();
    let sandbox = f.sandbox.to_str().unwrap();
    let spec_for = |source: &Path| {
        let mut spec = f.host_root_spec(&["cat", &format!("{sandbox}/in/f")]);
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": format!("{sandbox}/in"), "type": "bind", "source": source,
            "options": ["bind", "nosuid", "nodev", "ro", "x-berth-nofollow"]
        }));
        spec
    };
    // The path as checked: mounted.
    f.write_spec(&spec_for(&real));
    let rec = f.run_written();
    assert_eq!(rec.exit_code, Some(0), "{rec:?}\n{}", f.shim_log());
    assert_eq!(f.stdout(), "real\n");

    // A symlink at the same place now: refused.
    let f = Fixture::new();
    let base = f.sandbox.parent().unwrap().to_path_buf();
    std::os::unix::fs::symlink("/etc", base.join("swapped")).unwrap();
    let sandbox = f.sandbox.to_str().unwrap();
    let mut spec = f.host_root_spec(&["cat", &format!("{sandbox}/in/passwd")]);
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": format!("{sandbox}/in"), "type": "bind", "source": base.join("swapped"),
        "options": ["bind", "nosuid", "nodev", "ro", "x-berth-nofollow"]
    }));
    f.write_spec(&spec);
    let mut agent = f.start();
    let message = loop {
        match agent.recv() {
            Some(ShimMessage::Ready { .. }) => agent.go(),
            Some(ShimMessage::Failed { message, .. }) => break message,
            other => panic!("expected a failure, got {other:?}\n{}", f.shim_log()),
        }
    };
    assert!(message.contains("swapped"), "{message}");
    assert!(message.contains("ELOOP"), "{message}");
    assert!(!f.stdout().contains("root:"), "{}", f.stdout());
}
