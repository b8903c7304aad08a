//! The CLI's side of an attached process (`exec -i/-t`, decision 0026):
//! a WebSocket (`v5.channel.k8s.io`) on the agent's socket; stdin is read
//! by a thread and sent on channel 0 (EOF: `[255, 0]`), output channels go
//! to stdout and stderr, the terminal's size on channel 4 at the start and
//! on every SIGWINCH, and the status on channel 3 gives the exit code.
//!
//! With a tty the local terminal is put in raw mode (Ctrl-C is a byte for
//! the container) and ALWAYS put back: by a guard dropped on every return,
//! error and panic, and on SIGINT, SIGTERM, SIGHUP and SIGQUIT, which end
//! the attach. The terminal is only ever fed by this copy loop: nothing
//! of the container's reaches it but the bytes it writes.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use hyper::StatusCode;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{signal, SignalKind};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::client::ClientError;
use crate::streams::status::Status;
use crate::streams::{Resize, CLOSE, PROTOCOL, RESIZE, STATUS, STDERR, STDIN, STDOUT};

/// What to attach.
#[derive(Debug, Clone, Copy)]
pub struct Attach {
    /// Send the local stdin.
    pub stdin: bool,
    /// The process has a tty: raw mode and resizes.
    pub tty: bool,
}

/// The local terminal's settings, put back when dropped.
pub(super) struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub(super) fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The local terminal's size, from whichever of stdin/stdout is one.
pub(super) fn terminal_size() -> Option<Resize> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: winsize is plain data.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize that outlives the call.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return Some(Resize {
                width: ws.ws_col,
                height: ws.ws_row,
            });
        }
    }
    None
}

fn message(channel: u8, payload: &[u8]) -> Message {
    let mut data = Vec::with_capacity(payload.len() + 1);
    data.push(channel);
    data.extend_from_slice(payload);
    Message::binary(data)
}

/// The number of the first of `ends` to arrive; never with none.
async fn any_end(ends: &mut [(i32, tokio::signal::unix::Signal)]) -> i32 {
    if ends.is_empty() {
        return std::future::pending::<i32>().await;
    }
    let futures: Vec<_> = ends
        .iter_mut()
        .map(|(n, s)| {
            let n = *n;
            Box::pin(async move {
                s.recv().await;
                n
            })
        })
        .collect();
    futures_util::future::select_all(futures).await.0
}

/// Opens the WebSocket at `path` on the agent's socket.
pub(super) async fn connect(
    socket: &Path,
    path: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Unreachable {
            socket: socket.to_path_buf(),
            source,
        })?;
    let mut request = format!("ws://berth{path}")
        .into_client_request()
        .map_err(|e| ClientError::Http(e.to_string()))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        PROTOCOL.parse().expect("a valid header value"),
    );
    let (ws, _) = match tokio_tungstenite::client_async(request, stream).await {
        Ok(pair) => pair,
        Err(tungstenite::Error::Http(response)) => {
            let status = StatusCode::from_u16(response.status().as_u16())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(ClientError::refused(
                status,
                response.body().as_deref().unwrap_or_default(),
            ));
        }
        Err(e) => return Err(ClientError::Http(format!("attach: {e}"))),
    };
    Ok(ws)
}

/// Attaches to the WebSocket at `path`; the process's exit code.
pub async fn attach(socket: &Path, path: &str, options: Attach) -> Result<i32, ClientError> {
    let ws = connect(socket, path).await?;
    let (mut to_agent, mut from_agent) = ws.split();
    // Everything to the agent goes through one writer task, so that the
    // loop below always reads: a client that stops reading while it sends
    // would block the agent and then the process's output.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if to_agent.send(message).await.is_err() {
                break;
            }
        }
        // Not closed when the input ends: the output still comes. The
        // agent closes once it has sent the status.
        std::future::pending::<()>().await;
        drop(to_agent);
    });

    // Signals first, so none is missed between raw mode and the loop.
    let mut ends = Vec::new();
    if options.tty {
        for kind in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::quit(),
        ] {
            if let Ok(s) = signal(kind) {
                ends.push((kind.as_raw_value(), s));
            }
        }
        if let Ok(mut winch) = signal(SignalKind::window_change()) {
            let tx = out_tx.clone();
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(size) = terminal_size() {
                        let json = serde_json::to_vec(&size).expect("json");
                        if tx.send(message(RESIZE, &json)).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    }
    let raw = if options.tty { RawMode::enter() } else { None };
    if options.tty {
        if let Some(size) = terminal_size() {
            let json = serde_json::to_vec(&size).expect("json");
            let _ = out_tx.send(message(RESIZE, &json)).await;
        }
    }

    // A thread, not the runtime's blocking pool: a read blocked on the
    // terminal must not hold up the CLI's end.
    if options.stdin {
        let tx = out_tx.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(message(STDIN, &buf[..n])).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.blocking_send(message(CLOSE, &[STDIN]));
        });
    }
    drop(out_tx);

    let mut status: Option<Status> = None;
    loop {
        tokio::select! {
            incoming = from_agent.next() => {
                let data = match incoming {
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(ClientError::Http(format!("attach: {e}"))),
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                match channel {
                    STDOUT => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(payload).and_then(|()| out.flush()).map_err(ClientError::Output)?;
                    }
                    STDERR => {
                        let mut err = std::io::stderr().lock();
                        let _ = err.write_all(payload).and_then(|()| err.flush());
                    }
                    STATUS => status = serde_json::from_slice(payload).ok(),
                    _ => {}
                }
            }
            signal = any_end(&mut ends) => {
                // The terminal is put back by the guard; the process goes
                // on without this client (its tty hangs up).
                return Ok(128 + signal);
            }
        }
    }
    writer.abort();
    drop(raw);
    match status {
        Some(status) => match status.exit_code() {
            Some(code) => {
                // The generic Kubernetes message says nothing the code does not;
                // a start failure's (`exec "X": not found`) does.
                if code != 0
                    && !status.message.is_empty()
                    && !status.message.starts_with("command terminated with")
                {
                    eprintln!("berth: {}", status.message);
                }
                Ok(code)
            }
            None => Err(ClientError::Http(status.message)),
        },
        None => Err(ClientError::Http(
            "the agent ended the stream without the process's status".into(),
        )),
    }
}
