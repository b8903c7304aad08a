//! Seccomp profiles: berth's default (Docker's), profiles given per container
//! or by the agent's config, and their resolution into the OCI
//! `linux.seccomp` of a bundle. The shim side, which compiles and installs
//! the filter, is `shim::seccomp`.

pub mod default;
pub mod profile;
pub mod setting;

pub use profile::{Host, Profile, ProfileError};
pub use setting::{SeccompSetting, SettingError};
