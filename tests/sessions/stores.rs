//! Stores: the two session-store engines and an empty database of either for one test.

use super::*;

/// The two session-store engines every scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// An empty database for one test: a SQLite file in a temp dir, or a
/// Postgres database of its own.
pub struct Store {
    pub url: String,
    dir: Option<tempfile::TempDir>,
    db: Option<pg::TestDb>,
}

/// A small runtime for the async Postgres helpers (the tests themselves are
/// synchronous: they drive separate processes).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl Store {
    pub fn new(kind: StoreKind) -> Store {
        match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                Store {
                    url: format!("sqlite:{}", dir.path().join("s.db").display()),
                    dir: Some(dir),
                    db: None,
                }
            }
            StoreKind::Postgres => {
                let db = runtime().block_on(pg::TestDb::create());
                Store {
                    url: db.url.clone(),
                    dir: None,
                    db: Some(db),
                }
            }
        }
    }

    /// A database of its own on `cluster` (outage tests stop that cluster).
    pub fn on_cluster(cluster: &pg::Cluster) -> Store {
        let db = runtime().block_on(pg::TestDb::create_on(&cluster.url("postgres")));
        Store {
            url: db.url.clone(),
            dir: None,
            db: Some(db),
        }
    }
}

impl Store {
    /// Every byte the store holds, as text: the SQLite files (WAL included),
    /// or every row of every table of the Postgres database as JSON.
    pub fn dump(&self) -> String {
        if let Some(dir) = &self.dir {
            let mut text = String::new();
            for entry in std::fs::read_dir(dir.path())
                .expect("read store dir")
                .flatten()
            {
                if entry.file_name().to_string_lossy().starts_with("s.db") {
                    text.push_str(&String::from_utf8_lossy(&read(entry.path())));
                }
            }
            return text;
        }
        runtime().block_on(async {
            use sqlx::Connection as _;
            let mut db = sqlx::PgConnection::connect(&self.url).await.expect("connect");
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(&mut db)
            .await
            .expect("list tables");
            let mut text = String::new();
            for (table,) in tables {
                let (rows,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM \"{table}\" t"
                )))
                .fetch_one(&mut db)
                .await
                .expect("dump table");
                text.push_str(&rows);
                text.push('\n');
            }
            text
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A local throwaway cluster disappears as a whole at exit; only a
        // server named by DATABASE_URL needs its databases dropped.
        let external = std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty());
        if let Some(db) = self.db.take() {
            if external {
                runtime().block_on(db.drop_database());
            }
        }
    }
}
