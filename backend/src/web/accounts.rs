//! Account management from the admin page and the API: users, roles, grants waiting for
//! a second admin, disabling. Every decision is the store's and the domain's; handlers
//! translate.

use super::review::back_to;
use super::{status_only, ApiError, AppState};
use crate::service::accounts::{self, ConfirmGrant, DisableChange, Grantor, RolesChange};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use graftbench_app::model::{Role, SessionUser};
use graftbench_domain::accounts as rules;
use serde::Deserialize;
use std::collections::HashMap;
use tower_sessions::Session;

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
    match accounts::set_roles(&state.db, by, username, roles).await? {
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
    match accounts::confirm_grant(&state.db, admin, username, role).await? {
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
    match accounts::set_disabled(&state.db, by, username, disabled).await? {
        DisableChange::Changed | DisableChange::Unchanged => {
            tracing::info!(admin = %admin.username, user = %username.escape_debug(), verb, "account changed");
            Ok(())
        }
        DisableChange::NoSuchUser => Err(ApiError::not_found(format!(
            "user `{}`",
            username.chars().take(64).collect::<String>()
        ))),
        DisableChange::LastAdmin => Err(ApiError::Client(
            StatusCode::CONFLICT,
            format!("`{username}` is the last enabled admin: make someone else an admin first"),
        )),
        DisableChange::DemoAccount => Err(ApiError::forbidden(format!(
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
    let unprocessable =
        |e: rules::AccountError| ApiError::Client(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    rules::check_username(name).map_err(unprocessable)?;
    rules::check_password(&new.password).map_err(unprocessable)?;
    if roles.is_empty() {
        return Err(unprocessable(rules::AccountError::NoRoles));
    }
    let display = match new.display_name.trim() {
        "" => name,
        d => d,
    };
    rules::check_display_name(display).map_err(unprocessable)?;
    let password = new.password.clone();
    // argon2: CPU and memory, off the async workers.
    let hash = super::off_runtime(move || crate::service::auth::hash_password(&password)).await??;
    let by = Grantor::Admin {
        id: admin.id,
        name: &admin.username,
        four_eyes: state.policy.policy.role_grants_need_second_admin,
    };
    accounts::create_user_as(&state.db, by, name, display, &hash, roles)
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
