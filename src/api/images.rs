//! `/v1/images`: pull (progress streamed as newline-delimited JSON), list,
//! inspect, remove, prune, load.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;

use super::query::ApiQuery;
use super::{parse_json, ApiError, Shared};
use crate::images::ensure::EnsureError;
use crate::images::pull::{Progress, PullError};
use crate::manager::{Manager, ManagerError};
use crate::wire::images::{ImageListed, LoadRequest, Loaded, PullRequest};
use crate::wire::query::RemoveQuery;

/// The image routes (merged into the API's router).
pub fn routes() -> Router<Arc<Manager>> {
    Router::new()
        .route("/v1/images", get(list))
        .route("/v1/images/pull", post(pull))
        .route("/v1/images/load", post(load))
        .route("/v1/images/prune", post(prune))
        .route("/v1/images/{*reference}", get(inspect).delete(remove))
}

enum Event {
    Progress(Progress),
    Failed(EnsureError),
}

/// The status of a pull that failed before anything was streamed.
fn pull_error(e: &EnsureError) -> ApiError {
    let status = match e {
        EnsureError::Pull { source, .. } => match source.as_ref() {
            PullError::Status { status: 404, .. } => StatusCode::NOT_FOUND,
            PullError::Store { .. } | PullError::CaCerts { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_GATEWAY,
        },
        EnsureError::NotPresent(_) => StatusCode::NOT_FOUND,
        EnsureError::Unpack(_) => StatusCode::UNPROCESSABLE_ENTITY,
        EnsureError::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, "pull_failed", e.to_string())
}

fn line(p: &Progress) -> Bytes {
    let mut v = serde_json::to_vec(p).expect("progress serializes");
    v.push(b'\n');
    Bytes::from(v)
}

/// `POST /v1/images/pull {"image": REF}`: a failure before the first
/// progress event is an error status; after it, the last line is
/// `{"event":"error","message":...}`. The pull goes on if the client
/// goes away (a half-pulled image is never visible either way).
async fn pull(State(manager): Shared, body: Bytes) -> Result<Response, ApiError> {
    let request: PullRequest = parse_json(&body)?;
    let reference = manager.parse_image(&request.image)?;
    let images = manager.images()?.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let events = manager.events().clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let result = images
            .pull(&reference, &mut |p| {
                let _ = progress_tx.send(Event::Progress(p));
            })
            .await;
        let image = match result {
            Ok(image) => image,
            Err(e) => {
                let _ = tx.send(Event::Failed(e));
                return;
            }
        };
        // Unpacked now, so a launch of it does not wait for extraction.
        let store = images.store.clone();
        let name = reference.to_string();
        let digest = image.manifest_digest.to_string();
        let unpacked = tokio::task::spawn_blocking(move || {
            crate::images::unpack::unpacked_layers(&store, &image).map(|dirs| dirs.len())
        })
        .await;
        if matches!(unpacked, Ok(Ok(_))) {
            events.image("pull", &name, Some(&digest));
        }
        let event = match unpacked {
            Ok(Ok(layers)) => Event::Progress(Progress::Unpacked {
                reference: name,
                layers,
            }),
            Ok(Err(e)) => Event::Failed(EnsureError::Unpack(format!("image {name}: {e}"))),
            Err(e) => Event::Failed(EnsureError::Unpack(format!("image {name}: {e}"))),
        };
        let _ = tx.send(event);
    });
    let first = match rx.recv().await {
        Some(Event::Progress(p)) => p,
        Some(Event::Failed(e)) => return Err(pull_error(&e)),
        None => return Err(ManagerError::Internal("the pull ended without a word".into()).into()),
    };
    let rest = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|event| {
        Ok::<_, std::convert::Infallible>(match event {
            Event::Progress(p) => line(&p),
            Event::Failed(e) => line(&Progress::Error {
                message: e.to_string(),
            }),
        })
    });
    let stream = futures_util::stream::once(async move { Ok(line(&first)) }).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn list(State(manager): Shared) -> Result<Response, ApiError> {
    let images = manager.images()?.clone();
    let (in_use, _) = manager.images_in_use();
    let list = tokio::task::spawn_blocking(move || images.store.list())
        .await
        .map_err(|e| ManagerError::Internal(e.to_string()))?
        .map_err(|e| ManagerError::Internal(e.to_string()))?;
    let out: Vec<ImageListed> = list
        .into_iter()
        .map(|image| ImageListed {
            in_use: in_use.contains(&image.manifest_digest),
            image,
        })
        .collect();
    Ok(Json(out).into_response())
}

async fn inspect(
    State(manager): Shared,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    let parsed = manager.parse_image(&reference)?;
    let images = manager.images()?.clone();
    let found = tokio::task::spawn_blocking(move || images.store.resolve(&parsed))
        .await
        .map_err(|e| ManagerError::Internal(e.to_string()))?
        .map_err(|e| ManagerError::Internal(e.to_string()))?;
    match found {
        Some(image) => Ok(Json(image).into_response()),
        None => Err(ManagerError::NotFound(format!("image {reference}")).into()),
    }
}

async fn remove(
    State(manager): Shared,
    Path(reference): Path<String>,
    ApiQuery(query): ApiQuery<RemoveQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(manager.remove_image(&reference, query.force).await?).into_response())
}

async fn prune(State(manager): Shared) -> Result<Response, ApiError> {
    Ok(Json(manager.prune_images().await?).into_response())
}

/// `POST /v1/images/load {"path": ...}`: the loaded images.
async fn load(State(manager): Shared, body: Bytes) -> Result<Response, ApiError> {
    let request: LoadRequest = parse_json(&body)?;
    if !request.path.is_absolute() {
        return Err(ApiError::invalid(
            "path",
            format!("{} is not an absolute path", request.path.display()),
        ));
    }
    match std::fs::metadata(&request.path) {
        Ok(m) if m.is_file() || m.is_dir() => {}
        Ok(_) => {
            return Err(ApiError::invalid(
                "path",
                format!(
                    "{} is neither a directory nor a regular file",
                    request.path.display()
                ),
            ))
        }
        Err(e) => {
            return Err(ApiError::invalid(
                "path",
                format!("{}: {e}", request.path.display()),
            ))
        }
    }
    let images = manager.images()?.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        crate::images::archive::load_path(&images.store, &request.path, None)
    })
    .await
    .map_err(|e| ManagerError::Internal(e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "load_failed", e.to_string()))?;
    let loaded = loaded.into_iter().map(|i| i.reference).collect();
    Ok(Json(Loaded { loaded }).into_response())
}
