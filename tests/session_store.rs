//! Conformance suite for `SessionStore`. Every check is written once against
//! `Arc<dyn SessionStore>` (or the URL of a fresh, unmigrated database) and
//! run on SQLite (a temp file) and on Postgres (a database of its own on a
//! throwaway cluster, or on `DATABASE_URL`'s server; see
//! `common/postgres.rs`). Engine-specific behaviour — notifications between
//! nodes, outages — is tested after the shared checks.
//!
//! Times are passed explicitly from a fixed origin, so expiry and grace
//! windows are tested to the millisecond without sleeping.

#[path = "common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::session::store::{
    self, new_refresh_token, Claims, NewSession, PoolSettings, RefreshOutcome, Revocation,
    RevocationEvent, RevocationKind, RevokeReason, SessionStore, StoreError, Timestamp,
    TokenRevocation,
};
use uuid::Uuid;

/// An odd millisecond, so any rounding in either engine would show.
const T0: Timestamp = Timestamp::from_unix_millis(1_700_000_000_123);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const GRACE: Duration = Duration::from_secs(10);

fn at(offset: Duration) -> Timestamp {
    T0.saturating_add(offset)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn claims() -> Claims {
    match serde_json::json!({"role": "patient", "tenant": {"id": 42, "name": "Zoë"}, "scopes": ["a", "b"]})
    {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// A login of `subject` at `T0`: the session to store and its token's hash.
fn login(subject: &str) -> (NewSession, [u8; 32]) {
    let (_token, hash) = new_refresh_token();
    let new = NewSession {
        id: None,
        subject: subject.to_string(),
        claims: claims(),
        device_info: Some("Chrome on Windows".into()),
        user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64)".into()),
        ip: Some("203.0.113.7".into()),
        refresh_hash: hash,
        session_ttl: WEEK,
        now: T0,
    };
    (new, hash)
}

fn random_hash() -> [u8; 32] {
    new_refresh_token().1
}

/// Exchanges `hash` for a fresh successor; returns the outcome and the
/// successor's hash.
async fn exchange(
    store: &Arc<dyn SessionStore>,
    hash: [u8; 32],
    rotate: bool,
    grace: Duration,
    now: Timestamp,
) -> (RefreshOutcome, [u8; 32]) {
    let new_hash = random_hash();
    let outcome = store
        .exchange_refresh_token(hash, new_hash, rotate, grace, now)
        .await
        .expect("exchange_refresh_token");
    (outcome, new_hash)
}

fn expect_generation(outcome: &RefreshOutcome, want: i32) {
    match outcome {
        RefreshOutcome::Rotated { generation, .. } => assert_eq!(*generation, want),
        other => panic!("expected Rotated (generation {want}), got {other:?}"),
    }
}

#[derive(Clone, Copy, Debug)]
enum Engine {
    Sqlite,
    Postgres,
}

/// An empty database of one engine for one test.
struct Db {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<postgres::TestDb>,
}

impl Db {
    async fn new(engine: Engine) -> Db {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite:{}", dir.path().join("sessions.db").display());
                Db {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Engine::Postgres => {
                let pg = postgres::TestDb::create().await;
                Db {
                    url: pg.url.clone(),
                    _dir: None,
                    pg: Some(pg),
                }
            }
        }
    }

    /// A migrated store on this database.
    async fn store(&self) -> Arc<dyn SessionStore> {
        open_migrated(&self.url).await
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_database().await;
        }
    }
}

async fn open_migrated(url: &str) -> Arc<dyn SessionStore> {
    let store = store::open(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate {url}: {e}"));
    store
}

/// Runs each check on one engine: `store` checks get a migrated store,
/// `url` checks the URL of an empty database.
macro_rules! run_checks_on {
    ($engine:expr, store: [$($check:ident),*], url: [$($url_check:ident),*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let db = crate::Db::new($engine).await;
                crate::checks::$check(db.store().await).await;
                db.finish().await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $url_check() {
                let db = crate::Db::new($engine).await;
                crate::checks::$url_check(&db.url).await;
                db.finish().await;
            }
        )*
    };
}

macro_rules! conformance_suite {
    (store: [$($check:ident),* $(,)?], url: [$($url_check:ident),* $(,)?] $(,)?) => {
        mod on_sqlite {
            run_checks_on!(crate::Engine::Sqlite, store: [$($check),*], url: [$($url_check),*]);
        }
        mod on_postgres {
            run_checks_on!(crate::Engine::Postgres, store: [$($check),*], url: [$($url_check),*]);
        }
    };
}

conformance_suite! {
    store: [
        created_session_is_listed_with_all_fields,
        exchange_rotates_token_and_increments_generation,
        rotation_off_keeps_the_presented_token_valid,
        replay_within_grace_issues_a_working_sibling_token,
        replay_after_grace_revokes_the_whole_session,
        expired_session_or_token_is_refused,
        unknown_token_and_ids_are_reported_unknown,
        revoking_another_subjects_session_looks_like_an_unknown_id,
        revoke_all_revokes_only_that_subjects_sessions,
        revoked_since_lists_revocations_at_or_after_the_instant,
        delete_expired_removes_only_dead_sessions_and_tokens,
        count_active_counts_unrevoked_unexpired_sessions,
        migrate_again_is_idempotent_and_keeps_data,
        token_revocations_merge_to_the_later_times_and_list_by_window,
        a_logout_tokens_jti_revokes_once_and_a_replay_stores_nothing,
    ],
    url: [
        concurrent_exchanges_with_grace_rotate_once_and_give_the_rest_siblings,
        concurrent_exchanges_without_grace_rotate_once_and_revoke_on_reuse,
        concurrent_migrations_from_two_gateways_apply_once,
    ],
}

/// A revocation of issuer `https://idp.example` made at `T0 + at_secs`.
fn token_revocation(kind: RevocationKind, value: &str, at_secs: u64) -> TokenRevocation {
    TokenRevocation {
        kind,
        iss: "https://idp.example".into(),
        value: value.into(),
        revoked_at_ms: at(secs(at_secs)).unix_millis(),
        keep_until_ms: at(secs(at_secs + 3600)).unix_millis(),
    }
}

mod checks {
    use super::*;

    pub async fn token_revocations_merge_to_the_later_times_and_list_by_window(
        store: Arc<dyn SessionStore>,
    ) {
        let sub = token_revocation(RevocationKind::Sub, "alice", 10);
        assert_eq!(store.revoke_tokens(sub.clone()).await.unwrap(), sub);
        let jti = token_revocation(RevocationKind::Jti, "token-1", 20);
        store.revoke_tokens(jti.clone()).await.unwrap();
        // Same subject again, later: its times move later; an earlier
        // repeat leaves them.
        let later = token_revocation(RevocationKind::Sub, "alice", 30);
        assert_eq!(store.revoke_tokens(later.clone()).await.unwrap(), later);
        assert_eq!(store.revoke_tokens(sub.clone()).await.unwrap(), later);
        // Same value, other kind or issuer: separate revocations.
        let sid = token_revocation(RevocationKind::Sid, "alice", 5);
        store.revoke_tokens(sid.clone()).await.unwrap();
        let other_iss = TokenRevocation {
            iss: "https://other.example".into(),
            ..token_revocation(RevocationKind::Sub, "alice", 40)
        };
        store.revoke_tokens(other_iss.clone()).await.unwrap();

        let all = store.token_revocations(Timestamp::MIN, T0).await.unwrap();
        assert_eq!(
            all,
            vec![sid.clone(), jti.clone(), later.clone(), other_iss.clone()]
        );
        // Made at or after T0+20s.
        let recent = store.token_revocations(at(secs(20)), T0).await.unwrap();
        assert_eq!(recent, vec![jti.clone(), later.clone(), other_iss.clone()]);
        // Still kept at T0+3620s: only those made at T0+20s or later.
        let kept = store
            .token_revocations(Timestamp::MIN, at(secs(3620)))
            .await
            .unwrap();
        assert_eq!(kept, vec![jti, later.clone(), other_iss]);
        // Cleanup drops those kept until before the cut-off, nothing else.
        let deleted = store
            .delete_expired(at(secs(3625)), Timestamp::MIN)
            .await
            .unwrap();
        assert_eq!(deleted, 2, "the sid and the jti revocation");
        let left = store.token_revocations(Timestamp::MIN, T0).await.unwrap();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&later));
    }

    pub async fn a_logout_tokens_jti_revokes_once_and_a_replay_stores_nothing(
        store: Arc<dyn SessionStore>,
    ) {
        let first = token_revocation(RevocationKind::Sid, "idp-session", 1);
        let stored = store
            .revoke_tokens_for_logout("logout-1", at(secs(600)), first.clone())
            .await
            .unwrap();
        assert_eq!(stored, Some(first.clone()));
        // The same jti again, naming something else: nothing happens.
        let replay = token_revocation(RevocationKind::Sub, "mallory", 2);
        assert_eq!(
            store
                .revoke_tokens_for_logout("logout-1", at(secs(600)), replay)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.token_revocations(Timestamp::MIN, T0).await.unwrap(),
            vec![first.clone()]
        );
        // The same jti of another issuer is another token.
        let other = TokenRevocation {
            iss: "https://other.example".into(),
            ..token_revocation(RevocationKind::Sid, "s", 3)
        };
        assert!(store
            .revoke_tokens_for_logout("logout-1", at(secs(600)), other)
            .await
            .unwrap()
            .is_some());
        // Once its record is cleaned up, the jti is forgotten (its token
        // has long expired by then).
        store
            .delete_expired(at(secs(601)), Timestamp::MIN)
            .await
            .unwrap();
        assert!(store
            .revoke_tokens_for_logout("logout-1", at(secs(9000)), first)
            .await
            .unwrap()
            .is_some());
    }

    pub async fn created_session_is_listed_with_all_fields(store: Arc<dyn SessionStore>) {
        let (new, hash) = login("user-1");
        let created = store.create_session(new.clone()).await.expect("create");
        assert_eq!(
            created.id.get_version_num(),
            4,
            "generated ids are random (v4)"
        );
        assert_eq!(created.subject, "user-1");
        assert_eq!(created.claims, claims());
        assert_eq!(created.device_info.as_deref(), Some("Chrome on Windows"));
        assert_eq!(created.user_agent, new.user_agent);
        assert_eq!(created.ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(created.created_at, T0);
        assert_eq!(created.last_used_at, T0);
        assert_eq!(created.expires_at, at(WEEK));
        assert_eq!(created.revoked, None);
        assert!(created.is_active(T0));

        // What is read back equals what was returned, to the millisecond.
        let now = at(secs(1));
        assert_eq!(
            store.list_active_sessions("user-1", now).await.unwrap(),
            vec![created.clone()]
        );
        assert_eq!(
            store.get_session(created.id).await.unwrap(),
            Some(created.clone())
        );
        assert_eq!(
            store.session_by_refresh_token(hash).await.unwrap(),
            Some(created.clone())
        );

        // Caller-chosen id, no optional fields, no claims; newest listed first.
        let id = Uuid::new_v4();
        let bare = NewSession {
            id: Some(id),
            claims: Claims::new(),
            device_info: None,
            user_agent: None,
            ip: None,
            now: at(secs(5)),
            ..login("user-1").0
        };
        let bare = store.create_session(bare).await.expect("create with id");
        assert_eq!(bare.id, id);
        assert_eq!(
            store
                .list_active_sessions("user-1", at(secs(6)))
                .await
                .unwrap(),
            vec![bare.clone(), created.clone()]
        );
        assert!(store
            .list_active_sessions("user-2", now)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.count_active(at(secs(6))).await.unwrap(), 2);

        // The far end of the representable range survives a round trip.
        let forever = NewSession {
            session_ttl: Duration::MAX,
            ..login("user-4").0
        };
        let forever = store.create_session(forever).await.expect("create forever");
        assert_eq!(forever.expires_at, Timestamp::MAX);
        assert_eq!(store.get_session(forever.id).await.unwrap(), Some(forever));

        // A refresh hash already taken: Conflict, and the session row of the
        // failed transaction is not left behind.
        let duplicate = NewSession {
            refresh_hash: hash,
            ..login("user-2").0
        };
        match store.create_session(duplicate).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("expected Conflict for a duplicate refresh hash, got {other:?}"),
        }
        assert!(store
            .list_active_sessions("user-2", now)
            .await
            .unwrap()
            .is_empty());
        // So is a reused session id.
        let same_id = NewSession {
            id: Some(id),
            ..login("user-3").0
        };
        assert!(matches!(
            store.create_session(same_id).await,
            Err(StoreError::Conflict(_))
        ));
    }

    pub async fn exchange_rotates_token_and_increments_generation(store: Arc<dyn SessionStore>) {
        let (new, h0) = login("user-1");
        let session = store.create_session(new).await.unwrap();

        let (first, h1) = exchange(&store, h0, true, GRACE, at(secs(60))).await;
        expect_generation(&first, 1);
        let RefreshOutcome::Rotated { session: after, .. } = first else {
            unreachable!()
        };
        assert_eq!(after.id, session.id);
        assert_eq!(after.last_used_at, at(secs(60)));
        assert_eq!(after.created_at, T0);

        let (second, h2) = exchange(&store, h1, true, GRACE, at(secs(120))).await;
        expect_generation(&second, 2);
        let stored = store
            .session_by_refresh_token(h2)
            .await
            .unwrap()
            .expect("successor stored");
        assert_eq!(stored.id, session.id);
        assert_eq!(stored.last_used_at, at(secs(120)));
        assert_eq!(store.get_session(session.id).await.unwrap(), Some(stored));

        // h1 is now rotated: presenting it again is a replay, never a second
        // rotation.
        let (again, _) = exchange(&store, h1, true, GRACE, at(secs(125))).await;
        assert!(
            matches!(again, RefreshOutcome::GraceReplay { generation: 2, .. }),
            "got {again:?}"
        );
    }

    pub async fn rotation_off_keeps_the_presented_token_valid(store: Arc<dyn SessionStore>) {
        let (new, h0) = login("user-1");
        let session = store.create_session(new).await.unwrap();

        let (kept, unused) = exchange(&store, h0, false, GRACE, at(secs(60))).await;
        match kept {
            RefreshOutcome::Kept { session: s } => {
                assert_eq!(s.id, session.id);
                assert_eq!(s.last_used_at, at(secs(60)));
            }
            other => panic!("expected Kept, got {other:?}"),
        }
        assert_eq!(
            store.session_by_refresh_token(unused).await.unwrap(),
            None,
            "nothing new issued"
        );
        // Still valid an hour later: without rotation there is no reuse.
        let (later, _) = exchange(&store, h0, false, GRACE, at(secs(3600))).await;
        assert!(
            matches!(later, RefreshOutcome::Kept { .. }),
            "got {later:?}"
        );
        assert_eq!(
            store
                .get_session(session.id)
                .await
                .unwrap()
                .map(|s| s.last_used_at),
            Some(at(secs(3600)))
        );
        // Switching rotation on later rotates the same token.
        let (rotated, _) = exchange(&store, h0, true, GRACE, at(secs(3700))).await;
        expect_generation(&rotated, 1);
    }

    pub async fn replay_within_grace_issues_a_working_sibling_token(store: Arc<dyn SessionStore>) {
        let (new, h0) = login("user-1");
        let session = store.create_session(new).await.unwrap();
        let (rotated, h1) = exchange(&store, h0, true, GRACE, at(secs(60))).await;
        expect_generation(&rotated, 1);

        // The second tab presents h0 just inside the window.
        let just_inside = at(secs(60)).saturating_add(GRACE - Duration::from_millis(1));
        let (replay, sibling) = exchange(&store, h0, true, GRACE, just_inside).await;
        match replay {
            RefreshOutcome::GraceReplay {
                session: s,
                generation,
            } => {
                assert_eq!(generation, 1, "a sibling of h1, not a new generation");
                assert_eq!(s.id, session.id);
                assert_eq!(s.revoked, None);
            }
            other => panic!("expected GraceReplay, got {other:?}"),
        }
        // Both tabs' tokens work.
        let (a, _) = exchange(&store, sibling, true, GRACE, at(secs(75))).await;
        expect_generation(&a, 2);
        let (b, _) = exchange(&store, h1, true, GRACE, at(secs(76))).await;
        expect_generation(&b, 2);
        assert!(store
            .get_session(session.id)
            .await
            .unwrap()
            .is_some_and(|s| s.is_active(at(secs(76)))));
    }

    pub async fn replay_after_grace_revokes_the_whole_session(store: Arc<dyn SessionStore>) {
        let (new, h0) = login("user-1");
        let session = store.create_session(new).await.unwrap();
        let (_, h1) = exchange(&store, h0, true, GRACE, at(secs(60))).await;

        // Exactly at the end of the window is already too late.
        let reuse_at = at(secs(60)).saturating_add(GRACE);
        let (reused, _) = exchange(&store, h0, true, GRACE, reuse_at).await;
        assert_eq!(
            reused,
            RefreshOutcome::Reused {
                session_id: session.id,
                subject: "user-1".into()
            }
        );
        let revoked = store
            .get_session(session.id)
            .await
            .unwrap()
            .expect("kept for the record");
        assert_eq!(
            revoked.revoked,
            Some(Revocation {
                at: reuse_at,
                reason: RevokeReason::ReuseDetected
            })
        );
        // Every token of the session is dead now, the legitimate one too.
        for hash in [h1, h0] {
            let (outcome, _) = exchange(&store, hash, true, GRACE, at(secs(80))).await;
            assert_eq!(
                outcome,
                RefreshOutcome::Revoked {
                    session_id: session.id,
                    reason: RevokeReason::ReuseDetected
                }
            );
        }
        assert!(store
            .list_active_sessions("user-1", at(secs(80)))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.count_active(at(secs(80))).await.unwrap(), 0);
        assert_eq!(
            store.revoked_since(reuse_at).await.unwrap(),
            vec![(session.id, reuse_at)]
        );
        // Revoking again changes nothing and reports nothing.
        assert_eq!(
            store
                .revoke_session(session.id, RevokeReason::Logout, at(secs(90)))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .get_session(session.id)
                .await
                .unwrap()
                .and_then(|s| s.revoked),
            Some(Revocation {
                at: reuse_at,
                reason: RevokeReason::ReuseDetected
            })
        );
    }

    pub async fn expired_session_or_token_is_refused(store: Arc<dyn SessionStore>) {
        let (new, h0) = login("user-1");
        let session = store
            .create_session(NewSession {
                session_ttl: secs(60),
                ..new
            })
            .await
            .unwrap();
        assert_eq!(session.expires_at, at(secs(60)));

        // One millisecond before the end still works, and the successor
        // inherits the session's absolute expiry.
        let (rotated, h1) =
            exchange(&store, h0, true, GRACE, at(Duration::from_millis(59_999))).await;
        expect_generation(&rotated, 1);
        let (expired, unused) = exchange(&store, h1, true, GRACE, at(secs(60))).await;
        assert_eq!(expired, RefreshOutcome::Expired);
        assert_eq!(store.session_by_refresh_token(unused).await.unwrap(), None);
        // Expiry is reported before reuse: an expired session is not revoked.
        let (old, _) = exchange(&store, h0, true, GRACE, at(secs(3600))).await;
        assert_eq!(old, RefreshOutcome::Expired);
        let (kept, _) = exchange(&store, h1, false, GRACE, at(secs(61))).await;
        assert_eq!(kept, RefreshOutcome::Expired);
        assert_eq!(
            store
                .get_session(session.id)
                .await
                .unwrap()
                .and_then(|s| s.revoked),
            None
        );

        assert!(store
            .list_active_sessions("user-1", at(secs(60)))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.count_active(at(secs(60))).await.unwrap(), 0);
        assert_eq!(
            store
                .count_active(at(Duration::from_millis(59_999)))
                .await
                .unwrap(),
            1
        );
    }

    pub async fn unknown_token_and_ids_are_reported_unknown(store: Arc<dyn SessionStore>) {
        let (new, _) = login("user-1");
        store.create_session(new).await.unwrap();
        let (outcome, unused) = exchange(&store, random_hash(), true, GRACE, at(secs(1))).await;
        assert_eq!(outcome, RefreshOutcome::Unknown);
        assert_eq!(store.session_by_refresh_token(unused).await.unwrap(), None);
        assert_eq!(
            store.session_by_refresh_token(random_hash()).await.unwrap(),
            None
        );
        let stranger = Uuid::new_v4();
        assert_eq!(store.get_session(stranger).await.unwrap(), None);
        assert_eq!(
            store
                .revoke_session(stranger, RevokeReason::Admin, T0)
                .await
                .unwrap(),
            None
        );
        assert!(!store
            .revoke_session_of_subject("user-1", stranger, RevokeReason::SessionDeleted, T0)
            .await
            .unwrap());
        assert!(store
            .revoke_all_for_subject("nobody", RevokeReason::LogoutAll, T0)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.count_active(at(secs(1))).await.unwrap(), 1);
    }

    pub async fn revoking_another_subjects_session_looks_like_an_unknown_id(
        store: Arc<dyn SessionStore>,
    ) {
        let (new, h0) = login("alice");
        let alice = store.create_session(new).await.unwrap();
        let now = at(secs(30));

        let by_bob = store
            .revoke_session_of_subject("bob", alice.id, RevokeReason::SessionDeleted, now)
            .await
            .unwrap();
        let unknown = store
            .revoke_session_of_subject("bob", Uuid::new_v4(), RevokeReason::SessionDeleted, now)
            .await
            .unwrap();
        assert_eq!(
            (by_bob, unknown),
            (false, false),
            "both look the same to bob"
        );
        assert_eq!(
            store.list_active_sessions("alice", now).await.unwrap(),
            vec![alice.clone()]
        );

        assert!(store
            .revoke_session_of_subject("alice", alice.id, RevokeReason::SessionDeleted, now)
            .await
            .unwrap());
        assert!(
            !store
                .revoke_session_of_subject("alice", alice.id, RevokeReason::SessionDeleted, now)
                .await
                .unwrap(),
            "already revoked"
        );
        let (outcome, _) = exchange(&store, h0, true, GRACE, at(secs(31))).await;
        assert_eq!(
            outcome,
            RefreshOutcome::Revoked {
                session_id: alice.id,
                reason: RevokeReason::SessionDeleted
            }
        );
    }

    pub async fn revoke_all_revokes_only_that_subjects_sessions(store: Arc<dyn SessionStore>) {
        let mut alice = Vec::new();
        for _ in 0..3 {
            alice.push(store.create_session(login("alice").0).await.unwrap());
        }
        let (new, bob_hash) = login("bob");
        let bob = store.create_session(new).await.unwrap();
        let logged_out = store
            .revoke_session(alice[0].id, RevokeReason::Logout, at(secs(10)))
            .await
            .unwrap()
            .expect("was active");
        assert_eq!(
            logged_out.revoked,
            Some(Revocation {
                at: at(secs(10)),
                reason: RevokeReason::Logout
            })
        );

        let now = at(secs(20));
        let mut revoked = store
            .revoke_all_for_subject("alice", RevokeReason::LogoutAll, now)
            .await
            .unwrap();
        revoked.sort();
        let mut expected = vec![alice[1].id, alice[2].id];
        expected.sort();
        assert_eq!(revoked, expected, "only the sessions this call revoked");

        assert!(store
            .list_active_sessions("alice", now)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.list_active_sessions("bob", now).await.unwrap(),
            vec![bob.clone()]
        );
        let (bob_refresh, _) = exchange(&store, bob_hash, true, GRACE, now).await;
        expect_generation(&bob_refresh, 1);
        assert_eq!(
            store
                .get_session(alice[0].id)
                .await
                .unwrap()
                .and_then(|s| s.revoked),
            Some(Revocation {
                at: at(secs(10)),
                reason: RevokeReason::Logout
            }),
            "an earlier revocation keeps its reason"
        );
        let mut since: Vec<Uuid> = store
            .revoked_since(now)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        since.sort();
        assert_eq!(since, expected);
        assert!(store
            .revoke_all_for_subject("alice", RevokeReason::LogoutAll, now)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn revoked_since_lists_revocations_at_or_after_the_instant(
        store: Arc<dyn SessionStore>,
    ) {
        let first = store.create_session(login("a").0).await.unwrap();
        let second = store.create_session(login("b").0).await.unwrap();
        let _active = store.create_session(login("c").0).await.unwrap();
        let (t1, t2) = (at(secs(100)), at(secs(200)));
        store
            .revoke_session(second.id, RevokeReason::Admin, t2)
            .await
            .unwrap();
        store
            .revoke_session(first.id, RevokeReason::Logout, t1)
            .await
            .unwrap();

        assert_eq!(
            store.revoked_since(Timestamp::MIN).await.unwrap(),
            vec![(first.id, t1), (second.id, t2)]
        );
        assert_eq!(
            store.revoked_since(t1).await.unwrap(),
            vec![(first.id, t1), (second.id, t2)]
        );
        assert_eq!(
            store.revoked_since(t2).await.unwrap(),
            vec![(second.id, t2)],
            "inclusive"
        );
        assert_eq!(
            store
                .revoked_since(t2.saturating_add(Duration::from_millis(1)))
                .await
                .unwrap(),
            vec![]
        );
    }

    pub async fn delete_expired_removes_only_dead_sessions_and_tokens(
        store: Arc<dyn SessionStore>,
    ) {
        // Active, with one rotation: 2 tokens.
        let (new, a0) = login("active");
        let active = store.create_session(new).await.unwrap();
        let (_, a1) = exchange(&store, a0, true, GRACE, at(secs(60))).await;
        // Expired at T0+60s: 1 token.
        let (new, _) = login("expired");
        let expired = store
            .create_session(NewSession {
                session_ttl: secs(60),
                ..new
            })
            .await
            .unwrap();
        // Revoked long ago, after one rotation: 2 tokens.
        let (new, c0) = login("revoked-long-ago");
        let old = store.create_session(new).await.unwrap();
        exchange(&store, c0, true, GRACE, at(secs(10))).await;
        store
            .revoke_session(old.id, RevokeReason::Logout, at(secs(20)))
            .await
            .unwrap();
        // Revoked recently: 1 token.
        let recent = store
            .create_session(login("revoked-recently").0)
            .await
            .unwrap();
        store
            .revoke_session(recent.id, RevokeReason::Logout, at(secs(3000)))
            .await
            .unwrap();

        let now = at(secs(3600));
        let deleted = store.delete_expired(now, at(secs(1000))).await.unwrap();
        assert_eq!(deleted, 5, "2 sessions and their 3 refresh tokens");
        assert_eq!(store.get_session(expired.id).await.unwrap(), None);
        assert_eq!(store.get_session(old.id).await.unwrap(), None);
        assert!(
            store.get_session(recent.id).await.unwrap().is_some(),
            "still needed by other nodes"
        );
        assert_eq!(store.delete_expired(now, at(secs(1000))).await.unwrap(), 0);

        // The most aggressive cleanup still never touches an active session.
        assert_eq!(store.delete_expired(now, now).await.unwrap(), 2);
        assert_eq!(store.get_session(recent.id).await.unwrap(), None);
        assert_eq!(
            store
                .list_active_sessions("active", now)
                .await
                .unwrap()
                .len(),
            1
        );
        // Its rotated token was kept, so reuse is still detected.
        let (refreshed, _) = exchange(&store, a1, true, GRACE, at(secs(3601))).await;
        expect_generation(&refreshed, 2);
        let (reused, _) = exchange(&store, a0, true, GRACE, at(secs(3700))).await;
        assert_eq!(
            reused,
            RefreshOutcome::Reused {
                session_id: active.id,
                subject: "active".into()
            }
        );
    }

    pub async fn count_active_counts_unrevoked_unexpired_sessions(store: Arc<dyn SessionStore>) {
        assert_eq!(store.count_active(T0).await.unwrap(), 0);
        store.create_session(login("alice").0).await.unwrap();
        store.create_session(login("alice").0).await.unwrap();
        let (new, _) = login("bob");
        store
            .create_session(NewSession {
                session_ttl: secs(60),
                ..new
            })
            .await
            .unwrap();
        let carol = store.create_session(login("carol").0).await.unwrap();
        store
            .revoke_session(carol.id, RevokeReason::Admin, at(secs(1)))
            .await
            .unwrap();

        assert_eq!(store.count_active(at(secs(2))).await.unwrap(), 3);
        assert_eq!(store.count_active(at(secs(60))).await.unwrap(), 2);
        assert_eq!(store.count_active(at(WEEK)).await.unwrap(), 0);
    }

    pub async fn migrate_again_is_idempotent_and_keeps_data(store: Arc<dyn SessionStore>) {
        let (new, h0) = login("user-1");
        let session = store.create_session(new).await.unwrap();
        store.migrate().await.expect("second migrate");
        store.migrate().await.expect("third migrate");
        assert_eq!(store.get_session(session.id).await.unwrap(), Some(session));
        let (outcome, _) = exchange(&store, h0, true, GRACE, at(secs(1))).await;
        expect_generation(&outcome, 1);
    }

    const RACERS: usize = 12;

    /// `RACERS` tasks, alternating between two stores on one database (two
    /// gateway nodes), present the same token at the same instant.
    async fn race(
        url: &str,
        grace: Duration,
    ) -> (Vec<([u8; 32], RefreshOutcome)>, Uuid, Arc<dyn SessionStore>) {
        let nodes = [
            open_migrated(url).await,
            store::open(url).await.expect("second node"),
        ];
        let (new, h0) = login("racer");
        let session = nodes[0].create_session(new).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..RACERS {
            let store = nodes[i % 2].clone();
            let barrier = barrier.clone();
            tasks.spawn(async move {
                let new_hash = random_hash();
                barrier.wait().await;
                let outcome = store
                    .exchange_refresh_token(h0, new_hash, true, grace, at(secs(60)))
                    .await;
                (new_hash, outcome.expect("no error under contention"))
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            results.push(joined.expect("task"));
        }
        let [first, _] = nodes;
        (results, session.id, first)
    }

    pub async fn concurrent_exchanges_with_grace_rotate_once_and_give_the_rest_siblings(url: &str) {
        let (results, session_id, store) = race(url, GRACE).await;
        let rotated = results
            .iter()
            .filter(|(_, o)| matches!(o, RefreshOutcome::Rotated { .. }))
            .count();
        let replays = results
            .iter()
            .filter(|(_, o)| matches!(o, RefreshOutcome::GraceReplay { generation: 1, .. }))
            .count();
        assert_eq!(
            (rotated, replays),
            (1, RACERS - 1),
            "outcomes: {results:#?}"
        );
        // Every racer got a usable generation-1 token.
        for (hash, outcome) in &results {
            if let RefreshOutcome::Rotated { generation, .. } = outcome {
                assert_eq!(*generation, 1);
            }
            let (next, _) = exchange(&store, *hash, true, GRACE, at(secs(61))).await;
            expect_generation(&next, 2);
        }
        assert!(store
            .get_session(session_id)
            .await
            .unwrap()
            .is_some_and(|s| s.revoked.is_none()));
    }

    pub async fn concurrent_exchanges_without_grace_rotate_once_and_revoke_on_reuse(url: &str) {
        let (results, session_id, store) = race(url, Duration::ZERO).await;
        let count = |f: fn(&RefreshOutcome) -> bool| results.iter().filter(|(_, o)| f(o)).count();
        let rotated = count(|o| matches!(o, RefreshOutcome::Rotated { generation: 1, .. }));
        let reused = count(|o| matches!(o, RefreshOutcome::Reused { .. }));
        let revoked = count(|o| {
            matches!(
                o,
                RefreshOutcome::Revoked {
                    reason: RevokeReason::ReuseDetected,
                    ..
                }
            )
        });
        // The first rotates, the second is reuse and revokes the session, the
        // rest find it revoked.
        assert_eq!(
            (rotated, reused, revoked),
            (1, 1, RACERS - 2),
            "outcomes: {results:#?}"
        );
        let session = store
            .get_session(session_id)
            .await
            .unwrap()
            .expect("session");
        assert_eq!(
            session.revoked.map(|r| r.reason),
            Some(RevokeReason::ReuseDetected)
        );
        for (hash, _) in &results {
            let (outcome, _) = exchange(&store, *hash, true, GRACE, at(secs(61))).await;
            assert!(
                matches!(
                    outcome,
                    RefreshOutcome::Revoked { .. } | RefreshOutcome::Unknown
                ),
                "got {outcome:?}"
            );
        }
    }

    pub async fn concurrent_migrations_from_two_gateways_apply_once(url: &str) {
        let a = store::open(url).await.expect("first gateway");
        let b = store::open(url).await.expect("second gateway");
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        ra.expect("first migrate");
        rb.expect("second migrate");
        a.migrate().await.expect("migrate after both");
        let session = a.create_session(login("user-1").0).await.unwrap();
        assert_eq!(b.get_session(session.id).await.unwrap(), Some(session));
    }
}

/// Store URLs that cannot work.
mod dispatch {
    use super::*;

    #[tokio::test]
    async fn unknown_scheme_is_rejected_without_echoing_the_password() {
        match store::open("mysql://app:hunter2@db/portcullis").await {
            Err(e @ StoreError::InvalidUrl { .. }) => {
                let message = e.to_string();
                assert!(message.contains("sqlite:"), "{message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            Err(other) => panic!("expected InvalidUrl, got {other}"),
            Ok(_) => panic!("a mysql URL was accepted"),
        }
    }

    #[tokio::test]
    async fn malformed_postgres_url_is_rejected_without_echoing_the_password() {
        match store::open("postgres://app:hunter2@db:notaport/portcullis").await {
            Err(e @ StoreError::InvalidUrl { .. }) => {
                assert!(!e.to_string().contains("hunter2"), "{e}");
            }
            Err(other) => panic!("expected InvalidUrl, got {other}"),
            Ok(_) => panic!("a malformed URL was accepted"),
        }
    }
}

mod sqlite_only {
    use super::*;
    use portcullis::session::store::SqliteStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_store_is_unavailable_and_reopened_file_has_all_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let path = path.to_str().unwrap();
        let store = SqliteStore::connect(path, true).await.expect("open");
        store.migrate().await.unwrap();
        let (new, h0) = login("user-1");
        let session = store.create_session(new).await.unwrap();
        let h1 = random_hash();
        let rotated = store
            .exchange_refresh_token(h0, h1, true, GRACE, at(secs(60)))
            .await
            .unwrap();
        expect_generation(&rotated, 1);
        let before = store.get_session(session.id).await.unwrap();

        store.close().await;
        let unavailable = |r: Result<(), StoreError>| match r {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        };
        unavailable(store.ping().await);
        unavailable(store.get_session(session.id).await.map(drop));
        unavailable(
            store
                .exchange_refresh_token(h1, random_hash(), true, GRACE, at(secs(61)))
                .await
                .map(drop),
        );
        unavailable(store.create_session(login("user-2").0).await.map(drop));
        unavailable(
            store
                .revoke_all_for_subject("user-1", RevokeReason::LogoutAll, T0)
                .await
                .map(drop),
        );

        let reopened = SqliteStore::connect(path, false).await.expect("reopen");
        reopened.migrate().await.unwrap();
        assert_eq!(reopened.get_session(session.id).await.unwrap(), before);
        let next = reopened
            .exchange_refresh_token(h1, random_hash(), true, GRACE, at(secs(62)))
            .await
            .unwrap();
        expect_generation(&next, 2);
    }

    #[tokio::test]
    async fn unopenable_files_are_unavailable_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let missing_dir = dir.path().join("no-such-dir").join("sessions.db");
        let missing_file = dir.path().join("missing.db");
        for (path, create) in [
            (missing_dir.to_str().unwrap(), true),
            (missing_file.to_str().unwrap(), false),
        ] {
            match SqliteStore::connect(path, create).await {
                Err(e @ StoreError::Unavailable(_)) => {
                    assert!(e.to_string().contains(path), "names the file: {e}")
                }
                other => panic!("expected Unavailable for {path}, got {other:?}"),
            }
        }
        assert!(
            !missing_file.exists(),
            "not created without create_if_missing"
        );
    }

    /// SQLite's default pool is one connection (`PoolSettings::for_store`):
    /// migrations and every operation must get by with it, and concurrent
    /// callers queue for it rather than wait on each other forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_connection_serves_migrations_and_concurrent_callers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let sqlite = SqliteStore::connect(path.to_str().unwrap(), true)
            .await
            .expect("open");
        let store: Arc<dyn SessionStore> = Arc::new(sqlite.clone());
        let work = async {
            store.migrate().await.expect("migrate on one connection");
            store.migrate().await.expect("migrate again");
            let mut hashes = Vec::new();
            for i in 0..16 {
                let (new, hash) = login(&format!("user-{}", i % 4));
                store.create_session(new).await.unwrap();
                hashes.push(hash);
            }
            let mut tasks = tokio::task::JoinSet::new();
            // Each token twice at once: one rotates, the other is a grace replay.
            for hash in hashes.iter().chain(hashes.iter()).copied() {
                let store = store.clone();
                tasks.spawn(async move {
                    let outcome = store
                        .exchange_refresh_token(hash, random_hash(), true, GRACE, at(secs(60)))
                        .await
                        .expect("exchange");
                    assert!(
                        matches!(
                            outcome,
                            RefreshOutcome::Rotated { .. } | RefreshOutcome::GraceReplay { .. }
                        ),
                        "{outcome:?}"
                    );
                });
            }
            for i in 0..4 {
                let store = store.clone();
                tasks.spawn(async move {
                    let subject = format!("user-{i}");
                    store
                        .list_active_sessions(&subject, at(secs(61)))
                        .await
                        .unwrap();
                    store.count_active(at(secs(61))).await.unwrap();
                    store.revoked_since(T0).await.unwrap();
                    store.ping().await.unwrap();
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("no caller panicked");
            }
            let revoked = store
                .revoke_all_for_subject("user-0", RevokeReason::LogoutAll, at(secs(62)))
                .await
                .unwrap();
            assert_eq!(revoked.len(), 4);
            store.delete_expired(at(WEEK + secs(1)), T0).await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .expect("one connection never deadlocks");
        let pool = format!("{sqlite:?}");
        assert!(pool.contains("connections: 1,"), "{pool}");
    }

    #[tokio::test]
    async fn sqlite_has_no_push_channel() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_migrated(&format!("sqlite:{}", dir.path().join("s.db").display())).await;
        assert_eq!(store.engine(), "sqlite");
        assert!(store.listen_revocations().await.unwrap().is_none());
    }
}

mod postgres_only {
    use super::*;
    use portcullis::session::store::PostgresStore;

    const NOTIFY_WITHIN: Duration = Duration::from_secs(5);

    /// The next revocation event, skipping `Resync`s.
    async fn next_revoked(events: &mut tokio::sync::mpsc::Receiver<RevocationEvent>) -> Uuid {
        let deadline = Instant::now() + NOTIFY_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Some(RevocationEvent::Revoked(id))) => return id,
                Ok(Some(RevocationEvent::Resync | RevocationEvent::Tokens(_))) => continue,
                Ok(None) => panic!("the revocation listener stopped"),
                Err(_) => panic!("no revocation notification within {NOTIFY_WITHIN:?}"),
            }
        }
    }

    async fn wait_for_resync(
        events: &mut tokio::sync::mpsc::Receiver<RevocationEvent>,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Some(RevocationEvent::Resync)) => return,
                Ok(Some(RevocationEvent::Revoked(_) | RevocationEvent::Tokens(_))) => continue,
                Ok(None) => panic!("the revocation listener stopped"),
                Err(_) => panic!("the revocation listener did not resync within {within:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocations_by_another_node_reach_a_listening_node_promptly() {
        let db = Db::new(Engine::Postgres).await;
        let node_a = db.store().await;
        let node_b = store::open(&db.url).await.unwrap();
        assert_eq!(node_a.engine(), "postgres");
        let mut events = node_a
            .listen_revocations()
            .await
            .unwrap()
            .expect("postgres pushes revocations");

        let s1 = node_b.create_session(login("alice").0).await.unwrap();
        let s2 = node_b.create_session(login("alice").0).await.unwrap();
        let s3 = node_b.create_session(login("bob").0).await.unwrap();
        let (new, c0) = login("carol");
        let s4 = node_b.create_session(new).await.unwrap();
        let mut slowest = Duration::ZERO;

        let started = Instant::now();
        node_b
            .revoke_session(s1.id, RevokeReason::Logout, at(secs(1)))
            .await
            .unwrap();
        assert_eq!(next_revoked(&mut events).await, s1.id);
        slowest = slowest.max(started.elapsed());

        // Revoking an already revoked session announces nothing: the next
        // event is the next real revocation.
        assert!(node_b
            .revoke_session(s1.id, RevokeReason::Logout, at(secs(2)))
            .await
            .unwrap()
            .is_none());
        let started = Instant::now();
        assert!(node_b
            .revoke_session_of_subject("bob", s3.id, RevokeReason::SessionDeleted, at(secs(2)))
            .await
            .unwrap());
        assert_eq!(next_revoked(&mut events).await, s3.id);
        slowest = slowest.max(started.elapsed());

        let started = Instant::now();
        node_b
            .revoke_all_for_subject("alice", RevokeReason::LogoutAll, at(secs(3)))
            .await
            .unwrap();
        assert_eq!(next_revoked(&mut events).await, s2.id);
        slowest = slowest.max(started.elapsed());

        let (_, _) = exchange(&node_b, c0, true, GRACE, at(secs(4))).await;
        let started = Instant::now();
        let (reused, _) = exchange(&node_b, c0, true, GRACE, at(secs(60))).await;
        assert!(matches!(reused, RefreshOutcome::Reused { .. }));
        assert_eq!(next_revoked(&mut events).await, s4.id);
        slowest = slowest.max(started.elapsed());

        // A token revocation is announced with everything needed to enforce it.
        let revocation = token_revocation(RevocationKind::Sub, "dave", 5);
        let started = Instant::now();
        node_b.revoke_tokens(revocation.clone()).await.unwrap();
        let deadline = Instant::now() + NOTIFY_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Some(RevocationEvent::Tokens(got))) => {
                    assert_eq!(got, revocation);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the revocation listener stopped"),
                Err(_) => panic!("no token revocation notification within {NOTIFY_WITHIN:?}"),
            }
        }
        slowest = slowest.max(started.elapsed());

        eprintln!("slowest revocation notification: {slowest:?}");
        assert!(slowest < Duration::from_secs(1), "took {slowest:?}");
        drop(events);
        db.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listener_resyncs_after_its_connection_is_terminated() {
        let db = Db::new(Engine::Postgres).await;
        let store = db.store().await;
        let mut events = store.listen_revocations().await.unwrap().expect("listener");
        let mut admin = postgres::connect_when_ready(&db.url).await;
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'portcullis-revocations' AND datname = current_database()",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert_eq!(terminated, vec![true], "exactly one listener connection");

        wait_for_resync(&mut events, Duration::from_secs(15)).await;
        let session = store.create_session(login("user-1").0).await.unwrap();
        store
            .revoke_session(session.id, RevokeReason::Admin, at(secs(1)))
            .await
            .unwrap();
        assert_eq!(next_revoked(&mut events).await, session.id);
        drop(events);
        db.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listener_disconnects_when_the_receiver_is_dropped() {
        let db = Db::new(Engine::Postgres).await;
        let store = db.store().await;
        let mut admin = postgres::connect_when_ready(&db.url).await;
        let listeners = "SELECT count(*) FROM pg_stat_activity
                         WHERE application_name = 'portcullis-revocations'
                           AND datname = current_database()";
        let events = store.listen_revocations().await.unwrap().expect("listener");
        let count: i64 = sqlx::query_scalar(listeners)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(count, 1);

        drop(events);
        let deadline = Instant::now() + NOTIFY_WITHIN;
        loop {
            let count: i64 = sqlx::query_scalar(listeners)
                .fetch_one(&mut admin)
                .await
                .unwrap();
            if count == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "listener connection still open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        db.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_server_is_unavailable_at_connect_and_on_lazy_use() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://app:hunter2@127.0.0.1:{port}/portcullis");
        let settings = PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(1),
        };
        let started = Instant::now();
        match PostgresStore::connect_with(&url, settings).await {
            Err(e @ StoreError::Unavailable(_)) => {
                assert!(!e.to_string().contains("hunter2"), "{e}");
                assert!(
                    e.to_string().contains(&port.to_string()),
                    "names the server: {e}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));

        let lazy =
            PostgresStore::connect_lazy_with(&url, settings).expect("lazy store needs no server");
        for result in [
            lazy.ping().await,
            lazy.get_session(Uuid::new_v4()).await.map(drop),
            lazy.exchange_refresh_token(random_hash(), random_hash(), true, GRACE, T0)
                .await
                .map(drop),
            lazy.listen_revocations().await.map(drop),
        ] {
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "got {result:?}"
            );
        }
    }

    /// A cluster of its own, stopped and restarted under a live store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outage_yields_unavailable_and_restart_loses_no_data() {
        let cluster = tokio::task::spawn_blocking(postgres::Cluster::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let cluster = Arc::new(cluster);
        let url = cluster.url("postgres");
        postgres::connect_when_ready(&url).await;
        let settings = PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(1),
        };
        let store = store::open_with(&url, settings).await.expect("open");
        store.migrate().await.unwrap();
        let mut events = store.listen_revocations().await.unwrap().expect("listener");
        let (new, h0) = login("user-1");
        let session = store.create_session(new).await.unwrap();
        let (rotated, h1) = exchange(&store, h0, true, GRACE, at(secs(60))).await;
        expect_generation(&rotated, 1);
        let before = store.get_session(session.id).await.unwrap();

        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.stop())
            .await
            .unwrap()
            .expect("stop the server");
        let started = Instant::now();
        for result in [
            store.ping().await,
            store.get_session(session.id).await.map(drop),
            store
                .exchange_refresh_token(h1, random_hash(), true, GRACE, at(secs(61)))
                .await
                .map(drop),
            store.create_session(login("user-2").0).await.map(drop),
            store
                .revoke_session(session.id, RevokeReason::Logout, at(secs(61)))
                .await
                .map(drop),
            store
                .list_active_sessions("user-1", at(secs(61)))
                .await
                .map(drop),
            store.migrate().await,
            store::open_with(&url, settings).await.map(drop),
        ] {
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "got {result:?}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "each call gave up after the acquire timeout"
        );

        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.restart())
            .await
            .unwrap()
            .expect("restart the server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.ping().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "store did not recover after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            store.get_session(session.id).await.unwrap(),
            before,
            "nothing lost"
        );
        let (next, _) = exchange(&store, h1, true, GRACE, at(secs(62))).await;
        expect_generation(&next, 2);

        // The listener reconnected by itself and tells the gateway to reload.
        wait_for_resync(&mut events, Duration::from_secs(20)).await;
        let other_node = store::open_with(&url, settings).await.unwrap();
        other_node
            .revoke_session(session.id, RevokeReason::Admin, at(secs(63)))
            .await
            .unwrap();
        assert_eq!(next_revoked(&mut events).await, session.id);
    }
}
