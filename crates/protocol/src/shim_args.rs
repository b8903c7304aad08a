//! The shim's command line: `--id ID --bundle DIR --state-dir DIR --log-dir DIR
//! [--log-max-size BYTES] [--log-max-files N] [--log-compress]
//! [--log-mode block|drop] [--files-fd DEST=FD]... [--root-fd FD]
//! [--cgroup DIR... --cgroups-ready-fd FD]`.
//!
//! The agent writes it with [`ShimArgs::to_args`], the shim reads it with
//! [`ShimArgs::parse`]. Parsed by hand: a handful of options do not justify
//! a parser crate in a binary that is started once per container. The log
//! settings come only from here (never from a file the container could
//! write); absent ones take [`LogSettings::default`].

use std::ffi::OsString;
use std::path::PathBuf;

use thiserror::Error;

use crate::log_settings::{LogMode, LogSettings};

/// The first descriptor number of the shim's prepared mounts
/// ([`ShimArgs::files`]): the agent places them from here on.
pub const FILES_FD_BASE: i32 = 4;

/// What the agent tells the shim on its command line.
#[derive(Debug, Clone, PartialEq)]
pub struct ShimArgs {
    /// The container's id (used in diagnostics only).
    pub id: String,
    /// The OCI bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// Where `exit.json` and `shim.log` go.
    pub state_dir: PathBuf,
    /// Where the `stdout` and `stderr` log files go.
    pub log_dir: PathBuf,
    /// Rotation, compression and backpressure of the container's output.
    pub log: LogSettings,
    /// Prepared mounts inherited from the agent (`--files-fd DEST=FD`,
    /// repeatable): attached at DEST instead of the empty tmpfs the bundle
    /// names there.
    pub files: Vec<(PathBuf, i32)>,
    /// A unix socket on which the container child receives the root
    /// overlay the agent builds as a detached mount (`--root-fd FD`,
    /// decisions 0046 and 0047, [`crate::root_mount`]): it moves it onto its
    /// root instead of mounting the overlay itself. Its descriptor follows
    /// the prepared mounts'.
    pub root_mount: Option<i32>,
    /// The cgroup directories the container's process moves itself into
    /// (`--cgroup DIR`, repeatable; decision 0047), once the agent says
    /// they exist: a byte on the pipe whose read end is
    /// [`ShimArgs::cgroups_ready`].
    pub cgroups: Vec<PathBuf>,
    /// `--cgroups-ready-fd FD`, given with `--cgroup` and only then: its
    /// descriptor follows the root mount's (or the prepared mounts').
    pub cgroups_ready: Option<i32>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("missing required option {0}")]
    Missing(&'static str),
    #[error("option {0} needs a value")]
    NoValue(String),
    #[error("option {0} given twice")]
    Duplicate(String),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("value of {option} is not valid utf-8")]
    NotUtf8 { option: String },
    #[error("invalid value {value:?} for {option}: {reason}")]
    Invalid {
        option: String,
        value: String,
        reason: &'static str,
    },
}

impl ShimArgs {
    /// The descriptor numbers it names, in the order the agent passes
    /// them: the prepared mounts', the root mount's, the cgroups-ready
    /// pipe's.
    pub fn descriptors(&self) -> Vec<i32> {
        (self.files.iter().map(|(_, fd)| *fd))
            .chain(self.root_mount)
            .chain(self.cgroups_ready)
            .collect()
    }

    /// The arguments after the program name, as [`ShimArgs::parse`] reads
    /// them back.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::with_capacity(14 + 2 * self.files.len());
        let mut pair = |name: &str, value: OsString| {
            out.push(name.into());
            out.push(value);
        };
        pair("--id", self.id.clone().into());
        pair("--bundle", self.bundle.clone().into());
        pair("--state-dir", self.state_dir.clone().into());
        pair("--log-dir", self.log_dir.clone().into());
        pair("--log-max-size", self.log.max_size.to_string().into());
        pair("--log-max-files", self.log.max_files.to_string().into());
        pair("--log-mode", self.log.mode.as_str().into());
        for (dest, fd) in &self.files {
            let mut value = OsString::from(dest.as_os_str());
            value.push(format!("={fd}"));
            pair("--files-fd", value);
        }
        if let Some(fd) = self.root_mount {
            out.push("--root-fd".into());
            out.push(fd.to_string().into());
        }
        for dir in &self.cgroups {
            out.push("--cgroup".into());
            out.push(dir.clone().into());
        }
        if let Some(fd) = self.cgroups_ready {
            out.push("--cgroups-ready-fd".into());
            out.push(fd.to_string().into());
        }
        if self.log.compress {
            out.push("--log-compress".into());
        }
        out
    }

    /// Parses the arguments after the program name. Accepts `--opt value` and
    /// `--opt=value`.
    pub fn parse<I>(args: I) -> Result<Self, ArgsError>
    where
        I: IntoIterator<Item = OsString>,
    {
        let mut id: Option<String> = None;
        let mut bundle: Option<PathBuf> = None;
        let mut state_dir: Option<PathBuf> = None;
        let mut log_dir: Option<PathBuf> = None;
        let mut max_size: Option<u64> = None;
        let mut max_files: Option<u32> = None;
        let mut compress = false;
        let mut mode: Option<LogMode> = None;
        let mut files: Vec<(PathBuf, i32)> = Vec::new();
        let mut root_mount: Option<i32> = None;
        let mut cgroups: Vec<PathBuf> = Vec::new();
        let mut cgroups_ready: Option<i32> = None;

        let mut iter = args.into_iter();
        while let Some(arg) = iter.next() {
            let arg = arg
                .into_string()
                .map_err(|raw| ArgsError::Unknown(raw.to_string_lossy().into_owned()))?;
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => {
                    (name.to_string(), Some(OsString::from(value)))
                }
                _ => (arg.clone(), None),
            };
            if name == "--log-compress" && inline.is_none() {
                if compress {
                    return Err(ArgsError::Duplicate(name));
                }
                compress = true;
                continue;
            }
            if !matches!(
                name.as_str(),
                "--id"
                    | "--bundle"
                    | "--state-dir"
                    | "--log-dir"
                    | "--log-max-size"
                    | "--log-max-files"
                    | "--log-mode"
                    | "--files-fd"
                    | "--root-fd"
                    | "--cgroup"
                    | "--cgroups-ready-fd"
            ) {
                return Err(ArgsError::Unknown(arg));
            }
            let value = match inline {
                Some(value) => value,
                None => iter
                    .next()
                    .ok_or_else(|| ArgsError::NoValue(name.clone()))?,
            };
            if value.is_empty() {
                return Err(ArgsError::NoValue(name));
            }
            match name.as_str() {
                "--id" => {
                    let value = value.into_string().map_err(|_| ArgsError::NotUtf8 {
                        option: name.clone(),
                    })?;
                    set_once(&mut id, value, &name)?
                }
                "--bundle" => set_once(&mut bundle, value.into(), &name)?,
                "--files-fd" => {
                    let value = utf8(value, &name)?;
                    let parsed = value
                        .rsplit_once('=')
                        .and_then(|(dest, fd)| Some((PathBuf::from(dest), fd.parse::<i32>().ok()?)))
                        .filter(|(dest, fd)| dest.is_absolute() && *fd > 2);
                    match parsed {
                        Some(entry) => files.push(entry),
                        None => {
                            return Err(ArgsError::Invalid {
                                option: name,
                                value,
                                reason: "expected DEST=FD, DEST absolute, FD above 2",
                            })
                        }
                    }
                }
                "--root-fd" => set_once(&mut root_mount, descriptor(value, &name)?, &name)?,
                "--cgroups-ready-fd" => {
                    set_once(&mut cgroups_ready, descriptor(value, &name)?, &name)?
                }
                "--cgroup" => {
                    let dir = PathBuf::from(value);
                    if !dir.is_absolute() {
                        return Err(ArgsError::Invalid {
                            option: name,
                            value: dir.to_string_lossy().into_owned(),
                            reason: "expected an absolute path",
                        });
                    }
                    cgroups.push(dir);
                }
                "--state-dir" => set_once(&mut state_dir, value.into(), &name)?,
                "--log-dir" => set_once(&mut log_dir, value.into(), &name)?,
                "--log-max-size" => {
                    let value = utf8(value, &name)?;
                    set_once(&mut max_size, parse_positive(&name, &value)?, &name)?
                }
                "--log-max-files" => {
                    let value = utf8(value, &name)?;
                    set_once(&mut max_files, parse_positive(&name, &value)?, &name)?
                }
                _ => {
                    let value = utf8(value, &name)?;
                    let Some(parsed) = LogMode::parse(&value) else {
                        return Err(ArgsError::Invalid {
                            option: name,
                            value,
                            reason: "expected block or drop",
                        });
                    };
                    set_once(&mut mode, parsed, &name)?
                }
            }
        }
        if cgroups.is_empty() != cgroups_ready.is_none() {
            return Err(ArgsError::Missing(if cgroups.is_empty() {
                "--cgroup (with --cgroups-ready-fd)"
            } else {
                "--cgroups-ready-fd (with --cgroup)"
            }));
        }
        let defaults = LogSettings::default();

        Ok(ShimArgs {
            id: id.ok_or(ArgsError::Missing("--id"))?,
            bundle: bundle.ok_or(ArgsError::Missing("--bundle"))?,
            state_dir: state_dir.ok_or(ArgsError::Missing("--state-dir"))?,
            log_dir: log_dir.ok_or(ArgsError::Missing("--log-dir"))?,
            log: LogSettings {
                max_size: max_size.unwrap_or(defaults.max_size),
                max_files: max_files.unwrap_or(defaults.max_files),
                compress,
                mode: mode.unwrap_or(defaults.mode),
            },
            files,
            root_mount,
            cgroups,
            cgroups_ready,
        })
    }
}

/// A descriptor number the agent placed: above stdio.
fn descriptor(value: OsString, option: &str) -> Result<i32, ArgsError> {
    let value = utf8(value, option)?;
    match value.parse::<i32>() {
        Ok(fd) if fd > 2 => Ok(fd),
        _ => Err(ArgsError::Invalid {
            option: option.to_string(),
            value,
            reason: "expected a descriptor number above 2",
        }),
    }
}

fn utf8(value: OsString, option: &str) -> Result<String, ArgsError> {
    value.into_string().map_err(|_| ArgsError::NotUtf8 {
        option: option.to_string(),
    })
}

/// Parses a count or size that must be at least 1: a zero size would never
/// make progress and zero files would keep nothing, not even the current one.
fn parse_positive<T>(option: &str, value: &str) -> Result<T, ArgsError>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    match value.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        Ok(_) => Err(ArgsError::Invalid {
            option: option.to_string(),
            value: value.to_string(),
            reason: "must be at least 1",
        }),
        Err(_) => Err(ArgsError::Invalid {
            option: option.to_string(),
            value: value.to_string(),
            reason: "not a whole number",
        }),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), ArgsError> {
    if slot.is_some() {
        return Err(ArgsError::Duplicate(name.to_string()));
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ShimArgs, ArgsError> {
        ShimArgs::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn round_trips_through_the_command_line() {
        let minimal = ShimArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            state_dir: "/s".into(),
            log_dir: "/l".into(),
            log: LogSettings::default(),
            files: Vec::new(),
            root_mount: None,
            cgroups: Vec::new(),
            cgroups_ready: None,
        };
        let full = ShimArgs {
            id: "web-1".into(),
            bundle: "/var/lib/berth/containers/web 1/bundle".into(),
            state_dir: "/run/berth/state/web-1".into(),
            log_dir: "/var/lib/berth/containers/web-1/logs".into(),
            log: LogSettings {
                max_size: 4096,
                max_files: 3,
                compress: true,
                mode: LogMode::Drop,
            },
            files: vec![
                ("/run/secrets".into(), FILES_FD_BASE),
                ("/etc/a=b".into(), FILES_FD_BASE + 1),
            ],
            root_mount: Some(FILES_FD_BASE + 2),
            cgroups: vec![
                "/sys/fs/cgroup/cpu,cpuacct/berth/web-1".into(),
                "/sys/fs/cgroup/memory/berth/web-1".into(),
            ],
            cgroups_ready: Some(FILES_FD_BASE + 3),
        };
        for args in [minimal, full] {
            assert_eq!(ShimArgs::parse(args.to_args()).unwrap(), args);
        }
    }

    #[test]
    fn parses_separate_and_inline_values() {
        let args = parse(&[
            "--id",
            "c1",
            "--bundle=/b",
            "--state-dir",
            "/s",
            "--log-dir=/l",
        ])
        .unwrap();
        assert_eq!(
            args,
            ShimArgs {
                id: "c1".into(),
                bundle: "/b".into(),
                state_dir: "/s".into(),
                log_dir: "/l".into(),
                log: LogSettings::default(),
                files: Vec::new(),
                root_mount: None,
                cgroups: Vec::new(),
                cgroups_ready: None,
            }
        );
    }

    #[test]
    fn a_root_fd_is_one_number_above_2() {
        let base = ["--id=c1", "--bundle=/b", "--state-dir=/s", "--log-dir=/l"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert_eq!(with(&["--root-fd", "6"]).unwrap().root_mount, Some(6));
        for bad in ["2", "-1", "x", "6x"] {
            assert!(
                matches!(with(&["--root-fd", bad]), Err(ArgsError::Invalid { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            with(&["--root-fd=5", "--root-fd=6"]),
            Err(ArgsError::Duplicate("--root-fd".into()))
        );
    }

    #[test]
    fn cgroups_come_with_their_ready_descriptor() {
        let base = ["--id=c1", "--bundle=/b", "--state-dir=/s", "--log-dir=/l"];
        let with = |more: &[&str]| parse(&[&base[..], more].concat());
        let args = with(&[
            "--cgroup=/sys/fs/cgroup/pids/berth/c1",
            "--cgroup",
            "/sys/fs/cgroup/memory/berth/c1",
            "--cgroups-ready-fd=4",
        ])
        .unwrap();
        assert_eq!(args.cgroups.len(), 2);
        assert_eq!((args.cgroups_ready, args.descriptors()), (Some(4), vec![4]));
        assert!(matches!(
            with(&["--cgroup=/sys/fs/cgroup/pids/berth/c1"]),
            Err(ArgsError::Missing(_))
        ));
        assert!(matches!(
            with(&["--cgroups-ready-fd=4"]),
            Err(ArgsError::Missing(_))
        ));
        assert!(matches!(
            with(&["--cgroup=pids/c1", "--cgroups-ready-fd=4"]),
            Err(ArgsError::Invalid { .. })
        ));
    }

    #[test]
    fn parses_files_fds() {
        let args = parse(&[
            "--id=c1",
            "--bundle=/b",
            "--state-dir=/s",
            "--log-dir=/l",
            "--files-fd",
            "/run/secrets=4",
            "--files-fd=/etc/app=5",
        ])
        .unwrap();
        assert_eq!(
            args.files,
            vec![("/run/secrets".into(), 4), ("/etc/app".into(), 5)]
        );
        for bad in ["rel=4", "/x=1", "/x", "/x=y"] {
            assert!(
                parse(&[
                    "--id=c",
                    "--bundle=/b",
                    "--state-dir=/s",
                    "--log-dir=/l",
                    "--files-fd",
                    bad
                ])
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_log_settings() {
        let args = parse(&[
            "--id=c1",
            "--bundle=/b",
            "--state-dir=/s",
            "--log-dir=/l",
            "--log-max-size",
            "4096",
            "--log-max-files=3",
            "--log-compress",
            "--log-mode",
            "drop",
        ])
        .unwrap();
        assert_eq!(
            args.log,
            LogSettings {
                max_size: 4096,
                max_files: 3,
                compress: true,
                mode: LogMode::Drop,
            }
        );
    }

    #[test]
    fn rejects_bad_log_settings() {
        let base = ["--id=c", "--bundle=/b", "--state-dir=/s", "--log-dir=/l"];
        let with = |extra: &[&str]| {
            let mut all: Vec<&str> = base.to_vec();
            all.extend_from_slice(extra);
            parse(&all).unwrap_err()
        };
        assert_eq!(
            with(&["--log-max-size", "0"]),
            ArgsError::Invalid {
                option: "--log-max-size".into(),
                value: "0".into(),
                reason: "must be at least 1",
            }
        );
        assert_eq!(
            with(&["--log-max-files", "-1"]),
            ArgsError::Invalid {
                option: "--log-max-files".into(),
                value: "-1".into(),
                reason: "not a whole number",
            }
        );
        assert_eq!(
            with(&["--log-mode", "fast"]),
            ArgsError::Invalid {
                option: "--log-mode".into(),
                value: "fast".into(),
                reason: "expected block or drop",
            }
        );
        assert_eq!(
            with(&["--log-compress", "--log-compress"]),
            ArgsError::Duplicate("--log-compress".into())
        );
        assert_eq!(
            with(&["--log-compress=yes"]),
            ArgsError::Unknown("--log-compress=yes".into())
        );
    }

    #[test]
    fn reports_missing_option() {
        let err = parse(&["--id", "c1", "--bundle", "/b", "--state-dir", "/s"]).unwrap_err();
        assert_eq!(err, ArgsError::Missing("--log-dir"));
    }

    #[test]
    fn reports_missing_value() {
        assert_eq!(
            parse(&["--id"]).unwrap_err(),
            ArgsError::NoValue("--id".into())
        );
        assert_eq!(
            parse(&["--id="]).unwrap_err(),
            ArgsError::NoValue("--id".into())
        );
    }

    #[test]
    fn rejects_unknown_and_duplicate() {
        assert_eq!(
            parse(&["--what", "x"]).unwrap_err(),
            ArgsError::Unknown("--what".into())
        );
        assert_eq!(
            parse(&["--id", "a", "--id", "b"]).unwrap_err(),
            ArgsError::Duplicate("--id".into())
        );
    }
}
