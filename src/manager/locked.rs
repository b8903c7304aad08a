//! The manager's std mutexes, locked as the isolators lock theirs
//! (`berth_isolator::ContainerStates::lock`): a panic in one request while
//! it held a lock does not take every later request down with it. Each
//! critical section here is a lookup, an insert, a remove or an
//! assignment, so the data a panicking holder left is whole.

use std::sync::{Mutex, MutexGuard};

/// `mutex`, locked; a poisoned one is taken over as it is.
pub(super) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_is_still_usable() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let held = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("a request panicked holding the lock");
        })
        .join();
        assert!(mutex.is_poisoned());
        *locked(&mutex) += 1;
        assert_eq!(*locked(&mutex), 2);
    }
}
