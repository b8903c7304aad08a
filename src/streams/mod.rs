//! Interactive streams (issue 12 item 2, decision 0026): stdin, stdout,
//! stderr, a tty and its size, over a WebSocket with the Kubernetes
//! `v5.channel.k8s.io` subprotocol between a client and the agent, and over
//! a framed socket between the agent and the process's helper.
//!
//! Every WebSocket message is binary: its first byte is the channel, the
//! rest the payload. The same channels and payloads are used on the
//! helper's socket (see [`frames`]), so the agent only re-frames.

pub mod status;

/// The channels, the helper socket's framing and the resize payload
/// (berth-protocol's: the helper speaks them too).
pub use berth_protocol::streams::{frames, Resize, CLOSE, RESIZE, STATUS, STDERR, STDIN, STDOUT};

/// The Kubernetes subprotocol spoken on the WebSocket.
pub const PROTOCOL: &str = "v5.channel.k8s.io";
