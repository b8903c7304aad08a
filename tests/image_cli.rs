//! Images through the real agent and CLI: pull (with progress), images,
//! image inspect, rmi (refused while a container record names the image),
//! image prune, load, image GC, and a `kill -9` of the agent mid-pull.
//! Against Debian's docker-registry on loopback.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::registry::{self, Registry};
use common::Agent;
use serde_json::{json, Value};

fn registry_or_skip(test: &str) -> Option<Registry> {
    if let Some(tool) = registry::missing_tool() {
        common::skip(test, &format!("{tool} is not installed"));
        return None;
    }
    Some(Registry::start())
}

fn config(reg: &Registry, extra: &str) -> String {
    format!(
        "[gc]\ninterval_seconds = 0.3\ndisk_headroom = 0.0\n[images]\ninsecure_registries = [\"{addr}\"]\n{extra}\n[images.credentials.\"{addr}\"]\nusername = \"{user}\"\npassword = \"{pw}\"\n",
        addr = reg.addr,
        user = registry::USER,
        pw = registry::PASSWORD,
    )
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sets fields of a container's record while the agent is stopped (what
/// `berth run IMAGE` records).
fn mark_record(agent: &Agent, id: &str, fields: Value) {
    let runtime = agent
        .runtime_dir
        .join("containers")
        .join(id)
        .join("container.json");
    let copy = agent.work_dir.join("records").join(format!("{id}.json"));
    for path in [runtime, copy] {
        let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (k, v) in fields.as_object().unwrap() {
            record[k] = v.clone();
        }
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    }
}

/// Every blob in the store hashes to its name.
fn assert_blobs_verified(work_dir: &Path) -> usize {
    let dir = work_dir.join("images/blobs/sha256");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            berth::images::Digest::of(&data).hex(),
            entry.file_name().to_str().unwrap(),
            "blob {:?} does not match its name",
            entry.path()
        );
        n += 1;
    }
    n
}

#[test]
fn pull_images_inspect_rmi_prune_and_load_through_the_cli_and_api() {
    require_root!();
    let Some(reg) = registry_or_skip("image_cli") else {
        return;
    };
    let busy = reg.build_image("cli", 2);
    let busy_digest = reg.push(&busy, "t/busy:v1", &[]);
    let two = reg.build_image("two", 1);
    reg.push(&two, "t/two:v1", &[]);
    let agent = Agent::start_with_config(&config(&reg, ""));
    let busy_ref = format!("{}/t/busy:v1", reg.addr);
    let two_ref = format!("{}/t/two:v1", reg.addr);

    // CLI pull, not on a terminal: plain lines, one per layer.
    let out = agent.berth(&["pull", &busy_ref]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", agent.log());
    assert!(stdout.contains(&format!("pulled {busy_ref}")), "{stdout}");
    assert_eq!(stdout.matches(": verified").count(), 2, "{stdout}");
    assert!(
        stdout.contains(&format!("unpacked {busy_ref} (2 layers)")),
        "{stdout}"
    );
    let layers = agent.work_dir.join("images/layers");
    let unpacked = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(unpacked(&layers), 2);

    // API pull: newline-delimited JSON progress, ending in done.
    let answer = agent.api("POST", "/v1/images/pull", Some(json!({"image": two_ref})));
    assert_eq!(answer.status, 200);
    let events: Vec<Value> = String::from_utf8_lossy(&answer.raw)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "resolved", "{events:?}");
    assert_eq!(events.last().unwrap()["event"], "unpacked", "{events:?}");
    assert!(events.iter().any(|e| e["event"] == "done"), "{events:?}");

    // Bad reference: 400 naming `image`; unknown tag: 404 naming the registry.
    let answer = agent.api(
        "POST",
        "/v1/images/pull",
        Some(json!({"image": "Bad Ref!"})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("image"), "{message}");
    let missing = format!("{}/t/busy:nope", reg.addr);
    let answer = agent.api("POST", "/v1/images/pull", Some(json!({"image": missing})));
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&reg.addr));
    let out = agent.berth(&["pull", &missing]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.starts_with("berth: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // images, image inspect.
    let out = agent.berth(&["images", "--json"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let out = agent.berth(&["images"]);
    assert!(text(&out).0.contains(&busy_ref));
    let out = agent.berth(&["image", "inspect", &busy_ref]);
    assert!(out.status.success(), "{:?}", text(&out));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["manifest_digest"], busy_digest.as_str());
    assert_eq!(inspected["layers"].as_array().unwrap().len(), 2);
    let answer = agent.api("GET", &format!("/v1/images/{}/t/none:v1", reg.addr), None);
    assert_eq!(answer.status, 404);
    // Credentials appear nowhere.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(registry::PASSWORD));
    assert!(!agent.log().contains(registry::PASSWORD));

    // rmi refused (409) while a container (here an ended one, still
    // recorded) runs the image.
    let container = agent.launch(json!({"id": "user", "image": busy_ref}));
    assert_eq!(container["image_digest"], busy_digest.as_str());
    assert_eq!(agent.wait("user")["exit_code"], 0);
    let answer = agent.api("DELETE", &format!("/v1/images/{busy_ref}"), None);
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    let out = agent.berth(&["rmi", &busy_ref]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("user"), "{stderr}");
    // Not even --force removes the layers under a running container.
    agent.launch(json!({"id": "live", "image": busy_ref, "command": ["sleep", "60"]}));
    let out = agent.berth(&["rmi", "--force", &busy_ref]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("running") && stderr.contains("live"),
        "{stderr}"
    );
    let answer = agent.api("DELETE", "/v1/containers/live?force=true", None);
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    // Prune keeps it (in use) and removes the other.
    let out = agent.berth(&["image", "prune"]);
    assert!(
        text(&out).0.contains(&format!("removed {two_ref}")),
        "{:?}",
        text(&out)
    );
    let list: Vec<Value> =
        serde_json::from_slice(&agent.berth(&["images", "--json"]).stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["in_use"], true);
    // --force removes it.
    let out = agent.berth(&["rmi", "--force", &busy_ref]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(assert_blobs_verified(&agent.work_dir), 0);
    assert_eq!(
        unpacked(&layers),
        0,
        "unpacked layers of removed images stay"
    );

    // load of a docker save tarball and of an OCI layout directory.
    let docker_tar = reg.dir.path().join("docker.tar");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", &busy])
        .arg(format!(
            "docker-archive:{}:t/loaded:v1",
            docker_tar.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let out = agent.berth(&["load", "-i", docker_tar.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("loaded docker.io/t/loaded:v1"));
    let layout = busy.trim_start_matches("oci:").trim_end_matches(":busy");
    let out = agent.berth(&["load", "-i", layout]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out)
        .0
        .contains("loaded docker.io/library/busy:latest"));
    let answer = agent.api(
        "POST",
        "/v1/images/load",
        Some(json!({"path": "/dev/null"})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let answer = agent.api("POST", "/v1/images/load", Some(json!({"path": "rel.tar"})));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let out = agent.berth(&["load", "-i", "/nonexistent/image.tar"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("path"), "{stderr}");
    assert_blobs_verified(&agent.work_dir);
}

#[test]
fn image_gc_removes_unused_images_above_the_store_limit() {
    require_root!();
    let Some(reg) = registry_or_skip("image_gc") else {
        return;
    };
    let used = reg.build_image("used", 1);
    let used_digest = reg.push(&used, "t/used:v1", &[]);
    let spare = reg.build_image("spare", 1);
    reg.push(&spare, "t/spare:v1", &[]);
    let mut agent = Agent::start_with_config(&config(&reg, "max_store_bytes = 1"));
    let used_ref = format!("{}/t/used:v1", reg.addr);
    // A record of an agent that ran the image, then a restart: the image
    // stays in use across it.
    agent.launch(json!({"id": "user", "command": ["/bin/true"]}));
    agent.wait("user");
    agent.stop_agent();
    mark_record(
        &agent,
        "user",
        json!({"image": used_ref, "image_digest": used_digest}),
    );
    agent.start_again();
    for image in [&used_ref, &format!("{}/t/spare:v1", reg.addr)] {
        let out = agent.berth(&["pull", image]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    // The GC loop (every 0.3 s) removes the unused one, keeps the used one.
    let left = common::eventually(Duration::from_secs(30), "image gc", || {
        let list: Vec<Value> =
            serde_json::from_slice(&agent.berth(&["images", "--json"]).stdout).unwrap();
        (list.len() == 1).then_some(list)
    });
    assert_eq!(left[0]["reference"], used_ref.as_str());
    // Logged once the blobs and unpacked layers are gone too.
    common::eventually(Duration::from_secs(30), "image gc logged", || {
        agent.log().contains("image gc").then_some(())
    });
}

#[test]
fn kill_9_of_the_agent_mid_pull_leaves_nothing_unverified_and_the_pull_succeeds_after() {
    require_root!();
    let Some(reg) = registry_or_skip("kill_9_mid_pull") else {
        return;
    };
    let big = reg.build_big_image("big", 2, 24 << 20);
    let digest = reg.push(&big, "t/big:v1", &[]);
    let mut agent = Agent::start_with_config(&config(&reg, ""));
    let big_ref = format!("{}/t/big:v1", reg.addr);
    let mut pull = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--socket")
        .arg(&agent.socket)
        .args(["pull", &big_ref])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ingest = agent.work_dir.join("images/ingest");
    // Mid-pull: a layer is partly written.
    common::eventually(Duration::from_secs(60), "a partial blob in ingest/", || {
        std::fs::read_dir(&ingest)
            .ok()?
            .flatten()
            .any(|e| e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false))
            .then_some(())
    });
    agent.kill_agent();
    let _ = pull.wait();
    assert!(std::fs::read_dir(&ingest).unwrap().count() > 0);
    agent.start_again();
    // The partial blob was discarded at start; every stored blob verifies.
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0);
    assert_blobs_verified(&agent.work_dir);
    let out = agent.berth(&["pull", &big_ref]);
    assert!(out.status.success(), "{:?}\n{}", text(&out), agent.log());
    let out = agent.berth(&["image", "inspect", &big_ref]);
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["manifest_digest"], digest.as_str());
    // manifest + config + 2 layers
    assert_eq!(assert_blobs_verified(&agent.work_dir), 4);
}
