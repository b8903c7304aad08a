//! Garbage collection of ended containers' sandboxes, as Mesos does it: a
//! sandbox stays `delay × max(0, 1 − headroom − disk usage)` after its
//! container ended, so a filling disk shortens the wait.

use std::path::Path;
use std::time::Duration;

use super::{Manager, ManagerError};
use crate::container::State;

pub use crate::wire::gc::{GcRemoved, GcReport};

/// The age an ended container's sandbox may reach.
pub fn max_age(delay: Duration, headroom: f64, disk_usage: f64) -> Duration {
    delay.mul_f64((1.0 - headroom - disk_usage).clamp(0.0, 1.0))
}

/// The fraction of the filesystem holding `path` that is used, as `df`
/// counts it (blocks reserved for root count as used).
pub fn disk_usage(path: &Path) -> Result<f64, String> {
    let stat =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let total = stat.blocks() as f64;
    if total == 0.0 {
        return Ok(0.0);
    }
    Ok(1.0 - stat.blocks_available() as f64 / total)
}

impl Manager {
    /// Removes the sandboxes of ended containers that are past their age.
    pub async fn gc(&self) -> Result<GcReport, ManagerError> {
        let settings = &self.config.gc;
        let disk_usage = disk_usage(&self.config.work_dir).map_err(ManagerError::Internal)?;
        let allowed = max_age(
            Duration::from_secs_f64(settings.delay_seconds),
            settings.disk_headroom,
            disk_usage,
        );
        let now = crate::timestamp::Timestamp::now();
        let mut expired = Vec::new();
        for container in self.list() {
            if container.state != State::Exited {
                continue;
            }
            // One waiting for its restart is not done with its sandbox.
            if container.restart.next_attempt_at.is_some() {
                continue;
            }
            // A container with no end time (the host went down under it) is
            // aged from its creation.
            let since = container.finished_at.unwrap_or(container.created_at);
            let age = now.since(&since);
            if age >= allowed {
                expired.push(GcRemoved {
                    id: container.id.to_string(),
                    finished_at: container.finished_at,
                    age_seconds: age.as_secs_f64(),
                });
            }
        }
        let mut removed = Vec::new();
        for candidate in expired {
            match self.remove(&candidate.id, false).await {
                Ok(()) => {
                    tracing::info!(id = %candidate.id, age_seconds = candidate.age_seconds, "gc removed the sandbox");
                    removed.push(candidate);
                }
                // Removed meanwhile by someone else: nothing to report.
                Err(ManagerError::NotFound(_)) => {}
                Err(e) => tracing::warn!(id = %candidate.id, "gc: {e}"),
            }
        }
        Ok(GcReport {
            disk_usage,
            max_age_seconds: allowed.as_secs_f64(),
            removed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filling_disk_shortens_the_delay() {
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(max_age(week, 0.1, 0.0), week.mul_f64(0.9));
        assert_eq!(max_age(week, 0.1, 0.5), week.mul_f64(0.4));
        assert_eq!(max_age(week, 0.1, 0.95), Duration::ZERO);
        assert_eq!(max_age(week, 0.0, 0.0), week);
    }

    #[test]
    fn disk_usage_is_a_fraction() {
        let usage = disk_usage(Path::new("/")).unwrap();
        assert!((0.0..=1.0).contains(&usage));
    }
}
