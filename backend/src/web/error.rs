//! One error type for HTTP handlers, converted explicitly from each service error.
//!
//! Client errors keep their status and a message that says what to fix; the status comes
//! from [`Refusal`]'s table, the same one the pages' `AppError` answers with. Internal
//! errors are logged once, here, with their detail and reach the client as a bare 500. A
//! new error type does not become a 500 by accident: it needs its own `From` below.

use crate::service::auth::AuthError;
use crate::service::review::ReviewError;
use crate::service::submit::SubmissionError;
use crate::store::DbError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use graftbench_domain::accounts::AccountError;
use graftbench_domain::Refusal;

/// An error answered to an HTTP client as `{"error": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    /// A 4xx with a message for the client.
    Client(StatusCode, String),
    /// A 500; the detail is logged, never sent.
    Internal(anyhow::Error),
}

impl ApiError {
    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError::Client(
            StatusCode::UNAUTHORIZED,
            "sign in first: this needs a session".into(),
        )
    }

    /// 403 with a reason.
    pub fn forbidden(why: impl Into<String>) -> ApiError {
        ApiError::Client(StatusCode::FORBIDDEN, why.into())
    }

    /// 404 naming what is missing.
    pub fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::Client(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// A 500 for a failure of the server itself (a task, the session store).
    pub fn internal(e: impl Into<anyhow::Error>) -> ApiError {
        ApiError::Internal(e.into())
    }

    /// `error` answered as `refusal` says: its message for a 4xx, logged for a 500.
    fn refused(
        refusal: Refusal,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> ApiError {
        match StatusCode::from_u16(refusal.http_status()) {
            Ok(status) if refusal != Refusal::Internal => {
                ApiError::Client(status, error.to_string())
            }
            _ => ApiError::Internal(error.into()),
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Client(status, _) => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> String {
        match self {
            ApiError::Client(_, message) => message.clone(),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        ApiError::refused(e.refusal(), e)
    }
}

impl From<SubmissionError> for ApiError {
    fn from(e: SubmissionError) -> Self {
        ApiError::refused(e.refusal(), e)
    }
}

impl From<crate::service::targets::TargetError> for ApiError {
    fn from(e: crate::service::targets::TargetError) -> Self {
        ApiError::refused(e.refusal(), e)
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        ApiError::refused(e.refusal(), e)
    }
}

/// A proof of sizes the trail does not have is the client's mistake; the rest of a
/// checkpoint's failures (its key, the tree) are the server's.
impl From<crate::service::checkpoints::CheckpointError> for ApiError {
    fn from(e: crate::service::checkpoints::CheckpointError) -> Self {
        use crate::service::checkpoints::CheckpointError;
        match e {
            CheckpointError::Range(_) => ApiError::refused(Refusal::Invalid, e),
            CheckpointError::NoKey(_)
            | CheckpointError::ForeignKey(_)
            | CheckpointError::RetiredKey { .. } => {
                ApiError::Client(StatusCode::CONFLICT, e.to_string())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A missing patch is a 404, a period too large a 422, a server without a checkpoint key
/// a 409; the rest is the server's failure.
impl From<crate::service::evidence::EvidenceError> for ApiError {
    fn from(e: crate::service::evidence::EvidenceError) -> Self {
        use crate::service::evidence::EvidenceError;
        match e {
            EvidenceError::NotFound(id) => ApiError::not_found(format!("patch {id}")),
            EvidenceError::TooLarge(_) => {
                ApiError::Client(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            EvidenceError::Checkpoint(e) => e.into(),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A filter that names nothing is the client's mistake (422); the store failing is not.
impl From<crate::service::pages::ListError> for ApiError {
    fn from(e: crate::service::pages::ListError) -> Self {
        use crate::service::pages::ListError;
        match e {
            ListError::Invalid(_) => ApiError::refused(Refusal::Invalid, e),
            ListError::Db(e) => e.into(),
        }
    }
}

/// The store failing is the server's failure.
impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Internal(e.into())
    }
}

/// Hashing or the account lookup failing is the server's failure.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Internal(e.into())
    }
}

/// The session store failing is the server's failure.
impl From<tower_sessions::session::Error> for ApiError {
    fn from(e: tower_sessions::session::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let body = serde_json::json!({ "error": self.message() });
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graftbench_domain::workflow::Denied;
    use graftbench_domain::{Action, State};

    fn answered(e: impl Into<ApiError>) -> (u16, String) {
        let e = e.into();
        (e.status().as_u16(), e.message())
    }

    /// Every service error variant answers with its documented status and the message
    /// the user sees; only the store's failures are 500s, with nothing of their detail.
    #[test]
    fn each_service_error_has_its_status_and_message() {
        let review: Vec<(ReviewError, u16, &str)> = vec![
            (
                ReviewError::Denied(Denied::Role {
                    action: Action::Approve,
                    needed: "reviewer".into(),
                }),
                403,
                "Approve needs the role reviewer",
            ),
            (
                ReviewError::Denied(Denied::OwnPatch("approve it")),
                403,
                "the author of a patch cannot approve it",
            ),
            (
                ReviewError::Denied(Denied::NotAuthor("withdraw it")),
                403,
                "only the patch's author can withdraw it",
            ),
            (
                ReviewError::Denied(Denied::GrantedByAuthor { role: "reviewer" }),
                403,
                "four eyes: your reviewer role",
            ),
            (
                ReviewError::Denied(Denied::State {
                    state: State::Withdrawn,
                    verb: "approved",
                }),
                409,
                "a patch that is Withdrawn cannot be approved",
            ),
            (
                ReviewError::NotFound("patch 9".into()),
                404,
                "patch 9 not found",
            ),
            (
                ReviewError::StaleRevision {
                    named: "r1 (0123456789ab)".into(),
                    current: 2,
                    current_sha256: "ff".into(),
                },
                409,
                "revision r1 (0123456789ab) is no longer current: revision 2",
            ),
            (
                ReviewError::Invalid("a rejection needs a comment saying why".into()),
                422,
                "a rejection needs a comment saying why",
            ),
            (
                ReviewError::Conflict("thread 3 is already resolved".into()),
                409,
                "thread 3 is already resolved",
            ),
            (
                ReviewError::Db(DbError::Corrupt("secret detail".into())),
                500,
                "internal error",
            ),
        ];
        for (error, status, message) in review {
            let shown = error.to_string();
            let (got_status, got_message) = answered(error);
            assert_eq!(got_status, status, "{shown}");
            assert!(
                got_message.starts_with(message),
                "{got_message} / {message}"
            );
        }
        assert_eq!(
            answered(SubmissionError::TooLarge {
                size: 6 << 20,
                limit: 5 << 20
            }),
            (
                413,
                "the diff is 6291456 bytes; the limit is 5242880 bytes (5 MiB)".into()
            )
        );
        for (error, message) in [
            (
                SubmissionError::MissingDiff,
                "no diff: paste the fix or upload it as a file",
            ),
            (
                SubmissionError::TwoDiffs,
                "both a pasted diff and an uploaded file: submit one of them",
            ),
            (SubmissionError::MissingTitle, "a title is required"),
            (
                SubmissionError::BadCve("CVE-1".into()),
                "`CVE-1` is not a CVE id (expected CVE-YYYY-NNNN)",
            ),
        ] {
            assert_eq!(answered(error), (422, message.into()));
        }
        assert_eq!(
            answered(AccountError::ShortPassword),
            (422, "the password must have at least 10 characters".into())
        );
        assert_eq!(
            answered(DbError::Corrupt("secret detail".into())),
            (500, "internal error".into())
        );
    }
}
