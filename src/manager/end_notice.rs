//! The shim's word that its container's end is recorded
//! ([`ShimMessage::Exited`], decision 0052), heard on the socket of the
//! launch: it comes before the shim's process is torn down, which the
//! shim's pidfd would wait for.

use std::os::unix::net::UnixStream;

use berth_protocol::ShimMessage;
use tokio::io::AsyncReadExt;

/// A shim's line longer than this is no message of the protocol.
const MAX_LINE: usize = 4096;

/// The launch's socket to a shim after [`ShimMessage::Running`].
pub(super) struct EndNotice {
    socket: UnixStream,
    /// Bytes the launch received after `Running` and did not use.
    buf: Vec<u8>,
}

impl EndNotice {
    pub(super) fn new(socket: UnixStream, buf: Vec<u8>) -> EndNotice {
        EndNotice { socket, buf }
    }

    /// Whether the shim said [`ShimMessage::Exited`]. `false` once it
    /// closed the socket without it (it died, or could not record the
    /// end) or said anything else: its pidfd tells the end then.
    pub(super) async fn exited(self) -> bool {
        let EndNotice { socket, mut buf } = self;
        let mut socket = match socket
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(socket))
        {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!("the shim's socket after running: {e}");
                return false;
            }
        };
        loop {
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&buf[..end]);
                return matches!(ShimMessage::parse_line(&line), Ok(ShimMessage::Exited));
            }
            if buf.len() > MAX_LINE {
                return false;
            }
            let mut chunk = [0u8; 512];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn only_the_exited_line_is_the_end() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs
            .write_all(berth_protocol::messages::EXITED_LINE)
            .unwrap();
        assert!(EndNotice::new(ours, Vec::new()).exited().await);

        // Already received with `Running`, in two pieces.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"pe\":\"exited\"}\n").unwrap();
        assert!(EndNotice::new(ours, b"{\"ty".to_vec()).exited().await);

        // Closed without it: a shim that died.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        assert!(!EndNotice::new(ours, Vec::new()).exited().await);

        // Anything else, or no line at all.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"{\"type\":\"running\"}\n").unwrap();
        assert!(!EndNotice::new(ours, Vec::new()).exited().await);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(&[b'x'; MAX_LINE + 600]).unwrap();
        assert!(!EndNotice::new(ours, Vec::new()).exited().await);
    }
}
