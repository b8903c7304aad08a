//! The isolator contract of berth.
//!
//! An isolator fences a container in along one axis (cpu, memory, network
//! class, disk, ...). berth composes isolators by name, in the fixed order of
//! the agent's `isolation` list, and drives every one of them — built-in or
//! plugin — through the same lifecycle, learned from the Apache Mesos
//! containerizer:
//!
//! | step | when | what the isolator does |
//! | --- | --- | --- |
//! | [`Isolator::validate`] | before anything touches the host | refuse a bad request, naming the field |
//! | [`Isolator::prepare`] | before the bundle is written | create its host state (cgroups, ...) and return a [`Contribution`] to the launch |
//! | [`Isolator::isolate`] | once the container's pid exists, before the command is exec'd | place the pid (cgroup attach, ...) |
//! | [`Isolator::watch`] | right after `isolate` | report a [`Limitation`] that must end the container |
//! | [`Isolator::update`] | while running | apply new [`Resources`] |
//! | [`Isolator::usage`] / [`Isolator::status`] | any time | report statistics and state |
//! | [`Isolator::scrape`] | at every metrics scrape | the figures the metrics show, cheaply (default: `usage`) |
//! | [`Isolator::exit_limitation`] | after the container's processes are gone | say whether a limit caused the exit |
//! | [`Isolator::cleanup`] | at most once, after all processes are gone | release everything; tolerate unknown ids |
//! | [`Isolator::recover`] | when the agent starts | rebuild in-memory state from what it persisted |
//!
//! Prepare runs in the configured order and cleanup in the reverse order. If
//! `prepare` of a later isolator fails, the agent cleans up the earlier ones:
//! an isolator never has to undo another's work, but it must undo its own
//! partial work before returning an error from `prepare`. An isolator that
//! knows its contribution up front ([`Isolator::early_contribution`]) has its
//! `prepare` run on another thread, in order with the other such isolators,
//! while the launch goes on; every `prepare` has ended before the first
//! `isolate` and before any `cleanup`.
//!
//! # Example
//!
//! A small isolator that gives every container an environment variable and
//! reports how many containers it has seen:
//!
//! ```
//! use std::collections::BTreeSet;
//! use std::sync::Mutex;
//! use berth_isolator::{
//!     ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError, Usage,
//! };
//!
//! #[derive(Default)]
//! struct Greeter {
//!     live: Mutex<BTreeSet<ContainerId>>,
//! }
//!
//! impl Isolator for Greeter {
//!     fn name(&self) -> &str {
//!         "greeter"
//!     }
//!
//!     fn prepare(&self, id: &ContainerId, _config: &ContainerConfig) -> Result<Contribution, IsolatorError> {
//!         self.live.lock().unwrap().insert(id.clone());
//!         let mut contribution = Contribution::default();
//!         contribution.env.insert("GREETING".into(), format!("hello {id}"));
//!         Ok(contribution)
//!     }
//!
//!     fn usage(&self, _id: &ContainerId) -> Result<Usage, IsolatorError> {
//!         let mut usage = Usage::new();
//!         usage.insert("live_containers".into(), self.live.lock().unwrap().len().into());
//!         Ok(usage)
//!     }
//!
//!     fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
//!         self.live.lock().unwrap().remove(id);
//!         Ok(())
//!     }
//! }
//!
//! let greeter = Greeter::default();
//! let id = ContainerId::new("web-1").unwrap();
//! let config = ContainerConfig::for_command(id.clone(), ["sh", "-c", "echo $GREETING"]);
//! let contribution = greeter.prepare(&id, &config).unwrap();
//! assert_eq!(contribution.env["GREETING"], "hello web-1");
//! assert_eq!(greeter.usage(&id).unwrap()["live_containers"], 1);
//! greeter.cleanup(&id).unwrap();
//! greeter.cleanup(&id).unwrap(); // unknown ids are tolerated
//! ```

mod contribution;
mod error;
mod id;
mod limitation;
mod resources;
mod states;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use contribution::{Contribution, ContributionConflict, DeviceNode, Mount};
pub use error::IsolatorError;
pub use id::{ContainerId, InvalidContainerId};
pub use limitation::{Limitation, LimitationReporter};
pub use resources::{
    fixed_at_launch, merge_fields, RequestForm, ResourceSection, ResourceTable, Resources, Section,
    TypedSection,
};
pub use states::{unknown, ContainerStates};

/// Statistics an isolator reports for one container, as a JSON object.
///
/// The agent shows each isolator's usage under the isolator's name, so keys
/// only need to be unique within one isolator. Use plain numbers with the
/// unit in the key (`user_seconds`, `limit_bytes`).
pub type Usage = serde_json::Map<String, serde_json::Value>;

/// State an isolator reports for one container (for example an assigned
/// network class id), shown by `berth inspect` under `status.<isolator>`.
pub type Status = serde_json::Map<String, serde_json::Value>;

/// What an isolator is told about a container it is asked to isolate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The container's id.
    pub id: ContainerId,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The environment the command starts with.
    pub env: BTreeMap<String, String>,
    /// The resources asked for.
    pub resources: Resources,
    /// The container's sandbox directory on the host (its writable space).
    pub sandbox: PathBuf,
    /// The root filesystem on the host, or `None` for the host's root.
    pub rootfs: Option<PathBuf>,
    /// The directory where the isolator may persist state for this container
    /// so that [`Isolator::recover`] can rebuild it (survives agent restarts,
    /// not host reboots).
    pub runtime_dir: PathBuf,
}

impl ContainerConfig {
    /// A config with the given id and command, no resources and empty paths:
    /// handy in tests and examples.
    pub fn for_command<I, S>(id: ContainerId, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ContainerConfig {
            id,
            command: command.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            resources: Resources::default(),
            sandbox: PathBuf::new(),
            rootfs: None,
            runtime_dir: PathBuf::new(),
        }
    }
}

/// A container the agent knew about before it restarted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveredContainer {
    /// The container's config as it was at launch (resources as last updated).
    pub config: ContainerConfig,
    /// The container's pid on the host, if it is still running.
    pub pid: Option<u32>,
}

/// The lifecycle every isolator implements. See the [crate docs](crate) for
/// the order of calls.
///
/// Methods take `&self`: the agent calls them from several threads, for
/// different containers at once, so keep per-container state behind a lock.
/// Every method but `name` and `prepare` has a default that does nothing, so
/// a small isolator implements only what it needs.
pub trait Isolator: Send + Sync {
    /// The name the agent's `isolation` list uses for this isolator.
    fn name(&self) -> &str;

    /// What this isolator supports on this host, shown by `GET /v1/info`.
    fn describe(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// Rebuilds in-memory state after an agent restart. `containers` are the
    /// ones the agent still knows; `orphans` are ids of containers the
    /// isolator may have state for but the agent does not know: clean them up.
    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        let _ = (containers, orphans);
        Ok(())
    }

    /// The section of a container's resources this isolator owns, if any:
    /// `{"<name>": {...}}` in a request is routed to it, and a request
    /// giving a section whose isolator the container does not use is
    /// refused. The isolator reads it with [`Resources::section`] (its own
    /// serde type is the schema) and checks it in [`Isolator::validate`].
    ///
    /// ```
    /// use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError, ResourceSection};
    /// struct Tokens;
    /// impl Isolator for Tokens {
    ///     fn name(&self) -> &str { "tokens" }
    ///     fn resource_section(&self) -> Option<ResourceSection> {
    ///         Some(ResourceSection::new("tokens"))
    ///     }
    ///     fn prepare(&self, _: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
    ///         Ok(Contribution::default())
    ///     }
    /// }
    /// assert_eq!(Tokens.resource_section().unwrap().name, "tokens");
    /// ```
    fn resource_section(&self) -> Option<ResourceSection> {
        None
    }

    /// Merges a live update into the current section (both this isolator's
    /// section; either may be empty). The default replaces the fields the
    /// update gives ([`merge_fields`]). Refuse with
    /// [`IsolatorError::InvalidConfig`] a field that cannot change while the
    /// container runs.
    ///
    /// ```
    /// use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError, Section};
    /// /// Its `slot` is fixed at launch.
    /// struct Slots;
    /// impl Isolator for Slots {
    ///     fn name(&self) -> &str { "slots" }
    ///     fn prepare(&self, _: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
    ///         Ok(Contribution::default())
    ///     }
    ///     fn merge_resources(&self, current: &Section, update: &Section) -> Result<Section, IsolatorError> {
    ///         if update.contains_key("slot") {
    ///             return Err(IsolatorError::invalid("resources.slots.slot", "fixed at launch"));
    ///         }
    ///         Ok(berth_isolator::merge_fields(current, update))
    ///     }
    /// }
    /// let update = serde_json::json!({"slot": 2});
    /// assert!(Slots.merge_resources(&Section::new(), update.as_object().unwrap()).is_err());
    /// ```
    fn merge_resources(
        &self,
        current: &Section,
        update: &Section,
    ) -> Result<Section, IsolatorError> {
        Ok(merge_fields(current, update))
    }

    /// The `linux.resources` keys of the OCI bundle that describe this
    /// isolator's limits for `resources`, for the agent to rewrite the
    /// bundle's `config.json` after an update so that it never disagrees
    /// with what is applied. `None` (the default) leaves the bundle as it is.
    ///
    /// ```
    /// use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError, Resources};
    /// use serde_json::{json, Map, Value};
    /// struct Pids;
    /// impl Isolator for Pids {
    ///     fn name(&self) -> &str { "pids" }
    ///     fn prepare(&self, _: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
    ///         Ok(Contribution::default())
    ///     }
    ///     fn oci_resources(&self, _: &ContainerId, r: &Resources) -> Result<Option<Map<String, Value>>, IsolatorError> {
    ///         let limit = r.raw_section("pids").and_then(|s| s.get("limit")).cloned();
    ///         let mut keys = Map::new();
    ///         keys.insert("pids".into(), json!({"limit": limit.unwrap_or(json!(-1))}));
    ///         Ok(Some(keys))
    ///     }
    /// }
    /// let id = ContainerId::new("c").unwrap();
    /// let r = Resources::with_section("pids", &json!({"limit": 50}));
    /// assert_eq!(Pids.oci_resources(&id, &r).unwrap().unwrap()["pids"]["limit"], 50);
    /// ```
    fn oci_resources(
        &self,
        id: &ContainerId,
        resources: &Resources,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, IsolatorError> {
        let _ = (id, resources);
        Ok(None)
    }

    /// Checks the request without touching the host. Return
    /// [`IsolatorError::InvalidConfig`] naming the field at fault.
    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        let _ = config;
        Ok(())
    }

    /// Creates this isolator's host state for the container and says what it
    /// adds to the launch. On error, undo any partial work before returning.
    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError>;

    /// What [`Isolator::prepare`] will contribute, when the isolator can
    /// tell without changing the host. `Some` lets the agent write the
    /// bundle and start the container's process while `prepare` runs on
    /// another thread (its cgroup writes off the launch's critical path);
    /// `prepare` still ends before [`Isolator::isolate`], and must return
    /// this very contribution (a launch whose `prepare` contributes
    /// something else fails). Its errors count as `prepare`'s. The default,
    /// `None`, makes the launch wait for `prepare`.
    ///
    /// ```
    /// use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError};
    ///
    /// /// Tags every container; its contribution depends on nothing else.
    /// struct Tag;
    ///
    /// fn tag() -> Contribution {
    ///     let mut contribution = Contribution::default();
    ///     contribution.env.insert("TAGGED".into(), "1".into());
    ///     contribution
    /// }
    ///
    /// impl Isolator for Tag {
    ///     fn name(&self) -> &str { "tag" }
    ///     fn early_contribution(&self, _: &ContainerId, _: &ContainerConfig)
    ///         -> Result<Option<Contribution>, IsolatorError> {
    ///         Ok(Some(tag()))
    ///     }
    ///     fn prepare(&self, _: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
    ///         // ... create host state, then say the same as above ...
    ///         Ok(tag())
    ///     }
    /// }
    ///
    /// let id = ContainerId::new("c1").unwrap();
    /// let config = ContainerConfig::for_command(id.clone(), ["true"]);
    /// let early = Tag.early_contribution(&id, &config).unwrap();
    /// assert_eq!(early, Some(Tag.prepare(&id, &config).unwrap()));
    /// ```
    fn early_contribution(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Option<Contribution>, IsolatorError> {
        let _ = (id, config);
        Ok(None)
    }

    /// Places the container's first process (host pid) under isolation. Runs
    /// before the command is exec'd, so everything it starts is isolated.
    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        let _ = (id, pid);
        Ok(())
    }

    /// The cgroup directories [`Isolator::isolate`] moves the process
    /// into, for an isolator whose `isolate` does nothing else. Where the
    /// process can move itself (cgroup v1, no user namespace), berth has
    /// it do so once `prepare` has ended, before its command runs, and
    /// does not call `isolate`: a process moving itself skips the kernel's
    /// global migration lock, whose first taker waits for an RCU grace
    /// period (decision 0047). Elsewhere `isolate` is called as usual. A
    /// failed move fails the launch. Known before `prepare` (the paths
    /// only, nothing is created). The default, none, always calls
    /// `isolate`.
    ///
    /// ```
    /// use std::path::PathBuf;
    /// use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError};
    ///
    /// /// One v1 cgroup per container below `root`.
    /// struct Freezer { root: PathBuf }
    ///
    /// impl Isolator for Freezer {
    ///     fn name(&self) -> &str { "freezer" }
    ///     fn prepare(&self, id: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
    ///         // ... mkdir root/<id> ...
    ///         Ok(Contribution::default())
    ///     }
    ///     fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
    ///         // ... write pid to root/<id>/cgroup.procs ...
    ///         Ok(())
    ///     }
    ///     fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolatorError> {
    ///         Ok(vec![self.root.join(id.as_str())])
    ///     }
    /// }
    ///
    /// let freezer = Freezer { root: "/sys/fs/cgroup/freezer/berth".into() };
    /// let id = ContainerId::new("c1").unwrap();
    /// assert_eq!(
    ///     freezer.joinable_cgroups(&id).unwrap(),
    ///     [PathBuf::from("/sys/fs/cgroup/freezer/berth/c1")]
    /// );
    /// ```
    fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolatorError> {
        let _ = id;
        Ok(Vec::new())
    }

    /// Starts watching for a limitation. When one is hit, call
    /// `reporter.report(...)` once: the agent then ends the container with
    /// reason `<resource>-limit`. Watching threads or tasks must stop by
    /// [`Isolator::cleanup`].
    fn watch(&self, id: &ContainerId, reporter: LimitationReporter) -> Result<(), IsolatorError> {
        let _ = (id, reporter);
        Ok(())
    }

    /// Applies new resources to a running container. Refuse (with
    /// [`IsolatorError::InvalidConfig`] or [`IsolatorError::Refused`]) a change
    /// the kernel would reject or that would kill the container, and leave the
    /// old limits in place.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let _ = (id, resources);
        Ok(())
    }

    /// Reports usage statistics.
    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let _ = id;
        Ok(Usage::new())
    }

    /// Reports the figures a metrics scrape (`GET /metrics`) shows: the keys
    /// of [`Isolator::usage`] the agent's metrics name, read as cheaply as
    /// possible. A scrape calls this for every running container, so an
    /// isolator whose `usage` reads more than that (counters no metric
    /// shows, limits it already knows) overrides it to read less. The
    /// default is `usage` itself.
    ///
    /// ```
    /// use berth_isolator::{
    ///     ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError, Usage,
    /// };
    ///
    /// struct Counting;
    ///
    /// impl Isolator for Counting {
    ///     fn name(&self) -> &str {
    ///         "counting"
    ///     }
    ///
    ///     fn prepare(&self, _: &ContainerId, _: &ContainerConfig) -> Result<Contribution, IsolatorError> {
    ///         Ok(Contribution::default())
    ///     }
    ///
    ///     fn usage(&self, _id: &ContainerId) -> Result<Usage, IsolatorError> {
    ///         let mut usage = Usage::new();
    ///         usage.insert("current".into(), 3.into());
    ///         usage.insert("history".into(), vec![1, 2, 3].into()); // costly, no metric shows it
    ///         Ok(usage)
    ///     }
    ///
    ///     fn scrape(&self, _id: &ContainerId) -> Result<Usage, IsolatorError> {
    ///         let mut usage = Usage::new();
    ///         usage.insert("current".into(), 3.into());
    ///         Ok(usage)
    ///     }
    /// }
    ///
    /// let id = ContainerId::new("c").unwrap();
    /// assert_eq!(Counting.scrape(&id).unwrap()["current"], Counting.usage(&id).unwrap()["current"]);
    /// ```
    fn scrape(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        self.usage(id)
    }

    /// Reports isolator state for `inspect`.
    fn status(&self, id: &ContainerId) -> Result<Status, IsolatorError> {
        let _ = id;
        Ok(Status::new())
    }

    /// Called after the container's processes are gone and before cleanup:
    /// returns the limitation that ended the container, if any.
    ///
    /// This exists because the exit of a process killed by a limit (the
    /// kernel OOM killer, say) is often seen before the limit's event is
    /// delivered; Mesos then reports a plain kill. Check counters here.
    fn exit_limitation(&self, id: &ContainerId) -> Result<Option<Limitation>, IsolatorError> {
        let _ = id;
        Ok(None)
    }

    /// Releases everything held for the container. Called at most once per
    /// container, after its processes are gone; must succeed for ids the
    /// isolator does not know.
    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        let _ = id;
        Ok(())
    }
}
