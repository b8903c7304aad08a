//! `process.capabilities` applied with the `caps` crate.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CapabilityError {
    #[error("unknown capability {0}")]
    Unknown(String),
    #[error("drop {cap} from the bounding set: {source}")]
    Bounding {
        cap: Capability,
        source: caps::errors::CapsError,
    },
    #[error("set {set:?} capabilities: {source}")]
    Set {
        set: CapSet,
        source: caps::errors::CapsError,
    },
}

/// The five capability sets of the container process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapSets {
    pub fn from_spec(spec: &LinuxCapabilities) -> Result<Self, CapabilityError> {
        Ok(CapSets {
            bounding: convert(spec.bounding())?,
            effective: convert(spec.effective())?,
            permitted: convert(spec.permitted())?,
            inheritable: convert(spec.inheritable())?,
            ambient: convert(spec.ambient())?,
        })
    }

    /// Drops what is not in the bounding set. Must run while the process
    /// still has CAP_SETPCAP, i.e. before changing to the container's user.
    ///
    /// One `PR_CAPBSET_READ` per capability the kernel knows and one
    /// `PR_CAPBSET_DROP` per capability that is in the set and must go
    /// (the `caps` crate's helpers read the whole set again for every
    /// call: 241 prctls per launch before, decision 0038).
    pub fn apply_bounding(&self) -> Result<(), CapabilityError> {
        for (cap, present) in bounding_now() {
            if present && !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|source| CapabilityError::Bounding { cap, source })?;
            }
        }
        Ok(())
    }

    /// Sets effective, inheritable, permitted and ambient, after the user
    /// change (with keepcaps, so permitted survived it).
    pub fn apply(&self) -> Result<(), CapabilityError> {
        let supported: CapsHashSet = bounding_now().into_iter().map(|(cap, _)| cap).collect();
        // Capabilities this kernel does not know cannot be in any set; the
        // kernel would refuse the whole capset.
        let known =
            |set: &CapsHashSet| -> CapsHashSet { set.intersection(&supported).copied().collect() };
        // Effective first: it may only shrink below, or grow up to, the
        // current permitted set, and permitted may only shrink once the
        // effective set fits in it.
        for (set, value) in [
            (CapSet::Effective, &self.effective),
            (CapSet::Inheritable, &self.inheritable),
            (CapSet::Permitted, &self.permitted),
        ] {
            caps::set(None, set, &known(value))
                .map_err(|source| CapabilityError::Set { set, source })?;
        }
        set_ambient(&known(&self.ambient))
    }
}

/// Every capability this kernel knows (`PR_CAPBSET_READ` fails past the
/// last one) with whether it is in this thread's bounding set: one prctl
/// per capability.
fn bounding_now() -> Vec<(Capability, bool)> {
    let mut out = Vec::new();
    for cap in caps::all() {
        // SAFETY: PR_CAPBSET_READ only reads this thread's bounding set.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_READ,
                libc::c_ulong::from(cap.index()),
                0,
                0,
                0,
            )
        };
        if rc >= 0 {
            out.push((cap, rc == 1));
        }
    }
    out
}

/// The ambient set: cleared in one prctl, then each wanted capability
/// raised (the `caps` crate drops or raises every known one in turn). A
/// kernel without ambient capabilities (< 4.3) refuses the clear: the set
/// is left alone there, as before.
fn set_ambient(wanted: &CapsHashSet) -> Result<(), CapabilityError> {
    let error = |source: caps::errors::CapsError| CapabilityError::Set {
        set: CapSet::Ambient,
        source,
    };
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL only changes this thread's ambient set.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Ok(());
        }
        return Err(error(format!("PR_CAP_AMBIENT_CLEAR_ALL: {err}").into()));
    }
    for cap in wanted {
        caps::raise(None, CapSet::Ambient, *cap).map_err(error)?;
    }
    Ok(())
}

fn convert(set: &Option<Capabilities>) -> Result<CapsHashSet, CapabilityError> {
    let mut out = CapsHashSet::new();
    for cap in set.iter().flatten() {
        // oci-spec displays "SYS_ADMIN"; the caps crate parses "CAP_SYS_ADMIN".
        let name = format!("CAP_{cap}");
        let parsed = Capability::from_str(&name).map_err(|_| CapabilityError::Unknown(name))?;
        out.insert(parsed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_spec_names() {
        let spec: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
            "effective": ["CAP_KILL"]
        }))
        .unwrap();
        let sets = CapSets::from_spec(&spec).unwrap();
        assert_eq!(sets.bounding.len(), 3);
        assert!(sets.bounding.contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(sets.bounding.contains(&Capability::CAP_SYS_ADMIN));
        assert_eq!(sets.effective.len(), 1);
        assert!(sets.ambient.is_empty());
    }
}
