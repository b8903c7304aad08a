//! `GET /v1/events` (decision 0031): newline-delimited JSON, or
//! `text/event-stream` when the `Accept` header asks for it. Replays from
//! `since` (or the `Last-Event-ID` header), then follows live; ends at
//! `until` if given. Idle streams carry a heartbeat every 15 s (config
//! `events.heartbeat_seconds`; a tick with nothing else sent since the one
//! before): `{"type":"heartbeat","time":...}` in NDJSON, a `: heartbeat`
//! comment in SSE. Events published within 5 ms of one another go out as one
//! chunk.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{ApiError, Shared};
use crate::events::filter::{Query, Until};
use crate::events::{Event, EventBus, Since};

/// How long a subscriber's stream waits after an event for more to send
/// with it.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(5);

/// How a stream is written.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Ndjson,
    Sse,
}

impl Format {
    fn event(self, event: &Event) -> Bytes {
        // Serialized once per event, whatever the number of subscribers.
        let line = event.line();
        match self {
            Format::Ndjson => line.clone(),
            Format::Sse => {
                let json = String::from_utf8_lossy(&line[..line.len() - 1]);
                Bytes::from(format!(
                    "id: {}\nevent: {}\ndata: {json}\n\n",
                    event.seq,
                    event.kind.as_str()
                ))
            }
        }
    }

    fn heartbeat(self) -> Bytes {
        Bytes::from(match self {
            Format::Ndjson => format!(
                "{}\n",
                serde_json::json!({"type": "heartbeat", "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)})
            ),
            Format::Sse => ": heartbeat\n\n".to_string(),
        })
    }
}

pub(super) async fn events(
    State(manager): Shared,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let mut query = Query::parse(&pairs).map_err(|e| ApiError::invalid(&e.field, e.message))?;
    if query.since == Since::Now {
        if let Some(last) = headers.get("last-event-id") {
            let seq = last
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "expected an event number"))?;
            query.since = Since::Seq(seq);
        }
    }
    let format = match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        Some(accept) if accept.contains("text/event-stream") => Format::Sse,
        _ => Format::Ndjson,
    };
    let feed = Feed::new(manager.events().clone(), query, format);
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Sse => "text/event-stream",
    };
    // Polled by the connection itself: no task or channel per subscriber;
    // a client that goes away drops the feed.
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let next = feed.next().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(next), feed))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// One subscriber's stream: the replay, then live events, heartbeats
/// when idle; ends at `until` or when the agent's bus closes.
struct Feed {
    bus: Arc<EventBus>,
    query: Query,
    format: Format,
    /// Lines ready to go (the reset and replay, at first).
    ready: VecDeque<Bytes>,
    live: broadcast::Receiver<Arc<Event>>,
    /// The last seq seen (replayed events are not sent twice).
    last: u64,
    deadline: Option<tokio::time::Instant>,
    /// Ticks every heartbeat period; a tick with nothing sent since the
    /// last one is a heartbeat. One timer for the stream's life, not one
    /// per wake-up (100 subscribers wake at every event).
    heartbeat: tokio::time::Interval,
    /// Something was sent since the last tick.
    sent: bool,
    done: bool,
}

impl Feed {
    fn new(bus: Arc<EventBus>, query: Query, format: Format) -> Feed {
        let subscription = bus.subscribe(&query.since);
        let deadline = match &query.until {
            Some(Until::Time(at)) => {
                let left = (*at - chrono::Utc::now()).to_std().unwrap_or_default();
                Some(tokio::time::Instant::now() + left)
            }
            _ => None,
        };
        let mut feed = Feed {
            bus: bus.clone(),
            query,
            format,
            ready: VecDeque::new(),
            live: subscription.live,
            last: 0,
            deadline,
            heartbeat: {
                let period = bus.heartbeat();
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            },
            sent: false,
            done: false,
        };
        if let Some(reset) = &subscription.reset {
            feed.ready.push_back(format.event(reset));
        }
        for event in &subscription.replay {
            if !feed.take(event) {
                break;
            }
        }
        if let Some(Until::Seq(end)) = feed.query.until {
            if feed.last >= end {
                feed.done = true;
            }
        }
        feed
    }

    /// Queues `event` if it is new and matches; false (and done) once
    /// `until` has passed.
    fn take(&mut self, event: &Event) -> bool {
        if event.seq <= self.last {
            return true;
        }
        if self
            .query
            .until
            .as_ref()
            .is_some_and(|u| u.passed_by(event))
        {
            self.done = true;
            return false;
        }
        self.last = event.seq;
        if self.query.filter.matches(event) {
            self.ready.push_back(self.format.event(event));
        }
        true
    }

    /// The lines ready, as one chunk.
    fn take_ready(&mut self) -> Option<Bytes> {
        match self.ready.len() {
            0 => None,
            1 => self.ready.pop_front(),
            _ => {
                let mut chunk =
                    bytes::BytesMut::with_capacity(self.ready.iter().map(Bytes::len).sum());
                for line in self.ready.drain(..) {
                    chunk.extend_from_slice(&line);
                }
                Some(chunk.freeze())
            }
        }
    }

    /// The next chunk to send: every line ready (a burst of events is one
    /// write), or a heartbeat.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.take_ready() {
                self.sent = true;
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            let deadline = self.deadline;
            let until = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = self.live.recv() => match next {
                    Ok(event) => {
                        self.take(&event);
                        // What else is published within COALESCE goes in
                        // the same chunk: a launch's `start` and a short
                        // command's `die` reach each subscriber as one
                        // write, not two wake-ups and writes on both sides.
                        tokio::time::sleep(COALESCE).await;
                        while let Ok(event) = self.live.try_recv() {
                            if !self.take(&event) {
                                break;
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        // The receiver skipped ahead to what the channel
                        // still holds: tell the client it lost events.
                        let reset = self.bus.reset_event(
                            &format!("this subscriber fell {missed} events behind; re-list"),
                            None,
                        );
                        self.ready.push_back(self.format.event(&reset));
                    }
                    Err(RecvError::Closed) => self.done = true,
                },
                _ = self.heartbeat.tick() => {
                    if !std::mem::take(&mut self.sent) {
                        return Some(self.format.heartbeat());
                    }
                }
                _ = until => self.done = true,
            }
        }
    }
}
