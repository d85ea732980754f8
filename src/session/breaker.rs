//! The session-store breaker: once a store call finds the database
//! unreachable, session requests are refused at once (503 with
//! `Retry-After`) instead of each one waiting out the pool's acquire timeout,
//! until a background probe reaches the database again.
//!
//! Why: while the database is down, every refresh would otherwise hold a
//! client (and a pool slot) for `sessions.pool.acquire_timeout` only to
//! answer 503 anyway; clients retrying pile up behind each other. Failing
//! fast turns the outage into quick, honest answers that say when to retry.
//!
//! Three states, which are also the values of the
//! `portcullis_session_store_breaker_state` gauge:
//!
//! - **closed** (0): calls go to the store;
//! - **open** (1): calls fail fast without touching the pool;
//! - **probing** (2, half-open): one probe is in flight and decides; calls
//!   still fail fast.
//!
//! Any caller may open the breaker ([`StoreBreaker::trip`]); only a probe
//! closes it, and [`StoreBreaker::begin_probe`] lets one probe at a time in.
//! This module only keeps the state; the session service runs the probe and
//! logs the transitions.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Calls go to the store.
    Closed,
    /// The store was found unavailable: calls fail fast until a probe
    /// reaches it.
    Open,
    /// Half-open: the one probe in flight decides; calls still fail fast.
    Probing,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 probing.
    pub(crate) const fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::Probing => 2,
        }
    }

    const fn from_u8(value: u8) -> BreakerState {
        match value {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::Probing,
        }
    }
}

/// The breaker of one session store. Reads are one atomic load (every
/// session call makes one); transitions are serialised, so the gauge never
/// shows a state the breaker is not in.
pub(crate) struct StoreBreaker {
    /// The [`BreakerState`] as its gauge value, for lock-free reads.
    state: AtomicU8,
    /// Held while changing `state`; remembers when the breaker opened.
    opened_at: Mutex<Option<Instant>>,
    /// `sessions.store_probe_interval` in milliseconds (a reload changes it).
    probe_interval_ms: AtomicU64,
    /// `portcullis_session_store_breaker_state`.
    gauge: IntGauge,
}

impl StoreBreaker {
    /// A closed breaker probing every `probe_interval` once open.
    pub(crate) fn new(probe_interval: Duration, gauge: IntGauge) -> StoreBreaker {
        gauge.set(BreakerState::Closed.gauge_value());
        let breaker = StoreBreaker {
            state: AtomicU8::new(0),
            opened_at: Mutex::new(None),
            probe_interval_ms: AtomicU64::new(0),
            gauge,
        };
        breaker.set_probe_interval(probe_interval);
        breaker
    }

    /// Where the breaker stands now.
    pub(crate) fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// True while calls may go to the store.
    pub(crate) fn is_closed(&self) -> bool {
        self.state() == BreakerState::Closed
    }

    /// How often the store is probed while the breaker is open.
    pub(crate) fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms.load(Ordering::Relaxed))
    }

    /// Takes a reloaded `sessions.store_probe_interval` into account.
    pub(crate) fn set_probe_interval(&self, interval: Duration) {
        let millis = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.probe_interval_ms.store(millis, Ordering::Relaxed);
    }

    /// Closed → open: a call found the store unavailable. True when this
    /// call opened the breaker (the caller logs it); false when it was
    /// already open or a probe is deciding.
    pub(crate) fn trip(&self) -> bool {
        self.transition(|state| (state == BreakerState::Closed).then_some(BreakerState::Open))
            .is_some()
    }

    /// Open → probing. True when the caller may probe now; false when the
    /// breaker is closed or another probe is in flight.
    pub(crate) fn begin_probe(&self) -> bool {
        self.transition(|state| (state == BreakerState::Open).then_some(BreakerState::Probing))
            .is_some()
    }

    /// Probing → closed when the probe reached the store, else back to
    /// open. Returns how long the breaker was open when this closed it.
    pub(crate) fn end_probe(&self, reached: bool) -> Option<Duration> {
        let next = if reached {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        let opened_at =
            self.transition(|state| (state == BreakerState::Probing).then_some(next))?;
        (next == BreakerState::Closed).then(|| opened_at.map(|at| at.elapsed()).unwrap_or_default())
    }

    /// Applies `change` to the current state under the lock; returns when
    /// the breaker had opened (before the change) when the state changed.
    fn transition(
        &self,
        change: impl FnOnce(BreakerState) -> Option<BreakerState>,
    ) -> Option<Option<Instant>> {
        // The guarded data is a timestamp: a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is used as it is.
        let mut opened_at = self
            .opened_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = change(self.state())?;
        let was_opened_at = *opened_at;
        match next {
            BreakerState::Closed => *opened_at = None,
            BreakerState::Open if opened_at.is_none() => *opened_at = Some(Instant::now()),
            BreakerState::Open | BreakerState::Probing => {}
        }
        self.state
            .store(next.gauge_value() as u8, Ordering::Release);
        self.gauge.set(next.gauge_value());
        Some(was_opened_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (StoreBreaker, IntGauge) {
        let gauge = IntGauge::new("breaker_state", "test gauge").expect("a valid gauge");
        (
            StoreBreaker::new(Duration::from_millis(1500), gauge.clone()),
            gauge,
        )
    }

    #[test]
    fn a_new_breaker_is_closed_and_says_so_on_its_gauge() {
        let (breaker, gauge) = breaker();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.is_closed());
        assert_eq!(gauge.get(), 0);
        assert_eq!(breaker.probe_interval(), Duration::from_millis(1500));
    }

    #[test]
    fn the_first_failure_opens_the_breaker_and_later_ones_change_nothing() {
        let (breaker, gauge) = breaker();
        assert!(breaker.trip(), "the first failure opens it");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(gauge.get(), 1);
        assert!(!breaker.trip(), "already open: nothing to log twice");
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn only_one_probe_runs_at_a_time_and_only_while_open() {
        let (breaker, gauge) = breaker();
        assert!(!breaker.begin_probe(), "a closed breaker needs no probe");
        breaker.trip();
        assert!(breaker.begin_probe());
        assert_eq!(breaker.state(), BreakerState::Probing);
        assert_eq!(gauge.get(), 2);
        assert!(!breaker.begin_probe(), "a second probe must wait");
        assert!(
            !breaker.trip(),
            "a late failure does not preempt the probe that is deciding"
        );
        assert_eq!(breaker.state(), BreakerState::Probing);
    }

    #[test]
    fn a_failed_probe_reopens_and_a_successful_one_closes_with_the_outage_length() {
        let (breaker, gauge) = breaker();
        breaker.trip();
        assert!(breaker.begin_probe());
        assert_eq!(breaker.end_probe(false), None);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(gauge.get(), 1);
        assert!(breaker.begin_probe(), "the next interval probes again");
        let outage = breaker.end_probe(true).expect("the probe closed it");
        assert!(outage < Duration::from_secs(60), "{outage:?}");
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(gauge.get(), 0);
        assert!(breaker.trip(), "a new outage opens it again");
    }

    #[test]
    fn ending_a_probe_that_was_never_begun_changes_nothing() {
        let (breaker, gauge) = breaker();
        assert_eq!(breaker.end_probe(true), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.trip();
        assert_eq!(breaker.end_probe(true), None, "open, not probing");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn concurrent_failures_open_the_breaker_exactly_once() {
        let (breaker, _) = breaker();
        let opened = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| breaker.trip())).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("trip does not panic"))
                .filter(|opened| *opened)
                .count()
        });
        assert_eq!(opened, 1);
    }

    #[test]
    fn a_reloaded_probe_interval_is_taken_into_account() {
        let (breaker, _) = breaker();
        breaker.set_probe_interval(Duration::from_secs(3));
        assert_eq!(breaker.probe_interval(), Duration::from_secs(3));
    }
}
