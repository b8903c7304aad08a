//! The `prepare` of the isolators that said their contribution up front
//! (`Isolator::early_contribution`), run in order on a helper thread while
//! the launch writes the bundle and starts the container (decision 0046).
//! The same thread does the launch's other side work, one job after the
//! other: first what the handover needs (the overlay root), then the
//! prepares, then what nobody waits for (the warm attach).

use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError};

use super::ManagerError;

/// An isolator to prepare and the contribution it announced.
pub(super) type Announced = (Arc<dyn Isolator>, Contribution);

/// How the helper's prepares went: the first failure, if any (the
/// isolators after it were not prepared).
type Outcome = Result<(), (String, PrepareFailure)>;

enum PrepareFailure {
    Failed(IsolatorError),
    /// `prepare` returned another contribution than it announced.
    Differs,
}

/// The helper's prepares, waited for by [`EarlyPrepare::finish`] (before the
/// first `isolate`) or [`EarlyPrepare::settle`] (before any `cleanup`).
pub(super) struct EarlyPrepare {
    /// The helper's outcome, sent once its prepares are done (`None` with
    /// nothing to prepare, or once taken).
    outcome: Mutex<Option<Receiver<Outcome>>>,
}

impl EarlyPrepare {
    /// Starts a helper (a side thread, `crate::side_threads`, or here if
    /// none can be started) that runs `first`, prepares `isolators` in
    /// order, then runs `then`.
    pub(super) fn start(
        id: &ContainerId,
        config: &ContainerConfig,
        isolators: Vec<Announced>,
        first: Option<Box<dyn FnOnce() + Send>>,
        then: impl FnOnce() + Send + 'static,
    ) -> EarlyPrepare {
        if isolators.is_empty() && first.is_none() {
            then();
            return EarlyPrepare {
                outcome: Mutex::new(None),
            };
        }
        let (id, config) = (id.clone(), config.clone());
        let (sender, receiver) = channel();
        crate::side_threads::run(move || {
            if let Some(first) = first {
                first();
            }
            let _ = sender.send(prepare_all(&id, &config, &isolators));
            then();
        });
        EarlyPrepare {
            outcome: Mutex::new(Some(receiver)),
        }
    }

    /// Waits for the prepares; the first failure fails the launch, as a
    /// failed `prepare` on the launch's own thread would.
    pub(super) fn finish(&self) -> Result<(), ManagerError> {
        match self.outcome() {
            Some(Err((_, PrepareFailure::Failed(e)))) => Err(ManagerError::from(e)),
            Some(Err((name, PrepareFailure::Differs))) => Err(ManagerError::Internal(format!(
                "isolator {name}: prepare contributed other than its early contribution"
            ))),
            Some(Ok(())) | None => Ok(()),
        }
    }

    /// Waits for the prepares, whatever their outcome (a failed launch
    /// cleans every isolator up after this).
    pub(super) fn settle(&self) {
        let _ = self.outcome();
    }

    /// The outcome, once (`None` after it has been taken, or with nothing
    /// to prepare).
    fn outcome(&self) -> Option<Outcome> {
        let receiver = lock(&self.outcome).take()?;
        Some(receiver.recv().unwrap_or_else(|_| {
            Err((
                "(helper)".into(),
                PrepareFailure::Failed(IsolatorError::Other("the prepare thread panicked".into())),
            ))
        }))
    }
}

impl Drop for EarlyPrepare {
    /// No `cleanup` may overlap a `prepare`: a dropped launch still waits.
    fn drop(&mut self) {
        self.settle();
    }
}

fn prepare_all(id: &ContainerId, config: &ContainerConfig, isolators: &[Announced]) -> Outcome {
    for (isolator, announced) in isolators {
        let name = isolator.name().to_string();
        match isolator.prepare(id, config) {
            Ok(contribution) if contribution == *announced => {}
            Ok(_) => return Err((name, PrepareFailure::Differs)),
            Err(e) => return Err((name, PrepareFailure::Failed(e))),
        }
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Records its prepares in a shared log; fails or contributes
    /// something unannounced when told to.
    struct Step {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
        fail: bool,
        differ: bool,
        delay: Duration,
    }

    impl Isolator for Step {
        fn name(&self) -> &str {
            self.name
        }
        fn prepare(
            &self,
            _: &ContainerId,
            _: &ContainerConfig,
        ) -> Result<Contribution, IsolatorError> {
            std::thread::sleep(self.delay);
            let thread = std::thread::current().name().unwrap_or("").to_string();
            lock(&self.log).push(format!("{} on {thread}", self.name));
            if self.fail {
                return Err(IsolatorError::invalid("resources.x", "refused"));
            }
            Ok(contribution(self.name, self.differ))
        }
    }

    fn contribution(name: &str, differ: bool) -> Contribution {
        let mut c = Contribution::default();
        c.env
            .insert(name.to_uppercase(), if differ { "2" } else { "1" }.into());
        c
    }

    fn steps(
        log: &Arc<Mutex<Vec<String>>>,
        specs: &[(&'static str, bool, bool)],
    ) -> Vec<Announced> {
        specs
            .iter()
            .map(|&(name, fail, differ)| {
                let step: Arc<dyn Isolator> = Arc::new(Step {
                    name,
                    log: log.clone(),
                    fail,
                    differ,
                    delay: Duration::ZERO,
                });
                (step, contribution(name, false))
            })
            .collect()
    }

    fn config() -> (ContainerId, ContainerConfig) {
        let id = ContainerId::new("early").unwrap();
        let config = ContainerConfig::for_command(id.clone(), ["true"]);
        (id, config)
    }

    #[test]
    fn prepares_run_in_order_on_a_helper_then_the_follow_up() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (id, config) = config();
        let (before, after) = (log.clone(), log.clone());
        let early = EarlyPrepare::start(
            &id,
            &config,
            steps(&log, &[("cpu", false, false), ("memory", false, false)]),
            Some(Box::new(move || lock(&before).push("first".into()))),
            move || lock(&after).push("then".into()),
        );
        early.finish().unwrap();
        // `then` runs after the outcome is sent: wait for it.
        eventually_logged(&log, 4);
        assert_eq!(
            *lock(&log),
            ["first", "cpu on berth-side", "memory on berth-side", "then"]
        );
        // Once finished, nothing is left to wait for.
        early.finish().unwrap();
    }

    #[test]
    fn the_first_failure_fails_the_launch_as_its_prepare_would_and_stops_the_rest() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (id, config) = config();
        let early = EarlyPrepare::start(
            &id,
            &config,
            steps(
                &log,
                &[
                    ("cpu", false, false),
                    ("memory", true, false),
                    ("pids", false, false),
                ],
            ),
            None,
            || {},
        );
        match early.finish() {
            Err(ManagerError::Invalid { field, .. }) => assert_eq!(field, "resources.x"),
            other => panic!("{other:?}"),
        }
        assert_eq!(*lock(&log), ["cpu on berth-side", "memory on berth-side"]);
    }

    #[test]
    fn a_contribution_other_than_announced_fails_the_launch() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (id, config) = config();
        let early = EarlyPrepare::start(
            &id,
            &config,
            steps(&log, &[("blkio", false, true)]),
            None,
            || {},
        );
        match early.finish() {
            Err(ManagerError::Internal(message)) => {
                assert!(
                    message.contains("blkio") && message.contains("early"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settle_and_drop_wait_for_a_slow_prepare() {
        let (id, config) = config();
        for settle in [true, false] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let slow: Arc<dyn Isolator> = Arc::new(Step {
                name: "slow",
                log: log.clone(),
                fail: true,
                differ: false,
                delay: Duration::from_millis(200),
            });
            let early = EarlyPrepare::start(
                &id,
                &config,
                vec![(slow, Contribution::default())],
                None,
                || {},
            );
            if settle {
                early.settle();
            } else {
                drop(early);
            }
            assert_eq!(*lock(&log), ["slow on berth-side"], "settle {settle}");
        }
    }

    /// Waits (up to 10 s) until `log` has `n` entries.
    fn eventually_logged(log: &Arc<Mutex<Vec<String>>>, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock(log).len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn with_nothing_to_prepare_the_follow_up_runs_at_once() {
        let (id, config) = config();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let early = EarlyPrepare::start(&id, &config, Vec::new(), None, move || {
            flag.store(true, Ordering::SeqCst)
        });
        assert!(ran.load(Ordering::SeqCst));
        early.finish().unwrap();
    }
}
