//! Which seccomp profile a container gets: the request's
//! `security_opt.seccomp` (`"default"`, `"unconfined"` or a profile object)
//! and the agent's `[security] seccomp` (`"default"`, `"unconfined"` or the
//! path of a profile file).

use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::profile::{Profile, ProfileError};

/// A container's seccomp setting.
#[derive(Debug, Clone, PartialEq)]
pub enum SeccompSetting {
    /// berth's default profile (Docker's).
    Default,
    /// No filter.
    Unconfined,
    /// A profile of its own.
    Profile(Box<Profile>),
}

/// The agent's `[security] seccomp` setting is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("security.seccomp: read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("security.seccomp: profile {}: {source}", path.display())]
    Profile {
        path: PathBuf,
        #[source]
        source: ProfileError,
    },
    #[error("security.seccomp: expected default, unconfined or an absolute path, got {0:?}")]
    Value(String),
}

impl SeccompSetting {
    /// The agent's setting: `default`, `unconfined` or an absolute path to a
    /// profile file, read now.
    pub fn from_config(value: &str) -> Result<SeccompSetting, SettingError> {
        match value {
            "default" => Ok(SeccompSetting::Default),
            "unconfined" => Ok(SeccompSetting::Unconfined),
            path if path.starts_with('/') => {
                let path = Path::new(path);
                let json = std::fs::read(path).map_err(|source| SettingError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let profile = Profile::parse(&json).map_err(|source| SettingError::Profile {
                    path: path.to_path_buf(),
                    source,
                })?;
                Ok(SeccompSetting::Profile(Box::new(profile)))
            }
            other => Err(SettingError::Value(other.to_string())),
        }
    }

    /// What `inspect` shows: `default`, `unconfined` or `custom`.
    pub fn mode(&self) -> &'static str {
        match self {
            SeccompSetting::Default => "default",
            SeccompSetting::Unconfined => "unconfined",
            SeccompSetting::Profile(_) => "custom",
        }
    }
}

impl Serialize for SeccompSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SeccompSetting::Profile(p) => p.serialize(serializer),
            other => serializer.serialize_str(other.mode()),
        }
    }
}

/// A string names a mode; an object is a profile (its fields' errors keep
/// their path, e.g. `security_opt.seccomp.syscalls[0].action`).
impl<'de> Deserialize<'de> for SeccompSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SettingVisitor;
        impl<'de> Visitor<'de> for SettingVisitor {
            type Value = SeccompSetting;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"default\", \"unconfined\" or a seccomp profile object")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<SeccompSetting, E> {
                match value {
                    "default" => Ok(SeccompSetting::Default),
                    "unconfined" => Ok(SeccompSetting::Unconfined),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SeccompSetting, A::Error> {
                let profile = Profile::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(SeccompSetting::Profile(Box::new(profile)))
            }
        }
        deserializer.deserialize_any(SettingVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_name_modes_and_objects_are_profiles() {
        let parse = |v: serde_json::Value| serde_json::from_value::<SeccompSetting>(v);
        assert_eq!(parse("default".into()).unwrap(), SeccompSetting::Default);
        assert_eq!(
            parse("unconfined".into()).unwrap(),
            SeccompSetting::Unconfined
        );
        assert!(parse("strict".into()).is_err());
        let custom = parse(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        }))
        .unwrap();
        assert_eq!(custom.mode(), "custom");
        let round = serde_json::to_value(&custom).unwrap();
        assert_eq!(parse(round).unwrap(), custom);
        let err = parse(serde_json::json!({"defaultAction": "SCMP_ACT_MAYBE"})).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_MAYBE"), "{err}");
    }

    #[test]
    fn config_values_are_modes_or_absolute_files() {
        assert_eq!(
            SeccompSetting::from_config("default").unwrap(),
            SeccompSetting::Default
        );
        assert!(matches!(
            SeccompSetting::from_config("relative.json"),
            Err(SettingError::Value(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        let setting = SeccompSetting::from_config(path.to_str().unwrap()).unwrap();
        assert_eq!(setting.mode(), "custom");
        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["Bad!"], "action": "SCMP_ACT_ERRNO"}]}"#).unwrap();
        let err = SeccompSetting::from_config(path.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("syscalls[0].names[0]"), "{err}");
    }
}
