//! Restart policies (`--restart no|on-failure[:N]|always`), the agent's
//! back-off settings (`[restart]`) and the restart state kept in a
//! container's record. See decision 0027.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the agent does when a container ends by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never restart (default).
    #[default]
    No,
    /// Restart when the exit code (128 + n for a signal) is not 0, at most
    /// `max_retries` times (`None`: without limit).
    OnFailure { max_retries: Option<u32> },
    /// Restart whatever the exit code, unless a user stopped it.
    Always,
}

/// A restart policy that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid restart policy {value:?}: expected no, on-failure[:N] or always")]
pub struct RestartPolicyError {
    pub value: String,
}

impl FromStr for RestartPolicy {
    type Err = RestartPolicyError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = || RestartPolicyError {
            value: value.to_string(),
        };
        match value.split_once(':') {
            None => match value {
                "no" => Ok(RestartPolicy::No),
                "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
                "always" => Ok(RestartPolicy::Always),
                _ => Err(error()),
            },
            Some(("on-failure", count)) => {
                // Only digits: `+3` or ` 3` are typos, not counts.
                if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(error());
                }
                let count: u32 = count.parse().map_err(|_| error())?;
                // 0 means no limit, as in Docker.
                Ok(RestartPolicy::OnFailure {
                    max_retries: (count > 0).then_some(count),
                })
            }
            Some(_) => Err(error()),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max_retries: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        value.parse().map_err(serde::de::Error::custom)
    }
}

impl RestartPolicy {
    pub fn is_no(&self) -> bool {
        *self == RestartPolicy::No
    }

    /// Whether a container that ended with `exit_code` (as a shell reports
    /// it) after `restarts` restarts by this policy is restarted again.
    pub fn wants_restart(&self, exit_code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max_retries } => {
                exit_code != 0 && max_retries.is_none_or(|max| restarts < max)
            }
        }
    }
}

/// The agent's back-off between restarts: `[restart]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSettings {
    /// The delay before the first restart; it doubles with each restart.
    pub initial_delay_seconds: f64,
    /// The longest delay.
    pub max_delay_seconds: f64,
    /// A container that ran at least this long starts over with the
    /// initial delay.
    pub reset_after_seconds: f64,
}

impl Default for RestartSettings {
    fn default() -> Self {
        RestartSettings {
            initial_delay_seconds: 0.1,
            max_delay_seconds: 60.0,
            reset_after_seconds: 10.0,
        }
    }
}

impl RestartSettings {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("restart.initial_delay_seconds", self.initial_delay_seconds),
            ("restart.max_delay_seconds", self.max_delay_seconds),
            ("restart.reset_after_seconds", self.reset_after_seconds),
        ] {
            if !(value.is_finite() && (0.0..=86_400.0).contains(&value)) {
                return Err(format!("{name} must be within 0..=86400, got {value}"));
            }
        }
        if self.initial_delay_seconds > self.max_delay_seconds {
            return Err(
                "restart.initial_delay_seconds must not exceed restart.max_delay_seconds".into(),
            );
        }
        Ok(())
    }

    /// The delay before restart number `step` (0-based) of a run of quick
    /// failures: the initial delay doubled `step` times, capped.
    pub fn delay(&self, step: u32) -> Duration {
        let factor = 2f64.powi(step.min(60) as i32);
        Duration::from_secs_f64((self.initial_delay_seconds * factor).min(self.max_delay_seconds))
    }
}

/// How many restart attempts a record keeps the times of.
pub const KEPT_ATTEMPTS: usize = 20;

/// A container's restart state, in its record and in `inspect`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartState {
    /// The policy asked for.
    #[serde(default)]
    pub policy: RestartPolicy,
    /// Restarts done by the policy since the container was last started by
    /// a user (`run`, `restart`).
    #[serde(default)]
    pub count: u32,
    /// When the next restart is due (RFC 3339), while one is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When the policy's restarts were made, the last [`KEPT_ATTEMPTS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<String>,
    /// Quick failures in a row: the back-off's exponent.
    #[serde(default)]
    pub backoff_step: u32,
    /// A user stopped or signalled it (`stop`, `kill`, `rm -f`): the policy
    /// is off until the next `restart` (as Docker's "manually stopped").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_by_user: bool,
    /// Set in the record while a restart launches it: recovery ends such a
    /// container as a failed restart (and the policy decides again) rather
    /// than destroying it as an interrupted first launch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relaunching: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print() {
        for (text, policy) in [
            ("no", RestartPolicy::No),
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure { max_retries: None }),
            (
                "on-failure:3",
                RestartPolicy::OnFailure {
                    max_retries: Some(3),
                },
            ),
        ] {
            assert_eq!(text.parse::<RestartPolicy>().unwrap(), policy);
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(
            "on-failure:0".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure { max_retries: None }
        );
        for bad in [
            "",
            "yes",
            "on-failure:",
            "on-failure:-1",
            "on-failure:+3",
            "always:3",
            "on-failure:x",
            "unless-stopped",
        ] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn on_failure_counts_and_always_does_not() {
        let three = RestartPolicy::OnFailure {
            max_retries: Some(3),
        };
        assert!(three.wants_restart(1, 0));
        assert!(three.wants_restart(137, 2));
        assert!(!three.wants_restart(1, 3));
        assert!(!three.wants_restart(0, 0));
        assert!(RestartPolicy::Always.wants_restart(0, 1000));
        assert!(!RestartPolicy::No.wants_restart(1, 0));
    }

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let settings = RestartSettings::default();
        assert_eq!(settings.delay(0), Duration::from_millis(100));
        assert_eq!(settings.delay(1), Duration::from_millis(200));
        assert_eq!(settings.delay(3), Duration::from_millis(800));
        assert_eq!(settings.delay(20), Duration::from_secs(60));
        assert_eq!(settings.delay(u32::MAX), Duration::from_secs(60));
        assert!(settings.validate().is_ok());
        let bad = RestartSettings {
            initial_delay_seconds: 5.0,
            max_delay_seconds: 1.0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
