//! Passwords and sign-in.

use crate::db::{Database, DbError};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use graftbench_app::model::SessionUser;
use std::sync::OnceLock;

/// The session key holding the signed-in user's id.
pub const SESSION_USER_KEY: &str = "user_id";
/// Shortest password `user add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;

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

fn verify(password: &str, phc: &str) -> bool {
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
pub async fn sign_in(
    db: &Database,
    username: &str,
    password: &str,
) -> Result<Option<SessionUser>, AuthError> {
    let record = db.user_by_name(username).await?;
    let password = password.to_owned();
    let (phc, user) = match record {
        Some(r) => (r.password_hash, Some(r.user)),
        None => (decoy_hash().to_owned(), None),
    };
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || verify(&password, &phc))
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
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterx", &a));
        assert!(!verify("anything", "not a phc string"));
    }
}
