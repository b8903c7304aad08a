//! The pids isolator against the real kernel (root, cgroup v1 or v2): a
//! shell that forks 20 sleeps under a limit of 5 gets EAGAIN at the limit.

use berth_isolator::TypedSection;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use berth_cgroups::testing::{skip_unless_root, TestRoot};
use berth_cgroups::Controller;
use berth_isolator::{ContainerConfig, ContainerId, Isolator};
use berth_isolator_pids::PidsResources;
use berth_isolator_pids::{PidsIsolator, PidsOptions};

/// Kills and reaps a child we started (only that pid).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn forks_past_the_limit_fail_and_the_count_stays_at_it() {
    if skip_unless_root() {
        return;
    }
    let root = TestRoot::detect();
    let isolator = PidsIsolator::new(root.shared(), PidsOptions::default()).unwrap();
    let id = ContainerId::new("forker").unwrap();
    let mut config = ContainerConfig::for_command(id.clone(), ["sh"]);
    config.resources = PidsResources {
        pids_limit: Some(5),
    }
    .into_resources();
    isolator.prepare(&id, &config).unwrap();
    let cgroup = root.container("forker").unwrap();
    assert_eq!(
        cgroup.read(Controller::Pids, "pids.max").unwrap().trim(),
        "5"
    );

    // The shell waits for a line, so it is in the cgroup before it forks.
    let mut child = Reaped(
        Command::new("sh")
            .args([
                "-c",
                "read x; i=0; while [ $i -lt 20 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo all-started",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    isolator.isolate(&id, child.0.id()).unwrap();
    child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the shell did not give up");
        thread::sleep(Duration::from_millis(20));
    }
    // The sleeps do not hold the pipes: both end with the shell.
    let read = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        pipe.unwrap().read_to_string(&mut text).unwrap();
        text
    };
    let stdout = read(child.0.stdout.as_mut().map(|p| p as &mut dyn Read));
    let stderr = read(child.0.stderr.as_mut().map(|p| p as &mut dyn Read));
    assert!(!stdout.contains("all-started"), "{stdout}");
    assert!(stderr.to_lowercase().contains("fork"), "{stderr}");

    let usage = isolator.usage(&id).unwrap();
    eprintln!("usage after the storm: {usage:?}");
    assert!(usage["current"].as_u64().unwrap() <= 5, "{usage:?}");
    assert_eq!(usage["limit"], 5);
    assert!(usage["limit_hits"].as_u64().unwrap() >= 1, "{usage:?}");

    // A live update writes the new limit.
    let more = PidsResources {
        pids_limit: Some(50),
    }
    .into_resources();
    isolator.update(&id, &more).unwrap();
    assert_eq!(
        cgroup.read(Controller::Pids, "pids.max").unwrap().trim(),
        "50"
    );

    // Kill the sleeps we started (by pid, from the cgroup) and clean up.
    for pid in cgroup.pids(Controller::Pids).unwrap() {
        // SAFETY: kill(2) of our own test's processes.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cgroup.pids(Controller::Pids).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the sleeps did not die");
        thread::sleep(Duration::from_millis(20));
    }
    isolator.cleanup(&id).unwrap();
    assert!(!cgroup.path(Controller::Pids).unwrap().exists());
}
