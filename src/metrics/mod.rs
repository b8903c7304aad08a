//! `GET /metrics`: Prometheus metrics read at scrape time. Containers'
//! figures carry cAdvisor's names and labels (`id`, `name`, `image`), read
//! from their cgroups through the isolators' usage; berth's own metrics are
//! prefixed `berth_`. Encoded with `prometheus-client` (OpenMetrics text);
//! a client that does not ask for OpenMetrics gets the Prometheus text
//! format 0.0.4 (the same lines without the `# EOF` trailer: only gauges
//! are exported, so the two formats agree otherwise).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::container::State as ContainerState;
use crate::manager::Manager;

type Labels = Vec<(String, String)>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route's handler.
pub async fn metrics(State(manager): State<Arc<Manager>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let text = match tokio::task::spawn_blocking(move || render(&manager)).await {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            tracing::error!("encode metrics: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(e) => {
            tracing::error!("metrics task: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
    } else {
        let text = text.strip_suffix("# EOF\n").unwrap_or(&text).to_string();
        ([(header::CONTENT_TYPE, TEXT_004)], text).into_response()
    }
}

fn state_name(state: &ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "unknown",
    }
}

/// Reads every figure now and encodes them.
fn render(manager: &Manager) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let containers = Family::<Labels, Gauge>::default();
    let memory_usage = Family::<Labels, Gauge>::default();
    let memory_max = Family::<Labels, Gauge>::default();
    let memory_limit = Family::<Labels, Gauge>::default();
    let list = manager.list();
    for state in ["created", "running", "exited", "unknown"] {
        containers
            .get_or_create(&vec![("state".to_string(), state.to_string())])
            .set(0);
    }
    for container in &list {
        containers
            .get_or_create(&vec![(
                "state".to_string(),
                state_name(&container.state).to_string(),
            )])
            .inc();
        if container.state != ContainerState::Running {
            continue;
        }
        let Ok(stats) = manager.stats(container.id.as_str()) else {
            continue;
        };
        let labels = vec![
            (
                "id".to_string(),
                format!("/berth/{}", container.id.as_str()),
            ),
            ("name".to_string(), container.id.as_str().to_string()),
            ("image".to_string(), String::new()),
        ];
        let memory = stats.get("memory").and_then(|m| m.as_object());
        let figure = |key: &str| {
            memory
                .and_then(|m| m.get(key))
                .and_then(|v| v.as_u64())
                .and_then(|v| i64::try_from(v).ok())
        };
        if let Some(v) = figure("current_bytes") {
            memory_usage.get_or_create(&labels).set(v);
        }
        if let Some(v) = figure("peak_bytes") {
            memory_max.get_or_create(&labels).set(v);
        }
        memory_limit
            .get_or_create(&labels)
            .set(figure("limit_bytes").unwrap_or(0));
    }
    registry.register(
        "berth_containers",
        "Containers this agent knows, by state",
        containers,
    );
    registry.register(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        memory_usage,
    );
    registry.register(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        memory_max,
    );
    registry.register(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container (0: none)",
        memory_limit,
    );
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
