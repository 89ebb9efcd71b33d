//! Review requests: sign-offs and the other actions on a patch, new revisions, line
//! comments. Each comes as JSON under `/api/v1` and, for the pages, as a plain form post
//! that redirects back.
//!
//! Handlers only translate: every decision is the rules' ([`graftbench_domain::workflow`]),
//! taken inside the change's transaction by [`crate::service::review`].

use super::{status_only, url_encode, ApiError, AppState};
use crate::service::comments::{self, Added, CommentRequest};
use crate::service::review::{self, ActionRequest};
use crate::service::submit;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use graftbench_app::model::{Action, SessionUser};
use serde::Deserialize;
use tower_sessions::Session;

fn parse_action(name: &str) -> Result<Action, ApiError> {
    Action::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        ApiError::not_found(format!(
            "action `{}` (actions are {})",
            name.chars().take(40).collect::<String>(),
            all.join(", ")
        ))
    })
}

/// The body of `POST /api/v1/patches/{id}/actions/{action}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    #[serde(default)]
    revision_sha256: Option<String>,
    #[serde(default)]
    comment: String,
}

/// Reads an optional JSON body: an empty one is `{}`.
async fn json_or_empty<T: Default + serde::de::DeserializeOwned>(
    request: Request,
) -> Result<T, ApiError> {
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|len| len != "0");
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        let bytes = axum::body::to_bytes(request.into_body(), 16)
            .await
            .map_err(|e| ApiError::Client(StatusCode::BAD_REQUEST, e.to_string()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        return Err(ApiError::Client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json".into(),
        ));
    }
    if !has_body {
        return Ok(T::default());
    }
    let Json(body) = Json::<T>::from_request(request, &())
        .await
        .map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
    Ok(body)
}

/// `POST /api/v1/patches/{id}/actions/{action}`: approve, reject, withdraw_sign_off,
/// sign_exception, submit, decline, withdraw, reopen.
pub(super) async fn api_action(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path((id, action)): Path<(i64, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let body: ActionBody = json_or_empty(request).await?;
    let outcome = take_action(
        &state,
        &user,
        id,
        &action,
        body.revision_sha256,
        body.comment,
    )
    .await?;
    Ok(Json(outcome).into_response())
}

/// Takes the action named `action` for the API and the page's form alike.
async fn take_action(
    state: &AppState,
    user: &SessionUser,
    id: i64,
    action: &str,
    revision_sha256: Option<String>,
    comment: String,
) -> Result<crate::service::review::ActionOutcome, ApiError> {
    let action = parse_action(action)?;
    let request = ActionRequest {
        revision_sha256,
        comment,
    };
    let outcome = review::act(&state.db, user, id, action, &request, &state.policy.policy).await?;
    tracing::info!(patch = id, action = action.as_str(), user = %user.username, state = outcome.state.as_str(), "review action");
    Ok(outcome)
}

/// `resolve` or `reopen` in a thread's path, as whether the thread ends up resolved.
fn resolving(verb: &str) -> Result<bool, ApiError> {
    match verb {
        "resolve" => Ok(true),
        "reopen" => Ok(false),
        _ => Err(ApiError::not_found(format!(
            "`{}`: use resolve or reopen",
            verb.chars().take(40).collect::<String>()
        ))),
    }
}

/// A new revision as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevisionBody {
    diff: String,
}

/// Reads a diff from JSON (`{"diff"}`) or multipart (`diff` pasted, or `diff_file`).
async fn read_revision(request: Request) -> Result<Vec<u8>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let Json(body) = Json::<RevisionBody>::from_request(request, &())
            .await
            .map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
        return Ok(body.diff.into_bytes());
    }
    if !content_type.starts_with("multipart/form-data") {
        return Err(ApiError::Client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json or multipart/form-data".into(),
        ));
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        ApiError::Client(
            e.status(),
            format!("could not read the form: {}", e.body_text()),
        )
    };
    let (mut pasted, mut uploaded) = (String::new(), Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        match field.name().unwrap_or_default() {
            "diff" => pasted = field.text().await.map_err(unreadable)?,
            "diff_file" => uploaded = field.bytes().await.map_err(unreadable)?.to_vec(),
            other => {
                return Err(ApiError::Client(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "unknown form field `{}`",
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
        }
    }
    match (pasted.trim().is_empty(), uploaded.is_empty()) {
        (false, false) => Err(submit::SubmissionError::TwoDiffs.into()),
        (false, true) => Ok(submit::normalize_pasted(&pasted)),
        _ => Ok(uploaded),
    }
}

async fn upload(
    state: &AppState,
    user: &SessionUser,
    id: i64,
    request: Request,
) -> Result<crate::service::review::ActionOutcome, ApiError> {
    let diff = read_revision(request).await?;
    let valid = super::off_runtime(move || submit::validate_diff(diff)).await??;
    let outcome =
        review::upload_revision(&state.db, user, id, &valid, &state.policy.policy).await?;
    tracing::info!(patch = id, revision = outcome.revision, sha256 = %valid.sha256, user = %user.username, "revision uploaded");
    state.renders.prerender(
        id,
        outcome.revision,
        &valid.sha256.to_string(),
        crate::service::renders::line_count(&valid.diff),
    );
    Ok(outcome)
}

/// `POST /api/v1/patches/{id}/revisions`: the next revision (201).
pub(super) async fn api_upload_revision(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let outcome = upload(&state, &user, id, request).await?;
    Ok((StatusCode::CREATED, Json(outcome)).into_response())
}

/// A comment as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommentBody {
    #[serde(default)]
    thread: Option<i64>,
    #[serde(default)]
    revision: i64,
    #[serde(default)]
    path: String,
    #[serde(default)]
    side: String,
    #[serde(default)]
    line: i64,
    body: String,
    #[serde(default)]
    pitfall: Option<String>,
    #[serde(default)]
    draft: bool,
}

impl From<CommentBody> for CommentRequest {
    fn from(c: CommentBody) -> Self {
        CommentRequest {
            thread: c.thread,
            revision: c.revision,
            path: c.path,
            side: c.side,
            line: c.line,
            body: c.body,
            pitfall: c.pitfall.filter(|p| !p.trim().is_empty()),
            draft: c.draft,
        }
    }
}

/// `POST /api/v1/patches/{id}/comments`: a new thread, or a reply with `thread` (201,
/// `{"id"}`); with `"draft": true` kept as the user's draft (201, `{"draft"}`).
pub(super) async fn api_comment(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
    Json(body): Json<CommentBody>,
) -> Result<Response, ApiError> {
    let added =
        comments::add_comment(&state.db, &user, id, &body.into(), &state.policy.policy).await?;
    let body = match added {
        Added::Comment(id) => serde_json::json!({ "id": id }),
        Added::Draft(id) => serde_json::json!({ "draft": id }),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /api/v1/patches/{id}/drafts/publish`: the user's drafts published on their own
/// (200, `{"published": [ids]}`); 409 when there are none.
pub(super) async fn api_publish_drafts(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let published = comments::publish_drafts(&state.db, &user, id, &state.policy.policy).await?;
    Ok(Json(serde_json::json!({ "published": published })).into_response())
}

/// `DELETE /api/v1/patches/{id}/drafts/{draft}`: one of the user's drafts discarded (204).
pub(super) async fn api_discard_draft(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path((id, draft)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    comments::discard_draft(&state.db, &user, id, draft).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /patches/{id}/drafts/publish` from the page.
pub(super) async fn form_publish_drafts(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let result = comments::publish_drafts(&state.db, &user, id, &state.policy.policy)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    back_to(&session, &format!("/patches/{id}"), result, "#review").await
}

/// `POST /patches/{id}/drafts/{draft}/discard` from the page.
pub(super) async fn form_discard_draft(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path((id, draft)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    let result = comments::discard_draft(&state.db, &user, id, draft)
        .await
        .map_err(ApiError::from);
    back_to(&session, &format!("/patches/{id}"), result, "#drafts").await
}

/// `POST /api/v1/patches/{id}/comments/{thread}/resolve` and `.../reopen`.
pub(super) async fn api_resolve(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path((id, thread, verb)): Path<(i64, i64, String)>,
) -> Result<Response, ApiError> {
    comments::resolve_thread(
        &state.db,
        &user,
        id,
        thread,
        resolving(&verb)?,
        &state.policy.policy,
    )
    .await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// Where a form post goes back to; a refusal's message waits in the session for that
/// page (a [`FlashMessage`]), never in the URL.
pub(super) async fn back_to(
    session: &Session,
    path: &str,
    result: Result<(), ApiError>,
    anchor: &str,
) -> Result<Response, ApiError> {
    match result {
        Ok(()) => Ok(Redirect::to(&format!("{path}{anchor}")).into_response()),
        Err(ApiError::Client(status, message)) => {
            tracing::info!(status = status.as_u16(), reason = %message.escape_debug(), "form refused");
            session.insert(super::FLASH_KEY, message).await?;
            Ok(Redirect::to(path).into_response())
        }
        Err(e) => Err(e),
    }
}

/// The patch page's action form.
#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    action: String,
    #[serde(default)]
    revision_sha256: String,
    #[serde(default)]
    comment: String,
}

/// `POST /patches/{id}/actions`: the page's buttons; back to the page.
pub(super) async fn form_action(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    let result = take_action(
        &state,
        &user,
        id,
        &form.action,
        Some(form.revision_sha256),
        form.comment,
    )
    .await
    .map(|_| ());
    back_to(&session, &format!("/patches/{id}"), result, "#review").await
}

/// The page's comment form.
#[derive(Debug, Deserialize)]
pub(super) struct CommentForm {
    #[serde(default)]
    thread: String,
    #[serde(default)]
    revision: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    side: String,
    #[serde(default)]
    line: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    pitfall: String,
    /// The "Save as draft" button's value.
    #[serde(default)]
    draft: String,
}

/// `POST /patches/{id}/comments`: back to the revision commented on.
pub(super) async fn form_comment(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<CommentForm>,
) -> Result<Response, ApiError> {
    let number = |field: &str, text: &str| -> Result<i64, ApiError> {
        text.trim().parse().map_err(|_| {
            ApiError::Client(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{field} must be a number"),
            )
        })
    };
    let page = match form.revision.trim() {
        "" => format!("/patches/{id}"),
        rev => format!("/patches/{id}?rev={}", url_encode(rev)),
    };
    let result = async {
        let request = CommentRequest {
            thread: match form.thread.trim() {
                "" => None,
                t => Some(number("thread", t)?),
            },
            revision: if form.thread.trim().is_empty() {
                number("revision", &form.revision)?
            } else {
                0
            },
            path: form.path,
            side: form.side,
            line: if form.thread.trim().is_empty() {
                number("line", &form.line)?
            } else {
                0
            },
            body: form.body,
            pitfall: Some(form.pitfall).filter(|p| !p.trim().is_empty()),
            draft: !form.draft.trim().is_empty(),
        };
        let added =
            comments::add_comment(&state.db, &user, id, &request, &state.policy.policy).await?;
        // Back to the thread or the draft, under its line: a new thread is named by its
        // first comment.
        Ok(match (added, request.thread) {
            (Added::Draft(draft), _) => format!("#draft-{draft}"),
            (Added::Comment(_), Some(thread)) | (Added::Comment(thread), None) => {
                format!("#thread-{thread}")
            }
        })
    }
    .await;
    let anchor = match &result {
        Ok(anchor) => anchor.clone(),
        Err(_) => String::new(),
    };
    back_to(&session, &page, result.map(|_| ()), &anchor).await
}

/// `POST /patches/{id}/comments/{thread}/{resolve|reopen}` from the page.
pub(super) async fn form_resolve(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path((id, thread, verb)): Path<(i64, i64, String)>,
) -> Result<Response, ApiError> {
    let result = async {
        comments::resolve_thread(
            &state.db,
            &user,
            id,
            thread,
            resolving(&verb)?,
            &state.policy.policy,
        )
        .await?;
        Ok(())
    }
    .await;
    back_to(&session, &format!("/patches/{id}"), result, "#comments").await
}

/// `POST /patches/{id}/revisions`: the page's upload form.
pub(super) async fn form_upload_revision(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path(id): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let result = upload(&state, &user, id, request).await.map(|_| ());
    back_to(&session, &format!("/patches/{id}"), result, "").await
}
