use std::fmt;

/// A net_cls class id: the primary handle in the upper 16 bits and the
/// secondary handle in the lower 16, as `tc` reads it (`primary:secondary`,
/// in hex) and as the kernel stores it in `net_cls.classid` (decimal).
///
/// ```
/// use berth_isolator_net_cls::ClassId;
///
/// let classid = ClassId::new(0xAAAA, 1);
/// assert_eq!(classid.value(), 0xAAAA_0001);
/// assert_eq!(classid.to_string(), "0xAAAA0001");
/// assert_eq!(classid.tc_handle(), "aaaa:1");
/// assert_eq!(ClassId::from_value(2863267841), classid);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassId {
    /// The primary handle (the agent's, shared by all its containers).
    pub primary: u16,
    /// The secondary handle (one per container).
    pub secondary: u16,
}

impl ClassId {
    /// The class id `primary:secondary`.
    pub fn new(primary: u16, secondary: u16) -> Self {
        ClassId { primary, secondary }
    }

    /// Splits a 32-bit class id into its handles.
    pub fn from_value(value: u32) -> Self {
        ClassId {
            primary: (value >> 16) as u16,
            secondary: (value & 0xFFFF) as u16,
        }
    }

    /// The 32-bit value, `primary << 16 | secondary`.
    pub fn value(self) -> u32 {
        u32::from(self.primary) << 16 | u32::from(self.secondary)
    }

    /// The class as `tc` names it: `major:minor` in lowercase hex, without
    /// leading zeros (`aaaa:1`).
    pub fn tc_handle(self) -> String {
        format!("{:x}:{:x}", self.primary, self.secondary)
    }
}

/// `0xAAAA0001`: eight uppercase hex digits, so the two handles stay
/// readable at a glance.
impl fmt::Display for ClassId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}{:04X}", self.primary, self.secondary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_pad_both_handles() {
        assert_eq!(ClassId::new(0x10, 0x2).to_string(), "0x00100002");
        assert_eq!(ClassId::new(0xFFFF, 0xFFFF).to_string(), "0xFFFFFFFF");
        assert_eq!(ClassId::new(0x10, 0x2).tc_handle(), "10:2");
    }

    #[test]
    fn value_round_trips() {
        for (primary, secondary) in [(0xAAAA, 1), (1, 0xFFFF), (0xFFFF, 0), (0x10, 0x99)] {
            let classid = ClassId::new(primary, secondary);
            assert_eq!(ClassId::from_value(classid.value()), classid);
        }
        assert_eq!(ClassId::new(0xAAAA, 1).value(), 2_863_267_841);
    }
}
