//! `berth run --security-opt`: turns the options into the request's
//! `security_opt` object. A profile file is read here and sent as JSON: the
//! agent never reads client paths.

use super::{usage, Failure};
use crate::container::SecurityOpt;
use crate::seccomp::SeccompSetting;

/// The request's `security_opt` for `--security-opt` values (a profile is
/// parsed here as the agent parses it).
pub fn security_opt(options: &[String]) -> Result<SecurityOpt, Failure> {
    let mut object = SecurityOpt::default();
    for option in options {
        let bad = |why: String| usage(format!("invalid --security-opt {option:?}: {why}"));
        let (key, value) = option
            .split_once(['=', ':'])
            .ok_or_else(|| bad("expected seccomp=VALUE".into()))?;
        match key {
            "seccomp" => {
                let setting = match value {
                    "default" => SeccompSetting::Default,
                    "unconfined" => SeccompSetting::Unconfined,
                    "" => return Err(bad("expected default, unconfined or a file".into())),
                    path => {
                        let text = std::fs::read(path).map_err(|e| bad(format!("{path}: {e}")))?;
                        serde_json::from_slice::<serde_json::Value>(&text)
                            .map_err(|e| bad(format!("{path}: {e}")))?;
                        let mut json = serde_json::Deserializer::from_slice(&text);
                        serde_path_to_error::deserialize(&mut json)
                            .map_err(|e| bad(format!("{path}: {}: {}", e.path(), e.inner())))?
                    }
                };
                object.seccomp = Some(setting);
            }
            other => return Err(bad(format!("unknown option {other:?} (known: seccomp)"))),
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_pass_and_files_are_read_and_sent() {
        let opts = |v: &[&str]| {
            security_opt(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map(|o| serde_json::to_value(o).unwrap())
        };
        assert_eq!(
            opts(&["seccomp=unconfined"]).unwrap()["seccomp"],
            "unconfined"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        let sent = opts(&[&format!("seccomp={}", path.display())]).unwrap();
        assert_eq!(sent["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        std::fs::write(&path, "{not json").unwrap();
        let err = opts(&[&format!("seccomp={}", path.display())]).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(opts(&["seccomp=/no/such/file"]).is_err());
        assert!(opts(&["apparmor=unconfined"])
            .unwrap_err()
            .message
            .contains("apparmor"));
        assert!(opts(&["seccomp"]).is_err());
    }
}
