//! Accounts: users, their roles, grants waiting for a second admin, disabled and demo
//! marks, passwords.

use super::audit;
use super::{Database, DbError};
use crate::clock;
use graftbench_app::model::{Role, SessionUser, UserAccount};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::UserId;
use sqlx::any::AnyRow;
use sqlx::Row;

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
        audit::append(
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
            audit::append(
                &mut tx,
                by.actor(),
                AuditAction::UserRolesChanged,
                &AuditSubject::User(username.to_owned()),
                &serde_json::json!({ "from": names(&before), "to": names(&after) }),
            )
            .await?;
        }
        if pending_before != pending {
            audit::append(
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
        audit::append(
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
        audit::append(
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
        audit::append(
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
