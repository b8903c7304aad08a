//! `PUT /v1/containers/{id}/secrets/{name}` and
//! `PUT /v1/containers/{id}/configs/{name}` (decision 0034): a new value,
//! `{"value_base64": ...}` or `{"file": ...}`; 204 when done.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;

use super::{parse_json, ApiError, Shared};
use crate::secrets::UpdateFileRequest;

pub fn routes() -> Router<std::sync::Arc<crate::manager::Manager>> {
    Router::new()
        .route("/v1/containers/{id}/secrets/{name}", put(secret))
        .route("/v1/containers/{id}/configs/{name}", put(config))
}

async fn secret(
    State(manager): Shared,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: UpdateFileRequest = parse_json(&body)?;
    let manager = manager.clone();
    tokio::task::spawn_blocking(move || manager.update_secret(&id, &name, request))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn config(
    State(manager): Shared,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: UpdateFileRequest = parse_json(&body)?;
    manager.update_config(&id, &name, request).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
