//! `berth logs`' copy of one log answer to a file descriptor: when the
//! asked-for start was rotated away, it says so on stderr and starts at
//! the first complete line instead of in the middle of one.

use http_body_util::BodyExt;
use hyper::Method;
use tokio::io::AsyncWriteExt;

use super::client::{Client, ClientError};
use crate::api::logs::ROTATED_AWAY_HEADER;

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
