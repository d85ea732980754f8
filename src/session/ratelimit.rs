//! Per-key rate limiting (GCRA, the "virtual scheduling" form of a token
//! bucket): `limit` events per `window` per key, in bursts of up to `limit`.
//!
//! Each key's state is one number, the bucket's *debt*: how much of the window
//! its recent events still occupy. An event adds one event's worth of debt;
//! time pays it back at a steady rate; an event that would push the debt past a
//! whole window is refused, and the refusal says how long until it would fit.
//! Debt is kept in "nanoseconds × limit" so the arithmetic is exact: no
//! rounding of `window / limit` lets an extra event slip into a burst.
//!
//! The state lives in 16 mutex-guarded shards picked by a keyed hash of the
//! key, so concurrent workers rarely wait on each other, and memory is bounded:
//! keys whose bucket is full again are forgotten (they behave exactly like a
//! key never seen), and each shard has a hard cap. When a shard is full of
//! live keys, the sampled key closest to a full bucket is evicted: that can
//! forgive one key part of its debt, but a new key is never refused just
//! because the table is full.
//!
//! Keys are stored as a 64-bit hash keyed randomly per limiter, which bounds
//! memory whatever the key length. Two keys could in principle share a bucket;
//! with random hash keys an attacker cannot aim for that, and by chance it
//! takes billions of live keys.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Number of independently locked shards.
const SHARDS: usize = 16;

/// Default cap on tracked keys across all shards (about 6 MiB at most).
pub(crate) const DEFAULT_MAX_KEYS: usize = 131_072;

/// A shard never prunes below this many keys: pruning a tiny map saves
/// nothing and would run on almost every insert.
const MIN_PRUNE_AT: usize = 64;

/// How many entries are inspected to pick one to evict from a full shard.
const EVICTION_SAMPLE: usize = 8;

/// Allows `limit` events per `window` per key, with bursts of up to `limit`.
#[derive(Debug)]
pub struct RateLimiter {
    /// Events per window; 0 disables the limiter.
    limit: u32,
    /// The window in nanoseconds.
    window_ns: u128,
    /// Hard cap on keys in one shard.
    shard_cap: usize,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

/// One key's state.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Outstanding debt in nanoseconds × `limit`, as of `last`.
    debt: u128,
    /// When `debt` was last brought up to date.
    last: Instant,
}

impl Bucket {
    /// The debt left at `now`, after paying back `limit` per elapsed nanosecond.
    fn debt_at(&self, now: Instant, limit: u32) -> u128 {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.debt
            .saturating_sub(elapsed.saturating_mul(u128::from(limit)))
    }

    /// When the bucket is full again (debt fully paid back).
    fn full_at(&self, limit: u32) -> Instant {
        let nanos = self.debt.div_ceil(u128::from(limit.max(1)));
        self.last
            .checked_add(nanos_to_duration(nanos))
            .unwrap_or(self.last)
    }
}

#[derive(Debug)]
struct Shard {
    map: HashMap<u64, Bucket>,
    /// Size at which the next insert of a new key first prunes.
    prune_at: usize,
    /// New keys inserted since the last prune, to amortise pruning once the
    /// shard sits at its cap.
    inserts_since_prune: usize,
}

impl RateLimiter {
    /// A limiter allowing `limit` events per `window` per key, tracking at
    /// most [`DEFAULT_MAX_KEYS`] keys. `limit == 0` (or a zero `window`)
    /// disables it: every event is allowed.
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter::with_max_keys(limit, window, DEFAULT_MAX_KEYS)
    }

    /// Like [`RateLimiter::new`], with a cap on tracked keys (rounded up to a
    /// multiple of the shard count, at least one key per shard).
    pub fn with_max_keys(limit: u32, window: Duration, max_keys: usize) -> RateLimiter {
        let shard_cap = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    prune_at: MIN_PRUNE_AT.min(shard_cap),
                    inserts_since_prune: 0,
                })
            })
            .collect();
        RateLimiter {
            limit,
            window_ns: window.as_nanos(),
            shard_cap,
            hasher: RandomState::new(),
            shards,
        }
    }

    /// Whether the limiter lets everything through.
    pub fn is_disabled(&self) -> bool {
        self.limit == 0 || self.window_ns == 0
    }

    /// Records one event for `key` at `now` if it is allowed; otherwise returns
    /// how long until the next event for `key` would be (see
    /// [`retry_after_secs`] for the `Retry-After` header). A refused event
    /// costs nothing, so retrying early does not push the wait further out.
    pub fn check(&self, key: &[u8], now: Instant) -> Result<(), Duration> {
        if self.is_disabled() {
            return Ok(());
        }
        let limit = u128::from(self.limit);
        // One event costs window/limit of time, i.e. `window_ns` in debt units;
        // the bucket holds a whole window, `window_ns * limit`.
        let cost = self.window_ns;
        let capacity = self.window_ns.saturating_mul(limit);
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        let shard = &mut *shard;
        match shard.map.entry(hash) {
            Entry::Occupied(mut occupied) => {
                let bucket = occupied.get_mut();
                let debt = bucket.debt_at(now, self.limit);
                let after = debt.saturating_add(cost);
                if after > capacity {
                    let wait = (after - capacity).div_ceil(limit);
                    return Err(nanos_to_duration(wait));
                }
                bucket.debt = after;
                // Instants from different workers may arrive slightly out of
                // order; never move `last` backwards.
                bucket.last = bucket.last.max(now);
            }
            Entry::Vacant(_) => {
                // A first event always fits: cost <= capacity since limit >= 1.
                shard.make_room(now, self.limit, self.shard_cap);
                shard.map.insert(
                    hash,
                    Bucket {
                        debt: cost,
                        last: now,
                    },
                );
                shard.inserts_since_prune += 1;
            }
        }
        Ok(())
    }

    /// Forgets every key whose bucket is full again at `now`; returns how many
    /// were dropped. `check` does this by itself as shards grow; a periodic
    /// sweep only returns memory sooner after a burst of distinct keys.
    pub fn prune(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.prune(now, self.limit, self.shard_cap)
            })
            .sum()
    }

    /// Number of keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .map
                    .len()
            })
            .sum()
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        // High bits pick the shard; the map hashes the whole value again.
        let index = (hash >> 60) as usize % SHARDS;
        // A panic while holding the lock cannot leave a bucket half-written
        // (each update is a plain store), so a poisoned shard is still valid.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shard {
    /// Makes sure one more key fits under `cap`: prunes when the shard has
    /// grown enough since the last prune, and evicts when it is still full.
    fn make_room(&mut self, now: Instant, limit: u32, cap: usize) {
        if self.map.len() < self.prune_at {
            return;
        }
        // Below the cap, `prune_at` doubles after each prune, so pruning is
        // amortised O(1) per insert. At the cap, prune again only after half a
        // shard of new keys, for the same reason.
        if self.map.len() < cap || self.inserts_since_prune >= cap / 2 {
            self.prune(now, limit, cap);
        }
        if self.map.len() >= cap {
            self.evict_one(limit);
        }
    }

    /// Drops keys whose bucket is full at `now` and reschedules the next prune.
    fn prune(&mut self, now: Instant, limit: u32, cap: usize) -> usize {
        let before = self.map.len();
        self.map.retain(|_, bucket| bucket.debt_at(now, limit) > 0);
        self.prune_at = self.map.len().saturating_mul(2).max(MIN_PRUNE_AT).min(cap);
        self.inserts_since_prune = 0;
        before - self.map.len()
    }

    /// Evicts, among a few entries, the one whose bucket is full soonest: it
    /// is the one whose debt matters least.
    fn evict_one(&mut self, limit: u32) {
        let victim = self
            .map
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, bucket)| bucket.full_at(limit))
            .map(|(hash, _)| *hash);
        if let Some(hash) = victim {
            self.map.remove(&hash);
        }
    }
}

/// The `Retry-After` value for a wait returned by [`RateLimiter::check`]:
/// whole seconds rounded up, and at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// A nanosecond count as a `Duration`, saturating far beyond any real window.
fn nanos_to_duration(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below one second, so it fits in a u32.
    let subsec = (nanos % NANOS_PER_SEC) as u32;
    Duration::new(secs, subsec)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn burst_of_limit_is_allowed_then_refused_with_one_interval_to_wait() {
        let limiter = RateLimiter::new(5, MINUTE);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(limiter.check(b"alice", t0), Ok(()), "event {i}");
        }
        // One event's share of the window: 60s / 5.
        assert_eq!(limiter.check(b"alice", t0), Err(Duration::from_secs(12)));
    }

    #[test]
    fn retry_after_shrinks_as_time_passes_and_refusals_cost_nothing() {
        let limiter = RateLimiter::new(5, MINUTE);
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.check(b"alice", t0).unwrap();
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(limiter.check(b"alice", later), Err(Duration::from_secs(7)));
        assert_eq!(limiter.check(b"alice", later), Err(Duration::from_secs(7)));
        // Exactly when the wait is over, one event fits, and only one.
        let ready = t0 + Duration::from_secs(12);
        assert_eq!(limiter.check(b"alice", ready), Ok(()));
        assert_eq!(limiter.check(b"alice", ready), Err(Duration::from_secs(12)));
    }

    #[test]
    fn full_burst_is_allowed_again_after_the_window_passes() {
        let limiter = RateLimiter::new(3, MINUTE);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(b"k", t0).unwrap();
        }
        assert!(limiter
            .check(b"k", t0 + MINUTE - Duration::from_secs(1))
            .is_ok());
        assert!(limiter.check(b"k", t0 + MINUTE).is_ok());
        let t1 = t0 + 2 * MINUTE;
        for i in 0..3 {
            assert_eq!(limiter.check(b"k", t1), Ok(()), "event {i}");
        }
        assert!(limiter.check(b"k", t1).is_err());
    }

    #[test]
    fn steady_rate_at_the_limit_is_never_refused() {
        let limiter = RateLimiter::new(10, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..1_000u32 {
            let now = t0 + Duration::from_millis(100) * i;
            assert_eq!(limiter.check(b"k", now), Ok(()), "event {i}");
        }
    }

    #[test]
    fn uneven_windows_allow_exactly_limit_in_a_burst() {
        // 1s / 3 is not a whole number of nanoseconds.
        let limiter = RateLimiter::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(b"k", t0).unwrap();
        }
        let wait = limiter.check(b"k", t0).unwrap_err();
        assert_eq!(wait, Duration::from_nanos(333_333_334));
        assert!(limiter.check(b"k", t0 + wait).is_ok());
    }

    #[test]
    fn keys_are_limited_independently() {
        let limiter = RateLimiter::new(2, MINUTE);
        let t0 = Instant::now();
        limiter.check(b"alice", t0).unwrap();
        limiter.check(b"alice", t0).unwrap();
        assert!(limiter.check(b"alice", t0).is_err());
        assert_eq!(limiter.check(b"bob", t0), Ok(()));
        assert_eq!(limiter.check(b"bob", t0), Ok(()));
        assert!(limiter.check(b"bob", t0).is_err());
        assert_eq!(limiter.check(b"carol", t0), Ok(()));
    }

    #[test]
    fn zero_limit_disables_the_limiter() {
        let limiter = RateLimiter::new(0, MINUTE);
        let t0 = Instant::now();
        assert!(limiter.is_disabled());
        for _ in 0..10_000 {
            assert_eq!(limiter.check(b"k", t0), Ok(()));
        }
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn instants_arriving_out_of_order_do_not_grant_extra_events() {
        let limiter = RateLimiter::new(2, MINUTE);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        limiter.check(b"k", t1).unwrap();
        limiter.check(b"k", t0).unwrap();
        assert!(limiter.check(b"k", t0).is_err());
        assert!(limiter.check(b"k", t1).is_err());
    }

    #[test]
    fn keys_back_to_a_full_bucket_are_pruned() {
        let limiter = RateLimiter::new(5, MINUTE);
        let t0 = Instant::now();
        for i in 0..100u32 {
            limiter.check(&i.to_be_bytes(), t0).unwrap();
        }
        assert_eq!(limiter.prune(t0 + Duration::from_secs(11)), 0);
        assert_eq!(limiter.tracked_keys(), 100);
        // One event's debt (12s) is paid back.
        assert_eq!(limiter.prune(t0 + Duration::from_secs(12)), 100);
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn many_distinct_keys_over_time_stay_within_the_cap() {
        let max_keys = 1_024;
        let limiter = RateLimiter::with_max_keys(5, Duration::from_secs(1), max_keys);
        let t0 = Instant::now();
        for i in 0..200_000u32 {
            // 1,000 new keys a second: most buckets are full again soon.
            let now = t0 + Duration::from_millis(u64::from(i));
            limiter.check(&i.to_be_bytes(), now).unwrap();
            if i % 1_000 == 0 {
                assert!(limiter.tracked_keys() <= max_keys, "after {i} keys");
            }
        }
        // Only keys seen in the last 200ms (one event's debt) are live.
        assert!(limiter.tracked_keys() <= max_keys);
        assert!(limiter.prune(t0 + Duration::from_secs(1_000)) > 0);
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn a_full_table_still_admits_new_keys_and_keeps_limiting_old_ones() {
        let max_keys = 256;
        let limiter = RateLimiter::with_max_keys(1, Duration::from_secs(3600), max_keys);
        let t0 = Instant::now();
        // Every key stays in debt for an hour: nothing can be pruned.
        for i in 0..10_000u32 {
            assert_eq!(limiter.check(&i.to_be_bytes(), t0), Ok(()), "key {i}");
        }
        assert!(limiter.tracked_keys() <= max_keys);
        // The most recent keys are still tracked and limited.
        let last = 9_999u32.to_be_bytes();
        assert!(limiter.check(&last, t0).is_err());
    }

    #[test]
    fn concurrent_checks_never_allow_more_than_the_limit() {
        let limiter = Arc::new(RateLimiter::new(100, MINUTE));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    (0..1_000)
                        .filter(|_| limiter.check(b"shared", t0).is_ok())
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(12)), 12);
        assert_eq!(retry_after_secs(Duration::from_millis(12_001)), 13);
    }
}
