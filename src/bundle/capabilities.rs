//! Per-container capability changes (`--cap-add`/`--cap-drop`, the launch
//! request's `capabilities`): their names, their checking, and the set a
//! container ends up with.

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::Capability;
use serde::{Deserialize, Serialize};

/// The name that stands for every capability the kernel knows.
pub const ALL: &str = "ALL";

/// Capabilities added to and dropped from the default set, as given in a
/// launch request and kept in the container's record: normalized names
/// (`CAP_NET_RAW`, or `ALL`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityChanges {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// A capability name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field}: unknown capability {name:?} (expected a name such as NET_RAW or CAP_NET_RAW, or ALL)"
)]
pub struct UnknownCapability {
    /// `capabilities.add` or `capabilities.drop`.
    pub field: &'static str,
    pub name: String,
}

impl CapabilityChanges {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.drop.is_empty()
    }

    /// Checks every name and returns the changes with names normalized
    /// (`net_raw` → `CAP_NET_RAW`, `all` → `ALL`), duplicates removed.
    pub fn normalized(&self) -> Result<CapabilityChanges, UnknownCapability> {
        let normalize = |names: &[String], field: &'static str| {
            let mut out: Vec<String> = Vec::new();
            for name in names {
                let normal = normalize_name(name).ok_or_else(|| UnknownCapability {
                    field,
                    name: name.clone(),
                })?;
                if !out.contains(&normal) {
                    out.push(normal);
                }
            }
            Ok(out)
        };
        Ok(CapabilityChanges {
            add: normalize(&self.add, "capabilities.add")?,
            drop: normalize(&self.drop, "capabilities.drop")?,
        })
    }

    /// The set a container gets: Docker's rules. `drop: [ALL]` starts from
    /// nothing, `add: [ALL]` from everything; then named drops go, and
    /// named adds come (an add wins over a drop of the same name).
    /// Unknown names were refused by [`CapabilityChanges::normalized`] and
    /// are ignored here.
    pub fn apply(&self, defaults: &[Capability]) -> HashSet<Capability> {
        let has_all = |list: &[String]| list.iter().any(|n| n.eq_ignore_ascii_case(ALL));
        let mut set: HashSet<Capability> = if has_all(&self.add) {
            every_capability()
        } else if has_all(&self.drop) {
            HashSet::new()
        } else {
            defaults.iter().copied().collect()
        };
        for cap in self.drop.iter().filter_map(|n| parse(n)) {
            set.remove(&cap);
        }
        if !has_all(&self.add) {
            set.extend(self.add.iter().filter_map(|n| parse(n)));
        }
        set
    }
}

/// `NET_RAW`, `cap_net_raw`, `Cap_Net_Raw` → `CAP_NET_RAW`; `all` → `ALL`;
/// `None` for a name no capability has.
pub fn normalize_name(name: &str) -> Option<String> {
    if name.eq_ignore_ascii_case(ALL) {
        return Some(ALL.to_string());
    }
    parse(name).map(|cap| format!("CAP_{cap}"))
}

/// The capability a name (with or without `CAP_`, any case) stands for.
fn parse(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    // oci-spec's names are the kernel's without the prefix ("NET_RAW").
    Capability::from_str(bare).ok()
}

/// What `ALL` stands for: every capability in the agent's own bounding set
/// (none of its containers can hold more) that the OCI spec knows.
fn every_capability() -> HashSet<Capability> {
    held()
        .into_iter()
        .filter_map(|cap| parse(&cap.to_string()))
        .collect()
}

/// The agent's bounding set; every capability when it cannot be read. Read
/// once (41 prctls): the agent never changes its own.
fn held() -> caps::CapsHashSet {
    static HELD: std::sync::OnceLock<caps::CapsHashSet> = std::sync::OnceLock::new();
    HELD.get_or_init(|| caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all()))
        .clone()
}

/// A named capability to add that the agent itself cannot grant (it is not
/// in its own bounding set): `Some(message)` naming it.
pub fn not_grantable(changes: &CapabilityChanges) -> Option<String> {
    let held = held();
    changes
        .add
        .iter()
        .filter(|name| !name.eq_ignore_ascii_case(ALL))
        .find(|name| {
            caps::Capability::from_str(&name.to_ascii_uppercase())
                .is_ok_and(|cap| !held.contains(&cap))
        })
        .map(|name| format!("{name} is not in the agent's own bounding set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(add: &[&str], drop: &[&str]) -> CapabilityChanges {
        CapabilityChanges {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn names_in_any_case_with_or_without_prefix() {
        for name in [
            "NET_RAW",
            "CAP_NET_RAW",
            "net_raw",
            "cap_net_raw",
            "Cap_Net_Raw",
        ] {
            assert_eq!(
                normalize_name(name).as_deref(),
                Some("CAP_NET_RAW"),
                "{name}"
            );
        }
        assert_eq!(normalize_name("all").as_deref(), Some("ALL"));
        assert_eq!(normalize_name("BOGUS"), None);
        assert_eq!(normalize_name("CAP_"), None);
        let err = changes(&["NET_ADMIN", "BOGUS"], &[])
            .normalized()
            .unwrap_err();
        assert_eq!(err.field, "capabilities.add");
        assert!(err.to_string().contains("BOGUS"), "{err}");
        let err = changes(&[], &["nope"]).normalized().unwrap_err();
        assert_eq!(err.field, "capabilities.drop");
        assert_eq!(
            changes(&["net_raw", "CAP_NET_RAW"], &["kill"])
                .normalized()
                .unwrap(),
            changes(&["CAP_NET_RAW"], &["CAP_KILL"])
        );
    }

    #[test]
    fn adds_drops_and_all() {
        let defaults = [Capability::Chown, Capability::Kill];
        let set = changes(&["CAP_NET_RAW"], &["CAP_KILL"]).apply(&defaults);
        assert_eq!(set, HashSet::from([Capability::Chown, Capability::NetRaw]));
        let set = changes(&["CAP_NET_RAW"], &["ALL"]).apply(&defaults);
        assert_eq!(set, HashSet::from([Capability::NetRaw]));
        let set = changes(&["ALL"], &["CAP_SYS_ADMIN"]).apply(&defaults);
        assert!(set.contains(&Capability::SysModule));
        assert!(set.contains(&Capability::NetRaw));
        assert!(!set.contains(&Capability::SysAdmin));
        assert_eq!(
            CapabilityChanges::default().apply(&defaults),
            HashSet::from(defaults)
        );
    }
}
