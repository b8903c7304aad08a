//! `berth-shim exec --bundle DIR --dir DIR --pid PID --start-time TICKS`:
//! the per-exec helper that runs one more process in a running container,
//! confined exactly as the container's first process.
//!
//! The helper does its host-side work first (reading the bundle and the
//! request, opening a pidfd for the container's pid 1 and checking its start
//! time, finding its cgroups, opening the output files), then forks a joiner
//! that moves itself into the container's cgroups (every v1 hierarchy and the
//! unified one), enters all of its namespaces through the pidfd in one
//! `setns` (the kernel enters the user namespace first), and forks again so
//! the pid namespace applies. That last child starts from the container's
//! root (entering the mount namespace puts it there), takes the confinement
//! of `container::confine` (rlimits, bounding set, user, capabilities,
//! no_new_privs, working directory resolved inside the root), installs the
//! seccomp filter last and execs.
//!
//! Everything the helper and its children do before the exec is not
//! dumpable, so a process in the container cannot ptrace them or open their
//! fds through `/proc`; the command gets only its three stdio fds (pipes to
//! the helper and the container's own `/dev/null`). The helper copies the
//! output into `DIR/stdout` and `DIR/stderr` and writes `DIR/exit.json`; it
//! is in a session of its own and does not depend on the agent, so an exec
//! finishes and is recorded across an agent restart.

use std::ffi::{CString, OsString};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid, ForkResult, Pid};
use thiserror::Error;

use super::container::{self, exit};
use super::exec;
use super::exec_output::CappedOutput;
use super::spec::{ContainerConfig, ProcessConfig};
use berth_protocol::exec_request::ExecRequest;
use berth_protocol::helper_args::{ExecArgs, REQUEST_FILE};
use berth_protocol::process::ProcessRef;
use berth_protocol::ExitRecord;
use berth_seccomp::SeccompProgram;

#[derive(Debug, Error)]
pub enum JoinError {
    #[error("berth-shim exec: {0}")]
    Usage(String),
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{field} holds a NUL byte: {value:?}")]
    Nul { field: &'static str, value: String },
    #[error("the container's process {pid} has ended")]
    Ended { pid: u32 },
    #[error("the container's cgroups: {0}")]
    Cgroups(#[from] berth_cgroups::CgroupError),
    #[error("open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {errno}")]
    Sys { what: &'static str, errno: Errno },
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error(transparent)]
    Seccomp(berth_seccomp::SeccompError),
}

/// The namespaces an exec joins, by `/proc/PID/ns` name.
const NAMESPACES: [(&str, libc::c_int); 7] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("net", libc::CLONE_NEWNET),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

/// The helper's entry point; returns its exit code.
pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    // Not dumpable from here until the command's exec: nothing in the
    // container may ptrace the helper or its children, nor reach their fds
    // through /proc/PID/fd. Inherited across fork.
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let args = match ExecArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{}", JoinError::Usage(e.to_string()));
            return 2;
        }
    };
    // SAFETY: SIG_IGN installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    // Its own session: signals to the agent's process group miss it.
    let _ = setsid();
    let started_at = super::clock::rfc3339_now();
    let record = match run(&args) {
        Ok((status, error)) => {
            let (exit_code, signal) = match status {
                WaitStatus::Exited(_, code) => (Some(code), None),
                WaitStatus::Signaled(_, sig, _) => (None, Some(sig as i32)),
                _ => (None, None),
            };
            ExitRecord {
                exit_code,
                signal,
                started_at: Some(started_at),
                finished_at: super::clock::rfc3339_now(),
                error,
            }
        }
        Err(e) => ExitRecord {
            exit_code: None,
            signal: None,
            started_at: None,
            finished_at: super::clock::rfc3339_now(),
            error: Some(e.to_string()),
        },
    };
    match record.write(&args.dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-shim exec: {e}");
            1
        }
    }
}

/// The pipes between the helper and the command.
struct Pipes {
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
    report: (OwnedFd, OwnedFd),
    /// `-i` without `-t`: the command's stdin, fed by the helper.
    stdin: Option<(OwnedFd, OwnedFd)>,
    /// `-t`: the socket the command sends its pty's master over (the
    /// helper's end, the command's end).
    pty: Option<(UnixStream, UnixStream)>,
}

/// Runs the exec; the joiner's wait status and the command's start error.
fn run(args: &ExecArgs) -> Result<(WaitStatus, Option<String>), JoinError> {
    let config = ContainerConfig::load(&args.bundle)?;
    let request_path = args.dir.join(REQUEST_FILE);
    let raw = std::fs::read(&request_path).map_err(|source| JoinError::Read {
        path: request_path.clone(),
        source,
    })?;
    let request: ExecRequest = serde_json::from_slice(&raw).map_err(|source| JoinError::Parse {
        path: request_path,
        source,
    })?;
    let mut process = exec_process(&config.process, &request)?;
    // With no_new_privs, the filter goes on last, after the user switch:
    // compiled once per container and kept in its state dir (the agent's,
    // out of the container's reach), then installed by the command's
    // process right before exec.
    let program = if process.no_new_privileges {
        match process.seccomp.take() {
            Some(filter) => Some(cached_program(&args.dir, &filter)?),
            None => None,
        }
    } else {
        None
    };

    let target = ProcessRef {
        pid: args.pid,
        start_time: args.start_time,
    };
    let pid = target.pid;
    let pidfd = target.open().ok_or(JoinError::Ended { pid })?;
    let mountinfo = Path::new("/proc/self/mountinfo");
    let own = berth_cgroups::Hierarchies::from_files(mountinfo, Path::new("/proc/self/cgroup"))?
        .own_dirs()?;
    // Only where the helper is elsewhere: a move into the cgroup one is
    // already in costs as much (v1) and changes nothing.
    let theirs = berth_cgroups::Hierarchies::from_files(
        mountinfo,
        &PathBuf::from(format!("/proc/{pid}/cgroup")),
    )?;
    // A v1 thread that writes 0 to `tasks` moves itself without the
    // kernel's global migration lock (decision 0047); v2 moves whole
    // processes only.
    let file = match theirs.mode() {
        berth_cgroups::CgroupMode::V1 => "tasks",
        berth_cgroups::CgroupMode::V2 => "cgroup.procs",
    };
    let cgroups: Vec<PathBuf> = (theirs.own_dirs()?.into_iter())
        .filter(|dir| !own.contains(dir))
        .map(|dir| dir.join(file))
        .collect();
    let mut flags = 0;
    for (name, flag) in NAMESPACES {
        let theirs = ns_inode(&format!("/proc/{pid}/ns/{name}"))?;
        if theirs != ns_inode(&format!("/proc/self/ns/{name}"))? {
            flags |= flag;
        }
    }
    // Checked again now that everything about it has been read.
    if !target.is_alive() {
        return Err(JoinError::Ended { pid });
    }
    let create = |name: &str| {
        let path = args.dir.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| JoinError::Open { path, source })
    };
    let mut outputs = [
        CappedOutput::new(create("stdout")?),
        CappedOutput::new(create("stderr")?),
    ];
    let sys = |what| move |errno| JoinError::Sys { what, errno };
    let pipes = Pipes {
        stdout: pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?,
        stderr: pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?,
        report: pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?,
        stdin: if request.stdin && !request.tty {
            Some(pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?)
        } else {
            None
        },
        pty: if request.tty {
            Some(UnixStream::pair().map_err(|e| JoinError::Sys {
                what: "socketpair",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?)
        } else {
            None
        },
    };
    // The agent's socket, when attached: taken now so that it is closed
    // in the joiner and the command (close-on-exec is not enough there).
    let stream = args.stream_fd.map(|fd| {
        // SAFETY: the agent passed this fd to the helper for it alone.
        UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    if let Some(stream) = &stream {
        let _ = fcntl(stream, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    }

    // SAFETY: the helper is single-threaded.
    let joiner = match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(stream);
            join(&pipes, &cgroups, &pidfd, flags, &process, program.as_ref())
        }
        ForkResult::Parent { child } => child,
    };
    let Pipes {
        stdout,
        stderr,
        report,
        stdin,
        pty,
    } = pipes;
    drop((stdout.1, stderr.1, report.1));
    let joiner_fd = ProcessRef::of(joiner.as_raw() as u32).and_then(|p| p.open());
    if stream.is_none() && stdin.is_none() && pty.is_none() {
        pump([stdout.0, stderr.0], &mut outputs, joiner_fd.as_ref());
    } else {
        let stdin = stdin.map(|(read, write)| {
            drop(read);
            write
        });
        // With a tty the command sends the master once it has made the
        // slave its terminal; nothing comes when it failed before that.
        let master = match pty {
            Some((ours, theirs)) => {
                drop(theirs);
                super::pty::recv_fd(ours.as_fd()).map_err(sys("receive the pty"))?
            }
            None => None,
        };
        let output = match master {
            Some(master) => super::stream_pump::Output::Pty(master),
            None => super::stream_pump::Output::Pipes([stdout.0, stderr.0]),
        };
        super::stream_pump::pump(output, stdin, stream, &mut outputs, joiner_fd.as_ref());
    }
    let status = loop {
        match waitpid(joiner, None) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(sys("wait for the joiner"))?,
        }
    };
    let mut message = String::new();
    let _ = File::from(report.0).read_to_string(&mut message);
    Ok((status, (!message.is_empty()).then_some(message)))
}

/// The exec's process: the container's, with the request's command,
/// environment, working directory and user.
fn exec_process(base: &ProcessConfig, request: &ExecRequest) -> Result<ProcessConfig, JoinError> {
    let cstring = |field, value: &str| {
        CString::new(value).map_err(|_| JoinError::Nul {
            field,
            value: value.to_string(),
        })
    };
    let mut process = base.clone();
    process.args = request
        .command
        .iter()
        .map(|a| cstring("command", a))
        .collect::<Result<_, _>>()?;
    let mut env: Vec<String> = base
        .env
        .iter()
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            !request.env.contains_key(key)
        })
        .collect();
    env.extend(request.env.iter().map(|(k, v)| format!("{k}={v}")));
    process.path_var = exec::path_from_env(&env).map(str::to_string);
    process.env = env
        .iter()
        .map(|e| cstring("env", e))
        .collect::<Result<_, _>>()?;
    if let Some(dir) = &request.workdir {
        process.cwd = PathBuf::from(dir);
    }
    if let Some(user) = request.user {
        process.user.uid = user.uid;
        process.user.gid = user.gid();
        process.user.additional_gids.clear();
    }
    // The init reaper belongs to the container's first process only.
    process.init = false;
    Ok(process)
}

/// The container's compiled seccomp program: from `../seccomp.bpf` beside
/// the exec dirs, or compiled now and kept there for the next exec.
fn cached_program(
    exec_dir: &Path,
    filter: &berth_seccomp::SeccompFilter,
) -> Result<SeccompProgram, JoinError> {
    let cache = exec_dir
        .parent()
        .map(|p| p.join("seccomp.bpf"))
        .unwrap_or_else(|| exec_dir.join("seccomp.bpf"));
    if let Some(program) = std::fs::read(&cache)
        .ok()
        .and_then(|b| SeccompProgram::from_bytes(&b).ok())
    {
        return Ok(program);
    }
    let program = filter.compile().map_err(JoinError::Seccomp)?;
    // Best effort, atomically: a torn cache would be a wrong filter.
    let tmp = cache.with_extension(format!("tmp.{}", std::process::id()));
    if std::fs::write(&tmp, program.to_bytes()).is_ok() {
        let _ = std::fs::rename(&tmp, &cache);
    }
    Ok(program)
}

fn ns_inode(path: &str) -> Result<u64, JoinError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| JoinError::Read {
            path: PathBuf::from(path),
            source,
        })
}

/// The joiner: into the cgroups (`cgroups`: the files it writes itself
/// into) and namespaces, then forks the command and
/// passes its end on as its own. Never returns.
fn join(
    pipes: &Pipes,
    cgroups: &[PathBuf],
    pidfd: &OwnedFd,
    flags: libc::c_int,
    process: &ProcessConfig,
    program: Option<&SeccompProgram>,
) -> ! {
    let report = &pipes.report.1;
    // The writing end of the command's stdin is the helper's alone: held
    // here, the command would never see EOF.
    if let Some((_, write)) = &pipes.stdin {
        // SAFETY: the joiner only _exits, so the fd is never used or
        // closed again through its owner.
        unsafe { libc::close(write.as_raw_fd()) };
    }
    // Before the namespaces: the cgroup files are the host's.
    for path in cgroups {
        if let Err(e) = std::fs::write(path, b"0") {
            fail(report, &format!("join cgroup {}: {e}", path.display()), 1);
        }
    }
    // SAFETY: setns on a valid pidfd with namespace flags; affects only
    // this (single-threaded) process.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } < 0 {
        let e = std::io::Error::last_os_error();
        fail(report, &format!("enter the container's namespaces: {e}"), 1);
    }
    // The pid namespace applies to children only.
    // SAFETY: single-threaded.
    let command = match unsafe { fork() } {
        Ok(ForkResult::Child) => start(pipes, process, program),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(report, &format!("fork into the pid namespace: {e}"), 1),
    };
    let status = loop {
        match waitpid(command, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    match status {
        Ok(WaitStatus::Exited(_, code)) => exit(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => {
            // The same end for the helper to see: die of the signal.
            // SAFETY: SIG_DFL installs no handler code.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
            let _ = kill(Pid::this(), sig);
            exit(128 + sig as i32)
        }
        _ => exit(255),
    }
}

/// The command's side: stdio, confinement, seccomp, exec. Never returns.
fn start(pipes: &Pipes, process: &ProcessConfig, program: Option<&SeccompProgram>) -> ! {
    let report = &pipes.report.1;
    if let Err(e) = container::reset_signals() {
        fail(report, &e.to_string(), 126);
    }
    let _ = setsid();
    if let Some((_, socket)) = &pipes.pty {
        // The container's own devpts: the mount namespace is the
        // container's. Its slave becomes the controlling terminal and
        // stdio; the master goes to the helper.
        let (master, slave) = match super::pty::open() {
            Ok(pair) => pair,
            Err(e) => fail(report, &format!("open a pty in the container: {e}"), 126),
        };
        let stdio = super::pty::make_controlling(slave.as_fd())
            .and_then(|()| dup2_stdin(&slave))
            .and_then(|()| dup2_stdout(&slave))
            .and_then(|()| dup2_stderr(&slave))
            .and_then(|()| super::pty::send_fd(socket.as_fd(), master.as_fd()));
        if let Err(e) = stdio {
            fail(report, &format!("set up the pty: {e}"), 126);
        }
        drop((master, slave));
    } else {
        // The container's /dev/null: the mount namespace is the container's.
        let input = match &pipes.stdin {
            Some((read, _)) => read.try_clone().map(File::from),
            None => OpenOptions::new().read(true).open("/dev/null"),
        };
        let input = match input {
            Ok(input) => input,
            Err(e) => fail(report, &format!("open /dev/null: {e}"), 126),
        };
        let stdio = dup2_stdin(&input)
            .and_then(|()| dup2_stdout(&pipes.stdout.1))
            .and_then(|()| dup2_stderr(&pipes.stderr.1));
        if let Err(e) = stdio {
            fail(report, &format!("set up stdio: {e}"), 126);
        }
        drop(input);
    }
    // Nothing else of the helper's reaches the command.
    if let Err(e) = container::close_range(3, libc::CLOSE_RANGE_CLOEXEC as libc::c_uint) {
        fail(report, &format!("mark fds close-on-exec: {e}"), 126);
    }
    let seccomp = match container::confine(process) {
        Ok(seccomp) => seccomp,
        Err(e) => fail(report, &e.to_string(), 126),
    };
    for filter in seccomp.as_ref().into_iter().chain(program) {
        if let Err(e) = filter.install() {
            fail(report, &e.to_string(), 126);
        }
    }
    let message = exec::exec(&process.args, &process.env, process.path_var.as_deref());
    let code = if message.ends_with(&exec::errno_text(Errno::ENOENT)) {
        127
    } else {
        126
    };
    fail(report, &message, code)
}

fn fail(report: &OwnedFd, message: &str, code: i32) -> ! {
    let _ = File::from(report.try_clone().expect("dup report")).write_all(message.as_bytes());
    exit(code)
}

/// Copies the command's output into the files until the joiner has ended
/// and the pipes are drained (or, with background processes holding them,
/// empty).
fn pump(pipes: [OwnedFd; 2], files: &mut [CappedOutput; 2], joiner: Option<&OwnedFd>) {
    for pipe in &pipes {
        if let Ok(flags) = fcntl(pipe, FcntlArg::F_GETFL) {
            let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
            let _ = fcntl(pipe, FcntlArg::F_SETFL(flags));
        }
    }
    let mut open = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    // Without a pidfd for the joiner, the pipes' EOF is waited for.
    let mut joiner_gone = false;
    loop {
        let mut fds: Vec<PollFd> = Vec::new();
        let mut index = Vec::new();
        for (i, pipe) in pipes.iter().enumerate() {
            if open[i] {
                fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                index.push(i);
            }
        }
        if fds.is_empty() {
            return;
        }
        let watch_joiner = !joiner_gone;
        if let (true, Some(j)) = (watch_joiner, joiner) {
            fds.push(PollFd::new(j.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        if watch_joiner && fds.last().and_then(|f| f.any()).unwrap_or(false) {
            joiner_gone = true;
        }
        drop(fds);
        for &i in &index {
            loop {
                match nix::unistd::read(&pipes[i], &mut buf) {
                    Ok(0) => {
                        open[i] = false;
                        break;
                    }
                    Ok(n) => {
                        files[i].write(&buf[..n]);
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => {
                        // EAGAIN: empty for now. Once the command's side
                        // has ended, background holders are not waited for.
                        if joiner_gone {
                            open[i] = false;
                        }
                        break;
                    }
                }
            }
        }
    }
}
