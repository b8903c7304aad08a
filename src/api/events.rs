//! `GET /v1/events` (decision 0031): newline-delimited JSON, or
//! `text/event-stream` when the `Accept` header asks for it. Replays from
//! `since` (or the `Last-Event-ID` header), then follows live; ends at
//! `until` if given. Idle streams carry a heartbeat every 15 s (config
//! `events.heartbeat_seconds`): `{"type":"heartbeat","time":...}` in NDJSON,
//! a `: heartbeat` comment in SSE.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::{ApiError, Shared};
use crate::events::filter::{Query, Until};
use crate::events::{Event, EventBus, Since};

/// Lines a slow client may have queued before the stream waits for it.
const QUEUE: usize = 64;

/// How a stream is written.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Ndjson,
    Sse,
}

impl Format {
    fn event(self, event: &Event) -> Bytes {
        let json = serde_json::to_string(event).expect("an event serializes");
        Bytes::from(match self {
            Format::Ndjson => format!("{json}\n"),
            Format::Sse => format!(
                "id: {}\nevent: {}\ndata: {json}\n\n",
                event.seq,
                event.kind.as_str()
            ),
        })
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
    let bus = manager.events().clone();
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    tokio::spawn(stream(bus, query, format, tx));
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Sse => "text/event-stream",
    };
    let body = futures_util::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<Bytes, std::convert::Infallible>,
    );
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

/// Writes one subscriber's stream until the client goes or `until` passes.
async fn stream(bus: Arc<EventBus>, query: Query, format: Format, tx: mpsc::Sender<Bytes>) {
    let subscription = bus.subscribe(&query.since);
    let mut live = subscription.live;
    let deadline = match &query.until {
        Some(Until::Time(at)) => {
            let left = (*at - chrono::Utc::now()).to_std().unwrap_or_default();
            Some(tokio::time::Instant::now() + left)
        }
        _ => None,
    };
    let send = |event: &Event| {
        let tx = tx.clone();
        let line = format.event(event);
        async move { tx.send(line).await.is_ok() }
    };
    if let Some(reset) = &subscription.reset {
        if !send(reset).await {
            return;
        }
    }
    let mut last = 0;
    for event in &subscription.replay {
        if query.until.as_ref().is_some_and(|u| u.passed_by(event)) {
            return;
        }
        last = event.seq;
        if query.filter.matches(event) && !send(event).await {
            return;
        }
    }
    if let Some(Until::Seq(end)) = query.until {
        if last >= end {
            return;
        }
    }
    let heartbeat = bus.heartbeat();
    loop {
        let sleep_until = deadline.map(tokio::time::sleep_until);
        let next = tokio::select! {
            next = live.recv() => next,
            _ = tokio::time::sleep(heartbeat) => {
                if tx.send(format.heartbeat()).await.is_err() {
                    return;
                }
                continue;
            }
            _ = async { match sleep_until { Some(s) => s.await, None => std::future::pending().await } } => return,
            _ = tx.closed() => return,
        };
        match next {
            Ok(event) => {
                if event.seq <= last {
                    continue;
                }
                if query.until.as_ref().is_some_and(|u| u.passed_by(&event)) {
                    return;
                }
                last = event.seq;
                if query.filter.matches(&event) && !send(&event).await {
                    return;
                }
            }
            Err(RecvError::Lagged(missed)) => {
                // The receiver skipped ahead to what the channel still
                // holds: tell the client it lost events.
                let reset = bus.reset_event(
                    &format!("this subscriber fell {missed} events behind; re-list"),
                    None,
                );
                if !send(&reset).await {
                    return;
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
