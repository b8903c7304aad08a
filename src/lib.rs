//! berth: a per-host container agent. The library behind the `berth` and
//! `berth-shim` binaries.

pub mod agent;
pub mod api;
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
pub mod process;
pub mod restart_policy;
pub mod rootfs_users;
pub mod seccomp;
pub mod secrets;
pub mod shim;
pub mod size;
pub mod store;
pub mod streams;
pub mod userns;
pub mod volumes;
pub mod wire;
