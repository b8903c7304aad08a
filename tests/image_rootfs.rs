//! A container's own root filesystem (decision 0024): an overlay of
//! read-only lower dirs (a `--rootfs` dir, an image's layers) under the
//! container's own writable layer, mounted inside the container's mount
//! namespace; mount points made in that layer, never in the lower dirs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, Agent};
use serde_json::json;

/// A root filesystem with nothing but `bin/` (busybox and a few applets).
fn bin_only_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("binonly");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (.ci/run installs it)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "ls", "touch", "sleep", "mkdir", "id", "pwd",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    rootfs
}

/// Every entry below `root`: type, mode, size, mtime (ns), inode.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        out.insert(
            dir.strip_prefix(root).unwrap().to_path_buf(),
            (
                meta.mode(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino(),
            ),
        );
        if meta.is_dir() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                } else {
                    out.insert(
                        path.strip_prefix(root).unwrap().to_path_buf(),
                        (
                            meta.mode(),
                            meta.size(),
                            meta.mtime(),
                            meta.mtime_nsec(),
                            meta.ino(),
                        ),
                    );
                }
            }
        }
    }
    out
}

fn remove(agent: &Agent, id: &str) {
    let answer = agent.api("DELETE", &format!("/v1/containers/{id}?force=true"), None);
    assert_eq!(answer.status, 204, "rm {id}: {:?}", answer.body);
}

#[test]
fn a_rootfs_with_only_bin_runs_writes_anywhere_and_is_left_unmodified() {
    require_root!();
    writes_anywhere_and_leaves_the_rootfs(&Agent::start());
}

/// The same with the overlay mounted by the container child itself, as on
/// a kernel without the new mount API (decision 0046).
#[test]
fn a_rootfs_runs_the_same_when_the_container_mounts_its_overlay_itself() {
    require_root!();
    writes_anywhere_and_leaves_the_rootfs(&Agent::start_with_env(
        &[("BERTH_TEST_NO_ROOT_MOUNT", "1")],
        "",
    ));
}

/// The agent builds a container's overlay root as a detached mount
/// (decision 0046): the container sees an overlay at `/`, the host's mount
/// table never has it.
#[test]
fn the_agents_overlay_root_is_mounted_in_the_container_only() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    agent.launch(json!({
        "id": "held",
        "command": ["/bin/sh", "-c", "busybox grep ' / / ' /proc/self/mountinfo; exec sleep 300"],
        "rootfs": rootfs,
    }));
    let line = eventually(Duration::from_secs(10), "the container's root line", || {
        let out = agent.stdout("held");
        out.contains('\n').then_some(out)
    });
    assert!(line.contains(" - overlay overlay "), "{line}");
    // The agent names the layers by its own descriptors' absolute paths;
    // the child mounting the overlay itself names them relative to its cwd.
    // Where the kernel builds overlays with the new mount API, the agent's
    // mount is the one in use.
    if berth_sys::fs_context::FsContext::open("overlay").is_ok() {
        assert!(line.contains("lowerdir=/proc/self/fd/"), "{line}");
    }
    let upper = agent.container_dir("held").join("root/upper");
    let agent_table = format!("/proc/{}/mountinfo", agent.pid().unwrap());
    for table in ["/proc/self/mountinfo", &agent_table] {
        let mounts = std::fs::read_to_string(table).unwrap();
        assert!(
            !mounts.contains(upper.to_str().unwrap()),
            "{table}: {mounts}"
        );
    }
    remove(&agent, "held");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

fn writes_anywhere_and_leaves_the_rootfs(agent: &Agent) {
    let rootfs = bin_only_rootfs(agent.dir.path());
    let before = snapshot(&rootfs);
    agent.launch(json!({
        "id": "binonly",
        "command": ["/bin/sh", "-c",
            "echo new > /newfile && mkdir -p /etc/deep && echo x > /etc/deep/f && \
             echo over > /bin/newtool && cat /newfile /etc/deep/f && ls -d /proc/1 /sys /dev/null /tmp /sandbox && pwd"],
        "rootfs": rootfs,
    }));
    let done = agent.wait("binonly");
    let out = agent.stdout("binonly");
    assert_eq!(done["exit_code"], 0, "{out} {done}");
    assert_eq!(
        out,
        "new\nx\n/dev/null\n/proc/1\n/sandbox\n/sys\n/tmp\n/sandbox\n"
    );
    // The writes went to the container's own layer, not to the dir.
    assert_eq!(snapshot(&rootfs), before, "the --rootfs dir changed");
    let upper = agent.container_dir("binonly").join("root/upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("newfile")).unwrap(),
        "new\n"
    );
    // Another container of the same dir sees none of it.
    agent.launch(json!({
        "id": "second",
        "command": ["/bin/sh", "-c", "ls /newfile /bin/newtool 2>/dev/null || echo gone"],
        "rootfs": rootfs,
    }));
    agent.wait("second");
    assert!(
        agent.stdout("second").contains("gone"),
        "{}",
        agent.stdout("second")
    );
    // rm takes the writes with it.
    remove(agent, "binonly");
    remove(agent, "second");
    assert!(!agent.container_dir("binonly").exists());
    assert_eq!(snapshot(&rootfs), before, "the --rootfs dir changed");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn read_only_refuses_writes_to_the_root_but_not_to_tmp_or_the_sandbox() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    agent.launch(json!({
        "id": "ro",
        "command": ["/bin/sh", "-c",
            "touch /x 2>/dev/null || echo root=ro; touch /bin/y 2>/dev/null || echo bin=ro; \
             touch /tmp/t && echo tmp=rw; touch /sandbox/s && echo sandbox=rw"],
        "rootfs": rootfs,
        "read_only": true,
    }));
    agent.wait("ro");
    assert_eq!(agent.stdout("ro"), "root=ro\nbin=ro\ntmp=rw\nsandbox=rw\n");
    let inspect = agent.api("GET", "/v1/containers/ro", None);
    assert_eq!(inspect.body["read_only"], true);
}

#[test]
fn the_cli_runs_a_rootfs_command_without_dashes() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    let out = agent.berth(&[
        "run",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sh",
        "-c",
        "echo hi > /f && cat /f",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn overlay_containers_survive_an_agent_kill_and_rm_cleans_their_dirs() {
    require_root!();
    let mut agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    let script = json!(["/bin/sh", "-c", "echo data > /kept; exec sleep 1000"]);
    agent.launch(json!({"id": "kept", "command": script, "rootfs": rootfs}));
    let mut ids = vec!["kept"];
    if common::registry::missing_tool().is_none() {
        let busybox = busybox_bytes();
        let image = TestImage::new(agent.dir.path(), "kept");
        image.add_layer(&with_busybox(&busybox, vec![]));
        image.load(&agent.work_dir);
        agent.launch(json!({"id": "kept-image", "image": "kept", "pull": "never",
                            "command": script}));
        ids.push("kept-image");
    } else {
        common::skip(
            "image_rootfs: image part of the recovery test",
            "umoci is missing",
        );
    }
    for id in &ids {
        let upper = agent.container_dir(id).join("root/upper");
        eventually(Duration::from_secs(10), "the write", || {
            upper.join("kept").exists().then_some(())
        });
    }
    agent.kill_agent();
    agent.start_again();
    for id in &ids {
        let inspect = agent.api("GET", &format!("/v1/containers/{id}"), None);
        assert_eq!(inspect.body["state"], "running", "{:?}", inspect.body);
        // Nothing of the container is mounted on the host.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(agent.container_dir(id).to_str().unwrap()),
            "{mounts}"
        );
        let stop = agent.api(
            "POST",
            &format!("/v1/containers/{id}/stop"),
            Some(json!({"timeout": 1})),
        );
        assert!(stop.status < 300, "{:?}", stop.body);
        agent.wait(id);
        remove(&agent, id);
        assert!(!agent.container_dir(id).exists());
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

/// One entry of a hand-made layer tar.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    /// `.wh.NAME` beside NAME.
    Whiteout(&'a str),
    /// `DIR/.wh..wh..opq`.
    Opaque(&'a str),
}

/// An image built offline in an OCI layout with umoci, each layer a tar
/// written here and added with `umoci raw add-layer`.
struct TestImage {
    layout: PathBuf,
    tag: String,
    dir: PathBuf,
}

fn umoci(args: &[&str]) {
    let out = std::process::Command::new("umoci")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestImage {
    fn new(dir: &Path, tag: &str) -> Self {
        let layout = dir.join(format!("layout-{tag}"));
        umoci(&["init", "--layout", layout.to_str().unwrap()]);
        let image = TestImage {
            layout,
            tag: tag.to_string(),
            dir: dir.to_path_buf(),
        };
        umoci(&["new", "--image", &image.image()]);
        image
    }

    fn image(&self) -> String {
        format!("{}:{}", self.layout.display(), self.tag)
    }

    fn add_layer(&self, entries: &[Entry]) {
        let mut tar = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_700_000_000);
            let (path, data): (String, &[u8]) = match entry {
                Entry::Dir(p) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    (format!("{p}/"), &[])
                }
                Entry::File(p, data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o755);
                    (p.to_string(), data)
                }
                Entry::Symlink(p, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_link_name(target).unwrap();
                    (p.to_string(), &[])
                }
                Entry::Whiteout(p) => {
                    let p = Path::new(p);
                    let name = format!(".wh.{}", p.file_name().unwrap().to_str().unwrap());
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    (
                        p.parent().unwrap().join(name).to_str().unwrap().to_string(),
                        &[],
                    )
                }
                Entry::Opaque(d) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    (format!("{d}/.wh..wh..opq"), &[])
                }
            };
            header.set_size(data.len() as u64);
            header.set_path(&path).unwrap();
            header.set_cksum();
            tar.append(&header, data).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let file = self.dir.join(format!("layer-{}.tar", self.tag));
        std::fs::write(&file, bytes).unwrap();
        umoci(&[
            "raw",
            "add-layer",
            "--no-history",
            "--image",
            &self.image(),
            file.to_str().unwrap(),
        ]);
    }

    fn config(&self, args: &[&str]) {
        let mut all = vec!["config", "--no-history", "--image"];
        let image = self.image();
        all.push(&image);
        all.extend_from_slice(args);
        umoci(&all);
    }

    /// Loads the layout into the store under `work_dir` (the agent's).
    fn load(&self, work_dir: &Path) {
        let store = berth::images::ImageStore::open(work_dir).unwrap();
        berth::images::load::load_oci_layout(&store, &self.layout, None).unwrap();
    }
}

fn busybox_bytes() -> Vec<u8> {
    std::fs::read(
        ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed"),
    )
    .unwrap()
}

/// The busybox layer's entries (`bin/` and applets).
fn with_busybox<'a>(busybox: &'a [u8], mut rest: Vec<Entry<'a>>) -> Vec<Entry<'a>> {
    let mut entries = vec![Entry::Dir("bin"), Entry::File("bin/busybox", busybox)];
    for applet in [
        "bin/sh",
        "bin/echo",
        "bin/cat",
        "bin/ls",
        "bin/id",
        "bin/pwd",
        "bin/touch",
        "bin/sleep",
        "bin/env",
    ] {
        entries.push(Entry::Symlink(applet, "busybox"));
    }
    entries.append(&mut rest);
    entries
}

fn require_umoci(test: &str) -> bool {
    if let Some(tool) = common::registry::missing_tool() {
        common::skip(test, &format!("{tool} is not installed"));
        return false;
    }
    true
}

fn run_out(agent: &Agent, id: &str, request: serde_json::Value) -> (serde_json::Value, String) {
    let mut request = request;
    request["id"] = id.into();
    agent.launch(request);
    let done = agent.wait(id);
    (done, agent.stdout(id))
}

#[test]
fn the_image_config_applies_with_dockers_semantics() {
    require_root!();
    if !require_umoci("image_rootfs::the_image_config_applies_with_dockers_semantics") {
        return;
    }
    let agent = Agent::start();
    let busybox = busybox_bytes();
    let image = TestImage::new(agent.dir.path(), "cfg");
    image.add_layer(&with_busybox(
        &busybox,
        vec![
            Entry::Dir("etc"),
            Entry::File(
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n",
            ),
            Entry::File("etc/group", b"root:x:0:\napp:x:2345:\nstaff:x:50:\n"),
            Entry::Dir("srv"),
        ],
    ));
    image.config(&[
        "--config.entrypoint",
        "/bin/sh",
        "--config.entrypoint",
        "-c",
        "--config.cmd",
        "echo default $IMG $(pwd) $(id -u):$(id -g)",
        "--config.env",
        "IMG=img",
        "--config.env",
        "PATH=/bin",
        "--config.workingdir",
        "/srv",
        "--config.user",
        "app",
        "--config.exposedports",
        "8080/tcp",
        "--config.label",
        "k=v",
    ]);
    image.load(&agent.work_dir);

    let base = json!({"image": "cfg", "pull": "never"});
    let (done, out) = run_out(&agent, "plain", base.clone());
    assert_eq!(out, "default img /srv 1234:2345\n", "{done}");

    // Arguments replace Cmd; the request's env wins over the image's.
    let mut r = base.clone();
    r["command"] = json!(["echo args $IMG $OVER"]);
    r["env"] = json!({"IMG": "request", "OVER": "req"});
    assert_eq!(run_out(&agent, "args", r).1, "args request req\n");

    // --entrypoint replaces Entrypoint and clears Cmd.
    let mut r = base.clone();
    r["entrypoint"] = json!(["/bin/echo"]);
    assert_eq!(run_out(&agent, "ep", r).1, "\n");
    let mut r = base.clone();
    r["entrypoint"] = json!(["/bin/echo"]);
    r["command"] = json!(["hi"]);
    assert_eq!(run_out(&agent, "ep-args", r).1, "hi\n");

    // -u NAME:GROUP and -w win over the image's.
    let mut r = base.clone();
    r["command"] = json!(["echo $(pwd) $(id -u):$(id -g)"]);
    r["user_name"] = "app:staff".into();
    r["workdir"] = "/".into();
    assert_eq!(run_out(&agent, "user", r).1, "/ 1234:50\n");

    // A working dir the image lacks is made, in the container's own layer.
    let mut r = base.clone();
    r["command"] = json!(["pwd"]);
    r["workdir"] = "/made/here".into();
    assert_eq!(run_out(&agent, "mkwd", r).1, "/made/here\n");

    let inspect = agent.api("GET", "/v1/containers/plain", None).body;
    assert_eq!(inspect["image"], "docker.io/library/cfg:latest");
    assert!(inspect["image_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(inspect["exposed_ports"], json!(["8080/tcp"]));
    assert_eq!(inspect["image_labels"], json!({"k": "v"}));
    assert_eq!(inspect["user"], json!({"uid": 1234, "gid": 2345}));

    // The CLI: IMAGE ARGS.
    let out = agent.berth(&[
        "run",
        "--pull",
        "never",
        "-u",
        "root",
        "cfg",
        "echo cli $(id -u)",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cli 0\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An unknown image or user: 400 naming the field, nothing made.
    for id in ["plain", "args", "ep", "ep-args", "user", "mkwd"] {
        remove(&agent, id);
    }
    for (request, field) in [
        (
            json!({"id": "bad", "image": "nothere", "pull": "never"}),
            "image",
        ),
        (
            json!({"id": "bad", "image": "cfg", "pull": "never", "user_name": "ghost"}),
            "user_name",
        ),
        (
            json!({"id": "bad", "image": "Bad Name!", "pull": "never"}),
            "image",
        ),
    ] {
        let answer = agent.api("POST", "/v1/containers", Some(request));
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{:?}",
            answer.body
        );
        assert!(agent.api("GET", "/v1/containers/bad", None).status == 404);
        assert!(!agent.container_dir("bad").exists());
    }
}

#[test]
fn whiteouts_and_opaque_dirs_across_three_layers_behave_as_in_docker() {
    require_root!();
    if !require_umoci(
        "image_rootfs::whiteouts_and_opaque_dirs_across_three_layers_behave_as_in_docker",
    ) {
        return;
    }
    let agent = Agent::start();
    let busybox = busybox_bytes();
    let image = TestImage::new(agent.dir.path(), "wh");
    image.add_layer(&with_busybox(
        &busybox,
        vec![
            Entry::Dir("a"),
            Entry::File("a/keep", b"keep1"),
            Entry::File("a/gone", b"gone1"),
            Entry::Dir("d"),
            Entry::File("d/old1", b"o1"),
            Entry::File("d/old2", b"o2"),
            Entry::Dir("x"),
            Entry::File("x/f", b"x"),
        ],
    ));
    image.add_layer(&[
        Entry::Whiteout("a/gone"),
        Entry::Dir("d"),
        Entry::Opaque("d"),
        Entry::File("d/new", b"n2"),
        Entry::Whiteout("x"),
    ]);
    image.add_layer(&[
        Entry::Dir("a"),
        Entry::File("a/back", b"back3"),
        Entry::Dir("x"),
        Entry::File("x/again", b"x3"),
    ]);
    image.load(&agent.work_dir);
    let (done, out) = run_out(
        &agent,
        "wh",
        json!({"image": "wh", "pull": "never",
               "command": ["/bin/sh", "-c", "ls /a; echo -; ls /d; echo -; ls /x; cat /a/back /d/new"]}),
    );
    assert_eq!(out, "back\nkeep\n-\nnew\n-\nagain\nback3n2", "{done}");
}

#[test]
fn image_layers_are_shared_and_never_modified_by_containers() {
    require_root!();
    if !require_umoci("image_rootfs::image_layers_are_shared_and_never_modified_by_containers") {
        return;
    }
    let agent = Agent::start();
    let busybox = busybox_bytes();
    let image = TestImage::new(agent.dir.path(), "shared");
    image.add_layer(&with_busybox(
        &busybox,
        vec![Entry::Dir("etc"), Entry::File("etc/conf", b"original")],
    ));
    image.load(&agent.work_dir);
    let script = "echo changed > /etc/conf; rm /bin/ls; echo new > /made; mkdir -p /var/x; \
                  cat /etc/conf; exec sleep 1000";
    for id in ["one", "two"] {
        agent.launch(json!({"id": id, "image": "shared", "pull": "never",
                            "command": ["/bin/sh", "-c", script]}));
    }
    let layers_root = agent.work_dir.join("images/layers");
    eventually(Duration::from_secs(10), "both writes", || {
        (agent.stdout("one") == "changed\n" && agent.stdout("two") == "changed\n").then_some(())
    });
    // Both overlays name the same lower dir: one copy of the layer.
    let lower = |id: &str| -> serde_json::Value {
        let bundle = agent.api("GET", &format!("/v1/containers/{id}"), None).body["bundle"]
            .as_str()
            .unwrap()
            .to_string();
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{bundle}/config.json")).unwrap())
                .unwrap();
        let overlay: serde_json::Value = serde_json::from_str(
            config["annotations"]["berth.rootfs.overlay"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        overlay["lower"].clone()
    };
    assert_eq!(lower("one"), lower("two"));
    let layer = PathBuf::from(lower("one")[0].as_str().unwrap());
    assert!(layer.starts_with(&layers_root), "{}", layer.display());
    assert_eq!(
        std::fs::read_to_string(layer.join("etc/conf")).unwrap(),
        "original"
    );
    assert!(layer.join("bin/ls").exists());
    assert!(!layer.join("made").exists() && !layer.join("var").exists());
    let before = snapshot(&layer);
    remove(&agent, "one");
    remove(&agent, "two");
    assert_eq!(snapshot(&layer), before);
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn an_image_with_120_layers_runs() {
    require_root!();
    if !require_umoci("image_rootfs::an_image_with_120_layers_runs") {
        return;
    }
    let agent = Agent::start();
    let busybox = busybox_bytes();
    let image = TestImage::new(agent.dir.path(), "many");
    image.add_layer(&with_busybox(&busybox, vec![Entry::Dir("l")]));
    let names: Vec<String> = (1..120).map(|i| format!("l/{i:03}")).collect();
    for name in &names {
        image.add_layer(&[Entry::Dir("l"), Entry::File(name, name.as_bytes())]);
    }
    image.load(&agent.work_dir);
    let (done, out) = run_out(
        &agent,
        "many",
        json!({"image": "many", "pull": "never",
               "command": ["/bin/sh", "-c", "ls /l | busybox wc -l; cat /l/001 /l/119"]}),
    );
    assert_eq!(out, "119\nl/001l/119", "{done}");
}

#[test]
fn a_symlinked_passwd_in_an_image_is_not_followed_to_the_host() {
    require_root!();
    if !require_umoci("image_rootfs::a_symlinked_passwd_in_an_image_is_not_followed_to_the_host") {
        return;
    }
    let agent = Agent::start();
    // A host file a name resolution would wrongly read.
    let host = agent.dir.path().join("host-passwd");
    std::fs::write(&host, "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
    let busybox = busybox_bytes();
    let image = TestImage::new(agent.dir.path(), "evil");
    image.add_layer(&with_busybox(
        &busybox,
        vec![
            Entry::Dir("etc"),
            Entry::Symlink("etc/passwd", host.to_str().unwrap()),
        ],
    ));
    image.config(&["--config.user", "hostonly"]);
    image.load(&agent.work_dir);
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "evil", "image": "evil", "pull": "never", "command": ["/bin/id"]})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("user_name") && message.contains("symlink"),
        "{message}"
    );
    assert!(!agent.container_dir("evil").exists());
}

#[test]
fn run_by_tag_and_by_digest_from_a_registry() {
    require_root!();
    if !require_umoci("image_rootfs::run_by_tag_and_by_digest_from_a_registry") {
        return;
    }
    let registry = common::registry::Registry::start();
    let source = registry.build_image("reg", 2);
    let digest = registry.push(&source, "team/busy:1", &[]);
    let agent = Agent::start_with_config(&format!(
        "[images]\ninsecure_registries = [\"{addr}\"]\n[images.credentials.\"{addr}\"]\nusername = \"{u}\"\npassword = \"{p}\"\n",
        addr = registry.addr,
        u = common::registry::USER,
        p = common::registry::PASSWORD,
    ));
    let by_tag = format!("{}/team/busy:1", registry.addr);
    let (done, out) = run_out(
        &agent,
        "tag",
        json!({"image": by_tag, "command": ["echo", "tag $IMG"]}),
    );
    // The image's Entrypoint is /bin/busybox: ARGS replace its Cmd.
    assert_eq!(out, "tag $IMG\n", "{done}");
    assert_eq!(done["exit_code"], 0);
    let inspect = agent.api("GET", "/v1/containers/tag", None).body;
    assert_eq!(inspect["image_digest"], digest);
    let by_digest = format!("{}/team/busy@{digest}", registry.addr);
    let (done, out) = run_out(
        &agent,
        "digest",
        json!({"image": by_digest, "pull": "missing", "command": ["sh", "-c", "echo $IMG"]}),
    );
    assert_eq!(out, "1\n", "{done}");
    // The default Cmd (`true`) runs with no arguments.
    let (done, _) = run_out(&agent, "cmd", json!({"image": by_tag, "pull": "never"}));
    assert_eq!(done["exit_code"], 0, "{done}");
}

#[test]
fn user_names_resolve_in_a_rootfs_dir_and_exec_sees_the_image_env() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    std::fs::create_dir(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/passwd"), "app:x:1234:2345::/:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "grp:x:77:\n").unwrap();
    let (done, out) = run_out(
        &agent,
        "named",
        json!({"rootfs": rootfs, "user_name": "app:grp",
               "command": ["/bin/sh", "-c", "echo $(id -u):$(id -g)"]}),
    );
    assert_eq!(out, "1234:77\n", "{done}");
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "nobody", "rootfs": rootfs, "user_name": "ghost", "command": ["true"]})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(!agent.container_dir("nobody").exists());

    if !require_umoci(
        "image_rootfs::user_names_resolve_in_a_rootfs_dir_and_exec_sees_the_image_env",
    ) {
        return;
    }
    let busybox = busybox_bytes();
    let image = TestImage::new(agent.dir.path(), "execenv");
    image.add_layer(&with_busybox(&busybox, vec![Entry::Dir("w")]));
    image.config(&[
        "--config.env",
        "FROM_IMAGE=yes",
        "--config.workingdir",
        "/w",
    ]);
    image.load(&agent.work_dir);
    agent.launch(json!({"id": "ex", "image": "execenv", "pull": "never",
                        "command": ["/bin/sleep", "1000"]}));
    let answer = agent.api(
        "POST",
        "/v1/containers/ex/exec",
        Some(json!({"command": ["/bin/sh", "-c", "echo $FROM_IMAGE $(pwd)"]})),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["stdout"], "yes /w\n", "{:?}", answer.body);
    remove(&agent, "ex");
}

#[test]
fn a_restarted_container_keeps_its_own_layer() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    // Each run appends to a file in the container's root and fails: the
    // overlay (mounted `volatile`) is mounted again for every restart,
    // over the same writable layer.
    agent.launch(json!({
        "id": "again",
        "restart": "on-failure:2",
        "command": ["/bin/sh", "-c", "echo run >> /runs; cat /runs | wc -l; exit 1"],
        "rootfs": rootfs,
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ended = loop {
        let c = agent.api("GET", "/v1/containers/again", None).body;
        if c["state"] == "exited"
            && c["restart"]["count"] == 2
            && c["restart"].get("next_attempt_at").is_none()
        {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "no two restarts: {c}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(ended["exit_code"], 1, "{ended}");
    let upper = agent.container_dir("again").join("root/upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("runs")).unwrap(),
        "run\nrun\nrun\n"
    );
    remove(&agent, "again");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn a_restart_runs_the_image_it_started_with_even_when_the_tag_moved() {
    require_root!();
    if !require_umoci(
        "image_rootfs::a_restart_runs_the_image_it_started_with_even_when_the_tag_moved",
    ) {
        return;
    }
    let agent = Agent::start();
    let busybox = busybox_bytes();
    let build = |sub: &str, version: &'static [u8]| {
        let dir = agent.dir.path().join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        let image = TestImage::new(&dir, "pin");
        image.add_layer(&with_busybox(
            &busybox,
            vec![Entry::File("version", version)],
        ));
        image
    };
    build("first", b"1\n").load(&agent.work_dir);
    agent.launch(json!({"id": "pinned", "image": "pin", "pull": "never",
        "restart": "on-failure:1",
        "command": ["/bin/sh", "-c",
            "cat /version; while [ ! -e /sandbox/go ]; do sleep 0.05; done; exit 1"]}));
    eventually(Duration::from_secs(10), "the first run", || {
        (agent.stdout("pinned") == "1\n").then_some(())
    });
    // The tag now names another image.
    build("second", b"2\n").load(&agent.work_dir);
    let (_, out) = run_out(
        &agent,
        "fresh",
        json!({"image": "pin", "pull": "never", "command": ["cat", "/version"]}),
    );
    assert_eq!(out, "2\n", "the tag did not move");
    std::fs::write(agent.sandbox("pinned").join("go"), "").unwrap();
    let ended = eventually(Duration::from_secs(30), "one restart", || {
        let c = agent.api("GET", "/v1/containers/pinned", None).body;
        (c["state"] == "exited"
            && c["restart"]["count"] == 1
            && c["restart"].get("next_attempt_at").is_none())
        .then_some(c)
    });
    assert_eq!(ended["exit_code"], 1, "{ended}");
    assert_eq!(agent.stdout("pinned"), "1\n1\n", "{ended}");
    remove(&agent, "pinned");
    remove(&agent, "fresh");
}

/// Bind mounts into an image's root (decision 0033): the target is made in
/// the container's own layer, never in an image layer; a symlink the image
/// puts at the target, pointing at the host's `/etc` or climbing out with
/// `..`, is refused rather than followed.
#[test]
fn bind_mount_targets_in_an_image_stay_in_the_containers_layer() {
    require_root!();
    if !require_umoci("image_rootfs::bind_mount_targets_in_an_image_stay_in_the_containers_layer") {
        return;
    }
    let allowed = tempfile::tempdir().unwrap();
    std::fs::write(allowed.path().join("f"), "bound\n").unwrap();
    let agent = Agent::start_with(&["--allow-host-path", allowed.path().to_str().unwrap()]);
    let busybox = busybox_bytes();
    let image = TestImage::new(agent.dir.path(), "mnt");
    image.add_layer(&with_busybox(
        &busybox,
        vec![
            Entry::Symlink("evil", "/etc"),
            Entry::Symlink("dots", "../../../../etc"),
        ],
    ));
    image.load(&agent.work_dir);
    let mount =
        |target: &str| json!([{"type": "bind", "source": allowed.path(), "target": target}]);
    let (done, out) = run_out(
        &agent,
        "good",
        json!({"image": "mnt", "pull": "never", "command": ["cat", "/made-by-mount/f"],
               "mounts": mount("/made-by-mount")}),
    );
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(out, "bound\n");
    // The mount point exists in the container's upper dir only.
    let mut found = Vec::new();
    let mut stack = vec![agent.work_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name() == "made-by-mount" {
                found.push(path.clone());
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(agent.container_dir("good")),
        "{found:?}"
    );

    for target in ["/evil", "/dots", "/evil/sub"] {
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"image": "mnt", "pull": "never", "command": ["true"],
                        "mounts": mount(target)})),
        );
        assert_eq!(answer.status, 400, "{target}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("leads out of the container root"),
            "{target}: {message}"
        );
    }
    assert!(!Path::new("/etc/f").exists());
    assert!(!Path::new("/etc/sub").exists());
}
