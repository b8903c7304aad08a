//! `GET /v1/containers/{id}/attach`: a WebSocket (`v5.channel.k8s.io`,
//! decision 0026) whose channel 0 feeds the stdin of a container started
//! with `-i`, relayed to the shim's attach socket; `[255, 0]` closes that
//! stdin. Output is read from the logs (`GET .../logs?follow=true`), which
//! any number of readers may follow; the socket closes when the shim ends
//! the attach (stdin closed, another attacher writing, the container gone).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;

use super::streams::{forward_client_frames, stream_upgrade};
use super::{ApiError, Shared};
use crate::manager::Manager;
use crate::streams::PROTOCOL;

pub async fn attach(
    State(manager): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = stream_upgrade(upgrade, &headers)?;
    let path = manager.attach_socket(&id)?;
    let shim = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
        ApiError::from(crate::manager::ManagerError::Conflict(format!(
            "container {id} does not accept stdin now: {e}"
        )))
    })?;
    Ok(upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| relay(socket, shim, manager)))
}

async fn relay(socket: WebSocket, shim: tokio::net::UnixStream, _manager: Arc<Manager>) {
    let (mut to_client, from_client) = socket.split();
    let (mut from_shim, to_shim) = shim.into_split();
    let input = forward_client_frames(from_client, to_shim);
    // The shim never writes: a read returning means it closed the attach.
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = input => {}
        _ = from_shim.read(&mut byte) => {}
    }
    let _ = to_client.send(Message::Close(None)).await;
}
