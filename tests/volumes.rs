//! Bind mounts and named volumes (issue 17, decision 0033): real mounts in
//! real containers, read back from the container's own mountinfo.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{busybox_rootfs, eventually, Agent};
use serde_json::json;

const MIB: u64 = 1 << 20;

/// An agent allowing bind mounts from `<its dir>/allowed`, and a busybox
/// rootfs.
fn agent_with_allowed() -> (Agent, PathBuf, PathBuf, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("berth-vol-")
        .tempdir()
        .unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let agent = Agent::start_with(&["--allow-host-path", allowed.to_str().unwrap()]);
    let rootfs = busybox_rootfs(agent.dir.path());
    (agent, allowed, rootfs, dir)
}

/// The mount options (field 6) and super options of the mount at `target`
/// in a mountinfo text.
fn mount_options(mountinfo: &str, target: &str) -> Option<String> {
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4) == Some(&target)).then(|| fields[5].to_string())
    })
}

fn error_message(answer: &common::Answer) -> String {
    answer.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Unmounts what a test's volumes left mounted (a failed assertion skips
/// the API's removal).
struct VolumeMounts(PathBuf);

impl Drop for VolumeMounts {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.0.join("volumes")) {
            for entry in entries.flatten() {
                let data = entry.path().join("_data");
                let _ = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn loop_ready(test: &str) -> bool {
    if !Path::new("/dev/loop-control").exists() {
        common::skip(test, "no loop devices on this host");
        return false;
    }
    true
}

#[test]
fn bind_mounts_are_nosuid_nodev_and_read_only_when_asked() {
    require_root!();
    let (agent, allowed, rootfs, _dir) = agent_with_allowed();
    std::fs::create_dir_all(allowed.join("ro")).unwrap();
    std::fs::create_dir_all(allowed.join("rw")).unwrap();
    std::fs::write(allowed.join("ro/hello"), "from the host\n").unwrap();
    agent.launch(json!({
        "id": "binds",
        "rootfs": rootfs,
        "command": ["sh", "-c", "cat /data/hello; touch /data/x 2>/dev/null; echo \"ro touch $?\"; \
                     echo w > /deep/rw/written && echo rw-ok; cat /proc/self/mountinfo"],
        "mounts": [
            {"type": "bind", "source": allowed.join("ro"), "target": "/data", "readonly": true},
            {"type": "bind", "source": allowed.join("rw"), "target": "/deep/rw/"},
        ],
    }));
    let ended = agent.wait("binds");
    assert_eq!(ended["exit_code"], 0, "{ended}\n{}", agent.log());
    let out = agent.stdout("binds");
    assert!(out.contains("from the host"), "{out}");
    assert!(
        out.contains("ro touch 1"),
        "a read-only bind was written: {out}"
    );
    let ro = mount_options(&out, "/data").unwrap_or_else(|| panic!("no /data mount: {out}"));
    let ro: Vec<&str> = ro.split(',').collect();
    for want in ["ro", "nosuid", "nodev"] {
        assert!(ro.contains(&want), "/data options {ro:?} lack {want}");
    }
    assert!(!allowed.join("ro/x").exists());
    let rw = mount_options(&out, "/deep/rw").unwrap_or_else(|| panic!("no /deep/rw: {out}"));
    let rw: Vec<&str> = rw.split(',').collect();
    for want in ["rw", "nosuid", "nodev"] {
        assert!(rw.contains(&want), "/deep/rw options {rw:?} lack {want}");
    }
    assert!(out.contains("rw-ok"), "{out}");
    assert_eq!(
        std::fs::read_to_string(allowed.join("rw/written")).unwrap(),
        "w\n"
    );
    // The targets were made in the container's own layer, not in the
    // user's rootfs dir.
    assert!(!rootfs.join("data").exists());
    assert!(!rootfs.join("deep").exists());

    // The CLI's -v and --mount say the same.
    let out = agent.berth(&[
        "run",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "-v",
        &format!("{}:/data:ro", allowed.join("ro").display()),
        "--mount",
        &format!(
            "type=bind,src={},dst=/m,readonly",
            allowed.join("rw").display()
        ),
        "sh",
        "-c",
        "cat /data/hello /m/written; cat /proc/self/mountinfo",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("from the host\nw\n"), "{stdout}");
    let m = mount_options(&stdout, "/m").unwrap();
    assert!(m.split(',').any(|o| o == "ro"), "{m}");
}

#[test]
fn host_paths_outside_the_allow_list_are_refused_naming_the_field() {
    require_root!();
    let (agent, allowed, rootfs, _dir) = agent_with_allowed();
    std::fs::create_dir_all(allowed.join("ok")).unwrap();
    std::os::unix::fs::symlink("/etc", allowed.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../etc", allowed.join("dots")).unwrap();
    let cases = [
        ("/etc".to_string(), "mounts[1].source"),
        // The attack: a symlink under an allowed prefix pointing out.
        (
            allowed.join("evil").display().to_string(),
            "mounts[1].source",
        ),
        (
            allowed.join("dots").display().to_string(),
            "mounts[1].source",
        ),
        (
            format!("{}/ok/../../..", allowed.display()),
            "mounts[1].source",
        ),
        (
            allowed.join("missing").display().to_string(),
            "mounts[1].source",
        ),
    ];
    for (n, (source, field)) in cases.iter().enumerate() {
        let id = format!("refused{n}");
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({
                "id": id,
                "rootfs": rootfs,
                "command": ["true"],
                "mounts": [
                    {"type": "bind", "source": allowed.join("ok"), "target": "/ok"},
                    {"type": "bind", "source": source, "target": "/data"},
                ],
            })),
        );
        assert_eq!(answer.status, 400, "{source}: {:?}", answer.body);
        let message = error_message(&answer);
        assert!(message.contains(field), "{source}: {message}");
        // Nothing half-made.
        assert_eq!(
            agent
                .api("GET", &format!("/v1/containers/{id}"), None)
                .status,
            404
        );
        assert!(!agent.container_dir(&id).exists());
    }
    let message = error_message(&agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"rootfs": rootfs, "command": ["true"],
            "mounts": [{"type": "bind", "source": allowed.join("evil"), "target": "/data"}]})),
    ));
    assert!(message.contains("resolves to /etc"), "{message}");
    // A bad target, and no writable layer of its own (the host's root).
    for (request, field) in [
        (
            json!({"rootfs": rootfs, "command": ["true"],
                "mounts": [{"type": "bind", "source": allowed.join("ok"), "target": "rel"}]}),
            "mounts[0].target",
        ),
        (
            json!({"rootfs": rootfs, "command": ["true"],
                "mounts": [{"type": "bind", "source": allowed.join("ok"), "target": "/a/../etc"}]}),
            "mounts[0].target",
        ),
        (
            json!({"command": ["true"],
                "mounts": [{"type": "bind", "source": allowed.join("ok"), "target": "/x"}]}),
            "mounts",
        ),
        (
            json!({"rootfs": rootfs, "command": ["true"],
                "mounts": [{"type": "volume", "source": "nosuch", "target": "/x"}]}),
            "mounts[0].source",
        ),
    ] {
        let answer = agent.api("POST", "/v1/containers", Some(request));
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(error_message(&answer).contains(field), "{:?}", answer.body);
    }

    // An agent without an allow-list allows no bind at all.
    let strict = Agent::start();
    let answer = strict.api(
        "POST",
        "/v1/containers",
        Some(json!({"rootfs": rootfs, "command": ["true"],
            "mounts": [{"type": "bind", "source": allowed.join("ok"), "target": "/data"}]})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(error_message(&answer).contains("mounts[0].source"));
    // The CLI: one line, exit 1.
    let out = strict.berth(&[
        "run",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "-v",
        "/etc:/data",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("berth: ") && stderr.contains("mounts[0].source"),
        "{stderr}"
    );
    let out = strict.berth(&["run", "-v", "/etc:/data:rx", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_symlink_at_the_target_in_the_image_does_not_lead_to_the_host() {
    require_root!();
    let (agent, allowed, rootfs, _dir) = agent_with_allowed();
    std::fs::create_dir_all(allowed.join("src")).unwrap();
    std::fs::write(allowed.join("src/marker"), "planted\n").unwrap();
    // The attack: the root's /data is a symlink to the host's /etc
    // (absolute) or climbs out with `..`.
    std::os::unix::fs::symlink("/etc", rootfs.join("data")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", rootfs.join("dots")).unwrap();
    let host_etc_before = std::fs::read_dir("/etc").unwrap().count();
    for target in ["/data", "/dots", "/data/sub"] {
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({
                "rootfs": rootfs,
                "command": ["sh", "-c", "touch /data/pwned /dots/pwned; cat /etc/marker"],
                "mounts": [{"type": "bind", "source": allowed.join("src"), "target": target}],
            })),
        );
        assert_eq!(answer.status, 400, "{target}: launched: {:?}", answer.body);
        let message = error_message(&answer);
        assert!(
            message.contains("leads out of the container root"),
            "{target}: {message}"
        );
    }
    assert!(!Path::new("/etc/marker").exists());
    assert!(!Path::new("/etc/pwned").exists());
    assert!(!Path::new("/etc/sub").exists());
    assert!(!allowed.join("src/pwned").exists());
    assert_eq!(std::fs::read_dir("/etc").unwrap().count(), host_etc_before);
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn a_named_volume_outlives_its_container_and_is_refused_while_in_use() {
    require_root!();
    let (agent, _allowed, rootfs, _dir) = agent_with_allowed();
    let _mounts = VolumeMounts(agent.work_dir.clone());
    let out = agent.berth(&["volume", "create", "db"]);
    assert!(out.status.success(), "{out:?}");
    agent.launch(json!({
        "id": "writer",
        "rootfs": rootfs,
        "command": ["sh", "-c", "echo kept > /var/db/file"],
        "mounts": [{"type": "volume", "source": "db", "target": "/var/db"}],
    }));
    assert_eq!(agent.wait("writer")["exit_code"], 0, "{}", agent.log());
    // Still referenced by the ended container: not removable.
    let answer = agent.api("DELETE", "/v1/volumes/db", None);
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(
        agent.api("DELETE", "/v1/containers/writer", None).status,
        204
    );

    // A new container sees the file, via -v NAME:/path.
    let out = agent.berth(&[
        "run",
        "--name",
        "reader",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "-v",
        "db:/data",
        "cat",
        "/data/file",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
    assert_eq!(
        agent.api("DELETE", "/v1/containers/reader", None).status,
        204
    );

    // One live container at a time.
    agent.launch(json!({
        "id": "holder",
        "rootfs": rootfs,
        "command": ["sleep", "60"],
        "mounts": [{"type": "volume", "source": "db", "target": "/data"}],
    }));
    let second = agent.api(
        "POST",
        "/v1/containers",
        Some(
            json!({"id": "second", "rootfs": rootfs, "command": ["true"],
            "mounts": [{"type": "volume", "source": "db", "target": "/data"}]}),
        ),
    );
    assert_eq!(second.status, 409, "{:?}", second.body);
    assert!(!agent.container_dir("second").exists());
    let answer = agent.api("DELETE", "/v1/volumes/db", None);
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert!(
        error_message(&answer).contains("holder"),
        "{:?}",
        answer.body
    );
    let out = agent.berth(&["volume", "rm", "db"]);
    assert_eq!(out.status.code(), Some(1));
    let inspect = agent.api("GET", "/v1/volumes/db", None).body;
    assert!(
        inspect["used_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == "holder"),
        "{inspect}"
    );
    assert_eq!(
        inspect["used_bytes"].as_u64().map(|b| b > 0),
        Some(true),
        "{inspect}"
    );

    // A shared volume may be mounted by several.
    agent.create_volume(json!({"name": "common", "shared": true}));
    for id in ["s1", "s2"] {
        agent.launch(
            json!({"id": id, "rootfs": rootfs, "command": ["sleep", "60"],
            "mounts": [{"type": "volume", "source": "common", "target": "/c"}]}),
        );
    }
    let ls = agent.berth(&["volume", "ls"]);
    let ls = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(ls.contains("common") && ls.contains("s1,s2"), "{ls}");

    for id in ["holder", "s1", "s2"] {
        assert_eq!(
            agent
                .api("DELETE", &format!("/v1/containers/{id}?force=true"), None)
                .status,
            204
        );
    }
    // Prune takes both; nothing is left under the work dir.
    let pruned = agent.api("POST", "/v1/volumes/prune", None);
    assert_eq!(pruned.status, 200);
    let mut removed: Vec<&str> = pruned.body["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    removed.sort();
    assert_eq!(removed, ["common", "db"]);
    assert_eq!(
        std::fs::read_dir(agent.work_dir.join("volumes"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(agent.api("GET", "/v1/volumes/db", None).status, 404);
    // Bad names and sizes name the field.
    for (body, field) in [
        (json!({"name": "../x"}), "name"),
        (json!({"name": "x", "size": 10}), "size"),
    ] {
        let answer = agent.api("POST", "/v1/volumes", Some(body));
        assert_eq!(answer.status, 400);
        assert!(
            error_message(&answer).contains(&format!("invalid {field}")),
            "{:?}",
            answer.body
        );
    }
    agent.create_volume(json!({"name": "dup"}));
    assert_eq!(
        agent
            .api("POST", "/v1/volumes", Some(json!({"name": "dup"})))
            .status,
        409
    );
}

#[test]
fn a_sized_volume_fills_at_its_size_and_survives_an_agent_kill() {
    require_root!();
    if !loop_ready(module_path!()) {
        return;
    }
    let (mut agent, _allowed, rootfs, _dir) = agent_with_allowed();
    let _mounts = VolumeMounts(agent.work_dir.clone());
    let out = agent.berth(&["volume", "create", "small", "--size", "20M"]);
    assert!(out.status.success(), "{out:?}");
    let data = agent.work_dir.join("volumes/small/_data");
    agent.launch(json!({
        "id": "filler",
        "rootfs": rootfs,
        "command": ["sh", "-c", "echo start; echo keep > /data/keep; \
                     busybox dd if=/dev/zero of=/data/big bs=1M count=50 2>/dev/null; \
                     echo \"dd exit $?\"; exec sleep 600"],
        "mounts": [{"type": "volume", "source": "small", "target": "/data"}],
    }));
    eventually(Duration::from_secs(60), "dd to end", || {
        agent.stdout("filler").contains("dd exit").then_some(())
    });
    let stdout = agent.stdout("filler");
    assert!(stdout.contains("dd exit 1"), "dd did not fail: {stdout}");
    let big = std::fs::metadata(data.join("big")).unwrap().len();
    assert!(
        (15 * MIB..=20 * MIB).contains(&big),
        "wrote {big} bytes into a 20 MiB volume"
    );
    let inspect = agent.api("GET", "/v1/volumes/small", None).body;
    assert_eq!(inspect["size"], 20 * MIB);
    let used = inspect["used_bytes"].as_u64().unwrap();
    assert!((15 * MIB..=20 * MIB).contains(&used), "{inspect}");
    eprintln!("20 MiB volume: dd wrote {big} bytes, used_bytes {used}");
    let stats = agent.api("GET", "/v1/containers/filler/stats", None).body;
    assert_eq!(stats["volumes"]["small"]["size"], 20 * MIB, "{stats}");
    assert_eq!(stats["volumes"]["small"]["target"], "/data", "{stats}");
    assert!(stats["volumes"]["small"]["used_bytes"].as_u64().unwrap() >= 15 * MIB);

    // kill -9 of the agent, and a new one: intact, and still attached.
    agent.kill_agent();
    agent.start_again();
    let inspect = agent.api("GET", "/v1/volumes/small", None).body;
    assert_eq!(inspect["used_by"], json!(["filler"]), "{inspect}");
    assert_eq!(
        agent.api("GET", "/v1/containers/filler", None).body["state"],
        "running"
    );
    assert_eq!(agent.api("DELETE", "/v1/volumes/small", None).status, 409);
    let exec = agent.api(
        "POST",
        "/v1/containers/filler/exec",
        Some(json!({"command": ["cat", "/data/keep"]})),
    );
    assert_eq!(exec.status, 200, "{:?}", exec.body);
    assert_eq!(exec.body["stdout"], "keep\n", "{:?}", exec.body);

    // A reboot unmounts it: the next agent mounts the image again.
    assert_eq!(
        agent
            .api("DELETE", "/v1/containers/filler?force=true", None)
            .status,
        204
    );
    agent.kill_agent();
    nix::mount::umount2(&data, nix::mount::MntFlags::empty()).unwrap();
    assert!(!data.join("keep").exists());
    agent.start_again();
    let inspect = agent.api("GET", "/v1/volumes/small", None).body;
    assert_eq!(inspect["size"], 20 * MIB, "{inspect}");
    assert_eq!(
        std::fs::read_to_string(data.join("keep")).unwrap(),
        "keep\n"
    );
    assert_eq!(agent.api("DELETE", "/v1/volumes/small", None).status, 204);
    assert!(!agent.work_dir.join("volumes/small").exists());
}

#[test]
fn gc_never_touches_volumes_and_the_config_file_sets_the_allow_list() {
    require_root!();
    let allowed_dir = tempfile::tempdir().unwrap();
    std::fs::write(allowed_dir.path().join("f"), "bound\n").unwrap();
    let agent = Agent::start_with_config(&format!(
        "[gc]\ndelay_seconds = 0\n\n[volumes]\nallowed_host_paths = [{:?}]\n",
        allowed_dir.path().display().to_string()
    ));
    let _mounts = VolumeMounts(agent.work_dir.clone());
    let rootfs = busybox_rootfs(agent.dir.path());
    agent.create_volume(json!({"name": "kept"}));
    agent.launch(json!({
        "id": "ended",
        "rootfs": rootfs,
        "command": ["sh", "-c", "cat /host/f; echo data > /v/file; cat /etc/app.conf"],
        "mounts": [
            {"type": "volume", "source": "kept", "target": "/v"},
            {"type": "bind", "source": allowed_dir.path(), "target": "/host", "readonly": true},
            // A single file.
            {"type": "bind", "source": allowed_dir.path().join("f"), "target": "/etc/app.conf"},
        ],
    }));
    assert_eq!(agent.wait("ended")["exit_code"], 0);
    assert_eq!(agent.stdout("ended"), "bound\nbound\n");
    let gc = agent.api("POST", "/v1/gc", None);
    assert_eq!(gc.status, 200, "{:?}", gc.body);
    assert_eq!(gc.body["removed"][0]["id"], "ended", "{:?}", gc.body);
    let volume = agent.api("GET", "/v1/volumes/kept", None).body;
    assert_eq!(volume["used_by"], json!([]), "{volume}");
    let data = agent.work_dir.join("volumes/kept/_data/file");
    assert_eq!(std::fs::read_to_string(data).unwrap(), "data\n");
    assert_eq!(
        std::fs::read_to_string(allowed_dir.path().join("f")).unwrap(),
        "bound\n"
    );
}
