//! The framing on the socket between the agent and a process's helper
//! (`berth-shim exec --stream-fd`): `[channel: u8][length: u32 BE]
//! [payload]`, with the channels of the WebSocket (see the module above).
//! Written and read here only: the helper's side is blocking, the agent's
//! async (with this crate's `tokio` feature).

use std::io::{self, Read, Write};

#[cfg(feature = "tokio")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload accepted: a reader never allocates more.
pub const MAX_PAYLOAD: usize = 1 << 20;

const HEADER: usize = 5;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub channel: u8,
    pub payload: Vec<u8>,
}

fn header(channel: u8, len: usize) -> io::Result<[u8; HEADER]> {
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is over {MAX_PAYLOAD}"),
        ));
    }
    let mut h = [0u8; HEADER];
    h[0] = channel;
    h[1..].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(h)
}

fn payload_len(h: &[u8; HEADER]) -> io::Result<usize> {
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over {MAX_PAYLOAD}"),
        ));
    }
    Ok(len)
}

/// Writes one frame (blocking).
pub fn write(w: &mut impl Write, channel: u8, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    buf.extend_from_slice(&header(channel, payload.len())?);
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Incremental decoding of frames from bytes as they arrive, for the
/// helper's non-blocking poll loop.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let h: [u8; HEADER] = self.buf[..HEADER].try_into().expect("header length");
        let len = payload_len(&h)?;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some(Frame {
            channel: h[0],
            payload,
        }))
    }
}

/// Reads one frame (blocking); `None` at a clean end of the stream.
pub fn read(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0u8; payload_len(&h)?];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame {
        channel: h[0],
        payload,
    }))
}

/// Writes one frame (async).
#[cfg(feature = "tokio")]
pub async fn write_async(
    w: &mut (impl AsyncWrite + Unpin),
    channel: u8,
    payload: &[u8],
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    buf.extend_from_slice(&header(channel, payload.len())?);
    buf.extend_from_slice(payload);
    w.write_all(&buf).await
}

/// Reads one frame (async); `None` at a clean end of the stream.
#[cfg(feature = "tokio")]
pub async fn read_async(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0u8; payload_len(&h)?];
    r.read_exact(&mut payload).await?;
    Ok(Some(Frame {
        channel: h[0],
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_decoder() {
        let mut wire = Vec::new();
        write(&mut wire, 1, b"hello").unwrap();
        write(&mut wire, 4, b"").unwrap();
        let mut d = Decoder::default();
        d.push(&wire[..3]);
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(&wire[3..]);
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Frame {
                channel: 1,
                payload: b"hello".to_vec()
            })
        );
        assert_eq!(d.next_frame().unwrap().unwrap().channel, 4);
        assert_eq!(d.next_frame().unwrap(), None);
        let mut r = &wire[..];
        assert_eq!(read(&mut r).unwrap().unwrap().payload, b"hello");
    }

    #[test]
    fn an_oversized_length_is_refused() {
        let mut d = Decoder::default();
        d.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }
}
