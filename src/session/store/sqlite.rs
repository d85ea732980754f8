//! SQLite session store: one file, one gateway node, zero setup.
//!
//! The file runs in WAL mode (readers never block the writer) with foreign
//! keys on and a 5 s busy timeout. Every transaction that writes starts with
//! `BEGIN IMMEDIATE`, taking SQLite's single write lock up front: concurrent
//! exchanges of one refresh token queue behind each other instead of both
//! reading "not rotated yet", and no transaction has to upgrade a read lock
//! (which SQLite resolves by failing with SQLITE_BUSY at once).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{AppliedMigration, Migrate as _, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    decide, migrations, redact_url, session_from_columns, token_revocation_from_columns, Decision,
    NewSession, PoolSettings, RefreshOutcome, RevokeReason, Session, SessionStore, StoreError,
    Timestamp, TokenRevocation, TokenState,
};

/// How long a writer waits for another one before giving up with
/// [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SESSION_COLUMNS: &str = "id, subject, claims, device_info, user_agent, ip, \
     created_at, last_used_at, expires_at, revoked_at, revoked_reason";

/// The SQLite [`SessionStore`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// Only the pool state, like [`PostgresStore`](super::PostgresStore)'s.
impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("connections", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

impl SqliteStore {
    /// Opens `path_or_url` (a file path or `sqlite:PATH[?options]`), creating
    /// the file when `create_if_missing`. Connects once to fail early. One
    /// connection ([`PoolSettings::sqlite`]).
    pub async fn connect(path_or_url: &str, create_if_missing: bool) -> Result<Self, StoreError> {
        Self::connect_with(path_or_url, create_if_missing, PoolSettings::sqlite()).await
    }

    /// [`SqliteStore::connect`] with explicit pool sizing.
    pub async fn connect_with(
        path_or_url: &str,
        create_if_missing: bool,
        settings: PoolSettings,
    ) -> Result<Self, StoreError> {
        let options = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url).map_err(|e| StoreError::InvalidUrl {
                url: redact_url(path_or_url),
                reason: e.to_string(),
            })?
        } else {
            SqliteConnectOptions::new().filename(path_or_url)
        };
        let options = options
            .create_if_missing(create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Unavailable(m) | StoreError::Database(m) => {
                    StoreError::Unavailable(format!(
                        "cannot open SQLite database {}: {m}",
                        redact_url(path_or_url)
                    ))
                }
                other => other,
            })?;
        Ok(SqliteStore { pool })
    }

    /// Closes every connection; later calls fail with
    /// [`StoreError::Unavailable`]. For orderly shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Stores a token revocation; a known one keeps the later times.
async fn upsert_token_revocation(
    tx: &mut Transaction<'static, Sqlite>,
    revocation: &TokenRevocation,
) -> Result<TokenRevocation, StoreError> {
    let row: (String, String, String, i64, i64) = sqlx::query_as(
        "INSERT INTO portcullis_token_revocations AS r (kind, iss, value, revoked_at, keep_until)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (iss, kind, value) DO UPDATE SET
           revoked_at = max(r.revoked_at, excluded.revoked_at),
           keep_until = max(r.keep_until, excluded.keep_until)
         RETURNING kind, iss, value, revoked_at, keep_until",
    )
    .bind(revocation.kind.as_str())
    .bind(&revocation.iss)
    .bind(&revocation.value)
    .bind(revocation.revoked_at_ms)
    .bind(revocation.keep_until_ms)
    .fetch_one(&mut **tx)
    .await?;
    token_revocation_from_columns(row)
}

fn session_from_row(row: &SqliteRow) -> Result<Session, StoreError> {
    let id_text: String = row.try_get("id")?;
    let id = Uuid::parse_str(&id_text)
        .map_err(|_| StoreError::Corrupt(format!("session id `{id_text}` is not a UUID")))?;
    let claims_text: String = row.try_get("claims")?;
    let claims = serde_json::from_str(&claims_text)
        .map_err(|e| StoreError::Corrupt(format!("session {id}: claims are not JSON: {e}")))?;
    session_from_columns(
        id,
        row.try_get("subject")?,
        claims,
        row.try_get("device_info")?,
        row.try_get("user_agent")?,
        row.try_get("ip")?,
        [
            row.try_get("created_at")?,
            row.try_get("last_used_at")?,
            row.try_get("expires_at")?,
        ],
        row.try_get("revoked_at")?,
        row.try_get("revoked_reason")?,
    )
}

fn uuid_from_text(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text)
        .map_err(|_| StoreError::Corrupt(format!("session id `{text}` is not a UUID")))
}

async fn session_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
) -> Result<Option<Session>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM portcullis_sessions WHERE id = ?");
    sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| session_from_row(&row))
        .transpose()
}

/// Records in `_sqlx_migrations` what a gateway before sqlx's migrator
/// applied (its [`migrations::LEGACY_TABLE`], if any), keeping the time it was
/// applied; returns what `_sqlx_migrations` holds then.
async fn adopt_legacy_bookkeeping(
    tx: &mut Transaction<'static, Sqlite>,
    migrator: &Migrator,
) -> Result<Vec<AppliedMigration>, StoreError> {
    let fail = |e| migrations::error("sqlite", migrator, e);
    let recorded = tx
        .list_applied_migrations(&migrator.table_name)
        .await
        .map_err(fail)?;
    let legacy_exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
    )
    .bind(migrations::LEGACY_TABLE)
    .fetch_one(&mut **tx)
    .await?;
    if !legacy_exists {
        return Ok(recorded);
    }
    let legacy: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM portcullis_schema_migrations")
            .fetch_all(&mut **tx)
            .await?;
    let adopt = migrations::adoptable("sqlite", migrator, &legacy, &recorded)?;
    if adopt.is_empty() {
        return Ok(recorded);
    }
    for migration in adopt {
        sqlx::query(
            "INSERT INTO _sqlx_migrations
                 (version, description, installed_on, success, checksum, execution_time)
             SELECT version, ?2, datetime(applied_at / 1000, 'unixepoch'), TRUE, ?3, -1
             FROM portcullis_schema_migrations WHERE version = ?1",
        )
        .bind(migration.version)
        .bind(&*migration.description)
        .bind(&*migration.checksum)
        .execute(&mut **tx)
        .await?;
        tracing::info!(
            engine = "sqlite",
            version = migration.version,
            description = %migration.description,
            "recorded a migration applied before sqlx's migrator in _sqlx_migrations"
        );
    }
    tx.list_applied_migrations(&migrator.table_name)
        .await
        .map_err(fail)
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrations::sqlite().await?;
        let fail = |e| migrations::error("sqlite", &migrator, e);
        // The write lock taken by BEGIN IMMEDIATE makes a second process wait
        // and then find everything applied; sqlx applies each migration in a
        // savepoint of this transaction.
        let mut tx = self.begin_write().await?;
        tx.ensure_migrations_table(&migrator.table_name)
            .await
            .map_err(fail)?;
        let before = adopt_legacy_bookkeeping(&mut tx, &migrator).await?;
        migrations::run(&migrator, &mut *tx).await.map_err(fail)?;
        let after = tx
            .list_applied_migrations(&migrator.table_name)
            .await
            .map_err(fail)?;
        tx.commit().await?;
        migrations::report("sqlite", &migrator, &before, &after);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_session(&self, new: NewSession) -> Result<Session, StoreError> {
        let id = new.id.unwrap_or_else(Uuid::new_v4);
        let expires_at = new.now.saturating_add(new.session_ttl);
        let claims = serde_json::Value::Object(new.claims.clone());
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO portcullis_sessions
                 (id, subject, claims, device_info, user_agent, ip,
                  created_at, last_used_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(&new.subject)
        .bind(claims.to_string())
        .bind(&new.device_info)
        .bind(&new.user_agent)
        .bind(&new.ip)
        .bind(new.now.unix_millis())
        .bind(new.now.unix_millis())
        .bind(expires_at.unix_millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO portcullis_refresh_tokens
                 (token_hash, session_id, generation, created_at, expires_at)
             VALUES (?, ?, 0, ?, ?)",
        )
        .bind(&new.refresh_hash[..])
        .bind(id.to_string())
        .bind(new.now.unix_millis())
        .bind(expires_at.unix_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new.into_session(id, expires_at))
    }

    async fn exchange_refresh_token(
        &self,
        presented_hash: [u8; 32],
        new_hash: [u8; 32],
        rotate: bool,
        grace: Duration,
        now: Timestamp,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "SELECT session_id, generation, expires_at, rotated_at
             FROM portcullis_refresh_tokens WHERE token_hash = ?",
        )
        .bind(&presented_hash[..])
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(RefreshOutcome::Unknown);
        };
        let session_id: String = row.try_get("session_id")?;
        let token = TokenState {
            generation: row.try_get("generation")?,
            expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
            rotated_at: row
                .try_get::<Option<i64>, _>("rotated_at")?
                .map(Timestamp::from_unix_millis),
        };
        let Some(mut session) = session_in(&mut tx, &session_id).await? else {
            return Err(StoreError::Corrupt(format!(
                "refresh token of session {session_id} has no session row"
            )));
        };

        let decision = decide(&token, &session, rotate, grace, now);
        let generation = match decision {
            Decision::Revoked(reason) => {
                return Ok(RefreshOutcome::Revoked {
                    session_id: session.id,
                    reason,
                })
            }
            Decision::Expired => return Ok(RefreshOutcome::Expired),
            Decision::Reuse => {
                sqlx::query(
                    "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
                     WHERE id = ? AND revoked_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(RevokeReason::ReuseDetected.as_str())
                .bind(&session_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(RefreshOutcome::Reused {
                    session_id: session.id,
                    subject: session.subject,
                });
            }
            Decision::Rotate { generation } => {
                // The write lock makes this unconditional in practice; the
                // condition keeps "at most one successor per rotation" true
                // even if the locking ever changes.
                let marked = sqlx::query(
                    "UPDATE portcullis_refresh_tokens SET rotated_at = ?
                     WHERE token_hash = ? AND rotated_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(&presented_hash[..])
                .execute(&mut *tx)
                .await?;
                if marked.rows_affected() != 1 {
                    return Err(StoreError::Conflict(
                        "the refresh token was rotated concurrently".into(),
                    ));
                }
                Some(generation)
            }
            Decision::GraceReplay { generation } => Some(generation),
            Decision::Keep => None,
        };
        if let Some(generation) = generation {
            sqlx::query(
                "INSERT INTO portcullis_refresh_tokens
                     (token_hash, session_id, generation, created_at, expires_at, parent_hash)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&new_hash[..])
            .bind(&session_id)
            .bind(generation)
            .bind(now.unix_millis())
            .bind(session.expires_at.unix_millis())
            .bind(&presented_hash[..])
            .execute(&mut *tx)
            .await?;
        }
        session.last_used_at = session.last_used_at.max(now);
        sqlx::query("UPDATE portcullis_sessions SET last_used_at = ? WHERE id = ?")
            .bind(session.last_used_at.unix_millis())
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(match decision {
            Decision::Rotate { generation } => RefreshOutcome::Rotated {
                session,
                generation,
            },
            Decision::GraceReplay { generation } => RefreshOutcome::GraceReplay {
                session,
                generation,
            },
            _ => RefreshOutcome::Kept { session },
        })
    }

    async fn session_by_refresh_token(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM portcullis_sessions
             WHERE id = (SELECT session_id FROM portcullis_refresh_tokens WHERE token_hash = ?)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM portcullis_sessions WHERE id = ?");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn revoke_session(
        &self,
        id: Uuid,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
             WHERE id = ? AND revoked_at IS NULL
             RETURNING {SESSION_COLUMNS}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(now.unix_millis())
            .bind(reason.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn revoke_session_of_subject(
        &self,
        subject: &str,
        id: Uuid,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
             WHERE id = ? AND subject = ? AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(reason.as_str())
        .bind(id.to_string())
        .bind(subject)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_all_for_subject(
        &self,
        subject: &str,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Vec<Uuid>, StoreError> {
        // One statement is one transaction.
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
             WHERE subject = ? AND revoked_at IS NULL
             RETURNING id",
        )
        .bind(now.unix_millis())
        .bind(reason.as_str())
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|id| uuid_from_text(id)).collect()
    }

    async fn list_active_sessions(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM portcullis_sessions
             WHERE subject = ? AND revoked_at IS NULL AND expires_at > ?
             ORDER BY created_at DESC, id"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(subject)
            .bind(now.unix_millis())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn revoked_since(&self, since: Timestamp) -> Result<Vec<(Uuid, Timestamp)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, revoked_at FROM portcullis_sessions
             WHERE revoked_at >= ? ORDER BY revoked_at, id",
        )
        .bind(since.unix_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|(id, at)| Ok((uuid_from_text(id)?, Timestamp::from_unix_millis(*at))))
            .collect()
    }

    async fn delete_expired(
        &self,
        expired_before: Timestamp,
        revoked_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let tokens = sqlx::query(
            "DELETE FROM portcullis_refresh_tokens
             WHERE expires_at <= ?1
                OR session_id IN (SELECT id FROM portcullis_sessions
                                  WHERE expires_at <= ?1 OR revoked_at < ?2)",
        )
        .bind(expired_before.unix_millis())
        .bind(revoked_before.unix_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let sessions = sqlx::query(
            "DELETE FROM portcullis_sessions WHERE expires_at <= ?1 OR revoked_at < ?2",
        )
        .bind(expired_before.unix_millis())
        .bind(revoked_before.unix_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut others = 0;
        for table in ["portcullis_token_revocations", "portcullis_logout_tokens"] {
            others += sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE keep_until < ?"
            )))
            .bind(expired_before.unix_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(tokens + sessions + others)
    }

    async fn revoke_tokens(
        &self,
        revocation: TokenRevocation,
    ) -> Result<TokenRevocation, StoreError> {
        let mut tx = self.begin_write().await?;
        let stored = upsert_token_revocation(&mut tx, &revocation).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn revoke_tokens_for_logout(
        &self,
        jti: &str,
        jti_kept_until: Timestamp,
        revocation: TokenRevocation,
    ) -> Result<Option<TokenRevocation>, StoreError> {
        let mut tx = self.begin_write().await?;
        let recorded = sqlx::query(
            "INSERT INTO portcullis_logout_tokens (iss, jti, used_at, keep_until)
             VALUES (?, ?, ?, ?) ON CONFLICT (iss, jti) DO NOTHING",
        )
        .bind(&revocation.iss)
        .bind(jti)
        .bind(revocation.revoked_at_ms)
        .bind(jti_kept_until.unix_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            return Ok(None);
        }
        let stored = upsert_token_revocation(&mut tx, &revocation).await?;
        tx.commit().await?;
        Ok(Some(stored))
    }

    async fn token_revocations(
        &self,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<TokenRevocation>, StoreError> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT kind, iss, value, revoked_at, keep_until FROM portcullis_token_revocations
             WHERE revoked_at >= ? AND keep_until >= ?
             ORDER BY revoked_at, iss, kind, value",
        )
        .bind(since.unix_millis())
        .bind(now.unix_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(token_revocation_from_columns)
            .collect()
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM portcullis_sessions
             WHERE revoked_at IS NULL AND expires_at > ?",
        )
        .bind(now.unix_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(count.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    const SESSIONS_SQL: &str = include_str!("../../../migrations/sqlite/0001_sessions.sql");
    /// 2024-01-02 03:04:05.678 UTC.
    const APPLIED_AT_MS: i64 = 1_704_164_645_678;

    async fn store_in(dir: &tempfile::TempDir) -> SqliteStore {
        let path = dir.path().join("sessions.db");
        SqliteStore::connect(path.to_str().unwrap(), true)
            .await
            .unwrap()
    }

    /// What `migrate` did before sqlx's migrator (up to commit 3c5b772),
    /// statement for statement, recording `checksum` for migration 1.
    async fn migrate_like_the_old_runner(store: &SqliteStore, checksum: Vec<u8>) {
        let mut tx = store.begin_write().await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS portcullis_schema_migrations (
                 version     INTEGER NOT NULL PRIMARY KEY,
                 description TEXT    NOT NULL,
                 checksum    BLOB    NOT NULL,
                 applied_at  INTEGER NOT NULL
             ) STRICT",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::raw_sql(SESSIONS_SQL).execute(&mut *tx).await.unwrap();
        sqlx::query(
            "INSERT INTO portcullis_schema_migrations (version, description, checksum, applied_at)
             VALUES (?, ?, ?, ?)",
        )
        .bind(1_i64)
        .bind("sessions")
        .bind(checksum)
        .bind(APPLIED_AT_MS)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    fn old_checksum() -> Vec<u8> {
        Sha256::digest(SESSIONS_SQL.replace('\r', "").as_bytes()).to_vec()
    }

    /// `(version, description, installed_on, success, checksum)` rows.
    async fn sqlx_bookkeeping(store: &SqliteStore) -> Vec<(i64, String, String, bool, Vec<u8>)> {
        sqlx::query_as(
            "SELECT version, description, installed_on, success, checksum
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap()
    }

    async fn table_exists(store: &SqliteStore, name: &str) -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?)")
            .bind(name)
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn database_migrated_by_the_old_runner_is_adopted_not_migrated_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir).await;
        migrate_like_the_old_runner(&store, old_checksum()).await;
        let (_token, hash) = super::super::new_refresh_token();
        let session = store
            .create_session(NewSession {
                id: None,
                subject: "user-1".into(),
                claims: Default::default(),
                device_info: None,
                user_agent: None,
                ip: None,
                refresh_hash: hash,
                session_ttl: Duration::from_secs(3600),
                now: Timestamp::from_unix_millis(APPLIED_AT_MS),
            })
            .await
            .unwrap();

        // Running migration 1 again would fail: its tables exist.
        store.migrate().await.expect("adopt the old bookkeeping");
        let migrator = migrations::sqlite().await.unwrap();
        let sessions = migrator.iter().next().unwrap();
        let rows = sqlx_bookkeeping(&store).await;
        assert_eq!(
            rows[0],
            (
                1,
                "sessions".to_owned(),
                "2024-01-02 03:04:05".to_owned(),
                true,
                sessions.checksum.to_vec()
            )
        );
        // Later migrations are applied as usual.
        assert_eq!(
            rows[1..]
                .iter()
                .map(|r| (r.0, r.1.as_str(), r.3))
                .collect::<Vec<_>>(),
            [(2, "token revocations", true)]
        );
        assert!(
            table_exists(&store, "portcullis_schema_migrations").await,
            "kept for old gateways"
        );

        store.migrate().await.expect("migrate again");
        assert_eq!(sqlx_bookkeeping(&store).await.len(), 2);
        assert_eq!(store.get_session(session.id).await.unwrap(), Some(session));
    }

    #[tokio::test]
    async fn migration_edited_since_the_old_runner_applied_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir).await;
        migrate_like_the_old_runner(&store, vec![0; 32]).await;
        match store.migrate().await {
            Err(e @ StoreError::Migration(_)) => assert!(
                e.to_string()
                    .contains("sqlite migration 1 (sessions) was changed after it was applied"),
                "{e}"
            ),
            other => panic!("expected a migration error, got {other:?}"),
        }
        assert!(
            !table_exists(&store, "_sqlx_migrations").await,
            "nothing of the failed run is left"
        );
    }

    #[tokio::test]
    async fn fresh_database_gets_only_sqlx_bookkeeping() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir).await;
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        let rows = sqlx_bookkeeping(&store).await;
        assert_eq!(
            rows.iter().map(|r| (r.0, r.3)).collect::<Vec<_>>(),
            [(1, true), (2, true)]
        );
        assert!(!table_exists(&store, "portcullis_schema_migrations").await);
    }
}
