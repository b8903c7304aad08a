//! Health checks (`--health-*`, decision 0028): what is asked for
//! ([`HealthCheck`], in the launch request and the container's state dir)
//! and what the per-container checker (`berth-shim health`, in the shim
//! crate)
//! finds ([`HealthState`], `<state dir>/health.json`, written atomically,
//! read by the agent for `inspect` and `ps`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The checker's config file in the container's state dir.
pub const CONFIG_FILE: &str = "health-config.json";
/// The checker's results in the container's state dir.
pub const STATE_FILE: &str = "health.json";
/// The checker's identity (pid and start time, a `ProcessRef`) in the
/// container's state dir: recovery starts a new checker if it is gone.
pub const CHECKER_FILE: &str = "health-checker.json";
/// The checker's own log in the container's state dir.
pub const LOG_FILE: &str = "health.log";
/// Results kept in the state's log.
pub const KEPT_RESULTS: usize = 5;
/// Status changes kept (for the event stream).
pub const KEPT_CHANGES: usize = 20;
/// Bytes of a check's output kept.
pub const MAX_OUTPUT: usize = 4096;

/// A duration written `500ms`, `1s`, `2m`, `1h` (a decimal number and a
/// unit), as Docker's health flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HealthDuration(pub Duration);

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: expected a number and a unit (500ms, 1s, 2m, 1h)")]
pub struct DurationError {
    pub value: String,
}

impl std::str::FromStr for HealthDuration {
    type Err = DurationError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = || DurationError {
            value: value.to_string(),
        };
        let split = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(error)?;
        let (number, unit) = value.split_at(split);
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(error());
        }
        let number: f64 = number.parse().map_err(|_| error())?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(error()),
        };
        if !(0.0..=86_400.0 * 365.0).contains(&seconds) {
            return Err(error());
        }
        Ok(HealthDuration(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for HealthDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

impl Serialize for HealthDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HealthDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        value.parse().map_err(serde::de::Error::custom)
    }
}

/// What the checker does once the container is unhealthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthy {
    /// Only say so (default, as Docker).
    #[default]
    Report,
    /// End it: reason `unhealthy`.
    Kill,
    /// End it and launch it again (through the restart machinery).
    Restart,
}

/// A health check: exactly one of `cmd`, `http`, `tcp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// A command run in the container as an exec; healthy when it exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `PORT/PATH`: an HTTP GET of `http://127.0.0.1:PORT/PATH` from the
    /// container's network namespace; healthy on a 2xx or 3xx status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A TCP connect to 127.0.0.1:PORT from the container's network
    /// namespace; healthy when it is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<u16>,
    /// Between the end of one check and the start of the next.
    #[serde(default = "default_interval")]
    pub interval: HealthDuration,
    /// A check taking longer fails.
    #[serde(default = "default_interval")]
    pub timeout: HealthDuration,
    /// Consecutive failures that make it unhealthy.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Failures in this time after the start do not count until the first
    /// success (Mesos's grace period, Docker's start period).
    #[serde(default = "zero")]
    pub start_period: HealthDuration,
    #[serde(default)]
    pub on_unhealthy: OnUnhealthy,
}

fn default_interval() -> HealthDuration {
    HealthDuration(Duration::from_secs(30))
}

fn default_retries() -> u32 {
    3
}

fn zero() -> HealthDuration {
    HealthDuration(Duration::ZERO)
}

/// What a probe connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Command(Vec<String>),
    Http { port: u16, path: String },
    Tcp { port: u16 },
}

impl HealthCheck {
    /// Checks the check; the error names the field (below `health.`).
    pub fn validate(&self) -> Result<Probe, (String, String)> {
        let bad = |field: &str, message: String| (format!("health.{field}"), message);
        let probe = match (&self.cmd, &self.http, self.tcp) {
            (Some(cmd), None, None) => {
                if cmd.is_empty() || cmd[0].is_empty() || cmd.iter().any(|a| a.contains('\0')) {
                    return Err(bad("cmd", "must name a program, without NUL".into()));
                }
                Probe::Command(cmd.clone())
            }
            (None, Some(http), None) => {
                let (port, path) = http.split_once('/').unwrap_or((http, ""));
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("http", format!("expected PORT/PATH, got {http:?}")))?;
                if path.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(bad("http", format!("bad path in {http:?}")));
                }
                Probe::Http {
                    port,
                    path: format!("/{path}"),
                }
            }
            (None, None, Some(port)) if port > 0 => Probe::Tcp { port },
            (None, None, Some(_)) => return Err(bad("tcp", "must be a port above 0".into())),
            _ => {
                return Err((
                    "health".into(),
                    "give exactly one of cmd, http and tcp".into(),
                ))
            }
        };
        if self.interval.0 < Duration::from_millis(10) {
            return Err(bad("interval", "must be at least 10ms".into()));
        }
        if self.timeout.0 < Duration::from_millis(10) {
            return Err(bad("timeout", "must be at least 10ms".into()));
        }
        if self.retries == 0 {
            return Err(bad("retries", "must be at least 1".into()));
        }
        Ok(probe)
    }
}

/// Where a container's health stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        })
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The command's code; for HTTP and TCP checks 0 (healthy) or 1.
    pub exit_code: i32,
    /// Its output (at most [`MAX_OUTPUT`] bytes): the command's stdout and
    /// stderr, the HTTP status line, or why it failed.
    pub output: String,
    pub start: String,
    pub end: String,
    /// A failure in the start period, which did not count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

/// A change of status, for the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub status: Status,
    pub at: String,
}

/// The checker's findings: `health` in `inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: Status,
    pub failing_streak: u32,
    /// The last [`KEPT_RESULTS`] results, oldest first.
    pub log: Vec<CheckResult>,
    /// The last [`KEPT_CHANGES`] status changes, oldest first.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// The checker ended the container for being unhealthy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
}

impl HealthState {
    pub fn new(now: String) -> HealthState {
        HealthState {
            status: Status::Starting,
            failing_streak: 0,
            log: Vec::new(),
            changes: vec![Change {
                status: Status::Starting,
                at: now,
            }],
            killed: false,
        }
    }

    /// Reads `health.json` of a state dir, if there is one.
    pub fn read(state_dir: &std::path::Path) -> Option<HealthState> {
        let raw = std::fs::read(state_dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ms = |v: &str| v.parse::<HealthDuration>().map(|d| d.0.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("1s"), Ok(1000));
        assert_eq!(ms("1.5s"), Ok(1500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        for bad in ["", "1", "s", "1x", "-1s", ".5s", "1.s", "1 s", "1e3s"] {
            assert!(ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_check_names_one_probe() {
        let check: HealthCheck = serde_json::from_str(r#"{"http": "80/healthz"}"#).unwrap();
        assert_eq!(
            check.validate().unwrap(),
            Probe::Http {
                port: 80,
                path: "/healthz".into()
            }
        );
        assert_eq!(check.interval.0, Duration::from_secs(30));
        let both: HealthCheck = serde_json::from_str(r#"{"tcp": 80, "http": "80/"}"#).unwrap();
        assert_eq!(both.validate().unwrap_err().0, "health");
        let bad: HealthCheck = serde_json::from_str(r#"{"http": "x/"}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().0, "health.http");
        assert!(serde_json::from_str::<HealthCheck>(r#"{"tcp": 1, "interval": "5"}"#).is_err());
    }
}
