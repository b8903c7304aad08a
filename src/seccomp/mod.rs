//! Seccomp profiles: berth's default (Docker's), profiles given per container
//! or by the agent's config, and their resolution into the OCI
//! `linux.seccomp` of a bundle. Compiling and installing the filter is
//! berth-seccomp's (the agent compiles, the shim installs).

pub mod default;
pub mod profile;
pub mod setting;

#[cfg(test)]
mod filter_tests;

pub use profile::{Host, Profile, ProfileError};
pub use setting::{SeccompSetting, SettingError};
