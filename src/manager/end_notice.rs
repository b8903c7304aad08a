//! The shim's word that its container's end is recorded
//! ([`ShimMessage::Exited`], decision 0052), heard on the socket of the
//! launch: it comes before the shim's process is torn down, which the
//! shim's pidfd would wait for.

use std::io;

use berth_protocol::{ExitRecord, ShimMessage};
use tokio::io::unix::AsyncFd;

use super::shim_client::MessageReader;

/// A shim's line longer than this is no message of the protocol.
const MAX_LINE: usize = 4096;

/// The launch's reader of a shim's lines, after [`ShimMessage::Running`].
pub(super) struct EndNotice(MessageReader);

/// What the shim said of its container's end.
#[derive(Debug, PartialEq)]
pub(super) enum Heard {
    /// [`ShimMessage::Exited`], with the exit record it sent along (none
    /// from a shim that sends none: `exit.json` has it).
    Exited(Option<ExitRecord>),
    /// Nothing: it closed the socket without a word (it died, or could not
    /// record the end) or said something else. Its pidfd tells the end.
    Nothing,
}

impl EndNotice {
    pub(super) fn new(reader: MessageReader) -> EndNotice {
        EndNotice(reader)
    }

    /// What the shim says next: [`Heard::Exited`] or [`Heard::Nothing`].
    pub(super) async fn exited(self) -> Heard {
        let mut reader = self.0;
        if let Err(e) = reader.set_nonblocking() {
            tracing::warn!("the shim's socket after running: {e}");
            return Heard::Nothing;
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
                return Heard::Nothing;
            }
        };
        loop {
            match next {
                Ok(Some(line)) => {
                    return match ShimMessage::parse_line(&line) {
                        Ok(ShimMessage::Exited { exit }) => Heard::Exited(exit),
                        _ => Heard::Nothing,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if reader.get_ref().pending() > MAX_LINE {
                        return Heard::Nothing;
                    }
                }
                Ok(None) | Err(_) => return Heard::Nothing,
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
        // With its record, as a shim sends it.
        let record = ExitRecord {
            exit_code: Some(7),
            signal: None,
            started_at: None,
            finished_at: "2026-12-06T10:00:00Z".into(),
            error: None,
        };
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let exited = ShimMessage::Exited {
            exit: Some(record.clone()),
        };
        theirs.write_all(&exited.to_line()).unwrap();
        assert_eq!(
            notice(ours, b"").exited().await,
            Heard::Exited(Some(record))
        );

        // Without, already received with `Running`, in two pieces.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"pe\":\"exited\"}\n").unwrap();
        assert_eq!(notice(ours, b"{\"ty").exited().await, Heard::Exited(None));

        // Closed without it: a shim that died.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        assert_eq!(notice(ours, b"").exited().await, Heard::Nothing);

        // Anything else, or no line at all.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"{\"type\":\"running\"}\n").unwrap();
        assert_eq!(notice(ours, b"").exited().await, Heard::Nothing);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(&[b'x'; MAX_LINE + 600]).unwrap();
        assert_eq!(notice(ours, b"").exited().await, Heard::Nothing);
    }
}
