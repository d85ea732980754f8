//! Cache of verified tokens so a token seen again costs a hash lookup instead
//! of a signature check. Keyed by the full token (compared exactly, hashed with
//! a per-process random SipHash key, so collisions cannot be forced), sharded
//! to keep lock hold times short. Entries are dropped at expiry; a full shard
//! first sheds expired entries and then starts over, which bounds memory.
//! Each config generation has its own cache, so key rotation empties it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::token::VerifiedToken;

const SHARDS: usize = 16;

/// Verified tokens of one config generation, by token text.
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<Box<str>, Arc<VerifiedToken>>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl TokenCache {
    /// A cache holding about `capacity` tokens; 0 disables caching.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: Default::default(),
        }
    }

    fn shard(&self, token: &str) -> &Mutex<HashMap<Box<str>, Arc<VerifiedToken>>> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(token) as usize;
        &self.shards[h % SHARDS]
    }

    /// The cached verification of `token`, if any. Expiry is not checked:
    /// the caller compares `exp` with its own leeway.
    pub fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        if self.per_shard == 0 {
            return None;
        }
        let shard = self.shard(token).lock().ok()?;
        shard.get(token).cloned()
    }

    /// Forgets `token` (e.g. once it is found expired).
    pub fn remove(&self, token: &str) {
        if let Ok(mut shard) = self.shard(token).lock() {
            shard.remove(token);
        }
    }

    /// Caches a verified token. `now` (Unix seconds) decides which entries a
    /// full shard sheds as expired before it is emptied.
    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>, now: u64) {
        if self.per_shard == 0 {
            return;
        }
        let Ok(mut shard) = self.shard(token).lock() else {
            return;
        };
        if shard.len() >= self.per_shard {
            shard.retain(|_, v| v.exp > now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(token.into(), verified);
    }

    /// Number of cached tokens (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
