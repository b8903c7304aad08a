//! The per-container state every isolator keeps: a locked map of
//! containers, the "unknown container" lookup and the recover loop.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::{ContainerId, IsolatorError, RecoveredContainer};

/// An isolator's state per container, behind one lock.
///
/// A panic while the lock was held leaves plain data behind, so a poisoned
/// lock is taken over rather than propagated (one failed call must not
/// wedge the isolator for every container).
///
/// ```
/// use berth_isolator::{ContainerConfig, ContainerId, ContainerStates, RecoveredContainer};
///
/// let states: ContainerStates<u32> = ContainerStates::new();
/// let id = ContainerId::new("web-1").unwrap();
/// states.insert(id.clone(), 3);
/// assert_eq!(states.with(&id, |tokens| { *tokens += 1; *tokens }).unwrap(), 4);
/// assert_eq!(states.get(&id).unwrap(), 4);
///
/// // Unknown ids are an `IsolatorError::UnknownContainer`.
/// let other = ContainerId::new("web-2").unwrap();
/// assert!(states.get(&other).is_err());
///
/// // Recovery: rebuild the known containers, forget the orphans.
/// let recovered = RecoveredContainer {
///     config: ContainerConfig::for_command(other.clone(), ["true"]),
///     pid: Some(42),
/// };
/// states.recover(&[recovered], &[id.clone()], |c| Ok(c.pid.unwrap_or(0))).unwrap();
/// assert_eq!(states.get(&other).unwrap(), 42);
/// assert!(states.remove(&id).is_none());
/// ```
#[derive(Debug)]
pub struct ContainerStates<T> {
    map: Mutex<HashMap<ContainerId, T>>,
}

impl<T> Default for ContainerStates<T> {
    fn default() -> Self {
        ContainerStates {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> ContainerStates<T> {
    /// No containers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole map, locked.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<ContainerId, T>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records (or replaces) a container's state.
    pub fn insert(&self, id: ContainerId, state: T) -> Option<T> {
        self.lock().insert(id, state)
    }

    /// Forgets a container, returning its state if it was known.
    pub fn remove(&self, id: &ContainerId) -> Option<T> {
        self.lock().remove(id)
    }

    /// True when the container is known.
    pub fn contains(&self, id: &ContainerId) -> bool {
        self.lock().contains_key(id)
    }

    /// Runs `f` on a known container's state, under the lock.
    pub fn with<R>(
        &self,
        id: &ContainerId,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, IsolatorError> {
        let mut map = self.lock();
        let state = map.get_mut(id).ok_or_else(|| unknown(id))?;
        Ok(f(state))
    }

    /// A copy of a known container's state.
    pub fn get(&self, id: &ContainerId) -> Result<T, IsolatorError>
    where
        T: Clone,
    {
        self.with(id, |state| state.clone())
    }

    /// The recover loop of [`Isolator::recover`](crate::Isolator::recover):
    /// `rebuild` makes each known container's state again (the first error
    /// stops the loop), and the orphans are forgotten. Removing what the
    /// orphans left on the host stays with the isolator.
    pub fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
        mut rebuild: impl FnMut(&RecoveredContainer) -> Result<T, IsolatorError>,
    ) -> Result<(), IsolatorError> {
        for recovered in containers {
            let state = rebuild(recovered)?;
            self.insert(recovered.config.id.clone(), state);
        }
        let mut map = self.lock();
        for id in orphans {
            map.remove(id);
        }
        Ok(())
    }
}

/// The error for a container an isolator has no state for.
///
/// ```
/// use berth_isolator::{unknown, ContainerId, IsolatorError};
/// let id = ContainerId::new("gone").unwrap();
/// assert!(matches!(unknown(&id), IsolatorError::UnknownContainer { id } if id == "gone"));
/// ```
pub fn unknown(id: &ContainerId) -> IsolatorError {
    IsolatorError::UnknownContainer { id: id.to_string() }
}
