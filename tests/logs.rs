//! Container logs end to end: the shim writes segments (docs/log-format.md),
//! the agent reads them back through the logs API, the sandbox files API
//! and `berth logs` / `berth files`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth::cli::client::{Client, ClientError};
use bytes::Bytes;
use common::{eventually, Agent};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

const LINE: usize = 13;

/// A status, the headers and (when collected) the body of a GET.
struct Got {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<u64> {
        self.headers.get(name).map(|v| v.parse().unwrap())
    }
}

/// GETs `path`, handing each body chunk to `chunk` as it arrives.
fn get_streamed(agent: &Agent, path: &str, mut chunk: impl FnMut(&[u8])) -> Got {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(&agent.socket);
        match client.send_bytes(Method::GET, path, Bytes::new()).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                let mut body = response.into_body();
                while let Some(frame) = body.frame().await {
                    if let Some(data) = frame.unwrap().data_ref() {
                        chunk(data);
                    }
                }
                Got {
                    status,
                    headers,
                    body: Vec::new(),
                }
            }
            Err(ClientError::Api { status, code, .. }) => Got {
                status: status.as_u16(),
                headers: BTreeMap::new(),
                body: code.into_bytes(),
            },
            Err(e) => panic!("GET {path}: {e}"),
        }
    })
}

/// GETs `path` and collects the body.
fn get(agent: &Agent, path: &str) -> Got {
    let mut body = Vec::new();
    let mut got = get_streamed(agent, path, |data| body.extend_from_slice(data));
    if got.status < 300 {
        got.body = body;
    }
    got
}

/// Like `get`, keeping the headers of an error answer too (the client
/// drops them): a raw HTTP/1.0 request on the socket.
fn get_raw(agent: &Agent, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nhost: berth\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

/// Checks a stream of `seq -f %012.0f FIRST N` bytes incrementally: no
/// line lost, repeated or out of order, without keeping them.
struct Numbered {
    next: [u8; LINE],
    at: usize,
    lines: u64,
}

impl Numbered {
    /// Expects lines from `first` on.
    fn new(first: u64) -> Numbered {
        let mut next = [b'\n'; LINE];
        next[..12].copy_from_slice(format!("{first:012}").as_bytes());
        Numbered {
            next,
            at: 0,
            lines: 0,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = (LINE - self.at).min(data.len());
            assert_eq!(
                &data[..n],
                &self.next[self.at..self.at + n],
                "after {} whole lines, expected line {:?}",
                self.lines,
                String::from_utf8_lossy(&self.next)
            );
            data = &data[n..];
            self.at += n;
            if self.at == LINE {
                self.at = 0;
                self.lines += 1;
                for digit in self.next[..12].iter_mut().rev() {
                    if *digit == b'9' {
                        *digit = b'0';
                    } else {
                        *digit += 1;
                        break;
                    }
                }
            }
        }
    }
}

/// `seq -f %012.0f 1 n` as bytes.
fn numbered(n: u64) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("{i:012}\n").into_bytes())
        .collect()
}

/// The segment files of a stream in a log dir, with sizes.
fn segments(log_dir: &Path, stream: &str) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().unwrap();
            berth_protocol::logs::segment::parse_name(stream, &name)?;
            Some((name, e.metadata().unwrap().len()))
        })
        .collect();
    found.sort();
    found
}

/// Where a container's log files are: beside its sandbox, not in it.
fn log_dir_of(container: &Value) -> PathBuf {
    let dir = PathBuf::from(container["log_dir"].as_str().unwrap());
    let sandbox = PathBuf::from(container["sandbox"].as_str().unwrap());
    assert_eq!(dir.parent(), sandbox.parent());
    dir
}

fn logs_agent() -> Agent {
    Agent::start_with_config("[log]\nmax_size = 1048576\nmax_files = 300\n")
}

#[test]
fn no_line_is_lost_and_small_counts_keep_exactly_the_newest() {
    require_root!();
    let agent = logs_agent();
    // ~100 MiB per stream, as fast as seq writes.
    const N: u64 = 8_066_000;
    let started = Instant::now();
    let container = agent.launch(json!({"id": "flood", "command": ["sh", "-c",
        format!("seq -f %012.0f 1 {N} >&2 & seq -f %012.0f 1 {N}; wait")]}));
    // A small count for the other container: only the newest is kept.
    agent.launch(
        json!({"id": "few", "log": {"max_size": 65536, "max_files": 3},
        "command": ["seq", "-f", "%012.0f", "1", "100000"]}),
    );
    assert_eq!(agent.wait("flood")["exit_code"], 0);
    eprintln!("wrote 200 MiB in {:?}", started.elapsed());

    for stream in ["stdout", "stderr"] {
        let mut check = Numbered::new(1);
        let got = get_streamed(
            &agent,
            &format!("/v1/containers/flood/logs?stream={stream}"),
            |data| check.feed(data),
        );
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-berth-log-offset"), Some(0));
        assert_eq!(got.header("x-berth-log-rotated-away"), None);
        assert_eq!(
            (check.lines, check.at),
            (N, 0),
            "{stream}: every line, once"
        );
        let files = segments(&log_dir_of(&container), stream);
        assert!(files.len() > 90, "{stream} rotated: {files:?}");
        for (name, size) in &files {
            assert!(*size <= 1 << 20, "{name} is {size} bytes");
        }
    }
    eprintln!("read back in {:?}", started.elapsed());
    let inspected = agent.api("GET", "/v1/containers/flood", None).body;
    assert_eq!(inspected["logs"]["stdout"]["bytes"], N * LINE as u64);
    assert_eq!(inspected["logs"]["stderr"]["dropped_bytes"], 0);

    agent.wait("few");
    let total = 100_000 * LINE as u64;
    let got = get(&agent, "/v1/containers/few/logs");
    let first = got
        .header("x-berth-log-rotated-away")
        .expect("the start was rotated away");
    assert_eq!(got.header("x-berth-log-offset"), Some(first));
    assert!(first > 0 && total - first <= 3 * 65536, "kept from {first}");
    assert_eq!(got.body, &numbered(100_000)[first as usize..]);
    // A range entirely gone is 416, one partly gone is cut.
    let (status, text) = get_raw(&agent, "/v1/containers/few/logs?offset=0&length=100");
    assert_eq!(status, 416, "{text}");
    assert!(
        text.contains(&format!("x-berth-log-rotated-away: {first}")),
        "{text}"
    );
    assert!(text.contains("rotated_away"), "{text}");
    let got = get(
        &agent,
        &format!("/v1/containers/few/logs?offset={}&length=20", first - 10),
    );
    assert_eq!(got.header("x-berth-log-rotated-away"), Some(first));
    assert_eq!(got.body.len(), 10);
}

#[test]
fn a_follower_reads_everything_across_rotations_and_ends_by_itself() {
    require_root!();
    let agent = logs_agent();
    // 80 000 lines in bursts, 64 KiB segments: about 16 rotations.
    let script = "sleep 0.5; for i in 0 1 2 3 4 5 6 7; do \
                  seq -f %012.0f $((i * 10000 + 1)) $((i * 10000 + 10000)); sleep 0.1; done";
    let container = agent.launch(json!({"id": "bursts", "log": {"max_size": 65536},
        "command": ["sh", "-c", script]}));
    let started = Instant::now();
    let mut check = Numbered::new(1);
    let got = get_streamed(&agent, "/v1/containers/bursts/logs?follow=true", |data| {
        check.feed(data)
    });
    assert_eq!(got.status, 200);
    assert_eq!((check.lines, check.at), (80_000, 0));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ended with the container"
    );
    assert_eq!(
        agent.api("GET", "/v1/containers/bursts", None).body["state"],
        "exited"
    );
    let files = segments(&log_dir_of(&container), "stdout");
    assert!(files.len() >= 6, "at least five rotations: {files:?}");

    // The CLI follows the same way.
    let out = agent.berth(&["logs", "-f", "--tail", "2", "bursts"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "000000079999\n000000080000\n"
    );
}

#[test]
fn tail_since_timestamps_and_compressed_segments() {
    require_root!();
    let agent = logs_agent();
    // 13 000 bytes in 4 KiB segments: lines straddle the boundaries.
    let plain = agent.launch(json!({"id": "plain", "log": {"max_size": 4096},
        "command": ["seq", "-f", "%012.0f", "1", "1000"]}));
    let packed = agent.launch(json!({"id": "packed",
        "log": {"max_size": 4096, "compress": true},
        "command": ["seq", "-f", "%012.0f", "1", "1000"]}));
    agent.wait("plain");
    agent.wait("packed");
    let expected = numbered(1000);
    let packed_dir = log_dir_of(&packed);
    eventually(Duration::from_secs(10), "compressed segments", || {
        let files = segments(&packed_dir, "stdout");
        (files.iter().filter(|(n, _)| n.ends_with(".gz")).count() >= 3).then_some(())
    });
    assert!(segments(&log_dir_of(&plain), "stdout").len() >= 4);
    for id in ["plain", "packed"] {
        for lines in [1usize, 5, 316, 700, 1000, 5000] {
            let got = get(&agent, &format!("/v1/containers/{id}/logs?tail={lines}"));
            let from = 1000usize.saturating_sub(lines) * LINE;
            assert_eq!(got.body, &expected[from..], "{id} tail {lines}");
            assert_eq!(got.header("x-berth-log-offset"), Some(from as u64));
        }
        let all = get(&agent, &format!("/v1/containers/{id}/logs"));
        assert_eq!(all.body, expected, "{id}");
        let part = get(
            &agent,
            &format!("/v1/containers/{id}/logs?offset=4090&length=20"),
        );
        assert_eq!(part.body, &expected[4090..4110], "{id}");
    }
    let out = agent.berth(&["logs", "--tail", "2", "packed"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "000000000999\n000000001000\n"
    );

    // since: only what arrived at or after a time.
    agent.launch(json!({"id": "slow", "command": ["sh", "-c",
        "echo before; sleep 0.1; echo err-before >&2; sleep 1.2; echo after; sleep 0.1; echo err-after >&2"]}));
    eventually(Duration::from_secs(10), "first line", || {
        agent.stdout("slow").contains("before").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let between = chrono::Utc::now();
    agent.wait("slow");
    let since = between.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let escaped = since.replace(':', "%3A").replace('+', "%2B");
    let got = get(&agent, &format!("/v1/containers/slow/logs?since={escaped}"));
    assert_eq!(String::from_utf8_lossy(&got.body), "after\n");
    let out = agent.berth(&["logs", "--since", &since, "--stream", "all", "slow"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after\nerr-after\n");
    let out = agent.berth(&["logs", "--stream", "all", "slow"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "before\nerr-before\nafter\nerr-after\n"
    );
    // timestamps: each line prefixed with its arrival time.
    let got = get(&agent, "/v1/containers/slow/logs?timestamps=true");
    let text = String::from_utf8(got.body).unwrap();
    let lines: Vec<(chrono::DateTime<chrono::Utc>, &str)> = text
        .lines()
        .map(|line| {
            let (time, rest) = line.split_once(' ').unwrap();
            (time.parse().unwrap(), rest)
        })
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!((lines[0].1, lines[1].1), ("before", "after"));
    assert!(lines[0].0 < between && lines[1].0 >= between, "{text}");

    for bad in [
        "stream=both",
        "tail=x",
        "since=yesterday",
        "offset=1&tail=2",
    ] {
        let got = get(&agent, &format!("/v1/containers/slow/logs?{bad}"));
        assert_eq!(got.status, 400, "{bad}");
    }
}

#[test]
fn drop_mode_counts_what_it_dropped() {
    require_root!();
    let agent = logs_agent();
    const N: u64 = 400_000;
    agent.launch(
        json!({"id": "dropper", "log": {"mode": "drop", "max_size": 1048576},
        "command": ["seq", "-f", "%012.0f", "1", N.to_string()]}),
    );
    assert_eq!(agent.wait("dropper")["exit_code"], 0);
    let counters = eventually(Duration::from_secs(5), "log counters", || {
        let body = agent.api("GET", "/v1/containers/dropper", None).body;
        let stdout = body["logs"]["stdout"].clone();
        stdout.is_object().then_some(stdout)
    });
    let written = counters["bytes"].as_u64().unwrap();
    let dropped = counters["dropped_bytes"].as_u64().unwrap();
    assert_eq!(written + dropped, N * LINE as u64, "{counters}");
    let got = get(&agent, "/v1/containers/dropper/logs");
    assert_eq!(got.body.len() as u64, written);
    let out = agent.berth(&["inspect", "dropper"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dropped_bytes"));
}

#[test]
fn sandbox_files_are_listed_and_read_but_never_outside() {
    require_root!();
    let agent = logs_agent();
    agent.launch(json!({"id": "files", "command": ["sh", "-c",
        "mkdir -p d/e && printf 0123456789 > d/f && ln -s /etc etc-link \
         && ln -s d/f inside && ln -s ../../../../../../../etc/passwd up && echo done"]}));
    agent.wait("files");

    let listing = agent.api("GET", "/v1/containers/files/files", None);
    assert_eq!(listing.status, 200, "{:?}", listing.body);
    let entries = listing.body.as_array().unwrap();
    let by_name = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {entries:?}"))
            .clone()
    };
    assert_eq!(by_name("d")["type"], "dir");
    assert_eq!(by_name("etc-link")["type"], "symlink");
    assert_eq!(by_name("inside")["type"], "symlink");
    let sub = agent
        .api("GET", "/v1/containers/files/files?path=d", None)
        .body;
    let f = sub
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "f")
        .unwrap()
        .clone();
    assert_eq!(
        (f["type"].as_str(), f["size"].as_u64()),
        (Some("file"), Some(10))
    );
    assert_eq!(f["mode"].as_str().unwrap().len(), 4);
    assert!(f["mtime"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .is_ok());

    let read = get(
        &agent,
        "/v1/containers/files/files/content?path=d/f&offset=3&length=4",
    );
    assert_eq!(read.body, b"3456");

    for path in [
        "..",
        "../..",
        "/..",
        "/d/../..",
        "etc-link",
        "etc-link/passwd",
        "up",
        // No symlink is followed, not even one that stays inside.
        "inside",
        "d/../../x",
    ] {
        for endpoint in ["files", "files/content"] {
            let answer = agent.api(
                "GET",
                &format!("/v1/containers/files/{endpoint}?path={path}"),
                None,
            );
            assert_eq!(answer.status, 403, "{endpoint} {path}: {:?}", answer.body);
            assert_eq!(answer.body["error"]["code"], "forbidden");
        }
    }
    // A leading `/` is the sandbox's root, never the host's: `/` lists the
    // sandbox, `/d/f` is its file and the host's /etc/passwd is not found.
    let root = agent.api("GET", "/v1/containers/files/files?path=/", None);
    assert_eq!(root.body, listing.body);
    assert_eq!(
        get(&agent, "/v1/containers/files/files/content?path=/d/f").body,
        b"0123456789"
    );
    for host_path in ["/etc/passwd", "%2Fetc%2Fpasswd", "//etc/passwd"] {
        let answer = agent.api(
            "GET",
            &format!("/v1/containers/files/files/content?path={host_path}"),
            None,
        );
        assert_eq!(answer.status, 404, "{host_path}: {:?}", answer.body);
    }
    let out = agent.berth(&["files", "ls", "files", "/"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("etc-link"));
    let missing = agent.api("GET", "/v1/containers/files/files/content?path=nope", None);
    assert_eq!(missing.status, 404);
    let dir = agent.api("GET", "/v1/containers/files/files/content?path=d", None);
    assert_eq!(dir.status, 400);

    let out = agent.berth(&["files", "ls", "files", "d"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("TYPE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("file") && l.ends_with(" f")),
        "{text}"
    );
    let out = agent.berth(&["files", "cat", "files", "d/f"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0123456789");
    let out = agent.berth(&["files", "cat", "files", "etc-link/passwd"]);
    assert_ne!(out.status.code(), Some(0));
}
