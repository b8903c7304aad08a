use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::Controller;

/// What can go wrong in the cgroup layer. Every variant carries the path
/// (and, for writes, the value) involved, so a message alone is enough to
/// find the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading a cgroup file (or `/proc/self/...`) failed.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a value to a cgroup file failed (the kernel refused it, or the
    /// file does not exist).
    #[error("write {value:?} to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The value that was written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("create cgroup {}: {source}", path.display())]
    Create {
        /// The cgroup directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed.
    #[error("remove cgroup {}: {source}", path.display())]
    Remove {
        /// The cgroup directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing the cgroups of several containers failed for some of them:
    /// the message is each failure's (each naming its path), joined by `; `.
    #[error("{}", join(.failures))]
    RemoveContainers {
        /// One error per container whose cgroups were not all removed.
        failures: Vec<CgroupError>,
    },
    /// A cgroup stayed busy (it still has tasks or children) after retrying.
    #[error("remove cgroup {}: still busy after {waited:?} (tasks or child cgroups left in it)", path.display())]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// How long removal was retried.
        waited: Duration,
    },
    /// A cgroup file did not hold what the kernel documents.
    #[error("parse {}: unexpected content {value:?}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending content.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A line of `/proc/self/mountinfo` could not be parsed.
    #[error("parse mountinfo line {line:?}: {reason}")]
    MountInfo {
        /// The line.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A line of `/proc/self/cgroup` could not be parsed.
    #[error("parse /proc/self/cgroup line {line:?}: {reason}")]
    ProcCgroup {
        /// The line.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Neither a cgroup v1 controller hierarchy nor a cgroup2 filesystem is mounted.
    #[error("no cgroup v1 controller hierarchy and no cgroup2 filesystem is mounted")]
    NoCgroupMounts,
    /// A cgroup v1 controller has no mounted hierarchy.
    #[error("cgroup controller {controller} is not mounted")]
    NotMounted {
        /// The controller.
        controller: Controller,
    },
    /// A controller that cgroup v2 does not have was asked for on a v2 host.
    #[error("cgroup controller {controller} does not exist on cgroup v2")]
    NotOnV2 {
        /// The controller.
        controller: Controller,
    },
    /// A cgroup v2 controller is not offered to the delegated subtree.
    #[error("cgroup controller {controller} is not available: not listed in {}", path.display())]
    Unavailable {
        /// The controller (its v2 name).
        controller: String,
        /// The `cgroup.controllers` file that lacks it.
        path: PathBuf,
    },
    /// Controllers cannot be enabled in a cgroup v2 directory that has member
    /// processes of its own (the "no internal processes" rule).
    #[error(
        "enable controllers in {}: the cgroup has member processes; cgroup v2 only enables controllers \
         for children of a cgroup without processes of its own (move the agent into a leaf cgroup)",
        path.display()
    )]
    SubtreeBusy {
        /// The `cgroup.subtree_control` file.
        path: PathBuf,
    },
    /// The process' own cgroup is not below the visible mount of its hierarchy.
    #[error("own cgroup {own:?} in the {hierarchy} hierarchy is outside its mount (mount root {mount_root:?})")]
    OutsideMount {
        /// The hierarchy (controller list, or `unified`).
        hierarchy: String,
        /// The own cgroup path from `/proc/self/cgroup`.
        own: String,
        /// The root of the hierarchy that is mounted.
        mount_root: String,
    },
    /// `/proc/self/cgroup` does not list the process' cgroup in a hierarchy.
    #[error("own cgroup in the {hierarchy} hierarchy is not listed in /proc/self/cgroup")]
    OwnCgroupUnknown {
        /// The hierarchy (controller list, or `unified`).
        hierarchy: String,
    },
    /// The `--cgroup-root` value is not acceptable.
    #[error("invalid cgroup root {value:?}: {reason}")]
    InvalidRoot {
        /// The value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A container cgroup name is not a single safe path component.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The kernel refused to enable controllers with `EOPNOTSUPP`: the
    /// cgroup is threaded (or becomes so), where domain controllers cannot go.
    #[error(
        "enable controllers {value:?} in {}: not supported (EOPNOTSUPP): the cgroup or an ancestor is \
         not of cgroup.type \"domain\" (a threaded subtree, or internal processes); give the agent a \
         delegated cgroup of its own (systemd: Delegate=yes) and a relative cgroup_root",
        path.display()
    )]
    SubtreeUnsupported {
        /// The `cgroup.subtree_control` file.
        path: PathBuf,
        /// What was written (`+cpu +memory`).
        value: String,
    },
    /// The agent's delegated cgroup v2 still has processes other than the
    /// agent after it moved itself into its leaf, so no controller can be
    /// enabled for its children.
    #[error(
        "cgroup {} has processes other than the agent ({pids}): cgroup v2 enables controllers only in a \
         cgroup without processes of its own; run the agent alone in its delegated cgroup (one process \
         per systemd unit with Delegate=yes) or use an absolute cgroup_root",
        path.display()
    )]
    OtherProcesses {
        /// The delegated cgroup's directory.
        path: PathBuf,
        /// The other processes' ids, space-separated.
        pids: String,
    },
    /// A cgroup v2 directory the agent uses is not a domain cgroup.
    #[error(
        "cgroup {} is of cgroup.type {kind:?}, not \"domain\": its controllers cannot serve containers",
        path.display()
    )]
    NotDomain {
        /// The cgroup's directory.
        path: PathBuf,
        /// Its `cgroup.type`.
        kind: String,
    },
}

fn join(failures: &[CgroupError]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
