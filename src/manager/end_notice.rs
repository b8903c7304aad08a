//! The shim's word that its container's end is recorded
//! ([`ShimMessage::Exited`], decision 0052), heard on the socket of the
//! launch: it comes before the shim's process is torn down, which the
//! shim's pidfd would wait for.

use std::io;

use berth_protocol::ShimMessage;
use tokio::io::unix::AsyncFd;

use super::shim_client::MessageReader;

/// A shim's line longer than this is no message of the protocol.
const MAX_LINE: usize = 4096;

/// The launch's reader of a shim's lines, after [`ShimMessage::Running`].
pub(super) struct EndNotice(MessageReader);

impl EndNotice {
    pub(super) fn new(reader: MessageReader) -> EndNotice {
        EndNotice(reader)
    }

    /// Whether the shim said [`ShimMessage::Exited`]. `false` once it
    /// closed the socket without it (it died, or could not record the
    /// end) or said anything else: its pidfd tells the end then.
    pub(super) async fn exited(self) -> bool {
        let mut reader = self.0;
        if let Err(e) = reader.set_nonblocking() {
            tracing::warn!("the shim's socket after running: {e}");
            return false;
        }
        // The line may have come with `Running` already.
        let mut next = reader.read_line();
        // SAFETY: the AsyncFd owns the reader, whose socket stays open and
        // the same for the AsyncFd's whole life.
        let registered = unsafe { AsyncFd::register(reader) }.map_err(|e| e.into_parts().1);
        let mut reader = match registered {
            Ok(reader) => reader,
            Err(e) => {
                tracing::warn!("the shim's socket after running: {e}");
                return false;
            }
        };
        loop {
            match next {
                Ok(Some(line)) => {
                    return matches!(ShimMessage::parse_line(&line), Ok(ShimMessage::Exited))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if reader.get_ref().pending() > MAX_LINE {
                        return false;
                    }
                }
                Ok(None) | Err(_) => return false,
            }
            next = match reader.readable_mut().await {
                Ok(mut ready) => match ready.try_io(|reader| reader.get_mut().read_line()) {
                    Ok(read) => read,
                    // Not readable after all: wait again.
                    Err(_) => Err(io::ErrorKind::WouldBlock.into()),
                },
                Err(e) => Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn notice(ours: UnixStream, received: &[u8]) -> EndNotice {
        EndNotice::new(MessageReader::new(ours, received.to_vec()))
    }

    #[tokio::test]
    async fn only_the_exited_line_is_the_end() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs
            .write_all(berth_protocol::messages::EXITED_LINE)
            .unwrap();
        assert!(notice(ours, b"").exited().await);

        // Already received with `Running`, in two pieces.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"pe\":\"exited\"}\n").unwrap();
        assert!(notice(ours, b"{\"ty").exited().await);

        // Closed without it: a shim that died.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        assert!(!notice(ours, b"").exited().await);

        // Anything else, or no line at all.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"{\"type\":\"running\"}\n").unwrap();
        assert!(!notice(ours, b"").exited().await);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(&[b'x'; MAX_LINE + 600]).unwrap();
        assert!(!notice(ours, b"").exited().await);
    }
}
