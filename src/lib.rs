//! berth: a per-host container agent. The library behind the `berth`
//! binary; `berth-shim` is its own crate (`crates/shim`), built here as
//! this package's second binary so that `cargo build --bins` and the tests
//! (`CARGO_BIN_EXE_berth-shim`) find it beside `berth`.

pub mod agent;
pub mod agent_args;
pub mod api;
pub mod blocking;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod container;
pub mod events;
pub mod health;
pub mod images;
pub mod logs;
pub mod manager;
pub mod metrics;
pub mod notify;
pub mod plugins;
pub mod process;
pub mod restart_policy;
pub mod rootfs_users;
pub mod seccomp;
pub mod secrets;
pub mod side_threads;
pub mod size;
pub mod store;
pub mod streams;
pub mod timestamp;
pub mod userns;
pub mod volumes;
pub mod wire;
