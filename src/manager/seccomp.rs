//! Choosing a container's seccomp profile at launch, and refusing a bad one
//! before anything is created.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use oci_spec::runtime::{Capability, LinuxSeccomp};

use super::locked::locked;
use super::{Manager, ManagerError};
use crate::container::SecurityOpt;
use crate::seccomp::{Host, SeccompSetting};
use berth_seccomp::{Layout, NotSpecialized, SeccompError, SeccompFilter, SeccompProgram};

/// The most distinct profiles whose programs are kept: one per profile
/// and bounding set in use, usually a handful.
const CACHED_PROGRAMS: usize = 64;

/// Compiled seccomp programs by their resolved `linux.seccomp` (as JSON):
/// libseccomp takes milliseconds per compile, and every container of a
/// profile gets the same program.
#[derive(Default)]
pub(super) struct ProgramCache {
    programs: Mutex<HashMap<String, SeccompProgram>>,
}

impl ProgramCache {
    /// The program for `spec`, compiled on first use.
    pub(super) fn get(&self, spec: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
        let key = serde_json::to_string(spec).expect("a seccomp spec serializes");
        if let Some(program) = locked(&self.programs).get(&key) {
            return Ok(program.clone());
        }
        // Compiled outside the lock: two first uses may both compile.
        let tree = SeccompFilter::check(spec)?.compile_as(Layout::BinaryTree)?;
        let program = match berth_seccomp::specialized(&tree) {
            Ok(program) => program,
            // As libseccomp compiled it: decides the same, attaches slower.
            Err(NotSpecialized::Unchanged) => tree,
            Err(e) => {
                tracing::warn!(
                    instructions = tree.len(),
                    "seccomp profile loaded as libseccomp compiled it: {e}"
                );
                tree
            }
        };
        let mut programs = locked(&self.programs);
        if programs.len() >= CACHED_PROGRAMS {
            // Requests naming ever new profiles must not grow the agent.
            programs.clear();
        }
        programs.insert(key, program.clone());
        Ok(program)
    }
}

/// A profile resolved against a bounding set on this host, and its
/// program: what the bundle's `linux.seccomp` says and the shim loads.
pub(super) struct ResolvedSeccomp {
    pub(super) spec: LinuxSeccomp,
    pub(super) program: SeccompProgram,
}

/// The default profile resolved and compiled per bounding set: built,
/// resolved and looked up once, not at every launch (decision 0056).
/// The host's architecture and kernel, which resolving reads too, do not
/// change while the agent runs.
#[derive(Default)]
pub(super) struct DefaultSeccomp {
    by_bounding_set: Mutex<HashMap<Vec<String>, Arc<ResolvedSeccomp>>>,
}

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
            self.seccomp_programs
                .get(&resolved)
                .map_err(|e| ManagerError::invalid(FIELD, e.to_string()))?;
        }
        Ok(setting)
    }
}

impl Manager {
    /// The filter of a container with seccomp `setting` and bounding set
    /// `capabilities`: its `linux.seccomp` and program (`None`:
    /// unconfined). The default profile's come from [`DefaultSeccomp`].
    pub(super) fn resolved_seccomp(
        &self,
        setting: &SeccompSetting,
        capabilities: &HashSet<Capability>,
    ) -> Result<Option<Arc<ResolvedSeccomp>>, ManagerError> {
        let resolve = |profile: &crate::seccomp::Profile| {
            let spec = profile
                .resolve(capabilities, &Host::current())
                .map_err(|e| ManagerError::Internal(format!("resolve the seccomp profile: {e}")))?;
            let program = self
                .seccomp_programs
                .get(&spec)
                .map_err(|e| ManagerError::Internal(format!("compile the seccomp profile: {e}")))?;
            Ok::<_, ManagerError>(Arc::new(ResolvedSeccomp { spec, program }))
        };
        match setting {
            SeccompSetting::Unconfined => Ok(None),
            SeccompSetting::Profile(profile) => resolve(profile).map(Some),
            SeccompSetting::Default => {
                let mut key: Vec<String> = capabilities.iter().map(|c| c.to_string()).collect();
                key.sort_unstable();
                let cache = &self.default_seccomp.by_bounding_set;
                if let Some(resolved) = locked(cache).get(&key) {
                    return Ok(Some(resolved.clone()));
                }
                // Resolved outside the lock: two first uses may both do it.
                let resolved = resolve(&crate::seccomp::default::docker_default())?;
                let mut cache = locked(cache);
                if cache.len() >= CACHED_PROGRAMS {
                    cache.clear();
                }
                cache.insert(key, resolved.clone());
                Ok(Some(resolved))
            }
        }
    }
}
