//! The command lines of the shim binary's two helpers, written by the agent
//! and read by the helper: `berth-shim exec` ([`ExecArgs`], one exec in a
//! running container) and `berth-shim health` ([`HealthArgs`], the
//! container's health checker). Both name the container's first process by
//! pid and start time, so a reused pid is never mistaken for it.

use std::ffi::OsString;
use std::path::PathBuf;

use thiserror::Error;

/// The subcommand word of the exec helper.
pub const EXEC: &str = "exec";

/// The subcommand word of the health checker.
pub const HEALTH: &str = "health";

/// The request file in an exec dir, written by the agent (an exec request
/// as JSON), read by the exec helper.
pub const REQUEST_FILE: &str = "request.json";

/// `berth-shim exec --bundle DIR --dir DIR --pid PID --start-time TICKS
/// [--stream-fd N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    /// The container's bundle.
    pub bundle: PathBuf,
    /// The exec's dir: [`REQUEST_FILE`] in, `exit.json` and output out.
    pub dir: PathBuf,
    /// The container's first process.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat`), which tells it from a reused pid.
    pub start_time: u64,
    /// A connected socket to the agent carrying the streams' frames, for
    /// `-i`/`-t`.
    pub stream_fd: Option<i32>,
}

/// `berth-shim health --state-dir DIR --bundle DIR --pid PID --start-time TICKS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthArgs {
    /// The container's state dir (the check's config in, its state out).
    pub state_dir: PathBuf,
    /// The container's bundle.
    pub bundle: PathBuf,
    /// The container's first process.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat`).
    pub start_time: u64,
}

/// A helper's command line that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HelperArgsError {
    #[error("option {0} needs a value")]
    NoValue(String),
    #[error("invalid value {value:?} for {option}")]
    Invalid { option: String, value: String },
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("missing required option {0}")]
    Missing(&'static str),
}

impl ExecArgs {
    /// The arguments after the program name, subcommand first.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = vec![OsString::from(EXEC)];
        push(&mut out, "--bundle", self.bundle.clone().into());
        push(&mut out, "--dir", self.dir.clone().into());
        push(&mut out, "--pid", self.pid.to_string().into());
        push(&mut out, "--start-time", self.start_time.to_string().into());
        if let Some(fd) = self.stream_fd {
            push(&mut out, "--stream-fd", fd.to_string().into());
        }
        out
    }

    /// Parses the arguments after the subcommand.
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<ExecArgs, HelperArgsError> {
        let mut o = Options::read(args, &["--bundle", "--dir", "--stream-fd"])?;
        Ok(ExecArgs {
            bundle: o.path("--bundle")?,
            dir: o.path("--dir")?,
            pid: o.pid()?,
            start_time: o.start_time()?,
            stream_fd: match o.number("--stream-fd")? {
                None => None,
                Some(fd) => Some(i32::try_from(fd).map_err(|_| HelperArgsError::Invalid {
                    option: "--stream-fd".into(),
                    value: fd.to_string(),
                })?),
            },
        })
    }
}

impl HealthArgs {
    /// The arguments after the program name, subcommand first.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = vec![OsString::from(HEALTH)];
        push(&mut out, "--state-dir", self.state_dir.clone().into());
        push(&mut out, "--bundle", self.bundle.clone().into());
        push(&mut out, "--pid", self.pid.to_string().into());
        push(&mut out, "--start-time", self.start_time.to_string().into());
        out
    }

    /// Parses the arguments after the subcommand.
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<HealthArgs, HelperArgsError> {
        let mut o = Options::read(args, &["--state-dir", "--bundle"])?;
        Ok(HealthArgs {
            state_dir: o.path("--state-dir")?,
            bundle: o.path("--bundle")?,
            pid: o.pid()?,
            start_time: o.start_time()?,
        })
    }
}

fn push(out: &mut Vec<OsString>, name: &str, value: OsString) {
    out.push(name.into());
    out.push(value);
}

/// `--name value` pairs: the names a helper takes besides `--pid` and
/// `--start-time`; the last value of a repeated name wins.
struct Options {
    values: Vec<(String, OsString)>,
}

impl Options {
    fn read<I: IntoIterator<Item = OsString>>(
        args: I,
        names: &[&str],
    ) -> Result<Options, HelperArgsError> {
        let mut values: Vec<(String, OsString)> = Vec::new();
        let mut iter = args.into_iter();
        while let Some(name) = iter.next() {
            let name = name.to_string_lossy().into_owned();
            let value = iter
                .next()
                .ok_or_else(|| HelperArgsError::NoValue(name.clone()))?;
            if !names.contains(&name.as_str()) && name != "--pid" && name != "--start-time" {
                return Err(HelperArgsError::Unknown(name));
            }
            values.retain(|(n, _)| *n != name);
            values.push((name, value));
        }
        Ok(Options { values })
    }

    fn take(&mut self, name: &str) -> Option<OsString> {
        let i = self.values.iter().position(|(n, _)| n == name)?;
        Some(self.values.remove(i).1)
    }

    fn path(&mut self, name: &'static str) -> Result<PathBuf, HelperArgsError> {
        self.take(name)
            .map(PathBuf::from)
            .ok_or(HelperArgsError::Missing(name))
    }

    fn number(&mut self, name: &str) -> Result<Option<u64>, HelperArgsError> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        value
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| HelperArgsError::Invalid {
                option: name.to_string(),
                value: value.to_string_lossy().into_owned(),
            })
    }

    fn pid(&mut self) -> Result<u32, HelperArgsError> {
        let pid = self
            .number("--pid")?
            .ok_or(HelperArgsError::Missing("--pid"))?;
        u32::try_from(pid).map_err(|_| HelperArgsError::Invalid {
            option: "--pid".into(),
            value: pid.to_string(),
        })
    }

    fn start_time(&mut self) -> Result<u64, HelperArgsError> {
        self.number("--start-time")?
            .ok_or(HelperArgsError::Missing("--start-time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_subcommand(args: Vec<OsString>) -> Vec<OsString> {
        args.into_iter().skip(1).collect()
    }

    #[test]
    fn exec_args_round_trip() {
        for stream_fd in [None, Some(3)] {
            let args = ExecArgs {
                bundle: "/var/lib/berth/c/bundle".into(),
                dir: "/run/berth/state/c/exec/1a2b".into(),
                pid: 4242,
                start_time: 123_456_789,
                stream_fd,
            };
            let line = args.to_args();
            assert_eq!(line[0], EXEC);
            assert_eq!(ExecArgs::parse(after_subcommand(line)).unwrap(), args);
        }
    }

    #[test]
    fn health_args_round_trip() {
        let args = HealthArgs {
            state_dir: "/run/berth/state/c".into(),
            bundle: "/var/lib/berth/c/bundle".into(),
            pid: 1,
            start_time: u64::MAX,
        };
        let line = args.to_args();
        assert_eq!(line[0], HEALTH);
        assert_eq!(HealthArgs::parse(after_subcommand(line)).unwrap(), args);
    }

    #[test]
    fn bad_command_lines_name_the_option() {
        let parse = |a: &[&str]| ExecArgs::parse(a.iter().map(OsString::from)).unwrap_err();
        assert_eq!(
            parse(&["--bundle", "/b", "--dir", "/d", "--pid", "1"]),
            HelperArgsError::Missing("--start-time")
        );
        assert_eq!(
            parse(&["--bundle"]),
            HelperArgsError::NoValue("--bundle".into())
        );
        assert_eq!(
            parse(&["--state-dir", "/s"]),
            HelperArgsError::Unknown("--state-dir".into())
        );
        assert_eq!(
            parse(&["--bundle=/b"]),
            HelperArgsError::NoValue("--bundle=/b".into())
        );
        assert_eq!(
            parse(&[
                "--bundle",
                "/b",
                "--dir",
                "/d",
                "--pid",
                "x",
                "--start-time",
                "1"
            ]),
            HelperArgsError::Invalid {
                option: "--pid".into(),
                value: "x".into()
            }
        );
        let health = HealthArgs::parse(["--pid", "1"].map(OsString::from)).unwrap_err();
        assert_eq!(health, HelperArgsError::Missing("--state-dir"));
    }
}
