//! The HTTP server: routes, sign-in, and the layers every request passes.
//!
//! Every route needs a session except the sign-in page, static assets and `/healthz`
//! ([`is_public`]); the check is one middleware in front of all routes, pages, server
//! functions and the JSON API alike.

mod accounts;
mod error;
mod handlers;
mod review;
mod reviewers;
pub mod serve;
pub mod sign_in;
mod targets;
pub use targets::{StreamSlots, STREAMS_PER_USER};

pub use error::ApiError;
pub use serve::{serve, ServeOptions};
pub use sign_in::{SignInGuard, SignInLimits};

use crate::render::DiffRenderer;
use crate::service::pages::DbWorkbench;
use crate::store::sessions::DbSessionStore;
use crate::store::{Database, DbError};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use graftbench_app::api::ssr::SharedWorkbench;
use graftbench_app::model::FlashMessage;
use graftbench_app::{shell, App};
use graftbench_domain::eligibility::LoadedPolicy;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// Name of the hydration bundle: `/pkg/graftbench_ui.js` and `/pkg/graftbench_ui_bg.wasm`.
pub const BUNDLE_NAME: &str = "graftbench_ui";
/// Largest request body: a 5 MiB diff, JSON-escaped (tabs and quotes double), plus fields.
pub const MAX_BODY_BYTES: usize = 12 * 1024 * 1024;
/// The session key of a message for the next page (see [`FlashMessage`]).
pub const FLASH_KEY: &str = "flash";
/// The longest pause between two pieces of a request body.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// A whole request, body included, must be answered within this long (12 MiB at about
/// 100 KiB/s; rendering the largest diff takes well under a second).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Sessions end after this much inactivity.
pub const SESSION_IDLE_HOURS: i64 = 8;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory with `pkg/` (the hydration bundle) and `style/`.
    pub site_root: PathBuf,
    /// Mark the session cookie `Secure` (set when served over HTTPS).
    pub cookie_secure: bool,
    /// The review policy in force.
    pub policy: LoadedPolicy,
    /// Limits on sign-in attempts and password hashing.
    pub sign_in: SignInLimits,
    /// Connection limits for [`serve`].
    pub serve: ServeOptions,
    /// The origins users reach this server at (`--public-url`): requests for another
    /// `Host`, and state changes from another `Origin`, are refused. Empty: not checked
    /// (in-process uses); `graftbench serve` always sets it.
    pub public_origins: Vec<PublicOrigin>,
    /// The data directory: the audit checkpoint key lives there.
    pub data_dir: PathBuf,
    /// The only directory in-house kernel builds may be registered from
    /// (`--target-root`); none: only distribution releases.
    pub target_root: Option<PathBuf>,
    /// Why there is no kernel target, when the server knows (the demo's could not be
    /// registered): the impact panel says it instead of a generic hint.
    pub no_target_notice: Option<String>,
}

/// One origin the server answers as: scheme and `host[:port]`, lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    /// `http` or `https`.
    pub scheme: String,
    /// `host` or `host:port` as browsers send it in `Host`.
    pub host: String,
}

impl PublicOrigin {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/` is allowed; a
    /// path, query, user or anything else is not).
    pub fn parse(url: &str) -> Result<PublicOrigin, String> {
        let bad = || {
            format!("`{url}` is not a public URL: give scheme and host, e.g. https://graftbench.example.com")
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let mut host = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
        // Browsers leave the scheme's own port out of Host and Origin.
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        if let Some(bare) = host.strip_suffix(default_port) {
            host = bare.to_owned();
        }
        let clean = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !clean {
            return Err(bad());
        }
        Ok(PublicOrigin { scheme, host })
    }

    /// `scheme://host`, as browsers send it in `Origin`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

impl ServerConfig {
    /// A configuration with the default limits, plain-HTTP cookies.
    pub fn new(site_root: PathBuf, data_dir: PathBuf, policy: LoadedPolicy) -> ServerConfig {
        ServerConfig {
            data_dir,
            site_root,
            cookie_secure: false,
            policy,
            sign_in: SignInLimits::default(),
            serve: ServeOptions::default(),
            public_origins: Vec::new(),
            target_root: None,
            no_target_notice: None,
        }
    }
}

/// Errors while setting the server up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The hydration bundle is missing.
    #[error(
        "the browser bundle is missing: {0} not found. Build it with `cargo xtask build` \
         (or point --site-root at a built site)"
    )]
    MissingBundle(PathBuf),
    /// The session store could not be opened.
    #[error("opening the session store failed: {0}")]
    Sessions(#[from] DbError),
    /// Patches' states could not be brought up to date with the policy.
    #[error("recomputing patch states under the policy failed: {0}")]
    Recompute(#[from] crate::service::review::ReviewError),
    /// The site's list of fingerprinted files is unreadable, or names a missing file.
    #[error("{0}: rebuild the site with `cargo xtask site`")]
    Assets(String),
}

/// The fingerprinted files `cargo xtask site` listed in `SITE_ROOT/assets.json`, checked
/// to exist; `None` for a site without the list (pages then use the plain names).
fn site_assets(
    site_root: &std::path::Path,
) -> Result<Option<graftbench_app::SiteAssets>, SetupError> {
    let list = site_root.join("assets.json");
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SetupError::Assets(format!(
                "reading {}: {e}",
                list.display()
            )))
        }
    };
    let assets: graftbench_app::SiteAssets = serde_json::from_str(&text)
        .map_err(|e| SetupError::Assets(format!("{}: {e}", list.display())))?;
    for url in [&assets.js, &assets.wasm, &assets.css] {
        let file = url
            .strip_prefix('/')
            .filter(|path| !path.split('/').any(|part| part == ".." || part.is_empty()))
            .map(|path| site_root.join(path))
            .filter(|file| file.is_file())
            .ok_or_else(|| {
                SetupError::Assets(format!(
                    "{} names {url}, which is not in the site",
                    list.display()
                ))
            })?;
        tracing::debug!(file = %file.display(), "fingerprinted asset");
    }
    Ok(Some(assets))
}

/// How long browsers keep what `/pkg` and `/style` serve: a file named by its content's
/// hash never changes, so for good (a year, `immutable`); any other is checked again each
/// time (`no-cache`: a stale stylesheet after an upgrade would break pages).
async fn asset_cache_control(request: Request, next: Next) -> Response {
    let fingerprinted = request.uri().path().rsplit('/').next().is_some_and(|name| {
        name.split('.').any(|part| {
            part.len() == 16
                && part
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    });
    let mut response = next.run(request).await;
    if response.status().is_success() {
        let value = if fingerprinted {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// What handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The database.
    pub db: Database,
    /// Leptos' settings (bundle name and location).
    pub leptos_options: LeptosOptions,
    /// What the pages read through.
    pub workbench: SharedWorkbench,
    /// The pages' renderings of revisions (a stored revision's starts at once).
    pub renders: Arc<crate::service::renders::Renders>,
    /// The review policy in force.
    pub policy: Arc<LoadedPolicy>,
    /// Sign-in limits.
    pub sign_in: Arc<SignInGuard>,
    /// What this instance calls itself in what it exports: its public URL.
    pub instance: Arc<str>,
    /// The data directory (the audit checkpoint key).
    pub data_dir: Arc<std::path::Path>,
    /// Where kernel targets live and may be registered from.
    pub targets: Arc<crate::service::targets::TargetSettings>,
    /// The job event streams each user has open.
    pub event_streams: Arc<StreamSlots>,
}

/// Builds the application: routes, sessions and middleware.
pub async fn router(config: &ServerConfig, db: Database) -> Result<Router, SetupError> {
    let bundle = config
        .site_root
        .join("pkg")
        .join(format!("{BUNDLE_NAME}.js"));
    if !bundle.is_file() {
        return Err(SetupError::MissingBundle(bundle));
    }
    let renderer = Arc::new(DiffRenderer::new());
    let policy = Arc::new(config.policy.clone());
    // The policy may have changed since the last start: states follow it.
    let changed = crate::service::review::recompute_states(&db, &policy.policy).await?;
    if changed > 0 {
        tracing::info!(
            patches = changed,
            "states changed under the policy in force"
        );
    }
    let pages = DbWorkbench::new(db.clone(), renderer, Arc::clone(&policy))
        .with_target_root(config.target_root.clone())
        .with_no_target_notice(config.no_target_notice.clone());
    let renders = Arc::clone(pages.renders());
    let workbench: SharedWorkbench = Arc::new(pages);
    let leptos_options = LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_root(config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .build();
    let store = DbSessionStore::open(&db).await?;
    store.spawn_expiry(std::time::Duration::from_secs(3600));
    let sessions = SessionManagerLayer::new(store)
        .with_name("graftbench_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.cookie_secure)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(
            SESSION_IDLE_HOURS,
        )));
    let state = AppState {
        targets: Arc::new(crate::service::targets::TargetSettings::new(
            &config.data_dir,
            config.target_root.clone(),
        )),
        data_dir: config.data_dir.clone().into(),
        db,
        leptos_options: leptos_options.clone(),
        workbench: workbench.clone(),
        renders,
        policy,
        sign_in: Arc::new(SignInGuard::new(config.sign_in.clone())),
        event_streams: Arc::default(),
        instance: config
            .public_origins
            .first()
            .map_or_else(|| "graftbench".to_owned(), PublicOrigin::origin)
            .into(),
    };
    let routes = generate_route_list(App);
    let assets = site_assets(&config.site_root)?;
    let page_context = {
        let workbench = workbench.clone();
        move || {
            provide_context(workbench.clone());
            if let Some(assets) = &assets {
                provide_context(assets.clone());
            }
            set_page_csp();
        }
    };
    let app_shell = {
        let options = leptos_options.clone();
        move || shell(options.clone())
    };
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", post(handlers::login))
        .route("/logout", post(handlers::logout))
        // The form posts to its own page's path (see `NewPatchPage`); `/patches` is
        // kept for scripts written against it.
        .route("/patches", post(handlers::submit_form))
        .route("/patches/new", post(handlers::submit_form))
        .route(
            "/api/v1/patches",
            get(handlers::api_list).post(handlers::api_submit),
        )
        .route("/api/v1/patches/{id}", get(handlers::api_patch))
        .route(
            "/api/v1/patches/{id}/actions/{action}",
            post(review::api_action),
        )
        .route(
            "/api/v1/patches/{id}/revisions",
            post(review::api_upload_revision),
        )
        .route("/api/v1/patches/{id}/comments", post(review::api_comment))
        .route(
            "/api/v1/patches/{id}/drafts/publish",
            post(review::api_publish_drafts),
        )
        .route(
            "/api/v1/patches/{id}/drafts/{draft}",
            delete(review::api_discard_draft),
        )
        .route(
            "/api/v1/patches/{id}/reviewers",
            post(reviewers::api_request),
        )
        .route(
            "/api/v1/patches/{id}/reviewers/{name}",
            delete(reviewers::api_cancel),
        )
        .route("/api/v1/patches/{id}/reviewed", post(reviewers::api_mark))
        .route(
            "/api/v1/patches/{id}/comments/{thread}/{verb}",
            post(review::api_resolve),
        )
        .route("/api/v1/audit", get(handlers::api_audit))
        .route("/api/v1/audit/export", get(handlers::api_audit_export))
        .route("/api/v1/audit/proof", get(handlers::api_audit_proof))
        .route(
            "/api/v1/audit/consistency",
            get(handlers::api_audit_consistency),
        )
        .route("/api/v1/audit/key", get(handlers::api_audit_key))
        .route("/api/v1/audit/evidence", get(handlers::api_period_evidence))
        .route(
            "/api/v1/patches/{id}/evidence",
            get(handlers::api_patch_evidence),
        )
        .route("/audit/evidence", get(handlers::period_evidence_report))
        .route(
            "/patches/{id}/revisions/{file}",
            get(handlers::download_revision),
        )
        .route(
            "/patches/{id}/revisions/{number}/files/{side}",
            get(handlers::download_source_file),
        )
        .route(
            "/patches/{id}/evidence",
            get(handlers::patch_evidence_report),
        )
        .route(
            "/api/v1/audit/checkpoints",
            get(handlers::api_audit_checkpoints).post(handlers::api_audit_checkpoint_now),
        )
        .route(
            "/api/v1/audit/checkpoints/{size}",
            get(handlers::api_audit_checkpoint),
        )
        .route("/api/v1/audit/segments", get(handlers::api_audit_segments))
        .route(
            "/api/v1/audit/segments/{first_seq}",
            get(handlers::api_audit_segment),
        )
        .route("/api/v1/policy", get(handlers::api_policy))
        .route(
            "/api/v1/users",
            get(accounts::api_users).post(accounts::api_create_user),
        )
        .route("/api/v1/users/{name}/roles", put(accounts::api_set_roles))
        .route(
            "/api/v1/users/{name}/{verb}",
            post(accounts::api_set_disabled),
        )
        .route(
            "/api/v1/users/{name}/roles/{role}/confirm",
            post(accounts::api_confirm_grant),
        )
        .route("/patches/{id}/actions", post(review::form_action))
        .route(
            "/patches/{id}/revisions",
            post(review::form_upload_revision),
        )
        .route("/patches/{id}/comments", post(review::form_comment))
        .route(
            "/patches/{id}/drafts/publish",
            post(review::form_publish_drafts),
        )
        .route(
            "/patches/{id}/drafts/{draft}/discard",
            post(review::form_discard_draft),
        )
        .route("/patches/{id}/reviewers", post(reviewers::form_request))
        .route("/patches/{id}/reviewed", post(reviewers::form_mark))
        .route(
            "/patches/{id}/comments/{thread}/{verb}",
            post(review::form_resolve),
        )
        .route("/audit/checkpoints", post(handlers::form_audit_checkpoint))
        .route("/admin/users", post(accounts::form_create_user))
        .route("/admin/users/{name}/roles", post(accounts::form_set_roles))
        .route(
            "/admin/users/{name}/{verb}",
            post(accounts::form_set_disabled),
        )
        .route(
            "/admin/users/{name}/roles/{role}/confirm",
            post(accounts::form_confirm_grant),
        )
        .route(
            "/api/v1/patches/{id}/revisions/{number}/diff",
            get(handlers::api_raw_diff),
        )
        .route(
            "/api/v1/patches/{id}/analyses",
            get(targets::api_patch_analyses),
        )
        .route(
            "/api/v1/targets",
            get(targets::api_targets).post(targets::api_add_target),
        )
        .route("/api/v1/targets/{id}", get(targets::api_target))
        .route(
            "/api/v1/targets/{id}/retire",
            post(targets::api_retire_target),
        )
        .route(
            "/api/v1/targets/{id}/reindex",
            post(targets::api_reindex_target),
        )
        .route("/targets", post(targets::form_add_target))
        .route("/targets/{id}/{verb}", post(targets::form_target_action))
        .route("/api/v1/jobs", get(targets::api_jobs))
        .route("/api/v1/jobs/{id}", get(targets::api_job))
        .route("/api/v1/jobs/{id}/cancel", post(targets::api_cancel_job))
        .route("/api/v1/jobs/{id}/events", get(targets::job_events))
        .leptos_routes_with_context(&state, routes, page_context.clone(), app_shell.clone())
        .merge(static_files(&config.site_root))
        .fallback(move |req: Request| {
            let render =
                leptos_axum::render_app_async_with_context(page_context.clone(), app_shell.clone());
            async move { render(req).await }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A body that trickles in holds a connection, a task and its buffer. The body
        // timeout restarts with every chunk; the whole request (body read included, since
        // handlers read it) has a deadline too, so a byte a minute cannot hold it forever.
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ))
        .layer(sessions)
        .layer(middleware::from_fn_with_state(
            Arc::new(config.public_origins.clone()),
            same_origin_only,
        ))
        // Pages set their own policy with the response's script nonce (`set_page_csp`);
        // everything else (JSON, redirects, files, errors) may load and run nothing.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(NON_PAGE_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Over HTTPS (which --cookie-secure says), browsers must never try plain HTTP.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            config
                .cookie_secure
                .then(|| HeaderValue::from_static("max-age=31536000")),
        ))
        // Pages are compressed per response, at gzip's fastest level: on the patch page
        // of a long diff (482 KB of markup) the default level took a fifth of the
        // server's time under load, for 26 KB sent instead of 50 KB. (Static assets are
        // compressed once, at build time, at the best level.)
        .layer(CompressionLayer::new().quality(tower_http::CompressionLevel::Fastest))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    Ok(router)
}

/// `/pkg` and `/style` from the site: the `.br` or `.gz` copy beside a file when the
/// browser takes it (the build makes them for the fingerprinted files), and how long to
/// cache each.
fn static_files(site_root: &std::path::Path) -> Router<AppState> {
    let files = |dir: &str| {
        ServeDir::new(site_root.join(dir))
            .precompressed_br()
            .precompressed_gzip()
    };
    Router::new()
        .nest_service("/pkg", files("pkg"))
        .nest_service("/style", files("style"))
        .layer(middleware::from_fn(asset_cache_control))
}

/// The Content-Security-Policy of responses that are not pages.
pub const NON_PAGE_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The Content-Security-Policy of a page whose inline scripts carry `nonce`.
///
/// Scripts run only with this response's nonce: Leptos puts it on the hydration loader and
/// on the inline data of resources it resolved on the server, and the loader's
/// `import()` of the bundle inherits it. `'wasm-unsafe-eval'` lets the bundle compile its
/// WebAssembly; nothing else may be evaluated. Styles and images come from this site only
/// (highlighting is by class, never inline style), and forms post only here.
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
}

/// Adds the page's Content-Security-Policy with the nonce leptos_axum made for this
/// response. Runs inside the page's reactive context, where both are provided.
pub(crate) fn set_page_csp() {
    let nonce = leptos::nonce::use_nonce();
    let response = leptos::prelude::use_context::<leptos_axum::ResponseOptions>();
    if let (Some(nonce), Some(response)) = (nonce, response) {
        match HeaderValue::from_str(&page_csp(&nonce)) {
            Ok(value) => response.insert_header(header::CONTENT_SECURITY_POLICY, value),
            // A nonce is base64; should it ever not be, no policy at all would be worse
            // than the strictest one.
            Err(_) => response.insert_header(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(NON_PAGE_CSP),
            ),
        }
    }
}

/// Paths served without a session.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/healthz" | "/favicon.ico")
        || path.starts_with("/pkg/")
        || path.starts_with("/style/")
}

/// Resolves the session's user and puts it into the request; refuses requests without
/// one (401 for the API and server functions, a redirect to the sign-in page otherwise).
async fn require_session(
    State(state): State<AppState>,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if is_public(&path) {
        return next.run(req).await;
    }
    let user = match session
        .get::<i64>(crate::service::auth::SESSION_USER_KEY)
        .await
    {
        Ok(Some(id)) => match state.db.session_user(id).await {
            Ok(user) => user,
            Err(e) => return ApiError::from(e).into_response(),
        },
        Ok(None) => None,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match user {
        // Reading needs a role: an account whose roles were all taken away may only sign
        // out (a disabled one has no user at all, above).
        Some(user) if user.roles.is_empty() && path != "/logout" => no_role(&path),
        Some(user) => {
            req.extensions_mut().insert(user);
            // Pages only: a JSON or asset request must not eat the message meant for the
            // page the form redirected to.
            if req.method() == Method::GET && !path.starts_with("/api/v1/") {
                match session.remove::<String>(FLASH_KEY).await {
                    Ok(Some(message)) => {
                        req.extensions_mut().insert(FlashMessage(message));
                    }
                    Ok(None) => {}
                    Err(e) => return ApiError::from(e).into_response(),
                }
            }
            let mut response = next.run(req).await;
            // What a signed-in user sees must not outlive the session in a cache: not the
            // browser's (back button after sign-out on a shared machine), not a proxy's.
            response
                .headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
            response
        }
        None if path.starts_with("/api/") => ApiError::unauthorized().into_response(),
        None => {
            let target = req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or_else(|| "/".to_owned());
            Redirect::to(&format!("/login?next={}", url_encode(&target))).into_response()
        }
    }
}

/// The answer to a signed-in account that holds no role.
fn no_role(path: &str) -> Response {
    const WHY: &str = "your account holds no role in Graftbench: ask an admin for one";
    if path.starts_with("/api/") {
        return ApiError::forbidden(WHY).into_response();
    }
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>No role · Graftbench</title></head><body><p>{}.</p>\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button>\
         </form></body></html>",
        capitalized(WHY)
    );
    let mut response = axum::response::Html(page).into_response();
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    // Its one form (sign out) must be allowed to post here; nothing else runs.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Refuses requests for a host this server is not, and state-changing requests that a
/// browser marks as coming from another site.
///
/// The `Host` must be one of the public origins' (a DNS-rebinding page, or a proxy
/// forwarding someone else's name, gets a 421). Browsers send `Sec-Fetch-Site` (and
/// `Origin` on POST) on every request; a cross-site form or fetch is refused before it
/// reaches a handler, and an `Origin` must be a public origin exactly, scheme included (a
/// plain-HTTP page cannot post to the HTTPS site). Requests without either header are not
/// from a browser page (curl, scripts) and carry no ambient cookie risk. Together with the
/// `SameSite=Lax` session cookie this is the CSRF defence.
async fn same_origin_only(
    State(origins): State<Arc<Vec<PublicOrigin>>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    if headers.get_all(header::HOST).iter().count() > 1 {
        return (StatusCode::BAD_REQUEST, "more than one Host header").into_response();
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // Health probes of load balancers ask by address, without the public name.
    if !origins.is_empty() && req.uri().path() != "/healthz" {
        let public = |name: &str| origins.iter().any(|o| o.host.eq_ignore_ascii_case(name));
        // A request line in absolute form names its host itself; it must be ours too.
        let authority_ok = req.uri().authority().is_none_or(|a| public(a.as_str()));
        let known = authority_ok && host.is_some_and(public);
        if !known {
            tracing::warn!(
                host = %host.unwrap_or("(none)").escape_debug(),
                "refused a request for another host"
            );
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer for that host (see --public-url)",
            )
                .into_response();
        }
    }
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let site_ok = match fetch_site {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    };
    let origin_ok = match origin {
        None => true,
        Some(origin) if !origins.is_empty() => origins
            .iter()
            .any(|o| o.origin().eq_ignore_ascii_case(origin)),
        Some(origin) => {
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            host.is_some() && origin_host == host
        }
    };
    if site_ok && origin_ok {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), "refused a cross-site request");
        (StatusCode::FORBIDDEN, "cross-site request refused").into_response()
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A local path to return to after sign-in; anything else (other hosts, `//host`,
/// backslashes that some browsers treat as slashes) becomes `/`.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if local {
        next
    } else {
        "/"
    }
}

/// Runs CPU work (parsing a diff of megabytes, say) on the blocking pool, so the async
/// workers keep answering other requests meanwhile.
pub(crate) async fn off_runtime<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("a blocking task failed: {e}")))
}

/// An empty response with a status, for handlers.
pub(crate) fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sign_in_assets_and_health_are_public() {
        for path in [
            "/login",
            "/healthz",
            "/pkg/graftbench_ui.js",
            "/style/graftbench.css",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/",
            "/patches/1",
            "/patches/new",
            "/api/v1/patches",
            "/api/ui/me",
            "/logout",
            "/loginx",
            "/pkgx",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn next_must_stay_on_this_site() {
        assert_eq!(safe_next("/patches/3?rev=2"), "/patches/3?rev=2");
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "",
            "patches",
        ] {
            assert_eq!(safe_next(evil), "/", "{evil}");
        }
    }
}
