use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A limit the container hit that ends it: the container's termination reason
/// becomes `<resource>-limit` and `message` is shown to the user.
///
/// ```
/// use berth_isolator::Limitation;
/// let limitation = Limitation::new("memory", "memory limit 64 MiB reached");
/// assert_eq!(limitation.reason(), "memory-limit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limitation {
    /// The resource, such as `memory` or `disk`.
    pub resource: String,
    /// A message for people: the limit and the usage that hit it.
    pub message: String,
}

impl Limitation {
    /// A limitation of `resource` with a message.
    pub fn new(resource: impl Into<String>, message: impl Into<String>) -> Self {
        Limitation {
            resource: resource.into(),
            message: message.into(),
        }
    }

    /// The container's termination reason for this limitation.
    pub fn reason(&self) -> String {
        format!("{}-limit", self.resource)
    }
}

/// The channel through which [`crate::Isolator::watch`] reports a limitation.
/// Cheap to clone; safe to call from any thread.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use berth_isolator::{Limitation, LimitationReporter};
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let reporter = LimitationReporter::new(move |l| sink.lock().unwrap().push(l));
/// reporter.report(Limitation::new("disk", "quota 20 MiB exceeded"));
/// assert_eq!(seen.lock().unwrap()[0].reason(), "disk-limit");
/// ```
#[derive(Clone)]
pub struct LimitationReporter(Arc<dyn Fn(Limitation) + Send + Sync>);

impl LimitationReporter {
    /// A reporter that calls `f` with each limitation.
    pub fn new(f: impl Fn(Limitation) + Send + Sync + 'static) -> Self {
        LimitationReporter(Arc::new(f))
    }

    /// Reports a limitation: the agent ends the container.
    pub fn report(&self, limitation: Limitation) {
        (self.0)(limitation)
    }
}

impl fmt::Debug for LimitationReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimitationReporter")
    }
}
