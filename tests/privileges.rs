//! Attacks on the host through a container's privileges, each done for real
//! and shown to fail: setuid files in the sandbox, the inherited session
//! keyring, raw sockets, the host's secrets and `/run` in host-root mode,
//! and the flags of the container's mounts.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{busybox_rootfs, Agent};
use serde_json::json;

const PYTHON: &str = "/usr/bin/python3";

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `path -p -c 'id -u'` on the host as uid/gid 65534 with no groups
/// (fork, setgroups, setgid, setuid, exec: no capability left at the exec).
fn run_as_nobody(path: &Path) -> std::io::Result<std::process::Output> {
    use std::os::unix::process::CommandExt;
    Command::new(path)
        .args(["-p", "-c", "id -u"])
        .uid(65534)
        .gid(65534)
        .output()
}

#[test]
fn a_setuid_shell_made_in_the_sandbox_gives_no_host_user_root() {
    require_root!();
    let agent = Agent::start();
    // The container (root, host-root mode) plants a setuid-root shell in its
    // sandbox, then tries it itself as another user.
    let script = "cp /bin/bash rootbash && chmod 4755 rootbash && echo planted; \
                  setpriv --reuid=65534 --regid=65534 --clear-groups ./rootbash -p -c 'echo inside=$(id -u)'";
    let container = agent.launch(json!({"id": "suid", "command": ["sh", "-c", script]}));
    let ended = agent.wait("suid");
    let out = agent.stdout("suid");
    assert_eq!(ended["exit_code"], 0, "{out}");
    assert!(out.contains("planted"), "{out}");
    // nosuid on the sandbox (and no_new_privs): no privilege inside.
    assert!(out.contains("inside=65534"), "{out}");

    let sandbox = PathBuf::from(container["sandbox"].as_str().unwrap());
    let rootbash = sandbox.join("rootbash");
    let meta = std::fs::metadata(&rootbash).unwrap();
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.mode() & 0o7777, 0o4755, "the exploit's file is real");

    // On the host, nobody cannot even reach it.
    let err = run_as_nobody(&rootbash).expect_err("nobody ran the planted shell");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");

    // The control: with the sandbox reachable (the old 0711 dirs), the same
    // file gives nobody euid 0, unless the host fs is nosuid anyway. That is
    // what the 0700 dirs stop.
    let nosuid_host = Command::new("findmnt")
        .args(["-n", "-o", "OPTIONS", "-T"])
        .arg(&sandbox)
        .output()
        .map(|o| stdout_of(&o).split(',').any(|f| f.trim() == "nosuid"))
        .unwrap_or(false);
    if !nosuid_host {
        let containers = agent.work_dir.join("containers");
        let mut opened = Vec::new();
        for dir in sandbox.ancestors() {
            if !dir.starts_with(&containers) {
                break;
            }
            let mode = std::fs::metadata(dir).unwrap().mode() & 0o7777;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
            opened.push((dir.to_path_buf(), mode));
        }
        let out = run_as_nobody(&rootbash).unwrap();
        for (dir, mode) in opened {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        assert_eq!(
            stdout_of(&out).trim(),
            "0",
            "the exploit works when reachable"
        );
    }
    let mode = std::fs::metadata(agent.work_dir.join("containers"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    std::fs::remove_file(&rootbash).unwrap();
}

/// `keyctl(2)` with its four arguments (0 where unused).
fn keyctl(op: libc::c_long, a: libc::c_long, b: libc::c_long, c: libc::c_long) -> libc::c_long {
    // SAFETY: the callers pass integers or valid nul-terminated strings.
    unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c, 0 as libc::c_long) }
}

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_SETPERM: libc::c_long = 5;
const KEYCTL_UNLINK: libc::c_long = 9;
const KEYCTL_SEARCH: libc::c_long = 10;
const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;

/// Adds a `user` key to this thread's session keyring.
fn add_session_key(description: &str, payload: &str) -> libc::c_long {
    let kind = std::ffi::CString::new("user").unwrap();
    let desc = std::ffi::CString::new(description).unwrap();
    // SAFETY: valid strings and a payload buffer of the given length.
    let id = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            kind.as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_SESSION_KEYRING,
        )
    };
    assert!(id > 0, "add_key: {}", std::io::Error::last_os_error());
    id
}

/// Whether `keyring` holds a `user` key with this description.
fn keyring_has(keyring: libc::c_long, description: &str) -> bool {
    let kind = std::ffi::CString::new("user").unwrap();
    let desc = std::ffi::CString::new(description).unwrap();
    keyctl(
        KEYCTL_SEARCH,
        keyring,
        kind.as_ptr() as libc::c_long,
        desc.as_ptr() as libc::c_long,
    ) > 0
}

#[test]
fn a_container_neither_reads_the_agents_session_keyring_nor_adds_to_it() {
    require_root!();
    if !Path::new("/usr/bin/keyctl").exists() {
        common::skip(
            "a_container_neither_reads_the_agents_session_keyring_nor_adds_to_it",
            "keyutils (keyctl) is not installed",
        );
        return;
    }
    // Credentials are per thread: this test's thread joins a session
    // keyring of its own, holds keys in it, and starts the agent, which
    // (with its shims) inherits that keyring as a service's would.
    let name = std::ffi::CString::new(format!("berth-test-{}", std::process::id())).unwrap();
    assert!(
        keyctl(
            KEYCTL_JOIN_SESSION_KEYRING,
            name.as_ptr() as libc::c_long,
            0,
            0
        ) > 0,
        "join a session keyring: {}",
        std::io::Error::last_os_error()
    );
    let tag = std::process::id();
    let readable = format!("berth-test-secret-{tag}");
    let private = format!("berth-test-private-{tag}");
    let readable_id = add_session_key(&readable, "s3cret-payload");
    let private_id = add_session_key(&private, "private-payload");
    // Possessor only: not even listed in /proc/keys to a non-possessor.
    assert_eq!(keyctl(KEYCTL_SETPERM, private_id, 0x3f00_0000, 0), 0);
    let planted = format!("berth-test-planted-{tag}");

    let agent = Agent::start();
    let script = format!(
        "keyctl print {readable_id} 2>&1; echo print=$?; \
         keyctl print {private_id} 2>&1; echo print_private=$?; \
         keyctl search @s user {readable} 2>&1; echo search=$?; \
         grep -c {private} /proc/keys; \
         keyctl add user {planted} planted @s >/dev/null 2>&1 && echo added || echo add-refused"
    );
    agent.launch(json!({"id": "keys", "command": ["sh", "-c", script]}));
    agent.wait("keys");
    let out = agent.stdout("keys");
    let lines: Vec<&str> = out.lines().collect();
    assert!(!out.contains("payload"), "a host key was read:\n{out}");
    assert!(lines.contains(&"print=1"), "{out}");
    assert!(lines.contains(&"print_private=1"), "{out}");
    assert!(lines.contains(&"search=1"), "{out}");
    assert!(
        lines.contains(&"0"),
        "the possessor-only key is listed:\n{out}"
    );
    // Added to its own keyring, or refused (once seccomp denies add_key).
    assert!(
        lines.contains(&"added") || lines.contains(&"add-refused"),
        "{out}"
    );
    // What the container added stayed in its own keyring.
    assert!(keyring_has(KEY_SPEC_SESSION_KEYRING, &readable));
    assert!(!keyring_has(KEY_SPEC_SESSION_KEYRING, &planted));
    assert!(!keyring_has(KEY_SPEC_USER_KEYRING, &planted));

    drop(agent);
    for id in [readable_id, private_id] {
        keyctl(KEYCTL_UNLINK, id, KEY_SPEC_SESSION_KEYRING, 0);
    }
}

const PACKET_SOCKET: &str = "import socket, errno\n\
try:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); print('opened')\n\
except OSError as e:\n    print(errno.errorcode[e.errno])\n";

#[test]
fn an_af_packet_socket_needs_cap_add_net_raw() {
    require_root!();
    let agent = Agent::start();
    let out = agent.berth(&["run", "--", PYTHON, "-c", PACKET_SOCKET]);
    assert_eq!(stdout_of(&out), "EPERM\n", "{out:?}");
    // The control: given back, the same socket opens.
    for name in ["NET_RAW", "cap_net_raw"] {
        let out = agent.berth(&["run", "--cap-add", name, "--", PYTHON, "-c", PACKET_SOCKET]);
        assert_eq!(stdout_of(&out), "opened\n", "{name}: {out:?}");
    }
    let out = agent.berth(&[
        "run",
        "--cap-add",
        "NET_RAW",
        "--cap-drop",
        "ALL",
        "--",
        PYTHON,
        "-c",
        PACKET_SOCKET,
    ]);
    assert_eq!(stdout_of(&out), "opened\n", "{out:?}");
    let out = agent.berth(&[
        "run",
        "--cap-add",
        "ALL",
        "--cap-drop",
        "net_raw",
        "--",
        PYTHON,
        "-c",
        PACKET_SOCKET,
    ]);
    assert_eq!(stdout_of(&out), "EPERM\n", "{out:?}");
}

#[test]
fn unknown_capabilities_and_tiny_tmp_sizes_are_400_naming_the_field() {
    require_root!();
    let agent = Agent::start();
    for (request, field) in [
        (
            json!({"command": ["true"], "capabilities": {"add": ["BOGUS"]}}),
            "capabilities.add",
        ),
        (
            json!({"command": ["true"], "capabilities": {"drop": ["NET_RAW", "CAP_NOPE"]}}),
            "capabilities.drop",
        ),
        (
            json!({"command": ["true"], "capabilities": {"add": ["NET_RAW"], "keep": []}}),
            "keep",
        ),
        (json!({"command": ["true"], "tmp_size": 10}), "tmp_size"),
    ] {
        let answer = agent.api("POST", "/v1/containers", Some(request.clone()));
        assert_eq!(answer.status, 400, "{request}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{request}: {message}");
    }
    let out = agent.berth(&["run", "--cap-add", "BOGUS", "--", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("capabilities.add"), "{stderr}");
    assert!(stderr.contains("BOGUS"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn host_root_mode_hides_secrets_home_and_run_and_applies_the_default_user() {
    require_root!();
    // Configured extra paths, somewhere a host-root container sees.
    let extra = tempfile::Builder::new()
        .prefix("berth-hidden-")
        .tempdir_in("/var/tmp")
        .unwrap();
    // Reachable by the container's user, as any host dir might be.
    std::fs::set_permissions(extra.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret_dir = extra.path().join("secret-dir");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("inside"), "dir-secret").unwrap();
    std::fs::write(extra.path().join("ssh_host_test_key"), "key-secret").unwrap();
    std::fs::write(extra.path().join("ssh_host_test_key.pub"), "public").unwrap();
    let marker = PathBuf::from(format!("/run/berth-test-marker-{}", std::process::id()));
    std::fs::write(&marker, "host-run").unwrap();

    let toml = format!(
        "[container]\nhidden_paths = [\"/etc/shadow\", \"/etc/gshadow\", \"/etc/ssh/*_key\", \
         \"/root\", \"/home\", \"{dir}\", \"{glob}\", \"/no/such/path\"]\n\
         default_user = \"65534:65534\"\n",
        dir = secret_dir.display(),
        glob = extra.path().join("*_key").display(),
    );
    let agent = Agent::start_with_config(&toml);
    let script = format!(
        "echo shadow=$(cat /etc/shadow | wc -c); echo gshadow=$(cat /etc/gshadow | wc -c); \
         echo root=$(ls -A /root | wc -l); echo home=$(ls -A /home | wc -l); \
         echo run=$(ls -A /run | wc -l); cat {marker} 2>/dev/null; \
         echo dir=$(ls -A {dir} | wc -l); echo key=$(cat {key} | wc -c); cat {public}; echo; \
         echo user=$(id -u):$(id -g); echo mine > in-sandbox && echo sandbox=rw",
        marker = marker.display(),
        dir = secret_dir.display(),
        key = extra.path().join("ssh_host_test_key").display(),
        public = extra.path().join("ssh_host_test_key.pub").display(),
    );
    // Only the resolver config survives in /run, where /etc/resolv.conf
    // leads into it (systemd-resolved).
    let run_entries =
        if std::fs::canonicalize("/etc/resolv.conf").is_ok_and(|p| p.starts_with("/run/")) {
            1
        } else {
            0
        };
    let container = agent.launch(json!({"id": "peek", "command": ["sh", "-c", script]}));
    let ended = agent.wait("peek");
    std::fs::remove_file(&marker).unwrap();
    let out = agent.stdout("peek");
    assert_eq!(ended["exit_code"], 0, "{out}\n{}", agent.log());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "shadow=0",
            "gshadow=0",
            "root=0",
            "home=0",
            format!("run={run_entries}").as_str(),
            "dir=0",
            "key=0",
            "public",
            "user=65534:65534",
            "sandbox=rw",
        ],
        "{out}"
    );
    assert_eq!(container["user"], json!({"uid": 65534, "gid": 65534}));
    let sandbox = PathBuf::from(container["sandbox"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(sandbox.join("in-sandbox")).unwrap(),
        "mine\n"
    );

    // Hidden means read-only too, even for root; the host's files stay.
    let shadow_before = std::fs::read("/etc/shadow").unwrap();
    let script = format!(
        "echo x > /etc/shadow 2>/dev/null && echo shadow=written; \
         touch /root/x 2>/dev/null && echo root=written; \
         touch {dir}/x 2>/dev/null && echo dir=written; \
         touch /run/x && echo run=rw; id -u",
        dir = secret_dir.display(),
    );
    agent.launch(json!({"id": "poke", "user": {"uid": 0}, "command": ["sh", "-c", script]}));
    agent.wait("poke");
    assert_eq!(agent.stdout("poke"), "run=rw\n0\n");
    assert_eq!(std::fs::read("/etc/shadow").unwrap(), shadow_before);
    assert!(!Path::new("/root/x").exists() && !Path::new("/run/x").exists());
    assert!(!secret_dir.join("x").exists());
}

#[test]
fn a_non_root_container_writes_its_sandbox_in_rootfs_mode() {
    require_root!();
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    let container = agent.launch(json!({
        "id": "user-rootfs",
        "user": {"uid": 1000, "gid": 1000},
        "rootfs": rootfs,
        "command": ["sh", "-c", "echo mine > /sandbox/f && cat /sandbox/f && id -u"],
    }));
    agent.wait("user-rootfs");
    assert_eq!(agent.stdout("user-rootfs"), "mine\n1000\n");
    let sandbox = PathBuf::from(container["sandbox"].as_str().unwrap());
    assert_eq!(std::fs::metadata(sandbox.join("f")).unwrap().uid(), 1000);
}

/// `(mount point, per-mount options, fs type, super options)` of each line
/// of a mountinfo text.
fn mountinfo(text: &str) -> Vec<(String, Vec<String>, String, String)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some((
                fields[4].to_string(),
                fields[5].split(',').map(str::to_string).collect(),
                fields.get(dash + 1)?.to_string(),
                fields.get(dash + 3).unwrap_or(&"").to_string(),
            ))
        })
        .collect()
}

#[test]
fn sandbox_root_and_host_mounts_are_nosuid_nodev_and_tmp_is_bounded() {
    require_root!();
    let agent = Agent::start();
    let container = agent.launch(json!({
        "id": "flags",
        "command": ["cat", "/proc/self/mountinfo"],
    }));
    agent.wait("flags");
    let mounts = mountinfo(&agent.stdout("flags"));
    let sandbox = container["sandbox"].as_str().unwrap();
    let options_of = |point: &str| {
        mounts
            .iter()
            .rev()
            .find(|m| m.0 == point)
            .unwrap_or_else(|| panic!("no mount on {point}: {mounts:?}"))
            .1
            .clone()
    };
    for (point, wanted) in [
        ("/", &["ro", "nosuid", "nodev"][..]),
        (sandbox, &["rw", "nosuid", "nodev"]),
        ("/tmp", &["nosuid", "nodev"]),
        ("/run", &["nosuid", "nodev"]),
    ] {
        let options = options_of(point);
        for flag in wanted {
            assert!(options.iter().any(|o| o == flag), "{point}: {options:?}");
        }
    }
    let tmp = mounts.iter().rev().find(|m| m.0 == "/tmp").unwrap();
    assert!(tmp.3.contains("size=65536k"), "{tmp:?}");
    // Every host mount the root brought along, too: only /dev holds nodes.
    for (point, options, fstype, _) in &mounts {
        if point.starts_with("/dev") || fstype == "devtmpfs" {
            continue;
        }
        for flag in ["nosuid", "nodev"] {
            assert!(
                options.iter().any(|o| o == flag),
                "{point} ({fstype}) lacks {flag}: {options:?}"
            );
        }
    }

    // With a rootfs: the same for the root (an overlay with the
    // container's own writable layer, decision 0024) and /sandbox.
    let rootfs = busybox_rootfs(agent.dir.path());
    agent.launch(json!({
        "id": "flags-rootfs",
        "rootfs": rootfs,
        "command": ["cat", "/proc/self/mountinfo"],
    }));
    agent.wait("flags-rootfs");
    let mounts = mountinfo(&agent.stdout("flags-rootfs"));
    for (point, wanted) in [
        ("/", &["rw", "nosuid", "nodev"][..]),
        ("/sandbox", &["rw", "nosuid", "nodev"]),
    ] {
        let options = &mounts.iter().rev().find(|m| m.0 == point).unwrap().1;
        for flag in wanted {
            assert!(options.iter().any(|o| o == flag), "{point}: {options:?}");
        }
    }

    // /tmp is full at its size: ENOSPC, not the host's memory.
    let out = agent.berth(&[
        "run",
        "--tmp-size",
        "1M",
        "--",
        "sh",
        "-c",
        "head -c 2000000 /dev/zero > /tmp/fill; echo status=$?; echo size=$(wc -c < /tmp/fill)",
    ]);
    let stdout = stdout_of(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "{out:?}"
    );
    assert!(stdout.contains("status=1"), "{stdout}");
    assert!(stdout.contains("size=1048576"), "{stdout}");
}

#[test]
fn proc_interrupts_and_timer_list_are_masked() {
    require_root!();
    // The host's /proc/interrupts (one line per IRQ, a Docker addition to
    // the runtime-spec list) and /proc/timer_list have content; the
    // container's read empty.
    for path in ["/proc/interrupts", "/proc/timer_list"] {
        assert!(!std::fs::read_to_string(path).unwrap().is_empty(), "{path}");
    }
    let agent = Agent::start();
    let out = agent.berth(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo interrupts=$(wc -c < /proc/interrupts) timer_list=$(wc -c < /proc/timer_list)",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "interrupts=0 timer_list=0\n");
}
