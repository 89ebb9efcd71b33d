//! Passwords and sign-in.

use crate::store::{Database, DbError};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use graftbench_app::model::SessionUser;
use std::sync::OnceLock;
use tokio::sync::OwnedSemaphorePermit;

/// The session key holding the signed-in user's id.
pub const SESSION_USER_KEY: &str = "user_id";
/// Password failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Hashing failed (it does not, for valid parameters).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Database error while looking the user up.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The blocking task was cancelled.
    #[error("password check was interrupted")]
    Interrupted,
}

/// An argon2id PHC string for `password`, with the crate's defaults (19 MiB, t=2, p=1;
/// OWASP's recommended minimum).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (false for a malformed one).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so an unknown name takes as
/// long to refuse as a wrong password and the response time does not reveal which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("graftbench decoy password").unwrap_or_default())
}

/// Checks a user name and password; `None` for either being wrong.
///
/// `slot` is a place among the hashes allowed to run at once; it is held until the hash
/// is done, even if the caller stops waiting (a client that hangs up does not free a slot
/// while its hash still runs).
pub async fn sign_in(
    db: &Database,
    username: &str,
    password: &str,
    slot: OwnedSemaphorePermit,
) -> Result<Option<SessionUser>, AuthError> {
    let record = if username.chars().count() > graftbench_domain::accounts::MAX_USERNAME_CHARS {
        None
    } else {
        db.user_by_name(username).await?
    };
    let password = password.to_owned();
    // A disabled account's password is still checked, so its refusal takes as long as
    // any other and says nothing about the account.
    let (phc, user) = match record {
        Some(r) if r.disabled => (Some(r.password_hash), None),
        Some(r) => (Some(r.password_hash), Some(r.user)),
        None => (None, None),
    };
    // argon2 takes tens of milliseconds of CPU and 19 MiB: off the async workers, and
    // only as many at once as there are slots.
    let ok = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        verify_password(&password, phc.as_deref().unwrap_or_else(|| decoy_hash()))
    })
    .await
    .map_err(|_| AuthError::Interrupted)?;
    Ok(if ok { user } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterx", &a));
        assert!(!verify_password("anything", "not a phc string"));
    }
}
