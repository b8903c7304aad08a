//! The HTTP/JSON API on the agent's unix socket.

mod attach;
mod error;
mod events;
mod files;
mod guard;
mod images;
pub mod logs;
mod query;
pub mod roles;
mod secrets;
mod server;
pub mod socket_group;
mod streams;
pub mod tls;
pub mod tokens;
mod volumes;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use error::ApiError;
pub use server::serve;
pub use tls::serve_tcp;

use crate::container::LaunchRequest;
use crate::manager::{Manager, ManagerError};
use crate::wire::control::MAX_STOP_TIMEOUT;
use crate::wire::query::{LaunchQuery, LogsQuery, RemoveQuery};
use crate::wire::{KillRequest, Stats, StopRequest};
use query::ApiQuery;

type Shared = State<Arc<Manager>>;

/// The API's routes.
pub fn router(manager: Arc<Manager>) -> Router {
    let limits = guard::Limits {
        body_timeout: std::time::Duration::from_secs_f64(manager.config().api.body_timeout_seconds),
    };
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/gc", post(gc))
        .route("/v1/containers", post(launch).get(list))
        .route("/v1/containers/{id}", get(inspect).delete(remove))
        .route("/v1/containers/{id}/wait", get(wait))
        .route("/v1/containers/{id}/kill", post(kill))
        .route("/v1/containers/{id}/stats", get(stats))
        .route(
            "/v1/containers/{id}/resources",
            axum::routing::patch(update),
        )
        .route("/v1/containers/{id}/logs", get(logs::logs))
        .route("/v1/containers/{id}/files", get(files::list))
        .route("/v1/containers/{id}/files/content", get(files::content))
        .route("/v1/containers/{id}/stop", post(stop))
        .route("/v1/containers/{id}/exec", post(exec))
        .route("/v1/containers/{id}/restart", post(restart))
        .merge(images::routes())
        .merge(secrets::routes())
        .merge(volumes::routes())
        .route(
            "/v1/containers/{id}/exec/{exec}/attach",
            get(streams::exec_attach),
        )
        .route("/v1/containers/{id}/attach", get(attach::attach))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/v1/events", get(events::events))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(limits, guard::guard))
        .with_state(manager)
}

async fn gc(State(manager): Shared) -> Result<Response, ApiError> {
    Ok(Json(manager.gc().await?).into_response())
}

async fn info(State(manager): Shared) -> Json<crate::wire::info::Info> {
    Json(manager.info())
}

/// The header naming the container a `POST /v1/containers?attach=true`
/// created (its body is the container's output).
pub const CONTAINER_ID_HEADER: &str = "x-berth-container-id";

async fn launch(
    State(manager): Shared,
    ApiQuery(query): ApiQuery<LaunchQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    berth_sys::launch_marks::mark("agent: has the create's request");
    let request: LaunchRequest = parse_json(&body)?;
    let container = manager.launch(request).await?;
    berth_sys::launch_marks::mark("agent: answers the create");
    if !query.attach {
        return Ok((StatusCode::CREATED, Json(container)).into_response());
    }
    // The output from offset 0 of each stream: nothing the command wrote
    // before this answer began is missed, however fast it ended.
    let output = LogsQuery {
        stream: Some("all".into()),
        frames: true,
        follow: true,
        exit: true,
        ..Default::default()
    };
    let id = container.id.to_string();
    let mut answer = logs::logs(
        State(manager),
        Path(id.clone()),
        ApiQuery(output),
        ApiQuery(Default::default()),
    )
    .await?;
    berth_sys::launch_marks::mark("agent: the output's answer is ready");
    *answer.status_mut() = StatusCode::CREATED;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        answer.headers_mut().insert(CONTAINER_ID_HEADER, value);
    }
    Ok(answer)
}

async fn list(State(manager): Shared) -> Response {
    Json(manager.list()).into_response()
}

async fn inspect(State(manager): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(manager.get(&id)?).into_response())
}

async fn wait(State(manager): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let ended = manager.wait(&id).await?;
    berth_sys::launch_marks::mark("agent: answers the wait");
    Ok(Json(ended).into_response())
}

async fn kill(
    State(manager): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: KillRequest = if body.iter().all(u8::is_ascii_whitespace) {
        KillRequest::default()
    } else {
        parse_json(&body)?
    };
    manager.kill(&id, &request.signal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn stop(
    State(manager): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let grace = stop_grace(&body)?;
    Ok(Json(manager.stop(&id, grace).await?).into_response())
}

/// `POST /v1/containers/{id}/restart`: the body of a stop (`timeout`, for
/// a running container); answers with the container running again.
async fn restart(
    State(manager): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let grace = stop_grace(&body)?;
    Ok(Json(manager.restart(&id, grace).await?).into_response())
}

/// The grace period of a stop or restart request body (empty: default).
fn stop_grace(body: &[u8]) -> Result<std::time::Duration, ApiError> {
    let request: StopRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StopRequest::default()
    } else {
        parse_json(body)?
    };
    if !(0.0..=MAX_STOP_TIMEOUT).contains(&request.timeout) {
        return Err(ManagerError::invalid(
            "timeout",
            format!(
                "timeout must be between 0 and {MAX_STOP_TIMEOUT} seconds, not {}",
                request.timeout
            ),
        )
        .into());
    }
    Ok(std::time::Duration::from_secs_f64(request.timeout))
}

async fn exec(
    State(manager): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: crate::container::ExecRequest = parse_json(&body)?;
    if request.stdin || request.tty {
        let created = manager.exec_create(&id, request)?;
        return Ok((StatusCode::CREATED, Json(created)).into_response());
    }
    Ok(Json(manager.exec(&id, request).await?).into_response())
}

async fn remove(
    State(manager): Shared,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<RemoveQuery>,
) -> Result<Response, ApiError> {
    manager.remove(&id, query.force).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn update(
    State(manager): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let update: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    Ok(Json(manager.update(&id, update).await?).into_response())
}

async fn stats(State(manager): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let isolators = manager.stats(&id).await?;
    let stats = Stats {
        read_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        isolators,
        volumes: manager.volume_stats(&id),
        id,
    };
    Ok(Json(stats).into_response())
}

/// Parses a JSON body into `T`, turning serde's complaint into a 400 that
/// names the field.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        // Name the field: `resources.memory: invalid type ...`. A syntax
        // error has no field path; serde's message says where it is.
        let path = e.path().to_string();
        let message = if path.is_empty() || path == "." {
            format!("invalid request body: {}", e.inner())
        } else {
            format!("invalid request body: {path}: {}", e.inner())
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("invalid request body: {e}"),
        )
    })?;
    Ok(value)
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        let (status, code) = match &e {
            ManagerError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            ManagerError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ManagerError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ManagerError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            ManagerError::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            ManagerError::LaunchFailed {
                user_error: true, ..
            } => (StatusCode::BAD_REQUEST, "launch_failed"),
            ManagerError::LaunchFailed { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "launch_failed")
            }
            ManagerError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}
