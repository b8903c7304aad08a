//! berth's built-in `memory` isolator.
//!
//! `resources.memory` becomes the hard limit (v1 `memory.limit_in_bytes`
//! and, where swap is accounted, `memory.memsw.limit_in_bytes` so swap
//! cannot bypass it; v2 `memory.max` and `memory.swap.max = 0`), and
//! `resources.memory_reservation` the soft limit (v1
//! `memory.soft_limit_in_bytes`, v2 `memory.low`).
//!
//! OOM kills end the container with the `memory` limitation: a watcher
//! thread per container (v1: an eventfd registered on `memory.oom_control`;
//! v2: polling `memory.events`), and, because the container's exit is often
//! seen before the OOM event, [`berth_isolator::Isolator::exit_limitation`]
//! reads the kernel's OOM kill counter.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_cgroups::CgroupRoot;
//! use berth_isolator_memory::{MemoryIsolator, MemoryOptions};
//!
//! let root = Arc::new(CgroupRoot::detect("/berth")?);
//! let memory = MemoryIsolator::new(root, MemoryOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod apply;
mod isolator;
mod limits;
mod oom;
mod resources;
mod stats;

pub use isolator::{MemoryIsolator, MemoryOptions};
pub use limits::{format_bytes, MemoryLimits, MAX_LIMIT, MIN_LIMIT};
pub use resources::MemoryResources;
