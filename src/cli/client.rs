//! A small HTTP client for the agent's unix socket.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the berth agent at {}: {source} (is `berth agent` running? set --socket or BERTH_SOCKET)", socket.display())]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("talking to the agent: {0}")]
    Http(String),
    /// Writing the answer out failed (the reader of a pipe went away).
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

/// A client for one agent.
pub struct Client {
    socket: PathBuf,
}

impl ClientError {
    /// The agent's refusal with `status` and the error body `body`
    /// (`{"error": {"code", "message"}}`; anything else says the status).
    pub fn refused(status: StatusCode, body: &[u8]) -> ClientError {
        let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        ClientError::Api {
            status,
            code: parsed["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            message: parsed["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the agent answered {status}")),
        }
    }
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request and returns the response if its status is a success,
    /// or the agent's error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response<Incoming>, ClientError> {
        let body = body.map(|b| Bytes::from(serde_json::to_vec(&b).expect("json serializes")));
        self.send_bytes(method, path, body.unwrap_or_default())
            .await
    }

    /// Like [`Client::send`] with a raw body.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    socket: self.socket.clone(),
                    source,
                })?;
        berth_sys::launch_marks::mark("cli: connected");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(format!("http://berth{path}"))
            .header("host", "berth")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Err(ClientError::refused(status, &bytes))
    }

    /// Sends a request and parses a JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Http(format!("bad answer: {e}")))
    }

    /// Sends a request and ignores the answer's body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), ClientError> {
        self.send(method, path, body).await.map(drop)
    }

    /// Streams an answer's body into `out`, chunk by chunk, as it comes.
    pub async fn stream_to(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<(), ClientError> {
        use tokio::io::AsyncWriteExt;
        let mut body = self.send(Method::GET, path, None).await?.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).await.map_err(ClientError::Output)?;
                out.flush().await.map_err(ClientError::Output)?;
            }
        }
        Ok(())
    }
}

/// A request body: one of the API's request types, as JSON.
pub fn body(request: &impl serde::Serialize) -> Option<serde_json::Value> {
    Some(serde_json::to_value(request).expect("a request type serializes"))
}
