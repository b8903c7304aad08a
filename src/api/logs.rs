//! `GET /v1/containers/{id}/logs`: a container's output, read from its log
//! segments (see `docs/log-format.md` and `crate::logs`).
//!
//! Parameters:
//!
//! - `stream=stdout|stderr|all` (default `stdout`). `all` interleaves both
//!   in arrival order, to the precision of a chunk (see `crate::logs::merge`);
//!   it takes `follow`, `since`, `tail` (the last N lines of the merged
//!   output) and `timestamps` but not `offset` or `length` (each stream has
//!   its own offsets).
//! - `frames=true` (with `stream=all`): each chunk comes in a frame naming
//!   its stream (`crate::logs::frames`, Docker's attach format), so a client
//!   can split the streams again and keep their arrival order.
//! - `exit=true` (with `frames=true&follow=true`): when the body ends because
//!   the container ended, a last frame on channel 3 holds its record (JSON):
//!   output and exit status in one request (`berth run`).
//! - `offset=N`: start at logical offset N (default 0). `length=N`: at most N
//!   bytes from there, any size, streamed in chunks.
//! - `tail=N`: start at the last N lines (a last line without newline
//!   counts). Not with `offset`; with `since`, the last N of the lines that
//!   arrived since then.
//! - `since=RFC3339`: start at the first line that arrived at or after that
//!   time (per the index; nothing if none did). Not with `offset`.
//! - `until=RFC3339`: stop before the first line that arrived after that
//!   time; with `tail`, the last N lines up to then; with `follow`, the
//!   body ends once the time has passed and what came before is delivered.
//! - `follow=true`: keep streaming as the container writes, across
//!   rotations; the body ends once the container has exited and everything
//!   was delivered.
//! - `timestamps=true`: prefix each line with its arrival time (RFC 3339,
//!   UTC, nanoseconds, then a space). This changes the bytes: `offset` then
//!   only says where to start, and `length` counts raw log bytes.
//!
//! - `format=jsonl`: one JSON object per line, `time`, `stream`, `log`
//!   and the container's `id`, `name` and `labels` (see
//!   `crate::logs::jsonl`), with any of the above but `frames`;
//!   content type `application/x-ndjson`.
//!
//! The header `x-berth-log-offset` gives the logical offset the body starts
//! at (single streams only; with `stream=all`, a stream whose start was
//! rotated away is named by `x-berth-log-rotated-away-stdout` or `-stderr`,
//! giving its first available offset). When the asked-for start has been rotated away,
//! the body starts at the first available offset instead and the header
//! `x-berth-log-rotated-away` gives that offset; with `length`, the range is
//! cut to what is left of it, and when all of it is gone the answer is 416
//! (code `rotated_away`) with the same header. Offsets past the end give an
//! empty body (or, with `follow`, wait for them). Bad parameters are 400,
//! naming the parameter.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::query::ApiQuery;
use super::{ApiError, Shared};
use crate::container::State as ContainerState;
use crate::wire::query::{LogsQuery, Window};
use tokio::sync::watch;

use crate::container::Container;
use crate::logs::follow::{drive, Cursor, CursorOptions, EndProbe, Follow, Step, CHUNK, POLL};
use crate::logs::frames::{frame, Channel};
use crate::logs::index::Index;
use crate::logs::jsonl::{Jsonl, Source};
use crate::logs::merge::Merge;
use crate::logs::segments::{list_with_end, Location};
use crate::logs::tail::tail_before;
use crate::logs::wake::DirWatch;
use crate::logs::{timestamps, LogError, Stream};
use crate::timestamp::Timestamp;
use berth_protocol::exit::ExitRecord;

/// The header that tells at which logical offset the body starts.
pub const OFFSET_HEADER: &str = "x-berth-log-offset";
/// The header that tells the asked-for start was rotated away, giving the
/// first offset still available.
pub const ROTATED_AWAY_HEADER: &str = "x-berth-log-rotated-away";

/// Which streams to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    One(Stream),
    All,
}

/// Where to start, before looking at the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Offset(u64),
    /// The last lines, of those since a time (Unix nanoseconds) if given.
    Tail(u64, Option<i64>),
    /// Unix nanoseconds.
    Since(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    which: Which,
    start: Start,
    length: Option<u64>,
    follow: bool,
    timestamps: bool,
    frames: bool,
    /// Unix nanoseconds: nothing that arrived later.
    until: Option<i64>,
    /// End a followed framed body with an exit frame.
    exit: bool,
    /// `format=jsonl`: one JSON object per line (see `crate::logs::jsonl`).
    jsonl: bool,
}

/// An RFC 3339 time parameter, as Unix nanoseconds.
fn time_param(value: &Option<String>, name: &str) -> Result<Option<i64>, ApiError> {
    value
        .as_ref()
        .map(|text| {
            timestamps::parse(text).ok_or_else(|| {
                ApiError::invalid(
                    name,
                    format!("expected an RFC 3339 time such as 2024-05-01T12:00:00Z, got {text:?}"),
                )
            })
        })
        .transpose()
}

fn parse(params: &LogsQuery, window: &Window) -> Result<Request, ApiError> {
    let which = match params.stream.as_deref() {
        None => Which::One(Stream::Stdout),
        Some("all") => Which::All,
        Some(name) => Which::One(Stream::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "stream",
                format!("expected stdout, stderr or all, got {name:?}"),
            )
        })?),
    };
    let (offset, length, tail) = (window.offset, window.length, params.tail);
    let since = time_param(&params.since, "since")?;
    let until = time_param(&params.until, "until")?;
    let (follow, timestamps, frames) = (params.follow, params.timestamps, params.frames);
    if frames && which != Which::All {
        return Err(ApiError::invalid("frames", "needs stream=all"));
    }
    let exit = params.exit;
    if exit && !(frames && follow) {
        return Err(ApiError::invalid(
            "exit",
            "needs frames=true and follow=true",
        ));
    }
    let jsonl = match params.format.as_deref() {
        None | Some("raw") => false,
        Some("jsonl") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "format",
                format!("expected raw or jsonl, got {other:?}"),
            ))
        }
    };
    if jsonl && frames {
        return Err(ApiError::invalid("frames", "not with format=jsonl"));
    }
    if tail.is_some() && offset.is_some() {
        return Err(ApiError::invalid("tail", "cannot be combined with offset"));
    }
    if since.is_some() && offset.is_some() {
        return Err(ApiError::invalid("since", "cannot be combined with offset"));
    }
    if which == Which::All {
        for (name, given) in [("offset", offset.is_some()), ("length", length.is_some())] {
            if given {
                return Err(ApiError::invalid(
                    name,
                    "not supported with stream=all (each stream has its own offsets)",
                ));
            }
        }
    }
    let start = match (tail, since) {
        (Some(lines), since) => Start::Tail(lines, since),
        (_, Some(time)) => Start::Since(time),
        _ => Start::Offset(offset.unwrap_or(0)),
    };
    Ok(Request {
        which,
        start,
        length,
        follow,
        timestamps,
        frames,
        until,
        exit,
        jsonl,
    })
}

/// The range to read of one stream, worked out from the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    offset: u64,
    length: Option<u64>,
    /// The first available offset, when the asked-for start was below it.
    rotated_away: Option<u64>,
}

/// Works out where to start reading `stream`. Blocking.
fn plan(dir: &std::path::Path, stream: Stream, request: &Request) -> Result<Plan, LogError> {
    let (segments, end) = list_with_end(dir, stream)?;
    let (offset, mut length) = match request.start {
        Start::Offset(offset) => (offset, request.length),
        Start::Tail(lines, since) => {
            let up_to = match request.until {
                Some(until) => Index::load(dir, stream)?.offset_after(until),
                None => None,
            };
            let mut range = tail_before(dir, stream, lines, up_to)?;
            if let Some(time) = since {
                let index = Index::load(dir, stream)?;
                let since_offset = index.offset_since(time).unwrap_or(end);
                range.start = range.start.max(since_offset.min(range.end));
            }
            // Without follow, "the last N lines" as of now, whatever is
            // written meanwhile.
            let length = match request.length {
                Some(length) => Some(length),
                None if !request.follow => Some(range.end - range.start),
                None => None,
            };
            (range.start, length)
        }
        Start::Since(time) => {
            let index = Index::load(dir, stream)?;
            (index.offset_since(time).unwrap_or(end), request.length)
        }
    };
    let mut plan = Plan {
        offset,
        length,
        rotated_away: None,
    };
    if let Location::RotatedAway { first } = segments.locate(offset) {
        // Only an explicit offset (or the default 0) can be below the
        // first kept byte; tail and since start inside what is kept, but a
        // stale index entry may not.
        plan.rotated_away = Some(first);
        plan.offset = first;
        length = length.map(|l| (offset + l).saturating_sub(first));
        plan.length = length;
    }
    Ok(plan)
}

pub(super) async fn logs(
    State(manager): Shared,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<LogsQuery>,
    ApiQuery(window): ApiQuery<Window>,
) -> Result<Response, ApiError> {
    let request = parse(&params, &window)?;
    let container = manager.get(&id)?;
    let dir: PathBuf = container.log_dir().to_path_buf();
    let (id, labels) = (container.id.to_string(), container.labels.clone());
    let follow = match request.follow {
        true => Some(ContainerFollow::new(
            manager.subscribe(&id)?,
            &dir,
            manager.state_dir(&container.id),
            request.exit,
        )),
        false => None,
    };
    let builder = Response::builder().header(
        header::CONTENT_TYPE,
        match request.jsonl {
            true => "application/x-ndjson",
            false => "application/octet-stream",
        },
    );

    let stream = match request.which {
        Which::One(stream) => stream,
        Which::All => {
            let (merge, rotated_away) = blocking(move || {
                let mut offsets = [0u64; 2];
                let mut rotated_away = [None; 2];
                let mut lines = 0;
                for ((stream, offset), rotated) in Stream::ALL
                    .into_iter()
                    .zip(&mut offsets)
                    .zip(&mut rotated_away)
                {
                    let plan = plan(&dir, stream, &request)?;
                    *offset = plan.offset;
                    *rotated = plan.rotated_away;
                    if let Start::Tail(..) = request.start {
                        lines += lines_from(&dir, stream, *offset, request.until)?;
                    }
                }
                // Each stream's last N lines: the merged last N are among
                // them, after the surplus.
                let surplus = match request.start {
                    Start::Tail(wanted, _) => lines.saturating_sub(wanted),
                    _ => 0,
                };
                let merge = Merge::new(
                    &dir,
                    offsets,
                    request.timestamps || request.jsonl,
                    request.until,
                )?
                .skipping(surplus)
                .framed(request.frames || request.jsonl);
                Ok((merge, rotated_away))
            })
            .await?;
            let mut builder = builder;
            for (stream, first) in Stream::ALL.into_iter().zip(rotated_away) {
                if let Some(first) = first {
                    let name = format!("{ROTATED_AWAY_HEADER}-{}", stream.name());
                    builder = builder.header(name, first);
                }
            }
            let body = match request.jsonl {
                true => Body::from_stream(drive(
                    Jsonl::new(merge, Source::Framed, &id, &labels),
                    follow,
                )),
                false => Body::from_stream(drive(merge, follow)),
            };
            return Ok(builder.body(body).expect("a valid response"));
        }
    };

    let (plan, cursor) = blocking(move || {
        let plan = plan(&dir, stream, &request)?;
        if plan.length == Some(0) && plan.rotated_away.is_some() {
            return Ok((plan, None));
        }
        let options = CursorOptions {
            offset: plan.offset,
            length: plan.length,
            timestamps: request.timestamps || request.jsonl,
            index: false,
            until: request.until,
        };
        Ok((plan, Some(Cursor::new(&dir, stream, &options)?)))
    })
    .await?;

    let Some(cursor) = cursor else {
        let first = plan.rotated_away.expect("checked above");
        let mut response = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "rotated_away",
            format!(
                "the asked-for range of {stream} has been rotated away; the first available offset is {first}"
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(ROTATED_AWAY_HEADER, HeaderValue::from(first));
        return Ok(response);
    };
    let mut builder = builder.header(OFFSET_HEADER, plan.offset);
    if let Some(first) = plan.rotated_away {
        builder = builder.header(ROTATED_AWAY_HEADER, first);
    }
    let body = match request.jsonl {
        true => Body::from_stream(drive(
            Jsonl::new(cursor, Source::One(stream), &id, &labels),
            follow,
        )),
        false => Body::from_stream(drive(cursor, follow)),
    };
    Ok(builder.body(body).expect("a valid response"))
}

/// A follower of a container's logs: woken by changes in its log dir and
/// by the container's state; ended once the container has exited.
struct ContainerFollow {
    updates: watch::Receiver<Container>,
    /// `None` when no inotify instance could be had: then it polls.
    dir: Option<DirWatch>,
    /// End with an exit frame holding the ended container's record.
    exit: bool,
    /// Where the shim records the container's end (`exit.json`), once all
    /// its output is written: seen there, the end is known before the
    /// agent tells it (see [`Follow::end_probe`]).
    state_dir: PathBuf,
}

impl ContainerFollow {
    fn new(
        updates: watch::Receiver<Container>,
        dir: &std::path::Path,
        state_dir: PathBuf,
        exit: bool,
    ) -> ContainerFollow {
        let dir = DirWatch::new(dir)
            .inspect_err(|e| {
                tracing::warn!(dir = %dir.display(), "no inotify watch for a log follower, polling: {e}");
            })
            .ok();
        ContainerFollow {
            updates,
            dir,
            exit,
            state_dir,
        }
    }
}

impl Follow for ContainerFollow {
    fn ended(&mut self) -> bool {
        self.updates.borrow_and_update().state == ContainerState::Exited
    }

    /// The shim writes its exit record after the last of the output, and
    /// a restart removes it before the next run begins: its end time names
    /// the run whose output is all on disk.
    fn end_probe(&self) -> Option<EndProbe> {
        let dir = self.state_dir.clone();
        Some(Box::new(move || {
            Some(ExitRecord::read(&dir).ok()??.finished_at)
        }))
    }

    fn ended_as(&mut self, seen: &str) -> bool {
        let container = self.updates.borrow_and_update();
        container.state == ContainerState::Exited
            && Timestamp::parse(seen).is_some_and(|seen| container.finished_at == Some(seen))
    }

    fn trailer(&mut self) -> Option<bytes::Bytes> {
        if !self.exit {
            return None;
        }
        let record = serde_json::to_vec(&*self.updates.borrow()).ok()?;
        Some(frame(Channel::Exit, &record).into())
    }

    async fn more(&mut self) {
        let Some(dir) = &mut self.dir else {
            return tokio::time::sleep(POLL).await;
        };
        tokio::select! {
            changed = dir.changed() => {
                if let Err(e) = changed {
                    tracing::warn!("log follower's inotify watch failed, polling: {e}");
                    self.dir = None;
                }
            }
            changed = self.updates.changed() => {
                // The manager dropped the container's channel: nothing will
                // say it ended any more; look again later.
                if changed.is_err() {
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}

/// The lines of `stream` from `offset` to its end now (or to where the
/// lines after `until` begin). Blocking.
fn lines_from(
    dir: &std::path::Path,
    stream: Stream,
    offset: u64,
    until: Option<i64>,
) -> Result<u64, LogError> {
    let (_, end) = list_with_end(dir, stream)?;
    let options = CursorOptions {
        offset,
        length: Some(end.saturating_sub(offset)),
        timestamps: false,
        index: false,
        until,
    };
    let mut cursor = Cursor::new(dir, stream, &options)?;
    let (mut lines, mut last) = (0, b'\n');
    while let Step::Data(bytes) = cursor.read_chunk(CHUNK)? {
        lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
        last = bytes.last().copied().unwrap_or(last);
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// Runs blocking log work (on this thread where the runtime allows, see
/// [`crate::blocking`]).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::blocking::run(work)
        .await
        .map_err(|e| internal(format!("log reader: {e}")))?
        .map_err(log_error)
}

/// A log file the confined readers refused (a symlink, a FIFO, a device
/// where a segment should be: a container of an older agent kept its logs
/// in its sandbox) is 403; anything else is the agent's failure.
fn log_error(e: LogError) -> ApiError {
    match &e {
        LogError::Read { source, .. } | LogError::List { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput
            ) =>
        {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
        }
        _ => internal(e.to_string()),
    }
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testing::write_segments;

    fn request(query: &str) -> Result<Request, String> {
        let params: LogsQuery = crate::wire::query::parse(query).map_err(|e| e.to_string())?;
        let window: Window = crate::wire::query::parse(query).map_err(|e| e.to_string())?;
        parse(&params, &window).map_err(|e| e.message)
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, named) in [
            ("stream=both", "invalid stream"),
            ("offset=-1", "invalid offset"),
            ("length=x", "invalid length"),
            ("tail=ten", "invalid tail"),
            ("since=yesterday", "invalid since"),
            ("follow=maybe", "invalid follow"),
            ("timestamps=2", "invalid timestamps"),
            ("tail=3&offset=4", "invalid tail"),
            ("since=2024-01-01T00:00:00Z&offset=1", "invalid since"),
            ("stream=all&offset=3", "invalid offset"),
            ("until=soon", "invalid until"),
            ("frames=true", "invalid frames"),
            ("stream=stderr&frames=true", "invalid frames"),
            ("stream=all&frames=true&exit=true", "invalid exit"),
            ("stream=all&follow=true&exit=true", "invalid exit"),
            ("format=json", "invalid format"),
            ("stream=all&frames=true&format=jsonl", "invalid frames"),
        ] {
            let message = request(query).unwrap_err();
            assert!(message.starts_with(named), "{query}: {message}");
        }
        let ok = request("stream=stderr&offset=5&length=7&follow=true&timestamps=1").unwrap();
        assert_eq!(ok.which, Which::One(Stream::Stderr));
        assert_eq!(ok.start, Start::Offset(5));
        assert_eq!(ok.length, Some(7));
        assert!(ok.follow && ok.timestamps);
    }

    #[test]
    fn rotated_away_starts_are_moved_and_ranges_cut() {
        let dir = tempfile::tempdir().unwrap();
        write_segments(dir.path(), Stream::Stdout, 100, &[b'x'; 50], 20, &[]);
        let plan_for =
            |query: &str| plan(dir.path(), Stream::Stdout, &request(query).unwrap()).unwrap();
        assert_eq!(
            plan_for("offset=120&length=5"),
            Plan {
                offset: 120,
                length: Some(5),
                rotated_away: None
            }
        );
        assert_eq!(
            plan_for(""),
            Plan {
                offset: 100,
                length: None,
                rotated_away: Some(100)
            }
        );
        assert_eq!(
            plan_for("offset=90&length=30"),
            Plan {
                offset: 100,
                length: Some(20),
                rotated_away: Some(100)
            }
        );
        // Entirely gone: the handler answers 416.
        assert_eq!(
            plan_for("offset=10&length=30"),
            Plan {
                offset: 100,
                length: Some(0),
                rotated_away: Some(100)
            }
        );
        assert_eq!(
            plan_for("tail=0"),
            Plan {
                offset: 150,
                length: Some(0),
                rotated_away: None
            }
        );
    }
}
