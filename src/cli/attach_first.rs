//! `berth attach ID` (decision 0026): the container's output from now on
//! (the logs, followed from their end) and, for a container started with
//! `-i`, this stdin to its first process. The end of this stdin only stops
//! sending: the container's stdin stays open for a later attacher.

use super::client::Client;
use super::{container_path, logs_stream, stdin_send, Failure};
use crate::container::ContainerView as Container;
use hyper::Method;

pub async fn attach_first(client: &Client, id: &str) -> Result<i32, Failure> {
    let base = container_path(id);
    let container: Container = client.json(Method::GET, &base, None).await?;
    let (started, following) = tokio::sync::oneshot::channel();
    let (tty, input) = (container.tty, container.stdin);
    let _raw = if tty {
        super::attach::RawMode::enter()
    } else {
        None
    };
    if container.stdin || container.tty {
        let socket = client.socket().to_path_buf();
        let path = format!("{base}/attach");
        tokio::spawn(async move {
            // Sent once the logs are followed, so that the answer to it is
            // seen.
            if following.await.is_err() {
                return;
            }
            if let Err(e) = stdin_send::send_stdin(&socket, &path, false, tty, input).await {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "berth: stdin: {e}");
            }
        });
    }
    let path = format!("{base}/logs?stream=all&frames=true&follow=true&exit=true&tail=0");
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let ended =
        logs_stream::stream_framed_notify(client, &path, &mut stdout, &mut stderr, Some(started))
            .await?;
    let ended = match ended {
        Some(ended) => ended,
        None => {
            client
                .json::<Container>(Method::GET, &format!("{base}/wait"), None)
                .await?
        }
    };
    Ok(ended.shell_exit_code())
}
