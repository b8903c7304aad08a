//! Dropping the first lines of a producer's output: `stream=all&tail=N`
//! merges each stream's last N lines and keeps only the last N of the
//! merged output, by skipping the surplus at its start.

use bytes::Bytes;

use super::follow::{Producer, Step};
use super::LogError;

/// A producer whose first `lines` newline-ended lines are dropped.
pub struct SkipLines<P> {
    inner: P,
    lines: u64,
}

impl<P: Producer> SkipLines<P> {
    pub fn new(inner: P, lines: u64) -> Self {
        SkipLines { inner, lines }
    }
}

impl<P: Producer> Producer for SkipLines<P> {
    fn produce(&mut self) -> Result<Step, LogError> {
        loop {
            let bytes = match self.inner.produce()? {
                Step::Data(bytes) if self.lines > 0 => bytes,
                other => return Ok(other),
            };
            let mut cut = 0;
            for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                cut = at + 1;
                self.lines -= 1;
                if self.lines == 0 {
                    break;
                }
            }
            if self.lines > 0 {
                // Every newline of this chunk was skipped; its tail too.
                continue;
            }
            let rest: Bytes = bytes.slice(cut..);
            if !rest.is_empty() {
                return Ok(Step::Data(rest));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Chunks(Vec<&'static str>);

    impl Producer for Chunks {
        fn produce(&mut self) -> Result<Step, LogError> {
            Ok(match self.0.is_empty() {
                true => Step::Done,
                false => Step::Data(Bytes::from(self.0.remove(0))),
            })
        }
    }

    fn drain(mut p: impl Producer) -> String {
        let mut out = String::new();
        while let Step::Data(b) = p.produce().unwrap() {
            out.push_str(std::str::from_utf8(&b).unwrap());
        }
        out
    }

    #[test]
    fn the_first_lines_are_dropped_across_chunks() {
        let chunks = || Chunks(vec!["a\nb", "b\nc\n", "d\ne"]);
        assert_eq!(drain(SkipLines::new(chunks(), 0)), "a\nbb\nc\nd\ne");
        assert_eq!(drain(SkipLines::new(chunks(), 1)), "bb\nc\nd\ne");
        assert_eq!(drain(SkipLines::new(chunks(), 3)), "d\ne");
        assert_eq!(drain(SkipLines::new(chunks(), 9)), "");
    }
}
