use std::io;
use std::path::PathBuf;

/// What an isolator returns when a step fails. The agent maps the variants
/// to API errors: `InvalidConfig` to 400, `Conflict` to 409, the rest to 500
/// (or to a refused update).
#[derive(Debug, thiserror::Error)]
pub enum IsolatorError {
    /// The request is wrong; `field` names the request field at fault
    /// (`resources.memory`).
    #[error("invalid {field}: {message}")]
    InvalidConfig { field: String, message: String },
    /// The request conflicts with another container (a handle in use, ...).
    #[error("{message}")]
    Conflict { message: String },
    /// A live update was refused; the old limits stay.
    #[error("update refused: {message}")]
    Refused { message: String },
    /// The host cannot do what was asked (missing controller, ...).
    #[error("unsupported on this host: {message}")]
    Unsupported { message: String },
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The isolator has no state for this container.
    #[error("unknown container {id}")]
    UnknownContainer { id: String },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl IsolatorError {
    /// Shorthand for [`IsolatorError::InvalidConfig`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        IsolatorError::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`IsolatorError::Io`]: `op` is a verb such as `"write"`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        IsolatorError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
