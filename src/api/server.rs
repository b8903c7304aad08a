//! Serving the API on the unix socket: a task per connection, HTTP/1 with a
//! header read timeout (a client that sends half a request head is
//! disconnected, and never holds up the others), and a graceful stop.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;

/// How long a stop waits for requests under way (a `logs --follow`
/// stream may never end by itself).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(axum::middleware::from_fn(crate::metrics::count_requests));
    let connections = Connections::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    berth_sys::launch_marks::mark("agent: accepts a connection");
                    stream
                }
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning.
                    tracing::error!("accept on the API socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connections.handle().serve(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
            header_timeout,
        ));
    }
    connections.close("API").await;
}

/// The open connections of one listener: each served as HTTP/1 with
/// upgrades (WebSocket attach, decision 0026) and told to stop gracefully
/// at shutdown. hyper-util's GracefulShutdown does not take connections
/// that can be upgraded: a watch channel tells the connections to stop, and
/// the last one's sender ending says they all have.
pub(super) struct Connections {
    stop: tokio::sync::watch::Sender<bool>,
    open: tokio::sync::mpsc::Sender<()>,
    all_closed: tokio::sync::mpsc::Receiver<()>,
}

impl Connections {
    pub(super) fn new() -> Self {
        let (stop, _) = tokio::sync::watch::channel(false);
        let (open, all_closed) = tokio::sync::mpsc::channel::<()>(1);
        Connections {
            stop,
            open,
            all_closed,
        }
    }

    /// A handle for one more connection (taken before any handshake).
    pub(super) fn handle(&self) -> Connection {
        Connection {
            stopping: self.stop.subscribe(),
            open: self.open.clone(),
        }
    }

    /// Tells every connection to stop and waits for them, at most
    /// [`SHUTDOWN_GRACE`].
    pub(super) async fn close(self, listener: &str) {
        let Connections {
            stop,
            open,
            mut all_closed,
        } = self;
        let _ = stop.send(true);
        drop(open);
        if tokio::time::timeout(SHUTDOWN_GRACE, all_closed.recv())
            .await
            .is_err()
        {
            tracing::info!("{listener} requests still open at shutdown are dropped");
        }
    }
}

/// One connection of [`Connections`].
pub(super) struct Connection {
    stopping: tokio::sync::watch::Receiver<bool>,
    open: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    /// Serves the connection until it ends or the listener closes.
    pub(super) fn serve<I, S, B>(
        self,
        io: I,
        service: S,
        header_timeout: Duration,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::Service<
                hyper::Request<hyper::body::Incoming>,
                Response = hyper::Response<B>,
            > + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(io, service)
            .with_upgrades();
        let Connection { mut stopping, open } = self;
        async move {
            let _open = open;
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stopping.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("API connection: {e}");
            }
        }
    }
}
