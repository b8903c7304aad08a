//! Interactive streams (issue 12 item 2, decision 0026): stdin, stdout,
//! stderr, a tty and its size, over a WebSocket with the Kubernetes
//! `v5.channel.k8s.io` subprotocol between a client and the agent, and over
//! a framed socket between the agent and the process's helper.
//!
//! Every WebSocket message is binary: its first byte is the channel, the
//! rest the payload. The same channels and payloads are used on the
//! helper's socket (see [`frames`]), so the agent only re-frames.

pub mod frames;
pub mod status;

/// The Kubernetes subprotocol spoken on the WebSocket.
pub const PROTOCOL: &str = "v5.channel.k8s.io";

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
