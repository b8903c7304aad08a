//! `GET /v1/containers/{id}/logs`: a byte range of a stream, or a follow
//! that ends when the container has ended and everything was delivered.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{bool_param, u64_param, ApiError, Params, Shared};
use crate::container::State as ContainerState;

/// The header that tells at which logical offset the body starts.
pub const OFFSET_HEADER: &str = "x-berth-log-offset";

const CHUNK: usize = 64 * 1024;
const FOLLOW_POLL: Duration = Duration::from_millis(50);

pub(super) async fn logs(
    State(manager): Shared,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let stream = params.get("stream").map(String::as_str).unwrap_or("stdout");
    if !matches!(stream, "stdout" | "stderr") {
        return Err(ApiError::invalid(
            "stream",
            format!("expected stdout or stderr, got {stream:?}"),
        ));
    }
    let offset = u64_param(&params, "offset")?.unwrap_or(0);
    let length = u64_param(&params, "length")?;
    let follow = bool_param(&params, "follow")?.unwrap_or(false);
    let container = manager.get(&id)?;
    let mut updates = manager.subscribe(&id)?;
    let path: PathBuf = container.sandbox.join(stream);

    let body_stream = async_stream(path, offset, length, follow, move || {
        let ended = updates.borrow_and_update().state == ContainerState::Exited;
        ended
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(OFFSET_HEADER, offset.to_string())
        .body(Body::from_stream(body_stream))
        .expect("a valid response"))
}

/// Reads `path` from `offset`, up to `length` bytes; with `follow`, waits for
/// more until `ended()` says the container is gone and the file is drained.
fn async_stream(
    path: PathBuf,
    offset: u64,
    length: Option<u64>,
    follow: bool,
    mut ended: impl FnMut() -> bool + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(
        (None::<tokio::fs::File>, offset, length, false),
        move |(mut file, mut position, mut remaining, done)| {
            let path = path.clone();
            let mut ended_now = false;
            if follow && !done {
                ended_now = ended();
            }
            async move {
                if done || remaining == Some(0) {
                    return None;
                }
                loop {
                    if file.is_none() {
                        match tokio::fs::File::open(&path).await {
                            Ok(mut f) => {
                                if let Err(e) = f.seek(SeekFrom::Start(position)).await {
                                    return Some((Err(e), (None, position, remaining, true)));
                                }
                                file = Some(f);
                            }
                            Err(e)
                                if e.kind() == std::io::ErrorKind::NotFound
                                    && follow
                                    && !ended_now =>
                            {
                                tokio::time::sleep(FOLLOW_POLL).await;
                                continue;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                            Err(e) => return Some((Err(e), (None, position, remaining, true))),
                        }
                    }
                    let want = remaining.map_or(CHUNK, |r| r.min(CHUNK as u64) as usize);
                    let mut buf = vec![0u8; want];
                    let n = match file.as_mut().expect("opened above").read(&mut buf).await {
                        Ok(n) => n,
                        Err(e) => return Some((Err(e), (file, position, remaining, true))),
                    };
                    if n > 0 {
                        buf.truncate(n);
                        position += n as u64;
                        remaining = remaining.map(|r| r - n as u64);
                        return Some((Ok(Bytes::from(buf)), (file, position, remaining, false)));
                    }
                    // At the end of what is written. The check of `ended` was
                    // made before this read, so once it said "ended" and a
                    // read still finds nothing, everything has been delivered.
                    if !follow || ended_now {
                        return None;
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                    return Some((Ok(Bytes::new()), (file, position, remaining, false)));
                }
            }
        },
    )
}
