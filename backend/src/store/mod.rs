//! The database: SQLite (a file in the data directory, WAL) by default, PostgreSQL when the
//! URL says so.
//!
//! Queries are written once, in SQL both databases accept (`$n` placeholders, `RETURNING`,
//! `ON CONFLICT`), and run through sqlx's `Any` driver. Column types are kept to what `Any`
//! decodes the same way on both: 64-bit integers, text and bytes; times are RFC 3339 text.
//!
//! This module and its children are the only place with SQL. Each child is one family of
//! tables; services open a transaction, call them, ask the domain, and append the audit
//! event through [`audit::append`] in the same transaction.

pub mod audit;
pub mod comments;
pub mod files;
pub mod jobs;
pub mod patches;
pub mod reviews;
pub mod sessions;
pub mod targets;
pub mod tree;
pub mod users;

/// A transaction on either database.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Commits `tx`.
pub async fn commit(tx: Tx) -> Result<(), DbError> {
    Ok(tx.commit().await?)
}

pub use users::UserRecord;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names a database this build cannot use.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// Connecting, querying or migrating failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// Applying the schema failed.
    #[error("applying the database schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds something the code does not expect.
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),
    /// Stored bytes no longer hash to the SHA-256 they are filed under: someone changed
    /// them outside Graftbench. Never served; logged as a security alert.
    #[error("stored diff {sha256} does not match its SHA-256 (it hashes to {actual}): it was altered in the database")]
    Tampered {
        /// The hash the revision is filed under.
        sha256: String,
        /// What the stored bytes hash to.
        actual: String,
    },
}

/// The concrete pool the session store needs (tower-sessions' stores are per database).
#[derive(Debug, Clone)]
pub enum SessionPool {
    /// SQLite.
    Sqlite(sqlx::SqlitePool),
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
}

/// A connection pool plus what kind of database it talks to.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    kind: DbKind,
    url: String,
}

/// The SQLite URL for a database file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl Database {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbKind::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        if kind == DbKind::Sqlite {
            // One writer at a time is SQLite's model; a small pool with a generous busy
            // timeout queues writers instead of failing them. A connection to a local
            // file never goes stale, so it is not pinged before each use: that ping is a
            // round trip to the connection's thread, as costly as a query, and a patch
            // page makes some twenty queries.
            options = options
                .max_connections(8)
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                });
        } else {
            options = options.max_connections(16);
        }
        let pool = options.connect(url).await?;
        if kind == DbKind::Sqlite {
            // Persistent in the file; readers then never block the writer.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let db = Database {
            pool,
            kind,
            url: url.to_owned(),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the migrations for this kind of database.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self.kind {
            DbKind::Sqlite => {
                sqlx::migrate!("../migrations/sqlite")
                    .run(&self.pool)
                    .await?
            }
            DbKind::Postgres => {
                let migrator = sqlx::migrate!("../migrations/postgres");
                // The role `serve` runs as may only read and write rows (see
                // `grant_runtime_role`): with the schema current there is nothing for it
                // to create, and it must not try.
                if !self.postgres_schema_is_current(&migrator).await? {
                    migrator.run(&self.pool).await.map_err(|e| match e {
                        sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(d))
                            if d.code().as_deref() == Some("42501") =>
                        {
                            DbError::Migrate(sqlx::migrate::MigrateError::Execute(
                                sqlx::Error::Protocol(
                                    "the schema is out of date and this role may not change \
                                     it: run `graftbench migrate` as the database's owner"
                                        .into(),
                                ),
                            ))
                        }
                        other => DbError::Migrate(other),
                    })?
                }
            }
        }
        Ok(())
    }

    /// Whether every migration is applied already (PostgreSQL).
    async fn postgres_schema_is_current(
        &self,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<bool, DbError> {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        // A migration changed since it was applied is not current either: running the
        // migrator then reports it, as it always did.
        Ok(migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .all(|m| {
                applied
                    .iter()
                    .any(|(version, checksum)| *version == m.version && **checksum == *m.checksum)
            }))
    }

    /// Whether this connection's role may edit or delete audit events (PostgreSQL; on
    /// SQLite whoever can write the file can). `serve` warns when it can.
    pub async fn can_rewrite_audit_events(&self) -> Result<bool, DbError> {
        if self.kind != DbKind::Postgres {
            return Ok(true);
        }
        Ok(sqlx::query_scalar(
            "SELECT has_table_privilege(current_user, 'audit_events', 'UPDATE')
                 OR has_table_privilege(current_user, 'audit_events', 'DELETE')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Gives the PostgreSQL role `serve` runs as what it needs and no more: rows of every
    /// table, but of the audit trail only SELECT and INSERT, so that whoever holds that
    /// role's password cannot edit or delete events; no schema changes (`migrate`, run as
    /// the owner, makes them). A superuser bypasses grants: the runtime role must not be
    /// one.
    pub async fn grant_runtime_role(&self, role: &str) -> Result<(), DbError> {
        if self.kind != DbKind::Postgres {
            return Err(DbError::Corrupt(
                "runtime roles are a PostgreSQL setting; SQLite has none".into(),
            ));
        }
        let valid = !role.is_empty()
            && role.len() <= 63
            && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(DbError::Corrupt(format!(
                "`{}` is not a role name Graftbench grants to: use lower-case letters, digits \
                 and _",
                role.chars().take(63).collect::<String>()
            )));
        }
        let superuser: Option<bool> =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&self.pool)
                .await?;
        match superuser {
            None => return Err(DbError::Corrupt(format!("there is no role `{role}`"))),
            Some(true) => {
                return Err(DbError::Corrupt(format!(
                    "`{role}` is a superuser, which no grant can limit: run serve as a plain role"
                )))
            }
            Some(false) => {}
        }
        let owner_rights: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_tables
             WHERE schemaname = 'public' AND pg_has_role($1, tableowner, 'MEMBER')",
        )
        .bind(role)
        .fetch_one(&self.pool)
        .await?;
        if owner_rights > 0 {
            return Err(DbError::Corrupt(format!(
                "`{role}` owns Graftbench's tables (or is a member of their owner) and could \
                 grant itself anything: make a separate role for serve"
            )));
        }
        let mut tx = self.pool.begin().await?;
        for statement in [
            "GRANT USAGE ON SCHEMA public TO \"{role}\"",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{role}\"",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \"{role}\"",
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM \"{role}\"",
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints FROM \"{role}\"",
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_tree FROM \"{role}\"",
            // Archiving moves events out of audit_events: only the owner does that.
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_segments FROM \"{role}\"",
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_key_rotations FROM \"{role}\"",
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM \"{role}\"",
            "GRANT USAGE ON SCHEMA tower_sessions TO \"{role}\"",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tower_sessions \
             TO \"{role}\"",
        ] {
            sqlx::query(&statement.replace("{role}", role))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The kind of database.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(self.pool.begin().await?)
    }

    /// The pool, for the query modules.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A second, concretely typed pool on the same database for the session store.
    pub async fn session_pool(&self) -> Result<SessionPool, DbError> {
        Ok(match self.kind {
            DbKind::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&self.url)?
                    .busy_timeout(Duration::from_secs(10))
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
                SessionPool::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(4)
                        // As the main pool: no ping before each use of a local file.
                        .test_before_acquire(false)
                        .connect_with(options)
                        .await?,
                )
            }
            DbKind::Postgres => SessionPool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect(&self.url)
                    .await?,
            ),
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
