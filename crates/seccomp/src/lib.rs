//! The bundle's `linux.seccomp`: checked before the fork, compiled to a BPF
//! program with libseccomp by the container child during its setup, and
//! installed with one `seccomp(2)` call right before `execve`.
//!
//! The compile runs in the child, not the monitor: libseccomp's rule
//! database for Docker's profile takes about a megabyte of heap, which the
//! monitor, living as long as its container, would keep resident; the
//! child's heap is gone at `execve`.
//!
//! Compiling takes milliseconds, so the agent compiles each distinct
//! profile once and writes the program beside `config.json` as
//! berth-protocol's `SECCOMP_PROGRAM_FILE` (raw `sock_filter` instructions,
//! as libseccomp exports them); the shim then loads that instead of
//! compiling (the bundle is the agent's, in its root-only runtime dir).
//!
//! Its own crate because both sides use it: the agent compiles, the shim
//! checks, loads and installs (decision 0036).

use std::io::{Read, Seek, SeekFrom};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use thiserror::Error;

pub mod agreement;
mod bpf;
#[cfg(target_env = "musl")]
mod musl_link;
mod specialize;
pub use specialize::{specialize, specialized, NotSpecialized};

/// The errno of an `SCMP_ACT_ERRNO` without `errnoRet`, as runc.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("linux.seccomp: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("linux.seccomp: libseccomp {what}: {source}")]
    Library {
        what: String,
        source: libseccomp::error::SeccompError,
    },
    #[error("linux.seccomp: export the filter: {0}")]
    Export(std::io::Error),
    #[error("install the seccomp filter: {0}")]
    Install(Errno),
}

/// A `linux.seccomp` the shim can honour: no notify action, no flags, known
/// architectures, argument indexes 0 to 5.
#[derive(Debug, Clone)]
pub struct SeccompFilter {
    spec: LinuxSeccomp,
    architectures: Vec<(String, ScmpArch)>,
    /// Syscall names libseccomp does not know, left to the default action
    /// (as runc does).
    pub unknown_syscalls: Vec<String>,
    /// The program the agent compiled from this spec, if it did.
    precompiled: Option<SeccompProgram>,
}

/// How the compiled program looks a syscall up (decision 0046). All
/// decide every syscall the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// libseccomp's binary tree over the syscall numbers: a few jumps per
    /// syscall. On attach the kernel runs the program once for every
    /// syscall number of each architecture (to cache those always
    /// allowed), so a tree attaches several times faster than a list.
    BinaryTree,
    /// libseccomp's default: one comparison after another.
    Linear,
    /// libseccomp's tree, specialized per architecture and syscall range
    /// (see [`specialize`]): per architecture a binary search over the
    /// intervals of syscall numbers the tree cannot tell apart, down to
    /// an action or to the tree's argument checks for that interval. A
    /// fraction of the tree's instructions, so it attaches faster still.
    /// Checked against the tree before it is used (the tree itself if the
    /// check fails).
    Specialized,
}

/// A compiled filter: the `sock_filter` instructions the kernel takes.
#[derive(Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    instructions: Vec<libc::sock_filter>,
}

impl std::fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SeccompProgram({} instructions)",
            self.instructions.len()
        )
    }
}

fn library(
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Library { what, source }
}

fn invalid(field: impl Into<String>, message: &str) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        message: message.to_string(),
    }
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(DEFAULT_ERRNO) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(0) as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    }
}

/// The spec's name of an architecture (`SCMP_ARCH_X86_64`).
fn arch_name(arch: &Arch) -> String {
    serde_json::to_value(arch)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl SeccompFilter {
    /// Checks `linux.seccomp` without compiling it. Refuses what berth
    /// cannot honour rather than run the container less confined than its
    /// bundle says.
    pub fn check(spec: &LinuxSeccomp) -> Result<SeccompFilter, SeccompError> {
        Self::check_with(spec, None)
    }

    /// Like [`SeccompFilter::check`], with the program the agent compiled
    /// from `spec`: [`SeccompFilter::compile`] then returns it (and the
    /// syscall names, which the agent looked up, are not looked up again).
    pub fn check_with(
        spec: &LinuxSeccomp,
        precompiled: Option<SeccompProgram>,
    ) -> Result<SeccompFilter, SeccompError> {
        if spec.listener_path().is_some() || spec.listener_metadata().is_some() {
            return Err(invalid(
                "listenerPath",
                "seccomp agents are not supported by berth-shim",
            ));
        }
        if spec.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(invalid("flags", "not supported by berth-shim"));
        }
        if spec.default_action() == LinuxSeccompAction::ScmpActNotify {
            return Err(invalid("defaultAction", "SCMP_ACT_NOTIFY is not supported"));
        }
        let mut architectures = Vec::new();
        for (i, arch) in spec.architectures().iter().flatten().enumerate() {
            let name = arch_name(arch);
            let scmp: ScmpArch = name
                .parse()
                .map_err(library(format!("architectures[{i}] {name}")))?;
            architectures.push((name, scmp));
        }
        let mut unknown_syscalls = Vec::new();
        for (i, rule) in spec.syscalls().iter().flatten().enumerate() {
            if rule.action() == LinuxSeccompAction::ScmpActNotify {
                return Err(invalid(
                    format!("syscalls[{i}].action"),
                    "SCMP_ACT_NOTIFY is not supported",
                ));
            }
            for (j, arg) in rule.args().iter().flatten().enumerate() {
                if arg.index() > 5 {
                    return Err(invalid(
                        format!("syscalls[{i}].args[{j}].index"),
                        "must be 0 to 5",
                    ));
                }
            }
            for name in rule.names().iter().filter(|_| precompiled.is_none()) {
                // A lookup in libseccomp's syscall tables.
                if ScmpSyscall::from_name(name).is_err() && !unknown_syscalls.contains(name) {
                    unknown_syscalls.push(name.clone());
                }
            }
        }
        Ok(SeccompFilter {
            spec: spec.clone(),
            architectures,
            unknown_syscalls,
            precompiled,
        })
    }

    /// Whether the filter lets every syscall of `names` through whatever
    /// its arguments: no rule names it with another action than allow,
    /// and a rule without conditions allows it, or the default action
    /// does. A name this libseccomp does not know is never allowed.
    ///
    /// ```
    /// use berth_seccomp::SeccompFilter;
    /// use oci_spec::runtime::LinuxSeccomp;
    ///
    /// let spec: LinuxSeccomp = serde_json::from_value(serde_json::json!({
    ///     "defaultAction": "SCMP_ACT_ERRNO",
    ///     "syscalls": [
    ///         {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
    ///         {"names": ["close"], "action": "SCMP_ACT_ALLOW",
    ///          "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_GT"}]}
    ///     ]
    /// })).unwrap();
    /// let filter = SeccompFilter::check(&spec).unwrap();
    /// assert!(filter.allows_unconditionally(&["read", "write"]));
    /// assert!(!filter.allows_unconditionally(&["read", "close"]));
    /// ```
    pub fn allows_unconditionally(&self, names: &[&str]) -> bool {
        let rules = self.spec.syscalls().as_deref().unwrap_or_default();
        names.iter().all(|name| {
            if ScmpSyscall::from_name(name).is_err() {
                return false;
            }
            let naming = || rules.iter().filter(|r| r.names().iter().any(|n| n == name));
            let denied = naming().any(|r| r.action() != LinuxSeccompAction::ScmpActAllow);
            let allowed = self.spec.default_action() == LinuxSeccompAction::ScmpActAllow
                || naming().any(|r| r.args().as_ref().is_none_or(|a| a.is_empty()));
            !denied && allowed
        })
    }

    /// Compiles the filter to BPF (or returns the program the agent
    /// compiled), laid out as [`Layout::Specialized`].
    pub fn compile(&self) -> Result<SeccompProgram, SeccompError> {
        self.compile_as(Layout::Specialized)
    }

    /// Compiles the filter to BPF in the given layout (or returns the
    /// program the agent compiled).
    pub fn compile_as(&self, layout: Layout) -> Result<SeccompProgram, SeccompError> {
        if let Some(program) = &self.precompiled {
            return Ok(program.clone());
        }
        let spec = &self.spec;
        let default = action(spec.default_action(), spec.default_errno_ret());
        let mut filter = ScmpFilterContext::new(default).map_err(library("create a filter"))?;
        // The no_new_privs bit is the container's business (the spec's
        // noNewPrivileges), not the filter's.
        filter
            .set_ctl_nnp(false)
            .map_err(library("clear the no_new_privs attribute"))?;
        if layout != Layout::Linear {
            // A libseccomp older than 2.5 has no tree: its linear program
            // decides the same, only more slowly.
            let _ = filter.set_ctl_optimize(2);
        }
        for (i, (name, arch)) in self.architectures.iter().enumerate() {
            let what = || format!("architectures[{i}] {name}");
            // The native architecture is in every new filter.
            if !filter.is_arch_present(*arch).map_err(library(what()))? {
                filter.add_arch(*arch).map_err(library(what()))?;
            }
        }

        for (i, rule) in spec.syscalls().iter().flatten().enumerate() {
            let rule_action = action(rule.action(), rule.errno_ret());
            // libseccomp refuses a rule that repeats the default action;
            // it would change nothing anyway.
            if rule_action == default {
                continue;
            }
            let conditions: Vec<ScmpArgCompare> = rule
                .args()
                .iter()
                .flatten()
                .map(|arg| {
                    let (op, datum) = match arg.op() {
                        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
                        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
                        LinuxSeccompOperator::ScmpCmpLe => {
                            (ScmpCompareOp::LessOrEqual, arg.value())
                        }
                        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
                        LinuxSeccompOperator::ScmpCmpGe => {
                            (ScmpCompareOp::GreaterEqual, arg.value())
                        }
                        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
                        // OCI's value is the mask and valueTwo the datum.
                        LinuxSeccompOperator::ScmpCmpMaskedEq => (
                            ScmpCompareOp::MaskedEqual(arg.value()),
                            arg.value_two().unwrap_or(0),
                        ),
                    };
                    ScmpArgCompare::new(arg.index() as u32, op, datum)
                })
                .collect();
            for name in rule.names() {
                // Newer than this libseccomp, or of another architecture:
                // the default action covers it.
                let Ok(syscall) = ScmpSyscall::from_name(name) else {
                    continue;
                };
                let added = if conditions.is_empty() {
                    filter.add_rule(rule_action, syscall)
                } else {
                    filter.add_rule_conditional(rule_action, syscall, &conditions)
                };
                added.map_err(library(format!("syscalls[{i}].names {name}")))?;
            }
        }
        let program = SeccompProgram {
            instructions: export(&filter)?,
        };
        Ok(match layout {
            Layout::Specialized => specialize(&program),
            Layout::BinaryTree | Layout::Linear => program,
        })
    }
}

impl SeccompProgram {
    /// The program as [`PROGRAM_FILE`] holds it: each instruction's 8
    /// bytes in native byte order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.instructions.len() * 8);
        for i in &self.instructions {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.extend_from_slice(&[i.jt, i.jf]);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        bytes
    }

    /// Reads a program written by [`SeccompProgram::to_bytes`] (or
    /// libseccomp's export).
    pub fn from_bytes(bytes: &[u8]) -> Result<SeccompProgram, SeccompError> {
        let size = std::mem::size_of::<libc::sock_filter>();
        if bytes.is_empty()
            || !bytes.len().is_multiple_of(size)
            || bytes.len() / size > u16::MAX as usize
        {
            return Err(SeccompError::Export(std::io::Error::other(format!(
                "{} bytes is no BPF program",
                bytes.len()
            ))));
        }
        Ok(SeccompProgram {
            instructions: bytes
                .chunks_exact(size)
                .map(|c| libc::sock_filter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect(),
        })
    }

    /// How many BPF instructions the filter has.
    pub fn len(&self) -> usize {
        self.instructions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    /// Installs the filter on the calling thread. Without no_new_privs this
    /// needs CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<(), SeccompError> {
        let program = libc::sock_fprog {
            len: self.instructions.len() as libc::c_ushort,
            filter: self.instructions.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `program` points at `instructions`, which outlive the
        // call; the kernel copies the program.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::Install(Errno::last()));
        }
        Ok(())
    }
}

/// The filter's BPF program, exported through a memfd.
fn export(filter: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let fd =
        nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SeccompError::Export(e.into()))?;
    let mut file = std::fs::File::from(fd);
    filter
        .export_bpf(&file)
        .map_err(library("export the filter"))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;
    Ok(SeccompProgram::from_bytes(&bytes)?.instructions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_round_trip_through_bytes() {
        let program = SeccompProgram {
            instructions: vec![
                libc::sock_filter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 4,
                },
                libc::sock_filter {
                    code: 0x15,
                    jt: 1,
                    jf: 2,
                    k: 0xc000_003e,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                },
            ],
        };
        let bytes = program.to_bytes();
        assert_eq!(bytes.len(), 24);
        let back = SeccompProgram::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert!(SeccompProgram::from_bytes(&bytes[..23]).is_err());
        assert!(SeccompProgram::from_bytes(&[]).is_err());
    }
    #[test]
    fn what_berth_cannot_honour_is_refused() {
        for json in [
            r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        ] {
            let spec: LinuxSeccomp = serde_json::from_str(json).unwrap();
            assert!(SeccompFilter::check(&spec).is_err(), "{json}");
        }
    }
}
