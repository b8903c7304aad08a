//! The log file format of docs/log-format.md: the shim writes it, the
//! agent reads it, both through the names and line formats here.
//!
//! In a container's log dir, per stream (`stdout`, `stderr`):
//! [`segment`] files `S.<start>` and `S.<start>.gz`, and the timestamp
//! [`index`] `S.idx`. In its state dir the [`counters`] file `logs.json`.

pub mod counters;
pub mod index;
pub mod segment;
