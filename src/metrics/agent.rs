//! berth's own metrics that live between scrapes: the launch latency
//! histogram and the API's request counts, kept for the agent process's
//! life (one agent per process), plus the per-container figures the agent
//! reads from its shims' log counters at scrape time.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The agent's process-wide metrics.
#[derive(Debug)]
pub struct AgentMetrics {
    /// Seconds from a launch request to its container running (launches
    /// that failed are not counted).
    launches: Histogram,
    /// Requests answered, by method and status code.
    requests: Family<Labels, Counter>,
}

/// This process's agent metrics.
pub static AGENT: LazyLock<AgentMetrics> = LazyLock::new(|| AgentMetrics {
    // 5 ms .. ~20 s.
    launches: Histogram::new(exponential_buckets(0.005, 2.0, 13)),
    requests: Family::default(),
});

impl AgentMetrics {
    /// Records a launch that took `took` to get its container running.
    pub fn launched(&self, took: Duration) {
        self.launches.observe(took.as_secs_f64());
    }

    /// Counts one answered request.
    pub fn answered(&self, method: &str, code: u16) {
        self.requests
            .get_or_create(&vec![
                ("code".to_string(), code.to_string()),
                ("method".to_string(), method.to_string()),
            ])
            .inc();
    }

    /// Adds these metrics to a scrape's registry (they are shared handles:
    /// the registry reads the live values).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "berth_launch_duration_seconds",
            "Seconds from a launch request to its container running",
            self.launches.clone(),
        );
        registry.register(
            "berth_api_requests",
            "API requests answered, by method and status code",
            self.requests.clone(),
        );
    }
}

/// Middleware counting every answered request by method and status, put
/// outermost on each listener so that refused requests (401, 403, 413...)
/// count too.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    AGENT.answered(method.as_str(), response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn launches_and_requests_are_encoded() {
        let metrics = AgentMetrics {
            launches: Histogram::new(exponential_buckets(0.005, 2.0, 13)),
            requests: Family::default(),
        };
        metrics.launched(Duration::from_millis(30));
        metrics.answered("GET", 200);
        metrics.answered("GET", 200);
        metrics.answered("POST", 403);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("berth_launch_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_launch_duration_seconds_bucket{le=\"0.04\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_launch_duration_seconds_bucket{le=\"0.02\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("berth_api_requests_total{code=\"200\",method=\"GET\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("berth_api_requests_total{code=\"403\",method=\"POST\"} 1"),
            "{text}"
        );
    }
}
