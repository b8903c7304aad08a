//! Isolator plugins: isolators in any language, out of the agent's process
//! (issue 15, decision 0041, docs/plugin-protocol.md).
//!
//! A plugin is declared in the agent's config (`[[plugins]]`) and composed by
//! name in the `isolation` list like a built-in. [`PluginIsolator`] drives it
//! through the [`berth_isolator::Isolator`] lifecycle over one of two
//! transports: a long-lived process speaking JSON-RPC over its stdio
//! ([`long_lived`]), or one process per call ([`exec`]).

pub mod cgroup_settings;
pub mod config;
pub mod contribution;
pub mod exec;
pub mod isolator;
pub mod long_lived;
pub mod transport;

/// The messages, shared with plugins written in Rust (`berth-plugin`).
pub use berth_plugin::protocol;

pub use config::{PluginConfig, PluginMode, PluginPolicy, PluginTimeouts};
pub use isolator::PluginIsolator;
