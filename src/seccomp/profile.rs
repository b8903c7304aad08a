//! A seccomp profile in Docker's JSON format, checked, and resolved for one
//! container into the OCI `linux.seccomp` that goes into its bundle.
//!
//! Docker's format is a superset of the OCI one: it adds `archMap` (the
//! architectures to filter, keyed by the host's) and, per rule, `includes`
//! and `excludes` conditions on the container's capabilities, the host's
//! architecture and kernel. An OCI `linux.seccomp` object is a Docker
//! profile without those, so one reader takes both.

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::{Deserialize, Deserializer, Serialize};

/// A profile that cannot be used; `field` is the JSON path at fault, as in
/// `syscalls[3].names[0]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProfileError {
    pub field: String,
    pub message: String,
}

impl ProfileError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ProfileError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A seccomp profile (Docker's format, or OCI's `linux.seccomp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    /// What a syscall no rule matches gets.
    pub default_action: LinuxSeccompAction,
    /// The errno of an `SCMP_ACT_ERRNO` default action (default EPERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The architectures to filter (OCI form); exclusive with `archMap`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    /// The architectures to filter by host architecture (Docker form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMapEntry>,
    /// The rules, in order.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub syscalls: Vec<Rule>,
}

/// The architectures filtered on hosts of `architecture`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArchMapEntry {
    pub architecture: Arch,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sub_architectures: Vec<Arch>,
}

/// One rule: what the named syscalls get, when their arguments match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub names: Vec<String>,
    pub action: LinuxSeccompAction,
    /// The errno of an `SCMP_ACT_ERRNO` action (default EPERM), or the
    /// value an `SCMP_ACT_TRACE` tracer sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// All must hold for the rule to match.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub args: Vec<ArgCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The rule applies only when all of these hold.
    #[serde(default)]
    pub includes: Condition,
    /// The rule applies only when none of these holds.
    #[serde(default)]
    pub excludes: Condition,
}

/// A condition on the container and the host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    /// Host architectures in Go's names (`amd64`, `arm64`, `x86`, ...).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub arches: Vec<String>,
    /// Capability names (`CAP_SYS_ADMIN`) in the container's bounding set.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub caps: Vec<String>,
    /// A kernel version, `MAJOR.MINOR`: the host's is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

impl Condition {
    fn is_empty(&self) -> bool {
        self.arches.is_empty() && self.caps.is_empty() && self.min_kernel.is_none()
    }
}

/// A comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgCondition {
    /// The argument, 0 to 5.
    pub index: u32,
    pub value: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_two: Option<u64>,
    pub op: LinuxSeccompOperator,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// What a profile is resolved for: the host's architecture and kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Go's name of the architecture (`amd64`, `arm64`, ...), as Docker's
    /// `includes.arches` uses.
    pub arch: &'static str,
    /// `(major, minor)` of the running kernel.
    pub kernel: (u32, u32),
}

/// Go's architecture names, their seccomp counterpart, and Rust's.
const ARCHES: &[(&str, Arch, &str)] = &[
    ("amd64", Arch::ScmpArchX86_64, "x86_64"),
    ("x86", Arch::ScmpArchX86, "x86"),
    ("x32", Arch::ScmpArchX32, ""),
    ("arm64", Arch::ScmpArchAarch64, "aarch64"),
    ("arm", Arch::ScmpArchArm, "arm"),
    ("mips", Arch::ScmpArchMips, "mips"),
    ("mips64", Arch::ScmpArchMips64, "mips64"),
    ("mips64n32", Arch::ScmpArchMips64n32, ""),
    ("mipsel", Arch::ScmpArchMipsel, ""),
    ("mipsel64", Arch::ScmpArchMipsel64, ""),
    ("mipsel64n32", Arch::ScmpArchMipsel64n32, ""),
    ("ppc", Arch::ScmpArchPpc, "powerpc"),
    ("ppc64", Arch::ScmpArchPpc64, "powerpc64"),
    ("ppc64le", Arch::ScmpArchPpc64le, ""),
    ("s390", Arch::ScmpArchS390, ""),
    ("s390x", Arch::ScmpArchS390x, "s390x"),
    ("riscv64", Arch::ScmpArchRiscv64, "riscv64"),
    ("loong64", Arch::ScmpArchLoongarch64, "loongarch64"),
];

impl Host {
    /// This host.
    pub fn current() -> Host {
        let rust = std::env::consts::ARCH;
        let little_endian = cfg!(target_endian = "little");
        let arch = match rust {
            "powerpc64" if little_endian => "ppc64le",
            "mips64" if little_endian => "mipsel64",
            "mips" if little_endian => "mipsel",
            _ => ARCHES
                .iter()
                .find(|(_, _, r)| *r == rust)
                .map(|(go, _, _)| *go)
                .unwrap_or("unknown"),
        };
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Host {
            arch,
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
        }
    }

    /// The seccomp architecture of this host, as `archMap` keys it.
    fn seccomp_arch(&self) -> Option<Arch> {
        ARCHES
            .iter()
            .find(|(go, _, _)| *go == self.arch)
            .map(|(_, arch, _)| *arch)
    }
}

/// `(major, minor)` from a kernel release such as `6.1.0-18-amd64`.
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Profile {
    /// Reads a profile from JSON, naming the field at fault, and checks it.
    pub fn parse(json: &[u8]) -> Result<Profile, ProfileError> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let profile: Profile =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
                let path = e.path().to_string();
                ProfileError::new(
                    if path == "." { String::new() } else { path },
                    e.inner().to_string(),
                )
            })?;
        deserializer
            .end()
            .map_err(|e| ProfileError::new("", e.to_string()))?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks what serde cannot: names, argument indexes, errno values,
    /// condition values and the actions berth does not support.
    pub fn validate(&self) -> Result<(), ProfileError> {
        check_action(self.default_action, "defaultAction")?;
        if let Some(errno) = self.default_errno_ret {
            check_errno(errno, self.default_action, "defaultErrnoRet")?;
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(ProfileError::new(
                "architectures",
                "give either architectures or archMap, not both",
            ));
        }
        for (i, rule) in self.syscalls.iter().enumerate() {
            let at = |field: &str| format!("syscalls[{i}].{field}");
            if rule.names.is_empty() {
                return Err(ProfileError::new(at("names"), "must name a syscall"));
            }
            for (j, name) in rule.names.iter().enumerate() {
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(ProfileError::new(
                        at(&format!("names[{j}]")),
                        format!("{name:?} is not a syscall name"),
                    ));
                }
            }
            check_action(rule.action, &at("action"))?;
            if let Some(errno) = rule.errno_ret {
                check_errno(errno, rule.action, &at("errnoRet"))?;
            }
            if rule.args.len() > 6 {
                return Err(ProfileError::new(at("args"), "at most 6 arguments"));
            }
            for (j, arg) in rule.args.iter().enumerate() {
                if arg.index > 5 {
                    return Err(ProfileError::new(
                        at(&format!("args[{j}].index")),
                        format!("must be 0 to 5, got {}", arg.index),
                    ));
                }
            }
            for (field, condition) in [("includes", &rule.includes), ("excludes", &rule.excludes)]
            {
                check_condition(condition, &at(field))?;
            }
        }
        Ok(())
    }

    /// The OCI `linux.seccomp` for a container whose bounding set is
    /// `capabilities`, on `host`: the rules whose conditions hold, and the
    /// architectures `archMap` gives this host.
    pub fn resolve(
        &self,
        capabilities: &HashSet<Capability>,
        host: &Host,
    ) -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
        let caps: HashSet<String> = capabilities.iter().map(|c| format!("CAP_{c}")).collect();
        let mut architectures = self.architectures.clone();
        if let Some(native) = host.seccomp_arch() {
            for entry in self.arch_map.iter().filter(|e| e.architecture == native) {
                architectures.push(entry.architecture);
                architectures.extend(entry.sub_architectures.iter().copied());
            }
        }
        let holds = |c: &Condition, all: bool| {
            let arch = c.arches.iter().any(|a| a == host.arch);
            let mut cap_checks = c.caps.iter().map(|name| caps.contains(name));
            let kernel = c
                .min_kernel
                .as_deref()
                .and_then(parse_kernel)
                .map(|min| host.kernel >= min);
            if all {
                (c.arches.is_empty() || arch)
                    && cap_checks.all(|x| x)
                    && kernel.unwrap_or(true)
            } else {
                arch || cap_checks.any(|x| x) || kernel.unwrap_or(false)
            }
        };
        let syscalls = self
            .syscalls
            .iter()
            .filter(|rule| {
                (rule.includes.is_empty() || holds(&rule.includes, true))
                    && (rule.excludes.is_empty() || !holds(&rule.excludes, false))
            })
            .map(|rule| {
                let mut syscall = LinuxSyscall::default();
                syscall.set_names(rule.names.clone());
                syscall.set_action(rule.action);
                syscall.set_errno_ret(rule.errno_ret);
                if !rule.args.is_empty() {
                    let args = rule
                        .args
                        .iter()
                        .map(|a| {
                            let arg = LinuxSeccompArgBuilder::default()
                                .index(a.index as usize)
                                .value(a.value)
                                .op(a.op);
                            match a.value_two {
                                Some(two) => arg.value_two(two),
                                None => arg,
                            }
                            .build()
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    syscall.set_args(Some(args));
                }
                Ok(syscall)
            })
            .collect::<Result<Vec<_>, oci_spec::OciSpecError>>()?;
        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(self.default_action);
        seccomp.set_default_errno_ret(self.default_errno_ret);
        if !architectures.is_empty() {
            seccomp.set_architectures(Some(architectures));
        }
        seccomp.set_syscalls(Some(syscalls));
        Ok(seccomp)
    }
}

fn check_action(action: LinuxSeccompAction, field: &str) -> Result<(), ProfileError> {
    if action == LinuxSeccompAction::ScmpActNotify {
        return Err(ProfileError::new(
            field,
            "SCMP_ACT_NOTIFY needs a seccomp agent, which berth does not run",
        ));
    }
    Ok(())
}

fn check_errno(errno: u32, action: LinuxSeccompAction, field: &str) -> Result<(), ProfileError> {
    if !matches!(
        action,
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    ) {
        return Err(ProfileError::new(
            field,
            format!("only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one, not {action}"),
        ));
    }
    // The kernel keeps 16 bits of SECCOMP_RET_DATA; errnos end at 4095.
    if errno > 4095 {
        return Err(ProfileError::new(
            field,
            format!("must be at most 4095, got {errno}"),
        ));
    }
    Ok(())
}

fn check_condition(condition: &Condition, field: &str) -> Result<(), ProfileError> {
    for arch in &condition.arches {
        if !ARCHES.iter().any(|(go, _, _)| go == arch) {
            return Err(ProfileError::new(
                format!("{field}.arches"),
                format!("unknown architecture {arch:?}"),
            ));
        }
    }
    for cap in &condition.caps {
        if caps::Capability::from_str(cap).is_err() {
            return Err(ProfileError::new(
                format!("{field}.caps"),
                format!("unknown capability {cap:?}"),
            ));
        }
    }
    if let Some(kernel) = &condition.min_kernel {
        if parse_kernel(kernel).is_none() {
            return Err(ProfileError::new(
                format!("{field}.minKernel"),
                format!("expected MAJOR.MINOR, got {kernel:?}"),
            ));
        }
    }
    Ok(())
}
