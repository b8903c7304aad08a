//! Isolator plugins (issue 15, decision 0041): the Python example plugin
//! (long-lived) and the shell one (exec mode) through the real API, their
//! failure policy, supervision and recovery, and replies berth refuses.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Agent;
use serde_json::{json, Value};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/plugins")
        .join(name)
}

/// The pool plugin (long-lived, required) and the stamp plugin (exec).
fn config(pool_extra: &str) -> String {
    format!(
        r#"
[[plugins]]
name = "pool"
path = "{pool}"
gc_interval_seconds = 0.3
{pool_extra}
[plugins.timeouts]
call_seconds = 3
handshake_seconds = 5

[[plugins]]
name = "stamp"
path = "{stamp}"
mode = "exec"
[plugins.timeouts]
call_seconds = 2

[isolators.pool]
size = 4
"#,
        pool = example("pool.py").display(),
        stamp = example("stamp.sh").display(),
    )
}

fn state_dir(agent: &Agent, plugin: &str) -> PathBuf {
    agent.work_dir.join("plugins").join(plugin)
}

/// The pool plugin's events.log, as JSON values.
fn events(agent: &Agent) -> Vec<Value> {
    std::fs::read_to_string(state_dir(agent, "pool").join("events.log"))
        .unwrap_or_default()
        .lines()
        // A line being written may be cut: the next look sees it whole.
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn message(answer: &common::Answer) -> String {
    answer.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn plugin_info(agent: &Agent, name: &str) -> Value {
    agent.isolator_info(name)["plugin"].clone()
}

fn wait_ready(agent: &Agent, name: &str) -> Value {
    common::eventually(Duration::from_secs(20), "the plugin is ready", || {
        let info = plugin_info(agent, name);
        (info["state"] == "ready").then_some(info)
    })
}

#[test]
fn a_python_plugin_validates_prepares_reports_and_cleans_up() {
    require_root!();
    let agent = Agent::start_with_config(&config(""));
    let info = plugin_info(&agent, "pool");
    assert_eq!(info["state"], "ready", "{info}");
    assert_eq!(info["version"], "0.1.0");
    assert_eq!(info["protocol_version"], 1);
    assert_eq!(info["mode"], "long-lived");
    assert_eq!(info["policy"], "required");
    assert!(info["last_error"].is_null());
    assert_eq!(info["schema"]["properties"]["slots"]["type"], "integer");
    assert_eq!(agent.isolator_info("pool")["resources"]["section"], "pool");
    assert_eq!(plugin_info(&agent, "stamp")["mode"], "exec");

    // Bad values: a 400 naming resources.<plugin>.<key>, nothing made.
    for (bad, field) in [
        (json!({"pool": {"slots": 9}}), "resources.pool.slots"),
        (json!({"pool": {"slots": "x"}}), "resources.pool.slots"),
        (json!({"pool": {"gold": 1}}), "resources.pool"),
        (json!({"stamp": {"label": "NO!"}}), "resources.stamp.label"),
    ] {
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"id": "bad", "command": ["true"], "resources": bad})),
        );
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
        assert!(message(&answer).contains(field), "{bad}: {:?}", answer.body);
        assert_eq!(agent.api("GET", "/v1/containers/bad", None).status, 404);
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());

    // Prepare: its env and its mount reach the container.
    agent.launch(json!({
        "id": "c1",
        "command": ["sh", "-c", "echo slots=$POOL_SLOTS label=$STAMP_LABEL; echo hi > /tmp/scratch/f; exec sleep 300"],
        "resources": {"pool": {"slots": 2, "quota_bytes": 1 << 20}, "stamp": {"label": "blue"}},
    }));
    common::eventually(
        Duration::from_secs(10),
        "the container prints its slots",
        || {
            agent
                .stdout("c1")
                .contains("slots=0,1 label=blue")
                .then_some(())
        },
    );
    let scratch = state_dir(&agent, "pool").join("scratch/c1/f");
    common::eventually(Duration::from_secs(10), "the file in /scratch", || {
        (std::fs::read_to_string(&scratch).ok()? == "hi\n").then_some(())
    });
    // Usage in stats, under the plugin's name.
    let stats = agent.api("GET", "/v1/containers/c1/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["isolators"]["pool"]["slots"], 2);
    assert_eq!(stats.body["isolators"]["pool"]["scratch_bytes"], 3);
    assert_eq!(stats.body["isolators"]["stamp"]["prepares"], 1);
    // A second container gets the other slots; a third finds none.
    agent.launch(
        json!({"id": "c2", "command": ["sleep", "300"], "resources": {"pool": {"slots": 2}}}),
    );
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "c3", "command": ["true"], "resources": {"pool": {"slots": 1}}})),
    );
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert!(message(&answer).contains("free"), "{:?}", answer.body);
    // Its status in inspect, under its name.
    let c2 = agent.api("GET", "/v1/containers/c2", None).body;
    assert_eq!(c2["status"]["pool"]["slots"], json!([2, 3]), "{c2}");
    // The CLI reaches the plugin's section; its refusal names the field.
    let out = agent.berth(&["update", "c2", "--resource", "pool.quota_bytes=-1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resources.pool.quota_bytes"), "{stderr}");

    // Cleanup: its slots and scratch are released.
    let answer = agent.api("DELETE", "/v1/containers/c1?force=true", None);
    assert!(answer.status < 300, "{:?}", answer.body);
    assert!(!state_dir(&agent, "pool")
        .join("assignments/c1.json")
        .exists());
    assert!(!scratch.exists());
    assert!(events(&agent)
        .iter()
        .any(|e| e["event"] == "cleanup" && e["id"] == "c1"));
    agent.launch(
        json!({"id": "c4", "command": ["sleep", "300"], "resources": {"pool": {"slots": 2}}}),
    );
}

/// A restart relaunches only once the old run is cleaned up (its end is
/// published before that cleanup, decisions 0044 and 0047). With the stamp
/// plugin's cleanup held for a second (the pool's and the built-ins' come
/// after it), a relaunch that did not wait would prepare while the old run
/// still holds its net_cls class id and pool slot, whose late cleanup would
/// then take the new run's away.
#[test]
fn a_restart_relaunches_once_the_old_run_is_cleaned_up() {
    require_root!();
    let agent = Agent::start_with_config(&config(""));
    wait_ready(&agent, "pool");
    agent.launch(json!({
        "id": "r1",
        "command": ["sleep", "300"],
        "resources": {"pool": {"slots": 1}, "stamp": {"label": "slow"}},
    }));
    std::fs::write(state_dir(&agent, "stamp").join("slow-cleanup"), "1").unwrap();
    let answer = agent.api(
        "POST",
        "/v1/containers/r1/restart",
        Some(json!({"timeout": 1})),
    );
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, agent.log());
    assert_eq!(answer.body["state"], "running");
    assert!(
        events(&agent)
            .iter()
            .any(|e| e["event"] == "cleanup" && e["id"] == "r1"),
        "the old run's pool cleanup came after the restart's answer"
    );
    let pool = state_dir(&agent, "pool");
    assert!(
        pool.join("assignments/r1.json").exists(),
        "the new run lost its slot"
    );
    assert!(
        pool.join("scratch/r1").is_dir(),
        "the new run lost its scratch dir"
    );
}

#[test]
fn a_limitation_reported_by_a_plugin_ends_the_container() {
    require_root!();
    let agent = Agent::start_with_config(&config(""));
    agent.launch(json!({
        "id": "c1",
        "command": ["sh", "-c", "head -c 8192 /dev/zero > /tmp/scratch/big; exec sleep 300"],
        "resources": {"pool": {"quota_bytes": 4096}},
    }));
    let ended = agent.wait("c1");
    assert_eq!(ended["reason"], "scratch-limit", "{ended}\n{}", agent.log());
    assert!(
        ended["limitation"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("scratch quota 4096"),
        "{ended}"
    );
}

#[test]
fn a_plugin_killed_during_a_launch_fails_it_cleanly_and_is_restarted() {
    require_root!();
    let agent = Agent::start_with_config(&config(""));
    let first = plugin_info(&agent, "pool");
    let pid = first["pid"].as_u64().unwrap() as i32;
    std::thread::scope(|s| {
        let launch = s.spawn(|| {
            agent.api(
                "POST",
                "/v1/containers",
                Some(
                    json!({"id": "c1", "command": ["true"], "resources": {"pool": {"hang": true}}}),
                ),
            )
        });
        // The launch has its dirs: the plugin's prepare is next or sent.
        common::eventually(Duration::from_secs(10), "the launch started", || {
            agent.container_dir("c1").exists().then_some(())
        });
        // SAFETY: kill(2) of the plugin process the agent started for this
        // test (its pid from the agent's own report).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let answer = launch.join().unwrap();
        assert_eq!(answer.status, 500, "{:?}", answer.body);
        assert!(
            message(&answer).contains("plugin pool"),
            "{:?}",
            answer.body
        );
    });
    // Nothing left behind: no record, no sandbox, no cgroup.
    assert_eq!(agent.api("GET", "/v1/containers/c1", None).status, 404);
    common::eventually(Duration::from_secs(10), "nothing left behind", || {
        agent.leftovers().is_empty().then_some(())
    });
    // Restarted (the next launch waits for it), recover replayed.
    agent.launch(json!({"id": "c2", "command": ["sleep", "300"], "resources": {"pool": {}}}));
    let info = wait_ready(&agent, "pool");
    assert_ne!(info["pid"], first["pid"]);
    assert!(info["restarts"].as_u64().unwrap() >= 1, "{info}");
    assert!(
        info["last_error"].as_str().unwrap().contains("died"),
        "{info}"
    );
    assert!(
        events(&agent)
            .iter()
            .any(|e| e["event"] == "recover" && e["replay"] == true),
        "{:?}",
        events(&agent)
    );
}

#[test]
fn a_hung_plugin_times_out_without_blocking_other_launches() {
    require_root!();
    let agent = Agent::start_with_config(&config(""));
    let started = Instant::now();
    std::thread::scope(|s| {
        let hung = s.spawn(|| {
            let answer = agent.api(
                "POST",
                "/v1/containers",
                Some(json!({"id": "hung", "command": ["true"], "resources": {"pool": {"hang": true}}})),
            );
            (answer, started.elapsed())
        });
        common::eventually(Duration::from_secs(10), "the hung launch started", || {
            agent.container_dir("hung").exists().then_some(())
        });
        // Others launch meanwhile, through the same plugin.
        agent.launch(json!({"id": "ok", "command": ["sleep", "300"], "resources": {"pool": {}}}));
        let ok_at = started.elapsed();
        let (answer, hung_at) = hung.join().unwrap();
        assert_eq!(answer.status, 500, "{:?}", answer.body);
        assert!(
            message(&answer).contains("prepare timed out after 3.0s"),
            "{:?}",
            answer.body
        );
        assert!(ok_at < hung_at, "ok at {ok_at:?}, hung at {hung_at:?}");
        println!("hung launch failed after {hung_at:?}; the other launched at {ok_at:?}");
    });
    assert_eq!(agent.api("GET", "/v1/containers/hung", None).status, 404);
    // An exec-mode plugin that hangs is killed at its timeout.
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(
            json!({"id": "hung2", "command": ["true"], "resources": {"stamp": {"label": "hang"}}}),
        ),
    );
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert!(
        message(&answer).contains("plugin stamp: prepare: timed out"),
        "{:?}",
        answer.body
    );
    assert_eq!(plugin_info(&agent, "pool")["state"], "ready");
}

#[test]
fn recovery_after_the_agent_is_killed_replays_recover_and_gc_reaps_an_orphan() {
    require_root!();
    let mut agent = Agent::start_with_config(&config(""));
    agent.launch(
        json!({"id": "c1", "command": ["sleep", "300"], "resources": {"pool": {"slots": 3}}}),
    );
    agent.kill_agent();
    agent.start_again();
    let recovers: Vec<Value> = events(&agent)
        .into_iter()
        .filter(|e| e["event"] == "recover" && e["replay"] == false)
        .collect();
    // One at each start: the second one with the container the agent knew.
    assert_eq!(recovers.len(), 2, "{recovers:?}");
    assert_eq!(recovers[1]["containers"], json!(["c1"]));
    // The new plugin process rebuilt c1's slots from its state.
    let stats = agent.api("GET", "/v1/containers/c1/stats", None);
    assert_eq!(
        stats.body["isolators"]["pool"]["slots"], 3,
        "{:?}",
        stats.body
    );
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "c2", "command": ["true"], "resources": {"pool": {"slots": 2}}})),
    );
    assert_eq!(answer.status, 409, "{:?}", answer.body);

    // Something leaked (say, a launch the plugin saw but berth never
    // finished): gc, given the live ids, lets the plugin reap it.
    let dir = state_dir(&agent, "pool");
    std::fs::create_dir_all(dir.join("scratch/ghost")).unwrap();
    std::fs::write(
        dir.join("assignments/ghost.json"),
        r#"{"slots": [3], "quota_bytes": 0}"#,
    )
    .unwrap();
    common::eventually(Duration::from_secs(10), "gc reaps the orphan", || {
        events(&agent)
            .iter()
            .any(|e| e["event"] == "gc" && e["reaped"] == json!(["ghost"]))
            .then_some(())
    });
    assert!(!dir.join("assignments/ghost.json").exists());
    assert!(!dir.join("scratch/ghost").exists());
    assert!(dir.join("assignments/c1.json").exists());
}

/// Runs `berth agent` with a config and returns its exit status and stderr
/// (for configs that stop the agent at start).
fn agent_refusing(toml: &str) -> (std::process::ExitStatus, String) {
    let (_dir, out) = common::agent_start_output(Some(toml), [""; 0]);
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_protocol_version_mismatch_is_refused_at_handshake() {
    require_root!();
    // Required: the agent does not start, and says why.
    let toml = format!(
        "isolation = [\"pool\"]\n[[plugins]]\nname = \"pool\"\npath = \"{}\"\n[plugins.env]\nPOOL_PROTOCOL = \"2\"\n",
        example("pool.py").display()
    );
    let (status, stderr) = agent_refusing(&toml);
    assert!(!status.success());
    assert!(
        stderr.contains("plugin pool: protocol version mismatch: berth speaks [1]")
            && stderr.contains("pool speaks protocol versions [2]"),
        "{stderr}"
    );
    // Optional: offered, its state and last error shown.
    let agent = Agent::start_with_config(&format!(
        "[[plugins]]\nname = \"pool\"\npath = \"{}\"\npolicy = \"optional\"\n[plugins.env]\nPOOL_PROTOCOL = \"2\"\n",
        example("pool.py").display()
    ));
    let info = plugin_info(&agent, "pool");
    assert_ne!(info["state"], "ready", "{info}");
    assert!(
        info["last_error"]
            .as_str()
            .unwrap()
            .contains("protocol version mismatch"),
        "{info}"
    );
    // Optional: its failure is skipped and the launch goes on, without
    // waiting for it.
    let started = Instant::now();
    agent.launch(json!({"id": "c1", "command": ["true"], "isolation": ["pool"]}));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let out = agent.berth(&["info"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("pool ") && l.contains("long-lived"))
        .unwrap_or_default();
    assert!(
        row.contains("optional") && row.contains("protocol version mismatch"),
        "{text}"
    );
}

#[test]
fn malicious_replies_are_refused() {
    require_root!();
    let evil = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/evil.py");
    let agent = Agent::start_with_config(&format!(
        "[[plugins]]\nname = \"evil\"\npath = \"{}\"\n",
        evil.display()
    ));
    for (attack, refused) in [
        ("mount-root", "may not mount the host's root"),
        ("mount-proc", "may not mount over or under /proc"),
        ("bad-env", "not a valid variable name"),
        ("huge-line", "longer than 1048576 bytes"),
    ] {
        let started = Instant::now();
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"id": "c1", "command": ["true"], "resources": {"evil": {"do": attack}}})),
        );
        assert_eq!(answer.status, 500, "{attack}: {:?}", answer.body);
        assert!(
            message(&answer).contains(refused),
            "{attack}: {:?}",
            answer.body
        );
        println!("{attack}: refused in {:?}", started.elapsed());
        assert_eq!(agent.api("GET", "/v1/containers/c1", None).status, 404);
        common::eventually(Duration::from_secs(10), "nothing left behind", || {
            agent.leftovers().is_empty().then_some(())
        });
        wait_ready(&agent, "evil");
    }
}

const PIDS_PLUGIN_ROOT: &str = "BERTH_TEST_PIDS_PLUGIN_ROOT";

/// Not a test by itself: the built-in pids isolator served out of process
/// by the `berth-plugin` crate, as the plugin `xpids`, when the agent runs
/// this binary as a plugin (with the cgroup root in the environment, the
/// protocol on stdin and fd 3: libtest's own chatter goes to stdout, which
/// the wrapper points at stderr). Without it, it does nothing.
#[test]
fn pids_plugin_process() {
    let Ok(root) = std::env::var(PIDS_PLUGIN_ROOT) else {
        return;
    };
    use std::os::fd::FromRawFd;
    // SAFETY: fd 3 is the agent's pipe, opened by the wrapper shell for
    // this process and owned by nothing else in it.
    let out = unsafe { std::fs::File::from_raw_fd(3) };
    let root = Arc::new(berth_cgroups::CgroupRoot::detect(&root).unwrap());
    let pids = berth_isolator_pids::PidsIsolator::new(
        root,
        berth_isolator_pids::PidsOptions {
            default_limit: 100,
            allow_unlimited: false,
        },
    )
    .unwrap();
    berth_plugin::serve(pids, "xpids", std::io::stdin().lock(), out).unwrap();
}

#[test]
fn a_built_in_isolator_runs_out_of_process_through_the_rust_helper() {
    require_root!();
    let root = format!("berth-test-{}-xpids", std::process::id());
    /// Removes the plugin's cgroup root, also when the test fails.
    struct RemoveRoot(String);
    impl Drop for RemoveRoot {
        fn drop(&mut self) {
            for dir in common::own_hierarchy_dirs() {
                let root = dir.join(&self.0);
                if let Ok(entries) = std::fs::read_dir(&root) {
                    for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
                let _ = std::fs::remove_dir(root);
            }
        }
    }
    let _root = RemoveRoot(root.clone());
    let wrapper = "exec \"$0\" --exact pids_plugin_process --nocapture --test-threads=1 3>&1 1>&2";
    let agent = Agent::start_with_config(&format!(
        r#"
isolation = ["cpu", "memory", "xpids"]
[[plugins]]
name = "xpids"
path = "/bin/sh"
args = ["-c", '{wrapper}', "{exe}"]
[plugins.env]
{PIDS_PLUGIN_ROOT} = "{root}"
"#,
        exe = std::env::current_exe().unwrap().display(),
    ));
    let info = plugin_info(&agent, "xpids");
    assert_eq!(info["state"], "ready", "{info}\n{}", agent.log());
    // Its validation, through the protocol, names the plugin's field.
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(
            json!({"id": "bad", "command": ["true"], "resources": {"xpids": {"pids_limit": "x"}}}),
        ),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(
        message(&answer).contains("resources.xpids.pids_limit"),
        "{:?}",
        answer.body
    );
    // Its limit is set and reported...
    agent.launch(json!({
        "id": "c1",
        "command": ["sleep", "300"],
        "resources": {"xpids": {"pids_limit": 12}},
    }));
    let stats = agent.api("GET", "/v1/containers/c1/stats", None);
    assert_eq!(
        stats.body["isolators"]["xpids"]["limit"], 12,
        "{:?}",
        stats.body
    );
    assert_eq!(
        stats.body["isolators"]["xpids"]["current"], 1,
        "{:?}",
        stats.body
    );
    // ...and holds: with 2, the shell cannot start its third sleep.
    agent.launch(json!({
        "id": "c2",
        "command": ["sh", "-c", "sleep 300 & sleep 300 & sleep 300 & echo all; wait"],
        "resources": {"xpids": {"pids_limit": 2}},
    }));
    let ended = agent.wait("c2");
    assert_ne!(ended["exit_code"], 0, "{ended}");
    assert!(!agent.stdout("c2").contains("all"));
    let answer = agent.api("DELETE", "/v1/containers/c1?force=true", None);
    assert!(answer.status < 300, "{:?}", answer.body);
    // The agent (and with it the plugin) goes before the root.
    drop(agent);
}

/// A plugin that stops reading its input (its pipe fills) blocks no caller:
/// every call still ends at its timeout, the agent keeps answering.
#[test]
fn a_plugin_that_stops_reading_blocks_nothing() {
    require_root!();
    let evil = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/evil.py");
    let agent = Agent::start_with_config(&format!(
        "[[plugins]]\nname = \"evil\"\npath = \"{}\"\n[plugins.timeouts]\ncall_seconds = 1\nquery_seconds = 1\ncleanup_seconds = 1\n",
        evil.display()
    ));
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "c1", "command": ["true"], "resources": {"evil": {"do": "stop-read"}}})),
    );
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert!(message(&answer).contains("timed out"), "{:?}", answer.body);
    // Requests larger than a pipe's buffer (64 KiB), to a plugin that no
    // longer reads: each launch still ends at the timeout.
    for n in 0..3 {
        let started = Instant::now();
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"id": format!("big{n}"), "command": ["true"], "env": {"BIG": "x".repeat(100_000)}})),
        );
        assert_eq!(answer.status, 500, "{:?}", answer.body);
        assert!(
            message(&answer).contains("evil: validate timed out"),
            "{:?}",
            answer.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(agent.api("GET", "/v1/info", None).status, 200);
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
    // It dies with the agent (SIGKILLed here), though it reads nothing.
    let pid = plugin_info(&agent, "evil")["pid"].as_u64().unwrap();
    drop(agent);
    common::eventually(Duration::from_secs(10), "the plugin is gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie about to be reaped by whoever inherited it.
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    });
}

/// `optional`: a plugin failure (here a hang past the timeout) is logged and
/// skipped, and the launch goes on without its contribution; its refusals
/// (a 400) still stand.
#[test]
fn an_optional_plugin_that_fails_is_skipped() {
    require_root!();
    let agent = Agent::start_with_config(&format!(
        "[[plugins]]\nname = \"pool\"\npath = \"{}\"\npolicy = \"optional\"\n[plugins.timeouts]\ncall_seconds = 1\n",
        example("pool.py").display()
    ));
    agent.launch(json!({
        "id": "c1",
        "command": ["sh", "-c", "echo slots=${POOL_SLOTS:-none}"],
        "resources": {"pool": {"hang": true}},
    }));
    agent.wait("c1");
    assert!(
        agent.stdout("c1").contains("slots=none"),
        "{}",
        agent.stdout("c1")
    );
    assert!(
        agent.log().contains("optional plugin skipped in prepare"),
        "{}",
        agent.log()
    );
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "c2", "command": ["true"], "resources": {"pool": {"slots": 0}}})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
}

/// The stamp plugin (exec mode) returning `resources` as its cgroup
/// settings from every prepare, with `policy`.
fn stamp_with_resources(resources: &str, policy: &str) -> Agent {
    Agent::start_with_config(&format!(
        "[[plugins]]\nname = \"stamp\"\npath = \"{}\"\nmode = \"exec\"\npolicy = \"{policy}\"\n[plugins.env]\nSTAMP_LINUX_RESOURCES = '{resources}'\n",
        example("stamp.sh").display()
    ))
}

fn cgroup_file(agent: &Agent, controller: &str, id: Option<&str>, file: &str) -> String {
    std::fs::read_to_string(agent.cgroup_dir(controller, id).join(file))
        .unwrap_or_else(|e| panic!("{controller}/{file}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn a_plugins_cgroup_settings_are_applied_to_the_containers_cgroups() {
    require_root!();
    let agent = stamp_with_resources(
        r#"{"pids":{"limit":17},"cpu":{"quota":50000,"period":100000},"memory":{"limit":67108864}}"#,
        "required",
    );
    // The request's own settings of other fields stay.
    let container = agent.launch(json!({
        "id": "set", "command": ["sleep", "300"],
        "resources": {"memory": {"memory_reservation": 33554432u64}},
    }));
    assert_eq!(cgroup_file(&agent, "pids", Some("set"), "pids.max"), "17");
    assert_eq!(
        cgroup_file(&agent, "cpu", Some("set"), "cpu.cfs_quota_us"),
        "50000"
    );
    assert_eq!(
        cgroup_file(&agent, "cpu", Some("set"), "cpu.cfs_period_us"),
        "100000"
    );
    assert_eq!(
        cgroup_file(&agent, "memory", Some("set"), "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(
        cgroup_file(&agent, "memory", Some("set"), "memory.soft_limit_in_bytes"),
        "33554432"
    );
    // The bundle records what was applied.
    let bundle = Path::new(container["bundle"].as_str().unwrap()).join("config.json");
    let spec: Value = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    let resources = &spec["linux"]["resources"];
    assert_eq!(resources["pids"]["limit"], 17, "{resources}");
    assert_eq!(resources["memory"]["limit"], 67108864, "{resources}");
    assert_eq!(resources["cpu"]["quota"], 50000, "{resources}");
    // And the limit binds: a 20th process cannot be forked.
    let out = agent.api(
        "POST",
        "/v1/containers/set/exec",
        Some(json!({"command": ["sh", "-c", "for i in $(seq 30); do sleep 2 & done; wait"]})),
    );
    assert_eq!(out.status, 200, "{:?}", out.body);
    let failed_fork = out.body["exit_code"] != 0
        || out.body["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("fork");
    assert!(failed_fork, "{}", out.body);
    let deleted = agent.api("DELETE", "/v1/containers/set?force=true", None);
    assert_eq!(deleted.status, 204);
}

#[test]
fn a_setting_the_request_makes_too_is_refused_naming_the_field() {
    require_root!();
    let agent = stamp_with_resources(r#"{"pids":{"limit":17}}"#, "required");
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "both", "command": ["true"], "resources": {"pids": {"pids_limit": 50}}})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let why = message(&answer);
    assert!(
        why.contains("resources.pids.pids_limit") && why.contains("plugin stamp"),
        "{:?}",
        answer.body
    );
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn settings_berth_does_not_apply_fail_the_launch_and_write_nothing() {
    require_root!();
    // The attack: a key shaped like a path out of the container's cgroup,
    // a key berth does not apply, a value that would lift a limit.
    for (resources, key) in [
        (
            r#"{"pids":{"limit":5,"../../pids.max":1}}"#,
            "linux_resources.pids.../../pids.max",
        ),
        (r#"{"cpu":{"shares":2}}"#, "linux_resources.cpu.shares"),
        (r#"{"pids":{"limit":-1}}"#, "linux_resources.pids.limit"),
        (r#"{"memory":{"limit":1}}"#, "memory"),
    ] {
        let agent = stamp_with_resources(resources, "required");
        let parent_pids = cgroup_file(&agent, "pids", None, "pids.max");
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"id": "bad", "command": ["true"]})),
        );
        assert_eq!(answer.status, 500, "{resources}: {:?}", answer.body);
        let why = message(&answer);
        assert!(
            why.contains("plugin stamp") && why.contains(key),
            "{resources}: {why}"
        );
        assert!(
            agent.leftovers().is_empty(),
            "{resources}: {:?}",
            agent.leftovers()
        );
        assert_eq!(cgroup_file(&agent, "pids", None, "pids.max"), parent_pids);
    }
}

#[test]
fn an_optional_plugins_refused_settings_are_skipped() {
    require_root!();
    let agent = stamp_with_resources(r#"{"cpu":{"shares":2}}"#, "optional");
    agent.launch(json!({"id": "skipped", "command": ["sleep", "300"]}));
    assert_ne!(
        cgroup_file(&agent, "cpu", Some("skipped"), "cpu.shares"),
        "2"
    );
    assert!(
        agent
            .log()
            .contains("cgroup settings skipped (optional plugin)"),
        "{}",
        agent.log()
    );
    let deleted = agent.api("DELETE", "/v1/containers/skipped?force=true", None);
    assert_eq!(deleted.status, 204);
}

/// The end is published before the isolators' cleanup (decision 0044): a
/// plugin whose `cleanup` takes a second holds neither the wait nor the
/// exit code, but a remove waits for it, so the id can launch again.
#[test]
fn a_slow_cleanup_holds_the_remove_not_the_wait() {
    require_root!();
    let plugin = tempfile::tempdir().unwrap();
    let script = plugin.path().join("slow.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
request=$(cat)
id=$(printf '%s' "$request" | sed -n 's/^{"jsonrpc":"2.0","id":\([0-9]*\),.*/\1/p')
reply() { printf '{"jsonrpc":"2.0","id":%s,"result":%s}\n' "$id" "$1"; }
case "$1" in
handshake) reply '{"version":1,"name":"slow","plugin_version":"0.1.0","section":{"name":"slow","schema":{"type":"object"}}}' ;;
cleanup) sleep 1; echo cleaned >> "$BERTH_PLUGIN_STATE_DIR/cleanups"; reply '{}' ;;
*) reply '{}' ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let agent = Agent::start_with_config(&format!(
        "[[plugins]]\nname = \"slow\"\npath = \"{}\"\nmode = \"exec\"\n",
        script.display()
    ));
    let cleanups = || {
        std::fs::read_to_string(state_dir(&agent, "slow").join("cleanups"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    for round in 1..=2 {
        agent.launch(json!({"id": "slowly", "command": ["sh", "-c", "exit 6"]}));
        let asked = Instant::now();
        let ended = agent.wait("slowly");
        assert_eq!(ended["exit_code"], 6, "round {round}: {ended}");
        assert_eq!(
            cleanups(),
            round - 1,
            "round {round}: the wait waited for the cleanup"
        );
        let removed = agent.api("DELETE", "/v1/containers/slowly", None);
        assert_eq!(removed.status, 204, "round {round}: {:?}", removed.body);
        assert_eq!(
            cleanups(),
            round,
            "round {round}: removed before its cleanup was done"
        );
        assert!(asked.elapsed() >= Duration::from_secs(1), "round {round}");
    }
    assert_eq!(agent.leftovers(), Vec::<String>::new());
}
