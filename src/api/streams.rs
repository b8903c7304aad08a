//! `GET /v1/containers/{id}/exec/{exec}/attach`: the WebSocket of an
//! attached exec, Kubernetes `v5.channel.k8s.io` (decision 0026). Binary
//! messages from the client (stdin, resize, close) are re-framed to the
//! exec's helper; the helper's output frames go to the client; when the
//! helper has ended, the status goes on channel 3 and the socket closes.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::{ApiError, Shared};
use crate::manager::{ExecStream, Manager};
use crate::streams::{frames, PROTOCOL, STATUS};

/// The WebSocket upgrade of a stream endpoint: 400 naming `Upgrade`
/// without one, `Sec-WebSocket-Protocol` without the Kubernetes
/// subprotocol offered.
pub(super) fn stream_upgrade(
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    headers: &HeaderMap,
) -> Result<WebSocketUpgrade, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::invalid("Upgrade", format!("{e}")))?;
    if !offers_protocol(headers) {
        return Err(ApiError::invalid(
            "Sec-WebSocket-Protocol",
            format!("the subprotocol {PROTOCOL} is required"),
        ));
    }
    Ok(upgrade)
}

/// Whether the client offered the Kubernetes subprotocol.
fn offers_protocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL)
}

pub async fn exec_attach(
    State(manager): Shared,
    Path((id, exec)): Path<(String, String)>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = stream_upgrade(upgrade, &headers)?;
    let stream = manager.exec_attach(&id, &exec)?;
    Ok(upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| relay(socket, stream, manager)))
}

/// Relays between the client's WebSocket and the helper's socket until the
/// helper has ended, then sends the status and closes.
async fn relay(socket: WebSocket, mut stream: ExecStream, manager: Arc<Manager>) {
    let (mut to_client, from_client) = socket.split();
    let (mut from_helper, to_helper) = stream.take_socket().into_split();
    // Dropping the write half when the client is done ends the helper's
    // input: stdin closes, a tty hangs up.
    let input = tokio::spawn(async move { forward_client_frames(from_client, to_helper).await });
    let mut client_gone = false;
    while let Ok(Some(frame)) = frames::read_async(&mut from_helper).await {
        if client_gone {
            continue;
        }
        let mut message = Vec::with_capacity(frame.payload.len() + 1);
        message.push(frame.channel);
        message.extend_from_slice(&frame.payload);
        if to_client
            .send(Message::Binary(message.into()))
            .await
            .is_err()
        {
            client_gone = true;
        }
    }
    let status = stream.finish(&manager).await;
    input.abort();
    if client_gone {
        return;
    }
    let mut message = vec![STATUS];
    message.extend_from_slice(&serde_json::to_vec(&status).expect("status serializes"));
    let _ = to_client.send(Message::Binary(message.into())).await;
    let _ = to_client.send(Message::Close(None)).await;
}

/// Copies the client's binary WebSocket messages (channel byte, payload) to
/// `to` as frames until the client closes or `to` fails.
pub(super) async fn forward_client_frames<W>(
    mut from_client: futures_util::stream::SplitStream<WebSocket>,
    mut to: W,
) where
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = from_client.next().await {
        let data = match message {
            Message::Binary(data) => data,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        if frames::write_async(&mut to, channel, payload)
            .await
            .is_err()
        {
            break;
        }
    }
}
