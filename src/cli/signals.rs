//! `berth run`'s signal proxy: SIGINT, SIGTERM and SIGHUP sent to the CLI
//! while a container runs in the foreground go to the container's first
//! process (as `docker run --sig-proxy`). A process that has no handler for a
//! signal ignores it as a pid namespace's first process, so a second SIGINT
//! sends KILL: Ctrl-C twice always ends the container.

use std::future::Future;

use hyper::Method;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use super::client::{Client, ClientError};

/// Runs `work` (the foreground run's output) while forwarding signals to
/// container `id`; returns what `work` returns.
pub async fn proxy<T>(
    client: &Client,
    id: &str,
    work: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let install = |kind| {
        signal(kind).map_err(|e| ClientError::Http(format!("install a signal handler: {e}")))
    };
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    let mut hangup = install(SignalKind::hangup())?;
    let mut interrupts = 0;
    tokio::pin!(work);
    loop {
        let name = tokio::select! {
            result = &mut work => return result,
            _ = interrupt.recv() => {
                interrupts += 1;
                if interrupts > 1 { "KILL" } else { "INT" }
            }
            _ = terminate.recv() => "TERM",
            _ = hangup.recv() => "HUP",
        };
        forward(client, id, name).await;
    }
}

/// Sends signal `name` to the container; one that has ended meanwhile is
/// no error (the output's end follows).
async fn forward(client: &Client, id: &str, name: &str) {
    let path = format!("{}/kill", super::container_path(id));
    match client
        .call(Method::POST, &path, Some(json!({"signal": name})))
        .await
    {
        Ok(_) | Err(ClientError::Api { .. }) => {}
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "berth: forward SIG{name}: {e}");
        }
    }
}
