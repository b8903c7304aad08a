use std::fmt;

use serde::{Deserialize, Serialize};

/// A container id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
///
/// The id names directories and cgroups on the host, so the rule keeps it a
/// single safe path component.
///
/// ```
/// use berth_isolator::ContainerId;
/// assert!(ContainerId::new("web-1.prod").is_ok());
/// assert!(ContainerId::new("../etc").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

/// The error for a string that is not a valid [`ContainerId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid container id {value:?}: must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")]
pub struct InvalidContainerId {
    /// The rejected value.
    pub value: String,
}

impl ContainerId {
    /// Checks `value` against the id rule.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidContainerId> {
        let value = value.into();
        let bytes = value.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 64
            && bytes[0].is_ascii_alphanumeric()
            && bytes[1..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(ContainerId(value))
        } else {
            Err(InvalidContainerId { value })
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContainerId {
    type Error = InvalidContainerId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ContainerId::new(value)
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "A9", "web_1.prod-2", &"x".repeat(64)] {
            assert!(ContainerId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_path_tricks_and_bad_lengths() {
        for bad in [
            "",
            ".",
            "..",
            "-a",
            "_a",
            "a/b",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(ContainerId::new(bad).is_err(), "{bad}");
        }
    }
}
