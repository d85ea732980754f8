//! The in-memory set of revoked session ids, consulted on every proxied
//! request so that a logout or a theft-triggered revocation takes effect
//! before the session's access tokens expire.
//!
//! Reads vastly outnumber writes and the set is usually empty, so the layout
//! favours `contains`: an atomic count answers "nothing is revoked" with one
//! load and no lock, and otherwise one of 16 read-write-locked shards is read,
//! so concurrent workers only ever share read locks. Each id is kept until a
//! caller-given time (the expiry of the last access token the session could
//! have issued, plus the verifier's leeway); after that, token expiry alone
//! rejects the session's tokens and [`RevokedSet::prune`] can forget it.
//!
//! Tokens of other issuers are revoked by `jti`, `sub` or `sid` instead
//! ([`tokens`], in [`RevokedSet::tokens`]).

pub mod tokens;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

pub use tokens::{RevocationKind, TokenRevocation, TokenRevocations};

/// Number of independently locked shards.
const SHARDS: usize = 16;

/// Revoked session ids, each with the Unix time (seconds) until which it must
/// be remembered.
#[derive(Debug)]
pub struct RevokedSet {
    shards: [RwLock<HashMap<Uuid, u64>>; SHARDS],
    /// Entries across all shards, updated under the owning shard's write
    /// lock; lets `contains` skip the locks entirely while the set is empty.
    count: AtomicUsize,
    /// Revocations of other issuers' tokens.
    pub tokens: TokenRevocations,
}

impl Default for RevokedSet {
    fn default() -> Self {
        RevokedSet::new()
    }
}

impl RevokedSet {
    /// An empty set.
    pub fn new() -> RevokedSet {
        RevokedSet {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            count: AtomicUsize::new(0),
            tokens: TokenRevocations::default(),
        }
    }

    /// Marks `sid` revoked until `keep_until_unix_secs` (inclusive). Returns
    /// `true` when `sid` was not already in the set; if it was, the later of
    /// the two keep-until times is kept.
    pub fn insert(&self, sid: Uuid, keep_until_unix_secs: u64) -> bool {
        let mut shard = self.write(&sid);
        match shard.get_mut(&sid) {
            Some(keep_until) => {
                *keep_until = (*keep_until).max(keep_until_unix_secs);
                false
            }
            None => {
                shard.insert(sid, keep_until_unix_secs);
                self.count.fetch_add(1, Ordering::Release);
                true
            }
        }
    }

    /// Whether `sid` is revoked. Costs one atomic load while the set is empty,
    /// and a shared read lock on one shard otherwise.
    pub fn contains(&self, sid: &Uuid) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.read(sid).contains_key(sid)
    }

    /// Forgets every id whose keep-until time is before `now_unix_secs`;
    /// returns how many were dropped.
    pub fn prune(&self, now_unix_secs: u64) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, keep_until| *keep_until >= now_unix_secs);
            let removed = before - shard.len();
            if removed > 0 {
                self.count.fetch_sub(removed, Ordering::Release);
                dropped += removed;
            }
        }
        dropped
    }

    /// Number of revoked ids currently remembered.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether no id is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard of `sid`. The last byte is random in both v4 and v7 ids (the
    /// first bytes of a v7 id are a timestamp and would crowd one shard).
    fn shard_index(sid: &Uuid) -> usize {
        usize::from(sid.as_bytes()[15]) % SHARDS
    }

    // Every update to a shard is a single map operation, so a lock poisoned
    // by a panicking holder still guards a consistent map.
    fn read(&self, sid: &Uuid) -> RwLockReadGuard<'_, HashMap<Uuid, u64>> {
        self.shards[Self::shard_index(sid)]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, sid: &Uuid) -> RwLockWriteGuard<'_, HashMap<Uuid, u64>> {
        self.shards[Self::shard_index(sid)]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn new_set_is_empty_and_contains_nothing() {
        let set = RevokedSet::new();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert!(!set.contains(&Uuid::new_v4()));
    }

    #[test]
    fn inserted_id_is_contained_and_others_are_not() {
        let set = RevokedSet::new();
        let sid = Uuid::new_v4();
        assert!(set.insert(sid, 1_000));
        assert!(set.contains(&sid));
        assert!(!set.contains(&Uuid::new_v4()));
        assert_eq!(set.len(), 1);
        assert!(!set.is_empty());
    }

    #[test]
    fn inserting_an_id_twice_reports_it_was_already_there_and_counts_it_once() {
        let set = RevokedSet::new();
        let sid = Uuid::new_v4();
        assert!(set.insert(sid, 1_000));
        assert!(!set.insert(sid, 1_000));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn reinserting_keeps_the_later_keep_until_time() {
        let set = RevokedSet::new();
        let extended = Uuid::new_v4();
        let shortened = Uuid::new_v4();
        set.insert(extended, 1_000);
        set.insert(extended, 2_000);
        set.insert(shortened, 2_000);
        set.insert(shortened, 1_000);
        assert_eq!(set.prune(1_500), 0);
        assert!(set.contains(&extended));
        assert!(set.contains(&shortened));
        assert_eq!(set.prune(2_001), 2);
        assert!(set.is_empty());
    }

    #[test]
    fn prune_drops_only_ids_past_their_keep_until_time() {
        let set = RevokedSet::new();
        let expired = Uuid::new_v4();
        let due_now = Uuid::new_v4();
        let later = Uuid::new_v4();
        set.insert(expired, 99);
        set.insert(due_now, 100);
        set.insert(later, 101);
        assert_eq!(set.prune(100), 1);
        assert!(!set.contains(&expired));
        assert!(set.contains(&due_now), "kept until and including its time");
        assert!(set.contains(&later));
        assert_eq!(set.len(), 2);
        assert_eq!(set.prune(100), 0);
    }

    #[test]
    fn prune_of_an_empty_set_drops_nothing() {
        assert_eq!(RevokedSet::new().prune(u64::MAX), 0);
    }

    #[test]
    fn ids_sharing_a_shard_are_told_apart() {
        let set = RevokedSet::new();
        let mut a = *Uuid::new_v4().as_bytes();
        let mut b = *Uuid::new_v4().as_bytes();
        a[15] = 7;
        b[15] = 7;
        let (a, b) = (Uuid::from_bytes(a), Uuid::from_bytes(b));
        set.insert(a, 10);
        assert!(set.contains(&a));
        assert!(!set.contains(&b));
    }

    #[test]
    fn concurrent_inserts_and_lookups_from_several_threads_agree() {
        let set = Arc::new(RevokedSet::new());
        let per_thread = 2_000;
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let set = Arc::clone(&set);
                std::thread::spawn(move || {
                    let mut mine = Vec::with_capacity(per_thread);
                    for i in 0..per_thread {
                        let sid = Uuid::new_v4();
                        // Even threads keep their ids longer than odd ones.
                        assert!(set.insert(sid, 200 - t % 2 * 100));
                        assert!(set.contains(&sid));
                        // Everyone also re-inserts a shared id.
                        set.insert(Uuid::from_u128(42), 500);
                        if i % 100 == 0 {
                            assert!(!set.contains(&Uuid::new_v4()));
                        }
                        mine.push(sid);
                    }
                    mine
                })
            })
            .collect();
        let inserted: Vec<Vec<Uuid>> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let total = 8 * per_thread + 1;
        assert_eq!(set.len(), total);
        assert!(inserted.iter().flatten().all(|sid| set.contains(sid)));
        assert!(set.contains(&Uuid::from_u128(42)));
        assert_eq!(set.prune(150), 4 * per_thread);
        assert_eq!(set.len(), 4 * per_thread + 1);
        assert!(inserted[0].iter().all(|sid| set.contains(sid)));
        assert!(inserted[1].iter().all(|sid| !set.contains(sid)));
    }
}
