//! The event stream (decision 0031): what happened to containers, images
//! and the agent, numbered, kept in a bounded ring persisted across agent
//! restarts ([`ring`]), and fanned out to subscribers (`GET /v1/events`,
//! `berth events`) through a broadcast channel that never waits for them.

pub mod filter;
pub mod health;
pub mod ring;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::container::{ContainerView as Container, State};
use ring::Ring;

/// The events file's directory below the agent's work dir.
pub const DIR: &str = "events";

/// Events a subscriber may fall behind by before it is told to re-list.
pub const SUBSCRIBER_BACKLOG: usize = 4096;

/// `[events]` in the agent config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Events kept for `since` replays (in memory and on disk).
    pub ring_size: usize,
    /// Seconds between heartbeats on an idle stream.
    pub heartbeat_seconds: f64,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            ring_size: 10_000,
            heartbeat_seconds: 15.0,
        }
    }
}

impl EventSettings {
    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000_000).contains(&self.ring_size) {
            return Err(format!(
                "events.ring_size must be between 1 and 10000000, not {}",
                self.ring_size
            ));
        }
        if !(0.01..=3600.0).contains(&self.heartbeat_seconds) {
            return Err(format!(
                "events.heartbeat_seconds must be between 0.01 and 3600, not {}",
                self.heartbeat_seconds
            ));
        }
        Ok(())
    }
}

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Container,
    Image,
    Agent,
}

impl Kind {
    pub const ALL: [(&'static str, Kind); 3] = [
        ("container", Kind::Container),
        ("image", Kind::Image),
        ("agent", Kind::Agent),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Image => "image",
            Kind::Agent => "agent",
        }
    }
}

/// Every action an event may carry, Docker's names where Docker has one.
pub const ACTIONS: &[&str] = &[
    "create",
    "start",
    "restart",
    "die",
    "oom",
    "kill",
    "stop",
    "destroy",
    "health_status",
    "update",
    "pull",
    "delete",
    "reset",
];

/// Who the event is about.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Actor {
    pub fn of(container: &Container) -> Actor {
        Actor {
            id: container.id.to_string(),
            // A container's id is the name it was launched with.
            name: container.id.to_string(),
            image: container.image.clone(),
            labels: container.labels.clone(),
        }
    }
}

/// One event: a line of `GET /v1/events` and of the events file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic over the agent's whole life, across restarts.
    pub seq: u64,
    /// The emitting agent's boot epoch (nanoseconds since 1970 at its
    /// start): a change tells a client the agent restarted.
    pub epoch: u64,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub action: String,
    pub actor: Actor,
    /// Action-specific facts (`exit_code`, `signal`, `reason`, `status`...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Its JSON line, made once for the file and every subscriber.
    #[serde(skip)]
    line: std::sync::OnceLock<bytes::Bytes>,
}

impl Event {
    /// The event as one JSON line, newline included (made once).
    pub fn line(&self) -> &bytes::Bytes {
        self.line.get_or_init(|| {
            let mut line = serde_json::to_vec(self).expect("an event serializes");
            line.push(b'\n');
            bytes::Bytes::from(line)
        })
    }
}

type Attributes = serde_json::Map<String, serde_json::Value>;

/// The agent's event bus.
pub struct EventBus {
    ring: Mutex<Ring>,
    ring_size: usize,
    live: broadcast::Sender<Arc<Event>>,
    epoch: u64,
    heartbeat: std::time::Duration,
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// Only what happens from now on.
    Now,
    /// Events numbered above this one.
    Seq(u64),
    /// Events at or after this time.
    Time(chrono::DateTime<chrono::Utc>),
}

/// A subscription: the replayed events, then the live ones.
pub struct Subscription {
    /// Set when the replay could not start where asked: the client re-lists.
    pub reset: Option<Event>,
    pub replay: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
}

impl EventBus {
    /// A bus with an empty ring in memory; [`EventBus::load`] gives it its
    /// file once the agent owns its dirs.
    pub fn new(settings: &EventSettings) -> Arc<EventBus> {
        let epoch = chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .max(0) as u64;
        Arc::new(EventBus {
            ring: Mutex::new(Ring::in_memory(settings.ring_size)),
            ring_size: settings.ring_size,
            live: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            epoch,
            heartbeat: std::time::Duration::from_secs_f64(settings.heartbeat_seconds),
        })
    }

    /// Loads the ring kept under `work_dir` (an unreadable or unwritable
    /// file is logged and the bus goes on in memory), and records the
    /// agent's start. Called once, after the agent has locked its runtime
    /// dir (a second agent refused there never writes here) and before
    /// recovery emits anything.
    pub fn load(&self, work_dir: &Path) {
        let dir = work_dir.join(DIR);
        match Ring::open(&dir, self.ring_size) {
            Ok(ring) => *self.ring.lock().unwrap() = ring,
            Err(e) => tracing::error!("{e}; events are kept in memory only"),
        }
        self.emit(
            Kind::Agent,
            "start",
            Actor {
                id: self.epoch.to_string(),
                name: "berth".into(),
                image: None,
                labels: BTreeMap::new(),
            },
            Attributes::new(),
        );
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn heartbeat(&self) -> std::time::Duration {
        self.heartbeat
    }

    /// Numbers, stores and publishes an event; never waits for subscribers.
    pub fn emit(&self, kind: Kind, action: &str, actor: Actor, attributes: Attributes) -> u64 {
        let mut ring = self.ring.lock().unwrap();
        let event = Arc::new(Event {
            seq: ring.next_seq(),
            epoch: self.epoch,
            time: now(),
            kind,
            action: action.to_string(),
            actor,
            attributes,
            line: Default::default(),
        });
        ring.push(event.clone());
        // No receiver is not an error; a full one loses its oldest.
        let _ = self.live.send(event.clone());
        tracing::debug!(seq = event.seq, kind = kind.as_str(), action, "event");
        event.seq
    }

    /// A container event.
    pub fn container(&self, container: &Container, action: &str, attributes: Attributes) {
        self.emit(Kind::Container, action, Actor::of(container), attributes);
    }

    /// An image event about `reference`.
    pub fn image(&self, action: &str, reference: &str, digest: Option<&str>) {
        let mut attributes = Attributes::new();
        if let Some(digest) = digest {
            attributes.insert("digest".into(), digest.into());
        }
        let actor = Actor {
            id: digest.unwrap_or(reference).to_string(),
            name: reference.to_string(),
            image: Some(reference.to_string()),
            labels: BTreeMap::new(),
        };
        self.emit(Kind::Image, action, actor, attributes);
    }

    /// The events a change of a container's record means: `start`,
    /// `oom` and `die`, `update`. Called with the record before and after.
    pub fn record_changed(&self, old: &Container, new: &Container) {
        if new.state == State::Running && old.state != State::Running {
            self.container(new, "start", Attributes::new());
        } else if new.state == State::Exited && old.state != State::Exited {
            if new
                .limitation
                .as_ref()
                .is_some_and(|l| l.resource == "memory")
            {
                let mut oom = Attributes::new();
                oom.insert("reason".into(), "memory-limit".into());
                self.container(new, "oom", oom);
            }
            self.container(new, "die", die_attributes(new));
        } else if new.state == State::Running && old.resources != new.resources {
            self.container(new, "update", Attributes::new());
        }
    }

    /// A subscription from `since`: replayed events and the live receiver,
    /// taken together so that nothing falls between them.
    pub fn subscribe(&self, since: &Since) -> Subscription {
        let ring = self.ring.lock().unwrap();
        let live = self.live.subscribe();
        let oldest = ring.oldest_seq();
        let (replay, reset): (Vec<Arc<Event>>, Option<String>) = match since {
            Since::Now => (Vec::new(), None),
            Since::Seq(after) => {
                let missed = ring.trimmed() && oldest.is_some_and(|o| o > after.saturating_add(1));
                (
                    ring.iter().filter(|e| e.seq > *after).cloned().collect(),
                    missed.then(|| format!("events after {after} are no longer kept")),
                )
            }
            Since::Time(at) => {
                let first_time = ring.iter().next().and_then(|e| parse_time(&e.time));
                let missed = ring.trimmed() && first_time.is_some_and(|t| t > *at);
                (
                    ring.iter()
                        .filter(|e| parse_time(&e.time).is_none_or(|t| t >= *at))
                        .cloned()
                        .collect(),
                    missed.then(|| format!("events since {} are no longer kept", at.to_rfc3339())),
                )
            }
        };
        let reset = reset.map(|message| self.reset_event(&message, oldest));
        Subscription {
            reset,
            replay,
            live,
        }
    }

    /// The `reset` event a stream begins with (or carries, after falling
    /// behind): the client lost events and should re-list. Never stored.
    pub fn reset_event(&self, message: &str, resume: Option<u64>) -> Event {
        let mut attributes = Attributes::new();
        attributes.insert("message".into(), message.into());
        if let Some(resume) = resume {
            attributes.insert("resume_seq".into(), resume.into());
        }
        Event {
            seq: resume.map(|s| s.saturating_sub(1)).unwrap_or_default(),
            epoch: self.epoch,
            time: now(),
            kind: Kind::Agent,
            action: "reset".into(),
            actor: Actor {
                id: self.epoch.to_string(),
                name: "berth".into(),
                image: None,
                labels: BTreeMap::new(),
            },
            attributes,
            line: Default::default(),
        }
    }

    /// The latest `health_status` of a container, as its `attributes.at`.
    pub fn last_health_change(&self, id: &str) -> Option<String> {
        let ring = self.ring.lock().unwrap();
        let found = ring
            .iter()
            .rev()
            .find(|e| e.action == "health_status" && e.actor.id == id)
            .and_then(|e| e.attributes.get("at")?.as_str().map(str::to_string));
        found
    }
}

/// `exit_code`, `signal` and `reason` of a `die`.
fn die_attributes(container: &Container) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(code) = container.exit_code {
        attributes.insert("exit_code".into(), code.into());
    }
    if let Some(signal) = container.signal {
        attributes.insert("signal".into(), signal.into());
    }
    if let Some(reason) = &container.reason {
        attributes.insert("reason".into(), reason.as_str().into());
    }
    attributes
}

/// Attributes from `(key, value)` pairs.
pub fn attributes<const N: usize>(pairs: [(&str, serde_json::Value); N]) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub(crate) fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
