//! What an account may be: its name, display name, password length, and the roles a
//! grant and revoke leave. One rule each, for the command line and the web alike.

use crate::Role;

/// Longest user name; longer names cannot exist and are refused without a lookup.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Roles whose grants by an admin wait for a second admin when the policy says so: they
/// sign off on patches or manage the accounts that do.
pub const CONFIRMED_ROLES: [Role; 4] = [
    Role::Reviewer,
    Role::SecurityOfficer,
    Role::ReleaseManager,
    Role::Admin,
];

/// Whether a grant of `role` by an admin under four eyes waits for a second admin.
pub fn waits_for_second_admin(role: Role, four_eyes_admin: bool) -> bool {
    four_eyes_admin && CONFIRMED_ROLES.contains(&role)
}

/// Roles wanted for an account, split: those in force at once (already held, or not held
/// back), and those granted now that wait for a second admin. Both sorted, each once.
pub fn plan_roles(
    held: &[Role],
    wanted: &[Role],
    held_back: impl Fn(Role) -> bool,
) -> (Vec<Role>, Vec<Role>) {
    let mut wanted = wanted.to_vec();
    wanted.sort();
    wanted.dedup();
    wanted
        .into_iter()
        .partition(|role| held.contains(role) || !held_back(*role))
}

/// Whether a change leaves the instance without an enabled admin: the account loses (or,
/// disabled, stops using) the admin role while it is the only enabled admin.
pub fn leaves_no_admin(loses_admin: bool, enabled_admins: i64) -> bool {
    loses_admin && enabled_admins <= 1
}

/// Why an account's details were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Not 1 to 64 of the allowed characters.
    #[error("user name `{}` is not allowed: use 1 to {MAX_USERNAME_CHARS} letters, digits, `.`, `_` or `-`", .0.escape_debug())]
    Username(String),
    /// Too long, or with control characters.
    #[error(
        "a display name is at most {MAX_DISPLAY_NAME_CHARS} characters, without control characters"
    )]
    DisplayName,
    /// Too short.
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    /// An account with no role could do nothing.
    #[error("give the user at least one role")]
    NoRoles,
    /// A role change that changes nothing was asked for.
    #[error("say what to change: --grant ROLE and/or --revoke ROLE")]
    NothingToChange,
    /// The same role both granted and revoked.
    #[error("`{0}` is both granted and revoked")]
    GrantedAndRevoked(Role),
}

/// A user name: 1 to 64 ASCII letters, digits, `.`, `_` or `-` (safe in URLs, audit
/// subjects and terminals).
pub fn check_username(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USERNAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Username(
            name.chars().take(MAX_USERNAME_CHARS + 1).collect(),
        ))
    }
}

/// A display name: short, on one line, and without control characters that a terminal
/// listing users (`graftbench user list`) would obey.
pub fn check_display_name(name: &str) -> Result<(), AccountError> {
    if name.chars().count() <= MAX_DISPLAY_NAME_CHARS && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(AccountError::DisplayName)
    }
}

/// A new password: long enough.
pub fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() >= MIN_PASSWORD_CHARS {
        Ok(())
    } else {
        Err(AccountError::ShortPassword)
    }
}

/// The roles held after granting `grant` and revoking `revoke` from `held`, in `held`'s
/// order with new grants after, each once.
pub fn roles_after(
    held: &[Role],
    grant: &[Role],
    revoke: &[Role],
) -> Result<Vec<Role>, AccountError> {
    if grant.is_empty() && revoke.is_empty() {
        return Err(AccountError::NothingToChange);
    }
    if let Some(both) = grant.iter().find(|r| revoke.contains(r)) {
        return Err(AccountError::GrantedAndRevoked(*both));
    }
    let mut roles: Vec<Role> = held
        .iter()
        .copied()
        .filter(|r| !revoke.contains(r))
        .collect();
    for role in grant {
        if !roles.contains(role) {
            roles.push(*role);
        }
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_ascii() {
        for ok in ["alice", "a.b-c_d", &"x".repeat(64)] {
            assert_eq!(check_username(ok), Ok(()), "{ok}");
        }
        for bad in ["", "al ice", "ålice", "a/b", &"x".repeat(65), "a\u{1b}[2J"] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_display_name("Alice Example").is_ok());
        assert!(check_display_name("Alice\nroot").is_err());
        assert!(check_display_name(&"é".repeat(101)).is_err());
        assert!(check_password("123456789").is_err());
        assert!(check_password("1234567890").is_ok());
    }

    #[test]
    fn grants_of_signing_roles_wait_under_four_eyes_and_held_roles_stay() {
        let held = [Role::Author, Role::Reviewer];
        let waits = |role| waits_for_second_admin(role, true);
        assert_eq!(
            plan_roles(
                &held,
                &[Role::Admin, Role::Reviewer, Role::Auditor, Role::Admin],
                waits
            ),
            (vec![Role::Reviewer, Role::Auditor], vec![Role::Admin])
        );
        let command_line = |role| waits_for_second_admin(role, false);
        assert_eq!(
            plan_roles(&[], &[Role::Admin], command_line),
            (vec![Role::Admin], vec![])
        );
        assert!(leaves_no_admin(true, 1));
        assert!(!leaves_no_admin(true, 2));
        assert!(!leaves_no_admin(false, 1));
    }

    #[test]
    fn role_changes_keep_order_and_refuse_contradictions() {
        let held = [Role::Author, Role::Reviewer];
        assert_eq!(
            roles_after(&held, &[Role::Admin, Role::Author], &[Role::Reviewer]),
            Ok(vec![Role::Author, Role::Admin])
        );
        assert_eq!(
            roles_after(&held, &[Role::Admin], &[Role::Admin]),
            Err(AccountError::GrantedAndRevoked(Role::Admin))
        );
        assert_eq!(
            roles_after(&held, &[], &[]),
            Err(AccountError::NothingToChange)
        );
    }
}
