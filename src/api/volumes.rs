//! `/v1/volumes`: create, list, inspect, remove, prune named volumes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{parse_json, ApiError, Shared};
use crate::manager::Manager;
use crate::volumes::VolumeError;
use crate::wire::volumes::{CreateVolume, VolumesPruned};

/// The volume routes (merged into the API's router).
pub fn routes() -> Router<Arc<Manager>> {
    Router::new()
        .route("/v1/volumes", get(list).post(create))
        .route("/v1/volumes/prune", post(prune))
        .route("/v1/volumes/{name}", get(inspect).delete(remove))
}

fn volume_error(e: VolumeError) -> ApiError {
    match &e {
        VolumeError::Name(_) => ApiError::invalid("name", e),
        VolumeError::Size(_) => ApiError::invalid("size", e),
        VolumeError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        VolumeError::Exists(_) | VolumeError::InUse { .. } => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Runs a volume operation (disk work: mkfs, mounts) off the async threads.
async fn blocking<T: Send + 'static>(
    manager: Arc<Manager>,
    op: impl FnOnce(&Manager) -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || op(&manager))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(volume_error)
}

async fn create(State(manager): Shared, body: Bytes) -> Result<Response, ApiError> {
    let request: CreateVolume = parse_json(&body)?;
    let volume = blocking(manager, move |m| {
        m.volume_create(&request.name, request.size, request.shared)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(volume)).into_response())
}

async fn list(State(manager): Shared) -> Result<Response, ApiError> {
    Ok(Json(blocking(manager, |m| m.volume_list()).await?).into_response())
}

async fn inspect(State(manager): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(blocking(manager, move |m| m.volume_get(&name)).await?).into_response())
}

async fn remove(State(manager): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    blocking(manager, move |m| m.volume_remove(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(manager): Shared) -> Result<Response, ApiError> {
    let removed = blocking(manager, |m| m.volume_prune()).await?;
    Ok(Json(VolumesPruned { removed }).into_response())
}
