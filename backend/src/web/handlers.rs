//! Request handlers that are not Leptos pages: sign-in, the submission form, the JSON API.

use super::sign_in::{self, Refusal};
use super::{safe_next, status_only, url_encode, ApiError, AppState};
use crate::service::auth::{self, SESSION_USER_KEY};
use crate::service::pages;
use crate::service::submit::{self, SubmissionInput};
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use graftbench_app::model::{AuditFilter, PatchFilter, RejectedSubmission, SessionUser};
use graftbench_app::shell;
use graftbench_domain::audit::{AuditAction, AuditSubject};
use leptos::prelude::provide_context;
use serde::Deserialize;
use std::net::SocketAddr;
use tower_sessions::Session;

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: checks the password, then rotates the session id so a session fixed
/// before sign-in is worthless after it. Attempts are limited per account and per client
/// address ([`super::sign_in`]).
pub(super) async fn login(
    State(state): State<AppState>,
    session: Session,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let next = safe_next(&form.next).to_owned();
    let name = form.username.trim();
    let peer = peer.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0 .0);
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let address =
        sign_in::client_address(peer, &forwarded, &state.sign_in.limits().trusted_proxies);
    // What the audit trail keeps of a name someone typed: bounded, and never as an actor.
    let attempted: String = name.chars().take(64).collect();
    let permit = match state.sign_in.admit(name, address) {
        Ok(permit) => permit,
        Err(Refusal::Busy) => {
            tracing::warn!(address = %address, "sign-in refused: every password-hashing slot is busy");
            let mut response = login_page(
                &state,
                &format!("/login?error=busy&next={}", url_encode(&next)),
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(response);
        }
        Err(Refusal::Throttled {
            retry_after,
            new_account_lockout,
            by_address,
        }) => {
            // Rounded up: a client that waits as long as told must then be let in.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            // One line per refused attempt would let a flood flood the log: the lockout
            // is logged (and audited) once, the rest only at debug level.
            tracing::debug!(
                user = %attempted.escape_debug(),
                address = %address,
                retry_after = seconds,
                by_address,
                "sign-in throttled"
            );
            if new_account_lockout {
                tracing::warn!(
                    user = %attempted.escape_debug(),
                    address = %address,
                    retry_after = seconds,
                    "sign-in locked for an account"
                );
                state
                    .db
                    .record(
                        ANONYMOUS,
                        AuditAction::SessionSignInLocked,
                        &AuditSubject::User(attempted.to_owned()),
                        &serde_json::json!({
                            "attempted_user": attempted,
                            "address": address.to_string(),
                            "retry_after_seconds": seconds,
                        }),
                    )
                    .await?;
            }
            let mut response = login_page(
                &state,
                &format!("/login?error=throttled&next={}", url_encode(&next)),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return Ok(response);
        }
    };
    match auth::sign_in(&state.db, name, &form.password, permit).await? {
        Some(user) => {
            session.cycle_id().await?;
            // The session's data outlives the new id: nothing left for someone else.
            session.remove::<String>(super::FLASH_KEY).await?;
            session.insert(SESSION_USER_KEY, user.id).await?;
            state
                .db
                .record(
                    &user.username,
                    AuditAction::SessionSignedIn,
                    &AuditSubject::User(user.username.clone()),
                    &serde_json::json!({ "address": address.to_string() }),
                )
                .await?;
            tracing::info!(user = %user.username, address = %address, "signed in");
            Ok(Redirect::to(&next).into_response())
        }
        None => {
            // The name is kept to trace guessing, as what was attempted: whoever typed it
            // is not known, so the actor is anonymous. The password never is kept.
            tracing::warn!(user = %attempted.escape_debug(), address = %address, "failed sign-in");
            state
                .db
                .record(
                    ANONYMOUS,
                    AuditAction::SessionSignInFailed,
                    &AuditSubject::User(attempted.to_owned()),
                    &serde_json::json!({
                        "attempted_user": attempted,
                        "address": address.to_string(),
                    }),
                )
                .await?;
            Ok(Redirect::to(&format!("/login?error=1&next={}", url_encode(&next))).into_response())
        }
    }
}

/// The actor of audit events whose author is not known (failed and throttled sign-ins).
pub const ANONYMOUS: &str = "anonymous";

/// The sign-in page as `uri` asks for it, answered with `status`.
async fn login_page(state: &AppState, uri: &str, status: StatusCode) -> Response {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = uri
        .parse()
        .unwrap_or_else(|_| axum::http::Uri::from_static("/login"));
    render_page(state, request, status, || ()).await
}

/// Renders the page `request` asks for outside the router, for a handler that answers
/// with a status of its own; `context` provides what the page needs beyond the workbench.
async fn render_page(
    state: &AppState,
    request: Request,
    status: StatusCode,
    context: impl Fn() + Clone + Send + Sync + 'static,
) -> Response {
    let workbench = state.workbench.clone();
    let options = state.leptos_options.clone();
    let render = leptos_axum::render_app_async_with_context(
        move || {
            provide_context(workbench.clone());
            context();
            super::set_page_csp();
        },
        move || shell(options.clone()),
    );
    let mut response = render(request).await;
    *response.status_mut() = status;
    response
}

/// `POST /logout`: deletes the session.
pub(super) async fn logout(session: Session) -> Result<Response, ApiError> {
    session.flush().await?;
    Ok(Redirect::to("/login?signed_out=1").into_response())
}

/// The fields of a submission as a form or multipart request sends them.
#[derive(Debug, Default)]
struct FormFields {
    title: String,
    cves: String,
    cvss_vector: String,
    category: String,
    tier: String,
    reported_at: String,
    draft: bool,
    pasted: String,
    uploaded: Vec<u8>,
    targets: Vec<String>,
}

impl FormFields {
    fn rejected(self, error: String) -> RejectedSubmission {
        RejectedSubmission {
            error,
            title: self.title,
            cves: self.cves,
            cvss_vector: self.cvss_vector,
            category: self.category,
            tier: self.tier,
            reported_at: self.reported_at,
            diff: self.pasted,
        }
    }

    /// The submission, choosing between the pasted and the uploaded diff.
    fn input(&self) -> Result<SubmissionInput, submit::SubmissionError> {
        let pasted = !self.pasted.trim().is_empty();
        let uploaded = !self.uploaded.is_empty();
        let diff = match (pasted, uploaded) {
            (true, true) => return Err(submit::SubmissionError::TwoDiffs),
            (true, false) => submit::normalize_pasted(&self.pasted),
            (false, true) => self.uploaded.clone(),
            (false, false) => Vec::new(),
        };
        Ok(SubmissionInput {
            title: self.title.clone(),
            cves: self.cves.clone(),
            cvss_vector: self.cvss_vector.clone(),
            diff,
            category: self.category.clone(),
            tier: self.tier.clone(),
            reported_at: self.reported_at.clone(),
            draft: self.draft,
            targets: self.targets.clone(),
        })
    }
}

async fn read_multipart(mut multipart: Multipart) -> Result<FormFields, ApiError> {
    let mut fields = FormFields::default();
    let too_large = |e: axum::extract::multipart::MultipartError| {
        ApiError::Client(
            e.status(),
            format!("could not read the form: {}", e.body_text()),
        )
    };
    while let Some(field) = multipart.next_field().await.map_err(too_large)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "diff_file" => fields.uploaded = field.bytes().await.map_err(too_large)?.to_vec(),
            "title" | "cves" | "cvss_vector" | "category" | "tier" | "reported_at" | "draft"
            | "diff" | "targets" => {
                let text = field.text().await.map_err(too_large)?;
                match name.as_str() {
                    "title" => fields.title = text,
                    "cves" => fields.cves = text,
                    "cvss_vector" => fields.cvss_vector = text,
                    "category" => fields.category = text,
                    "tier" => fields.tier = text,
                    "reported_at" => fields.reported_at = text,
                    "draft" => fields.draft = !text.trim().is_empty() && text.trim() != "0",
                    "targets" => fields.targets.extend(
                        text.split(|c: char| c == ',' || c.is_whitespace())
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned),
                    ),
                    _ => fields.pasted = text,
                }
            }
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
    Ok(fields)
}

fn require_author(user: &SessionUser) -> Result<(), ApiError> {
    if user.submits_fixes() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "submitting a fix needs the author role",
        ))
    }
}

/// `POST /patches`: the submission form. Success redirects to the new patch; a refusal
/// shows the form again with the reason and what was typed, with a 4xx status.
pub(super) async fn submit_form(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let fields = match multipart {
        Ok(multipart) => match read_multipart(multipart).await {
            Ok(fields) => fields,
            Err(ApiError::Client(status, message)) => {
                return Ok(render_rejected(
                    &state,
                    user,
                    FormFields::default().rejected(message),
                    status,
                )
                .await)
            }
            Err(e) => return Err(e),
        },
        Err(rejection) => {
            let rejected = FormFields::default().rejected(rejection.body_text());
            return Ok(render_rejected(&state, user, rejected, rejection.status()).await);
        }
    };
    if let Err(ApiError::Client(status, message)) = require_author(&user) {
        return Ok(render_rejected(&state, user, fields.rejected(message), status).await);
    }
    let input = fields.input();
    let mut valid = match super::off_runtime(move || input.and_then(submit::validate)).await? {
        Ok(valid) => valid,
        Err(e) => {
            let refused = ApiError::from(e);
            let (status, message) = (refused.status(), refused.message());
            return Ok(render_rejected(&state, user, fields.rejected(message), status).await);
        }
    };
    match crate::service::targets::resolve(&state.db, &valid.target_names).await {
        Ok(ids) => valid.targets = ids,
        Err(e) => {
            let refused = ApiError::from(e);
            let (status, message) = (refused.status(), refused.message());
            return Ok(render_rejected(&state, user, fields.rejected(message), status).await);
        }
    }
    let created = submit::create_patch(&state.db, &user, &valid).await?;
    tracing::info!(patch = created.id, sha256 = %created.sha256, user = %user.username, "patch submitted");
    state.renders.prerender(
        created.id,
        created.revision,
        &created.sha256.to_string(),
        crate::service::renders::line_count(&valid.diff),
    );
    Ok(Redirect::to(&format!("/patches/{}", created.id)).into_response())
}

/// Renders the submission page again for a refused form, with `status`.
async fn render_rejected(
    state: &AppState,
    user: SessionUser,
    rejected: RejectedSubmission,
    status: StatusCode,
) -> Response {
    tracing::info!(user = %user.username, status = status.as_u16(), reason = %rejected.error.escape_debug(), "submission refused");
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = axum::http::Uri::from_static("/patches/new");
    request.extensions_mut().insert(user);
    render_page(state, request, status, move || {
        provide_context(rejected.clone())
    })
    .await
}

/// CVE ids in JSON: a list, or one string of ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CveList {
    Many(Vec<String>),
    One(String),
}

impl Default for CveList {
    fn default() -> Self {
        CveList::Many(Vec::new())
    }
}

/// `POST /api/v1/patches` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSubmission {
    #[serde(default)]
    title: String,
    #[serde(default)]
    cves: CveList,
    #[serde(default)]
    cvss_vector: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    reported_at: String,
    #[serde(default)]
    draft: bool,
    diff: String,
    /// Target names (default: every active target).
    #[serde(default)]
    targets: Vec<String>,
}

/// `POST /api/v1/patches`: JSON (`{"title", "cves", "cvss_vector", "diff"}`) or the
/// form's multipart fields. Answers 201 with the patch id and revision hash.
pub(super) async fn api_submit(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    request: Request,
) -> Result<Response, ApiError> {
    require_author(&user)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let input = if content_type.starts_with("application/json") {
        let Json(body) = Json::<ApiSubmission>::from_request(request, &())
            .await
            .map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
        SubmissionInput {
            title: body.title,
            cves: match body.cves {
                CveList::Many(ids) => ids.join(" "),
                CveList::One(ids) => ids,
            },
            cvss_vector: body.cvss_vector,
            diff: body.diff.into_bytes(),
            category: body.category,
            tier: body.tier,
            reported_at: body.reported_at,
            draft: body.draft,
            targets: body.targets,
        }
    } else if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
        read_multipart(multipart)
            .await?
            .input()
            .map_err(ApiError::from)?
    } else {
        return Err(ApiError::Client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json or multipart/form-data".into(),
        ));
    };
    let mut valid = super::off_runtime(move || submit::validate(input)).await??;
    valid.targets = crate::service::targets::resolve(&state.db, &valid.target_names).await?;
    let created = submit::create_patch(&state.db, &user, &valid).await?;
    tracing::info!(patch = created.id, sha256 = %created.sha256, user = %user.username, "patch submitted");
    state.renders.prerender(
        created.id,
        created.revision,
        &created.sha256.to_string(),
        crate::service::renders::line_count(&valid.diff),
    );
    let location = format!("/patches/{}", created.id);
    let body = serde_json::json!({
        "id": created.id,
        "title": created.title,
        "revision": { "number": created.revision, "sha256": created.sha256 },
        "url": location,
    });
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// `GET /api/v1/patches?q=&state=&target=&needs=me&author=me&due=soon`: the patches the
/// filters select, most urgent first (the dashboard's list and URL).
pub(super) async fn api_list(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Query(filter): Query<PatchFilter>,
) -> Result<Response, ApiError> {
    let list = pages::list_patches(&state.db, &state.policy.policy, &user, &filter).await?;
    Ok(Json(list).into_response())
}

/// `GET /api/v1/patches/{id}`: metadata and revisions.
pub(super) async fn api_patch(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let patch = state
        .db
        .patch(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("patch {id}")))?;
    let revisions = state.db.revisions(id).await?;
    let review =
        crate::service::pages::review_view(&state.db, &state.policy.policy, &user, id).await?;
    Ok(
        Json(serde_json::json!({ "patch": patch, "revisions": revisions, "review": review }))
            .into_response(),
    )
}

/// `GET /api/v1/patches/{id}/revisions/{number}/diff`: the submitted bytes, unchanged,
/// so anyone can check them against the revision's SHA-256.
pub(super) async fn api_raw_diff(
    State(state): State<AppState>,
    Path((id, number)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    raw_revision(&state, id, number, false).await
}

/// `GET /patches/{id}/revisions/{number}.patch`: the same bytes as a download named
/// after the patch and revision, for `git am` or `patch -p1`.
pub(super) async fn download_revision(
    State(state): State<AppState>,
    Path((id, file)): Path<(i64, String)>,
) -> Result<Response, ApiError> {
    let number = file
        .strip_suffix(".patch")
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| ApiError::not_found(format!("{file} (name a revision as N.patch)")))?;
    raw_revision(&state, id, number, true).await
}

async fn raw_revision(
    state: &AppState,
    id: i64,
    number: i64,
    attachment: bool,
) -> Result<Response, ApiError> {
    let revision = state
        .db
        .revision(id, number)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("revision {number} of patch {id}")))?;
    let mut response = status_only(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/x-diff; charset=utf-8"),
    );
    if let Ok(etag) = header::HeaderValue::from_str(&format!("\"{}\"", revision.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    if attachment {
        // Numbers only: nothing a submitter wrote reaches the header.
        let name = format!("attachment; filename=\"graftbench-{id}-r{number}.patch\"");
        if let Ok(value) = HeaderValue::from_str(&name) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    *response.body_mut() = Body::from(revision.diff);
    Ok(response)
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

/// The query of `GET /api/v1/audit/export`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    #[serde(default)]
    format: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    subject: String,
}

/// `GET /api/v1/audit/export?format=jsonl|csv&from=&to=&actor=&action=&subject=`: the
/// trail as a file, streamed (auditors, security officers and admins; audited).
pub(super) async fn api_audit_export(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    use crate::service::export::{self, ExportFormat};
    if !user.reads_audit() {
        return Err(ApiError::forbidden(
            "the audit trail is for auditors, security officers and admins",
        ));
    }
    let invalid = |why: String| ApiError::Client(StatusCode::UNPROCESSABLE_ENTITY, why);
    let format = match query.format.as_str() {
        "" => ExportFormat::JsonLines,
        name => ExportFormat::parse(name)
            .ok_or_else(|| invalid("format: use jsonl or csv".to_owned()))?,
    };
    let range = export::range(
        &query.actor,
        &query.action,
        &query.subject,
        &query.from,
        &query.to,
    )
    .map_err(invalid)?;
    let chunks = export::export(
        &state.db,
        &state.data_dir,
        &state.instance,
        &user.username,
        range,
        format,
    )
    .await?;
    tracing::info!(user = %user.username, "audit trail exported");
    use futures_util::StreamExt;
    let body = futures_util::stream::unfold(chunks, |mut chunks| async move {
        let chunk = chunks.recv().await?;
        let chunk = chunk.map(axum::body::Bytes::from).map_err(|e| {
            // The status is sent; the client sees the transfer end early.
            tracing::error!(error = %e, "audit export failed while streaming");
            std::io::Error::other("the export failed")
        });
        Some((chunk, chunks))
    })
    // The compression layer polls a body again after its end: an ended body must stay
    // ended (unfold alone panics there).
    .fuse();
    let file = format!(
        "graftbench-audit-{}.{}",
        crate::clock::now().replace([':', '.'], ""),
        format.extension()
    );
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The query of `GET /api/v1/audit/proof`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProofQuery {
    seq: u64,
    size: u64,
}

/// The query of `GET /api/v1/audit/consistency`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsistencyQuery {
    from: u64,
    to: u64,
}

fn require_audit_reader(user: &SessionUser) -> Result<(), ApiError> {
    if user.reads_audit() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the audit trail is for auditors, security officers and admins",
        ))
    }
}

/// `GET /api/v1/audit/proof?seq=&size=`: the inclusion proof of event `seq` in the tree
/// of the first `size` events, with that tree's root, to check against a checkpoint.
pub(super) async fn api_audit_proof(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Query(query): Query<ProofQuery>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let mut tree = crate::service::tree::StoredTree::new(&state.db);
    let proof = tree.inclusion_proof(query.seq, query.size).await?;
    Ok(Json(serde_json::json!({
        "seq": query.seq,
        "size": query.size,
        "root": tree.root(query.size).await?.to_string(),
        "proof": proof.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /api/v1/audit/consistency?from=&to=`: the proof that the tree of the first `from`
/// events is a prefix of the tree of the first `to`, with both roots.
pub(super) async fn api_audit_consistency(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Query(query): Query<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let mut tree = crate::service::tree::StoredTree::new(&state.db);
    let proof = tree.consistency_proof(query.from, query.to).await?;
    Ok(Json(serde_json::json!({
        "from": query.from,
        "to": query.to,
        "from_root": tree.root(query.from).await?.to_string(),
        "to_root": tree.root(query.to).await?.to_string(),
        "proof": proof.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// A text file to download.
fn text_download(name: &str, text: String) -> Response {
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// `GET /api/v1/audit/key`: the verifier key of the instance's checkpoint key, to pin
/// where checkpoints are checked (`graftbench audit verify --key FILE`).
pub(super) async fn api_audit_key(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let (_, vkey) = crate::service::checkpoints::load_key(&state.data_dir)?.ok_or_else(|| {
        crate::service::checkpoints::CheckpointError::NoKey(
            state.data_dir.join(crate::service::checkpoints::KEY_FILE),
        )
    })?;
    Ok(text_download("graftbench-audit.vkey", format!("{vkey}\n")))
}

/// `GET /api/v1/audit/checkpoints`: the stored checkpoints, newest first.
pub(super) async fn api_audit_checkpoints(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let checkpoints = state.db.checkpoints(100).await?;
    Ok(Json(serde_json::json!({
        "checkpoints": checkpoints
            .iter()
            .map(|c| serde_json::json!({
                "size": c.size,
                "root": c.root,
                "created_at": c.created_at,
                "note": c.note,
            }))
            .collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /api/v1/audit/checkpoints/{size}`: one stored checkpoint, as the signed note file.
pub(super) async fn api_audit_checkpoint(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(size): Path<i64>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let checkpoint = state
        .db
        .checkpoint(size)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no checkpoint of {size} events")))?;
    Ok(text_download(
        &format!("graftbench-audit-checkpoint-{size}.txt"),
        checkpoint.note,
    ))
}

/// `GET /api/v1/audit/segments`: the archive segments, oldest first.
pub(super) async fn api_audit_segments(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let segments = state.db.segments().await?;
    Ok(Json(serde_json::json!({
        "segments": segments
            .iter()
            .map(|s| serde_json::json!({
                "first_seq": s.first_seq,
                "last_seq": s.last_seq,
                "events": s.events,
                "first_at": s.first_at,
                "last_at": s.last_at,
                "file": s.file,
                "sha256": s.sha256,
                "bytes": s.bytes,
                "created_at": s.created_at,
            }))
            .collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /api/v1/audit/segments/{first_seq}`: an archive segment's file (a JSON Lines
/// export that `graftbench audit verify --bundle` checks offline). Reading it is access
/// to the audit trail: recorded like an export.
pub(super) async fn api_audit_segment(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(first_seq): Path<i64>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let segment = state
        .db
        .segments()
        .await?
        .into_iter()
        .find(|s| s.first_seq == first_seq)
        .ok_or_else(|| {
            ApiError::not_found(format!("no archive segment starts at event #{first_seq}"))
        })?;
    let archive = crate::service::retention::archive_dir(&state.data_dir);
    let path = crate::service::retention::segment_path(&archive, &segment).map_err(|e| {
        tracing::error!(error = %e, "an archive segment's row names no segment file");
        ApiError::internal(e)
    })?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "an archive segment's file is missing");
        ApiError::internal(e)
    })?;
    // The file's own length: the row's is the database's word.
    let length = file.metadata().await.ok().map(|m| m.len());
    state
        .db
        .record(
            &user.username,
            AuditAction::AuditExported,
            &AuditSubject::Trail,
            &serde_json::json!({
                "archive_segment": segment.file,
                "first_seq": segment.first_seq,
                "last_seq": segment.last_seq,
                "events": segment.events,
            }),
        )
        .await?;
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl; charset=utf-8"),
    );
    if let Some(bytes) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", segment.file))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `POST /audit/checkpoints`: the audit page's "Sign a checkpoint now"; back to the list.
pub(super) async fn form_audit_checkpoint(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
) -> Result<Response, ApiError> {
    let result = async {
        require_audit_reader(&user)?;
        let made = crate::service::tree::sign_checkpoint(&state.db, &state.data_dir).await?;
        tracing::info!(user = %user.username, size = made.size, "audit checkpoint signed");
        Ok(())
    }
    .await;
    super::review::back_to(&session, "/audit", result, "#checkpoints").await
}

/// `POST /api/v1/audit/checkpoints`: signs and stores a checkpoint of the trail as it
/// stands; answers with it.
pub(super) async fn api_audit_checkpoint_now(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
) -> Result<Response, ApiError> {
    require_audit_reader(&user)?;
    let made = crate::service::tree::sign_checkpoint(&state.db, &state.data_dir).await?;
    tracing::info!(user = %user.username, size = made.size, "audit checkpoint signed");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "size": made.size, "note": made.note })),
    )
        .into_response())
}

/// The query of the period evidence routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeriodQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

fn period_scope(query: &PeriodQuery) -> Result<crate::service::evidence::Scope, ApiError> {
    let bound = |text: &str| match text.trim() {
        "" => Ok(String::new()),
        text => crate::clock::parse_bound(text)
            .map_err(|why| ApiError::Client(StatusCode::UNPROCESSABLE_ENTITY, why)),
    };
    Ok(crate::service::evidence::Scope::Period {
        from: bound(&query.from)?,
        to: bound(&query.to)?,
    })
}

async fn evidence_report(
    state: &AppState,
    user: &SessionUser,
    scope: crate::service::evidence::Scope,
) -> Result<Response, ApiError> {
    require_audit_reader(user)?;
    let html = crate::service::evidence::report_page(
        &state.db,
        &crate::service::retention::archive_dir(&state.data_dir),
        &state.policy.policy,
        &state.instance,
        user,
        &scope,
    )
    .await?;
    let mut response = axum::response::Html(html).into_response();
    if let Ok(csp) =
        HeaderValue::from_str(&crate::service::evidence::report::content_security_policy())
    {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(response)
}

async fn evidence_bundle(
    state: &AppState,
    user: &SessionUser,
    scope: crate::service::evidence::Scope,
) -> Result<Response, ApiError> {
    require_audit_reader(user)?;
    let bundle = crate::service::evidence::bundle(
        &state.db,
        &state.policy.policy,
        &state.data_dir,
        &state.instance,
        user,
        &scope,
    )
    .await?;
    tracing::info!(user = %user.username, file = %bundle.name, "evidence bundle exported");
    let file = tokio::fs::File::open(bundle.file.path())
        .await
        .map_err(ApiError::internal)?;
    // The temporary file lives until the body is sent (it is deleted when dropped).
    let keep = bundle.file;
    use futures_util::StreamExt;
    let body = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
        let _ = &keep;
        chunk
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bundle.size));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", bundle.name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `GET /patches/{id}/evidence`: the patch's evidence report (printable HTML).
pub(super) async fn patch_evidence_report(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    evidence_report(&state, &user, crate::service::evidence::Scope::Patch(id)).await
}

/// `GET /audit/evidence?from=&to=`: the period's evidence report.
pub(super) async fn period_evidence_report(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Query(query): Query<PeriodQuery>,
) -> Result<Response, ApiError> {
    let scope = period_scope(&query)?;
    evidence_report(&state, &user, scope).await
}

/// `GET /api/v1/patches/{id}/evidence`: the patch's evidence bundle (audited).
pub(super) async fn api_patch_evidence(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    evidence_bundle(&state, &user, crate::service::evidence::Scope::Patch(id)).await
}

/// `GET /api/v1/audit/evidence?from=&to=`: the period's evidence bundle (audited).
pub(super) async fn api_period_evidence(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Query(query): Query<PeriodQuery>,
) -> Result<Response, ApiError> {
    let scope = period_scope(&query)?;
    evidence_bundle(&state, &user, scope).await
}

/// `GET /api/v1/policy`.
pub(super) async fn api_policy(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({
        "source": state.policy.source(),
        "policy": state.policy.policy,
    }))
    .into_response()
}

/// Which changed file, as which target has it.
#[derive(Debug, Deserialize)]
pub(super) struct SourceFileQuery {
    #[serde(default)]
    path: String,
    #[serde(default)]
    target: String,
}

/// `GET /patches/{id}/revisions/{number}/files/{old|new}?path=&target=`: a file the
/// revision changes as the target's source tree has it (`old`), or with the fix applied
/// there (`new`), as a download; 404 when the diff, the target or its source tree lacks
/// it, 409 when a hunk does not apply to that tree.
pub(super) async fn download_source_file(
    State(state): State<AppState>,
    Path((id, number, side)): Path<(i64, i64, String)>,
    Query(query): Query<SourceFileQuery>,
) -> Result<Response, ApiError> {
    use crate::service::sources::{self, FileSide};
    let Some(which) = FileSide::parse(&side) else {
        let side: String = side.chars().take(16).collect();
        return Err(ApiError::not_found(format!(
            "side `{side}` of a file (name it old or new)"
        )));
    };
    if query.path.is_empty() || query.target.is_empty() {
        return Err(ApiError::Client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name the file (`path`) and the target (`target`)".into(),
        ));
    }
    let bytes =
        sources::revision_file(&state.db, id, number, &query.target, &query.path, which).await?;
    let mut response = status_only(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The file's own name, reduced to characters that need no quoting in a header.
    let base: String = query
        .path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(100)
        .collect();
    let name = format!("attachment; filename=\"graftbench-{id}-r{number}-{side}-{base}\"");
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    *response.body_mut() = Body::from(bytes);
    Ok(response)
}
