//! The pool of secondary handles: which are free, who holds the others.

use std::collections::BTreeMap;

use crate::{ClassId, NetClsError};

/// The secondary handles of one primary handle, and their holders.
///
/// Holders are strings (`container web-1`) because a handle may also be held
/// by a leftover cgroup found at recovery that could not be removed: giving
/// its class to a new container would mix two containers' traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handles {
    primary: u16,
    min: u16,
    max: u16,
    used: BTreeMap<u16, String>,
}

impl Handles {
    /// All of `min..=max` free. The range must be non-empty and start at 1
    /// or above: secondary 0 would make `primary:0`, which `tc` reads as the
    /// qdisc itself, not a class.
    pub fn new(primary: u16, min: u16, max: u16) -> Result<Self, NetClsError> {
        let invalid = |reason: String| NetClsError::InvalidSettings { reason };
        if primary == 0 {
            return Err(invalid(
                "primary handle 0 is not a usable tc major number".into(),
            ));
        }
        if min == 0 || min > max {
            return Err(invalid(format!(
                "secondary range {min}..={max} must be non-empty and start at 1 or above"
            )));
        }
        Ok(Handles {
            primary,
            min,
            max,
            used: BTreeMap::new(),
        })
    }

    /// The primary handle.
    pub fn primary(&self) -> u16 {
        self.primary
    }

    /// The range of secondary handles.
    pub fn range(&self) -> (u16, u16) {
        (self.min, self.max)
    }

    /// How many handles the range has.
    pub fn capacity(&self) -> u32 {
        u32::from(self.max) - u32::from(self.min) + 1
    }

    /// How many handles are free.
    pub fn free_count(&self) -> u32 {
        self.capacity() - self.used.len() as u32
    }

    /// Who holds `secondary`, if anyone.
    pub fn holder(&self, secondary: u16) -> Option<&str> {
        self.used.get(&secondary).map(String::as_str)
    }

    /// Checks that `asked` is inside the range.
    pub fn check_range(&self, asked: u32) -> Result<u16, NetClsError> {
        match u16::try_from(asked) {
            Ok(h) if (self.min..=self.max).contains(&h) => Ok(h),
            _ => Err(NetClsError::OutOfRange {
                value: asked,
                min: self.min,
                max: self.max,
            }),
        }
    }

    /// Checks that `asked` (or, with `None`, any handle) could be reserved
    /// now, without reserving it.
    pub fn check(&self, asked: Option<u32>) -> Result<(), NetClsError> {
        match asked {
            Some(asked) => {
                let h = self.check_range(asked)?;
                self.in_use(h).map_or(Ok(()), Err)
            }
            None => self.first_free().map(|_| ()),
        }
    }

    /// Reserves `asked` for `holder`, or the lowest free handle with `None`.
    pub fn reserve(&mut self, asked: Option<u32>, holder: &str) -> Result<u16, NetClsError> {
        let h = match asked {
            Some(asked) => {
                let h = self.check_range(asked)?;
                if let Some(e) = self.in_use(h) {
                    return Err(e);
                }
                h
            }
            None => self.first_free()?,
        };
        self.used.insert(h, holder.to_string());
        Ok(h)
    }

    /// Frees `secondary` if `holder` holds it (a handle freed twice, or
    /// taken over meanwhile, is left alone).
    pub fn free(&mut self, secondary: u16, holder: &str) {
        if self.holder(secondary) == Some(holder) {
            self.used.remove(&secondary);
        }
    }

    fn in_use(&self, h: u16) -> Option<NetClsError> {
        self.holder(h).map(|holder| NetClsError::InUse {
            classid: ClassId::new(self.primary, h),
            holder: holder.to_string(),
        })
    }

    /// The lowest free handle. Walks the holders in order, so a mostly
    /// full range does not cost a probe per handle.
    fn first_free(&self) -> Result<u16, NetClsError> {
        let mut candidate = u32::from(self.min);
        for &used in self.used.range(self.min..=self.max).map(|(h, _)| h) {
            if u32::from(used) != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate <= u32::from(self.max) {
            Ok(candidate as u16)
        } else {
            Err(NetClsError::Exhausted {
                primary: self.primary,
                min: self.min,
                max: self.max,
                count: self.capacity(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handles(min: u16, max: u16) -> Handles {
        Handles::new(0xAAAA, min, max).unwrap()
    }

    #[test]
    fn first_free_is_the_lowest_gap() {
        let mut h = handles(5, 9);
        assert_eq!(h.reserve(None, "container a").unwrap(), 5);
        assert_eq!(h.reserve(None, "container b").unwrap(), 6);
        assert_eq!(h.reserve(Some(8), "container c").unwrap(), 8);
        assert_eq!(h.reserve(None, "container d").unwrap(), 7);
        assert_eq!(h.reserve(None, "container e").unwrap(), 9);
        h.free(6, "container b");
        assert_eq!(h.reserve(None, "container f").unwrap(), 6, "freed: reused");
    }

    #[test]
    fn a_taken_handle_conflicts_and_names_its_holder() {
        let mut h = handles(1, 10);
        h.reserve(Some(3), "container web-1").unwrap();
        let err = h.reserve(Some(3), "container web-2").unwrap_err();
        assert!(matches!(err, NetClsError::InUse { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "net_cls handle 3 (classid 0xAAAA0003) is in use by container web-1"
        );
        assert!(h.check(Some(3)).is_err());
        assert!(h.check(Some(4)).is_ok());
        assert_eq!(h.holder(3), Some("container web-1"), "unchanged");
    }

    #[test]
    fn out_of_range_is_refused() {
        let mut h = handles(10, 20);
        for bad in [0, 9, 21, 0x10000, u32::MAX] {
            let err = h.reserve(Some(bad), "container x").unwrap_err();
            assert!(matches!(err, NetClsError::OutOfRange { value, .. } if value == bad));
            assert!(h.check(Some(bad)).is_err());
        }
        assert_eq!(h.free_count(), 11);
        assert!(h.reserve(Some(10), "container x").is_ok());
        assert!(h.reserve(Some(20), "container y").is_ok());
    }

    #[test]
    fn exhaustion_names_the_range_and_frees_make_room() {
        let mut h = handles(1, 3);
        for n in 1..=3 {
            assert_eq!(h.reserve(None, &format!("container c{n}")).unwrap(), n);
        }
        assert_eq!(h.free_count(), 0);
        let err = h.reserve(None, "container c4").unwrap_err();
        assert!(
            matches!(err, NetClsError::Exhausted { count: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("1..=3"), "{err}");
        assert!(err.to_string().contains("0xAAAA"), "{err}");
        assert!(h.check(None).is_err());
        h.free(2, "container c2");
        assert_eq!(h.free_count(), 1);
        assert_eq!(h.reserve(None, "container c4").unwrap(), 2);
    }

    #[test]
    fn free_only_releases_the_holders_own_handle() {
        let mut h = handles(1, 3);
        h.reserve(Some(1), "container a").unwrap();
        h.free(1, "container b");
        assert_eq!(h.holder(1), Some("container a"));
        h.free(1, "container a");
        h.free(1, "container a");
        assert_eq!(h.holder(1), None);
    }

    #[test]
    fn the_whole_16_bit_range_works() {
        let mut h = handles(1, u16::MAX);
        assert_eq!(h.capacity(), 65535);
        assert_eq!(h.reserve(Some(65535), "container a").unwrap(), 65535);
        assert_eq!(h.reserve(None, "container b").unwrap(), 1);
        let mut full = handles(u16::MAX, u16::MAX);
        assert_eq!(full.reserve(None, "container a").unwrap(), u16::MAX);
        assert!(full.reserve(None, "container b").is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Handles::new(0, 1, 2).is_err());
        assert!(Handles::new(1, 0, 2).is_err());
        assert!(Handles::new(1, 3, 2).is_err());
        assert!(Handles::new(1, 2, 2).is_ok());
    }
}
