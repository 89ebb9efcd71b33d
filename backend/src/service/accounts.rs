//! Accounts as use cases: creating one, changing its roles (four eyes on signing roles),
//! confirming a waiting grant, disabling and enabling, a new password. Each opens its
//! transaction, takes the accounts lock, asks the domain's rules and appends its audit
//! event in the same transaction.

use crate::store::audit;
use crate::store::users::{self, GrantTable};
use crate::store::{self, Database, DbError};
use graftbench_app::model::SessionUser;
use graftbench_domain::accounts::{leaves_no_admin, plan_roles, waits_for_second_admin};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::{Role, UserId};

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
        /// Whether grants of the domain's `CONFIRMED_ROLES` wait for a second admin.
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
        let four_eyes_admin = matches!(
            self,
            Grantor::Admin {
                four_eyes: true,
                ..
            }
        );
        waits_for_second_admin(role, four_eyes_admin)
    }
}

/// What [`set_roles`] did.
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

/// What [`confirm_grant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmGrant {
    /// The role is in force.
    Confirmed,
    /// No such user, or no such grant waiting.
    NotPending,
    /// The confirming admin is the one who granted it, or the one who would receive it.
    SameAdmin,
}

/// What [`set_disabled`] did.
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

fn names(roles: &[Role]) -> Vec<&'static str> {
    roles.iter().map(|r| r.as_str()).collect()
}

/// Creates a user with the given roles from the command line; `None` if the name is
/// taken. Audited as `system`'s.
pub async fn create_user(
    db: &Database,
    username: &str,
    display_name: &str,
    password_hash: &str,
    roles: &[Role],
) -> Result<Option<i64>, DbError> {
    create_user_as(
        db,
        Grantor::CommandLine,
        username,
        display_name,
        password_hash,
        roles,
    )
    .await
}

/// Creates a user on behalf of `by`; `None` if the name is taken. Under four eyes an
/// admin's grants of signing roles wait for a second admin, as in [`set_roles`].
pub async fn create_user_as(
    db: &Database,
    by: Grantor<'_>,
    username: &str,
    display_name: &str,
    password_hash: &str,
    roles: &[Role],
) -> Result<Option<i64>, DbError> {
    let mut tx = db.begin().await?;
    let Some(id) = users::insert_user(
        &mut tx,
        username,
        display_name,
        password_hash,
        by.admin_id(),
    )
    .await?
    else {
        return Ok(None);
    };
    let (held, pending) = plan_roles(&[], roles, |role| by.holds(role));
    users::grant(&mut tx, id, &held, by.admin_id(), GrantTable::InForce).await?;
    users::grant(&mut tx, id, &pending, by.admin_id(), GrantTable::Pending).await?;
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
    store::commit(tx).await?;
    Ok(Some(id))
}

/// Gives `username` exactly `roles`, on behalf of `by`. Removals take effect at once;
/// grants of signing roles by an admin under four eyes wait for a second admin
/// ([`confirm_grant`]), and a waiting grant left out of `roles` is withdrawn. Refuses to
/// take the admin role from the last enabled admin.
pub async fn set_roles(
    db: &Database,
    by: Grantor<'_>,
    username: &str,
    roles: &[Role],
) -> Result<RolesChange, DbError> {
    let mut tx = db.begin().await?;
    users::lock_accounts(&mut tx).await?;
    let Some((id, _, _)) = users::account(&mut tx, username).await? else {
        return Ok(RolesChange::NoSuchUser);
    };
    let before = users::roles_in_force(&mut tx, id).await?;
    let pending_before = users::roles_waiting(&mut tx, id).await?;
    let (after, pending) = plan_roles(&before, roles, |role| by.holds(role));
    if before == after && pending_before == pending {
        return Ok(RolesChange::Unchanged {
            roles: after,
            pending,
        });
    }
    let loses_admin = before.contains(&Role::Admin) && !after.contains(&Role::Admin);
    if loses_admin && leaves_no_admin(true, users::enabled_admins(&mut tx).await?) {
        return Ok(RolesChange::LastAdmin);
    }
    for role in before.iter().filter(|r| !after.contains(r)) {
        users::revoke(&mut tx, id, *role, GrantTable::InForce).await?;
    }
    let added: Vec<Role> = after
        .iter()
        .copied()
        .filter(|r| !before.contains(r))
        .collect();
    users::grant(&mut tx, id, &added, by.admin_id(), GrantTable::InForce).await?;
    for role in pending_before.iter().filter(|r| !pending.contains(r)) {
        users::revoke(&mut tx, id, *role, GrantTable::Pending).await?;
    }
    let newly_pending: Vec<Role> = pending
        .iter()
        .copied()
        .filter(|r| !pending_before.contains(r))
        .collect();
    users::grant(
        &mut tx,
        id,
        &newly_pending,
        by.admin_id(),
        GrantTable::Pending,
    )
    .await?;
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
    store::commit(tx).await?;
    Ok(RolesChange::Changed {
        before,
        after,
        pending,
    })
}

/// Confirms a waiting grant of `role` to `username` as admin `admin`, who must be
/// neither the admin who granted it nor its grantee; the role is then in force.
pub async fn confirm_grant(
    db: &Database,
    admin: &SessionUser,
    username: &str,
    role: Role,
) -> Result<ConfirmGrant, DbError> {
    let mut tx = db.begin().await?;
    users::lock_accounts(&mut tx).await?;
    let Some((user_id, granted_by, granter)) =
        users::standing_grant(&mut tx, username, role).await?
    else {
        return Ok(ConfirmGrant::NotPending);
    };
    if admin.id == UserId(granted_by) || admin.id == UserId(user_id) {
        return Ok(ConfirmGrant::SameAdmin);
    }
    users::confirm(&mut tx, user_id, role, granted_by, admin.id).await?;
    audit::append(
        &mut tx,
        &admin.username,
        AuditAction::UserRoleGrantConfirmed,
        &AuditSubject::User(username.to_owned()),
        &serde_json::json!({ "role": role.as_str(), "granted_by": granter }),
    )
    .await?;
    store::commit(tx).await?;
    Ok(ConfirmGrant::Confirmed)
}

/// Disables or enables `username`'s account on behalf of `by`, audited. Refuses to
/// disable the last enabled admin, who would lock everyone out of user management.
///
/// Enabling an account is granting its roles again: under four eyes an admin's enabling
/// puts its signing roles back to wait for a second admin, and a demo account is enabled
/// only from the command line.
pub async fn set_disabled(
    db: &Database,
    by: Grantor<'_>,
    username: &str,
    disabled: bool,
) -> Result<DisableChange, DbError> {
    let mut tx = db.begin().await?;
    // Serialise with role changes, so two admins cannot disable each other at once.
    users::lock_accounts(&mut tx).await?;
    let Some((id, is_disabled, demo)) = users::account(&mut tx, username).await? else {
        return Ok(DisableChange::NoSuchUser);
    };
    if is_disabled == disabled {
        return Ok(DisableChange::Unchanged);
    }
    if !disabled && demo && by != Grantor::CommandLine {
        return Ok(DisableChange::DemoAccount);
    }
    let mut held_back: Vec<Role> = Vec::new();
    if disabled {
        let is_admin = users::roles_in_force(&mut tx, id)
            .await?
            .contains(&Role::Admin);
        if leaves_no_admin(is_admin, users::enabled_admins(&mut tx).await?) {
            return Ok(DisableChange::LastAdmin);
        }
    } else {
        held_back = users::roles_in_force(&mut tx, id)
            .await?
            .into_iter()
            .filter(|r| by.holds(*r))
            .collect();
        for role in &held_back {
            users::revoke(&mut tx, id, *role, GrantTable::InForce).await?;
        }
        users::withdraw_waiting(&mut tx, id).await?;
        users::grant(&mut tx, id, &held_back, by.admin_id(), GrantTable::Pending).await?;
    }
    users::set_disabled_at(&mut tx, id, disabled).await?;
    let held_back = names(&held_back);
    audit::append(
        &mut tx,
        by.actor(),
        if disabled {
            AuditAction::UserDisabled
        } else {
            AuditAction::UserEnabled
        },
        &AuditSubject::User(username.to_owned()),
        &if held_back.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ "roles_waiting_for_a_second_admin": held_back })
        },
    )
    .await?;
    store::commit(tx).await?;
    Ok(DisableChange::Changed)
}

/// Sets a new password for `username` on behalf of `actor` (the command line's
/// `system`), audited. The account stops being a demo account: its password is no
/// longer the published one. `false` when there is no such user.
pub async fn set_password(
    db: &Database,
    actor: &str,
    username: &str,
    password_hash: &str,
) -> Result<bool, DbError> {
    let mut tx = db.begin().await?;
    if !users::set_password_hash(&mut tx, username, password_hash).await? {
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
    store::commit(tx).await?;
    Ok(true)
}
