//! Streams (issue 12 item 2, decision 0026): `exec -i`/`-t` over the
//! WebSocket (`v5.channel.k8s.io`) on the API socket, a pty opened inside
//! the container, resizes, exit codes; attack tests for what a process on
//! the pty must not reach (TIOCSTI into the host's terminal, host fds,
//! host ptys).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Agent};
use serde_json::json;

/// The `berth` CLI on a pty of the test's: the test plays the terminal.
struct Terminal {
    master: std::fs::File,
    /// Kept open so that the terminal's input queue can be inspected after
    /// the CLI has ended.
    slave: OwnedFd,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    fn spawn(agent: &Agent, args: &[&str], rows: u16, cols: u16) -> Terminal {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let size = winsize(rows, cols);
        assert_eq!(
            // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
            unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0
        );
        let stdio = || Stdio::from(pty.slave.try_clone().unwrap());
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .arg("--socket")
            .arg(&agent.socket)
            .args(args)
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // A session whose controlling terminal is the pty, as a
                // shell would give it: SIGWINCH comes from the kernel.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("run berth");
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, copy) = (master.try_clone().unwrap(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                copy.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            master,
            slave: pty.slave,
            child,
            screen,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn type_in(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Waits until the screen shows `text` (after `from` bytes).
    fn wait_for(&self, from: usize, text: &str) {
        eventually(Duration::from_secs(20), text, || {
            let screen = self.screen();
            screen
                .get(from..)
                .unwrap_or("")
                .contains(text)
                .then_some(())
        });
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = winsize(rows, cols);
        assert_eq!(
            // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0
        );
    }

    fn wait(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "berth did not end; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bytes waiting in the terminal's input queue (what a shell reading
    /// it after the CLI would get).
    fn pending_input(&self) -> i32 {
        let mut n: libc::c_int = 0;
        assert_eq!(
            // SAFETY: FIONREAD writes an int that outlives the call.
            unsafe { libc::ioctl(self.slave.as_fd().as_raw_fd(), libc::FIONREAD, &mut n) },
            0
        );
        n
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn berth(agent: &Agent) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.arg("--socket").arg(&agent.socket);
    command
}

/// `berth ARGS` fed `input` from a thread (so that its output is read
/// while the input is still being written), then its stdin closed.
fn run_fed(agent: &Agent, args: &[&str], input: Vec<u8>) -> std::process::Output {
    let mut child = berth(agent)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[test]
fn exec_i_feeds_stdin_and_closes_it() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "cat", "command": ["sleep", "1000"]}));
    let out = run_fed(&agent, &["exec", "-i", "cat", "cat"], b"hi\n".to_vec());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    // Exit codes and stderr come through; a large input does not block
    // the output (cat echoes 4 MiB while it is still being fed).
    let out = run_fed(
        &agent,
        &["exec", "-i", "cat", "sh", "-c", "cat; echo err >&2; exit 4"],
        vec![b'x'; 4 << 20],
    );
    assert_eq!(out.stdout.len(), 4 << 20);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn exec_it_runs_a_shell_on_a_pty_that_follows_resizes() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "tty", "command": ["sleep", "1000"]}));
    let mut term = Terminal::spawn(&agent, &["exec", "-it", "tty", "sh"], 24, 80);
    term.type_in("stty size; tty; echo done-$((6*7))\r");
    term.wait_for(0, "done-42");
    let screen = term.screen();
    assert!(screen.contains("24 80"), "{screen}");
    assert!(screen.contains("/dev/pts/0"), "{screen}");

    // The terminal changes size: the CLI sends channel 4, the helper sets
    // it on the master and the shell sees it.
    term.resize(40, 100);
    eventually(Duration::from_secs(20), "the new size", || {
        let from = term.screen().len();
        term.type_in("stty size\r");
        std::thread::sleep(Duration::from_millis(200));
        term.screen()[from..].contains("40 100").then_some(())
    });

    // Ctrl-C is a byte for the container: it interrupts the shell's
    // foreground command, not the CLI.
    let from = term.screen().len();
    term.type_in("sleep 1000\r");
    std::thread::sleep(Duration::from_millis(300));
    term.type_in("\x03echo after-$((2*3))\r");
    term.wait_for(from, "after-6");
    assert!(term.child.try_wait().unwrap().is_none());

    term.type_in("exit 3\r");
    assert_eq!(term.wait(), 3, "{}", term.screen());
}

/// The attack payload, run INSIDE a container by
/// `tty_games_inside_cannot_reach_the_host_terminal` (this test binary,
/// with `BERTH_STREAMS_ATTACK=1`); a no-op otherwise. It pushes a command
/// into every terminal it holds with TIOCSTI, tries to take the console
/// and looks for other ptys, and prints what happened.
#[test]
fn tiocsti_payload() {
    if std::env::var_os("BERTH_STREAMS_ATTACK").is_none() {
        return;
    }
    let inject = |fd: i32| -> String {
        for byte in b"echo INJECTED-$((40+2))\n" {
            // SAFETY: TIOCSTI reads one byte that outlives the call.
            if unsafe { libc::ioctl(fd, libc::TIOCSTI, byte) } < 0 {
                return std::io::Error::last_os_error().to_string();
            }
        }
        "ok".into()
    };
    for fd in 0..3 {
        println!("TIOCSTI fd{fd}: {}", inject(fd));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    {
        Ok(tty) => println!("TIOCSTI /dev/tty: {}", inject(tty.as_raw_fd())),
        Err(e) => println!("open /dev/tty: {e}"),
    }
    // SAFETY: TIOCCONS takes no argument.
    let cons = unsafe { libc::ioctl(0, libc::TIOCCONS) };
    println!(
        "TIOCCONS: {}",
        if cons == 0 {
            "ok".to_string()
        } else {
            std::io::Error::last_os_error().to_string()
        }
    );
    let mut pts: Vec<String> = std::fs::read_dir("/dev/pts")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    pts.sort();
    println!("PTS: {}", pts.join(","));
    println!("PAYLOAD-END");
}

#[test]
fn tty_games_inside_cannot_reach_the_host_terminal() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "games", "command": ["sleep", "1000"]}));
    // This test binary runs inside the container, from its sandbox (the
    // checkout may lie under /tmp, which the container has of its own).
    let exe = agent.sandbox("games").join("streams-attack");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let mut term = Terminal::spawn(
        &agent,
        &["exec", "-it", "-e", "BERTH_STREAMS_ATTACK=1", "games", "sh"],
        24,
        80,
    );
    term.type_in(&format!(
        "{} --exact tiocsti_payload --nocapture --test-threads=1\r",
        exe.display()
    ));
    term.wait_for(0, "PAYLOAD-END");
    let screen = term.screen();
    // Whatever TIOCSTI did, it did to the container's own pty: the only
    // ptys in sight are the container's (its devpts instance holds just
    // this exec's), and the host terminal's input stays empty.
    assert!(screen.contains("PTS: 0,ptmx"), "{screen}");
    assert!(
        screen.contains("TIOCCONS: Operation not permitted"),
        "{screen}"
    );
    if screen.contains("TIOCSTI fd0: ok") {
        // The kernel allows TIOCSTI (dev.tty.legacy_tiocsti=1): the text
        // went into the container's own pty, and its own shell ran it.
        term.wait_for(0, "INJECTED-42");
    }
    term.type_in("exit 0\r");
    assert_eq!(term.wait(), 0, "{}", term.screen());
    assert_eq!(term.pending_input(), 0, "{}", term.screen());
    // Nothing of the injected text reached the host: the CLI has ended,
    // and reading the terminal now would give a shell nothing.
    // SAFETY: plain fcntl/read on the test's own fd.
    let leaked = unsafe {
        let fd = term.slave.as_raw_fd();
        libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
        let mut buf = [0u8; 256];
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
    };
    assert!(leaked <= 0, "the host terminal got input");
}

/// The fds a command on a tty and on a stdin pipe sees: its three stdio
/// fds, and nothing of the host's.
#[test]
fn attached_execs_get_only_their_stdio() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "fds", "command": ["sleep", "1000"]}));
    let fds = |listing: &str| -> Vec<(String, String)> {
        listing
            .lines()
            .filter_map(|l| l.split_once(" -> "))
            .map(|(left, target)| {
                let fd = left.split_whitespace().last().unwrap().to_string();
                (fd, target.trim().to_string())
            })
            .collect()
    };
    let mut term = Terminal::spawn(
        &agent,
        &["exec", "-t", "fds", "ls", "-l", "/proc/self/fd/"],
        24,
        80,
    );
    assert_eq!(term.wait(), 0, "{}", term.screen());
    let listing = fds(&term.screen());
    let names: Vec<&str> = listing.iter().map(|(fd, _)| fd.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3"], "{}", term.screen());
    for (_, target) in &listing[..3] {
        assert_eq!(target, "/dev/pts/0", "{}", term.screen());
    }

    let out = berth(&agent)
        .args(["exec", "-i", "fds", "ls", "-l", "/proc/self/fd/"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let listing = fds(&String::from_utf8_lossy(&out.stdout));
    let names: Vec<&str> = listing.iter().map(|(fd, _)| fd.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3"], "{listing:?}");
    for (_, target) in &listing[..3] {
        assert!(target.starts_with("pipe:"), "{listing:?}");
    }
}

#[test]
fn attach_is_refused_without_the_protocol_or_twice() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "once", "command": ["sleep", "1000"]}));
    let created = agent.api(
        "POST",
        "/v1/containers/once/exec",
        Some(json!({"command": ["true"], "stdin": true})),
    );
    assert_eq!(created.status, 201, "{:?}", created.body);
    let path = created.body["attach"].as_str().unwrap().to_string();
    // A plain GET is not an upgrade.
    let answer = agent.api("GET", &path, None);
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Upgrade"),
        "{:?}",
        answer.body
    );
    // Path games with the exec id find nothing.
    let answer = agent.api(
        "GET",
        "/v1/containers/once/exec/..%2F..%2Fbundle/attach",
        None,
    );
    assert!(answer.status == 400 || answer.status == 404, "{answer:?}");
    // exec into a stopped container is 409, as without streams.
    agent.api(
        "POST",
        "/v1/containers/once/kill",
        Some(json!({"signal": "KILL"})),
    );
    agent.wait("once");
    let answer = agent.api(
        "POST",
        "/v1/containers/once/exec",
        Some(json!({"command": ["true"], "tty": true})),
    );
    assert_eq!(answer.status, 409, "{:?}", answer.body);
}

#[test]
fn attached_exec_of_a_missing_command_exits_127() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "missing", "command": ["sleep", "1000"]}));
    let out = berth(&agent)
        .args(["exec", "-i", "missing", "no-such-command"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("berth: exec \"no-such-command\": no such file"),
        "{stderr}"
    );
    // An unknown container: one line, no panic.
    let out = berth(&agent)
        .args(["exec", "-it", "nobody", "sh"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn a_tty_exec_in_a_user_namespace_and_rootfs_of_its_own() {
    require_root!();
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        common::skip_missing_kernel_feature(
            "a_tty_exec_in_a_user_namespace_and_rootfs_of_its_own",
            "the kernel allows no user namespaces",
        );
        return;
    }
    let agent = Agent::start_with_config("[userns]\nsubordinate_uids = \"13000000:65536\"\n");
    let rootfs = common::busybox_rootfs(agent.dir.path());
    agent.launch(json!({"id": "mapped", "userns": "auto",
        "rootfs": rootfs, "command": ["sleep", "1000"]}));
    let mut term = Terminal::spawn(&agent, &["exec", "-it", "mapped", "sh"], 30, 90);
    term.type_in("busybox tty; busybox stty size; exit 7\r");
    assert_eq!(term.wait(), 7, "{}", term.screen());
    let screen = term.screen();
    assert!(screen.contains("/dev/pts/0"), "{screen}");
    assert!(screen.contains("30 90"), "{screen}");
}

/// The local terminal is in raw mode while attached and put back when the
/// CLI ends, also when a signal ends it.
#[test]
fn the_terminal_is_put_back_after_a_signal() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "raw", "command": ["sleep", "1000"]}));
    let mut term = Terminal::spawn(&agent, &["exec", "-it", "raw", "sh"], 24, 80);
    let mode = |term: &Terminal| nix::sys::termios::tcgetattr(term.slave.as_fd()).unwrap();
    let cooked = nix::sys::termios::LocalFlags::ICANON | nix::sys::termios::LocalFlags::ECHO;
    term.type_in("echo ready-$((1+1))\r");
    term.wait_for(0, "ready-2");
    assert!(
        !mode(&term).local_flags.intersects(cooked),
        "raw while attached"
    );
    // SAFETY: a signal to the test's own child.
    unsafe { libc::kill(term.child.id() as i32, libc::SIGTERM) };
    assert_eq!(term.wait(), 128 + libc::SIGTERM);
    assert!(mode(&term).local_flags.contains(cooked), "cooked again");
}

#[test]
fn run_i_feeds_the_first_process_stdin() {
    require_root!();
    let agent = Agent::start();
    let out = run_fed(&agent, &["run", "-i", "--", "cat"], b"hi\n".to_vec());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    // A large input does not block the output; the exit code comes through.
    let out = run_fed(
        &agent,
        &["run", "-i", "--", "sh", "-c", "cat; exit 4"],
        vec![b'x'; 4 << 20],
    );
    assert_eq!(out.stdout.len(), 4 << 20);
    assert_eq!(out.status.code(), Some(4));

    // Without -i there is no attach socket: the endpoint says why.
    agent.launch(json!({"id": "plain", "command": ["sleep", "1000"]}));
    let answer = agent.api("GET", "/v1/containers/plain/attach", None);
    assert!(answer.status >= 400, "{answer:?}");
}

/// `berth attach ID` with a piped stdin; its stdout collected by a thread.
fn attach_cli(agent: &Agent, id: &str) -> (Child, std::process::ChildStdin, Arc<Mutex<Vec<u8>>>) {
    let mut child = berth(agent)
        .args(["attach", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (child, stdin, seen)
}

#[test]
fn attach_feeds_a_running_i_container_which_outlives_the_attacher() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "cat", "command": ["cat"], "stdin": true}));
    for word in ["hi", "again"] {
        let (mut child, mut stdin, seen) = attach_cli(&agent, "cat");
        stdin.write_all(format!("{word}\n").as_bytes()).unwrap();
        eventually(Duration::from_secs(10), "the echo", || {
            String::from_utf8_lossy(&seen.lock().unwrap())
                .contains(word)
                .then_some(())
        });
        // The attacher leaves (a signal): the container keeps running, its
        // stdin open for the next one.
        child.kill().unwrap();
        child.wait().unwrap();
        let state = agent.api("GET", "/v1/containers/cat", None).body["state"].clone();
        assert_eq!(state, "running");
    }
    // The log has both, in order: one writer at a time.
    let logs = agent.api("GET", "/v1/containers/cat/logs", None);
    assert_eq!(String::from_utf8_lossy(&logs.raw), "hi\nagain\n");
    agent.api(
        "POST",
        "/v1/containers/cat/kill",
        Some(json!({"signal": "KILL"})),
    );
}

#[test]
fn no_host_fd_reaches_a_run_i_container() {
    require_root!();
    let agent = Agent::start();
    let out = berth(&agent)
        .args([
            "run",
            "-i",
            "--",
            "sh",
            "-c",
            "cat >/dev/null; ls -l /proc/self/fd/",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{listing}");
    // Only 0-2 (3 is ls's own directory fd) and 0 is a pipe.
    let fds: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{listing}");
    assert!(listing.contains("0 -> pipe:"), "{listing}");
}

#[test]
fn a_run_i_container_keeps_its_stdin_across_an_agent_restart() {
    require_root!();
    let mut agent = Agent::start();
    agent.launch(json!({"id": "cat", "command": ["cat"], "stdin": true}));
    agent.kill_agent();
    agent.start_again();
    let (mut child, mut stdin, seen) = attach_cli(&agent, "cat");
    stdin.write_all(b"after\n").unwrap();
    eventually(Duration::from_secs(10), "the echo", || {
        String::from_utf8_lossy(&seen.lock().unwrap())
            .contains("after")
            .then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    agent.api(
        "POST",
        "/v1/containers/cat/kill",
        Some(json!({"signal": "KILL"})),
    );
}

#[test]
fn run_it_runs_a_shell_on_a_pty_that_follows_resizes() {
    require_root!();
    let agent = Agent::start();
    let mut term = Terminal::spawn(&agent, &["run", "-it", "--", "sh"], 24, 80);
    term.type_in("stty size; tty; echo done-$((6*7))\r");
    term.wait_for(0, "done-42");
    let screen = term.screen();
    assert!(screen.contains("24 80"), "{screen}");
    assert!(screen.contains("/dev/pts/0"), "{screen}");

    term.resize(40, 100);
    eventually(Duration::from_secs(20), "the new size", || {
        let from = term.screen().len();
        term.type_in("stty size\r");
        std::thread::sleep(Duration::from_millis(200));
        term.screen()[from..].contains("40 100").then_some(())
    });

    term.type_in("exit 3\r");
    assert_eq!(term.wait(), 3, "{}", term.screen());
}

#[test]
fn a_run_t_container_sees_only_its_own_pty() {
    require_root!();
    let agent = Agent::start();
    let mut term = Terminal::spawn(
        &agent,
        &[
            "run",
            "-t",
            "--",
            "sh",
            "-c",
            "echo pts: $(ls /dev/pts); ls -l /proc/self/fd/; echo end-$((1+1))",
        ],
        24,
        80,
    );
    term.wait_for(0, "end-2");
    assert_eq!(term.wait(), 0);
    let screen = term.screen();
    // The container's own devpts instance: its pty and ptmx, nothing of
    // the host's (the test's terminal is a host pty).
    assert!(screen.contains("pts: 0 ptmx"), "{screen}");
    let fds: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{screen}");
    assert_eq!(screen.matches("-> /dev/pts/0").count(), 3, "{screen}");
}
