//! Kernel targets, background jobs and analyses over HTTP (JSON), and a job's progress
//! as server-sent events for pages that show it live.

use super::{ApiError, AppState};
use crate::service::targets::{self, TargetRequest};
use crate::store::jobs::{Job, JobState};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use graftbench_app::model::{Role, SessionUser};
use serde::Serialize;
use std::time::Duration;
use tower_sessions::Session;

/// A job as clients see it: what it is and where it stands, not its input.
#[derive(Debug, Serialize)]
pub(super) struct JobView {
    id: i64,
    kind: String,
    key: String,
    state: &'static str,
    phase: String,
    progress: f64,
    attempts: i64,
    max_attempts: i64,
    error: Option<String>,
    result: Option<serde_json::Value>,
    created_at: String,
    updated_at: String,
}

impl JobView {
    /// The view without the job's result (a whole analysis report, say): what lists
    /// and event streams send.
    fn brief(job: Job) -> JobView {
        let mut view = JobView::from(job);
        view.result = None;
        view
    }
}

impl From<Job> for JobView {
    fn from(job: Job) -> JobView {
        JobView {
            id: job.id,
            kind: job.kind,
            key: job.key,
            state: job.state.as_str(),
            phase: job.phase,
            progress: job.progress,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            error: job.error,
            result: job.result.and_then(|r| serde_json::from_str(&r).ok()),
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

/// `GET /api/v1/targets`.
pub(super) async fn api_targets(State(state): State<AppState>) -> Result<Response, ApiError> {
    let targets = state.db.targets().await?;
    Ok(Json(serde_json::json!({ "targets": targets })).into_response())
}

/// `POST /api/v1/targets`: `{"release": "6.1.0-56-cloud-amd64"}` or `{"vmlinux": PATH,
/// ...}`; 202 with the registration job.
pub(super) async fn api_add_target(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    request: Request,
) -> Result<Response, ApiError> {
    let Json(body) = Json::<TargetRequest>::from_request(request, &())
        .await
        .map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
    let queued = targets::request(&state.db, &state.targets, &user, body).await?;
    tracing::info!(job = queued.job, name = %queued.name, user = %user.username, "target registration queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "job": queued.job,
            "name": queued.name,
            "new": queued.new,
            "job_url": format!("/api/v1/jobs/{}", queued.job),
        })),
    )
        .into_response())
}

/// `GET /api/v1/targets/{id}`: the target and its jobs.
pub(super) async fn api_target(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let target = state
        .db
        .target(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("target {id}")))?;
    let jobs: Vec<JobView> = targets::target_jobs(&state.db, &target)
        .await?
        .into_iter()
        .map(JobView::brief)
        .collect();
    Ok(Json(serde_json::json!({ "target": target, "jobs": jobs })).into_response())
}

/// `POST /api/v1/targets/{id}/retire`.
pub(super) async fn api_retire_target(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let target = targets::retire(&state.db, &user, id).await?;
    Ok(Json(serde_json::json!({ "target": target })).into_response())
}

/// `POST /api/v1/targets/{id}/reindex`: 202 with the job.
pub(super) async fn api_reindex_target(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let job = targets::request_reindex(&state.db, &user, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "job": job, "job_url": format!("/api/v1/jobs/{job}") })),
    )
        .into_response())
}

/// `GET /api/v1/jobs`: the newest 200.
pub(super) async fn api_jobs(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jobs: Vec<JobView> = state
        .db
        .jobs(200)
        .await?
        .into_iter()
        .map(JobView::brief)
        .collect();
    Ok(Json(serde_json::json!({ "jobs": jobs })).into_response())
}

/// `GET /api/v1/jobs/{id}`.
pub(super) async fn api_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let job = state
        .db
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    Ok(Json(serde_json::json!({ "job": JobView::from(job) })).into_response())
}

/// `POST /api/v1/jobs/{id}/cancel`: admins and release managers.
pub(super) async fn api_cancel_job(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    if !(user.has_role(Role::Admin) || user.has_role(Role::ReleaseManager)) {
        return Err(ApiError::forbidden(
            "cancelling jobs needs the admin or release manager role",
        ));
    }
    state
        .db
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    if !state.db.cancel_job(id).await? {
        return Err(ApiError::Client(
            StatusCode::CONFLICT,
            format!("job {id} has finished: only queued or running jobs can be cancelled"),
        ));
    }
    tracing::info!(job = id, user = %user.username, "job cancelled");
    api_job(State(state), Path(id)).await
}

/// How long one event stream stays open; the page's EventSource reconnects after.
const STREAM_LIMIT: Duration = Duration::from_secs(600);
/// How often the stream looks at the job.
const STREAM_POLL: Duration = Duration::from_millis(400);
/// Event streams one user may have open on this server at once: each polls the
/// database, so a script opening thousands would load it for everyone. A page follows
/// a handful of jobs; a browser keeps six connections per server.
pub const STREAMS_PER_USER: usize = 16;

/// The job event streams open on this server, per user.
#[derive(Debug, Default)]
pub struct StreamSlots(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One open stream: its user's slot is given back when the stream ends or the client goes.
pub(super) struct StreamSlot {
    slots: std::sync::Arc<StreamSlots>,
    user: String,
}

impl StreamSlots {
    /// A slot for `user`, unless they have [`STREAMS_PER_USER`] open.
    fn take(slots: &std::sync::Arc<StreamSlots>, user: &str) -> Option<StreamSlot> {
        let mut open = slots
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(user.to_owned()).or_default();
        if *count >= STREAMS_PER_USER {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            slots: std::sync::Arc::clone(slots),
            user: user.to_owned(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// `GET /api/v1/jobs/{id}/events`: the job's state, phase and progress as server-sent
/// events (`event: job`, JSON data), one each time they change, until it finishes.
pub(super) async fn job_events(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    state
        .db
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    let slot = StreamSlots::take(&state.event_streams, &user.username).ok_or_else(|| {
        ApiError::Client(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{STREAMS_PER_USER} job event streams are open for you already: close some pages"
            ),
        )
    })?;
    let db = state.db.clone();
    let started = tokio::time::Instant::now();
    // (last sent, finished)
    let stream = futures_util::stream::unfold((None::<String>, false), move |(last, finished)| {
        let db = db.clone();
        // The slot lives as long as the stream, which the client's leaving drops.
        let _slot = &slot;
        async move {
            if finished || started.elapsed() > STREAM_LIMIT {
                return None;
            }
            loop {
                let job = match db.job(id).await {
                    Ok(Some(job)) => job,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(job = id, error = %e, "reading a job for its event stream");
                        return None;
                    }
                };
                let done = matches!(
                    job.state,
                    JobState::Done | JobState::Failed | JobState::Cancelled
                );
                let data = serde_json::to_string(&JobView::brief(job)).unwrap_or_default();
                if last.as_deref() != Some(data.as_str()) {
                    let event = Event::default().event("job").data(data.clone());
                    return Some((Ok::<_, std::convert::Infallible>(event), (Some(data), done)));
                }
                if started.elapsed() > STREAM_LIMIT {
                    return None;
                }
                tokio::time::sleep(STREAM_POLL).await;
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /api/v1/patches/{id}/analyses`: each revision's analyses, newest revision first,
/// with the jobs still running for them.
pub(super) async fn api_patch_analyses(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    state
        .db
        .patch(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("patch {id}")))?;
    let mut revisions = Vec::new();
    for revision in state.db.revisions(id).await?.into_iter().rev() {
        let sha = revision.sha256.to_string();
        let analyses = state.db.analyses_of(&sha).await?;
        let pending: Vec<JobView> = state
            .db
            .jobs_with_key_prefix(
                &format!("{}:{sha}:", crate::service::analysis_queue::ANALYZE),
                50,
            )
            .await?
            .into_iter()
            .filter(|j| {
                matches!(
                    j.state,
                    JobState::Queued | JobState::Running | JobState::Failed
                )
            })
            .map(JobView::brief)
            .collect();
        revisions.push(serde_json::json!({
            "revision": revision.number,
            "sha256": sha,
            "analyses": analyses,
            "jobs": pending,
        }));
    }
    Ok(Json(serde_json::json!({
        "patch": id,
        "report_version": analyzer::impact::REPORT_VERSION,
        "revisions": revisions,
    }))
    .into_response())
}

/// The targets page's registration form: a release, or paths under the target root.
#[derive(Debug, serde::Deserialize)]
pub(super) struct TargetForm {
    #[serde(default)]
    release: String,
    #[serde(default)]
    with_source: Option<String>,
    #[serde(default)]
    vmlinux: String,
    #[serde(default)]
    modules_dir: String,
    #[serde(default)]
    kbuild_dir: String,
    #[serde(default)]
    source_dir: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kernel_release: String,
}

fn given(text: String) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `POST /targets`: the registration form; back to the targets page, where the job's
/// progress shows.
pub(super) async fn form_add_target(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Form(form): Form<TargetForm>,
) -> Result<Response, ApiError> {
    let request = TargetRequest {
        release: given(form.release),
        with_source: form.with_source.is_some(),
        vmlinux: given(form.vmlinux),
        modules_dir: given(form.modules_dir),
        kbuild_dir: given(form.kbuild_dir),
        source_dir: given(form.source_dir),
        name: given(form.name),
        kernel_release: given(form.kernel_release),
    };
    let result = targets::request(&state.db, &state.targets, &user, request)
        .await
        .map(|queued| {
            tracing::info!(job = queued.job, name = %queued.name, user = %user.username, "target registration queued");
        })
        .map_err(ApiError::from);
    super::review::back_to(&session, "/targets", result, "").await
}

async fn target_name(state: &AppState, id: i64) -> Result<String, ApiError> {
    Ok(state
        .db
        .target(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("target {id}")))?
        .name)
}

/// `POST /targets/{id}/retire` and `/targets/{id}/reindex`: the target page's buttons;
/// back to the page, where a re-index job shows.
pub(super) async fn form_target_action(
    State(state): State<AppState>,
    Extension(user): Extension<SessionUser>,
    session: Session,
    Path((id, verb)): Path<(i64, String)>,
) -> Result<Response, ApiError> {
    let name = target_name(&state, id).await?;
    let result = match verb.as_str() {
        "retire" => targets::retire(&state.db, &user, id).await.map(drop),
        "reindex" => targets::request_reindex(&state.db, &user, id)
            .await
            .map(drop),
        _ => return Err(ApiError::not_found(format!("/targets/{id}/{verb}"))),
    }
    .map_err(ApiError::from);
    super::review::back_to(&session, &format!("/targets/{name}"), result, "").await
}
