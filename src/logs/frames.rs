//! `stream=all&frames=true`: both streams in one body, each chunk framed
//! with the stream it came from, so a client can put stdout on its stdout
//! and stderr on its stderr and keep the arrival order.
//!
//! The frame is Docker's attach format: a header of 8 bytes — the channel
//! (1 stdout, 2 stderr, 3 exit), three zero bytes, the data's length as a
//! 32-bit big-endian number — then the data. An `exit` frame (with
//! `follow=true&exit=true`) ends a body that ended with the container: its
//! data is the ended container's record as JSON, so `berth run` gets the
//! output and the exit code in one request. The writer ([`header`]) is used
//! by the logs API, the reader ([`Demux`]) by the CLI.

use super::Stream;

/// Bytes of a frame's header.
pub const HEADER_LEN: usize = 8;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
    /// The ended container's record (JSON), last.
    Exit,
}

impl From<Stream> for Channel {
    fn from(stream: Stream) -> Channel {
        match stream {
            Stream::Stdout => Channel::Stdout,
            Stream::Stderr => Channel::Stderr,
        }
    }
}

/// The header of a frame of `len` bytes on `channel`.
pub fn header(channel: impl Into<Channel>, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("a log chunk is far below 4 GiB");
    let mut header = [0u8; HEADER_LEN];
    header[0] = match channel.into() {
        Channel::Stdout => 1,
        Channel::Stderr => 2,
        Channel::Exit => 3,
    };
    header[4..].copy_from_slice(&len.to_be_bytes());
    header
}

/// A whole frame: its header and `data`.
pub fn frame(channel: impl Into<Channel>, data: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(HEADER_LEN + data.len());
    framed.extend_from_slice(&header(channel, data.len()));
    framed.extend_from_slice(data);
    framed
}

/// A body that is not a sequence of frames.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad log frame: stream byte {0}")]
pub struct BadFrame(pub u8);

/// Splits a framed body, fed in pieces of any size, into each frame's
/// stream and data.
#[derive(Debug, Default)]
pub struct Demux {
    pending: Vec<u8>,
}

impl Demux {
    /// Adds `bytes` and hands every whole frame's data to `out`, in order.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut out: impl FnMut(Channel, &[u8]),
    ) -> Result<(), BadFrame> {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while self.pending.len() - at >= HEADER_LEN {
            let head = &self.pending[at..at + HEADER_LEN];
            let channel = match head[0] {
                1 => Channel::Stdout,
                2 => Channel::Stderr,
                3 => Channel::Exit,
                other => return Err(BadFrame(other)),
            };
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let end = at + HEADER_LEN + len;
            if self.pending.len() < end {
                break;
            }
            out(channel, &self.pending[at + HEADER_LEN..end]);
            at = end;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// Whether a frame was cut off (bytes left over at the end of a body).
    pub fn is_partial(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_written_are_read_back_whatever_the_pieces() {
        let mut body = Vec::new();
        for (stream, data) in [
            (Channel::Stdout, &b"out 1\n"[..]),
            (Channel::Stderr, b"err 1\n"),
            (Channel::Stdout, b""),
            (Channel::Stdout, b"out 2\n"),
            (Channel::Exit, b"{}"),
        ] {
            body.extend_from_slice(&frame(stream, data));
        }
        for piece in [1, 3, 7, 8, 9, body.len()] {
            let mut demux = Demux::default();
            let mut got = Vec::new();
            for chunk in body.chunks(piece) {
                demux
                    .feed(chunk, |stream, data| got.push((stream, data.to_vec())))
                    .unwrap();
            }
            assert!(!demux.is_partial());
            let text: Vec<(Channel, &str)> = got
                .iter()
                .filter(|(_, d)| !d.is_empty())
                .map(|(s, d)| (*s, std::str::from_utf8(d).unwrap()))
                .collect();
            assert_eq!(
                text,
                [
                    (Channel::Stdout, "out 1\n"),
                    (Channel::Stderr, "err 1\n"),
                    (Channel::Stdout, "out 2\n"),
                    (Channel::Exit, "{}")
                ],
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_frames_is_refused_and_a_cut_frame_is_seen() {
        let mut demux = Demux::default();
        assert_eq!(demux.feed(b"hello world", |_, _| {}), Err(BadFrame(b'h')));
        let mut demux = Demux::default();
        demux.feed(&header(Stream::Stderr, 10), |_, _| {}).unwrap();
        demux.feed(b"abc", |_, _| panic!("not whole")).unwrap();
        assert!(demux.is_partial());
    }
}
