use berth_isolator::IsolatorError;

use crate::CgroupError;

/// Lets isolators use `?` on cgroup operations. A missing controller is
/// [`IsolatorError::Unsupported`]; file errors keep their path (and a
/// write's value, in the message).
impl From<CgroupError> for IsolatorError {
    fn from(e: CgroupError) -> Self {
        match e {
            CgroupError::Read { path, source } => IsolatorError::io("read", path, source),
            CgroupError::Create { path, source } => {
                IsolatorError::io("create cgroup", path, source)
            }
            CgroupError::Remove { path, source } => {
                IsolatorError::io("remove cgroup", path, source)
            }
            CgroupError::NotMounted { .. }
            | CgroupError::NotOnV2 { .. }
            | CgroupError::Unavailable { .. }
            | CgroupError::SubtreeBusy { .. }
            | CgroupError::SubtreeUnsupported { .. }
            | CgroupError::OtherProcesses { .. }
            | CgroupError::NotDomain { .. } => IsolatorError::Unsupported {
                message: e.to_string(),
            },
            other => IsolatorError::Other(other.to_string()),
        }
    }
}
