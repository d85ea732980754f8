//! What sessions cost.
//!
//! - `revoked_check`: the revoked-session lookup every proxied request with a
//!   `sid` claim makes ([`RevokedSet::contains`]) on an empty set and on sets
//!   of 1,000 and 100,000 revoked ids, hit and miss, next to the cached HS256
//!   verification it follows, so "revoked check / cached verify" can be read
//!   off one run.
//! - `refresh_exchange`: the `/api/auth/refresh` handler's work minus HTTP —
//!   check the presented token's tag, mint its successor, exchange it in the
//!   store, sign the access token — on SQLite and on Postgres, with rotation
//!   (every iteration presents the token the previous one returned) and
//!   without (the same token again).
//!
//! `cargo bench --bench session`; `benches/refresh_load.sh` measures refresh
//! end to end with wrk and writes both into `benches/SESSION-RESULTS.md`.
//!
//! Postgres is the server in `DATABASE_URL` when it is set, otherwise a
//! throwaway cluster started here (by `tests/common/postgres.rs`, the tests'
//! own harness) and removed at exit. That cluster keeps the server's default
//! durability (`fsync`, `synchronous_commit` on, [`Durability::Durable`]):
//! the tests' clusters turn fsync off for speed, and SQLite here fsyncs its
//! WAL on every commit (sqlx's default `synchronous = FULL`), so only a
//! durable Postgres compares fairly. A second database on the same
//! server sets `synchronous_commit = off` (commits no longer wait for the WAL
//! flush; a crash can lose the last few hundred milliseconds of refreshes, but
//! never corrupts), the usual tuning for this kind of table. When no Postgres
//! can be started the Postgres benchmarks are skipped and the reason printed.

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use jsonwebtoken::Algorithm;
use portcullis::jwt::{mint, Key, KeyMaterial, KeySet, MintRequest, Verifier, VerifyPolicy};
use portcullis::session::refresh_token::RefreshTokens;
use portcullis::session::revoked::RevokedSet;
use portcullis::session::store::{
    self, Claims, NewSession, RefreshOutcome, SessionStore, Timestamp,
};
use postgres::{Cluster, Durability, Server};
use serde_json::json;
use sqlx::Connection as _;
use uuid::Uuid;

const SECRET: &[u8] = b"bench-secret-0123456789-0123456789-abcdef";
const REFRESH_SECRET: &[u8] = b"bench-refresh-secret-0123456789-0123456789";
const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const REUSE_GRACE: Duration = Duration::from_secs(10);

fn signing_keys() -> KeySet {
    let key = Key::new(
        "bench",
        vec![Algorithm::HS256],
        KeyMaterial::Secret(SECRET.to_vec()),
        true,
    )
    .expect("HS256 key");
    KeySet::new(vec![key])
}

fn claims() -> Claims {
    let mut claims = Claims::new();
    claims.insert("role".into(), json!("admin"));
    claims.insert("email".into(), json!("user-123@example.com"));
    claims
}

fn access_token(keys: &KeySet, sid: Option<Uuid>) -> String {
    let request = MintRequest {
        sub: "user-123".into(),
        sid: sid.map(|s| s.to_string()),
        ttl: Duration::from_secs(3600),
        issuer: Some("bench".into()),
        audience: Some("api".into()),
        claims: claims(),
    };
    mint(keys, &request).expect("mint an access token")
}

fn revoked_set(size: usize) -> (RevokedSet, Vec<Uuid>) {
    let set = RevokedSet::new();
    let ids: Vec<Uuid> = (0..size).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        set.insert(*id, u64::MAX);
    }
    (set, ids)
}

fn revoked_check(c: &mut Criterion) {
    let verifier = Verifier::new(
        signing_keys(),
        VerifyPolicy {
            issuer: None,
            audience: None,
            leeway: portcullis::config::defaults::JWT_LEEWAY,
            max_token_size: portcullis::config::defaults::JWT_MAX_TOKEN_SIZE,
        },
        1000,
    );
    let sid = Uuid::new_v4();
    let with_sid = access_token(verifier.keys(), Some(sid));
    let without_sid = access_token(verifier.keys(), None);
    for token in [&with_sid, &without_sid] {
        verifier
            .verify(token)
            .expect("a freshly minted token verifies");
    }
    let (verified, cached) = verifier.verify(&with_sid).expect("verify");
    assert!(cached, "the second verification comes from the cache");
    assert_eq!(verified.session_id, Some(sid));

    let mut group = c.benchmark_group("revoked_check");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("verify_cached_hs256/with_sid", |b| {
        b.iter(|| verifier.verify(black_box(&with_sid)).is_ok())
    });
    group.bench_function("verify_cached_hs256/without_sid", |b| {
        b.iter(|| verifier.verify(black_box(&without_sid)).is_ok())
    });
    for size in [0, 1_000, 100_000] {
        let (set, ids) = revoked_set(size);
        let miss = Uuid::new_v4();
        group.bench_with_input(BenchmarkId::new("contains_miss", size), &miss, |b, id| {
            b.iter(|| set.contains(black_box(id)))
        });
        if let Some(hit) = ids.get(size / 2) {
            assert!(set.contains(hit));
            group.bench_with_input(BenchmarkId::new("contains_hit", size), hit, |b, id| {
                b.iter(|| set.contains(black_box(id)))
            });
        }
    }
    // What `access::check` does for a session token that is not revoked:
    // the cached verification, then the lookup of its `sid`.
    let (set, _) = revoked_set(1_000);
    group.bench_function("verify_cached_then_contains/1000", |b| {
        b.iter(|| {
            let (verified, _) = verifier.verify(black_box(&with_sid)).expect("verify");
            verified.session_id.is_some_and(|sid| set.contains(&sid))
        })
    });
    group.finish();
}

/// One client's session, refreshed the way the handler does it.
struct RefreshFlow {
    store: Arc<dyn SessionStore>,
    tokens: RefreshTokens,
    keys: KeySet,
    current: String,
    rotate: bool,
}

impl RefreshFlow {
    /// Opens a session (as login interception or the admin API would).
    async fn login(store: Arc<dyn SessionStore>, rotate: bool) -> RefreshFlow {
        let tokens = RefreshTokens::new(REFRESH_SECRET.to_vec());
        let (current, refresh_hash) = tokens.mint();
        store
            .create_session(NewSession {
                id: None,
                subject: "user-123".into(),
                claims: claims(),
                device_info: Some("bench".into()),
                user_agent: Some("criterion".into()),
                ip: Some("127.0.0.1".into()),
                refresh_hash,
                session_ttl: SESSION_TTL,
                now: Timestamp::now(),
            })
            .await
            .expect("create the bench session");
        RefreshFlow {
            store,
            tokens,
            keys: signing_keys(),
            current,
            rotate,
        }
    }

    /// One refresh; returns the new access token.
    async fn refresh(&mut self) -> String {
        let presented = self
            .tokens
            .check(&self.current)
            .expect("the bench's own refresh token has a valid tag");
        let (next, next_hash) = self.tokens.mint();
        let now = Timestamp::now();
        let outcome = self
            .store
            .exchange_refresh_token(presented, next_hash, self.rotate, REUSE_GRACE, now)
            .await
            .expect("exchange the refresh token");
        let session = match outcome {
            RefreshOutcome::Rotated { session, .. } => {
                self.current = next;
                session
            }
            RefreshOutcome::Kept { session } => session,
            other => panic!("refresh in the bench ended with {other:?}"),
        };
        let request = MintRequest {
            sub: session.subject,
            sid: Some(session.id.to_string()),
            ttl: ACCESS_TTL.min(session.expires_at.saturating_duration_since(now)),
            issuer: Some("bench".into()),
            audience: Some("api".into()),
            claims: session.claims,
        };
        mint(&self.keys, &request).expect("sign the access token")
    }
}

async fn open_store(url: &str) -> Result<Arc<dyn SessionStore>, String> {
    let store = store::open(url)
        .await
        .map_err(|e| format!("open {}: {e}", store::redact_url(url)))?;
    store
        .migrate()
        .await
        .map_err(|e| format!("migrate {}: {e}", store::redact_url(url)))?;
    Ok(store)
}

fn refresh_exchange(c: &mut Criterion) {
    // Like the gateway's session runtime: two worker threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = format!("sqlite:{}", dir.path().join("sessions.db").display());
    let mut stores = vec![(
        "sqlite",
        runtime
            .block_on(open_store(&sqlite_url))
            .expect("SQLite store in a temp file"),
    )];

    let postgres = match start_postgres() {
        Ok(server) => Some(server),
        Err(why) => {
            eprintln!("skipping the Postgres refresh benchmarks: {why}");
            None
        }
    };
    let mut databases = Vec::new();
    if let Some(server) = &postgres {
        for (name, synchronous_commit) in [("postgres", "on"), ("postgres_async_commit", "off")] {
            let opened = runtime.block_on(async {
                let url = create_database(server, synchronous_commit).await?;
                databases.push(url.clone());
                let store = open_store(&url).await?;
                describe_postgres(&url).await?;
                Ok::<_, String>(store)
            });
            match opened {
                Ok(store) => stores.push((name, store)),
                Err(why) => eprintln!("skipping the {name} refresh benchmarks: {why}"),
            }
        }
    }

    let mut group = c.benchmark_group("refresh_exchange");
    // Milliseconds per iteration on a disk that syncs: few, long samples.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    for (name, store) in &stores {
        for rotate in [true, false] {
            let mut flow = runtime.block_on(RefreshFlow::login(store.clone(), rotate));
            let id = BenchmarkId::new(*name, if rotate { "rotated" } else { "kept" });
            group.bench_function(id, |b| b.iter(|| runtime.block_on(flow.refresh())));
        }
    }
    group.finish();

    drop(stores);
    if let Some(Server::External(admin_url)) = &postgres {
        runtime.block_on(drop_databases(admin_url, &databases));
    }
    // A local cluster is stopped and deleted when `postgres` drops here.
}

/// Prints the settings that decide what a commit costs.
async fn describe_postgres(url: &str) -> Result<(), String> {
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("connect to {}: {e}", store::redact_url(url)))?;
    let mut settings = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut connection)
            .await
            .map_err(|e| format!("SHOW {name}: {e}"))?;
        settings.push(format!("{name}={value}"));
    }
    let _ = connection.close().await;
    println!(
        "postgres {}: {}",
        store::redact_url(url),
        settings.join(" ")
    );
    Ok(())
}

async fn drop_databases(admin_url: &str, urls: &[String]) {
    let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await else {
        return;
    };
    for url in urls {
        let without_query = url.split('?').next().unwrap_or(url);
        if let Some(name) = without_query.rsplit('/').next() {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
    let _ = admin.close().await;
}

/// The Postgres server the refresh benchmarks run against: `DATABASE_URL`
/// (a maintenance URL with the right to create databases), or a durable
/// cluster this process starts.
fn start_postgres() -> Result<Server, String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(Server::External(url)),
        _ => Cluster::start_with(Durability::Durable).map(Server::Local),
    }
}

/// Creates `bench_<uuid>` on `server` with the given `synchronous_commit`;
/// returns its URL.
async fn create_database(server: &Server, synchronous_commit: &str) -> Result<String, String> {
    let admin_url = server.admin_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .map_err(|e| format!("connect to {}: {e}", store::redact_url(&admin_url)))?;
    let name = format!("bench_{}", Uuid::new_v4().simple());
    for statement in [
        format!("CREATE DATABASE \"{name}\""),
        format!("ALTER DATABASE \"{name}\" SET synchronous_commit = {synchronous_commit}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    let _ = admin.close().await;
    Ok(postgres::with_database(&admin_url, &name))
}

criterion_group!(benches, revoked_check, refresh_exchange);
criterion_main!(benches);
