//! Sessions live in the application's own database, in tower-sessions' sqlx stores.
//!
//! A session that expires after a time without use is saved by tower-sessions on every
//! request, only to move its expiry: a write per page view, which on SQLite takes the one
//! writer's lock (half a millisecond each, measured on the patch page). The store skips a
//! save that changes nothing but an expiry this process wrote less than
//! [`EXPIRY_GRANULARITY`] earlier, so a session's idle timeout counts from at most that
//! long before its last request. Loads always read the database: a session signed out
//! (or disabled) on another replica ends there at once.

use super::{Database, DbError, SessionPool};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// How stale a stored expiry may be before a request writes it again.
pub const EXPIRY_GRANULARITY: time::Duration = time::Duration::minutes(5);
/// Sessions whose last write this process remembers; past it, it forgets them all (and
/// writes each again on its next request).
const REMEMBERED_WRITES: usize = 10_000;

/// The session store for whichever database the server runs on.
#[derive(Debug, Clone)]
pub struct DbSessionStore {
    tables: SessionTables,
    written: Arc<RecentWrites>,
}

/// Per session this process last wrote: the data written (as JSON with sorted keys) and
/// the expiry.
#[derive(Debug, Default)]
struct RecentWrites(Mutex<HashMap<Id, (Vec<u8>, time::OffsetDateTime)>>);

/// tower-sessions' store for the database in use.
#[derive(Debug, Clone)]
enum SessionTables {
    /// Table `tower_sessions` in the SQLite file.
    Sqlite(SqliteStore),
    /// Table `tower_sessions.session` in the PostgreSQL database.
    Postgres(PostgresStore),
}

/// A record's data in a form that compares equal when the data is (map order aside).
fn data_bytes(record: &Record) -> Vec<u8> {
    let sorted: std::collections::BTreeMap<&String, &serde_json::Value> =
        record.data.iter().collect();
    serde_json::to_vec(&sorted).unwrap_or_default()
}

impl RecentWrites {
    /// Whether saving `record` (its data as `data`) would only move an expiry written
    /// less than [`EXPIRY_GRANULARITY`] ago.
    fn unchanged(&self, record: &Record, data: &[u8]) -> bool {
        let Ok(written) = self.0.lock() else {
            return false;
        };
        written.get(&record.id).is_some_and(|(bytes, expiry)| {
            bytes == data
                && record.expiry_date >= *expiry
                && record.expiry_date - *expiry < EXPIRY_GRANULARITY
        })
    }

    /// Remembers that `record` was written with `data`.
    fn wrote(&self, record: &Record, data: Vec<u8>) {
        if let Ok(mut written) = self.0.lock() {
            if written.len() >= REMEMBERED_WRITES {
                written.clear();
            }
            written.insert(record.id, (data, record.expiry_date));
        }
    }

    /// Forgets `id`, or only when what the database holds (`loaded`) is not what this
    /// process wrote last (another replica wrote since).
    fn forget(&self, id: &Id, loaded: Option<&Record>) {
        if let Ok(mut written) = self.0.lock() {
            let stale = match loaded {
                None => true,
                Some(record) => written
                    .get(id)
                    .is_some_and(|(bytes, _)| *bytes != data_bytes(record)),
            };
            if stale {
                written.remove(id);
            }
        }
    }
}

impl DbSessionStore {
    /// Opens the store and creates its table when missing.
    pub async fn open(db: &Database) -> Result<DbSessionStore, DbError> {
        let tables = match db.session_pool().await? {
            SessionPool::Sqlite(pool) => {
                let store = SqliteStore::new(pool);
                store.migrate().await?;
                SessionTables::Sqlite(store)
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
                SessionTables::Postgres(store)
            }
        };
        Ok(DbSessionStore {
            tables,
            written: Arc::default(),
        })
    }

    /// Deletes expired sessions every `period`, for as long as the task runs.
    pub fn spawn_expiry(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let tables = self.tables.clone();
        tokio::spawn(async move {
            let result = match tables {
                SessionTables::Sqlite(s) => s.continuously_delete_expired(period).await,
                SessionTables::Postgres(s) => s.continuously_delete_expired(period).await,
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
        match &self.tables {
            SessionTables::Sqlite(s) => s.create(record).await?,
            SessionTables::Postgres(s) => s.create(record).await?,
        }
        self.written.wrote(record, data_bytes(record));
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = data_bytes(record);
        if self.written.unchanged(record, &data) {
            return Ok(());
        }
        match &self.tables {
            SessionTables::Sqlite(s) => s.save(record).await?,
            SessionTables::Postgres(s) => s.save(record).await?,
        }
        self.written.wrote(record, data);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let record = match &self.tables {
            SessionTables::Sqlite(s) => s.load(id).await?,
            SessionTables::Postgres(s) => s.load(id).await?,
        };
        // Gone (signed out elsewhere, or expired), or written by another replica since:
        // the next save writes, even data equal to what this process wrote last.
        self.written.forget(id, record.as_ref());
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.written.forget(id, None);
        match &self.tables {
            SessionTables::Sqlite(s) => s.delete(id).await,
            SessionTables::Postgres(s) => s.delete(id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i128, user: i64, expiry: time::OffsetDateTime) -> Record {
        Record {
            id: Id(id),
            data: HashMap::from([("user".to_owned(), serde_json::json!(user))]),
            expiry_date: expiry,
        }
    }

    #[test]
    fn only_an_expiry_moved_by_less_than_the_granularity_is_not_written() {
        let now = time::OffsetDateTime::now_utc();
        let writes = RecentWrites::default();
        let first = record(1, 7, now);
        assert!(
            !writes.unchanged(&first, &data_bytes(&first)),
            "never written"
        );
        writes.wrote(&first, data_bytes(&first));
        let later = record(1, 7, now + time::Duration::minutes(4));
        assert!(writes.unchanged(&later, &data_bytes(&later)));
        let much_later = record(1, 7, now + EXPIRY_GRANULARITY);
        assert!(!writes.unchanged(&much_later, &data_bytes(&much_later)));
        let earlier = record(1, 7, now - time::Duration::seconds(1));
        assert!(!writes.unchanged(&earlier, &data_bytes(&earlier)));
        let other_data = record(1, 8, now);
        assert!(!writes.unchanged(&other_data, &data_bytes(&other_data)));
        let other_session = record(2, 7, now);
        assert!(!writes.unchanged(&other_session, &data_bytes(&other_session)));
        // The database holds what this process wrote: remembered still.
        writes.forget(&Id(1), Some(&first));
        assert!(writes.unchanged(&later, &data_bytes(&later)));
        // Another replica wrote other data since: forgotten, so the next save writes.
        writes.forget(&Id(1), Some(&other_data));
        assert!(!writes.unchanged(&later, &data_bytes(&later)));
        writes.wrote(&first, data_bytes(&first));
        writes.forget(&Id(1), None);
        assert!(!writes.unchanged(&later, &data_bytes(&later)), "deleted");
    }
}
