//! The channels of interactive streams (decision 0026), shared by the
//! agent's WebSocket (the Kubernetes `v5.channel.k8s.io` subprotocol) and
//! the framed socket between the agent and a process's helper
//! ([`frames`]): every message's first byte is the channel, the rest the
//! payload, so the agent only re-frames.

pub mod frames;

/// Client to process: input bytes.
pub const STDIN: u8 = 0;
/// Process to client: output bytes (with a tty: all of the terminal's).
pub const STDOUT: u8 = 1;
/// Process to client: error output (never with a tty).
pub const STDERR: u8 = 2;
/// Agent to client, last: a Kubernetes `Status` object as JSON.
pub const STATUS: u8 = 3;
/// Client to process: `{"Width":W,"Height":H}`, the terminal's size.
pub const RESIZE: u8 = 4;
/// Client to process (v5): `[255, 0]` closes stdin (EOF).
pub const CLOSE: u8 = 255;

/// The payload of [`RESIZE`], as kubectl sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_is_kubectls_shape() {
        let resize = Resize {
            width: 80,
            height: 24,
        };
        let json = serde_json::to_string(&resize).unwrap();
        assert_eq!(json, r#"{"Width":80,"Height":24}"#);
        assert_eq!(serde_json::from_str::<Resize>(&json).unwrap(), resize);
    }
}
