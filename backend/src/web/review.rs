//! Review requests: sign-offs and the other actions on a patch, new revisions, line
//! comments; the audit trail, the policy and user management. Each comes as JSON under
//! `/api/v1` and, for the pages, as a plain form post that redirects back.
//!
//! Handlers only translate: every decision is the rules' ([`graftbench_domain::workflow`]), taken
//! inside the change's transaction by [`crate::review`].

use super::{status_only, url_encode, ApiError, AppState};
use crate::comments::CommentRequest;
use crate::db::{ConfirmGrant, Grantor, RolesChange};
use crate::review::{ActionRequest, ReviewError};
use crate::submission;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use graftbench_app::model::{Action, AuditFilter, Role, SessionUser};
use graftbench_domain::accounts;
use graftbench_domain::workflow::Denied;
use serde::Deserialize;
use std::collections::HashMap;
use tower_sessions::Session;

/// The status a review refusal answers with. (`ApiError`'s blanket `From` would make
/// every one a 500, so review calls map their errors through this explicitly.)
fn refused(e: ReviewError) -> ApiError {
    let status = match &e {
        ReviewError::Denied(Denied::State { .. }) => StatusCode::CONFLICT,
        ReviewError::Denied(_) => StatusCode::FORBIDDEN,
        ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
        ReviewError::StaleRevision { .. } | ReviewError::Conflict(_) => StatusCode::CONFLICT,
        ReviewError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReviewError::Db(_) => return ApiError::Internal(e.into()),
    };
    ApiError::Client(status, e.to_string())
}

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
) -> Result<crate::review::ActionOutcome, ApiError> {
    let action = parse_action(action)?;
    let request = ActionRequest {
        revision_sha256,
        comment,
    };
    let outcome = state
        .db
        .act(user, id, action, &request, &state.policy.policy)
        .await
        .map_err(refused)?;
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
        (false, false) => Err(ApiError::Client(
            StatusCode::UNPROCESSABLE_ENTITY,
            submission::SubmissionError::TwoDiffs.to_string(),
        )),
        (false, true) => Ok(submission::normalize_pasted(&pasted)),
        _ => Ok(uploaded),
    }
}

async fn upload(
    state: &AppState,
    user: &SessionUser,
    id: i64,
    request: Request,
) -> Result<crate::review::ActionOutcome, ApiError> {
    let diff = read_revision(request).await?;
    let valid = super::off_runtime(move || submission::validate_diff(diff))
        .await?
        .map_err(|e| {
            let status = match e {
                submission::SubmissionError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::Client(status, e.to_string())
        })?;
    let outcome = state
        .db
        .upload_revision(user, id, &valid, &state.policy.policy)
        .await
        .map_err(refused)?;
    tracing::info!(patch = id, revision = outcome.revision, sha256 = %valid.sha256, user = %user.username, "revision uploaded");
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
        }
    }
}

/// `POST /api/v1/patches/{id}/comments`: a new thread, or a reply with `thread` (201).
pub(super) async fn api_comment(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
    Json(body): Json<CommentBody>,
) -> Result<Response, ApiError> {
    let comment = state
        .db
        .add_comment(&user, id, &body.into(), &state.policy.policy)
        .await
        .map_err(refused)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": comment })),
    )
        .into_response())
}

/// `POST /api/v1/patches/{id}/comments/{thread}/resolve` and `.../reopen`.
pub(super) async fn api_resolve(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path((id, thread, verb)): Path<(i64, i64, String)>,
) -> Result<Response, ApiError> {
    state
        .db
        .resolve_thread(&user, id, thread, resolving(&verb)?, &state.policy.policy)
        .await
        .map_err(refused)?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// Where a form post goes back to; a refusal's message waits in the session for that
/// page (a [`FlashMessage`]), never in the URL.
async fn back_to(
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
        };
        state
            .db
            .add_comment(&user, id, &request, &state.policy.policy)
            .await
            .map_err(refused)?;
        Ok(())
    }
    .await;
    back_to(&session, &page, result, "#comments").await
}

/// `POST /patches/{id}/comments/{thread}/{resolve|reopen}` from the page.
pub(super) async fn form_resolve(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path((id, thread, verb)): Path<(i64, i64, String)>,
) -> Result<Response, ApiError> {
    let result = async {
        state
            .db
            .resolve_thread(&user, id, thread, resolving(&verb)?, &state.policy.policy)
            .await
            .map_err(refused)?;
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

/// `GET /api/v1/audit?actor=&action=&subject=`.
pub(super) async fn api_audit(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ApiError> {
    match state.workbench.audit(&user, filter).await {
        Ok(page) => Ok(Json(page).into_response()),
        Err(graftbench_app::model::AppError::Forbidden(why)) => Err(ApiError::forbidden(why)),
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!("{e}"))),
    }
}

/// `GET /api/v1/policy`.
pub(super) async fn api_policy(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({
        "source": state.policy.source(),
        "policy": state.policy.policy,
    }))
    .into_response()
}

fn require_admin(user: &SessionUser) -> Result<(), ApiError> {
    if user.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::forbidden("managing users needs the admin role"))
    }
}

/// `GET /api/v1/users` (admins).
pub(super) async fn api_users(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    Ok(Json(state.db.list_users().await?).into_response())
}

/// Roles by name, each once (sorted), or a 422 naming the first unknown one.
fn parse_roles<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Role>, ApiError> {
    let mut roles = names
        .into_iter()
        .map(|name| {
            Role::parse(name).ok_or_else(|| {
                ApiError::Client(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "unknown role `{}`",
                        name.chars().take(40).collect::<String>()
                    ),
                )
            })
        })
        .collect::<Result<Vec<Role>, ApiError>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// What a role change left: the roles in force and the grants waiting for a second admin.
#[derive(Debug, serde::Serialize)]
struct RolesAfter {
    roles: Vec<Role>,
    pending: Vec<Role>,
}

async fn set_roles(
    state: &AppState,
    admin: &SessionUser,
    username: &str,
    roles: &[Role],
) -> Result<RolesAfter, ApiError> {
    require_admin(admin)?;
    let by = Grantor::Admin {
        id: admin.id,
        name: &admin.username,
        four_eyes: state.policy.policy.role_grants_need_second_admin,
    };
    match state.db.set_roles(by, username, roles).await? {
        RolesChange::Changed { after, pending, .. } => Ok(RolesAfter {
            roles: after,
            pending,
        }),
        RolesChange::Unchanged { roles, pending } => Ok(RolesAfter { roles, pending }),
        RolesChange::NoSuchUser => Err(ApiError::not_found(format!("user `{username}`"))),
        RolesChange::LastAdmin => Err(ApiError::Client(
            StatusCode::CONFLICT,
            format!("`{username}` is the last admin: make someone else an admin first"),
        )),
    }
}

/// Confirms a grant waiting for a second admin.
async fn confirm_grant(
    state: &AppState,
    admin: &SessionUser,
    username: &str,
    role: &str,
) -> Result<(), ApiError> {
    require_admin(admin)?;
    let role = parse_roles([role])?.remove(0);
    match state.db.confirm_grant(admin, username, role).await? {
        ConfirmGrant::Confirmed => Ok(()),
        ConfirmGrant::NotPending => Err(ApiError::not_found(format!(
            "a waiting grant of {} to `{}`",
            role.as_str(),
            username.chars().take(64).collect::<String>()
        ))),
        ConfirmGrant::SameAdmin => Err(ApiError::forbidden(
            "four eyes: a grant is confirmed by a second admin, neither the one who made it \
             nor the one who receives it",
        )),
    }
}

/// `POST /api/v1/users/{name}/roles/{role}/confirm` (admins): 204.
pub(super) async fn api_confirm_grant(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path((name, role)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    confirm_grant(&state, &user, &name, &role).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /admin/users/{name}/roles/{role}/confirm`: the admin page's button.
pub(super) async fn form_confirm_grant(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path((name, role)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let result = confirm_grant(&state, &user, &name, &role).await;
    back_to(&session, "/admin", result, "").await
}

/// Disables or enables an account (admins); `verb` is `disable` or `enable`.
async fn set_disabled(
    state: &AppState,
    admin: &SessionUser,
    username: &str,
    verb: &str,
) -> Result<(), ApiError> {
    require_admin(admin)?;
    let disabled = match verb {
        "disable" => true,
        "enable" => false,
        _ => {
            return Err(ApiError::not_found(format!(
                "action `{}`",
                verb.chars().take(20).collect::<String>()
            )))
        }
    };
    let by = Grantor::Admin {
        id: admin.id,
        name: &admin.username,
        four_eyes: state.policy.policy.role_grants_need_second_admin,
    };
    match state.db.set_disabled(by, username, disabled).await? {
        crate::db::DisableChange::Changed | crate::db::DisableChange::Unchanged => {
            tracing::info!(admin = %admin.username, user = %username.escape_debug(), verb, "account changed");
            Ok(())
        }
        crate::db::DisableChange::NoSuchUser => Err(ApiError::not_found(format!(
            "user `{}`",
            username.chars().take(64).collect::<String>()
        ))),
        crate::db::DisableChange::LastAdmin => Err(ApiError::Client(
            StatusCode::CONFLICT,
            format!("`{username}` is the last enabled admin: make someone else an admin first"),
        )),
        crate::db::DisableChange::DemoAccount => Err(ApiError::forbidden(format!(
            "`{username}` is a demo account whose password is published: give it a new \
             password on the server (`graftbench user passwd {username}`), then enable it"
        ))),
    }
}

/// `POST /api/v1/users/{name}/disable` and `.../enable` (admins): 204.
pub(super) async fn api_set_disabled(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path((name, verb)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_disabled(&state, &user, &name, &verb).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /admin/users/{name}/disable` and `.../enable`: the admin page's buttons.
pub(super) async fn form_set_disabled(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path((name, verb)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let result = set_disabled(&state, &user, &name, &verb).await;
    back_to(&session, "/admin", result, "").await
}

/// `PUT /api/v1/users/{name}/roles` with `{"roles": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RolesBody {
    roles: Vec<String>,
}

pub(super) async fn api_set_roles(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(name): Path<String>,
    Json(body): Json<RolesBody>,
) -> Result<Response, ApiError> {
    let roles = parse_roles(body.roles.iter().map(String::as_str))?;
    let after = set_roles(&state, &user, &name, &roles).await?;
    Ok(Json(serde_json::json!({
        "username": name,
        "roles": after.roles,
        "pending": after.pending,
    }))
    .into_response())
}

/// `POST /admin/users/{name}/roles`: checkboxes named `role_<name>`.
pub(super) async fn form_set_roles(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path(name): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let result = async {
        let roles = parse_roles(fields.keys().filter_map(|k| k.strip_prefix("role_")))?;
        set_roles(&state, &user, &name, &roles).await.map(|_| ())
    }
    .await;
    back_to(&session, "/admin", result, "").await
}

/// A new user from the admin page or the API.
#[derive(Debug, Deserialize)]
pub(super) struct NewUser {
    username: String,
    #[serde(default)]
    display_name: String,
    password: String,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

async fn create_user(
    state: &AppState,
    admin: &SessionUser,
    new: &NewUser,
    roles: &[Role],
) -> Result<i64, ApiError> {
    require_admin(admin)?;
    let name = new.username.trim();
    let unprocessable = |e: accounts::AccountError| {
        ApiError::Client(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    };
    accounts::check_username(name).map_err(unprocessable)?;
    accounts::check_password(&new.password).map_err(unprocessable)?;
    if roles.is_empty() {
        return Err(unprocessable(accounts::AccountError::NoRoles));
    }
    let display = match new.display_name.trim() {
        "" => name,
        d => d,
    };
    accounts::check_display_name(display).map_err(unprocessable)?;
    let password = new.password.clone();
    // argon2: CPU and memory, off the async workers.
    let hash = super::off_runtime(move || crate::auth::hash_password(&password)).await??;
    let by = Grantor::Admin {
        id: admin.id,
        name: &admin.username,
        four_eyes: state.policy.policy.role_grants_need_second_admin,
    };
    state
        .db
        .create_user_as(by, name, display, &hash, roles)
        .await?
        .ok_or_else(|| {
            ApiError::Client(
                StatusCode::CONFLICT,
                format!("the user name `{name}` is taken"),
            )
        })
}

/// `POST /admin/users`: the admin page's new-user form (`role_<name>` checkboxes).
pub(super) async fn form_create_user(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Form(new): Form<NewUser>,
) -> Result<Response, ApiError> {
    let result = async {
        let roles = parse_roles(new.rest.keys().filter_map(|k| k.strip_prefix("role_")))?;
        create_user(&state, &user, &new, &roles).await.map(|_| ())
    }
    .await;
    back_to(&session, "/admin", result, "").await
}

/// `POST /api/v1/users` with `{"username", "display_name", "password", "roles"}`.
pub(super) async fn api_create_user(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let text = |key: &str| {
        body.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let roles: Vec<String> = body
        .get("roles")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let roles = parse_roles(roles.iter().map(String::as_str))?;
    let new = NewUser {
        username: text("username"),
        display_name: text("display_name"),
        password: text("password"),
        rest: HashMap::new(),
    };
    let id = create_user(&state, &user, &new, &roles).await?;
    let mut response =
        Json(serde_json::json!({ "id": id, "username": new.username.trim() })).into_response();
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}
