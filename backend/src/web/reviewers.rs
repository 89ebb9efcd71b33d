//! Asking for reviewers and marking files reviewed: JSON under `/api/v1` and, for the
//! patch page, plain form posts that redirect back. The decisions are
//! [`crate::service::reviewers`]'.

use super::review::back_to;
use super::{status_only, ApiError, AppState};
use crate::service::reviewers;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form, Json};
use graftbench_app::model::SessionUser;
use serde::Deserialize;
use tower_sessions::Session;

/// The body of `POST /api/v1/patches/{id}/reviewers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestBody {
    reviewer: String,
}

/// `POST /api/v1/patches/{id}/reviewers`: asks a reviewer; 204.
pub(super) async fn api_request(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
    Json(body): Json<RequestBody>,
) -> Result<Response, ApiError> {
    reviewers::request_review(
        &state.db,
        &user,
        id,
        &body.reviewer,
        true,
        &state.policy.policy,
    )
    .await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `DELETE /api/v1/patches/{id}/reviewers/{name}`: stops asking; 204.
pub(super) async fn api_cancel(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path((id, name)): Path<(i64, String)>,
) -> Result<Response, ApiError> {
    reviewers::request_review(&state.db, &user, id, &name, false, &state.policy.policy).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// The page's reviewer form: `verb` is `ask` or `cancel`.
#[derive(Debug, Deserialize)]
pub(super) struct RequestForm {
    #[serde(default)]
    reviewer: String,
    #[serde(default)]
    verb: String,
}

/// `POST /patches/{id}/reviewers`: back to the page's reviewer list.
pub(super) async fn form_request(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<RequestForm>,
) -> Result<Response, ApiError> {
    let result = async {
        let asked = match form.verb.as_str() {
            "ask" => true,
            "cancel" => false,
            _ => {
                return Err(ApiError::Client(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "verb must be `ask` or `cancel`".into(),
                ))
            }
        };
        reviewers::request_review(
            &state.db,
            &user,
            id,
            &form.reviewer,
            asked,
            &state.policy.policy,
        )
        .await?;
        Ok(())
    }
    .await;
    back_to(&session, &format!("/patches/{id}"), result, "#reviewers").await
}

/// The body of `POST /api/v1/patches/{id}/reviewed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MarkBody {
    path: String,
    reviewed: bool,
}

/// `POST /api/v1/patches/{id}/reviewed`: marks a file of the current revision reviewed
/// (or not) for the signed-in user; 204.
pub(super) async fn api_mark(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
    Json(body): Json<MarkBody>,
) -> Result<Response, ApiError> {
    reviewers::mark_file(&state.db, &user, id, &body.path, body.reviewed).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// The page's "reviewed" checkbox form.
#[derive(Debug, Deserialize)]
pub(super) struct MarkForm {
    #[serde(default)]
    path: String,
    #[serde(default)]
    reviewed: String,
    /// The file's anchor on the page (`file-3`), to come back to.
    #[serde(default)]
    anchor: String,
}

/// `POST /patches/{id}/reviewed`: back to the file on the page.
pub(super) async fn form_mark(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<MarkForm>,
) -> Result<Response, ApiError> {
    let result = reviewers::mark_file(&state.db, &user, id, &form.path, form.reviewed == "1")
        .await
        .map_err(ApiError::from);
    // Only a file anchor goes back into the redirect: the field is the client's.
    let anchor = match form.anchor.strip_prefix("file-") {
        Some(n) if !n.is_empty() && n.len() < 8 && n.bytes().all(|b| b.is_ascii_digit()) => {
            format!("#{}", form.anchor)
        }
        _ => String::new(),
    };
    back_to(&session, &format!("/patches/{id}"), result, &anchor).await
}
