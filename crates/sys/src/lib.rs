//! Host system calls and kernel file formats berth uses in more than one
//! place, each written once (decision 0036): the crash-safe file write and
//! the `/proc/self/mountinfo` parser, pidfds, a process's identity from
//! `/proc/PID/stat`, inode flags, and a launch's timestamps for its
//! benchmark. Outside the shim this is the only crate with `unsafe` system
//! calls. Callers keep their own error types and wrap
//! [`atomic::AtomicWriteError`] or the `io::Error` these return.

pub mod atomic;
pub mod fd_passing;
pub mod fs_context;
pub mod inode_flags;
pub mod launch_marks;
pub mod mountinfo;
pub mod openat2;
pub mod pidfd;
pub mod prefault;
pub mod proc_stat;
pub mod rename;
pub mod seq_file;
pub mod spawn;
pub mod thread_priority;
