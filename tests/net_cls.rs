//! The net_cls isolator and the network modes end to end: traffic of a
//! container in a network namespace lands in its tc class; handles conflict
//! while held, are freed at exit and survive an agent restart; `none` gives
//! a namespace with only loopback, up.
//!
//! Traffic only ever flows inside a network namespace the test makes (and
//! deletes, also on panic).

mod common;

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, Agent};
use serde_json::{json, Value};

/// The agent's default primary handle (`[net_cls] primary`).
const PRIMARY: u16 = 0xAAAA;

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The absolute path of a host program (containers without a rootfs see the
/// host's root, but not necessarily the test's PATH).
fn which(program: &str) -> String {
    run_ok("sh", &["-c", &format!("command -v {program}")])
        .trim()
        .to_string()
}

/// A network namespace made with `ip netns add`, deleted on drop (with
/// everything in it: qdiscs, nftables tables, sockets' packets).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "berth-t-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        run_ok("ip", &["netns", "add", &name]);
        Netns { name }
    }

    /// Where `ip netns` put the namespace.
    fn path(&self) -> PathBuf {
        ["/run/netns", "/var/run/netns"]
            .iter()
            .map(|dir| Path::new(dir).join(&self.name))
            .find(|p| p.exists())
            .expect("ip netns add makes /run/netns/NAME")
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "in {}: {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread that has joined the namespace (the network
    /// namespace is per thread): sockets it makes stay in the namespace.
    fn on_thread<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = std::fs::File::open(self.path()).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the test's network namespace");
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = run("ip", &["netns", "delete", &self.name]);
        if !out.status.success() {
            eprintln!(
                "ip netns delete {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Bytes and packets sent through an HTB class, from `tc -s class show`.
fn class_counters(ns: &Netns, class: &str) -> (u64, u64) {
    let text = ns.exec_ok(&["tc", "-s", "class", "show", "dev", "lo"]);
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with(&format!("class htb {class} ")) {
            // " Sent 5800 bytes 100 pkt (dropped 0, overlimits 0 requeues 0)"
            let sent = lines.next().unwrap_or_default();
            let words: Vec<&str> = sent.split_whitespace().collect();
            if let ["Sent", bytes, "bytes", packets, "pkt", ..] = words[..] {
                return (bytes.parse().unwrap(), packets.parse().unwrap());
            }
            panic!("unexpected tc output after {line:?}: {sent:?}");
        }
    }
    panic!("no class {class} in:\n{text}");
}

/// Classifies traffic on the namespace's loopback by net_cls class id into
/// `class` (default class `PRIMARY:99`). The tc `cgroup` classifier is the
/// classic way; kernels built without it (CONFIG_NET_CLS_CGROUP, as on the
/// CI machines) get the same classification from nftables: `meta cgroup`
/// matches the socket's net_cls class id and `meta priority` picks the HTB
/// class.
fn shape_loopback(ns: &Netns, classid: u32, class: &str) {
    let major = format!("{PRIMARY:x}:");
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    ns.exec_ok(&[
        "tc", "qdisc", "add", "dev", "lo", "root", "handle", &major, "htb", "default", "99",
    ]);
    for classid in [class.to_string(), format!("{major}99")] {
        ns.exec_ok(&[
            "tc", "class", "add", "dev", "lo", "parent", &major, "classid", &classid, "htb",
            "rate", "100mbit",
        ]);
    }
    let filter = ns.exec(&[
        "tc", "filter", "add", "dev", "lo", "parent", &major, "protocol", "ip", "prio", "10",
        "handle", "1:", "cgroup",
    ]);
    if filter.status.success() {
        return;
    }
    eprintln!(
        "tc cgroup classifier unavailable ({}): classifying with nftables meta cgroup",
        String::from_utf8_lossy(&filter.stderr).trim()
    );
    assert!(
        have("nft"),
        "neither the tc cgroup classifier nor nft is available (.ci/run installs nftables)"
    );
    ns.exec_ok(&["nft", "add", "table", "ip", "berth_test"]);
    ns.exec_ok(&[
        "nft",
        "add chain ip berth_test out { type filter hook output priority 0; }",
    ]);
    ns.exec_ok(&[
        "nft",
        &format!("add rule ip berth_test out meta cgroup {classid} meta priority set {class}"),
    ]);
}

fn require_tools() -> bool {
    if have("ip") && have("tc") {
        return true;
    }
    common::skip(module_path!(), "needs ip and tc (iproute2)");
    false
}

/// net_cls is a cgroup v1 controller: on v2 the isolator refuses (decision
/// 0016), which `on_cgroup_v2_net_cls_is_refused_naming_the_alternative`
/// checks instead.
fn require_net_cls(test: &str) -> bool {
    if common::cgroup::mode_name() == "v1" {
        return true;
    }
    common::skip_missing_kernel_feature(test, "net_cls needs cgroup v1 (refused on v2)");
    false
}

fn error_message(answer: &common::Answer) -> String {
    answer.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn launch_answer(agent: &Agent, id: &str, handle: Value) -> common::Answer {
    agent.api(
        "POST",
        "/v1/containers",
        Some(json!({
            "id": id,
            "command": ["sleep", "300"],
            "resources": {"net_cls_handle": handle},
        })),
    )
}

fn kill_and_wait(agent: &Agent, id: &str) {
    let killed = agent.api("POST", &format!("/v1/containers/{id}/kill"), None);
    assert_eq!(killed.status, 204, "kill {id}: {:?}", killed.body);
    agent.wait(id);
    // The handle is freed by the cleanup that follows the exit's publication.
    common::eventually(Duration::from_secs(5), "the net_cls cgroup to go", || {
        (!agent.cgroup_dir("net_cls", Some(id)).exists()).then_some(())
    });
}

fn classid_of(agent: &Agent, id: &str) -> Value {
    agent.api("GET", &format!("/v1/containers/{id}"), None).body["status"]["net_cls"]["classid"]
        .clone()
}

#[test]
fn container_traffic_lands_in_its_tc_class() {
    require_root!();
    if !require_net_cls("container_traffic_lands_in_its_tc_class") {
        return;
    }
    if !require_tools() {
        return;
    }
    let agent = Agent::start();
    let ns = Netns::new();
    let secondary: u16 = 0x123;
    let classid = u32::from(PRIMARY) << 16 | u32::from(secondary);
    let class = format!("{PRIMARY:x}:{secondary:x}");
    shape_loopback(&ns, classid, &class);

    // A receiver, so that the datagrams are taken rather than answered with
    // ICMP port unreachable (which would count in the default class), and
    // some traffic from the test itself (class id 0: the default class).
    let receiver = ns.on_thread(|| {
        let receiver = UdpSocket::bind("127.0.0.1:9999").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..20 {
            sender.send_to(b"from-the-test", "127.0.0.1:9999").unwrap();
        }
        receiver
    });

    let bash = which("bash");
    let script =
        "for i in $(seq 200); do echo payload-payload-payload > /dev/udp/127.0.0.1/9999; done";
    agent.launch(json!({
        "id": "sender",
        "command": [bash, "-c", script],
        "network": format!("ns:{}", ns.path().display()),
        "resources": {"net_cls_handle": secondary},
    }));
    let ended = agent.wait("sender");
    assert_eq!(ended["exit_code"], 0, "{ended}\n{}", agent.log());

    let (bytes, packets) = class_counters(&ns, &class);
    let (default_bytes, default_packets) = class_counters(&ns, &format!("{PRIMARY:x}:99"));
    assert!(
        packets >= 200 && bytes >= 200 * 24,
        "container class {class}: {bytes} bytes {packets} pkt"
    );
    assert!(
        (20..100).contains(&default_packets),
        "default class: {default_bytes} bytes {default_packets} pkt (the test's own 20)"
    );

    // The datagrams did arrive.
    receiver
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut from_container = 0;
    while let Ok(n) = receiver.recv(&mut buf) {
        if &buf[..n] == b"payload-payload-payload\n" {
            from_container += 1;
        }
    }
    assert_eq!(from_container, 200);
}

#[test]
fn handles_conflict_while_held_and_are_freed_at_exit() {
    require_root!();
    if !require_net_cls("handles_conflict_while_held_and_are_freed_at_exit") {
        return;
    }
    let agent = Agent::start();
    agent.launch(json!({
        "id": "holder",
        "command": ["sleep", "300"],
        "resources": {"net_cls_handle": 77},
    }));
    assert_eq!(classid_of(&agent, "holder"), "0xAAAA004D");
    let classid_file = agent
        .cgroup_dir("net_cls", Some("holder"))
        .join("net_cls.classid");
    assert_eq!(
        std::fs::read_to_string(&classid_file).unwrap().trim(),
        (0xAAAA_004Du32).to_string()
    );

    let taken = launch_answer(&agent, "rival", json!(77));
    assert_eq!(taken.status, 409, "{:?}", taken.body);
    assert!(
        error_message(&taken).contains("in use by container holder"),
        "{:?}",
        taken.body
    );
    for bad in [json!(0), json!(70000)] {
        let answer = launch_answer(&agent, "rival", bad.clone());
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
        assert!(
            error_message(&answer).contains("resources.net_cls_handle"),
            "{:?}",
            answer.body
        );
    }
    let leftovers = agent.leftovers();
    assert!(
        !leftovers.iter().any(|l| l.contains("rival")),
        "a refused launch left {leftovers:?}"
    );
    assert_eq!(agent.api("GET", "/v1/containers/rival", None).status, 404);

    // Any free handle: the lowest, 1.
    agent.launch(json!({"id": "any", "command": ["sleep", "300"]}));
    assert_eq!(classid_of(&agent, "any"), "0xAAAA0001");

    kill_and_wait(&agent, "holder");
    assert!(!classid_file.exists(), "cgroup removed at exit");
    agent.launch(json!({
        "id": "successor",
        "command": ["sleep", "300"],
        "resources": {"net_cls_handle": 77},
    }));
    assert_eq!(classid_of(&agent, "successor"), "0xAAAA004D");
    let stats = agent.api("GET", "/v1/containers/successor/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(
        stats.body["isolators"]["net_cls"]["classid"], "0xAAAA004D",
        "{:?}",
        stats.body
    );

    let net_cls = agent.isolator_info("net_cls");
    assert_eq!(net_cls["mode"], "v1");
    assert_eq!(net_cls["handles_free"], 0xFFFF - 2, "{net_cls}");
    assert!(net_cls["mount_point"].as_str().is_some(), "{net_cls}");
}

#[test]
fn recovery_keeps_handles() {
    require_root!();
    if !require_net_cls("recovery_keeps_handles") {
        return;
    }
    let mut agent = Agent::start();
    agent.launch(json!({"id": "long", "command": ["sleep", "300"]}));
    let classid = classid_of(&agent, "long");
    let secondary = agent.api("GET", "/v1/containers/long", None).body["status"]["net_cls"]
        ["secondary"]
        .as_u64()
        .unwrap_or_else(|| panic!("classid {classid}"));

    agent.restart();
    assert_eq!(classid_of(&agent, "long"), classid, "inspect after restart");
    let taken = launch_answer(&agent, "rival", json!(secondary));
    assert_eq!(taken.status, 409, "{:?}\n{}", taken.body, agent.log());
    // A new container does not get the recovered handle either.
    agent.launch(json!({"id": "next", "command": ["sleep", "300"]}));
    assert_ne!(classid_of(&agent, "next"), classid);

    kill_and_wait(&agent, "long");
    agent.launch(json!({
        "id": "reuse",
        "command": ["sleep", "300"],
        "resources": {"net_cls_handle": secondary},
    }));
    assert_eq!(classid_of(&agent, "reuse"), classid);
}

#[test]
fn network_none_has_only_loopback_up_and_a_missing_namespace_is_refused() {
    require_root!();
    if !require_tools() {
        return;
    }
    let agent = Agent::start();
    let ip = which("ip");
    agent.launch(json!({
        "id": "isolated",
        "command": ["sh", "-c", format!("cat /proc/net/dev; {ip} -o link show")],
        "network": "none",
    }));
    let ended = agent.wait("isolated");
    assert_eq!(ended["exit_code"], 0, "{ended}");
    let out = eventually(Duration::from_secs(5), "the container's output", || {
        let out = agent.stdout("isolated");
        out.contains("link/loopback").then_some(out)
    });
    let devices: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim())
        .filter(|name| !name.is_empty() && !name.contains(' ') && !name.contains('|'))
        .filter(|name| name.parse::<u32>().is_err())
        .collect();
    assert!(
        devices.iter().all(|d| *d == "lo"),
        "only lo in /proc/net/dev: {devices:?}\n{out}"
    );
    let links: Vec<&str> = out.lines().filter(|l| l.contains("link/")).collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(
        links[0].contains(": lo:") && links[0].contains(",UP"),
        "lo is up: {out}"
    );

    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "lost", "command": ["true"], "network": "ns:/nonexistent"})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(
        error_message(&answer).contains("invalid network"),
        "{:?}",
        answer.body
    );
    assert!(!agent.leftovers().iter().any(|l| l.contains("lost")));
}

#[test]
fn on_cgroup_v2_net_cls_is_refused_naming_the_alternative() {
    require_root!();
    if common::cgroup::mode_name() != "v2" {
        return; // the v1 tests above cover net_cls there
    }
    let agent = Agent::start();
    // Not offered, and said so in the agent's log with the alternative.
    let info = agent.api("GET", "/v1/info", None).body;
    assert!(
        !info["isolators"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "net_cls"),
        "{info}"
    );
    let log = agent.log();
    assert!(
        log.contains("net_cls") && log.contains("socket cgroupv2"),
        "{log}"
    );
    // A launch that asks for a class id is a 400 naming the field, and
    // leaves nothing behind.
    let answer = launch_answer(&agent, "tagged", json!(0x10));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(
        error_message(&answer).contains("net_cls_handle"),
        "{:?}",
        answer.body
    );
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
    // An agent configured to require it does not start.
    let cgroup_root = format!("berth-test-netcls-{}", std::process::id());
    let (_dir, out) = common::agent_start_output(
        Some("isolation = [\"net_cls\"]\n"),
        ["--cgroup-root", cgroup_root.as_str()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("net_cls") && err.contains("cgroup v2"),
        "{err}"
    );
}
