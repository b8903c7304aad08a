//! The Kubernetes `Status` sent on channel 3 when the process has ended:
//! `{"status":"Success"}`, or a `Failure` whose `details.causes` carry the
//! exit code (`reason: "ExitCode"`, `message: "N"`), as the kubelet sends.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    #[serde(default)]
    pub causes: Vec<Cause>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub reason: String,
    pub message: String,
}

impl Status {
    /// The status of a process that ended with `code` (128 + n for signal n).
    pub fn exited(code: i32) -> Status {
        if code == 0 {
            return Status {
                status: "Success".into(),
                ..Status::default()
            };
        }
        Status {
            status: "Failure".into(),
            message: format!("command terminated with non-zero exit code: {code}"),
            reason: "NonZeroExitCode".into(),
            details: Some(Details {
                causes: vec![Cause {
                    reason: "ExitCode".into(),
                    message: code.to_string(),
                }],
            }),
        }
    }

    /// A failure that is not the process's exit (it could not be started,
    /// the container ended meanwhile).
    pub fn failure(message: impl Into<String>) -> Status {
        Status {
            status: "Failure".into(),
            message: message.into(),
            reason: "InternalError".into(),
            details: None,
        }
    }

    /// The exit code this status carries: 0 for success, the `ExitCode`
    /// cause, or `None` for another failure.
    pub fn exit_code(&self) -> Option<i32> {
        if self.status == "Success" {
            return Some(0);
        }
        self.details
            .as_ref()?
            .causes
            .iter()
            .find(|c| c.reason == "ExitCode")
            .and_then(|c| c.message.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_the_bare_kubernetes_object() {
        let json = serde_json::to_string(&Status::exited(0)).unwrap();
        assert_eq!(json, r#"{"status":"Success"}"#);
    }

    #[test]
    fn exit_code_round_trips() {
        let json = serde_json::to_value(Status::exited(3)).unwrap();
        assert_eq!(json["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(json["details"]["causes"][0]["message"], "3");
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(back.exit_code(), Some(3));
        assert_eq!(Status::failure("gone").exit_code(), None);
    }
}
