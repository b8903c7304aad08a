//! Running one check. HTTP and TCP checks connect from inside the
//! container's network namespace: a fresh thread `setns`es into it (a
//! network namespace can be entered by one thread of a multithreaded
//! process) and makes the socket there, so `127.0.0.1` is the container's
//! loopback, never the host's. Command checks run as an exec (`berth-shim
//! exec`, the same helper and confinement as `berth exec`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_protocol::exec_request::ExecRequest;
use berth_protocol::health::{Probe, MAX_OUTPUT};
use berth_protocol::process::ProcessRef;

/// A check's outcome: the code (0 healthy) and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
    pub output: String,
}

impl Outcome {
    fn failed(output: impl Into<String>) -> Outcome {
        Outcome {
            exit_code: 1,
            output: output.into(),
        }
    }
}

/// Where the container is: its first process, bundle and state dir.
pub struct Target<'a> {
    pub process: ProcessRef,
    pub bundle: &'a Path,
    pub state_dir: &'a Path,
    /// The `berth-shim` binary (for command checks).
    pub shim: &'a Path,
}

/// Runs `probe` against the container, within `timeout`.
pub fn run(probe: &Probe, target: &Target<'_>, timeout: Duration) -> Outcome {
    match probe {
        Probe::Command(command) => run_command(command, target, timeout),
        Probe::Tcp { port } => {
            let port = *port;
            in_netns(target.process, move || {
                connect(port, timeout).map(|_| Outcome {
                    exit_code: 0,
                    output: format!("connected to 127.0.0.1:{port}"),
                })
            })
        }
        Probe::Http { port, path } => {
            let (port, path) = (*port, path.clone());
            in_netns(target.process, move || http_get(port, &path, timeout))
        }
    }
    .unwrap_or_else(|message| Outcome::failed(truncate(message)))
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("connect to {address}: {e}"))
}

fn http_get(port: u16, path: &str, timeout: Duration) -> Result<Outcome, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(port, timeout)?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_string())
    };
    stream.set_write_timeout(Some(left()?)).ok();
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: berth-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    // The status line is enough.
    while !response.contains(&b'\n') && response.len() < MAX_OUTPUT {
        stream.set_read_timeout(Some(left()?)).ok();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read response: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or("").trim().to_string();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
    Ok(Outcome {
        exit_code: if (200..400).contains(&code) { 0 } else { 1 },
        output: truncate(status_line),
    })
}

/// Runs `f` on a new thread inside the network namespace of `process`.
fn in_netns<T: Send + 'static>(
    process: ProcessRef,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let path = format!("/proc/{}/ns/net", process.pid);
    let ns = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // The pid may have been reused between the open and now: the
    // namespace file is only trusted if the process is still the same.
    if !process.is_alive() {
        return Err("the container has ended".into());
    }
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("enter the container's network namespace: {e}"))?;
        f()
    })
    .join()
    .map_err(|_| "the check's thread panicked".to_string())?
}

/// Runs the command as an exec and waits at most `timeout`; a command
/// still running then is killed (its helper's session).
fn run_command(
    command: &[String],
    target: &Target<'_>,
    timeout: Duration,
) -> Result<Outcome, String> {
    let dir = target.state_dir.join("health-exec");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let request = ExecRequest {
        command: command.to_vec(),
        ..Default::default()
    };
    let raw = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(berth_protocol::helper_args::REQUEST_FILE), raw)
        .map_err(|e| format!("write the exec request: {e}"))?;
    let args = berth_protocol::ExecArgs {
        bundle: target.bundle.to_path_buf(),
        dir: dir.clone(),
        pid: target.process.pid,
        start_time: target.process.start_time,
        stream_fd: None,
    };
    let mut child = std::process::Command::new(target.shim)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start the exec helper: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                // The command leads a session of its own inside the
                // container: end every process below the helper, then it.
                kill_descendants(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}ms", timeout.as_millis()));
            }
        }
    }
    let record = berth_protocol::ExitRecord::read(&dir)
        .ok()
        .flatten()
        .ok_or("the exec helper recorded no exit")?;
    let mut output = std::fs::read(dir.join("stdout")).unwrap_or_default();
    output.extend(std::fs::read(dir.join("stderr")).unwrap_or_default());
    let mut output = String::from_utf8_lossy(&output).into_owned();
    if let Some(error) = &record.error {
        output.push_str(error);
    }
    let exit_code = record
        .exit_code
        .or(record.signal.map(|s| 128 + s))
        .unwrap_or(126);
    Ok(Outcome {
        exit_code,
        output: truncate(output),
    })
}

/// SIGKILLs `root` and every process descending from it (found through the
/// parent pids in `/proc`, seen from the checker's pid namespace, the
/// host's). The tree is frozen first, top down and until a look finds no
/// new process: a process caught in `fork` either shows its child on the
/// next look or, stopped, forks no more. Killing from one look only lost
/// the race with a joiner forking the command, which then outlived it.
fn kill_descendants(root: u32) {
    let mut frozen: Vec<u32> = Vec::new();
    // Bounded: a tree cannot grow once its members are stopped.
    for _ in 0..64 {
        let new: Vec<u32> = process_tree(root)
            .into_iter()
            .filter(|pid| !frozen.contains(pid))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in &new {
            // SAFETY: kill(2) of the checker's own exec helper or one of
            // its descendants.
            unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
        }
        for pid in &new {
            wait_stopped(*pid);
        }
        frozen.extend(new);
    }
    for pid in frozen.iter().rev() {
        // SAFETY: as above.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
}

/// `root` and its descendants, parents before children.
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let (_, ppid) = stat_state(pid)?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found
}

/// A process's state letter and parent pid from `/proc/PID/stat`.
fn stat_state(pid: u32) -> Option<(char, u32)> {
    let stat = berth_sys::proc_stat::read(pid)?;
    // The fields after the command's name, which may hold spaces.
    let mut rest = stat[stat.rfind(')')? + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Waits (briefly) until SIGSTOP has taken `pid`, or it is gone.
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match stat_state(pid) {
            Some(('T' | 't' | 'Z' | 'X', _)) | None => return,
            Some(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// At most [`MAX_OUTPUT`] bytes, cut at a character boundary.
fn truncate(mut text: String) -> String {
    if text.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
