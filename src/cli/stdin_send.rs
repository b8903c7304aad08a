//! `berth run -i` and `berth attach`: the local stdin to a container's
//! first process over `GET /v1/containers/{id}/attach` (decision 0026).
//! Output comes from the logs, followed by the caller.

use std::io::Read;
use std::path::Path;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::attach::connect;
use super::client::ClientError;
use crate::streams::{CLOSE, RESIZE, STDIN};

/// Sends the local stdin until its EOF, then, if `close`, `[255, 0]` (the
/// container's stdin closes). Returns when all is sent or the agent closed
/// the attach.
///
/// With `tty`, the terminal's size goes first and on every SIGWINCH;
/// without `input` (`-t` alone), only the sizes are sent.
pub async fn send_stdin(
    socket: &Path,
    path: &str,
    close: bool,
    tty: bool,
    input: bool,
) -> Result<(), ClientError> {
    let mut ws = connect(socket, path).await?;
    let mut winch = if tty {
        send_size(&mut ws).await;
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    // A plain thread, not the runtime's blocking pool, which would hold up
    // the exit while it waits on a read.
    let reader = move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut data = Vec::with_capacity(n + 1);
                    data.push(STDIN);
                    data.extend_from_slice(&buf[..n]);
                    if tx.blocking_send(data).is_err() {
                        break;
                    }
                }
            }
        }
    };
    // Without input the sender stays (and so does the loop below, for
    // the sizes) until the attach ends.
    let _keep = if input {
        std::thread::spawn(reader);
        None
    } else {
        Some(reader)
    };
    loop {
        let data = match &mut winch {
            Some(w) => tokio::select! {
                data = rx.recv() => data,
                _ = w.recv() => {
                    send_size(&mut ws).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(data) = data else { break };
        if ws.send(Message::binary(data)).await.is_err() {
            return Ok(());
        }
    }
    if close {
        let _ = ws.send(Message::binary(vec![CLOSE, STDIN])).await;
    }
    let _ = ws.close(None).await;
    Ok(())
}

async fn send_size(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>) {
    if let Some(size) = super::attach::terminal_size() {
        let mut data = vec![RESIZE];
        data.extend_from_slice(&serde_json::to_vec(&size).expect("size serializes"));
        let _ = ws.send(Message::binary(data)).await;
    }
}
