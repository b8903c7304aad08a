//! Parsing `/proc/self/cgroup`: the process' own cgroup in each hierarchy.

use std::collections::BTreeSet;

use crate::{CgroupError, Controller};

/// One line, `hierarchy-id:controller-list:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnCgroup {
    /// The hierarchy id; 0 for the unified (v2) hierarchy.
    pub hierarchy_id: u32,
    /// The known controllers of the hierarchy (empty for v2 and for named
    /// hierarchies such as `name=systemd`).
    pub controllers: BTreeSet<Controller>,
    /// `true` when the controller list is empty, as for the v2 line `0::/`.
    pub unified: bool,
    /// The cgroup, relative to the root of the hierarchy.
    pub path: String,
}

pub(crate) fn parse(text: &str) -> Result<Vec<OwnCgroup>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = |reason| CgroupError::ProcCgroup {
            line: line.to_string(),
            reason,
        };
        // The path may itself contain ':', so split only twice.
        let mut fields = line.splitn(3, ':');
        let id = fields.next().unwrap_or_default();
        let list = fields
            .next()
            .ok_or_else(|| bad("expected hierarchy-id:controllers:path"))?;
        let path = fields
            .next()
            .ok_or_else(|| bad("expected hierarchy-id:controllers:path"))?;
        let hierarchy_id = id
            .parse()
            .map_err(|_| bad("hierarchy id is not a number"))?;
        if !path.starts_with('/') {
            return Err(bad("path is not absolute"));
        }
        out.push(OwnCgroup {
            hierarchy_id,
            controllers: list.split(',').filter_map(|c| c.parse().ok()).collect(),
            unified: list.is_empty(),
            path: path.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_lines() {
        let text = "\
12:cpu,cpuacct:/user.slice
4:memory:/process_api/4b2e9178e174a022d66d97fceb57b809
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/odd:name
";
        let own = parse(text).unwrap();
        assert_eq!(own.len(), 4);
        assert_eq!(
            own[0].controllers,
            BTreeSet::from([Controller::Cpu, Controller::Cpuacct])
        );
        assert_eq!(own[1].path, "/process_api/4b2e9178e174a022d66d97fceb57b809");
        assert!(own[2].controllers.is_empty() && !own[2].unified);
        assert!(own[3].unified);
        assert_eq!(own[3].hierarchy_id, 0);
        assert_eq!(own[3].path, "/user.slice/odd:name");
    }

    #[test]
    fn refuses_malformed_lines() {
        assert!(parse("x:cpu:/").is_err());
        assert!(parse("3:cpu").is_err());
        assert!(parse("3:cpu:relative").is_err());
    }
}
