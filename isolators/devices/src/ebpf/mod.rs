//! The cgroup v2 device filter: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` made from the rules ([`program`]), loaded
//! and attached to a container's cgroup ([`syscall`]).

pub mod insn;
pub mod program;
pub mod syscall;

pub use insn::Insn;
pub use program::program;
