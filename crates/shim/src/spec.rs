//! Loading `config.json` and checking it against what the shim supports,
//! before anything is forked, so that a bad bundle fails with a clear message.
//!
//! `linux.resources` and `linux.cgroupsPath` are ignored on purpose: the
//! agent's isolators create the cgroups and place the container's pid in them
//! between `Ready` and `go`.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use thiserror::Error;

use super::capabilities::{CapSets, CapabilityError};
use super::device_nodes::{DeviceNodeError, DeviceNodeSpec};
use super::exec;
use super::mounts::MountSpec;
use super::namespaces::{NamespaceError, Namespaces};
use super::overlay::{OverlayError, RootOverlay};
use super::user::{Rlimit, User, UserError};
use super::userns::{IdMappings, UsernsError};
use berth_protocol::bundle::{
    INIT_ANNOTATION, OVERLAY_ANNOTATION, SECCOMP_PROGRAM_FILE as PROGRAM_FILE, STDIN_ANNOTATION,
    TTY_ANNOTATION,
};
use berth_seccomp::{SeccompError, SeccompFilter, SeccompProgram};

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("load {path}: {source}")]
    Load {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("config has no process")]
    NoProcess,
    #[error("process.args is empty")]
    NoArgs,
    #[error("process.terminal is not supported by berth-shim")]
    Terminal,
    #[error("config has no root")]
    NoRoot,
    #[error("{field} contains a nul byte: {value:?}")]
    Nul { field: &'static str, value: String },
    #[error("{field} must be an absolute path: {path}")]
    NotAbsolute { field: &'static str, path: PathBuf },
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Userns(#[from] UsernsError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("read {path}: {source}")]
    SeccompProgram { path: PathBuf, source: io::Error },
    #[error(transparent)]
    DeviceNode(#[from] DeviceNodeError),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
}

/// Everything the container child needs, validated.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub rootfs: PathBuf,
    pub rootfs_readonly: bool,
    /// The root is an overlay mounted on `rootfs` (see `shim::overlay`).
    pub overlay: Option<RootOverlay>,
    /// The socket on which the overlay the agent builds as a detached
    /// mount comes (decisions 0046, 0047), held open by the monitor: moved
    /// onto `rootfs` instead of mounting `overlay`. Set by the monitor,
    /// never read from the bundle.
    pub root_mount: Option<std::os::fd::RawFd>,
    /// The cgroups the child moves itself into once the agent's byte on
    /// `cgroups_ready` says they exist (decision 0047). Set by the
    /// monitor from its arguments, never read from the bundle.
    pub cgroups: Vec<PathBuf>,
    /// The read end of the agent's cgroups-ready pipe, held open by the
    /// monitor.
    pub cgroups_ready: Option<std::os::fd::RawFd>,
    pub hostname: Option<String>,
    pub namespaces: Namespaces,
    /// The id maps of a new user namespace.
    pub id_mappings: Option<IdMappings>,
    pub mounts: Vec<MountSpec>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    /// `linux.devices`: nodes to create in the container.
    pub devices: Vec<DeviceNodeSpec>,
    pub process: ProcessConfig,
    /// Spec fields present but not applied by the shim, for its log.
    pub ignored: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// `PATH` from `env`, for resolving `args[0]`.
    pub path_var: Option<String>,
    pub cwd: PathBuf,
    pub user: User,
    pub capabilities: Option<CapSets>,
    pub no_new_privileges: bool,
    pub rlimits: Vec<Rlimit>,
    /// `linux.seccomp`, checked; compiled by the child, installed right
    /// before exec.
    pub seccomp: Option<SeccompFilter>,
    /// `--init`: a reaper runs as pid 1 and the command as its child (see
    /// `shim::init`).
    pub init: bool,
    /// `-i`: stdin is a pipe fed through the shim's attach socket (see
    /// `shim::attach_stdin`).
    pub stdin: bool,
    /// `-t`: a pty opened inside the container after the pivot, the
    /// master passed to the shim.
    pub tty: bool,
}

impl ContainerConfig {
    pub fn load(bundle: &Path) -> Result<Self, SpecError> {
        let path = bundle.join("config.json");
        // Read whole, then parsed from the slice: `Spec::load` parses
        // through a reader, several times slower on the launch's path.
        let spec: Spec = std::fs::read(&path)
            .map_err(oci_spec::OciSpecError::Io)
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(oci_spec::OciSpecError::SerDe))
            .map_err(|source| SpecError::Load {
                path: path.clone(),
                source,
            })?;
        Self::from_spec(&spec, bundle)
    }

    pub fn from_spec(spec: &Spec, bundle: &Path) -> Result<Self, SpecError> {
        let process = spec.process().as_ref().ok_or(SpecError::NoProcess)?;
        if process.terminal().unwrap_or(false) {
            return Err(SpecError::Terminal);
        }
        let args = process.args().as_deref().unwrap_or(&[]);
        if args.is_empty() {
            return Err(SpecError::NoArgs);
        }
        let env = process.env().as_deref().unwrap_or(&[]);
        let cwd = process.cwd().clone();
        if !cwd.is_absolute() {
            return Err(SpecError::NotAbsolute {
                field: "process.cwd",
                path: cwd,
            });
        }

        let root = spec.root().as_ref().ok_or(SpecError::NoRoot)?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.join(root.path())
        };

        let linux = spec.linux().as_ref();
        let namespaces =
            Namespaces::from_spec(linux.and_then(|l| l.namespaces().as_deref()).unwrap_or(&[]))?;
        if spec.hostname().is_some() && !namespaces.new_uts() {
            return Err(NamespaceError::HostnameWithoutUts.into());
        }
        let id_mappings = if namespaces.new_user() {
            Some(IdMappings::from_spec(
                linux.and_then(|l| l.uid_mappings().as_ref()),
                linux.and_then(|l| l.gid_mappings().as_ref()),
            )?)
        } else {
            None
        };

        let mut mounts = Vec::new();
        for m in spec.mounts().as_deref().unwrap_or(&[]) {
            if !m.destination().is_absolute() {
                return Err(SpecError::NotAbsolute {
                    field: "mounts[].destination",
                    path: m.destination().clone(),
                });
            }
            mounts.push(MountSpec::from_oci(m));
        }

        let paths = |list: Option<&Vec<String>>, field: &'static str| {
            list.into_iter()
                .flatten()
                .map(|p| {
                    let p = PathBuf::from(p);
                    if p.is_absolute() {
                        Ok(p)
                    } else {
                        Err(SpecError::NotAbsolute { field, path: p })
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let masked_paths = paths(
            linux.and_then(|l| l.masked_paths().as_ref()),
            "linux.maskedPaths",
        )?;
        let readonly_paths = paths(
            linux.and_then(|l| l.readonly_paths().as_ref()),
            "linux.readonlyPaths",
        )?;

        let devices = linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or(&[])
            .iter()
            .map(DeviceNodeSpec::from_oci)
            .collect::<Result<Vec<_>, _>>()?;

        let user = process.user();
        let capabilities = process
            .capabilities()
            .as_ref()
            .map(CapSets::from_spec)
            .transpose()?;
        let rlimits = process
            .rlimits()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(Rlimit::from_spec)
            .collect::<Result<Vec<_>, _>>()?;

        let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
            Some(spec) => Some(SeccompFilter::check_with(spec, precompiled(bundle)?)?),
            None => None,
        };

        let mut ignored = Vec::new();
        if let Some(l) = linux {
            for (present, name) in [
                (l.sysctl().is_some(), "linux.sysctl"),
                (
                    l.uid_mappings().is_some() && id_mappings.is_none(),
                    "linux.uidMappings",
                ),
                (l.rootfs_propagation().is_some(), "linux.rootfsPropagation"),
            ] {
                if present {
                    ignored.push(name);
                }
            }
        }
        if process.oom_score_adj().is_some() {
            ignored.push("process.oomScoreAdj");
        }
        if process.apparmor_profile().is_some() || process.selinux_label().is_some() {
            ignored.push("process.apparmorProfile/selinuxLabel");
        }
        if spec.hooks().is_some() {
            ignored.push("hooks");
        }

        let overlay = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(OVERLAY_ANNOTATION))
            .map(|v| RootOverlay::from_annotation(v).map_err(OverlayError::from))
            .transpose()?;

        Ok(ContainerConfig {
            ignored,
            rootfs,
            rootfs_readonly: root.readonly().unwrap_or(false),
            overlay,
            root_mount: None,
            cgroups: Vec::new(),
            cgroups_ready: None,
            hostname: spec.hostname().clone(),
            namespaces,
            id_mappings,
            mounts,
            masked_paths,
            readonly_paths,
            devices,
            process: ProcessConfig {
                args: cstrings(args, "process.args")?,
                env: cstrings(env, "process.env")?,
                path_var: exec::path_from_env(env).map(str::to_string),
                cwd,
                user: User {
                    uid: user.uid(),
                    gid: user.gid(),
                    additional_gids: user.additional_gids().clone().unwrap_or_default(),
                    umask: user.umask(),
                },
                capabilities,
                no_new_privileges: process.no_new_privileges().unwrap_or(false),
                rlimits,
                seccomp,
                init: spec
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(INIT_ANNOTATION))
                    .is_some_and(|v| v == "true"),
                stdin: spec
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(STDIN_ANNOTATION))
                    .is_some_and(|v| v == "true"),
                tty: spec
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(TTY_ANNOTATION))
                    .is_some_and(|v| v == "true"),
            },
        })
    }
}

fn cstrings(list: &[String], field: &'static str) -> Result<Vec<CString>, SpecError> {
    list.iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| SpecError::Nul {
                field,
                value: s.clone(),
            })
        })
        .collect()
}

/// The seccomp program the agent compiled into the bundle, if it did.
fn precompiled(bundle: &Path) -> Result<Option<SeccompProgram>, SpecError> {
    let path = bundle.join(PROGRAM_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(SeccompProgram::from_bytes(&bytes)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SpecError::SeccompProgram { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                        "env": ["PATH=/bin"]},
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "box",
            "linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}]}
        })
    }

    #[test]
    fn relative_root_is_under_bundle() {
        let c = ContainerConfig::from_spec(&spec(base()), Path::new("/b")).unwrap();
        assert_eq!(c.rootfs, PathBuf::from("/b/rootfs"));
        assert!(c.rootfs_readonly);
        assert_eq!(c.process.path_var.as_deref(), Some("/bin"));
    }

    #[test]
    fn refuses_terminal() {
        let mut j = base();
        j["process"]["terminal"] = true.into();
        let err = ContainerConfig::from_spec(&spec(j), Path::new("/b")).unwrap_err();
        assert!(matches!(err, SpecError::Terminal));
    }

    #[test]
    fn hostname_needs_uts() {
        let mut j = base();
        j["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        let err = ContainerConfig::from_spec(&spec(j), Path::new("/b")).unwrap_err();
        assert_eq!(err.to_string(), "hostname needs a new uts namespace");
    }

    #[test]
    fn seccomp_is_checked_and_kept_not_ignored() {
        let mut j = base();
        j["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read", "write", "brand_new_call"], "action": "SCMP_ACT_ALLOW"}]
        });
        let c = ContainerConfig::from_spec(&spec(j.clone()), Path::new("/b")).unwrap();
        assert!(!c.ignored.contains(&"linux.seccomp"));
        let filter = c.process.seccomp.expect("kept");
        assert_eq!(filter.unknown_syscalls, ["brand_new_call"]);
        j["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_NOTIFY".into();
        let err = ContainerConfig::from_spec(&spec(j), Path::new("/b")).unwrap_err();
        assert!(err.to_string().contains("syscalls[0].action"), "{err}");
    }

    #[test]
    fn the_agents_compiled_program_is_used_instead_of_compiling() {
        let mut j = base();
        j["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]
        });
        let compiled = ContainerConfig::from_spec(&spec(j.clone()), Path::new("/b"))
            .unwrap()
            .process
            .seccomp
            .unwrap()
            .compile()
            .unwrap();
        // A different program in the bundle: it is what the shim installs.
        let bundle = tempfile::tempdir().unwrap();
        let other = SeccompProgram::from_bytes(&[0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]).unwrap();
        std::fs::write(bundle.path().join(PROGRAM_FILE), other.to_bytes()).unwrap();
        let c = ContainerConfig::from_spec(&spec(j.clone()), bundle.path()).unwrap();
        let loaded = c.process.seccomp.unwrap().compile().unwrap();
        assert!(loaded == other && loaded != compiled);
        // A damaged program is an error, not a container without a filter.
        std::fs::write(bundle.path().join(PROGRAM_FILE), b"abc").unwrap();
        assert!(ContainerConfig::from_spec(&spec(j), bundle.path()).is_err());
    }
}
