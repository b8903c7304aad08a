//! Device cgroup rules: which nodes a container may read, write or create.

use std::fmt;

use serde_json::{json, Value};

/// Which device nodes a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Character and block devices (`a`).
    All,
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
}

impl DeviceKind {
    /// The letter the devices cgroup and the runtime spec use.
    pub fn letter(self) -> char {
        match self {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        }
    }
}

/// What a rule allows: a set of read, write and mknod. The bits are the
/// kernel's `BPF_DEVCG_ACC_*` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    /// `mknod(2)` of the node (`m`).
    pub const MKNOD: Access = Access(1);
    /// Opening for reading (`r`).
    pub const READ: Access = Access(2);
    /// Opening for writing (`w`).
    pub const WRITE: Access = Access(4);
    /// `rwm`.
    pub const ALL: Access = Access(7);

    /// Parses a non-empty subset of `rwm`, each letter at most once.
    pub fn parse(text: &str) -> Option<Access> {
        let mut bits = 0;
        for c in text.chars() {
            let bit = match c {
                'r' => Access::READ.0,
                'w' => Access::WRITE.0,
                'm' => Access::MKNOD.0,
                _ => return None,
            };
            if bits & bit != 0 {
                return None;
            }
            bits |= bit;
        }
        (bits != 0).then_some(Access(bits))
    }

    /// The `BPF_DEVCG_ACC_*` bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every access in `other` is also in `self`.
    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, letter) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.contains(bit) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// One allow rule; `None` for a major or minor number is the wildcard `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Which kind of node.
    pub kind: DeviceKind,
    /// The major number, or any.
    pub major: Option<u32>,
    /// The minor number, or any.
    pub minor: Option<u32>,
    /// What is allowed.
    pub access: Access,
}

impl DeviceRule {
    /// A rule for character device `major:minor` with full access.
    pub const fn char(major: u32, minor: u32) -> DeviceRule {
        DeviceRule {
            kind: DeviceKind::Char,
            major: Some(major),
            minor: Some(minor),
            access: Access::ALL,
        }
    }

    /// The rule as written to v1 `devices.allow` (`c 1:3 rwm`, `c 136:* rwm`).
    pub fn v1_line(&self) -> String {
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        format!(
            "{} {}:{} {}",
            self.kind.letter(),
            number(self.major),
            number(self.minor),
            self.access
        )
    }

    /// The rule as a runtime-spec `linux.resources.devices` entry.
    pub fn oci(&self) -> Value {
        let mut entry = json!({
            "allow": true,
            "type": self.kind.letter().to_string(),
            "access": self.access.to_string(),
        });
        if let Some(major) = self.major {
            entry["major"] = major.into();
        }
        if let Some(minor) = self.minor {
            entry["minor"] = minor.into();
        }
        entry
    }
}

/// Docker's default allow list: its own spec's rules (`null`, `zero`,
/// `urandom`, `random`, `tty`, `console`) with the ones runc appends for
/// every container (`mknod` of any node, `full`, `ptmx` and the pts).
/// runc's former `tun` entry (10:200) was dropped by runc and is not here.
pub fn default_rules() -> Vec<DeviceRule> {
    let mknod_any = |kind| DeviceRule {
        kind,
        major: None,
        minor: None,
        access: Access::MKNOD,
    };
    vec![
        mknod_any(DeviceKind::Char),
        mknod_any(DeviceKind::Block),
        DeviceRule::char(1, 3), // null
        DeviceRule::char(1, 5), // zero
        DeviceRule::char(1, 7), // full
        DeviceRule::char(1, 8), // random
        DeviceRule::char(1, 9), // urandom
        DeviceRule::char(5, 0), // tty
        DeviceRule::char(5, 1), // console
        DeviceRule::char(5, 2), // ptmx
        DeviceRule {
            minor: None,
            ..DeviceRule::char(136, 0) // pts/*
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_parses_subsets_of_rwm_only() {
        assert_eq!(Access::parse("rwm"), Some(Access::ALL));
        assert_eq!(Access::parse("mr").unwrap().to_string(), "rm");
        for bad in ["", "x", "rr", "rwmx", "R"] {
            assert_eq!(Access::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn default_rules_as_v1_lines_and_oci_entries() {
        let lines: Vec<String> = default_rules().iter().map(DeviceRule::v1_line).collect();
        assert_eq!(
            lines,
            [
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:1 rwm",
                "c 5:2 rwm",
                "c 136:* rwm",
            ]
        );
        assert_eq!(
            default_rules()[0].oci(),
            json!({"allow": true, "type": "c", "access": "m"})
        );
        assert_eq!(
            DeviceRule::char(1, 3).oci(),
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})
        );
    }
}
