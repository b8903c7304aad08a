//! `GET /metrics`: Prometheus metrics read at scrape time. Containers'
//! figures carry cAdvisor's names and labels (`id`, `name`, `image`), read
//! from their cgroups through the isolators' scrape figures
//! ([`containers`]); berth's own metrics are prefixed `berth_`. Encoded with
//! `prometheus-client`: OpenMetrics text when the client asks for it, the
//! Prometheus text format 0.0.4 otherwise.

mod agent;
mod containers;
mod fs_usage;
mod log_counters;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::container::State as ContainerState;
use crate::manager::Manager;

pub use agent::{count_requests, AgentMetrics, AGENT};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route's handler.
pub async fn metrics(State(manager): State<Arc<Manager>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let text = match tokio::task::spawn_blocking(move || render(&manager, openmetrics)).await {
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
    let content_type = if openmetrics { OPENMETRICS } else { TEXT_004 };
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

fn state_name(state: &ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "unknown",
    }
}

/// Reads every figure now and encodes them, as OpenMetrics text or the
/// Prometheus text format 0.0.4.
fn render(manager: &Manager, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let list = manager.list();
    let states = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    for state in ["created", "running", "exited", "unknown"] {
        states.get_or_create(&[("state", state)]).set(0);
    }
    for container in &list {
        states
            .get_or_create(&[("state", state_name(&container.state))])
            .inc();
    }
    registry.register(
        "berth_containers",
        "Containers this agent knows, by state",
        states,
    );
    let running: Vec<_> = list
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .collect();
    registry.register_collector(Box::new(containers::scrape(manager, &running)));
    AGENT.register(&mut registry);
    let mut text = String::with_capacity(64 * 1024 + running.len() * 2048);
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    /// The 0.0.4 text names a counter's `_total` samples in its `# HELP`
    /// and `# TYPE` and has no `# EOF`; OpenMetrics names the family.
    #[test]
    fn counters_are_named_by_format() {
        let mut registry = Registry::default();
        let counter: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        counter.inc_by(1.5);
        registry.register("c_seconds", "Help", counter);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert_eq!(
            text,
            "# HELP c_seconds_total Help.\n# TYPE c_seconds_total counter\nc_seconds_total 1.5\n"
        );
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &registry).unwrap();
        assert_eq!(
            om,
            "# HELP c_seconds Help.\n# TYPE c_seconds counter\nc_seconds_total 1.5\n# EOF\n"
        );
    }
}
