//! The database: SQLite (a file in the data directory, WAL) by default, PostgreSQL when the
//! URL says so.
//!
//! Queries are written once, in SQL both databases accept (`$n` placeholders, `RETURNING`,
//! `ON CONFLICT`), and run through sqlx's `Any` driver. Column types are kept to what `Any`
//! decodes the same way on both: 64-bit integers, text and bytes; times are RFC 3339 text.

use crate::clock;
use graftbench_app::model::{Role, SessionUser, UserAccount};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::UserId;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
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
            // timeout queues writers instead of failing them.
            options = options.max_connections(8).after_connect(|conn, _meta| {
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

/// A user row with its password hash, for sign-in.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// The user as the rest of the app sees it.
    pub user: SessionUser,
    /// PHC string (argon2id).
    pub password_hash: String,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
    /// Seeded by `serve --demo` with a published password.
    pub demo: bool,
}

/// What [`Database::set_disabled`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableChange {
    /// The account was disabled or enabled.
    Changed,
    /// It already was.
    Unchanged,
    /// No such user.
    NoSuchUser,
    /// Refused: it would leave no enabled admin.
    LastAdmin,
    /// Refused: a demo account's password is published; only the server's command line
    /// (`user passwd`, which ends the demo mark) may bring it back.
    DemoAccount,
}

/// Enabled admins, counted inside a transaction that holds the audit head's lock.
const ENABLED_ADMINS: &str = "SELECT COUNT(*) FROM user_roles r JOIN users u ON u.id = r.user_id
     WHERE r.role = 'admin' AND u.disabled_at IS NULL";

/// Roles whose grants by an admin wait for a second admin when the policy says so: they
/// sign off on patches or manage the accounts that do.
pub const CONFIRMED_ROLES: [Role; 4] = [
    Role::Reviewer,
    Role::SecurityOfficer,
    Role::ReleaseManager,
    Role::Admin,
];

/// Who changes someone's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantor<'a> {
    /// The server's command line: the audited break-glass path, in force at once.
    CommandLine,
    /// An admin in the web UI or the API.
    Admin {
        /// The admin's user id.
        id: UserId,
        /// The admin's user name (the audit event's actor).
        name: &'a str,
        /// Whether grants of [`CONFIRMED_ROLES`] wait for a second admin.
        four_eyes: bool,
    },
}

impl Grantor<'_> {
    fn actor(&self) -> &str {
        match self {
            Grantor::CommandLine => "system",
            Grantor::Admin { name, .. } => name,
        }
    }

    fn admin_id(&self) -> Option<UserId> {
        match self {
            Grantor::CommandLine => None,
            Grantor::Admin { id, .. } => Some(*id),
        }
    }

    /// Whether a grant of `role` by this grantor waits for a second admin.
    fn holds(&self, role: Role) -> bool {
        matches!(
            self,
            Grantor::Admin {
                four_eyes: true,
                ..
            }
        ) && CONFIRMED_ROLES.contains(&role)
    }
}

/// What [`Database::confirm_grant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmGrant {
    /// The role is in force.
    Confirmed,
    /// No such user, or no such grant waiting.
    NotPending,
    /// The confirming admin is the one who granted it, or the one who would receive it.
    SameAdmin,
}

/// What [`Database::set_roles`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolesChange {
    /// The roles changed, or grants now wait for a second admin.
    Changed {
        /// Before.
        before: Vec<Role>,
        /// In force after.
        after: Vec<Role>,
        /// Granted, waiting for a second admin's confirmation.
        pending: Vec<Role>,
    },
    /// Nothing to write: the user already held exactly these roles, with these grants
    /// waiting.
    Unchanged {
        /// In force.
        roles: Vec<Role>,
        /// Waiting for a second admin.
        pending: Vec<Role>,
    },
    /// No such user.
    NoSuchUser,
    /// Refused: it would leave no admin.
    LastAdmin,
}

fn roles_from_rows(rows: &[AnyRow]) -> Result<Vec<Role>, DbError> {
    let mut roles = rows
        .iter()
        .map(|row| {
            let name: String = row.try_get("role")?;
            Role::parse(&name).ok_or_else(|| DbError::Corrupt(format!("unknown role `{name}`")))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    roles.sort();
    Ok(roles)
}

/// Where [`grant`] writes.
#[derive(Clone, Copy)]
enum GrantTable {
    /// `user_roles`: in force.
    InForce,
    /// `role_grants_pending`: waiting for a second admin.
    Pending,
}

/// Writes grants of `roles` to `user_id` by `by` into `table`, inside `tx`.
async fn grant(
    tx: &mut sqlx::AnyConnection,
    user_id: i64,
    roles: &[Role],
    by: Grantor<'_>,
    table: GrantTable,
) -> Result<(), DbError> {
    let sql = match table {
        GrantTable::InForce => {
            "INSERT INTO user_roles (user_id, role, granted_by) VALUES ($1, $2, $3)"
        }
        GrantTable::Pending => {
            "INSERT INTO role_grants_pending (user_id, role, granted_by, granted_at)
             VALUES ($1, $2, $3, $4)"
        }
    };
    for role in roles {
        let mut query = sqlx::query(sql)
            .bind(user_id)
            .bind(role.as_str())
            .bind(by.admin_id().map(UserId::get));
        if matches!(table, GrantTable::Pending) {
            query = query.bind(clock::now());
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

impl Database {
    /// Creates a user with the given roles; `None` if the name is taken. The command
    /// line's own action: audited as `system`'s.
    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
        roles: &[Role],
    ) -> Result<Option<i64>, DbError> {
        self.create_user_as(
            Grantor::CommandLine,
            username,
            display_name,
            password_hash,
            roles,
        )
        .await
    }

    /// Creates a user on behalf of `by`; `None` if the name is taken. Under four eyes an
    /// admin's grants of [`CONFIRMED_ROLES`] wait for a second admin, as in
    /// [`Database::set_roles`].
    pub async fn create_user_as(
        &self,
        by: Grantor<'_>,
        username: &str,
        display_name: &str,
        password_hash: &str,
        roles: &[Role],
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO users (username, display_name, password_hash, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (username) DO NOTHING
             RETURNING id",
        )
        .bind(username)
        .bind(display_name)
        .bind(password_hash)
        .bind(clock::now())
        .bind(by.admin_id().map(UserId::get))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let (held, pending): (Vec<Role>, Vec<Role>) = roles.iter().partition(|r| !by.holds(**r));
        grant(&mut tx, id, &held, by, GrantTable::InForce).await?;
        grant(&mut tx, id, &pending, by, GrantTable::Pending).await?;
        let names = |roles: &[Role]| roles.iter().map(|r| r.as_str()).collect::<Vec<_>>();
        crate::audit::append(
            &mut tx,
            by.actor(),
            AuditAction::UserCreated,
            &AuditSubject::User(username.to_owned()),
            &serde_json::json!({
                "display_name": display_name,
                "roles": names(&held),
                "pending_roles": names(&pending),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// A user by login name, with the password hash.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, DbError> {
        let row = sqlx::query(
            "SELECT id, username, display_name, password_hash, disabled_at, demo
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get("id")?;
        Ok(Some(UserRecord {
            user: SessionUser {
                id: UserId(id),
                username: row.try_get("username")?,
                display_name: row.try_get("display_name")?,
                roles: self.roles_of(id).await?,
            },
            password_hash: row.try_get("password_hash")?,
            disabled: row.try_get::<Option<String>, _>("disabled_at")?.is_some(),
            demo: row.try_get::<i64, _>("demo")? != 0,
        }))
    }

    /// A user by id, as sessions refer to them. A disabled account has no user: every
    /// request reads this, so disabling an account ends its sessions at once.
    pub async fn session_user(&self, id: i64) -> Result<Option<SessionUser>, DbError> {
        let row = sqlx::query(
            "SELECT id, username, display_name FROM users WHERE id = $1 AND disabled_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionUser {
            id: UserId(id),
            username: row.try_get("username")?,
            display_name: row.try_get("display_name")?,
            roles: self.roles_of(id).await?,
        }))
    }

    async fn roles_of(&self, id: i64) -> Result<Vec<Role>, DbError> {
        let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        roles_from_rows(&rows)
    }

    /// Gives `username` exactly `roles`, on behalf of `by`. Removals take effect at once;
    /// grants of [`CONFIRMED_ROLES`] by an admin under four eyes wait for a second admin
    /// ([`Database::confirm_grant`]), and a waiting grant left out of `roles` is withdrawn.
    /// Refuses to take the admin role from the last enabled admin.
    pub async fn set_roles(
        &self,
        by: Grantor<'_>,
        username: &str,
        roles: &[Role],
    ) -> Result<RolesChange, DbError> {
        let mut tx = self.pool.begin().await?;
        // Serialise role changes (and with them the last-admin check) on both databases.
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let Some(id) = sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(RolesChange::NoSuchUser);
        };
        let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let before = roles_from_rows(&rows)?;
        let rows = sqlx::query("SELECT role FROM role_grants_pending WHERE user_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let pending_before = roles_from_rows(&rows)?;
        let mut wanted = roles.to_vec();
        wanted.sort();
        wanted.dedup();
        let mut after: Vec<Role> = Vec::new();
        let mut pending: Vec<Role> = Vec::new();
        for role in &wanted {
            if before.contains(role) || !by.holds(*role) {
                after.push(*role);
            } else {
                pending.push(*role);
            }
        }
        if before == after && pending_before == pending {
            return Ok(RolesChange::Unchanged {
                roles: after,
                pending,
            });
        }
        if before.contains(&Role::Admin) && !after.contains(&Role::Admin) {
            let admins: i64 = sqlx::query_scalar(ENABLED_ADMINS)
                .fetch_one(&mut *tx)
                .await?;
            if admins <= 1 {
                return Ok(RolesChange::LastAdmin);
            }
        }
        for role in before.iter().filter(|r| !after.contains(r)) {
            sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
                .bind(id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let added: Vec<Role> = after
            .iter()
            .copied()
            .filter(|r| !before.contains(r))
            .collect();
        grant(&mut tx, id, &added, by, GrantTable::InForce).await?;
        for role in pending_before.iter().filter(|r| !pending.contains(r)) {
            sqlx::query("DELETE FROM role_grants_pending WHERE user_id = $1 AND role = $2")
                .bind(id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let newly_pending: Vec<Role> = pending
            .iter()
            .copied()
            .filter(|r| !pending_before.contains(r))
            .collect();
        grant(&mut tx, id, &newly_pending, by, GrantTable::Pending).await?;
        let names = |roles: &[Role]| roles.iter().map(|r| r.as_str()).collect::<Vec<_>>();
        if before != after {
            crate::audit::append(
                &mut tx,
                by.actor(),
                AuditAction::UserRolesChanged,
                &AuditSubject::User(username.to_owned()),
                &serde_json::json!({ "from": names(&before), "to": names(&after) }),
            )
            .await?;
        }
        if pending_before != pending {
            crate::audit::append(
                &mut tx,
                by.actor(),
                AuditAction::UserRoleGrantsPending,
                &AuditSubject::User(username.to_owned()),
                &serde_json::json!({
                    "from": names(&pending_before),
                    "to": names(&pending),
                    "needs": "a second admin's confirmation",
                }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(RolesChange::Changed {
            before,
            after,
            pending,
        })
    }

    /// Confirms a waiting grant of `role` to `username` as admin `admin`, who must be
    /// neither the admin who granted it nor its grantee; the role is then in force.
    pub async fn confirm_grant(
        &self,
        admin: &SessionUser,
        username: &str,
        role: Role,
    ) -> Result<ConfirmGrant, DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        // A grant whose granter has since been disabled or lost the admin role no longer
        // stands: the first pair of eyes is gone.
        let row = sqlx::query(
            "SELECT p.user_id, p.granted_by, g.username AS granter
             FROM role_grants_pending p
             JOIN users u ON u.id = p.user_id
             JOIN users g ON g.id = p.granted_by
             WHERE u.username = $1 AND p.role = $2 AND g.disabled_at IS NULL
               AND EXISTS (SELECT 1 FROM user_roles a WHERE a.user_id = g.id AND a.role = 'admin')",
        )
        .bind(username)
        .bind(role.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ConfirmGrant::NotPending);
        };
        let user_id: i64 = row.try_get("user_id")?;
        let granted_by: i64 = row.try_get("granted_by")?;
        let granter: String = row.try_get("granter")?;
        if admin.id == UserId(granted_by) || admin.id == UserId(user_id) {
            return Ok(ConfirmGrant::SameAdmin);
        }
        sqlx::query("DELETE FROM role_grants_pending WHERE user_id = $1 AND role = $2")
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO user_roles (user_id, role, granted_by, confirmed_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, role) DO NOTHING",
        )
        .bind(user_id)
        .bind(role.as_str())
        .bind(granted_by)
        .bind(admin.id.get())
        .execute(&mut *tx)
        .await?;
        crate::audit::append(
            &mut tx,
            &admin.username,
            AuditAction::UserRoleGrantConfirmed,
            &AuditSubject::User(username.to_owned()),
            &serde_json::json!({ "role": role.as_str(), "granted_by": granter }),
        )
        .await?;
        tx.commit().await?;
        Ok(ConfirmGrant::Confirmed)
    }

    /// Roles granted to `user_id` and waiting for a second admin.
    pub async fn pending_roles(&self, user_id: i64) -> Result<Vec<Role>, DbError> {
        let rows = sqlx::query("SELECT role FROM role_grants_pending WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        roles_from_rows(&rows)
    }

    /// Every account, by name.
    pub async fn list_users(&self) -> Result<Vec<UserAccount>, DbError> {
        let rows = sqlx::query(
            "SELECT id, username, display_name, disabled_at, demo FROM users ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            users.push(UserAccount {
                id: UserId(id),
                username: row.try_get("username")?,
                display_name: row.try_get("display_name")?,
                roles: self.roles_of(id).await?,
                pending_roles: self.pending_roles(id).await?,
                disabled_at: row.try_get("disabled_at")?,
                demo: row.try_get::<i64, _>("demo")? != 0,
            });
        }
        Ok(users)
    }

    /// Disables or enables `username`'s account on behalf of `actor`, audited. Refuses to
    /// disable the last enabled admin, who would lock everyone out of user management.
    ///
    /// Enabling an account is granting its roles again: under four eyes an admin's enabling
    /// puts its roles among [`CONFIRMED_ROLES`] back to wait for a second admin, and a demo
    /// account is enabled only from the command line.
    pub async fn set_disabled(
        &self,
        by: Grantor<'_>,
        username: &str,
        disabled: bool,
    ) -> Result<DisableChange, DbError> {
        let mut tx = self.pool.begin().await?;
        // Serialise with role changes, so two admins cannot disable each other at once.
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let Some(row) = sqlx::query("SELECT id, disabled_at, demo FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(DisableChange::NoSuchUser);
        };
        let id: i64 = row.try_get("id")?;
        if row.try_get::<Option<String>, _>("disabled_at")?.is_some() == disabled {
            return Ok(DisableChange::Unchanged);
        }
        let demo = row.try_get::<i64, _>("demo")? != 0;
        if !disabled && demo && by != Grantor::CommandLine {
            return Ok(DisableChange::DemoAccount);
        }
        let mut held_back: Vec<Role> = Vec::new();
        if !disabled {
            let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            held_back = roles_from_rows(&rows)?
                .into_iter()
                .filter(|r| by.holds(*r))
                .collect();
            for role in &held_back {
                sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
                    .bind(id)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM role_grants_pending WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            grant(&mut tx, id, &held_back, by, GrantTable::Pending).await?;
        }
        if disabled {
            let is_admin: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM user_roles WHERE user_id = $1 AND role = 'admin'",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let admins: i64 = sqlx::query_scalar(ENABLED_ADMINS)
                .fetch_one(&mut *tx)
                .await?;
            if is_admin > 0 && admins <= 1 {
                return Ok(DisableChange::LastAdmin);
            }
        }
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then(clock::now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let names: Vec<&str> = held_back.iter().map(|r| r.as_str()).collect();
        crate::audit::append(
            &mut tx,
            by.actor(),
            if disabled {
                AuditAction::UserDisabled
            } else {
                AuditAction::UserEnabled
            },
            &AuditSubject::User(username.to_owned()),
            &if names.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({ "roles_waiting_for_a_second_admin": names })
            },
        )
        .await?;
        tx.commit().await?;
        Ok(DisableChange::Changed)
    }

    /// Sets a new password for `username` on behalf of `actor` (the command line's
    /// `system`), audited. The account stops being a demo account: its password is no
    /// longer the published one. `false` when there is no such user.
    pub async fn set_password(
        &self,
        actor: &str,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let changed =
            sqlx::query("UPDATE users SET password_hash = $1, demo = 0 WHERE username = $2")
                .bind(password_hash)
                .bind(username)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        crate::audit::append(
            &mut tx,
            actor,
            AuditAction::UserPasswordChanged,
            &AuditSubject::User(username.to_owned()),
            &serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks `username` as a demo account (one whose password is published).
    pub async fn mark_demo(&self, username: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE users SET demo = 1 WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
