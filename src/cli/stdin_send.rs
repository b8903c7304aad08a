//! `berth run -i` and `berth attach`: the local stdin to a container's
//! first process over `GET /v1/containers/{id}/attach` (decision 0026).
//! Output comes from the logs, followed by the caller.

use std::io::Read;
use std::path::Path;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::attach::connect;
use super::client::ClientError;
use crate::streams::{CLOSE, STDIN};

/// Sends the local stdin until its EOF, then, if `close`, `[255, 0]` (the
/// container's stdin closes). Returns when all is sent or the agent closed
/// the attach.
pub async fn send_stdin(socket: &Path, path: &str, close: bool) -> Result<(), ClientError> {
    let mut ws = connect(socket, path).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    // A plain thread, not the runtime's blocking pool, which would hold up
    // the exit while it waits on a read.
    std::thread::spawn(move || {
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
    });
    while let Some(data) = rx.recv().await {
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
