//! The monitor: forks the container, talks to the agent, pumps the output
//! into the log files and records how the container ended.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getpid, pipe2, ForkResult, Pid};

use super::agent::{Agent, Incoming};
use super::container::{self, ChildFds};
use super::logs::{CountersFile, LogCounters, LogSink, Pumped, Stamp};
use super::namespaces::NsAction;
use super::note;
use super::spec::ContainerConfig;
use super::sync::{self, SetupReport};
use super::userns;
use berth_protocol::messages::GO;
use berth_protocol::{ExitRecord, FailureKind, ShimArgs as Args, ShimMessage};

/// The monitor's ends of the pipes.
struct MonitorFds {
    stdout: OwnedFd,
    stderr: OwnedFd,
    go: OwnedFd,
    report: OwnedFd,
}

/// One output stream being pumped from a pipe into a sink.
struct Stream {
    pipe: Option<OwnedFd>,
    sink: LogSink,
}

/// Bytes that pass through the shim's memory (dropped, lost, or copied where
/// splice does not work) go through this much at a time; the rest never
/// leaves the kernel.
const SCRATCH: usize = 64 * 1024;

/// How often finished compression children are looked for.
const COMPRESS_POLL: Duration = Duration::from_millis(100);

/// How long after the command's start the monitor drops setup's code pages,
/// the stack below its pump loop and its allocator's free memory
/// (`resident::trim_after_setup`, a read of `/proc/self/smaps` and a dozen
/// `madvise`s: 1-4 ms). A command that ends sooner is never trimmed for;
/// one that lives longer gets a smaller resident set, 50 ms later.
const TRIM_AFTER: Duration = Duration::from_millis(50);

/// Why waiting for `go` ended.
enum Release {
    Go,
    AgentGone,
    ChildDied,
    /// The child's setup report came first (waited for with the go).
    Reported,
}

fn now() -> String {
    super::clock::rfc3339_now()
}

/// Runs the container to its end. Returns the monitor's exit code.
pub fn supervise(args: &Args, mut agent: Agent) -> i32 {
    let mut config = match ContainerConfig::load(&args.bundle) {
        Ok(config) => config,
        Err(e) => return fail(args, &mut agent, e.to_string()),
    };
    berth_sys::launch_marks::mark("shim: config loaded");
    if !config.ignored.is_empty() {
        note(format_args!(
            "not applied by berth-shim: {}",
            config.ignored.join(", ")
        ));
    }
    if let Some(filter) = &config.process.seccomp {
        if !filter.unknown_syscalls.is_empty() {
            note(format_args!(
                "seccomp: syscalls unknown to libseccomp left to the default action: {}",
                filter.unknown_syscalls.join(", ")
            ));
        }
    }
    // Kept to return to after forking the container: see below.
    let own_pid_ns = std::fs::File::open("/proc/self/ns/pid");
    // With a new user namespace, the clone below creates the pid namespace.
    if !config.namespaces.new_user() {
        if let Err(e) = config.namespaces.enter_pid() {
            return fail(args, &mut agent, e.to_string());
        }
    }
    let (monitor, mut child_fds) = match make_pipes() {
        Ok(pipes) => pipes,
        Err(e) => return fail(args, &mut agent, format!("create pipes: {e}")),
    };
    // `-i` only: the container's stdin pipe and the attach socket.
    let mut stdin_relay = None;
    let mut pty_socket = None;
    if config.process.tty {
        match std::os::unix::net::UnixStream::pair() {
            Ok((ours, theirs)) => {
                pty_socket = Some(ours);
                child_fds.pty = Some(OwnedFd::from(theirs));
            }
            Err(e) => return fail(args, &mut agent, format!("create the pty socket: {e}")),
        }
    }
    if config.process.stdin || config.process.tty {
        match super::attach_stdin::StdinRelay::open(&args.state_dir) {
            Ok((relay, read)) => {
                stdin_relay = Some(relay);
                if !config.process.tty {
                    child_fds.stdin = Some(read);
                }
            }
            Err(e) => return fail(args, &mut agent, format!("open the stdin relay: {e}")),
        }
    }
    // Held until the child is cloned, which gets copies of them. Without
    // a user namespace only the container's own binds (opened with no
    // symlink followed, decision 0033) are detached here.
    let source_trees = match super::mounts::detach_bind_sources(
        &mut config.mounts,
        config.namespaces.new_user(),
    ) {
        Ok(trees) => trees,
        Err(e) => return fail(args, &mut agent, e.to_string()),
    };
    // The agent's prepared mounts (secrets, config files) replace the
    // empty tmpfs the bundle names at their destinations.
    let files = match super::files::attach_prepared(&mut config.mounts, &args.files) {
        Ok(files) => files,
        Err(e) => return fail(args, &mut agent, e.to_string()),
    };
    // The socket the overlay the agent builds as a detached mount comes
    // on (decisions 0046, 0047), for the child to move onto its root.
    let root_mount = match (args.root_mount, &config.overlay) {
        (None, _) => None,
        (Some(fd), Some(_)) => match super::files::adopt_inherited(fd) {
            Ok(fd) => Some(fd),
            Err(errno) => {
                let message = format!("the agent's root mount socket (descriptor {fd}): {errno}");
                return fail(args, &mut agent, message);
            }
        },
        (Some(_), None) => {
            return fail(
                args,
                &mut agent,
                "a root mount was passed for a bundle without an overlay root".into(),
            )
        }
    };
    config.root_mount = root_mount.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    // The agent's pipe that says the container's cgroups exist, for the
    // child to move itself into them (decision 0047).
    let cgroups_ready = match args.cgroups_ready.map(super::files::adopt_inherited) {
        None => None,
        Some(Ok(fd)) => Some(fd),
        Some(Err(errno)) => {
            let message = format!("the agent's cgroups-ready pipe: {errno}");
            return fail(args, &mut agent, message);
        }
    };
    config.cgroups = args.cgroups.clone();
    config.cgroups_ready = cgroups_ready.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let own_net_ns = match config.namespaces.enter_net_before_clone() {
        Ok(own) => own,
        Err(e) => return fail(args, &mut agent, e.to_string()),
    };
    berth_sys::launch_marks::mark("shim: forks the container");
    let child = match fork_container(&config) {
        Ok(None) => {
            // The child must not hold the monitor's ends: a held go-pipe
            // write end would keep it from noticing the monitor's death.
            drop((monitor, agent, stdin_relay, pty_socket));
            container::run(&config, child_fds)
        }
        Ok(Some(child)) => child,
        Err(e) => return fail(args, &mut agent, e),
    };
    drop((child_fds, source_trees, files, root_mount, cgroups_ready));
    if let Some(own) = own_net_ns {
        if let Err(e) = setns(own, CloneFlags::CLONE_NEWNET) {
            note(format_args!("return to own network namespace: {e}"));
        }
    }
    // Only the container belongs in its pid namespace. The monitor's later
    // children (log compressors) would otherwise run inside it, visible to
    // the container, and could not be forked at all once it has died.
    match own_pid_ns.map(|ns| setns(ns, CloneFlags::CLONE_NEWPID)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => note(format_args!("return to own pid namespace: {e}")),
        Err(e) => note(format_args!("open /proc/self/ns/pid: {e}")),
    }

    let pidfd = match pidfd_open(child) {
        Ok(fd) => fd,
        Err(e) => {
            kill_and_reap(child);
            return fail(args, &mut agent, format!("pidfd_open {child}: {e}"));
        }
    };
    // The container's own mount namespace, for the agent to hold until it
    // has told the end: the exiting process then does not drop the last
    // reference, whose teardown waits two RCU grace periods before anyone
    // hears of the exit (decision 0048). A process cloned into it
    // (`Namespaces::at_clone`) has it from its first instant: held now,
    // and the go may reach the process before it is set up (below).
    let at_clone = config
        .namespaces
        .at_clone()
        .contains(CloneFlags::CLONE_NEWNS);
    let mut mount_namespace = at_clone.then(|| open_mount_namespace(child)).flatten();
    // The agent moves it into its cgroups while it sets itself up.
    let forked = ShimMessage::Forked {
        shim_pid: getpid().as_raw() as u32,
        pid: child.as_raw() as u32,
    };
    if let Err(e) = agent.send(&forked) {
        note(format_args!("send forked: {e}"));
    }

    if let Some(maps) = &config.id_mappings {
        let written = maps.write(child).map_err(|e| e.to_string()).and_then(|()| {
            sync::maps_written(&monitor.go)
                .map_err(|e| format!("tell the container its id maps are written: {e}"))
        });
        if let Err(e) = written {
            kill_and_reap(child);
            return fail(args, &mut agent, e);
        }
    }

    // The log files are opened while the container sets itself up (it
    // writes nothing before the go), off the launch's critical path
    // (decision 0046); the container never holds them.
    let sinks = LogSink::open(&args.log_dir, "stdout", &args.log)
        .and_then(|out| Ok((out, LogSink::open(&args.log_dir, "stderr", &args.log)?)));
    let (mut out_sink, mut err_sink) = match sinks {
        Ok(sinks) => sinks,
        Err(e) => {
            kill_and_reap(child);
            return fail(args, &mut agent, e.to_string());
        }
    };
    out_sink.prepare(monitor.stdout.as_fd());
    err_sink.prepare(monitor.stderr.as_fd());

    // With its mount namespace held, the process is let go on as soon as
    // the agent says go, ready or not: it then finds the go waiting when
    // it has set itself up, and execs without waiting for this process to
    // hear of it and answer (decision 0058). An agent may also wait for
    // `Ready` before its go: a report that comes first is answered first.
    let mut released = false;
    let mut died_before_go = false;
    if at_clone {
        match wait_for_go(&mut agent, &pidfd, Some(monitor.report.as_fd())) {
            Release::Go => match sync::release(&monitor.go) {
                Ok(()) => released = true,
                // The process is gone, its setup failed most likely: its
                // report says why.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => died_before_go = true,
                Err(e) => return release_failed(args, &mut agent, child, e),
            },
            Release::AgentGone => return agent_gone_before_go(args, &mut agent, child),
            // Its setup failed, most likely: its report says why.
            Release::ChildDied => died_before_go = true,
            Release::Reported => {}
        }
    }

    match sync::read_setup(&monitor.report) {
        Ok(SetupReport::Ready) if died_before_go => {
            return died_before_start(args, &mut agent, child)
        }
        Ok(SetupReport::Ready) => {}
        Ok(SetupReport::Failed(kind, message)) => {
            reap(child);
            return fail_as(args, &mut agent, kind, message);
        }
        Ok(SetupReport::Vanished) => {
            let status = reap(child);
            return fail(
                args,
                &mut agent,
                format!("container process died during setup ({status:?})"),
            );
        }
        Err(e) => {
            kill_and_reap(child);
            return fail(args, &mut agent, format!("read setup report: {e}"));
        }
    }
    // Otherwise opened while the process waits for its go, so that the
    // namespace is surely its own. Without it, the end only comes a little
    // later.
    if !at_clone && config.namespaces.mount == NsAction::Create {
        mount_namespace = open_mount_namespace(child);
    }
    // With -t, the pty's master: the output and the input both.
    let mut master = None;
    if let Some(socket) = &pty_socket {
        match super::pty::recv_fd(socket.as_fd()) {
            Ok(Some(fd)) => {
                if let Ok(flags) = fcntl(&fd, FcntlArg::F_GETFL) {
                    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
                    let _ = fcntl(&fd, FcntlArg::F_SETFL(flags));
                }
                if let (Some(relay), Ok(copy)) = (stdin_relay.as_mut(), fd.try_clone()) {
                    relay.use_tty(copy);
                }
                master = Some(fd);
            }
            other => {
                kill_and_reap(child);
                return fail(args, &mut agent, format!("receive the pty: {other:?}"));
            }
        }
    }
    drop(pty_socket);
    let ready = ShimMessage::Ready {
        shim_pid: getpid().as_raw() as u32,
        pid: child.as_raw() as u32,
    };
    if let Err(e) = agent.send(&ready) {
        note(format_args!("send ready: {e}"));
    }

    let release = match released {
        true => Release::Go,
        false => wait_for_go(&mut agent, &pidfd, None),
    };
    match release {
        // (`Reported` only comes with a report watched: not here.)
        Release::Go | Release::Reported => {}
        Release::AgentGone => return agent_gone_before_go(args, &mut agent, child),
        Release::ChildDied => return died_before_start(args, &mut agent, child),
    }
    if !released {
        if let Err(e) = sync::release(&monitor.go) {
            return release_failed(args, &mut agent, child, e);
        }
    }
    drop(monitor.go);

    match sync::read_exec(&monitor.report) {
        Ok(None) => {}
        Ok(Some((kind, message))) => {
            reap(child);
            return fail_as(args, &mut agent, kind, message);
        }
        Err(e) => {
            kill_and_reap(child);
            return fail(args, &mut agent, format!("read exec report: {e}"));
        }
    }
    drop(monitor.report);
    berth_sys::launch_marks::mark("shim: exec seen");
    let started_at = now();
    let held = mount_namespace.as_ref().map(|f| f.as_fd());
    if let Err(e) = agent.send_with(&ShimMessage::Running, held.as_slice()) {
        note(format_args!("send running: {e}"));
    }
    drop(mount_namespace);
    // The socket stays open for the end's message (`Exited`).
    // From here on only the pump loop runs; setup's code pages go once the
    // container has lived TRIM_AFTER (not before its exit is handled: a
    // short-lived command's exit would wait for the trim).

    let mut streams = [
        Stream {
            pipe: Some(master.unwrap_or(monitor.stdout)),
            sink: out_sink,
        },
        Stream {
            pipe: Some(monitor.stderr),
            sink: err_sink,
        },
    ];
    let mut counters = CountersFile::new(&args.state_dir);
    let status = pump(
        child,
        &pidfd,
        &mut streams,
        &mut counters,
        stdin_relay.as_mut(),
    );
    berth_sys::launch_marks::mark("shim: command ended");
    // Final counters before exit.json: whoever sees the exit sees them too.
    if let Err(e) = counters.write(&current_counters(&streams), Instant::now()) {
        note(format_args!("{e}"));
    }
    let finished_at = now();
    let (exit_code, signal) = match status {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, sig, _) => (None, Some(sig as i32)),
        other => {
            note(format_args!("unexpected wait status {other:?}"));
            (None, None)
        }
    };
    let record = ExitRecord {
        exit_code,
        signal,
        started_at: Some(started_at),
        finished_at,
        error: None,
    };
    let code = match record.write(&args.state_dir) {
        Ok(()) => 0,
        Err(e) => {
            note(format_args!("{e}"));
            1
        }
    };
    berth_sys::launch_marks::mark("shim: exit recorded");
    // Compressing what is left does not hold up the exit record.
    for s in &mut streams {
        s.sink.finish();
    }
    // Nothing of the container's is written from here on: the agent may
    // tell its end now, before this process is torn down (decision 0052).
    if code == 0 {
        // The record along with the word: the agent tells the end without
        // reading exit.json back (decision 0057).
        let exited = ShimMessage::Exited { exit: Some(record) };
        match agent.send(&exited) {
            // An agent restarted since the launch has no socket to this
            // shim: it learns of the end from the pid.
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                note(format_args!("send exited: {e}"))
            }
            _ => {}
        }
    }
    agent.close();
    // This process's teardown yields the CPU to the agent telling the end.
    // SAFETY: plain syscall on this process; raising one's own nice value
    // needs no privilege.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    code
}

/// The go could not be passed on to the container process: it is ended
/// and the failure recorded. Returns the monitor's exit code.
fn release_failed(args: &Args, agent: &mut Agent, child: Pid, e: io::Error) -> i32 {
    // (A process already dead is a zombie until reaped: the kill is moot.)
    let _ = kill(child, Signal::SIGKILL);
    let status = reap(child);
    fail(
        args,
        agent,
        format!("release container process: {e} ({status:?})"),
    )
}

/// The agent went away before its go: the container is killed and the
/// launch failure recorded. Returns the monitor's exit code.
fn agent_gone_before_go(args: &Args, agent: &mut Agent, child: Pid) -> i32 {
    kill_and_reap(child);
    agent.close();
    record_failure(args, "agent went away before the container started".into())
}

/// The container process died after its setup, before its go.
fn died_before_start(args: &Args, agent: &mut Agent, child: Pid) -> i32 {
    let status = reap(child);
    fail(
        args,
        agent,
        format!("container process died before it was started ({status:?})"),
    )
}

/// Records a launch failure in exit.json, then reports it to the agent (if
/// it still listens), and returns the monitor's exit code. In this order
/// because the agent removes the state dir once it hears of the failure: a
/// record written after that would leave the dir behind.
fn fail(args: &Args, agent: &mut Agent, message: String) -> i32 {
    fail_as(args, agent, FailureKind::Setup, message)
}

/// [`fail`] with the kind the container child reported.
fn fail_as(args: &Args, agent: &mut Agent, kind: FailureKind, message: String) -> i32 {
    let code = record_failure(args, message.clone());
    if let Err(e) = agent.send(&ShimMessage::Failed { message, kind }) {
        note(format_args!("send failed: {e}"));
    }
    agent.close();
    code
}

fn record_failure(args: &Args, message: String) -> i32 {
    note(format_args!("launch failed: {message}"));
    let record = ExitRecord {
        exit_code: None,
        signal: None,
        started_at: None,
        finished_at: now(),
        error: Some(message),
    };
    if let Err(e) = record.write(&args.state_dir) {
        note(format_args!("{e}"));
    }
    1
}

/// Forks the container child, `None` in the child: into a new user
/// namespace (and with it a new pid namespace) when the config asks for
/// one, else a plain fork into the pid namespace entered before.
fn fork_container(config: &ContainerConfig) -> Result<Option<Pid>, String> {
    if config.namespaces.new_user() {
        // SAFETY: the shim is single-threaded, so the child may run Rust code.
        return unsafe { userns::clone_child(config.namespaces.pid == NsAction::Create) }
            .map_err(|e| e.to_string());
    }
    let at_clone = config.namespaces.at_clone();
    if !at_clone.is_empty() {
        // SAFETY: the shim is single-threaded, so the child may run Rust
        // code; it sets itself up and execs (see `clone_into`).
        return unsafe { super::namespaces::clone_into(at_clone) }
            .map_err(|e| format!("clone container process into {at_clone:?}: {e}"));
    }
    // SAFETY: the shim is single-threaded, so the child may run Rust code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => Ok(None),
        Ok(ForkResult::Parent { child }) => Ok(Some(child)),
        Err(e) => Err(format!("fork container process: {e}")),
    }
}

/// The mount namespace of `child`, an unreaped child of this process (so
/// the pid is surely it); `None`, noted, if it cannot be opened.
fn open_mount_namespace(child: Pid) -> Option<std::fs::File> {
    std::fs::File::open(format!("/proc/{child}/ns/mnt"))
        .map_err(|e| note(format_args!("open the container's mount namespace: {e}")))
        .ok()
}

fn make_pipes() -> nix::Result<(MonitorFds, ChildFds)> {
    let (stdout_r, stdout_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (stderr_r, stderr_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC)?;
    // Only the monitor's read ends are non-blocking: the command must block
    // on a full pipe rather than see EAGAIN on its stdout.
    for fd in [&stdout_r, &stderr_r] {
        let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok((
        MonitorFds {
            stdout: stdout_r,
            stderr: stderr_r,
            go: go_w,
            report: report_r,
        },
        ChildFds {
            stdout: stdout_w,
            stderr: stderr_w,
            go: go_r,
            report: report_w,
            stdin: None,
            pty: None,
        },
    ))
}

fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    berth_sys::pidfd::open(pid.as_raw())
}

/// Waits for the agent's go, the child's death or, with `report`, the
/// child's setup report (or the report pipe's end), the report first.
fn wait_for_go(agent: &mut Agent, pidfd: &OwnedFd, report: Option<BorrowedFd>) -> Release {
    loop {
        if let Some(line) = agent.buffered_line() {
            if line == GO {
                return Release::Go;
            }
            note(format_args!(
                "ignoring unexpected line from agent: {line:?}"
            ));
            continue;
        }
        let Some(agent_fd) = agent.fd() else {
            return Release::AgentGone;
        };
        let report_fd = report.unwrap_or(pidfd.as_fd());
        let mut fds = [
            PollFd::new(agent_fd, PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(report_fd, PollFlags::POLLIN),
        ];
        let watched = if report.is_some() { 3 } else { 2 };
        match poll(&mut fds[..watched], PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                note(format_args!("poll for go: {e}"));
                return Release::AgentGone;
            }
        }
        let agent_ready = fds[0].any().unwrap_or(true);
        let child_gone = fds[1].any().unwrap_or(false);
        let reported = report.is_some() && fds[2].any().unwrap_or(false);
        if reported {
            // First: a setup that failed is reported as it failed.
            return Release::Reported;
        } else if agent_ready {
            match agent.read() {
                Incoming::Line(line) if line == GO => return Release::Go,
                Incoming::Line(line) => note(format_args!(
                    "ignoring unexpected line from agent: {line:?}"
                )),
                Incoming::Partial => {}
                Incoming::Closed => return Release::AgentGone,
            }
        } else if child_gone {
            return Release::ChildDied;
        }
    }
}

/// Copies output until the child exits, then drains what is left and returns
/// the child's wait status.
fn pump(
    child: Pid,
    pidfd: &OwnedFd,
    streams: &mut [Stream; 2],
    counters: &mut CountersFile,
    mut stdin_relay: Option<&mut super::attach_stdin::StdinRelay>,
) -> WaitStatus {
    let mut scratch = vec![0u8; SCRATCH];
    let mut trim_at = Some(Instant::now() + TRIM_AFTER);
    loop {
        let mut ready = [false; 2];
        let relay_ready;
        let child_gone;
        {
            let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let mut index = Vec::new();
            for (i, s) in streams.iter().enumerate() {
                if let Some(pipe) = &s.pipe {
                    fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                    index.push(i);
                }
            }
            let n_streams = fds.len();
            let relay_slots = stdin_relay.as_deref().map(|r| r.poll_fds(&mut fds));
            match poll(&mut fds, poll_timeout(streams, counters, trim_at)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // Not expected; fall back to waiting for the child so the
                    // exit is still recorded.
                    note(format_args!("poll: {e}"));
                    break;
                }
            }
            child_gone = fds[0].any().unwrap_or(false);
            for (pfd, &i) in fds[1..n_streams].iter().zip(&index) {
                ready[i] = pfd.any().unwrap_or(true);
            }
            relay_ready = relay_slots
                .as_ref()
                .map(|slots| super::attach_stdin::StdinRelay::ready(slots, &fds));
        }
        if let (Some(relay), Some(r)) = (stdin_relay.as_deref_mut(), relay_ready) {
            relay.on_ready(r);
        }
        // One clock reading per wake-up serves both streams' index entries.
        let at = Stamp::now();
        for (s, r) in streams.iter_mut().zip(ready) {
            if r {
                pump_once(s, at, &mut scratch);
            }
        }
        for s in streams.iter_mut() {
            s.sink.tick();
        }
        if let Err(e) = counters.tick(&current_counters(streams), at.mono) {
            note(format_args!("{e}"));
        }
        if child_gone {
            break;
        }
        if trim_at.is_some_and(|t| Instant::now() >= t) {
            trim_at = None;
            // From this loop: the stack its own calls use stays.
            super::resident::trim_after_setup();
        }
    }
    let status = reap(child);
    // A dead pid namespace closes every write end; without one, a background
    // process may keep a pipe open, so stop at EAGAIN rather than EOF.
    for s in streams.iter_mut() {
        while s.pipe.is_some() && pump_once(s, Stamp::now(), &mut scratch) {}
    }
    status
}

/// How long poll may sleep: until the counters are due, a compression
/// child may have finished or the code pages are to be trimmed; forever if
/// none.
fn poll_timeout(
    streams: &[Stream; 2],
    counters: &CountersFile,
    trim_at: Option<Instant>,
) -> PollTimeout {
    let now = Instant::now();
    let mut wait = counters.due_in(&current_counters(streams), now);
    if let Some(t) = trim_at {
        let left = t.saturating_duration_since(now);
        wait = Some(wait.map_or(left, |w| w.min(left)));
    }
    if streams.iter().any(|s| s.sink.busy()) {
        wait = Some(wait.map_or(COMPRESS_POLL, |w| w.min(COMPRESS_POLL)));
    }
    match wait {
        // Rounded up to whole milliseconds so as not to wake up just early.
        Some(w) => PollTimeout::try_from(
            w.as_millis() as u64 + u64::from(w.subsec_nanos() % 1_000_000 != 0),
        )
        .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    }
}

fn current_counters(streams: &[Stream; 2]) -> LogCounters {
    LogCounters {
        stdout: streams[0].sink.counters(),
        stderr: streams[1].sink.counters(),
    }
}

/// One step from the stream's pipe into its sink. Returns whether data came;
/// closes the pipe at EOF or on error.
fn pump_once(stream: &mut Stream, at: Stamp, scratch: &mut [u8]) -> bool {
    let Some(pipe) = &stream.pipe else {
        return false;
    };
    match stream.sink.pump(pipe.as_fd(), at, scratch) {
        Pumped::Data => true,
        Pumped::Empty => false,
        Pumped::Closed => {
            stream.pipe = None;
            false
        }
    }
}

fn reap(child: Pid) -> WaitStatus {
    loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => {}
            Ok(status) => return status,
            Err(e) => {
                note(format_args!("waitpid {child}: {e}"));
                return WaitStatus::StillAlive;
            }
        }
    }
}

fn kill_and_reap(child: Pid) {
    if let Err(e) = kill(child, Signal::SIGKILL) {
        note(format_args!("kill {child}: {e}"));
    }
    reap(child);
}
