//! Writes a container's OCI bundle: a runtime-spec `config.json` that any
//! OCI runtime (runc, crun, youki) accepts unchanged, and that berth-shim runs.

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
}

/// What a root process in a container keeps: Docker's default set less
/// `CAP_MKNOD`.
///
/// Docker can grant `CAP_MKNOD` because its devices cgroup refuses access
/// to any device node not on an allow list. berth has no devices isolator
/// yet, and the container's `/dev` is a tmpfs: with `CAP_MKNOD` a root
/// process could create a node for the host's disk there and write to it.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

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

    let caps: std::collections::HashSet<Capability> =
        DEFAULT_CAPABILITIES.iter().copied().collect();
    // A non-root user gets no capabilities in its effective and permitted
    // sets (as with Docker); the bounding set still caps what setuid
    // binaries could regain.
    let granted = if user.uid == 0 {
        caps.clone()
    } else {
        Default::default()
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps)
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
        .readonly(true)
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

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .devices(devices)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .hostname(input.id.to_string())
        .root(root)
        .mounts(mounts(input, &sandbox_inside)?)
        .process(process)
        .linux(linux)
        .build()?)
}

fn mounts(input: &BundleInput<'_>, sandbox_inside: &Path) -> Result<Vec<Mount>, BundleError> {
    // The cgroup filesystem is left out: berth's isolators manage cgroups
    // from the outside, and a container has no business seeing the host's
    // cgroup tree.
    let mut mounts: Vec<Mount> = get_default_mounts()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec!["nosuid".into(), "nodev".into(), "mode=1777".into()])
            .build()?,
    );
    if input.rootfs.is_none() {
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
            .options(vec!["rbind".into(), "rw".into(), "rprivate".into()])
            .build()?,
    );
    for extra in &input.contribution.mounts {
        mounts.push(
            MountBuilder::default()
                .destination(&extra.destination)
                .typ(extra.kind.clone())
                .source(&extra.source)
                .options(extra.options.clone())
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
        }
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
}
