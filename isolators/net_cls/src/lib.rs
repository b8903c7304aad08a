//! berth's built-in `net_cls` isolator.
//!
//! Every container gets a network class id, `primary << 16 | secondary`:
//! the primary handle is the agent's (`[net_cls] primary`), the secondary a
//! free one from `secondary_min..=secondary_max`, or the one asked for with
//! `resources.net_cls_handle`. The class id goes to `net_cls.classid` of the
//! container's cgroup, so every socket the container opens carries it, and
//! tc (`cgroup` classifier) and netfilter (`meta cgroup`) rules can shape or
//! account its traffic. `status` and `usage` report it as `0xAAAA0001`.
//!
//! Handles are freed at cleanup and persisted in the container's runtime
//! dir, so a restarted agent reserves them again.
//!
//! The net_cls hierarchy is mounted at `/sys/fs/cgroup/net_cls` where the
//! host has not mounted it (and is never unmounted). cgroup v2 has no
//! net_cls: the isolator refuses to start there rather than ignore class
//! ids silently (`docs/decisions/0005-net-cls-on-cgroup-v2.md`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_cgroups::CgroupRoot;
//! use berth_isolator_net_cls::{NetClsIsolator, NetClsOptions};
//!
//! let root = Arc::new(CgroupRoot::detect("/berth")?);
//! let net_cls = NetClsIsolator::new(root, NetClsOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod classid;
mod error;
mod handles;
mod hierarchy;
mod isolator;
mod persist;
mod resources;

pub use classid::ClassId;
pub use error::NetClsError;
pub use hierarchy::DEFAULT_MOUNT_POINT;
pub use isolator::{NetClsIsolator, NetClsOptions};
pub use resources::NetClsResources;
