//! The timestamp index `S.idx`: lines of `<offset> <unix ns>`, each
//! meaning "the line starting at this logical offset, and the bytes after
//! it until the next entry, arrived at this time". Offsets and times never
//! go down from one entry to the next.

/// The index file of `stream` in its log dir.
pub fn index_name(stream: &str) -> String {
    format!("{stream}.idx")
}

/// One index line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    /// Unix time in nanoseconds.
    pub time: i64,
}

impl Entry {
    /// The entry as one line, newline included: written with one write so
    /// that a concurrent reader never sees half of it.
    pub fn to_line(self) -> String {
        format!("{} {}\n", self.offset, self.time)
    }

    /// Parses one line (without its newline); `None` for a malformed one.
    pub fn parse_line(line: &str) -> Option<Entry> {
        let mut fields = line.split_ascii_whitespace();
        let (Some(offset), Some(time), None) = (fields.next(), fields.next(), fields.next()) else {
            return None;
        };
        Some(Entry {
            offset: offset.parse().ok()?,
            time: time.parse().ok()?,
        })
    }
}

/// Parses complete lines of `text` into `entries`; returns the bytes
/// consumed (a trailing partial line is left for the next look). Malformed
/// lines, and lines that would break the order, are skipped: the index is
/// a hint, and the logs must stay readable.
pub fn parse(text: &[u8], entries: &mut Vec<Entry>) -> usize {
    let mut consumed = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        consumed += line.len();
        let Some(entry) = std::str::from_utf8(&line[..line.len() - 1])
            .ok()
            .and_then(Entry::parse_line)
        else {
            continue;
        };
        // Keep the order promise even if a writer bug breaks it: a reader
        // bisects these.
        if entries
            .last()
            .is_some_and(|last| entry.offset < last.offset || entry.time < last.time)
        {
            continue;
        }
        entries.push(entry);
    }
    consumed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let written = [
            Entry { offset: 0, time: 1 },
            Entry {
                offset: 4096,
                time: 1_764_800_000_000_000_000,
            },
        ];
        let text: String = written.iter().map(|e| e.to_line()).collect();
        let mut back = Vec::new();
        assert_eq!(parse(text.as_bytes(), &mut back), text.len());
        assert_eq!(back, written);
        assert_eq!(index_name("stdout"), "stdout.idx");
    }

    #[test]
    fn parses_complete_lines_and_skips_junk() {
        let mut entries = Vec::new();
        let consumed = parse(
            b"0 100\n50 200\nbad line\n40 300\n70 150\n90 400\n12",
            &mut entries,
        );
        assert_eq!(consumed, 43);
        let pairs: Vec<(u64, i64)> = entries.iter().map(|e| (e.offset, e.time)).collect();
        assert_eq!(pairs, [(0, 100), (50, 200), (90, 400)]);
        assert_eq!(Entry::parse_line("1 2 3"), None);
        assert_eq!(Entry::parse_line("-1 2"), None);
    }
}
