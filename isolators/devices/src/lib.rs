//! berth's built-in `devices` isolator.
//!
//! A container may use only the device nodes on Docker's default allow list
//! ([`default_rules`]: `null`, `zero`, `full`, `random`, `urandom`, `tty`,
//! `console`, `ptmx`, the pts, and `mknod` of anything) plus the host nodes
//! it asked for in `resources.devices` (Docker's `--device`). A node shipped
//! in a rootfs, or made with `mknod`, cannot be opened (`EPERM`).
//!
//! - cgroup v1: the container's `devices` cgroup gets `devices.deny a`, then
//!   one `devices.allow` per rule.
//! - cgroup v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`,
//!   generated from the rules ([`ebpf::program`]), is attached to the
//!   container's cgroup; it goes with the cgroup.
//!
//! Passed-through nodes are also returned as `linux.devices` entries, which
//! the shim creates in the container's `/dev`.

#![warn(missing_docs)]

pub mod ebpf;
mod error;
mod isolator;
mod node;
mod resources;
mod rule;
mod v1;

pub use error::DevicesError;
pub use isolator::DevicesIsolator;
pub use node::{host_node, PassedDevice};
pub use resources::{DeviceMapping, DevicesResources};
pub use rule::{default_rules, Access, DeviceKind, DeviceRule};
