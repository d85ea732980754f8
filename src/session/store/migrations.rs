//! Schema migrations, embedded in the binary so `portcullis migrate` works
//! from any working directory. Each engine's runner records applied versions
//! with a checksum in `portcullis_schema_migrations` and refuses to continue
//! when a released migration was edited afterwards.

use sha2::{Digest, Sha256};

use super::StoreError;

/// One forward-only migration.
#[derive(Debug)]
pub(crate) struct Migration {
    /// Positive, strictly increasing; the file name's numeric prefix.
    pub version: i64,
    /// The file name's remainder, for messages and the tracking table.
    pub description: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the SQL with carriage returns removed, so a checkout with
    /// CRLF line endings does not look like an edited migration.
    pub fn checksum(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        for part in self.sql.split('\r') {
            hasher.update(part.as_bytes());
        }
        hasher.finalize().to_vec()
    }
}

/// `migrations/postgres/`, in order.
pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    description: "sessions",
    sql: include_str!("../../../migrations/postgres/0001_sessions.sql"),
}];

/// `migrations/sqlite/`, in order.
pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    description: "sessions",
    sql: include_str!("../../../migrations/sqlite/0001_sessions.sql"),
}];

/// What to do with each embedded migration given the versions already applied
/// (`(version, checksum)`): the ones still to run, or an error when an applied
/// one differs from what this binary carries. Versions applied by a newer
/// gateway are tolerated (rolling upgrades run old and new side by side).
pub(crate) fn pending<'m>(
    engine: &str,
    migrations: &'m [Migration],
    applied: &[(i64, Vec<u8>)],
) -> Result<Vec<&'m Migration>, StoreError> {
    let mut pending = Vec::new();
    for migration in migrations {
        match applied
            .iter()
            .find(|(version, _)| *version == migration.version)
        {
            Some((_, checksum)) if *checksum != migration.checksum() => {
                return Err(StoreError::Migration(format!(
                    "{engine} migration {} ({}) was changed after it was applied to this \
                     database; released migrations must never be edited — add a new one instead",
                    migration.version, migration.description
                )));
            }
            Some(_) => {}
            None => pending.push(migration),
        }
    }
    if let Some((newest, _)) = applied.iter().max_by_key(|(version, _)| *version) {
        let known = migrations.last().map_or(0, |m| m.version);
        if *newest > known {
            tracing::warn!(
                engine,
                database_version = newest,
                binary_version = known,
                "the session store schema is newer than this gateway knows; continuing"
            );
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_are_ordered_and_versioned_alike() {
        for list in [POSTGRES, SQLITE] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
            assert!(list
                .iter()
                .all(|m| m.version > 0 && !m.sql.trim().is_empty()));
        }
        let versions = |l: &[Migration]| l.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(POSTGRES), versions(SQLITE));
    }

    #[test]
    fn checksum_ignores_carriage_returns() {
        let lf = Migration {
            version: 1,
            description: "x",
            sql: "CREATE TABLE t (a int);\n",
        };
        let crlf = Migration {
            version: 1,
            description: "x",
            sql: "CREATE TABLE t (a int);\r\n",
        };
        assert_eq!(lf.checksum(), crlf.checksum());
    }

    #[test]
    fn pending_skips_applied_and_rejects_edited_migrations() {
        let applied = vec![(1, SQLITE[0].checksum())];
        assert!(pending("sqlite", SQLITE, &applied)
            .map(|p| p.is_empty())
            .unwrap_or(false));
        assert_eq!(
            pending("sqlite", SQLITE, &[]).map(|p| p.len()).ok(),
            Some(SQLITE.len())
        );
        let edited = vec![(1, vec![0u8; 32])];
        match pending("sqlite", SQLITE, &edited) {
            Err(StoreError::Migration(message)) => assert!(message.contains("was changed")),
            other => panic!("expected a migration error, got {other:?}"),
        }
        let newer = vec![(1, SQLITE[0].checksum()), (99, vec![])];
        assert!(pending("sqlite", SQLITE, &newer).is_ok());
    }
}
