//! `timestamps=true`: each line prefixed with its arrival time from the
//! index, RFC 3339 in UTC with nanoseconds, then a space (as Docker does).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

use super::index::Index;

/// Prefixes lines of one stream as its bytes go by. It remembers whether
/// the last chunk ended a line, so lines split across chunks get one prefix.
#[derive(Debug)]
pub struct Stamper {
    at_line_start: bool,
}

impl Default for Stamper {
    fn default() -> Self {
        Stamper::new()
    }
}

impl Stamper {
    /// The first byte seen starts a line (even when reading starts in the
    /// middle of one: the output's first line gets a time too).
    pub fn new() -> Stamper {
        Stamper {
            at_line_start: true,
        }
    }

    /// Returns `data`, read at logical `offset`, with every line start
    /// prefixed by the time `index` gives for it.
    pub fn stamp(&mut self, index: &Index, offset: u64, data: &[u8]) -> Bytes {
        let now = now_ns();
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut rest = data;
        let mut at = offset;
        while !rest.is_empty() {
            if self.at_line_start {
                out.extend_from_slice(format(index.time_at_or_nearest(at, now)).as_bytes());
                out.push(b' ');
            }
            let line_len = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => rest.len(),
            };
            out.extend_from_slice(&rest[..line_len]);
            self.at_line_start = rest[line_len - 1] == b'\n';
            rest = &rest[line_len..];
            at += line_len as u64;
        }
        Bytes::from(out)
    }
}

/// Formats unix nanoseconds as RFC 3339, UTC, nanosecond precision.
pub fn format(time_ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(time_ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Parses an RFC 3339 time into unix nanoseconds.
pub fn parse(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()?
        .with_timezone(&Utc)
        .timestamp_nanos_opt()
}

fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::index::Entry;

    #[test]
    fn each_line_gets_its_chunk_time_across_chunk_splits() {
        let index = Index::from_entries(vec![
            Entry {
                offset: 0,
                time: 1_000_000_000,
            },
            Entry {
                offset: 6,
                time: 2_000_000_000,
            },
        ]);
        let mut stamper = Stamper::new();
        let first = stamper.stamp(&index, 0, b"a\nbcd");
        let second = stamper.stamp(&index, 5, b"e\nfg\n");
        let text = String::from_utf8([first, second].concat()).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:01.000000000Z a\n\
             1970-01-01T00:00:01.000000000Z bcde\n\
             1970-01-01T00:00:02.000000000Z fg\n"
        );
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = parse("2024-05-01T12:00:00.5+02:00").unwrap();
        assert_eq!(format(t), "2024-05-01T10:00:00.500000000Z");
        assert_eq!(parse("yesterday"), None);
    }
}
