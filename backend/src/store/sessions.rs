//! Sessions live in the application's own database, in tower-sessions' sqlx stores.

use super::{Database, DbError, SessionPool};
use async_trait::async_trait;
use std::time::Duration;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// The session store for whichever database the server runs on.
#[derive(Debug, Clone)]
pub enum DbSessionStore {
    /// Table `tower_sessions` in the SQLite file.
    Sqlite(SqliteStore),
    /// Table `tower_sessions.session` in the PostgreSQL database.
    Postgres(PostgresStore),
}

impl DbSessionStore {
    /// Opens the store and creates its table when missing.
    pub async fn open(db: &Database) -> Result<DbSessionStore, DbError> {
        Ok(match db.session_pool().await? {
            SessionPool::Sqlite(pool) => {
                let store = SqliteStore::new(pool);
                store.migrate().await?;
                DbSessionStore::Sqlite(store)
            }
            SessionPool::Postgres(pool) => {
                // The runtime role cannot create schemas (see Database::grant_runtime_role):
                // `graftbench migrate` makes the table, and serve only checks it is there.
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT to_regclass('tower_sessions.session')::text")
                        .fetch_one(&pool)
                        .await?;
                let store = PostgresStore::new(pool);
                if exists.is_none() {
                    store.migrate().await?;
                }
                DbSessionStore::Postgres(store)
            }
        })
    }

    /// Deletes expired sessions every `period`, for as long as the task runs.
    pub fn spawn_expiry(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let result = match store {
                DbSessionStore::Sqlite(s) => s.continuously_delete_expired(period).await,
                DbSessionStore::Postgres(s) => s.continuously_delete_expired(period).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "expired-session cleanup stopped");
            }
        })
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            DbSessionStore::Sqlite(s) => s.create(record).await,
            DbSessionStore::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            DbSessionStore::Sqlite(s) => s.save(record).await,
            DbSessionStore::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            DbSessionStore::Sqlite(s) => s.load(id).await,
            DbSessionStore::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            DbSessionStore::Sqlite(s) => s.delete(id).await,
            DbSessionStore::Postgres(s) => s.delete(id).await,
        }
    }
}
