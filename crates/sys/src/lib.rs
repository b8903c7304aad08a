//! Host system calls and kernel file formats berth uses in more than one
//! place, each written once (decision 0036): the crash-safe file write and
//! the `/proc/self/mountinfo` parser. Callers keep their own error types and
//! wrap [`atomic::AtomicWriteError`] or the `io::Error` these return.

pub mod atomic;
pub mod mountinfo;
