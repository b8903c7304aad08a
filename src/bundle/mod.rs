//! Writes a container's OCI bundle: a runtime-spec `config.json` that any
//! OCI runtime (runc, crun, youki) accepts unchanged, and that berth-shim runs.

pub mod capabilities;
pub mod hidden;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_isolator::Contribution;
use oci_spec::runtime::{
    get_default_maskedpaths, get_default_mounts, get_default_readonly_paths, Capability,
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResources, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::container::User;
use crate::userns::UsernsMapping;
use capabilities::CapabilityChanges;
use hidden::HiddenPath;

mod userns;

/// Where the sandbox appears inside a container that has its own rootfs.
pub const SANDBOX_IN_ROOTFS: &str = "/sandbox";

/// The PATH a container starts with unless the request sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors building or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("build oci spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("invalid linux.resources from the isolators: {0}")]
    Resources(#[source] serde_json::Error),
    #[error("create bundle dir {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("create {}: {source}", path.display())]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a root process in a container keeps: Docker's default set less
/// `CAP_MKNOD` and `CAP_NET_RAW` (`--cap-add` gives either back).
///
/// Docker can grant `CAP_MKNOD` because its devices cgroup refuses access
/// to any device node not on an allow list. berth's devices isolator does
/// the same, but a request may leave it out of its `isolation` list, and the
/// container's `/dev` is a tmpfs without `nodev`: with `CAP_MKNOD` a root
/// process there could create a node for the host's disk and write to it.
///
/// Docker keeps `CAP_NET_RAW` because its default network is a private
/// bridge; berth's default is the host's network, where an `AF_PACKET`
/// socket sniffs and forges the host's traffic.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths masked in every container: the runtime-spec defaults plus what
/// Docker masks beyond them (`/proc/interrupts`, and the powercap energy
/// counters behind the PLATYPUS side channel, CVE-2020-8694). The shim skips
/// a path this kernel does not have.
fn masked_paths() -> Vec<String> {
    let mut paths = get_default_maskedpaths();
    for extra in ["/proc/interrupts", "/sys/devices/virtual/powercap"] {
        if !paths.iter().any(|p| p == extra) {
            paths.push(extra.to_string());
        }
    }
    paths
}

/// A container's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace.
    Host,
    /// A new network namespace with only loopback, up.
    None,
    /// An existing network namespace (as CNI plugins leave them).
    Join(PathBuf),
}

impl NetworkMode {
    /// Parses `host`, `none` or `ns:PATH` (an absolute path).
    pub fn parse(value: &str) -> Result<NetworkMode, String> {
        match value {
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            other => match other.strip_prefix("ns:") {
                Some(path) if path.starts_with('/') => Ok(NetworkMode::Join(PathBuf::from(path))),
                Some(path) => Err(format!("namespace path must be absolute, got {path:?}")),
                None => Err(format!("expected host, none or ns:PATH, got {other:?}")),
            },
        }
    }
}

/// The text [`NetworkMode::parse`] reads: `host`, `none` or `ns:PATH`.
impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Join(path) => write!(f, "ns:{}", path.display()),
        }
    }
}

/// What a bundle is made from.
#[derive(Debug, Clone)]
pub struct BundleInput<'a> {
    pub id: &'a str,
    pub command: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub workdir: Option<&'a str>,
    pub user: Option<User>,
    /// The rootfs on the host, or `None` for the host's root (read-only).
    pub rootfs: Option<&'a Path>,
    /// The sandbox on the host.
    pub sandbox: &'a Path,
    /// The OCI `cgroupsPath`.
    pub cgroups_path: String,
    /// What the isolators contributed.
    pub contribution: &'a Contribution,
    /// The container's network.
    pub network: &'a NetworkMode,
    /// `RLIMIT_NOFILE` for the container (soft = hard).
    pub nofile: u64,
    /// Host directories to hide behind an empty tmpfs when the container
    /// sees the host's root: the agent's work and runtime dirs. Without
    /// this, a container could read other containers' sandboxes and, worse,
    /// connect to the agent's socket (a unix socket on a read-only mount
    /// still accepts connections) and launch what it likes.
    pub hidden: Vec<PathBuf>,
    /// Host paths to hide behind empty read-only mounts when the container
    /// sees the host's root (the agent's `[container] hidden_paths`,
    /// expanded); ignored with a rootfs.
    pub hidden_paths: Vec<HiddenPath>,
    /// Host files below `/run` bound read-only into the private `/run` in
    /// host-root mode (see [`hidden::run_files`]).
    pub run_files: Vec<PathBuf>,
    /// The bundle dir, which holds the empty file hidden files are bound
    /// from.
    pub bundle_dir: &'a Path,
    /// Capabilities added to or dropped from [`DEFAULT_CAPABILITIES`].
    pub capabilities: &'a CapabilityChanges,
    /// The size of the container's `/tmp` (and of its private `/run` in
    /// host-root mode), in bytes.
    pub tmp_size: u64,
    /// The container's id mapping when it has a user namespace.
    pub userns: Option<&'a UsernsMapping>,
    /// The seccomp filter, its profile resolved against the container's
    /// bounding set (`Manager::resolved_seccomp`); `None` runs it
    /// unconfined.
    pub seccomp: Option<&'a oci_spec::runtime::LinuxSeccomp>,
    /// Run the shim's reaper as pid 1 (`--init`), asked for by an
    /// annotation (see `shim::init`).
    pub init: bool,
    /// The root is this overlay, mounted by the shim on `rootfs` (then the
    /// empty mount point); an annotation carries it (see `shim::overlay`).
    pub overlay: Option<&'a berth_protocol::bundle::RootOverlay>,
    /// With an overlay root: make it read-only (`--read-only`). A root
    /// without its own writable layer is read-only anyway.
    pub read_only: bool,
    /// `-i`: the first process's stdin is the shim's pipe (see
    /// `shim::attach_stdin`), asked for by an annotation.
    pub stdin: bool,
    /// `-t`: the first process runs on a pty (see `shim::container`).
    pub tty: bool,
}

/// The open-files limit a container gets: the agent's own hard limit, as
/// Docker containers inherit the daemon's. Raising it above that needs
/// `CAP_SYS_RESOURCE`, which the agent may not have.
pub fn inherited_nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024)
}

impl BundleInput<'_> {
    /// Where the sandbox is seen inside the container.
    pub fn sandbox_inside(&self) -> PathBuf {
        match self.rootfs {
            Some(_) => PathBuf::from(SANDBOX_IN_ROOTFS),
            None => self.sandbox.to_path_buf(),
        }
    }
}

/// berth's annotations for berth-shim (berth-protocol's).
pub use berth_protocol::bundle::{
    INIT_ANNOTATION, OVERLAY_ANNOTATION, STDIN_ANNOTATION, TTY_ANNOTATION,
};

/// Builds the runtime spec for a container.
pub fn build_spec(input: &BundleInput<'_>) -> Result<Spec, BundleError> {
    let sandbox_inside = input.sandbox_inside();
    let user = input.user.unwrap_or(User {
        uid: 0,
        gid: Some(0),
    });

    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
    env.insert(
        "HOME".to_string(),
        if user.uid == 0 {
            "/root".into()
        } else {
            "/".into()
        },
    );
    env.insert("HOSTNAME".to_string(), input.id.to_string());
    env.insert("BERTH_CONTAINER_ID".to_string(), input.id.to_string());
    env.insert(
        "BERTH_SANDBOX".to_string(),
        sandbox_inside.display().to_string(),
    );
    env.extend(input.contribution.env.clone());
    env.extend(input.env.clone());

    let caps = input.capabilities.apply(DEFAULT_CAPABILITIES);
    // A non-root user gets no capabilities in its effective and permitted
    // sets (as with Docker); the bounding set still caps what setuid
    // binaries could regain.
    let granted = if user.uid == 0 {
        caps.clone()
    } else {
        Default::default()
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(granted.clone())
        .permitted(granted)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()?;

    let process = ProcessBuilder::default()
        .terminal(false)
        .args(input.command.to_vec())
        .env(
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .cwd(
            input
                .workdir
                .map(PathBuf::from)
                .unwrap_or_else(|| sandbox_inside.clone()),
        )
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid())
                .build()?,
        )
        .capabilities(capabilities)
        .no_new_privileges(true)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(input.nofile)
            .soft(input.nofile)
            .build()?])
        .build()?;

    let root = RootBuilder::default()
        .path(
            input
                .rootfs
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        )
        .readonly(input.overlay.is_none() || input.read_only)
        .build()?;

    let namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
    ];
    let mut namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;
    match input.network {
        NetworkMode::Host => {}
        NetworkMode::None => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()?,
        ),
        NetworkMode::Join(path) => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.clone())
                .build()?,
        ),
    }

    let mut resources = input.contribution.linux_resources.clone();
    // Deny all devices unless allowed: runc then adds its standard allow
    // list (null, zero, tty, ...), as Docker's specs do.
    resources
        .entry("devices")
        .or_insert_with(|| serde_json::json!([{"allow": false, "access": "rwm"}]));
    let resources: LinuxResources = serde_json::from_value(serde_json::Value::Object(resources))
        .map_err(BundleError::Resources)?;
    // Device nodes passed through (the devices isolator's `--device`).
    let devices: Vec<LinuxDevice> = serde_json::to_value(&input.contribution.devices)
        .and_then(serde_json::from_value)
        .map_err(BundleError::Resources)?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .devices(devices)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .masked_paths(masked_paths())
        .readonly_paths(get_default_readonly_paths())
        .build()?;
    linux.set_seccomp(input.seccomp.cloned());

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .hostname(input.id.to_string())
        .root(root)
        .mounts(mounts(input, &sandbox_inside)?)
        .process(process)
        .linux(linux)
        .build()?;
    if let Some(mapping) = input.userns {
        userns::apply(&mut spec, mapping, input.network)?;
    }
    if input.init {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(INIT_ANNOTATION.to_string(), "true".to_string());
        spec.set_annotations(Some(annotations));
    }
    if let Some(overlay) = input.overlay {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(OVERLAY_ANNOTATION.to_string(), overlay.to_annotation());
        spec.set_annotations(Some(annotations));
    }
    if input.stdin {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(STDIN_ANNOTATION.to_string(), "true".to_string());
        spec.set_annotations(Some(annotations));
    }
    if input.tty {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(TTY_ANNOTATION.to_string(), "true".to_string());
        spec.set_annotations(Some(annotations));
    }
    Ok(spec)
}

fn mounts(input: &BundleInput<'_>, sandbox_inside: &Path) -> Result<Vec<Mount>, BundleError> {
    // The cgroup filesystem is left out: berth's isolators manage cgroups
    // from the outside, and a container has no business seeing the host's
    // cgroup tree.
    let mut mounts: Vec<Mount> = get_default_mounts()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    // oci-spec's /proc has no options; runc's and Docker's specs say these.
    for m in mounts.iter_mut() {
        if m.destination() == Path::new("/proc") && m.options().is_none() {
            m.set_options(Some(vec!["nosuid".into(), "noexec".into(), "nodev".into()]));
        }
    }
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".into(),
                "nodev".into(),
                "mode=1777".into(),
                format!("size={}", input.tmp_size),
            ])
            .build()?,
    );
    if input.rootfs.is_none() {
        mounts.push(hidden::run_mount(input.tmp_size)?);
        mounts.extend(hidden::run_file_mounts(&input.run_files)?);
        // What berth mounts below a hidden path must find it writable.
        let mut later: Vec<&Path> = input.hidden.iter().map(PathBuf::as_path).collect();
        later.push(sandbox_inside);
        later.extend(
            input
                .contribution
                .mounts
                .iter()
                .map(|m| Path::new(&m.destination)),
        );
        mounts.extend(hidden::hiding_mounts(
            &input.hidden_paths,
            input.bundle_dir,
            &later,
        )?);
        for dir in &input.hidden {
            mounts.push(
                MountBuilder::default()
                    .destination(dir)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(vec![
                        "nosuid".into(),
                        "nodev".into(),
                        "noexec".into(),
                        "mode=755".into(),
                        "size=64k".into(),
                    ])
                    .build()?,
            );
        }
    }
    mounts.push(
        MountBuilder::default()
            .destination(sandbox_inside)
            .typ("bind")
            .source(input.sandbox)
            .options(vec![
                "rbind".into(),
                "rw".into(),
                "nosuid".into(),
                "nodev".into(),
                "rprivate".into(),
            ])
            .build()?,
    );
    for extra in &input.contribution.mounts {
        let mut options = extra.options.clone();
        // No setuid file or device node enters through a bind mount either;
        // a bind into /dev may be a device passed through on purpose.
        let bind = extra.kind == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        let into_dev = Path::new(&extra.destination).starts_with("/dev");
        if bind {
            for (flag, opposite) in [("nosuid", "suid"), ("nodev", "dev")] {
                if flag == "nodev" && into_dev {
                    continue;
                }
                options.retain(|o| o != opposite);
                if !options.iter().any(|o| o == flag) {
                    options.push(flag.to_string());
                }
            }
        }
        mounts.push(
            MountBuilder::default()
                .destination(&extra.destination)
                .typ(extra.kind.clone())
                .source(&extra.source)
                .options(options)
                .build()?,
        );
    }
    Ok(mounts)
}

/// Writes `config.json` into `dir` (created if missing) and returns its path.
pub fn write_bundle(dir: &Path, spec: &Spec) -> Result<PathBuf, BundleError> {
    std::fs::create_dir_all(dir).map_err(|source| BundleError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    hidden::write_empty_file(dir)?;
    let path = dir.join("config.json");
    spec.save(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spec_json(input: &BundleInput<'_>) -> Value {
        serde_json::to_value(build_spec(input).unwrap()).unwrap()
    }

    fn input<'a>(
        command: &'a [String],
        env: &'a BTreeMap<String, String>,
        contribution: &'a Contribution,
    ) -> BundleInput<'a> {
        BundleInput {
            id: "web-1",
            command,
            env,
            workdir: None,
            user: None,
            rootfs: None,
            sandbox: Path::new("/var/lib/berth/containers/web-1"),
            cgroups_path: "/berth/web-1".into(),
            contribution,
            network: &NetworkMode::Host,
            nofile: 4096,
            hidden: vec![PathBuf::from("/var/lib/berth"), PathBuf::from("/run/berth")],
            hidden_paths: vec![
                HiddenPath {
                    path: "/etc/shadow".into(),
                    kind: hidden::HiddenKind::File,
                },
                HiddenPath {
                    path: "/root".into(),
                    kind: hidden::HiddenKind::Directory,
                },
            ],
            run_files: vec![PathBuf::from("/run/systemd/resolve/stub-resolv.conf")],
            bundle_dir: Path::new("/run/berth/containers/web-1/bundle"),
            capabilities: &NO_CHANGES,
            tmp_size: 64 << 20,
            userns: None,
            seccomp: None,
            init: false,
            overlay: None,
            read_only: false,
            stdin: false,
            tty: false,
        }
    }

    static NO_CHANGES: CapabilityChanges = CapabilityChanges {
        add: Vec::new(),
        drop: Vec::new(),
    };

    fn mount<'a>(spec: &'a Value, destination: &str) -> &'a Value {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == destination)
            .unwrap_or_else(|| panic!("no mount on {destination}"))
    }

    fn options(mount: &Value) -> Vec<&str> {
        mount["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect()
    }

    fn bounding(spec: &Value) -> Vec<&str> {
        spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect()
    }

    #[test]
    fn sandbox_and_tmp_are_nosuid_nodev_and_tmp_has_a_size() {
        let command = vec!["true".to_string()];
        let env = BTreeMap::new();
        let mut contribution = Contribution::default();
        contribution.mounts.push(berth_isolator::Mount {
            destination: "/data".into(),
            source: "/srv/data".into(),
            kind: "bind".into(),
            options: vec!["rbind".into(), "suid".into()],
        });
        contribution.mounts.push(berth_isolator::Mount {
            destination: "/dev/kvm".into(),
            source: "/dev/kvm".into(),
            kind: "bind".into(),
            options: vec!["bind".into()],
        });
        for rootfs in [None, Some(Path::new("/srv/rootfs"))] {
            let mut input = input(&command, &env, &contribution);
            input.rootfs = rootfs;
            input.tmp_size = 1 << 20;
            let spec = spec_json(&input);
            let sandbox = input.sandbox_inside();
            let sandbox = options(mount(&spec, sandbox.to_str().unwrap()));
            assert!(sandbox.contains(&"nosuid") && sandbox.contains(&"nodev"));
            let tmp = options(mount(&spec, "/tmp"));
            assert!(tmp.contains(&"nosuid") && tmp.contains(&"nodev"));
            assert!(tmp.contains(&"size=1048576"), "{tmp:?}");
            assert_eq!(options(mount(&spec, "/data")), ["rbind", "nosuid", "nodev"]);
            assert_eq!(options(mount(&spec, "/dev/kvm")), ["bind", "nosuid"]);
            assert_eq!(spec["root"]["readonly"], true);
        }
    }

    #[test]
    fn host_root_mode_hides_paths_and_gets_a_private_run() {
        let command = vec!["true".to_string()];
        let env = BTreeMap::new();
        let contribution = Contribution::default();
        let spec = spec_json(&input(&command, &env, &contribution));
        let run = mount(&spec, "/run");
        assert_eq!(run["type"], "tmpfs");
        assert!(options(run).contains(&"size=67108864"));
        let shadow = mount(&spec, "/etc/shadow");
        assert_eq!(shadow["source"], "/run/berth/containers/web-1/bundle/empty");
        assert!(options(shadow).contains(&"ro"));
        let resolv = mount(&spec, "/run/systemd/resolve/stub-resolv.conf");
        assert_eq!(resolv["source"], "/run/systemd/resolve/stub-resolv.conf");
        assert!(options(resolv).contains(&"ro"));
        let root = mount(&spec, "/root");
        assert_eq!(root["type"], "tmpfs");
        assert!(options(root).contains(&"ro"));
        // /run comes first: the agent's runtime dir below it is hidden in
        // the fresh tmpfs, not in the host's /run.
        let destinations: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        let position = |d: &str| destinations.iter().position(|x| *x == d).unwrap();
        assert!(position("/run") < position("/run/berth"));

        // With a rootfs, nothing of that: the host's paths are not there.
        let mut input = input(&command, &env, &contribution);
        input.rootfs = Some(Path::new("/srv/rootfs"));
        let spec = spec_json(&input);
        for absent in ["/run", "/etc/shadow", "/root", "/var/lib/berth"] {
            assert!(
                !spec["mounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["destination"] == absent),
                "{absent}"
            );
        }
    }

    #[test]
    fn net_raw_and_mknod_are_out_by_default_and_cap_add_drop_change_the_set() {
        let command = vec!["true".to_string()];
        let env = BTreeMap::new();
        let contribution = Contribution::default();
        let spec = spec_json(&input(&command, &env, &contribution));
        let caps = bounding(&spec);
        assert!(!caps.contains(&"CAP_NET_RAW"), "{caps:?}");
        assert!(!caps.contains(&"CAP_MKNOD"), "{caps:?}");
        assert!(caps.contains(&"CAP_CHOWN"), "{caps:?}");

        let changes = CapabilityChanges {
            add: vec!["CAP_NET_RAW".into()],
            drop: vec!["CAP_CHOWN".into()],
        };
        let mut with_changes = input(&command, &env, &contribution);
        with_changes.capabilities = &changes;
        let spec = spec_json(&with_changes);
        let caps = bounding(&spec);
        assert!(caps.contains(&"CAP_NET_RAW"), "{caps:?}");
        assert!(!caps.contains(&"CAP_CHOWN"), "{caps:?}");
        let effective: Vec<&str> = spec["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(effective.contains(&"CAP_NET_RAW"));

        let none = CapabilityChanges {
            add: vec![],
            drop: vec!["ALL".into()],
        };
        with_changes.capabilities = &none;
        let spec = spec_json(&with_changes);
        assert!(spec["process"]["capabilities"]["bounding"]
            .as_array()
            .is_none_or(|a| a.is_empty()));
    }

    #[test]
    fn host_root_bundle_is_read_only_with_sandbox_as_cwd() {
        let command = vec!["sh".to_string(), "-c".to_string(), "echo hi".to_string()];
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let contribution = Contribution::default();
        let spec = spec_json(&input(&command, &env, &contribution));
        assert_eq!(spec["root"], json!({"path": "/", "readonly": true}));
        assert_eq!(spec["process"]["cwd"], "/var/lib/berth/containers/web-1");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["hostname"], "web-1");
        let env: Vec<&str> = spec["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"A=1"));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        let namespaces: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["pid", "mount", "ipc", "uts"]);
        let destinations: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for wanted in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/tmp",
            "/var/lib/berth/containers/web-1",
        ] {
            assert!(
                destinations.contains(&wanted),
                "{wanted} missing from {destinations:?}"
            );
        }
        assert!(!destinations.contains(&"/sys/fs/cgroup"));
        // The agent's dirs are hidden, and the sandbox comes back on top.
        let position = |d: &str| destinations.iter().position(|x| *x == d).unwrap();
        assert!(position("/var/lib/berth") < position("/var/lib/berth/containers/web-1"));
        assert!(position("/run/berth") < position("/var/lib/berth/containers/web-1"));
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            DEFAULT_CAPABILITIES.len()
        );
        assert!(spec["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
        for docker_also_masks in ["/proc/interrupts", "/sys/devices/virtual/powercap"] {
            assert!(spec["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!(docker_also_masks)));
        }
    }

    #[test]
    fn userns_bundle_maps_ids_and_binds_sys_in_host_network() {
        let command = vec!["id".to_string()];
        let env = BTreeMap::new();
        let contribution = Contribution::default();
        let mapping = UsernsMapping {
            uid: 100_000,
            gid: 200_000,
            size: 65536,
        };
        let mut input = input(&command, &env, &contribution);
        input.userns = Some(&mapping);
        let spec = spec_json(&input);
        assert_eq!(spec["linux"]["namespaces"][0], json!({"type": "user"}));
        assert_eq!(
            spec["linux"]["uidMappings"],
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}])
        );
        assert_eq!(
            spec["linux"]["gidMappings"],
            json!([{"containerID": 0, "hostID": 200000, "size": 65536}])
        );
        let sys = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["type"], "bind");
        assert_eq!(sys["source"], "/sys");
        assert!(sys["options"].as_array().unwrap().contains(&json!("ro")));
        // Its own network namespace may mount its own sysfs.
        input.network = &NetworkMode::None;
        let spec = spec_json(&input);
        let sys = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["type"], "sysfs");
    }

    #[test]
    fn network_modes_map_to_namespaces() {
        assert_eq!(NetworkMode::parse("host"), Ok(NetworkMode::Host));
        assert_eq!(NetworkMode::parse("none"), Ok(NetworkMode::None));
        assert_eq!(
            NetworkMode::parse("ns:/run/netns/a"),
            Ok(NetworkMode::Join("/run/netns/a".into()))
        );
        assert!(NetworkMode::parse("ns:relative").is_err());
        assert!(NetworkMode::parse("bridge").is_err());
        for text in ["host", "none", "ns:/run/netns/a"] {
            assert_eq!(NetworkMode::parse(text).unwrap().to_string(), text);
        }
        let command = vec!["true".to_string()];
        let env = BTreeMap::new();
        let contribution = Contribution::default();
        let join = NetworkMode::Join("/run/netns/a".into());
        let mut input = input(&command, &env, &contribution);
        input.network = &join;
        let spec = spec_json(&input);
        let network = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .unwrap();
        assert_eq!(network["path"], "/run/netns/a");
    }

    #[test]
    fn isolator_contribution_lands_in_linux_resources() {
        let command = vec!["true".to_string()];
        let env = BTreeMap::new();
        let mut contribution = Contribution::default();
        contribution.linux_resources.insert(
            "cpu".into(),
            json!({"shares": 512, "quota": 50000, "period": 100000}),
        );
        contribution
            .linux_resources
            .insert("memory".into(), json!({"limit": 67108864}));
        contribution
            .env
            .insert("FROM_ISOLATOR".into(), "yes".into());
        let spec = spec_json(&input(&command, &env, &contribution));
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50000);
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 67108864);
        assert_eq!(spec["linux"]["cgroupsPath"], "/berth/web-1");
        assert!(spec["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("FROM_ISOLATOR=yes")));
    }

    #[test]
    fn passed_devices_land_in_linux_devices_and_deny_all_stays_the_fallback() {
        let command = vec!["true".to_string()];
        let env = BTreeMap::new();
        let none = Contribution::default();
        let spec = spec_json(&input(&command, &env, &none));
        assert_eq!(
            spec["linux"]["resources"]["devices"],
            json!([{"allow": false, "access": "rwm"}])
        );
        let mut contribution = Contribution::default();
        contribution.devices.push(berth_isolator::DeviceNode {
            path: "/dev/kvm".into(),
            kind: "c".into(),
            major: 10,
            minor: 232,
            file_mode: 0o660,
            uid: 0,
            gid: 36,
        });
        let spec = spec_json(&input(&command, &env, &contribution));
        assert_eq!(
            spec["linux"]["devices"],
            json!([{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232,
                    "fileMode": 0o660, "uid": 0, "gid": 36}])
        );
    }

    #[test]
    fn rootfs_bundle_puts_the_sandbox_at_a_fixed_place_and_drops_caps_for_users() {
        let command = vec!["id".to_string()];
        let env = BTreeMap::new();
        let contribution = Contribution::default();
        let mut input = input(&command, &env, &contribution);
        input.rootfs = Some(Path::new("/srv/rootfs"));
        input.user = Some(User {
            uid: 1000,
            gid: None,
        });
        input.workdir = Some("/work");
        let spec = spec_json(&input);
        assert_eq!(spec["root"]["path"], "/srv/rootfs");
        assert_eq!(spec["process"]["cwd"], "/work");
        assert_eq!(spec["process"]["user"]["uid"], 1000);
        assert_eq!(spec["process"]["user"]["gid"], 1000);
        assert!(spec["process"]["capabilities"]["effective"]
            .as_array()
            .is_none_or(|a| a.is_empty()));
        assert!(spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == SANDBOX_IN_ROOTFS));
    }

    #[test]
    fn the_seccomp_profile_is_resolved_into_linux_seccomp() {
        let command = vec!["true".to_string()];
        let env = BTreeMap::new();
        let contribution = Contribution::default();
        let mut input = input(&command, &env, &contribution);
        let spec = spec_json(&input);
        assert!(spec["linux"].get("seccomp").is_none(), "unconfined");
        let profile = crate::seccomp::default::docker_default();
        let caps = NO_CHANGES.apply(DEFAULT_CAPABILITIES);
        let resolved = profile
            .resolve(&caps, &crate::seccomp::Host::current())
            .unwrap();
        input.seccomp = Some(&resolved);
        let spec = spec_json(&input);
        let seccomp = &spec["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(seccomp["defaultErrnoRet"], 1);
        let rules = seccomp["syscalls"].as_array().unwrap();
        // The default capabilities have no CAP_SYS_ADMIN: clone only
        // without namespace flags, clone3 ENOSYS, no unshare.
        let for_name = |name: &str| -> Vec<&Value> {
            rules
                .iter()
                .filter(|r| r["names"].as_array().unwrap().contains(&json!(name)))
                .collect()
        };
        let clone = for_name("clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(for_name("clone3")[0]["errnoRet"], 38);
        assert!(for_name("unshare").is_empty());
        assert!(for_name("io_uring_setup").is_empty());
        assert!(
            !for_name("chroot").is_empty(),
            "CAP_SYS_CHROOT is a default"
        );
    }
}
