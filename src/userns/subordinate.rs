//! Subordinate id ranges: `START:COUNT` as in `/etc/subuid`, given
//! explicitly or looked up for a user in `/etc/subuid` and `/etc/subgid`.

use std::path::Path;

use super::UsernsError;

/// The lowest host id a subordinate range may start at: host users and
/// groups (root, system accounts, people) live below it, and a container's
/// ids must never be theirs.
pub const MIN_START: u32 = 65536;

/// A contiguous range of host ids, `start..start + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubordinateRange {
    pub start: u32,
    pub count: u32,
}

impl SubordinateRange {
    /// Parses `START:COUNT`; `what` names the setting in errors.
    pub fn parse(value: &str, what: &str) -> Result<Self, UsernsError> {
        let invalid = |reason: String| UsernsError::Settings {
            setting: what.to_string(),
            value: value.to_string(),
            reason,
        };
        let (start, count) = value
            .split_once(':')
            .ok_or_else(|| invalid("expected START:COUNT".into()))?;
        let start: u32 = start
            .trim()
            .parse()
            .map_err(|_| invalid("START is not a number".into()))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| invalid("COUNT is not a number".into()))?;
        let range = SubordinateRange { start, count };
        range.check().map_err(invalid)?;
        Ok(range)
    }

    fn check(&self) -> Result<(), String> {
        if self.start < MIN_START {
            return Err(format!(
                "must start at {MIN_START} or above, where no host user lives"
            ));
        }
        // (uid_t)-1 is "no id" to the kernel and must stay out.
        if u64::from(self.start) + u64::from(self.count) > u64::from(u32::MAX) {
            return Err("ends past the largest id".into());
        }
        Ok(())
    }

    /// The first range listed for `user` in a subuid/subgid file (lines
    /// `NAME:START:COUNT`; the user may also be given by number).
    pub fn lookup(file: &Path, user: &str) -> Result<Self, UsernsError> {
        let text = std::fs::read_to_string(file).map_err(|source| UsernsError::SubidFile {
            path: file.to_path_buf(),
            source,
        })?;
        let what = file.display().to_string();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((name, rest)) = line.split_once(':') {
                if name == user {
                    return SubordinateRange::parse(rest, &what);
                }
            }
        }
        Err(UsernsError::Settings {
            setting: what,
            value: user.to_string(),
            reason: "no range listed for this user".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_and_count() {
        assert_eq!(
            SubordinateRange::parse("100000:6553600", "x").unwrap(),
            SubordinateRange {
                start: 100000,
                count: 6553600
            }
        );
        for bad in [
            "100000",
            "a:1",
            "100000:b",
            "0:65536",
            "1000:65536",
            "4294901760:65536",
        ] {
            let err = SubordinateRange::parse(bad, "userns.subordinate_uids").unwrap_err();
            assert!(
                err.to_string().contains("userns.subordinate_uids"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn looks_up_a_user_in_a_subid_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        std::fs::write(
            &file,
            "# comment\nalice:100000:65536\nberth:200000:655360\n",
        )
        .unwrap();
        assert_eq!(
            SubordinateRange::lookup(&file, "berth").unwrap(),
            SubordinateRange {
                start: 200000,
                count: 655360
            }
        );
        let err = SubordinateRange::lookup(&file, "bob").unwrap_err();
        assert!(err.to_string().contains("bob"), "{err}");
        assert!(SubordinateRange::lookup(&dir.path().join("none"), "berth").is_err());
    }
}
