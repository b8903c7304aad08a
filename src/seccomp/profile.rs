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
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
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
    ("mipsle", Arch::ScmpArchMipsel, ""),
    ("mips64le", Arch::ScmpArchMipsel64, ""),
    ("mips64len32", Arch::ScmpArchMipsel64n32, ""),
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
            "mips64" if little_endian => "mips64le",
            "mips" if little_endian => "mipsle",
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
            for (field, condition) in [("includes", &rule.includes), ("excludes", &rule.excludes)] {
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
                (c.arches.is_empty() || arch) && cap_checks.all(|x| x) && kernel.unwrap_or(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::default::{docker_default, CLONE_NAMESPACE_FLAGS};
    use serde_json::{json, Value};

    const AMD64: Host = Host {
        arch: "amd64",
        kernel: (6, 1),
    };

    fn default_caps() -> HashSet<Capability> {
        crate::bundle::DEFAULT_CAPABILITIES
            .iter()
            .copied()
            .collect()
    }

    fn resolved(caps: &HashSet<Capability>, host: &Host) -> Value {
        serde_json::to_value(docker_default().resolve(caps, host).unwrap()).unwrap()
    }

    /// The rules naming `name`.
    fn rules_for(seccomp: &Value, name: &str) -> Vec<Value> {
        seccomp["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().contains(&json!(name)))
            .cloned()
            .collect()
    }

    #[test]
    fn the_default_profile_is_valid_and_survives_a_json_round_trip() {
        let profile = docker_default();
        profile.validate().unwrap();
        let json = serde_json::to_vec(&profile).unwrap();
        assert_eq!(Profile::parse(&json).unwrap(), profile);
        for rule in &profile.syscalls {
            assert!(
                !rule.names.iter().any(|n| n.starts_with("io_uring")),
                "io_uring stays denied"
            );
        }
    }

    #[test]
    fn without_sys_admin_clone_is_masked_and_clone3_is_enosys() {
        let seccomp = resolved(&default_caps(), &AMD64);
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(seccomp["defaultErrnoRet"], 1);
        let clone = rules_for(&seccomp, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        assert_eq!(
            clone[0]["args"],
            json!([{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        let clone3 = rules_for(&seccomp, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);
        for denied in [
            "unshare",
            "setns",
            "mount",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "io_uring_setup",
            "open_by_handle_at",
            "kcmp",
            "reboot",
        ] {
            assert!(
                rules_for(&seccomp, denied).is_empty(),
                "{denied} must fall to the default action"
            );
        }
        // CAP_SYS_CHROOT is among berth's defaults.
        assert_eq!(rules_for(&seccomp, "chroot").len(), 1);
        // personality: only Docker's values.
        let values: Vec<Value> = rules_for(&seccomp, "personality")
            .iter()
            .map(|r| r["args"][0]["value"].clone())
            .collect();
        assert_eq!(
            values,
            json!([0, 8, 0x20000, 0x20008, 0xffff_ffffu64])
                .as_array()
                .unwrap()
                .clone()
        );
        // socket: anything but AF_VSOCK.
        assert_eq!(
            rules_for(&seccomp, "socket")[0]["args"][0],
            json!({"index": 0, "value": 40, "op": "SCMP_CMP_NE"})
        );
    }

    #[test]
    fn capabilities_include_their_blocks_and_exclude_the_restrictions() {
        let mut caps = default_caps();
        caps.insert(Capability::SysAdmin);
        caps.insert(Capability::Perfmon);
        caps.insert(Capability::SysPtrace);
        let seccomp = resolved(&caps, &AMD64);
        let clone = rules_for(&seccomp, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].get("args").is_none(), "any flags with SYS_ADMIN");
        let clone3 = rules_for(&seccomp, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ALLOW");
        for allowed in ["unshare", "setns", "mount", "umount2", "bpf", "kcmp"] {
            assert!(!rules_for(&seccomp, allowed).is_empty(), "{allowed}");
        }
        // Both the SYS_ADMIN and the PERFMON block name perf_event_open.
        assert_eq!(rules_for(&seccomp, "perf_event_open").len(), 2);
        // Never allowed: the keyring.
        assert!(rules_for(&seccomp, "keyctl").is_empty());

        let mut perfmon_only = default_caps();
        perfmon_only.insert(Capability::Perfmon);
        let seccomp = resolved(&perfmon_only, &AMD64);
        assert_eq!(rules_for(&seccomp, "perf_event_open").len(), 1);
        assert!(rules_for(&seccomp, "unshare").is_empty());
    }

    #[test]
    fn the_arch_map_and_arch_rules_follow_the_host() {
        let caps = default_caps();
        let amd64 = resolved(&caps, &AMD64);
        assert_eq!(
            amd64["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(rules_for(&amd64, "arch_prctl").len(), 1);
        assert_eq!(rules_for(&amd64, "modify_ldt").len(), 1);
        assert!(rules_for(&amd64, "set_tls").is_empty());

        let arm64 = resolved(
            &caps,
            &Host {
                arch: "arm64",
                kernel: (6, 1),
            },
        );
        assert_eq!(
            arm64["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        assert!(rules_for(&arm64, "arch_prctl").is_empty());
        assert_eq!(rules_for(&arm64, "set_tls").len(), 1);

        // s390 passes clone's flags second.
        let s390x = resolved(
            &caps,
            &Host {
                arch: "s390x",
                kernel: (6, 1),
            },
        );
        assert_eq!(
            s390x["architectures"],
            json!(["SCMP_ARCH_S390X", "SCMP_ARCH_S390"])
        );
        let clone = rules_for(&s390x, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["index"], 1);

        let riscv = resolved(
            &caps,
            &Host {
                arch: "riscv64",
                kernel: (6, 1),
            },
        );
        assert_eq!(riscv["architectures"], json!(["SCMP_ARCH_RISCV64"]));
    }

    #[test]
    fn min_kernel_gates_ptrace() {
        let caps = default_caps();
        let old = resolved(
            &caps,
            &Host {
                arch: "amd64",
                kernel: (4, 4),
            },
        );
        assert!(rules_for(&old, "ptrace").is_empty());
        let new = resolved(&caps, &AMD64);
        assert_eq!(rules_for(&new, "ptrace").len(), 1);
        assert_eq!(parse_kernel("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("x"), None);
    }

    #[test]
    fn docker_and_oci_json_both_parse() {
        // Docker's shape: nulls, comments, conditions.
        let docker = br#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": null,
                 "comment": "", "includes": {}, "excludes": {}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_CHROOT"], "minKernel": "4.8"}}
            ]
        }"#;
        let profile = Profile::parse(docker).unwrap();
        let seccomp =
            serde_json::to_value(profile.resolve(&default_caps(), &AMD64).unwrap()).unwrap();
        assert_eq!(seccomp["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(seccomp["syscalls"].as_array().unwrap().len(), 2);

        // OCI's shape: architectures as given, rules as given.
        let oci = br#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                          "args": [{"index": 1, "value": 448, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]
        }"#;
        let profile = Profile::parse(oci).unwrap();
        let seccomp =
            serde_json::to_value(profile.resolve(&HashSet::new(), &AMD64).unwrap()).unwrap();
        assert_eq!(seccomp["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(seccomp["syscalls"][0]["errnoRet"], 13);
        assert_eq!(seccomp["syscalls"][0]["args"][0]["valueTwo"], 0);
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let field = |json: Value| {
            Profile::parse(&serde_json::to_vec(&json).unwrap())
                .unwrap_err()
                .field
        };
        let rule = |extra: Value| {
            let mut rule = json!({"names": ["read"], "action": "SCMP_ACT_ERRNO"});
            rule.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})
        };
        assert_eq!(
            field(json!({"defaultAction": "SCMP_ACT_NOPE"})),
            "defaultAction"
        );
        assert_eq!(field(json!({"syscalls": []})), "");
        assert_eq!(
            field(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]})),
            "flags"
        );
        assert_eq!(
            field(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})),
            "defaultErrnoRet"
        );
        assert_eq!(
            field(json!({"defaultAction": "SCMP_ACT_ALLOW",
                         "architectures": ["SCMP_ARCH_X86_64"],
                         "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]})),
            "architectures"
        );
        assert_eq!(
            field(rule(json!({"names": ["Read"]}))),
            "syscalls[0].names[0]"
        );
        assert_eq!(
            field(rule(json!({"errnoRet": 70000}))),
            "syscalls[0].errnoRet"
        );
        assert_eq!(
            field(rule(
                json!({"args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]})
            )),
            "syscalls[0].args[0].index"
        );
        assert_eq!(
            field(rule(json!({"includes": {"arches": ["vax"]}}))),
            "syscalls[0].includes.arches"
        );
        assert_eq!(
            field(rule(json!({"excludes": {"caps": ["CAP_NOPE"]}}))),
            "syscalls[0].excludes.caps"
        );
        assert_eq!(
            field(rule(json!({"includes": {"minKernel": "new"}}))),
            "syscalls[0].includes.minKernel"
        );
        assert_eq!(
            field(rule(json!({"action": "SCMP_ACT_NOTIFY"}))),
            "syscalls[0].action"
        );
        assert_eq!(field(rule(json!({"surprise": 1}))), "syscalls[0].surprise");
    }
}
