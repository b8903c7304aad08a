//! The API's secret and config file fields, their checks, and the values
//! taken out of a launch request before it is recorded.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{MAX_TOTAL, MAX_VALUE, SECRETS_DIR};
use crate::container::LaunchRequest;

/// Most distinct config dirs per container (each is a tmpfs of its own and
/// a descriptor passed to the shim).
pub const MAX_CONFIG_DIRS: usize = 16;

/// A bad field of a request: the API answers 400 naming `field`. The
/// message never holds a value.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// Text that must never be shown: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretText {
    fn drop(&mut self) {
        // SAFETY: zeroes leave valid UTF-8.
        wipe(unsafe { self.0.as_bytes_mut() });
    }
}

/// A value in the agent's memory, wiped when dropped; `Debug` redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(Vec<u8>);

impl Value {
    pub fn new(bytes: Vec<u8>) -> Self {
        Value(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: a valid, aligned, exclusive reference; volatile so the
        // store is not optimized away.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

/// One entry of a launch request's `secrets`: `/run/secrets/NAME` holds the
/// value given (`value_base64`) or the content of `file`, read by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Also put the value in this environment variable (`--secret-env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// One entry of a launch request's `config_files`: `PATH/NAME` in the
/// container holds the value, `PATH` being a read-only dir of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFileSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The directory in the container.
    pub path: String,
}

/// The body of `PUT /v1/containers/{id}/secrets/{name}` and
/// `.../configs/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateFileRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// What a config file update does to the container (`--config-change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigChange {
    /// Nothing: the program watches the file itself (inotify on the dir).
    #[default]
    None,
    /// Restart the container, once per update.
    Restart,
    /// Send this signal to the container's first process.
    Signal(i32),
}

impl ConfigChange {
    /// `none`, `restart` or `signal:NAME` (`signal:SIGHUP`, `signal:HUP`).
    pub fn parse(value: &str) -> Option<ConfigChange> {
        match value {
            "none" => Some(ConfigChange::None),
            "restart" => Some(ConfigChange::Restart),
            _ => {
                let name = value.strip_prefix("signal:")?;
                let name = name.strip_prefix("SIG").unwrap_or(name);
                let signal: nix::sys::signal::Signal = format!("SIG{name}").parse().ok()?;
                Some(ConfigChange::Signal(signal as i32))
            }
        }
    }
}

/// The values taken out of a launch request, by name.
#[derive(Debug, Default, Clone)]
pub struct TakenValues {
    pub secrets: Vec<(String, Value)>,
    pub configs: Vec<(String, Value)>,
}

/// Checks a name: what a file name in one dir may be.
pub fn check_name(field: &str, name: &str) -> Result<(), InvalidField> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(invalid(
            field,
            format!("bad name {name:?}: 1 to 253 of [A-Za-z0-9._-], not starting with a dot"),
        ));
    }
    Ok(())
}

/// Checks a config dir: absolute, plain components, not `/`, not the
/// secrets dir.
pub fn check_config_dir(field: &str, path: &str) -> Result<PathBuf, InvalidField> {
    let p = Path::new(path);
    let plain = p.is_absolute()
        && !path.contains('\0')
        && p.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain || p.components().count() < 2 {
        return Err(invalid(
            field,
            format!("must be an absolute dir other than / with no . or .. in it, got {path:?}"),
        ));
    }
    let p: PathBuf = p.components().collect();
    if p.starts_with(SECRETS_DIR) || Path::new(SECRETS_DIR).starts_with(&p) {
        return Err(invalid(field, format!("{path:?} overlaps {SECRETS_DIR}")));
    }
    Ok(p)
}

/// Whether a config dir can be mounted in a container on the host's root:
/// below its private `/run` or `/tmp` tmpfs, or an existing dir.
fn host_root_can_hold(dir: &Path) -> bool {
    dir.starts_with("/run") || dir.starts_with("/tmp") || dir.is_dir()
}

/// The value of `value_base64` or of `file` (exactly one of them).
pub fn read_value(
    field: &str,
    value_base64: Option<&SecretText>,
    file: Option<&Path>,
) -> Result<Value, InvalidField> {
    match (value_base64, file) {
        (Some(text), None) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.0.as_bytes())
                .map_err(|_| invalid(format!("{field}.value_base64"), "not valid base64"))?;
            let value = Value::new(bytes);
            if value.bytes().len() > MAX_VALUE {
                return Err(invalid(
                    format!("{field}.value_base64"),
                    format!("larger than {MAX_VALUE} bytes"),
                ));
            }
            Ok(value)
        }
        (None, Some(path)) => read_file(&format!("{field}.file"), path),
        (Some(_), Some(_)) => Err(invalid(field, "give value_base64 or file, not both")),
        (None, None) => Err(invalid(field, "needs value_base64 or file")),
    }
}

/// Reads a file the agent can read: absolute path, a regular file (never a
/// FIFO or device: opened non-blocking and checked), at most [`MAX_VALUE`]
/// bytes.
fn read_file(field: &str, path: &Path) -> Result<Value, InvalidField> {
    if !path.is_absolute() {
        return Err(invalid(
            field,
            format!("must be an absolute path, got {}", path.display()),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| invalid(field, format!("{}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| invalid(field, format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(invalid(
            field,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(field, format!("{}: {e}", path.display())))?;
    let value = Value::new(bytes);
    if value.bytes().len() > MAX_VALUE {
        return Err(invalid(
            field,
            format!("{} is larger than {MAX_VALUE} bytes", path.display()),
        ));
    }
    Ok(value)
}

fn check_env_name(field: &str, var: &str) -> Result<(), InvalidField> {
    let ok = !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(invalid(field, format!("bad variable name {var:?}")));
    }
    Ok(())
}

/// Checks the request's secret and config fields; with `values`, reads
/// every value (a new launch), else (a relaunch of a recorded request) the
/// values must be absent: they come from the agent's memory.
fn check(request: &LaunchRequest, values: bool) -> Result<TakenValues, InvalidField> {
    let mut taken = TakenValues::default();
    let mut names = BTreeSet::new();
    let mut total = 0;
    for (i, s) in request.secrets.iter().enumerate() {
        let field = format!("secrets[{i}]");
        check_name(&format!("{field}.name"), &s.name)?;
        if !names.insert(s.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("secret {:?} given twice", s.name),
            ));
        }
        if let Some(var) = &s.env {
            check_env_name(&format!("{field}.env"), var)?;
            if request.env.contains_key(var) {
                return Err(invalid(
                    format!("{field}.env"),
                    format!("{var} is set in env too"),
                ));
            }
        }
        if values {
            let value = read_value(&field, s.value_base64.as_ref(), s.file.as_deref())?;
            total += value.bytes().len();
            if total > MAX_TOTAL {
                return Err(invalid(
                    "secrets",
                    format!("more than {MAX_TOTAL} bytes in all"),
                ));
            }
            taken.secrets.push((s.name.clone(), value));
        }
    }
    let mut names = BTreeSet::new();
    let mut per_dir: std::collections::BTreeMap<PathBuf, usize> = Default::default();
    for (i, c) in request.config_files.iter().enumerate() {
        let field = format!("config_files[{i}]");
        check_name(&format!("{field}.name"), &c.name)?;
        if !names.insert(c.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("config file {:?} given twice", c.name),
            ));
        }
        let dir = check_config_dir(&format!("{field}.path"), &c.path)?;
        if request.rootfs.is_none() && request.image.is_none() && !host_root_can_hold(&dir) {
            // The host's root is read-only in the container: nothing can
            // be created in it (and nothing must be, on the host).
            return Err(invalid(
                format!("{field}.path"),
                format!(
                    "{} does not exist on the host's root, which the container sees read-only: \
                     use a dir under /run or /tmp, an existing dir, or a rootfs or image",
                    dir.display()
                ),
            ));
        }
        if values {
            let value = read_value(&field, c.value_base64.as_ref(), c.file.as_deref())?;
            let total = per_dir.entry(dir).or_default();
            *total += value.bytes().len();
            if *total > MAX_TOTAL {
                return Err(invalid(
                    format!("{field}.path"),
                    format!("more than {MAX_TOTAL} bytes of config files in {}", c.path),
                ));
            }
            taken.configs.push((c.name.clone(), value));
        }
    }
    if config_dirs(request).len() > MAX_CONFIG_DIRS {
        return Err(invalid(
            "config_files",
            format!("more than {MAX_CONFIG_DIRS} distinct dirs"),
        ));
    }
    if let Some(change) = &request.config_change {
        if ConfigChange::parse(change).is_none() {
            return Err(invalid(
                "config_change",
                format!("expected restart, none or signal:NAME, got {change:?}"),
            ));
        }
    }
    Ok(taken)
}

/// For a new launch: checks the fields, reads the values and removes them
/// from the request, which is recorded (names, env vars and dirs stay).
pub fn take_values(request: &mut LaunchRequest) -> Result<TakenValues, InvalidField> {
    let taken = check(request, true)?;
    for s in request.secrets.iter_mut() {
        s.value_base64 = None;
        s.file = None;
    }
    for c in request.config_files.iter_mut() {
        c.value_base64 = None;
        c.file = None;
    }
    Ok(taken)
}

/// For a relaunch of a recorded request (values already taken).
pub fn check_recorded(request: &LaunchRequest) -> Result<(), InvalidField> {
    check(request, false).map(|_| ())
}

/// The config dirs of a request, each with its files' names, in order.
pub fn config_dirs(request: &LaunchRequest) -> Vec<(PathBuf, Vec<String>)> {
    let mut dirs: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for c in &request.config_files {
        let dir: PathBuf = Path::new(&c.path).components().collect();
        match dirs.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(c.name.clone()),
            None => dirs.push((dir, vec![c.name.clone()])),
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dirs_are_checked() {
        assert!(check_name("n", "db-password.txt").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b"] {
            assert!(check_name("n", bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_config_dir("p", "/etc/app/").unwrap(),
            PathBuf::from("/etc/app")
        );
        for bad in ["/", "etc", "/etc/../x", "/run/secrets/x", "/run"] {
            assert!(check_config_dir("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn change_parses() {
        assert_eq!(ConfigChange::parse("none"), Some(ConfigChange::None));
        assert_eq!(ConfigChange::parse("restart"), Some(ConfigChange::Restart));
        assert_eq!(
            ConfigChange::parse("signal:SIGHUP"),
            Some(ConfigChange::Signal(libc::SIGHUP))
        );
        assert_eq!(
            ConfigChange::parse("signal:USR1"),
            Some(ConfigChange::Signal(libc::SIGUSR1))
        );
        assert_eq!(ConfigChange::parse("signal:NOPE"), None);
        assert_eq!(ConfigChange::parse("reload"), None);
    }

    #[test]
    fn values_are_redacted_and_checked() {
        let text = SecretText("c2VjcmV0".into());
        assert_eq!(format!("{text:?}"), "<redacted>");
        let v = read_value("s", Some(&text), None).unwrap();
        assert_eq!(v.bytes(), b"secret");
        assert!(!format!("{v:?}").contains("secret"));
        let e = read_value("s", Some(&SecretText("!!".into())), None).unwrap_err();
        assert_eq!(e.field, "s.value_base64");
        assert!(read_value("s", None, None).is_err());
        assert_eq!(
            read_value("s", None, Some(Path::new("rel")))
                .unwrap_err()
                .field,
            "s.file"
        );
    }
}
