//! The blocks of 65536 ids carved from the subordinate ranges: which are
//! free, which container holds the others.

use std::collections::BTreeMap;

use super::subordinate::SubordinateRange;
use super::{UsernsError, UsernsMapping, BLOCK};

/// Block `k` maps container ids 0..65536 to host uids
/// `uids.start + k × 65536..` and gids `gids.start + k × 65536..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    uids: SubordinateRange,
    gids: SubordinateRange,
    blocks: u32,
    /// Block index → holder (a container id).
    used: BTreeMap<u32, String>,
}

impl Pool {
    /// A pool with every block free; at least one block must fit both ranges.
    pub fn new(uids: SubordinateRange, gids: SubordinateRange) -> Result<Self, UsernsError> {
        let blocks = uids.count.min(gids.count) / BLOCK;
        if blocks == 0 {
            return Err(UsernsError::Settings {
                setting: "userns".into(),
                value: format!(
                    "uids {}:{} gids {}:{}",
                    uids.start, uids.count, gids.start, gids.count
                ),
                reason: format!("each range must hold at least {BLOCK} ids"),
            });
        }
        Ok(Pool {
            uids,
            gids,
            blocks,
            used: BTreeMap::new(),
        })
    }

    /// How many containers can have a range at once.
    pub fn capacity(&self) -> u32 {
        self.blocks
    }

    pub fn free_count(&self) -> u32 {
        self.blocks - self.used.len() as u32
    }

    fn mapping(&self, block: u32) -> UsernsMapping {
        UsernsMapping {
            uid: self.uids.start + block * BLOCK,
            gid: self.gids.start + block * BLOCK,
            size: BLOCK,
        }
    }

    /// The block a host uid belongs to, if it is in the pool's uid range.
    fn block_of_uid(&self, uid: u32) -> Option<u32> {
        let block = uid.checked_sub(self.uids.start)? / BLOCK;
        (block < self.blocks).then_some(block)
    }

    /// Reserves the lowest free block for `holder`.
    pub fn reserve(&mut self, holder: &str) -> Result<UsernsMapping, UsernsError> {
        // Walks the holders in order, so a mostly full pool does not cost a
        // probe per block.
        let mut candidate = 0;
        for &used in self.used.keys() {
            if used != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate >= self.blocks {
            return Err(UsernsError::Exhausted {
                count: self.blocks,
                uids: self.uids,
            });
        }
        self.used.insert(candidate, holder.to_string());
        Ok(self.mapping(candidate))
    }

    /// Marks the block of a recorded mapping as held (recovery). Returns
    /// false when the mapping is not one of this pool's blocks (the settings
    /// changed since): nothing is reserved then.
    pub fn take(&mut self, mapping: &UsernsMapping, holder: &str) -> bool {
        match self.block_of_uid(mapping.uid) {
            Some(block) if self.mapping(block) == *mapping => {
                self.used.insert(block, holder.to_string());
                true
            }
            _ => false,
        }
    }

    /// Marks the block holding host `uid` as held, if `uid` is in the pool
    /// and the block is free (a sandbox whose record is unreadable).
    pub fn take_uid(&mut self, uid: u32, holder: &str) -> bool {
        match self.block_of_uid(uid) {
            Some(block) if !self.used.contains_key(&block) => {
                self.used.insert(block, holder.to_string());
                true
            }
            _ => false,
        }
    }

    /// Frees the block `holder` holds, if any.
    pub fn free(&mut self, holder: &str) {
        self.used.retain(|_, h| h != holder);
    }

    pub fn uids(&self) -> SubordinateRange {
        self.uids
    }

    pub fn gids(&self) -> SubordinateRange {
        self.gids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(blocks: u32) -> Pool {
        Pool::new(
            SubordinateRange {
                start: 100_000,
                count: blocks * BLOCK + 5,
            },
            SubordinateRange {
                start: 300_000,
                count: blocks * BLOCK,
            },
        )
        .unwrap()
    }

    #[test]
    fn blocks_are_disjoint_and_lowest_free_first() {
        let mut p = pool(3);
        let a = p.reserve("a").unwrap();
        let b = p.reserve("b").unwrap();
        assert_eq!(
            a,
            UsernsMapping {
                uid: 100_000,
                gid: 300_000,
                size: BLOCK
            }
        );
        assert_eq!(b.uid, 100_000 + BLOCK);
        assert_eq!(b.gid, 300_000 + BLOCK);
        p.free("a");
        assert_eq!(p.reserve("c").unwrap(), a, "freed block reused");
    }

    #[test]
    fn exhaustion_and_free() {
        let mut p = pool(2);
        p.reserve("a").unwrap();
        p.reserve("b").unwrap();
        assert_eq!(p.free_count(), 0);
        let err = p.reserve("c").unwrap_err();
        assert!(
            matches!(err, UsernsError::Exhausted { count: 2, .. }),
            "{err}"
        );
        p.free("b");
        p.free("b");
        assert_eq!(p.free_count(), 1);
        assert_eq!(p.reserve("c").unwrap().uid, 100_000 + BLOCK);
    }

    #[test]
    fn recovery_takes_recorded_and_owned_blocks() {
        let mut p = pool(4);
        let second = p.mapping(1);
        assert!(p.take(&second, "a"));
        assert!(!p.take(
            &UsernsMapping {
                uid: 100_001,
                gid: 300_000,
                size: BLOCK
            },
            "x"
        ));
        // A sandbox owned by uid 1000 inside the third block.
        assert!(p.take_uid(100_000 + 2 * BLOCK + 1000, "b"));
        assert!(!p.take_uid(99_999, "c"));
        assert!(!p.take_uid(100_000 + 4 * BLOCK, "c"));
        assert_eq!(p.reserve("d").unwrap().uid, 100_000);
        assert_eq!(p.reserve("e").unwrap().uid, 100_000 + 3 * BLOCK);
        assert!(p.reserve("f").is_err());
    }

    #[test]
    fn a_range_below_one_block_is_refused() {
        let small = SubordinateRange {
            start: 100_000,
            count: BLOCK - 1,
        };
        assert!(Pool::new(small, small).is_err());
    }
}
