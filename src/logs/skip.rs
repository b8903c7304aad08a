//! Dropping the first lines of a merged output: `stream=all&tail=N` merges
//! each stream's last N lines and keeps only the last N of the merged
//! output, by skipping the surplus at its start.

use bytes::Bytes;

/// Drops newline-ended lines from the start of `bytes` while `lines` says
/// some are still to go, counting them down; returns what is left, if
/// anything (a chunk whose every newline was skipped goes whole, its tail
/// being part of the next skipped line).
pub fn skip_lines(bytes: Bytes, lines: &mut u64) -> Option<Bytes> {
    if *lines == 0 {
        return (!bytes.is_empty()).then_some(bytes);
    }
    let mut cut = 0;
    for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        cut = at + 1;
        *lines -= 1;
        if *lines == 0 {
            break;
        }
    }
    if *lines > 0 {
        return None;
    }
    let rest = bytes.slice(cut..);
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(chunks: &[&'static str], mut lines: u64) -> String {
        let mut out = String::new();
        for chunk in chunks {
            if let Some(rest) = skip_lines(Bytes::from(*chunk), &mut lines) {
                out.push_str(std::str::from_utf8(&rest).unwrap());
            }
        }
        out
    }

    #[test]
    fn the_first_lines_are_dropped_across_chunks() {
        let chunks = ["a\nb", "b\nc\n", "d\ne"];
        assert_eq!(skip(&chunks, 0), "a\nbb\nc\nd\ne");
        assert_eq!(skip(&chunks, 1), "bb\nc\nd\ne");
        assert_eq!(skip(&chunks, 3), "d\ne");
        assert_eq!(skip(&chunks, 9), "");
    }
}
