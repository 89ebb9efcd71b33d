//! Accounts: users, their roles, grants waiting for a second admin, disabled and demo
//! marks, passwords. The rules (four eyes, the last admin) are the domain's and the
//! account service's; these are the rows.

use super::{Database, DbError, Tx};
use crate::clock;
use graftbench_app::model::{Role, SessionUser, UserAccount};
use graftbench_domain::UserId;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;

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

/// Enabled admins, counted inside a transaction that holds the audit head's lock.
const ENABLED_ADMINS: &str = "SELECT COUNT(*) FROM user_roles r JOIN users u ON u.id = r.user_id
     WHERE r.role = 'admin' AND u.disabled_at IS NULL";

fn roles_from_rows(rows: &[AnyRow]) -> Result<Vec<Role>, DbError> {
    let mut roles = rows
        .iter()
        .map(|row| parse_role(&row.try_get::<String, _>("role")?))
        .collect::<Result<Vec<_>, DbError>>()?;
    roles.sort();
    Ok(roles)
}

fn parse_role(name: &str) -> Result<Role, DbError> {
    Role::parse(name).ok_or_else(|| DbError::Corrupt(format!("unknown role `{name}`")))
}

/// Where [`grant`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantTable {
    /// `user_roles`: in force.
    InForce,
    /// `role_grants_pending`: waiting for a second admin.
    Pending,
}

/// Writes grants of `roles` to `user_id` by admin `granted_by` (`None`: the command line)
/// into `table`.
pub async fn grant(
    tx: &mut Tx,
    user_id: i64,
    roles: &[Role],
    granted_by: Option<UserId>,
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
            .bind(granted_by.map(UserId::get));
        if table == GrantTable::Pending {
            query = query.bind(clock::now());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Takes the lock that serialises account changes (and with them the last-admin check)
/// on both databases: the audit head's row.
pub async fn lock_accounts(tx: &mut Tx) -> Result<(), DbError> {
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts an account; `None` when the name is taken.
pub async fn insert_user(
    tx: &mut Tx,
    username: &str,
    display_name: &str,
    password_hash: &str,
    created_by: Option<UserId>,
) -> Result<Option<i64>, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO users (username, display_name, password_hash, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (username) DO NOTHING
         RETURNING id",
    )
    .bind(username)
    .bind(display_name)
    .bind(password_hash)
    .bind(clock::now())
    .bind(created_by.map(UserId::get))
    .fetch_optional(&mut **tx)
    .await?)
}

/// An account's id, whether it is disabled, and whether it is a demo account.
pub async fn account(tx: &mut Tx, username: &str) -> Result<Option<(i64, bool, bool)>, DbError> {
    let Some(row) = sqlx::query("SELECT id, disabled_at, demo FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get("id")?,
        row.try_get::<Option<String>, _>("disabled_at")?.is_some(),
        row.try_get::<i64, _>("demo")? != 0,
    )))
}

/// The roles in force for `user_id`, sorted.
pub async fn roles_in_force(tx: &mut Tx, user_id: i64) -> Result<Vec<Role>, DbError> {
    let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut **tx)
        .await?;
    roles_from_rows(&rows)
}

/// The roles granted to `user_id` and waiting for a second admin, sorted.
pub async fn roles_waiting(tx: &mut Tx, user_id: i64) -> Result<Vec<Role>, DbError> {
    let rows = sqlx::query("SELECT role FROM role_grants_pending WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut **tx)
        .await?;
    roles_from_rows(&rows)
}

/// How many enabled accounts hold the admin role.
pub async fn enabled_admins(tx: &mut Tx) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(ENABLED_ADMINS)
        .fetch_one(&mut **tx)
        .await?)
}

/// Takes `role` from `user_id` (in force, or waiting when `table` says so).
pub async fn revoke(
    tx: &mut Tx,
    user_id: i64,
    role: Role,
    table: GrantTable,
) -> Result<(), DbError> {
    let sql = match table {
        GrantTable::InForce => "DELETE FROM user_roles WHERE user_id = $1 AND role = $2",
        GrantTable::Pending => "DELETE FROM role_grants_pending WHERE user_id = $1 AND role = $2",
    };
    sqlx::query(sql)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A waiting grant of `role` to `username` whose granter is still an enabled admin:
/// (grantee id, granter id, granter name). A grant whose granter has since been disabled
/// or lost the admin role no longer stands: the first pair of eyes is gone.
pub async fn standing_grant(
    tx: &mut Tx,
    username: &str,
    role: Role,
) -> Result<Option<(i64, i64, String)>, DbError> {
    let Some(row) = sqlx::query(
        "SELECT p.user_id, p.granted_by, g.username AS granter
         FROM role_grants_pending p
         JOIN users u ON u.id = p.user_id
         JOIN users g ON g.id = p.granted_by
         WHERE u.username = $1 AND p.role = $2 AND g.disabled_at IS NULL
           AND EXISTS (SELECT 1 FROM user_roles a WHERE a.user_id = g.id AND a.role = 'admin')",
    )
    .bind(username)
    .bind(role.as_str())
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get("user_id")?,
        row.try_get("granted_by")?,
        row.try_get("granter")?,
    )))
}

/// Puts a waiting grant in force, confirmed by `confirmed_by`.
pub async fn confirm(
    tx: &mut Tx,
    user_id: i64,
    role: Role,
    granted_by: i64,
    confirmed_by: UserId,
) -> Result<(), DbError> {
    revoke(tx, user_id, role, GrantTable::Pending).await?;
    sqlx::query(
        "INSERT INTO user_roles (user_id, role, granted_by, confirmed_by)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, role) DO NOTHING",
    )
    .bind(user_id)
    .bind(role.as_str())
    .bind(granted_by)
    .bind(confirmed_by.get())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Withdraws every grant waiting for `user_id`.
pub async fn withdraw_waiting(tx: &mut Tx, user_id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM role_grants_pending WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Marks `user_id` disabled now, or enabled.
pub async fn set_disabled_at(tx: &mut Tx, user_id: i64, disabled: bool) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
        .bind(disabled.then(clock::now))
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets `username`'s password hash and ends its demo mark; `false` when there is no such
/// user.
pub async fn set_password_hash(
    tx: &mut Tx,
    username: &str,
    password_hash: &str,
) -> Result<bool, DbError> {
    let changed = sqlx::query("UPDATE users SET password_hash = $1, demo = 0 WHERE username = $2")
        .bind(password_hash)
        .bind(username)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(changed > 0)
}

impl Database {
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
        // One statement with the roles (a row per role): every request reads this.
        let rows = sqlx::query(
            "SELECT u.username, u.display_name, r.role FROM users u
             LEFT JOIN user_roles r ON r.user_id = u.id
             WHERE u.id = $1 AND u.disabled_at IS NULL",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut roles = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(name) = row.try_get::<Option<String>, _>("role")? {
                roles.push(parse_role(&name)?);
            }
        }
        roles.sort();
        Ok(Some(SessionUser {
            id: UserId(id),
            username: first.try_get("username")?,
            display_name: first.try_get("display_name")?,
            roles,
        }))
    }

    async fn roles_of(&self, id: i64) -> Result<Vec<Role>, DbError> {
        let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        roles_from_rows(&rows)
    }

    /// Roles granted to `user_id` and waiting for a second admin.
    pub async fn pending_roles(&self, user_id: i64) -> Result<Vec<Role>, DbError> {
        let rows = sqlx::query("SELECT role FROM role_grants_pending WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        roles_from_rows(&rows)
    }

    /// Every account, by name: three statements however many accounts there are.
    pub async fn list_users(&self) -> Result<Vec<UserAccount>, DbError> {
        let rows = sqlx::query(
            "SELECT id, username, display_name, disabled_at, demo FROM users ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut granted: HashMap<i64, (Vec<Role>, Vec<Role>)> = HashMap::new();
        for (table, pending) in [("user_roles", false), ("role_grants_pending", true)] {
            for row in sqlx::query(&format!("SELECT user_id, role FROM {table}"))
                .fetch_all(&self.pool)
                .await?
            {
                let role = parse_role(&row.try_get::<String, _>("role")?)?;
                let (roles, waiting) = granted.entry(row.try_get("user_id")?).or_default();
                let list = if pending { waiting } else { roles };
                list.push(role);
            }
        }
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let (mut roles, mut pending_roles) = granted.remove(&id).unwrap_or_default();
            roles.sort();
            pending_roles.sort();
            users.push(UserAccount {
                id: UserId(id),
                username: row.try_get("username")?,
                display_name: row.try_get("display_name")?,
                roles,
                pending_roles,
                disabled_at: row.try_get("disabled_at")?,
                demo: row.try_get::<i64, _>("demo")? != 0,
            });
        }
        Ok(users)
    }

    /// The enabled accounts holding the reviewer role, by name, as `(id, username,
    /// display name)`: those a review can be requested from (one statement; the patch
    /// page of an author reads it on every view).
    pub async fn reviewers(&self) -> Result<Vec<(UserId, String, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name FROM users u
             JOIN user_roles r ON r.user_id = u.id AND r.role = $1
             WHERE u.disabled_at IS NULL
             ORDER BY u.username",
        )
        .bind(Role::Reviewer.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    UserId(row.try_get("id")?),
                    row.try_get("username")?,
                    row.try_get("display_name")?,
                ))
            })
            .collect()
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
