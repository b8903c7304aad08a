//! `berth events`: the agent's event stream, one line per event (or the
//! raw JSON with `--json`), until the stream ends (`--until`), the reader
//! goes away or Ctrl-C.

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use tokio::io::AsyncWriteExt;

use super::client::{Client, ClientError};
use super::{time_arg, usage, Failure};
use crate::events::Event;

/// `berth events`' flags.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Replay from here: an event number (events after it) or a time
    /// (RFC 3339, a date, `10m` ago, or epoch seconds with a fraction).
    #[arg(long, value_name = "SEQ|TIME")]
    pub since: Option<String>,
    /// End the stream here: an event number or a time.
    #[arg(long, value_name = "SEQ|TIME")]
    pub until: Option<String>,
    /// type=container|image|agent, action=NAME, container=ID, label=K[=V]
    /// (repeatable; values of one key are alternatives, keys all apply).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Print each event as its JSON line.
    #[arg(long)]
    pub json: bool,
}

/// A `--since`/`--until` value for the API: a number stays an event
/// number; anything else is a time.
fn point(flag: &str, value: &str) -> Result<String, Failure> {
    if value.trim().parse::<u64>().is_ok() {
        return Ok(value.trim().to_string());
    }
    let time = time_arg::parse_time(value, chrono::Utc::now())
        .map_err(|e| usage(format!("invalid --{flag} {e}")))?;
    Ok(time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

/// The request path for the flags.
pub fn path(args: &EventsArgs) -> Result<String, Failure> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(since) = &args.since {
        query.append_pair("since", &point("since", since)?);
    }
    if let Some(until) = &args.until {
        query.append_pair("until", &point("until", until)?);
    }
    for filter in &args.filters {
        let (key, value) = filter
            .split_once('=')
            .ok_or_else(|| usage(format!("invalid --filter {filter:?}: expected KEY=VALUE")))?;
        if !["type", "action", "container", "label"].contains(&key) {
            return Err(usage(format!(
                "invalid --filter {filter:?}: the key must be type, action, container or label"
            )));
        }
        query.append_pair(key, value);
    }
    Ok(format!("/v1/events?{}", query.finish()))
}

/// One event as a line: `TIME TYPE ACTION ID (key=value, ...)`.
pub fn human(event: &Event) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut details = vec![format!("seq={}", event.seq)];
    if let Some(image) = &event.actor.image {
        details.push(format!("image={image}"));
    }
    details.extend(
        event
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v))),
    );
    details.extend(event.actor.labels.iter().map(|(k, v)| format!("{k}={v}")));
    format!(
        "{} {} {} {} ({})\n",
        event.time,
        event.kind.as_str(),
        event.action,
        event.actor.id,
        details.join(", ")
    )
}

pub async fn events(client: &Client, args: EventsArgs) -> Result<i32, Failure> {
    let path = path(&args)?;
    let response = client.send(Method::GET, &path, None).await?;
    let mut body = response.into_body();
    let mut stdout = tokio::io::stdout();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            if line.is_empty() {
                continue;
            }
            // A heartbeat is no event: it keeps an idle stream open.
            let Ok(event) = serde_json::from_slice::<Event>(line) else {
                continue;
            };
            if args.json {
                out.extend_from_slice(line);
                out.push(b'\n');
            } else {
                out.extend_from_slice(human(&event).as_bytes());
            }
        }
        if !out.is_empty() {
            stdout
                .write_all(&out)
                .await
                .and(stdout.flush().await)
                .map_err(ClientError::Output)?;
        }
    }
    Ok(0)
}
