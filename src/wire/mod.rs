//! What the API and the CLI exchange besides the container itself: request
//! bodies, query strings and answers, each defined once and used by both
//! sides (the agent serialises or parses, the CLI the other way round).
//! The launch and exec requests and the container live in
//! [`crate::container`]; this module holds the rest.

pub mod control;
pub mod exec;
pub mod files;
pub mod gc;
pub mod images;
pub mod info;
pub mod query;
pub mod stats;
pub mod volumes;

pub use control::{KillRequest, StopRequest};
pub use exec::{ExecCreated, ExecResult};
pub use gc::{GcRemoved, GcReport};
pub use stats::Stats;
