//! Attacks of a hostile container on the host-side code that touches what
//! it can write (issue 8, items 1 and 2), each done for real and shown to
//! fail: symlinks planted under every log file name, a symlinked segment
//! read back, FIFOs and `/dev/zero` in place of files under 600 concurrent
//! requests, and `rm`/GC of a sandbox full of links out and hard-to-delete
//! trees.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth::cli::client::Client;
use bytes::Bytes;
use common::Agent;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

/// `seq -f %012.0f 1 n` as bytes.
fn numbered(n: u64) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("{i:012}\n").into_bytes())
        .collect()
}

/// A host file the container must not reach: its path and content.
fn host_file(dir: &Path, content: &str) -> PathBuf {
    let path = dir.join("host-file");
    std::fs::write(&path, content).unwrap();
    path
}

/// Makes the agent treat `id` as a container launched by an older agent,
/// whose logs were in its sandbox: the readers then read what the
/// container planted there.
fn make_legacy(agent: &mut Agent, id: &str) {
    agent.kill_agent();
    for path in [
        agent
            .runtime_dir
            .join("containers")
            .join(id)
            .join("container.json"),
        agent.work_dir.join("records").join(format!("{id}.json")),
    ] {
        let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(record.as_object_mut().unwrap().remove("log_dir").is_some());
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    }
    agent.start_again();
    let inspected = agent.api("GET", &format!("/v1/containers/{id}"), None).body;
    assert!(inspected.get("log_dir").is_none(), "{inspected}");
}

#[test]
fn symlinks_planted_under_every_log_name_never_redirect_the_shim() {
    require_root!();
    let agent = Agent::start();
    let host = tempfile::tempdir().unwrap();
    let target = host_file(host.path(), "host original\n");
    // Every name the shim writes or has written, for the first 80
    // segments of both streams (20 000 lines of 13 bytes rotate about 64
    // times at 4096 bytes), in the sandbox and, if it could reach it, the
    // log dir beside it.
    let script = format!(
        r#"H={target}
for dir in . ../logs; do
  for s in stdout stderr; do
    for n in $s $s.idx .$s.idx.tmp .$s.link.tmp; do ln -s $H $dir/$n 2>/dev/null; done
    i=0
    while [ $i -lt 80 ]; do
      o=$(printf %020d $((i * 4096)))
      ln -s $H $dir/$s.$o 2>/dev/null
      ln -s $H $dir/$s.$o.gz 2>/dev/null
      ln -s $H $dir/.$s.$o.gz.tmp 2>/dev/null
      i=$((i + 1))
    done
  done
done
ls -A | wc -l >&2
ls ../logs >/dev/null 2>&1 && echo logdir=visible >&2 || echo logdir=hidden >&2
seq -f %012.0f 1 20000
"#,
        target = target.display()
    );
    let container = agent.launch(json!({"id": "planter", "command": ["sh", "-c", script],
        "log": {"max_size": 4096, "max_files": 10, "compress": true}}));
    assert_eq!(agent.wait("planter")["exit_code"], 0);

    let stderr = String::from_utf8_lossy(
        &agent
            .api("GET", "/v1/containers/planter/logs?stream=stderr", None)
            .raw,
    )
    .into_owned();
    // 2 streams × (4 + 80 × 3) names, all planted in the sandbox.
    assert!(stderr.starts_with("488\n"), "{stderr}");
    assert!(stderr.contains("logdir=hidden"), "{stderr}");

    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "host original\n",
        "the host file was written through a planted link"
    );
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 1);

    // The logs are the container's real output: the newest segments, each
    // compressed once rotated, nothing from the host file.
    let log_dir = PathBuf::from(container["log_dir"].as_str().unwrap());
    assert_eq!(log_dir, agent.log_dir("planter"));
    for dir in [agent.container_dir("planter"), log_dir.clone()] {
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{dir:?}");
    }
    common::eventually(Duration::from_secs(10), "compressed segments", || {
        let gz = std::fs::read_dir(&log_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".gz")
            })
            .count();
        (gz >= 5).then_some(())
    });
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            // Only the shim's own pointers, to a segment beside them.
            let to = std::fs::read_link(entry.path()).unwrap();
            assert!(name == "stdout" || name == "stderr", "{name}");
            assert!(to.components().count() == 1, "{name} -> {to:?}");
        } else {
            assert!(kind.is_file(), "{name}");
        }
    }
    let out = agent.berth(&["logs", "planter"]);
    assert!(out.status.success(), "{out:?}");
    let expected = numbered(20_000);
    assert!(out.stdout.len() >= 9 * 4096, "{} bytes", out.stdout.len());
    assert!(
        expected.ends_with(&out.stdout),
        "not the container's output"
    );
    let tail = agent.berth(&["logs", "--tail", "1", "planter"]);
    assert_eq!(String::from_utf8_lossy(&tail.stdout), "000000020000\n");
}

#[test]
fn a_segment_linked_to_a_host_secret_is_never_served() {
    require_root!();
    let mut agent = Agent::start();
    let host = tempfile::tempdir().unwrap();
    let secret = host_file(host.path(), "TOP-SECRET-HOST-CONTENT\n");
    let script = format!(
        "ln -s {0} stdout.00000000000000000000; ln -s {0} stdout.idx; ln -s {0} secret-link; \
         echo real output",
        secret.display()
    );
    agent.launch(json!({"id": "reader", "command": ["sh", "-c", script]}));
    agent.wait("reader");
    let leaks = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains("TOP-SECRET");

    // Today's layout: the logs are the real ones, from the log dir.
    let out = agent.berth(&["logs", "reader"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "real output\n");
    // The files API refuses the links.
    for path in ["stdout.00000000000000000000", "secret-link", "stdout.idx"] {
        let answer = agent.api(
            "GET",
            &format!("/v1/containers/reader/files/content?path={path}"),
            None,
        );
        assert_eq!(answer.status, 403, "{path}: {:?}", answer.body);
        assert!(!leaks(&answer.raw) && !leaks(answer.body.to_string().as_bytes()));
    }

    // A container of an older agent, whose logs were read from the sandbox:
    // the planted segment is refused, never followed.
    make_legacy(&mut agent, "reader");
    let answer = agent.api("GET", "/v1/containers/reader/logs?stream=stdout", None);
    eprintln!("legacy logs: {} {:?}", answer.status, answer.body);
    assert!(!leaks(&answer.raw) && !leaks(answer.body.to_string().as_bytes()));
    assert_eq!(answer.status, 403, "a refused segment: {:?}", answer.body);
    let out = agent.berth(&["logs", "reader"]);
    assert!(!leaks(&out.stdout) && !leaks(&out.stderr), "{out:?}");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let out = agent.berth(&["logs", "--tail", "1", "--timestamps", "reader"]);
    assert!(!leaks(&out.stdout) && !leaks(&out.stderr), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "TOP-SECRET-HOST-CONTENT\n"
    );
}

/// GETs `path` and reads the body to its end, or gives up after `limit`
/// (then `None`: the request hung).
async fn fetch(client: &Client, path: String, limit: Duration) -> Option<(u16, usize)> {
    tokio::time::timeout(limit, async {
        match client.send_bytes(Method::GET, &path, Bytes::new()).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let mut body = response.into_body();
                let mut len = 0;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => len += frame.data_ref().map_or(0, |d| d.len()),
                        Err(_) => break,
                    }
                }
                (status, len)
            }
            Err(berth::cli::client::ClientError::Api { status, .. }) => (status.as_u16(), 0),
            Err(_) => (0, 0),
        }
    })
    .await
    .ok()
}

#[test]
fn fifos_and_dev_zero_never_wedge_the_agent() {
    require_root!();
    let mut agent = Agent::start();
    // A running container whose sandbox holds FIFOs and /dev/zero links
    // under the names the readers open, and a file that keeps growing.
    let script = "mkfifo fifo stdout.00000000000000000000 && ln -s /dev/zero zero \
                  && ln -s /dev/zero stderr.00000000000000000000 && echo ready; \
                  while :; do echo grow >> growing; sleep 0.01; done";
    agent.launch(json!({"id": "wedge", "command": ["sh", "-c", script]}));
    common::eventually(Duration::from_secs(10), "the traps", || {
        (agent.stdout("wedge") == "ready\n").then_some(())
    });
    // Its logs are read from the sandbox, as for an older agent's
    // container: the FIFO and the link are the segments.
    make_legacy(&mut agent, "wedge");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let socket = agent.socket.clone();
    let paths = [
        "/v1/containers/wedge/files/content?path=fifo",
        "/v1/containers/wedge/files/content?path=zero",
        "/v1/containers/wedge/files/content?path=growing",
        "/v1/containers/wedge/logs?stream=stdout",
        "/v1/containers/wedge/logs?stream=stderr",
        "/v1/containers/wedge/logs?tail=5",
    ];
    let requests: Vec<_> = (0..600)
        .map(|i| {
            let client = Client::new(&socket);
            let path = paths[i % paths.len()].to_string();
            runtime.spawn(async move {
                (
                    path.clone(),
                    fetch(&client, path, Duration::from_secs(60)).await,
                )
            })
        })
        .collect();

    // Meanwhile the agent launches and lists as usual.
    let started = Instant::now();
    let launched = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "bystander", "command": ["true"]})),
    );
    let launch_time = started.elapsed();
    assert_eq!(launched.status, 201, "{:?}", launched.body);
    let started = Instant::now();
    let listed = agent.api("GET", "/v1/containers", None);
    let list_time = started.elapsed();
    assert_eq!(listed.status, 200);
    eprintln!(
        "600 requests on FIFOs and /dev/zero under way: launch answered in {:.3}s, list in {:.3}s",
        launch_time.as_secs_f64(),
        list_time.as_secs_f64()
    );
    assert!(launch_time < Duration::from_secs(1), "{launch_time:?}");
    assert!(list_time < Duration::from_secs(1), "{list_time:?}");

    // Every request ends: an error, or a bounded answer.
    let started = Instant::now();
    let results = runtime.block_on(async {
        let mut out = Vec::new();
        for request in requests {
            out.push(request.await.unwrap());
        }
        out
    });
    eprintln!(
        "all 600 ended {:.3}s later",
        started.elapsed().as_secs_f64()
    );
    for (path, result) in &results {
        let (status, len) = result.unwrap_or_else(|| panic!("{path} hung"));
        if path.contains("fifo") || path.contains("zero") {
            assert!(status >= 400, "{path}: {status}");
        }
        if path.contains("growing") {
            assert_eq!(status, 200, "{path}");
            assert!(len < 1 << 20, "{path}: {len} bytes");
        }
        if path.contains("/logs") {
            assert!(len < 1 << 20, "{path}: {len} bytes of /dev/zero?");
        }
    }
    let fifo = agent.api("GET", "/v1/containers/wedge/files/content?path=fifo", None);
    assert_eq!(fifo.status, 400, "{:?}", fifo.body);
    // The FIFO is still a FIFO: nothing opened it for writing or replaced it.
    let sandbox = PathBuf::from(
        agent.api("GET", "/v1/containers/wedge", None).body["sandbox"]
            .as_str()
            .unwrap(),
    );
    assert!(std::fs::symlink_metadata(sandbox.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

/// A sandbox tree that is hard to remove and full of ways out: links to a
/// host dir and file at every level of a tree deeper than PATH_MAX, a dir
/// with mode 000, a FIFO.
fn hostile_tree_script(host_dir: &Path) -> String {
    format!(
        r#"H={h}
ln -s $H hostdir; ln -s $H/keep hostfile; ln -s / root-link; mkfifo fifo
mkdir locked && echo x > locked/f && ln -s $H locked/out && chmod 000 locked
/usr/bin/python3 -c '
import os, sys
h = sys.argv[1]
for i in range(100):
    os.mkdir("d" * 50)
    os.chdir("d" * 50)
    os.symlink(h, "up")
    os.symlink(h + "/keep", "keep")
    open("file", "w").write("f")
' $H || exit 1
echo made"#,
        h = host_dir.display()
    )
}

fn assert_host_dir_intact(host: &Path) {
    assert_eq!(
        std::fs::read_to_string(host.join("keep")).unwrap(),
        "keep me\n"
    );
    assert_eq!(std::fs::read_dir(host).unwrap().count(), 1);
}

#[test]
fn rm_and_gc_never_follow_links_out_and_leave_nothing() {
    require_root!();
    let agent = Agent::start_with_config(
        "[gc]\ndelay_seconds = 0.0\ndisk_headroom = 0.0\ninterval_seconds = 3600.0\n",
    );
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("keep"), "keep me\n").unwrap();
    let script = hostile_tree_script(host.path());
    for id in ["removed", "collected"] {
        agent.launch(json!({"id": id, "command": ["sh", "-c", &script]}));
        let ended = agent.wait(id);
        let stderr = agent.api(
            "GET",
            &format!("/v1/containers/{id}/logs?stream=stderr"),
            None,
        );
        assert_eq!(
            ended["exit_code"],
            0,
            "{}{}",
            agent.stdout(id),
            String::from_utf8_lossy(&stderr.raw)
        );
        assert_eq!(agent.stdout(id), "made\n");
    }
    let container_dir = |id: &str| agent.container_dir(id);
    assert!(container_dir("removed").join("sandbox/locked").exists());

    let answer = agent.api("DELETE", "/v1/containers/removed", None);
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    assert!(!container_dir("removed").exists());
    assert_host_dir_intact(host.path());

    let out = agent.berth(&["gc", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let removed: Vec<&str> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["collected"], "{report}");
    assert!(!container_dir("collected").exists());
    assert_host_dir_intact(host.path());
    assert_eq!(agent.container_dirs(), Vec::<std::path::PathBuf>::new());
}
