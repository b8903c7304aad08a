//! `berth run --security-opt`: turns the options into the request's
//! `security_opt` object. A profile file is read here and sent as JSON: the
//! agent never reads client paths.

use super::{usage, Failure};

/// The `security_opt` object for `--security-opt` values.
pub fn security_opt(
    options: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let mut object = serde_json::Map::new();
    for option in options {
        let bad = |why: String| usage(format!("invalid --security-opt {option:?}: {why}"));
        let (key, value) = option
            .split_once(['=', ':'])
            .ok_or_else(|| bad("expected seccomp=VALUE".into()))?;
        match key {
            "seccomp" => {
                let setting = match value {
                    "default" | "unconfined" => value.into(),
                    "" => return Err(bad("expected default, unconfined or a file".into())),
                    path => {
                        let text = std::fs::read(path).map_err(|e| bad(format!("{path}: {e}")))?;
                        serde_json::from_slice::<serde_json::Value>(&text)
                            .map_err(|e| bad(format!("{path}: {e}")))?
                    }
                };
                object.insert("seccomp".into(), setting);
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
        let opts = |v: &[&str]| security_opt(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
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
