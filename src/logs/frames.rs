//! `stream=all&frames=true`: both streams in one body, each chunk framed
//! with the stream it came from, so a client can put stdout on its stdout
//! and stderr on its stderr and keep the arrival order.
//!
//! The frame is Docker's attach format: a header of 8 bytes — the stream
//! (1 stdout, 2 stderr), three zero bytes, the data's length as a 32-bit
//! big-endian number — then the data. The writer ([`header`]) is used by the
//! logs API, the reader ([`Demux`]) by the CLI.

use super::Stream;

/// Bytes of a frame's header.
pub const HEADER_LEN: usize = 8;

/// The header of a frame of `len` bytes of `stream`.
pub fn header(stream: Stream, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("a log chunk is far below 4 GiB");
    let mut header = [0u8; HEADER_LEN];
    header[0] = match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    };
    header[4..].copy_from_slice(&len.to_be_bytes());
    header
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
        mut out: impl FnMut(Stream, &[u8]),
    ) -> Result<(), BadFrame> {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while self.pending.len() - at >= HEADER_LEN {
            let head = &self.pending[at..at + HEADER_LEN];
            let stream = match head[0] {
                1 => Stream::Stdout,
                2 => Stream::Stderr,
                other => return Err(BadFrame(other)),
            };
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let end = at + HEADER_LEN + len;
            if self.pending.len() < end {
                break;
            }
            out(stream, &self.pending[at + HEADER_LEN..end]);
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
            (Stream::Stdout, &b"out 1\n"[..]),
            (Stream::Stderr, b"err 1\n"),
            (Stream::Stdout, b""),
            (Stream::Stdout, b"out 2\n"),
        ] {
            body.extend_from_slice(&header(stream, data.len()));
            body.extend_from_slice(data);
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
            let text: Vec<(Stream, &str)> = got
                .iter()
                .filter(|(_, d)| !d.is_empty())
                .map(|(s, d)| (*s, std::str::from_utf8(d).unwrap()))
                .collect();
            assert_eq!(
                text,
                [
                    (Stream::Stdout, "out 1\n"),
                    (Stream::Stderr, "err 1\n"),
                    (Stream::Stdout, "out 2\n")
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
