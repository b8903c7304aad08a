//! The blkio isolator end to end: a write throttle slows real direct I/O,
//! the weight lands in the cgroup (or is refused where the host has no
//! weight file), bad devices and rates are 400s, and stats count the I/O.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use berth_isolator_blkio::DeviceNumber;
use common::{eventually, Agent};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;

/// The whole disk backing `path`, as `(number, /dev path if any)`; `None`
/// when it is on no block device (tmpfs, overlayfs).
fn backing_disk(path: &Path) -> Option<(DeviceNumber, Option<String>)> {
    let disk = DeviceNumber::backing(path)?;
    Some((disk, disk.dev_path()))
}

macro_rules! disk_or_skip {
    ($agent:expr) => {
        match backing_disk($agent.dir.path()) {
            Some(disk) => disk,
            None => {
                common::skip(module_path!(), "the work dir is on no block device");
                return;
            }
        }
    };
}

/// Writes 20 MiB with O_DIRECT in the sandbox, prints the seconds it took,
/// then stays up (stats are for running containers) until killed.
const WRITER: &str = "start=$(date +%s.%N); \
    dd if=/dev/zero of=file bs=1M count=20 oflag=direct 2>/dev/null || echo dd failed; \
    end=$(date +%s.%N); \
    echo \"elapsed $start $end\"; \
    exec sleep 300";

/// Waits for the writer's report and returns the seconds the dd took.
fn elapsed(agent: &Agent, id: &str) -> f64 {
    let out = eventually(Duration::from_secs(120), "the dd to finish", || {
        let out = agent.stdout(id);
        out.contains("elapsed").then_some(out)
    });
    assert!(!out.contains("dd failed"), "{out}");
    let line = out.lines().find(|l| l.starts_with("elapsed")).unwrap();
    let times: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap())
        .collect();
    times[1] - times[0]
}

fn kill(agent: &Agent, id: &str) {
    let answer = agent.api("DELETE", &format!("/v1/containers/{id}?force=true"), None);
    assert!(answer.status < 300, "{:?}", answer.body);
}

/// The write throttle of `a_write_throttle_slows_direct_io_and_stats_count_it`:
/// low enough that the throttled dd (10 s) stays clearly slower than a free
/// one even on the emulated VM under load, where a free one took 2.5 s (at
/// 5 MiB/s, 4.3 s was not "clearly slower").
const RATE: u64 = 2 * MIB;

#[test]
fn a_write_throttle_slows_direct_io_and_stats_count_it() {
    require_root!();
    let agent = Agent::start();
    let (disk, dev_path) = disk_or_skip!(agent);
    let device = dev_path.clone().unwrap_or_else(|| disk.to_string());
    assert_eq!(agent.isolator_info("blkio")["throttle"], true);

    agent.launch(json!({"id": "free", "command": ["sh", "-c", WRITER]}));
    let free = elapsed(&agent, "free");
    kill(&agent, "free");

    agent.launch(json!({
        "id": "throttled",
        "command": ["sh", "-c", WRITER],
        "resources": {"device_write_bps": [{"device": device, "rate": RATE}]},
    }));
    let rule = common::cgroup::read(&agent, "throttled", common::cgroup::Knob::WriteBpsDevice);
    assert_eq!(rule, format!("{disk} {RATE}"));
    let throttled = elapsed(&agent, "throttled");
    eprintln!("20 MiB O_DIRECT to {device}: {free:.2} s free, {throttled:.2} s at 2 MiB/s");
    // 10 s at the rate; the throttle lets a first burst through.
    assert!(
        throttled >= 7.0,
        "20 MiB at 2 MiB/s took only {throttled:.2} s"
    );
    assert!(
        throttled >= 2.0 * free,
        "throttled {throttled:.2} s is not clearly slower than free {free:.2} s"
    );

    // Stats: the dd's writes on that disk, under its kernel name.
    let stats = agent.api("GET", "/v1/containers/throttled/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let blkio = &stats.body["isolators"]["blkio"];
    let io = &blkio["devices"][disk.to_string()];
    eprintln!("blkio stats: {blkio}");
    assert!(
        io["write_bytes"].as_u64().unwrap_or(0) >= 20 * MIB,
        "{blkio}"
    );
    assert!(io["write_ops"].as_u64().unwrap_or(0) > 0, "{blkio}");
    assert_eq!(io["name"], json!(disk.name()));
    assert_eq!(
        blkio["throttles"][disk.to_string()]["write_bps"],
        json!(RATE)
    );

    // A live update naming the disk by number replaces the rule made from
    // its path: one rule, the new rate.
    let update = agent.api(
        "PATCH",
        "/v1/containers/throttled/resources",
        Some(json!({"device_write_bps": [{"device": disk.to_string(), "rate": 10 * MIB}]})),
    );
    assert_eq!(update.status, 200, "{:?}", update.body);
    let rule = common::cgroup::read(&agent, "throttled", common::cgroup::Knob::WriteBpsDevice);
    assert_eq!(rule, format!("{disk} {}", 10 * MIB));
    // A zero rate is refused and the rule stays.
    let refused = agent.api(
        "PATCH",
        "/v1/containers/throttled/resources",
        Some(json!({"device_write_bps": [{"device": disk.to_string(), "rate": 0}]})),
    );
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    let rule = common::cgroup::read(&agent, "throttled", common::cgroup::Knob::WriteBpsDevice);
    assert_eq!(rule, format!("{disk} {}", 10 * MIB));

    kill(&agent, "throttled");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn the_weight_lands_in_the_hosts_weight_file_or_is_refused_up_front() {
    require_root!();
    let agent = Agent::start();
    let info = agent.isolator_info("blkio");
    eprintln!("blkio: {info}");
    let request = json!({
        "id": "weighted",
        "command": ["sleep", "300"],
        "resources": {"blkio_weight": 500},
    });
    if info["weight"] == true {
        // This host has a weight file (a BFQ one needs BFQ on the device to
        // have an effect: info lists those devices).
        let file = info["weight_file"].as_str().unwrap();
        agent.launch(request);
        let value =
            fs::read_to_string(agent.cgroup_dir("blkio", Some("weighted")).join(file)).unwrap();
        // v2's io.weight takes "default N" on its own 1..10000 scale.
        let expected = if file == "io.weight" {
            format!("default {}", berth_isolator_blkio::io_weight(500))
        } else {
            "500".to_string()
        };
        assert_eq!(value.trim(), expected, "{file}");
        kill(&agent, "weighted");
    } else {
        assert_eq!(info["weight_file"], Value::Null);
        let answer = agent.api("POST", "/v1/containers", Some(request));
        assert!(
            [400, 500].contains(&answer.status),
            "{} {:?}",
            answer.status,
            answer.body
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("resources.blkio_weight") && message.contains("weight"),
            "{message}"
        );
        assert_eq!(
            agent.api("GET", "/v1/containers/weighted", None).status,
            404
        );
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn bad_devices_rates_and_weights_get_400_naming_the_field_and_create_nothing() {
    require_root!();
    let agent = Agent::start();
    let (disk, _) = disk_or_skip!(agent);
    let disk = disk.to_string();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"device_write_bps": [{"device": "/dev/null", "rate": MIB}]}),
            "resources.device_write_bps",
            "/dev/null is not a block device",
        ),
        (
            json!({"device_read_bps": [{"device": "/dev/berth-no-such-disk", "rate": MIB}]}),
            "resources.device_read_bps",
            "/dev/berth-no-such-disk",
        ),
        (
            json!({"device_read_iops": [{"device": "1:3", "rate": 10}]}),
            "resources.device_read_iops",
            "1:3",
        ),
        (
            json!({"device_write_iops": [{"device": "vda", "rate": 10}]}),
            "resources.device_write_iops",
            "vda",
        ),
        (
            json!({"device_write_bps": [{"device": disk, "rate": 0}]}),
            "resources.device_write_bps",
            &disk,
        ),
        (
            json!({"blkio_weight": 5}),
            "resources.blkio_weight",
            "between 10 and 1000",
        ),
        (
            json!({"blkio_weight": 2000}),
            "resources.blkio_weight",
            "2000",
        ),
    ];
    for (resources, field, mentions) in cases {
        let request = json!({"id": "bad", "command": ["true"], "resources": resources});
        let answer = agent.api("POST", "/v1/containers", Some(request));
        assert_eq!(answer.status, 400, "{resources} → {:?}", answer.body);
        assert_eq!(answer.body["error"]["code"], "invalid_request");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains(mentions),
            "{resources}: {message:?} should name {field} and {mentions}"
        );
    }
    assert_eq!(agent.api("GET", "/v1/containers/bad", None).status, 404);
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}
