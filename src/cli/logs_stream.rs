//! `berth logs`' copy of a log answer to its file descriptors: one stream
//! to one fd, or both streams (`stream=all&frames=true`) each to its own fd
//! in arrival order. When the asked-for start was rotated away, it says so
//! on stderr and starts at the first complete line instead of in the
//! middle of one.

use http_body_util::BodyExt;
use hyper::Method;
use tokio::io::AsyncWriteExt;

use super::client::{Client, ClientError};
use crate::api::logs::ROTATED_AWAY_HEADER;
use crate::container::ContainerView as Container;
use crate::logs::frames::{Channel, Demux};
use crate::logs::Stream;

/// Streams the log answer at `path` into `out`, chunk by chunk.
pub async fn stream_log(
    client: &Client,
    path: &str,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    let response = client.send(Method::GET, path, None).await?;
    let rotated_away = response
        .headers()
        .get(ROTATED_AWAY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The body starts at the first byte kept, likely mid-line: skip to the
    // next line start.
    let mut skipping = rotated_away.is_some();
    if let Some(first) = rotated_away {
        let mut stderr = tokio::io::stderr();
        let notice = format!("berth: output before offset {first} was rotated away\n");
        let _ = stderr.write_all(notice.as_bytes()).await;
        // tokio's stderr writes on a blocking thread: wait for it.
        let _ = stderr.flush().await;
    }
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
        let Some(mut data) = frame.data_ref().map(|d| &d[..]) else {
            continue;
        };
        if skipping {
            match data.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    data = &data[at + 1..];
                    skipping = false;
                }
                None => continue,
            }
        }
        out.write_all(data).await.map_err(ClientError::Output)?;
        out.flush().await.map_err(ClientError::Output)?;
    }
    Ok(())
}

/// Streams a framed answer of both streams at `path`: stdout's chunks into
/// `stdout`, stderr's into `stderr`, in the order they arrived. Returns the
/// ended container from an exit frame, when the answer ends with one.
pub async fn stream_framed(
    client: &Client,
    path: &str,
    stdout: &mut (impl tokio::io::AsyncWrite + Unpin),
    stderr: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<Option<Container>, ClientError> {
    stream_framed_notify(client, path, stdout, stderr, None).await
}

/// `stream_framed`, telling `started` once the answer's head has arrived:
/// from then on, new output is in the answer (`berth attach` sends its
/// stdin only then).
pub async fn stream_framed_notify(
    client: &Client,
    path: &str,
    stdout: &mut (impl tokio::io::AsyncWrite + Unpin),
    stderr: &mut (impl tokio::io::AsyncWrite + Unpin),
    started: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Option<Container>, ClientError> {
    let response = client.send(Method::GET, path, None).await?;
    if let Some(started) = started {
        let _ = started.send(());
    }
    stream_answer(response, stdout, stderr).await
}

/// Writes a framed answer's output (the logs route's, or a create with
/// `attach=true`) to `stdout` and `stderr` as it comes; its exit frame's
/// container, if it came.
pub async fn stream_answer(
    response: hyper::Response<hyper::body::Incoming>,
    stdout: &mut (impl tokio::io::AsyncWrite + Unpin),
    stderr: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<Option<Container>, ClientError> {
    // Per stream: skip to the first line start after a rotated-away start.
    let mut skipping = [false; 2];
    for (i, stream) in Stream::ALL.into_iter().enumerate() {
        let name = format!("{ROTATED_AWAY_HEADER}-{}", stream.name());
        if let Some(first) = response.headers().get(&name).and_then(|v| v.to_str().ok()) {
            skipping[i] = true;
            let notice = format!(
                "berth: {} output before offset {first} was rotated away\n",
                stream.name()
            );
            // On the writer the container's stderr goes to, flushed: a
            // second handle's write could land after the output (tokio
            // writes stdio on a blocking thread).
            stderr
                .write_all(notice.as_bytes())
                .await
                .map_err(ClientError::Output)?;
            stderr.flush().await.map_err(ClientError::Output)?;
        }
    }
    let mut body = response.into_body();
    let mut demux = Demux::default();
    let mut ended = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let mut chunks: Vec<(Stream, Vec<u8>)> = Vec::new();
        let mut exit = None;
        demux
            .feed(data, |channel, bytes| match channel {
                Channel::Stdout => chunks.push((Stream::Stdout, bytes.to_vec())),
                Channel::Stderr => chunks.push((Stream::Stderr, bytes.to_vec())),
                Channel::Exit => exit = Some(bytes.to_vec()),
            })
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if let Some(record) = exit {
            let container = serde_json::from_slice(&record)
                .map_err(|e| ClientError::Http(format!("the exit frame: {e}")))?;
            ended = Some(container);
        }
        for (stream, bytes) in chunks {
            let i = stream as usize;
            let mut data = &bytes[..];
            if skipping[i] {
                match data.iter().position(|b| *b == b'\n') {
                    Some(at) => {
                        data = &data[at + 1..];
                        skipping[i] = false;
                    }
                    None => continue,
                }
            }
            let out: &mut (dyn tokio::io::AsyncWrite + Unpin) = match stream {
                Stream::Stdout => stdout,
                Stream::Stderr => stderr,
            };
            out.write_all(data).await.map_err(ClientError::Output)?;
            out.flush().await.map_err(ClientError::Output)?;
        }
    }
    if demux.is_partial() {
        return Err(ClientError::Http(
            "the logs answer ended inside a frame".into(),
        ));
    }
    Ok(ended)
}
