//! Revocations of tokens the gateway did not mint: by `jti` (one token), by
//! `sub` (every token of the subject issued up to the revocation) and by the
//! identity provider's `sid` (every token of that IdP session), each per
//! issuer (`iss`). Filled by the session service from the admin API, OIDC
//! back-channel logouts and other nodes (LISTEN/NOTIFY or polling), read on
//! every proxied request after verification — so a cached verification obeys
//! a revocation at once.
//!
//! Like the session set, it is usually empty: one atomic load answers
//! "nothing revoked" without a lock. Otherwise one read lock and at most
//! three map lookups, none of which allocates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a token revocation matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// One token, by its `jti`.
    Jti,
    /// Every token of a subject (`sub`) issued (`iat`) at or before the
    /// second of the revocation; later tokens pass.
    Sub,
    /// Every token carrying the identity provider's session id (`sid`).
    Sid,
}

impl RevocationKind {
    /// Every kind, e.g. to pre-register metric label values.
    pub const ALL: [RevocationKind; 3] = [
        RevocationKind::Jti,
        RevocationKind::Sub,
        RevocationKind::Sid,
    ];

    /// The stored (and metrics label, and API) spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Sub => "sub",
            RevocationKind::Sid => "sid",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<RevocationKind> {
        RevocationKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One stored revocation, as written to the store and announced to other
/// nodes (the NOTIFY payload is its JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevocation {
    /// What `value` is.
    pub kind: RevocationKind,
    /// The issuer, exactly as tokens carry it in `iss`.
    pub iss: String,
    /// The `jti`, `sub` or `sid` revoked.
    pub value: String,
    /// When, in Unix milliseconds (by the revoking node's clock).
    pub revoked_at_ms: i64,
    /// Until when it must be remembered, in Unix milliseconds: no token the
    /// issuer could have issued before `revoked_at_ms` is valid afterwards.
    pub keep_until_ms: i64,
}

impl TokenRevocation {
    fn revoked_at_secs(&self) -> u64 {
        (self.revoked_at_ms.max(0) / 1000) as u64
    }

    fn keep_until_secs(&self) -> u64 {
        (self.keep_until_ms.max(0) / 1000) as u64
    }
}

/// When a revocation was made and until when it is kept (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    revoked_at: u64,
    keep_until: u64,
}

#[derive(Debug, Default)]
struct IssuerRevocations {
    jti: HashMap<Box<str>, Entry>,
    sub: HashMap<Box<str>, Entry>,
    sid: HashMap<Box<str>, Entry>,
}

impl IssuerRevocations {
    fn map(&mut self, kind: RevocationKind) -> &mut HashMap<Box<str>, Entry> {
        match kind {
            RevocationKind::Jti => &mut self.jti,
            RevocationKind::Sub => &mut self.sub,
            RevocationKind::Sid => &mut self.sid,
        }
    }

    fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.sid.len()
    }
}

/// The revocations in force on this node, by issuer.
#[derive(Debug, Default)]
pub struct TokenRevocations {
    by_iss: RwLock<HashMap<Box<str>, IssuerRevocations>>,
    /// Entries over all issuers, updated under the write lock.
    count: AtomicUsize,
}

impl TokenRevocations {
    /// Remembers `r`. Returns `true` when it was not known yet; a known one
    /// keeps the later of both revocation and keep-until times (a subject
    /// revoked again also refuses the tokens issued in between).
    pub fn insert(&self, r: &TokenRevocation) -> bool {
        let entry = Entry {
            revoked_at: r.revoked_at_secs(),
            keep_until: r.keep_until_secs(),
        };
        let mut by_iss = self.by_iss.write().unwrap_or_else(PoisonError::into_inner);
        let map = by_iss.entry(r.iss.as_str().into()).or_default().map(r.kind);
        match map.get_mut(r.value.as_str()) {
            Some(known) => {
                let merged = Entry {
                    revoked_at: known.revoked_at.max(entry.revoked_at),
                    keep_until: known.keep_until.max(entry.keep_until),
                };
                let changed = merged != *known;
                *known = merged;
                changed
            }
            None => {
                map.insert(r.value.as_str().into(), entry);
                self.count.fetch_add(1, Ordering::Release);
                true
            }
        }
    }

    /// Whether a verified token with these claims is revoked: its `jti`, its
    /// `sid`, or its `sub` with an `iat` at or before the subject's
    /// revocation (a token without `iat` counts as issued before). One
    /// atomic load while nothing is revoked.
    pub fn refuses(&self, claims: &Map<String, Value>) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let Some(iss) = text("iss") else {
            return false;
        };
        let by_iss = self.by_iss.read().unwrap_or_else(PoisonError::into_inner);
        let Some(revoked) = by_iss.get(iss) else {
            return false;
        };
        if text("jti").is_some_and(|jti| revoked.jti.contains_key(jti))
            || text("sid").is_some_and(|sid| revoked.sid.contains_key(sid))
        {
            return true;
        }
        match text("sub").and_then(|sub| revoked.sub.get(sub)) {
            Some(entry) => claims
                .get("iat")
                .and_then(Value::as_f64)
                .is_none_or(|iat| iat < 0.0 || iat.floor() as u64 <= entry.revoked_at),
            None => false,
        }
    }

    /// Forgets every revocation kept until before `now_unix_secs`; returns
    /// how many were dropped.
    pub fn prune(&self, now_unix_secs: u64) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut by_iss = self.by_iss.write().unwrap_or_else(PoisonError::into_inner);
        let mut dropped = 0;
        for revoked in by_iss.values_mut() {
            let before = revoked.len();
            for kind in RevocationKind::ALL {
                revoked
                    .map(kind)
                    .retain(|_, e| e.keep_until >= now_unix_secs);
            }
            dropped += before - revoked.len();
        }
        by_iss.retain(|_, r| r.len() > 0);
        self.count.fetch_sub(dropped, Ordering::Release);
        dropped
    }

    /// Revocations currently remembered.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://idp.example";

    fn revocation(kind: RevocationKind, value: &str, at_secs: i64) -> TokenRevocation {
        TokenRevocation {
            kind,
            iss: ISS.into(),
            value: value.into(),
            revoked_at_ms: at_secs * 1000 + 400,
            keep_until_ms: (at_secs + 100) * 1000,
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn nothing_is_refused_while_empty() {
        let set = TokenRevocations::default();
        assert!(set.is_empty());
        assert!(!set.refuses(&claims(json!({"iss": ISS, "sub": "u", "jti": "j"}))));
    }

    #[test]
    fn a_jti_or_sid_revocation_refuses_exactly_its_tokens_of_its_issuer() {
        let set = TokenRevocations::default();
        assert!(set.insert(&revocation(RevocationKind::Jti, "j-1", 1_000)));
        assert!(set.insert(&revocation(RevocationKind::Sid, "s-1", 1_000)));
        assert_eq!(set.len(), 2);
        assert!(set.refuses(&claims(json!({"iss": ISS, "jti": "j-1"}))));
        assert!(set.refuses(&claims(json!({"iss": ISS, "sid": "s-1", "iat": 5_000}))));
        assert!(!set.refuses(&claims(json!({"iss": ISS, "jti": "j-2", "sid": "s-2"}))));
        // Same values, another issuer: not revoked.
        assert!(!set.refuses(&claims(
            json!({"iss": "https://other.example", "jti": "j-1", "sid": "s-1"})
        )));
        // A jti value is not a sid value.
        assert!(!set.refuses(&claims(json!({"iss": ISS, "sid": "j-1"}))));
    }

    #[test]
    fn a_subject_revocation_refuses_tokens_issued_up_to_its_second_only() {
        let set = TokenRevocations::default();
        set.insert(&revocation(RevocationKind::Sub, "alice", 1_000));
        let token = |iat: Value| claims(json!({"iss": ISS, "sub": "alice", "iat": iat}));
        assert!(set.refuses(&token(json!(999))));
        assert!(set.refuses(&token(json!(1_000))), "same second: refused");
        assert!(!set.refuses(&token(json!(1_001))), "issued afterwards");
        assert!(
            set.refuses(&claims(json!({"iss": ISS, "sub": "alice"}))),
            "no iat"
        );
        assert!(set.refuses(&token(json!("soon"))), "iat not a number");
        assert!(!set.refuses(&claims(json!({"iss": ISS, "sub": "bob", "iat": 1}))));
    }

    #[test]
    fn revoking_a_subject_again_moves_its_cut_off_later_never_earlier() {
        let set = TokenRevocations::default();
        assert!(set.insert(&revocation(RevocationKind::Sub, "alice", 1_000)));
        assert!(set.insert(&revocation(RevocationKind::Sub, "alice", 2_000)));
        assert!(!set.insert(&revocation(RevocationKind::Sub, "alice", 1_500)));
        assert_eq!(set.len(), 1);
        let token = |iat: u64| claims(json!({"iss": ISS, "sub": "alice", "iat": iat}));
        assert!(set.refuses(&token(1_999)));
        assert!(!set.refuses(&token(2_001)));
    }

    #[test]
    fn prune_forgets_revocations_past_their_keep_until_time() {
        let set = TokenRevocations::default();
        set.insert(&revocation(RevocationKind::Jti, "old", 1_000)); // kept until 1_100
        set.insert(&revocation(RevocationKind::Sid, "new", 2_000)); // kept until 2_100
        assert_eq!(set.prune(1_100), 0, "kept until and including its time");
        assert_eq!(set.prune(1_101), 1);
        assert_eq!(set.len(), 1);
        assert!(!set.refuses(&claims(json!({"iss": ISS, "jti": "old"}))));
        assert!(set.refuses(&claims(json!({"iss": ISS, "sid": "new"}))));
        assert_eq!(set.prune(5_000), 1);
        assert!(set.is_empty());
    }

    #[test]
    fn the_announced_form_round_trips_through_json() {
        let r = revocation(RevocationKind::Sid, "s-1", 1_000);
        let text = serde_json::to_string(&r).expect("json");
        assert!(text.contains(r#""kind":"sid""#), "{text}");
        assert_eq!(
            serde_json::from_str::<TokenRevocation>(&text).expect("back"),
            r
        );
        for kind in RevocationKind::ALL {
            assert_eq!(RevocationKind::parse(kind.as_str()), Some(kind));
        }
    }
}
