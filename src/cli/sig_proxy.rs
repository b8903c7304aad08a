//! `berth run --sig-proxy`: signals the foreground CLI receives go to the
//! container.

use hyper::Method;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::client::Client;
use super::container_path;
use crate::wire::KillRequest;

/// The signals a foreground run forwards, caught from before the launch so
/// that none sent while it is under way kills the CLI instead.
pub struct Proxy {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Proxy {
    /// Installs the handlers; `None` (the defaults stay) if that fails.
    pub fn install() -> Option<Proxy> {
        Some(Proxy {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }

    /// Forwards SIGINT, SIGTERM and SIGHUP (also those caught before) to the
    /// container as the same signal, for as long as it is polled. A second
    /// SIGINT (Ctrl-C pressed again) sends KILL: a pid 1 without `--init`
    /// ignores the three unless it handles them. Errors (the container has
    /// just ended) are left to the run's own wait.
    pub async fn forward(mut self, client: &Client, id: &str) -> std::convert::Infallible {
        let path = format!("{}/kill", container_path(id));
        let mut interrupts = 0;
        loop {
            let name = tokio::select! {
                _ = self.int.recv() => {
                    interrupts += 1;
                    if interrupts > 1 { "KILL" } else { "INT" }
                }
                _ = self.term.recv() => "TERM",
                _ = self.hup.recv() => "HUP",
            };
            let _ = client
                .call(
                    Method::POST,
                    &path,
                    super::client::body(&KillRequest {
                        signal: name.into(),
                    }),
                )
                .await;
        }
    }
}
