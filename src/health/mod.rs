//! Health checks (decision 0028): the request and result types live in
//! berth-protocol (the agent and `berth-shim health` share them); the
//! checker itself is in the shim crate.

pub use berth_protocol::health::*;
