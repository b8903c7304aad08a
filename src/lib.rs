//! berth: a per-host container agent. The library behind the `berth` and
//! `berth-shim` binaries.

pub mod shim;
