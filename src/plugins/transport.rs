//! What the plugin isolator needs of a transport, and the handshake both
//! transports do.

use serde_json::{Map, Value};

use super::protocol::{self, HandshakeParams, HandshakeResult, RpcError};

/// Why a call did not return a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with an error.
    #[error("{}", .0.message)]
    Rpc(RpcError),
    /// The plugin did not answer: it crashed, hung past the timeout, is not
    /// running, or its reply was not a valid one. The policy decides.
    #[error("{0}")]
    Failed(String),
}

/// A way to call a plugin.
pub trait Transport: Send + Sync {
    /// Calls `method`, waiting at most the method's timeout.
    fn call(&self, method: &str, params: Value) -> Result<Value, CallError>;
    /// The last successful handshake's result.
    fn handshake(&self) -> Option<HandshakeResult>;
    /// State for `GET /v1/info`: state, pid, restarts, last_error.
    fn describe(&self) -> Map<String, Value>;
}

/// Sends `handshake` with `call` and checks the result.
pub fn handshake(
    name: &str,
    params: &HandshakeParams,
    call: impl FnOnce(Value) -> Result<Value, CallError>,
) -> Result<HandshakeResult, String> {
    let params = serde_json::to_value(params).map_err(|e| e.to_string())?;
    let result = match call(params) {
        Ok(result) => result,
        Err(CallError::Rpc(e)) if e.code == protocol::code::VERSION_MISMATCH => {
            return Err(format!(
                "protocol version mismatch: berth speaks {:?}, the plugin refused them: {}",
                protocol::VERSIONS,
                protocol::bounded(&e.message, 512)
            ))
        }
        Err(e) => return Err(format!("handshake: {e}")),
    };
    let result: HandshakeResult = serde_json::from_value(result)
        .map_err(|e| format!("handshake: the plugin's reply is not a handshake result: {e}"))?;
    if !protocol::VERSIONS.contains(&result.version) {
        return Err(format!(
            "protocol version mismatch: berth speaks {:?}, the plugin chose {}",
            protocol::VERSIONS,
            result.version
        ));
    }
    if result.name != name {
        return Err(format!(
            "handshake: the plugin calls itself {:?}, the config {name:?}",
            protocol::bounded(&result.name, 64)
        ));
    }
    if let Some(section) = &result.section {
        if section.name != name {
            return Err(format!(
                "handshake: a plugin's resource section is named after it ({name:?}), not {:?}",
                protocol::bounded(&section.name, 64)
            ));
        }
    }
    Ok(result)
}

pub use super::protocol::read_line;
