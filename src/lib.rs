//! berth: a per-host container agent. The library behind the `berth` and
//! `berth-shim` binaries.

pub mod bundle;
pub mod config;
pub mod container;
pub mod shim;
pub mod size;
pub mod api;
pub mod cli;
pub mod manager;
pub mod process;
pub mod store;
