//! `berth-shim health`: the per-container checker. The agent starts it
//! after the container runs; it detaches (its first process exits at once,
//! the checker leads its own session), so checks go on while the agent is
//! down or restarting. It checks every `interval`, writes `health.json`
//! atomically after each check, ends the container when it is unhealthy
//! and the check says `kill` or `restart`, and exits when the container's
//! process is gone.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::probe::{self, Target};
use berth_protocol::health::{
    Change, CheckResult, HealthCheck, HealthState, OnUnhealthy, Status, CHECKER_FILE, CONFIG_FILE,
    KEPT_CHANGES, KEPT_RESULTS, LOG_FILE, STATE_FILE,
};
use berth_protocol::process::ProcessRef;
use berth_protocol::HealthArgs;

/// The checker's entry point; returns the exit code of its first process.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args = match HealthArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("berth-shim health: {e}");
            return 2;
        }
    };
    let check: HealthCheck = match std::fs::read(args.state_dir.join(CONFIG_FILE))
        .map_err(|e| e.to_string())
        .and_then(|raw| serde_json::from_slice(&raw).map_err(|e| e.to_string()))
    {
        Ok(check) => check,
        Err(e) => {
            eprintln!("berth-shim health: read {CONFIG_FILE}: {e}");
            return 1;
        }
    };
    let probe = match check.validate() {
        Ok(probe) => probe,
        Err((field, message)) => {
            eprintln!("berth-shim health: {field}: {message}");
            return 1;
        }
    };
    // SAFETY: the process is single-threaded here (the shim's main).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            eprintln!("berth-shim health: fork: {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    // Pins no directory of whoever started it.
    let _ = nix::unistd::chdir("/");
    detach_stdio(&args.state_dir);
    if let Some(me) = ProcessRef::of(std::process::id()) {
        let raw = serde_json::to_vec(&me).expect("a process ref serializes");
        let path = args.state_dir.join(CHECKER_FILE);
        if let Err(e) =
            berth_sys::atomic::write_atomic(&path, &raw, berth_sys::atomic::Durability::CrashSafe)
        {
            eprintln!("{} health: {e}", now());
        }
    }
    // SAFETY: SIG_IGN installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let shim = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth-shim"));
    let target = Target {
        process: ProcessRef {
            pid: args.pid,
            start_time: args.start_time,
        },
        bundle: &args.bundle,
        state_dir: &args.state_dir,
        shim: &shim,
    };
    run(&check, &probe, &target);
    0
}

/// stdin from /dev/null, stdout and stderr to the checker's log.
fn detach_stdio(state_dir: &Path) {
    use std::os::fd::AsFd;
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(null.as_fd());
    }
    if let Ok(log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(LOG_FILE))
    {
        let _ = nix::unistd::dup2_stdout(log.as_fd());
        let _ = nix::unistd::dup2_stderr(log.as_fd());
    }
}

/// Checks until the container ends (or is ended for being unhealthy).
fn run(check: &HealthCheck, probe: &berth_protocol::health::Probe, target: &Target<'_>) {
    let started = Instant::now();
    let mut state = HealthState::new(now());
    let mut seen_success = false;
    write_state(target, &state);
    loop {
        sleep_while_alive(target.process, check.interval.0);
        if !target.process.is_alive() {
            return;
        }
        let start = now();
        let outcome = probe::run(probe, target, check.timeout.0);
        let end = now();
        if !target.process.is_alive() {
            return;
        }
        let healthy = outcome.exit_code == 0;
        let grace = !seen_success && started.elapsed() < check.start_period.0;
        let ignored = !healthy && grace;
        let status = if healthy {
            seen_success = true;
            state.failing_streak = 0;
            Status::Healthy
        } else if ignored {
            state.status
        } else {
            state.failing_streak += 1;
            if state.failing_streak >= check.retries {
                Status::Unhealthy
            } else {
                state.status
            }
        };
        state.log.push(CheckResult {
            exit_code: outcome.exit_code,
            output: outcome.output,
            start,
            end: end.clone(),
            ignored,
        });
        let surplus = state.log.len().saturating_sub(KEPT_RESULTS);
        state.log.drain(..surplus);
        if status != state.status {
            eprintln!("{end} health: {} -> {status}", state.status);
            state.status = status;
            state.changes.push(Change { status, at: end });
            let surplus = state.changes.len().saturating_sub(KEPT_CHANGES);
            state.changes.drain(..surplus);
        }
        let end_it = status == Status::Unhealthy && check.on_unhealthy != OnUnhealthy::Report;
        if end_it {
            // Recorded before the kill: the agent's record of the end
            // reads it and says `unhealthy`.
            state.killed = true;
        }
        write_state(target, &state);
        if end_it {
            eprintln!("{} health: unhealthy, ending the container", now());
            let _ = target.process.signal(libc::SIGKILL);
            return;
        }
    }
}

/// Sleeps `duration`, returning early when the container ends.
fn sleep_while_alive(process: ProcessRef, duration: Duration) {
    let deadline = Instant::now() + duration;
    while process.is_alive() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Writes `health.json` atomically (temp file, rename), unless the
/// container has ended (a restarted container's checker writes the file).
fn write_state(target: &Target<'_>, state: &HealthState) {
    if !target.process.is_alive() {
        return;
    }
    let bytes = serde_json::to_vec_pretty(state).expect("a health state serializes");
    let path = target.state_dir.join(STATE_FILE);
    let tmp = target
        .state_dir
        .join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        eprintln!("{} health: write {}: {e}", now(), path.display());
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
