//! Choosing a container's seccomp profile at launch, and refusing a bad one
//! before anything is created.

use std::collections::HashSet;

use oci_spec::runtime::Capability;

use super::{Manager, ManagerError};
use crate::container::SecurityOpt;
use crate::seccomp::{Host, SeccompSetting};
use crate::shim::seccomp::SeccompFilter;

/// The request's field, as error messages name it.
const FIELD: &str = "security_opt.seccomp";

impl Manager {
    /// The request's seccomp setting, or the agent's default; a profile is
    /// checked and compiled once here, against the container's bounding set
    /// `capabilities`, so that a bad one is a 400 and not a
    /// failed launch.
    pub(super) fn seccomp_setting(
        &self,
        request: Option<&SecurityOpt>,
        capabilities: &HashSet<Capability>,
    ) -> Result<SeccompSetting, ManagerError> {
        let setting = match request.and_then(|opt| opt.seccomp.clone()) {
            Some(setting) => setting,
            None => SeccompSetting::from_config(&self.config.security.seccomp)
                .map_err(|e| ManagerError::Internal(e.to_string()))?,
        };
        if let SeccompSetting::Profile(profile) = &setting {
            profile.validate().map_err(|e| {
                let field = if e.field.is_empty() {
                    FIELD.to_string()
                } else {
                    format!("{FIELD}.{}", e.field)
                };
                ManagerError::invalid(field, e.message)
            })?;
            let resolved = profile
                .resolve(capabilities, &Host::current())
                .map_err(|e| ManagerError::invalid(FIELD, e.to_string()))?;
            SeccompFilter::check(&resolved)
                .and_then(|filter| filter.compile())
                .map_err(|e| ManagerError::invalid(FIELD, e.to_string()))?;
        }
        Ok(setting)
    }
}
