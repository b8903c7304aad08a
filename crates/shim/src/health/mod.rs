//! `berth-shim health`: the per-container health checker (decision 0028),
//! running the probes its container's `health-config.json` asks for and
//! writing `health.json` (types in `berth_protocol::health`).

pub mod probe;
pub mod runner;
