//! The shim's command line: `--id ID --bundle DIR --state-dir DIR --log-dir DIR`.
//!
//! Parsed by hand: four required options do not justify a parser crate in a
//! binary that is started once per container.

use std::ffi::OsString;
use std::path::PathBuf;

use thiserror::Error;

/// What the agent tells the shim on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The container's id (used in diagnostics only).
    pub id: String,
    /// The OCI bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// Where `exit.json` and `shim.log` go.
    pub state_dir: PathBuf,
    /// Where the `stdout` and `stderr` log files go.
    pub log_dir: PathBuf,
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
}

impl Args {
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
            if !matches!(
                name.as_str(),
                "--id" | "--bundle" | "--state-dir" | "--log-dir"
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
                "--state-dir" => set_once(&mut state_dir, value.into(), &name)?,
                _ => set_once(&mut log_dir, value.into(), &name)?,
            }
        }

        Ok(Args {
            id: id.ok_or(ArgsError::Missing("--id"))?,
            bundle: bundle.ok_or(ArgsError::Missing("--bundle"))?,
            state_dir: state_dir.ok_or(ArgsError::Missing("--state-dir"))?,
            log_dir: log_dir.ok_or(ArgsError::Missing("--log-dir"))?,
        })
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

    fn parse(args: &[&str]) -> Result<Args, ArgsError> {
        Args::parse(args.iter().map(OsString::from))
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
            Args {
                id: "c1".into(),
                bundle: "/b".into(),
                state_dir: "/s".into(),
                log_dir: "/l".into(),
            }
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
