//! Segment file names: `S.<start>` (plain, the current one or a rotated
//! one) and `S.<start>.gz` (a compressed rotated one), `<start>` the
//! logical offset of the segment's first byte, zero-padded to
//! [`START_DIGITS`] digits so that names sort by offset.

/// Digits of the start offset in a segment's name.
pub const START_DIGITS: usize = 20;

/// `S.<start>`: a plain segment.
pub fn plain_name(stream: &str, start: u64) -> String {
    format!("{stream}.{start:020}")
}

/// `S.<start>.gz`: a compressed rotated segment.
pub fn compressed_name(stream: &str, start: u64) -> String {
    format!("{stream}.{start:020}.gz")
}

/// Where a compressed segment is built before it is renamed into place. The
/// leading dot keeps it out of every reader's pattern.
pub fn compress_temp_name(stream: &str, start: u64) -> String {
    format!(".{stream}.{start:020}.gz.tmp")
}

/// Parses a directory entry's name as a segment of `stream`: its start and
/// whether it is compressed. Anything else (the index, temp files, other
/// streams) is `None`.
pub fn parse_name(stream: &str, name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix(stream)?.strip_prefix('.')?;
    let (digits, compressed) = match rest.strip_suffix(".gz") {
        Some(digits) => (digits, true),
        None => (rest, false),
    };
    if digits.len() != START_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, compressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for start in [0, 42, 4096, u64::MAX] {
            assert_eq!(
                parse_name("stdout", &plain_name("stdout", start)),
                Some((start, false))
            );
            assert_eq!(
                parse_name("stderr", &compressed_name("stderr", start)),
                Some((start, true))
            );
            assert_eq!(
                parse_name("stdout", &compress_temp_name("stdout", start)),
                None
            );
        }
        assert_eq!(plain_name("stdout", 42), "stdout.00000000000000000042");
        assert_eq!(
            compressed_name("stderr", 0),
            "stderr.00000000000000000000.gz"
        );
        assert!(plain_name("stdout", 9_999) < plain_name("stdout", 10_000));
    }

    #[test]
    fn other_names_are_no_segments() {
        assert_eq!(parse_name("stderr", "stdout.00000000000000000042"), None);
        assert_eq!(parse_name("stdout", "stdout.idx"), None);
        assert_eq!(parse_name("stdout", "stdout.42"), None);
        assert_eq!(
            parse_name("stdout", "stdout.00000000000000000042.gz.tmp"),
            None
        );
        assert_eq!(parse_name("stdout", "stdout"), None);
        assert_eq!(parse_name("stdout", "stdout.0000000000000000004x"), None);
        assert_eq!(
            parse_name("stdout", ".stdout.00000000000000004096.gz.tmp"),
            None
        );
    }
}
