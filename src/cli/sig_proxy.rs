//! `berth run --sig-proxy`: signals the foreground CLI receives go to the
//! container.

use hyper::Method;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use super::client::Client;
use super::container_path;

/// Forwards SIGINT, SIGTERM and SIGHUP to the container as the same signal,
/// for as long as it is polled. A second SIGINT (Ctrl-C pressed again) sends
/// KILL: a pid 1 without `--init` ignores the three unless it handles them.
/// Errors (the container has just ended) are left to the run's own wait.
pub async fn forward(client: &Client, id: &str) -> std::convert::Infallible {
    let streams = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ]
    .map(signal);
    let [Ok(mut int), Ok(mut term), Ok(mut hup)] = streams else {
        // Without handlers the CLI keeps the default: it dies, as before.
        return std::future::pending().await;
    };
    let path = format!("{}/kill", container_path(id));
    let mut interrupts = 0;
    loop {
        let name = tokio::select! {
            _ = int.recv() => {
                interrupts += 1;
                if interrupts > 1 { "KILL" } else { "INT" }
            }
            _ = term.recv() => "TERM",
            _ = hup.recv() => "HUP",
        };
        let _ = client
            .call(Method::POST, &path, Some(json!({ "signal": name })))
            .await;
    }
}
