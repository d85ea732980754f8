//! Schema migrations: `migrations/postgres/` and `migrations/sqlite/`,
//! embedded in the binary by `sqlx::migrate!` (so `portcullis migrate` works
//! from any working directory) and applied by sqlx's migrator, which records
//! each version with a checksum in `_sqlx_migrations` and refuses to continue
//! when a released migration was edited afterwards.
//!
//! Each engine runs the migrator inside one transaction of its own, under its
//! own lock (Postgres: the advisory lock gateways have always taken; SQLite:
//! `BEGIN IMMEDIATE`). sqlx's lock is therefore off and every migration is a
//! savepoint of that transaction: a run commits whole or not at all, and a
//! failed run leaves no lock behind.
//!
//! Gateways before sqlx's migrator recorded applied versions in
//! [`LEGACY_TABLE`] with a SHA-256 checksum. Inside the same transaction, each
//! engine first copies those rows into `_sqlx_migrations` ([`adoptable`]), so
//! a database migrated by an old gateway is not migrated twice. The old table
//! stays: old gateways still running against the database read it.

use std::future::Future;
use std::pin::Pin;

use sha2::{Digest, Sha256};
use sqlx::error::BoxDynError;
use sqlx::migrate::{
    AppliedMigration, Migrate, MigrateError, Migration, MigrationSource, Migrator,
};
use sqlx::{AssertSqlSafe, SqlSafeStr as _};

use super::StoreError;

/// Where gateways before sqlx's migrator recorded applied versions
/// (`version`, `description`, `checksum`: SHA-256 of the SQL without carriage
/// returns, `applied_at`).
pub(crate) const LEGACY_TABLE: &str = "portcullis_schema_migrations";

/// `migrations/postgres/`, ready to run inside the caller's transaction.
pub(crate) async fn postgres() -> Result<Migrator, StoreError> {
    prepare("postgres", sqlx::migrate!("./migrations/postgres")).await
}

/// `migrations/sqlite/`, ready to run inside the caller's transaction.
pub(crate) async fn sqlite() -> Result<Migrator, StoreError> {
    prepare("sqlite", sqlx::migrate!("./migrations/sqlite")).await
}

async fn prepare(engine: &str, embedded: Migrator) -> Result<Migrator, StoreError> {
    let migrations = embedded.iter().map(without_carriage_returns).collect();
    let mut migrator = Migrator::new(Resolved(migrations))
        .await
        .map_err(|e| StoreError::Migration(format!("{engine} migrations: {e}")))?;
    // Versions applied by a newer gateway are tolerated (rolling upgrades run
    // old and new side by side); `report` warns about them.
    migrator.set_ignore_missing(true);
    // The caller holds its own lock for the whole transaction.
    migrator.set_locking(false);
    Ok(migrator)
}

/// `migration` with carriage returns removed before sqlx checksums it, so a
/// checkout with CRLF line endings does not look like an edited migration.
/// For LF files the checksum is sqlx's own.
fn without_carriage_returns(migration: &Migration) -> Migration {
    Migration::new(
        migration.version,
        migration.description.clone(),
        migration.migration_type,
        AssertSqlSafe(migration.sql.as_str().replace('\r', "")).into_sql_str(),
        migration.no_tx,
    )
}

/// Migrations already in memory, as a source for [`Migrator::new`].
#[derive(Debug)]
struct Resolved(Vec<Migration>);

impl MigrationSource<'static> for Resolved {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(std::future::ready(Ok(self.0)))
    }
}

/// Runs `migrator` on `conn`, inside the caller's transaction.
///
/// `Migrator::run(&mut conn)` cannot be awaited in an `async_trait` method:
/// the compiler fails to prove its future `Send` ("implementation of
/// `Acquire` is not general enough"). `run_direct` is what `run` calls after
/// acquiring the connection, public (though hidden from sqlx's docs) for
/// exactly this case.
pub(crate) async fn run<C: Migrate>(migrator: &Migrator, conn: &mut C) -> Result<(), MigrateError> {
    migrator.run_direct(None, conn, false).await
}

/// What [`LEGACY_TABLE`] records for `migration`'s SQL.
fn legacy_checksum(migration: &Migration) -> Vec<u8> {
    // The SQL has no carriage returns left (`without_carriage_returns`).
    Sha256::digest(migration.sql.as_str().as_bytes()).to_vec()
}

fn description(migrator: &Migrator, version: i64) -> String {
    migrator
        .iter()
        .find(|m| m.version == version)
        .map_or_else(|| "unknown".to_owned(), |m| m.description.to_string())
}

fn edited(engine: &str, migrator: &Migrator, version: i64) -> StoreError {
    StoreError::Migration(format!(
        "{engine} migration {version} ({}) was changed after it was applied to this \
         database; released migrations must never be edited — add a new one instead",
        description(migrator, version)
    ))
}

/// The embedded migrations to record in `_sqlx_migrations` because an old
/// gateway applied them (`legacy`: `(version, checksum)` rows of
/// [`LEGACY_TABLE`]) and `_sqlx_migrations` does not have them yet
/// (`recorded`). An error when one was applied with other SQL than this
/// binary carries, as the old runner would have said.
pub(crate) fn adoptable<'m>(
    engine: &str,
    migrator: &'m Migrator,
    legacy: &[(i64, Vec<u8>)],
    recorded: &[AppliedMigration],
) -> Result<Vec<&'m Migration>, StoreError> {
    let mut adopt = Vec::new();
    for migration in migrator.iter() {
        let Some((_, checksum)) = legacy.iter().find(|(v, _)| *v == migration.version) else {
            continue;
        };
        if recorded.iter().any(|r| r.version == migration.version) {
            continue;
        }
        if *checksum != legacy_checksum(migration) {
            return Err(edited(engine, migrator, migration.version));
        }
        adopt.push(migration);
    }
    Ok(adopt)
}

/// sqlx's migration error as a [`StoreError`] naming the engine; failures to
/// reach the database stay what [`StoreError::from`] makes of them.
pub(crate) fn error(engine: &str, migrator: &Migrator, error: MigrateError) -> StoreError {
    match error {
        MigrateError::Execute(e) => StoreError::from(e),
        MigrateError::ExecuteMigration(e, version) => StoreError::Migration(format!(
            "{engine} migration {version} ({}): {}",
            description(migrator, version),
            StoreError::from(e)
        )),
        MigrateError::VersionMismatch(version) => edited(engine, migrator, version),
        MigrateError::Dirty(version) => StoreError::Migration(format!(
            "{engine} migration {version} ({}) is recorded as partially applied in \
             _sqlx_migrations; repair the schema by hand, then delete that row",
            description(migrator, version)
        )),
        other => StoreError::Migration(format!("{engine} migrations: {other}")),
    }
}

/// Logs the migrations this run applied (`before`/`after`: `_sqlx_migrations`
/// around the run, inside the locked transaction) and warns when the database
/// has versions this gateway does not know.
pub(crate) fn report(
    engine: &str,
    migrator: &Migrator,
    before: &[AppliedMigration],
    after: &[AppliedMigration],
) {
    for applied in after {
        if before.iter().all(|b| b.version != applied.version) {
            tracing::info!(
                engine,
                version = applied.version,
                description = description(migrator, applied.version),
                "applied session store migration"
            );
        }
    }
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newest) = after.iter().map(|a| a.version).max() {
        if newest > known {
            tracing::warn!(
                engine,
                database_version = newest,
                binary_version = known,
                "the session store schema is newer than this gateway knows; continuing"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::migrate::MigrationType;

    use super::*;

    fn applied(migration: &Migration) -> AppliedMigration {
        AppliedMigration {
            version: migration.version,
            checksum: migration.checksum.clone(),
        }
    }

    #[tokio::test]
    async fn embedded_migrations_are_ordered_and_versioned_alike() {
        let (postgres, sqlite) = (postgres().await.unwrap(), sqlite().await.unwrap());
        for migrator in [&postgres, &sqlite] {
            let versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
            assert!(!versions.is_empty());
            assert!(versions.windows(2).all(|w| w[0] < w[1]));
            assert!(migrator
                .iter()
                .all(|m| m.version > 0 && !m.sql.as_str().trim().is_empty() && !m.no_tx));
        }
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(&postgres), versions(&sqlite));
        let first = postgres.iter().next().map(|m| m.description.to_string());
        assert_eq!(first.as_deref(), Some("sessions"));
    }

    #[test]
    fn checksum_ignores_carriage_returns() {
        let migration = |sql: &'static str| {
            Migration::new(
                1,
                "x".into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        };
        let lf = migration("CREATE TABLE t (a int);\n");
        let crlf = migration("CREATE TABLE t (a int);\r\n");
        assert_ne!(lf.checksum, crlf.checksum);
        assert_eq!(without_carriage_returns(&crlf).checksum, lf.checksum);
        assert_eq!(
            without_carriage_returns(&lf).checksum,
            lf.checksum,
            "for LF files the checksum is sqlx's own"
        );
    }

    #[tokio::test]
    async fn legacy_rows_are_adopted_once_and_edited_ones_refused() {
        let migrator = sqlite().await.unwrap();
        let first = migrator.iter().next().unwrap();
        let legacy = vec![(first.version, legacy_checksum(first))];

        let adopt = adoptable("sqlite", &migrator, &legacy, &[]).unwrap();
        assert_eq!(adopt.iter().map(|m| m.version).collect::<Vec<_>>(), [1]);
        let recorded = vec![applied(first)];
        assert!(adoptable("sqlite", &migrator, &legacy, &recorded)
            .unwrap()
            .is_empty());
        assert!(adoptable("sqlite", &migrator, &[], &[]).unwrap().is_empty());

        // What the old runner computed for this file, independently.
        let sql = include_str!("../../../migrations/sqlite/0001_sessions.sql");
        let old = Sha256::digest(sql.replace('\r', "").as_bytes()).to_vec();
        assert_eq!(legacy_checksum(first), old);

        let edited = vec![(first.version, vec![0u8; 32])];
        match adoptable("sqlite", &migrator, &edited, &[]) {
            Err(StoreError::Migration(message)) => {
                assert!(message.contains("sqlite migration 1 (sessions) was changed"));
            }
            other => panic!("expected a migration error, got {other:?}"),
        }
        // A newer gateway's version is not this binary's to adopt.
        let newer = vec![legacy[0].clone(), (99, vec![])];
        assert_eq!(
            adoptable("sqlite", &migrator, &newer, &[]).unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn migrate_errors_name_the_engine_and_the_migration() {
        let migrator = postgres().await.unwrap();
        let message = error("postgres", &migrator, MigrateError::VersionMismatch(1)).to_string();
        assert!(
            message.contains("postgres migration 1 (sessions) was changed"),
            "{message}"
        );
        let message = error(
            "postgres",
            &migrator,
            MigrateError::ExecuteMigration(sqlx::Error::Protocol("boom".into()), 1),
        )
        .to_string();
        assert!(
            message
                .starts_with("session store migration failed: postgres migration 1 (sessions): "),
            "{message}"
        );
        assert!(error(
            "postgres",
            &migrator,
            MigrateError::Execute(sqlx::Error::PoolTimedOut)
        )
        .is_unavailable());
    }
}
