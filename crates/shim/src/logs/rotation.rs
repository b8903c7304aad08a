//! Which segments a stream keeps: at most `max_files`, the current one
//! included; past that the oldest go.

use std::collections::VecDeque;

/// The starts of the kept segments, oldest first; the last is the current.
#[derive(Debug)]
pub struct Kept {
    starts: VecDeque<u64>,
    max_files: usize,
}

impl Kept {
    /// Starts from the segments already on disk (sorted, oldest first).
    pub fn new(existing: impl IntoIterator<Item = u64>, max_files: u32) -> Kept {
        Kept {
            starts: existing.into_iter().collect(),
            // At least the current segment is always kept.
            max_files: (max_files as usize).max(1),
        }
    }

    /// Records `start` as the new current segment.
    pub fn push(&mut self, start: u64) {
        debug_assert!(self.starts.back().is_none_or(|&last| last < start));
        self.starts.push_back(start);
    }

    /// Takes the segments past the limit, oldest first: the caller deletes
    /// them.
    pub fn take_excess(&mut self) -> Vec<u64> {
        let excess = self.starts.len().saturating_sub(self.max_files);
        self.starts.drain(..excess).collect()
    }

    /// The first logical offset still on disk.
    pub fn oldest(&self) -> Option<u64> {
        self.starts.front().copied()
    }

    /// Whether `start` is still kept.
    pub fn contains(&self, start: u64) -> bool {
        self.starts.contains(&start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_max_files() {
        let mut kept = Kept::new([0], 3);
        assert!(kept.take_excess().is_empty());
        for start in [10, 20] {
            kept.push(start);
            assert!(kept.take_excess().is_empty());
        }
        kept.push(30);
        assert_eq!(kept.take_excess(), [0]);
        assert_eq!(kept.oldest(), Some(10));
        kept.push(40);
        assert_eq!(kept.take_excess(), [10]);
        assert!(kept.contains(30) && !kept.contains(10));
    }

    #[test]
    fn prunes_what_was_on_disk_and_keeps_at_least_one() {
        let mut kept = Kept::new([0, 5, 9, 12], 2);
        assert_eq!(kept.take_excess(), [0, 5]);
        let mut single = Kept::new([0], 0);
        single.push(4);
        assert_eq!(single.take_excess(), [0]);
        assert_eq!(single.oldest(), Some(4));
    }
}
