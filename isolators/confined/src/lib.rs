//! Host-side file operations on directories a container can write (its
//! sandbox, its rootfs layer, a log dir): the only way berth's root-owned
//! code opens, lists, reads, writes or removes anything in them.
//!
//! Every path is resolved by the kernel relative to a directory descriptor,
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)` (per-component `O_NOFOLLOW` walking where the
//! kernel has no openat2): no symlink is ever followed, no `..` leaves the
//! directory. Every open is `O_NONBLOCK` (a FIFO or device never blocks) and
//! checked by `fstat` to be a regular file or directory before use; reads
//! are bounded by the size seen at open ([`ReadFile`]); creation is
//! `O_CREAT|O_EXCL` or `O_NOFOLLOW`, never `O_TRUNC` through a link; removal
//! never follows a link and never crosses a mount ([`Dir::remove_tree`]).
//!
//! No string checks: the container owns the tree and may change it between
//! a check and a use; the kernel's walk is the check.

mod dir;
mod error;
mod file;
mod open;
mod remove;
mod walk;

pub use dir::{Dir, Entry, Kind, Stat};
pub use error::ConfinedError;
pub use file::ReadFile;
pub use remove::remove_tree;
pub use walk::Step;

/// Results of this crate.
pub type Result<T> = std::result::Result<T, ConfinedError>;
