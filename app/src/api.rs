//! Server functions the pages load their data with.
//!
//! Their bodies run on the server only. They do no database work themselves: they ask the
//! [`ssr::Workbench`] the backend provides as context, for the user the backend's session
//! layer put into the request. Authentication happens before any of this runs; these
//! functions still refuse to answer without a user, so a routing mistake cannot expose data.

use crate::model::{
    AppError, AuditFilter, AuditPage, ContextQuery, FileHunks, ImpactView, InterdiffView, LineView,
    PatchFilter, PatchPage, PatchSummary, PolicyView, RejectedSubmission, SessionUser, TargetPage,
    TargetsPage, UserAccount,
};
use leptos::prelude::*;

/// The signed-in user, or `None` on public pages.
#[server(prefix = "/api/ui", endpoint = "me")]
pub async fn current_user() -> Result<Option<SessionUser>, AppError> {
    Ok(ssr::session_user().await)
}

/// The patches `filter` selects, most urgent first.
#[server(prefix = "/api/ui", endpoint = "patches")]
pub async fn list_patches(filter: PatchFilter) -> Result<Vec<PatchSummary>, AppError> {
    let user = ssr::require_user().await?;
    let list = ssr::workbench()?.list_patches(&user, filter).await;
    if let Err(e) = &list {
        ssr::set_error_status(e);
    }
    list
}

/// One patch with one of its revisions rendered (the latest when `revision` is `None`):
/// the diff's first lines, or every line when `all_lines`.
#[server(prefix = "/api/ui", endpoint = "patch")]
pub async fn get_patch(
    id: i64,
    revision: Option<i64>,
    #[server(default)] all_lines: bool,
) -> Result<PatchPage, AppError> {
    let user = ssr::require_user().await?;
    let page = ssr::workbench()?
        .patch_page(&user, id, revision, all_lines)
        .await;
    if let Err(e) = &page {
        ssr::set_error_status(e);
    }
    page
}

/// Lines of a target's copy of a changed file next to one of its hunks: the patch page's
/// "more lines" controls.
#[server(prefix = "/api/ui", endpoint = "context")]
pub async fn get_context(query: ContextQuery) -> Result<Vec<LineView>, AppError> {
    let user = ssr::require_user().await?;
    let lines = ssr::workbench()?.context_lines(&user, query).await;
    if let Err(e) = &lines {
        ssr::set_error_status(e);
    }
    lines
}

/// The hunks of one file of a revision from hunk `from` on: what the patch page held back
/// of a long diff, loaded when the reader gets there.
#[server(prefix = "/api/ui", endpoint = "file_hunks")]
pub async fn get_file_hunks(
    id: i64,
    revision: i64,
    file: usize,
    from: usize,
) -> Result<FileHunks, AppError> {
    let user = ssr::require_user().await?;
    let hunks = ssr::workbench()?
        .file_hunks(&user, id, revision, file, from)
        .await;
    if let Err(e) = &hunks {
        ssr::set_error_status(e);
    }
    hunks
}

/// How revision `revision` of patch `id` (the latest when `None`) fares on each target,
/// and the impact graph on `target` (the first analysed one when `None`), its lists
/// filtered by `query`.
#[server(prefix = "/api/ui", endpoint = "impact")]
pub async fn get_impact(
    id: i64,
    revision: Option<i64>,
    target: Option<String>,
    query: String,
) -> Result<ImpactView, AppError> {
    let user = ssr::require_user().await?;
    let view = ssr::workbench()?
        .impact(&user, id, revision, target, query)
        .await;
    if let Err(e) = &view {
        ssr::set_error_status(e);
    }
    view
}

/// What changed between two revisions of a patch.
#[server(prefix = "/api/ui", endpoint = "interdiff")]
pub async fn get_interdiff(id: i64, from: i64, to: i64) -> Result<InterdiffView, AppError> {
    let user = ssr::require_user().await?;
    let view = ssr::workbench()?.interdiff(&user, id, from, to).await;
    if let Err(e) = &view {
        ssr::set_error_status(e);
    }
    view
}

/// Audit events matching `filter` (auditors, security officers and admins).
#[server(prefix = "/api/ui", endpoint = "audit")]
pub async fn get_audit(filter: AuditFilter) -> Result<AuditPage, AppError> {
    let user = ssr::require_user().await?;
    let page = ssr::workbench()?.audit(&user, filter).await;
    if let Err(e) = &page {
        ssr::set_error_status(e);
    }
    page
}

/// The policy in force.
#[server(prefix = "/api/ui", endpoint = "policy")]
pub async fn get_policy() -> Result<PolicyView, AppError> {
    ssr::require_user().await?;
    Ok(ssr::workbench()?.policy())
}

/// Every user with their roles (admins).
#[server(prefix = "/api/ui", endpoint = "users")]
pub async fn list_users() -> Result<Vec<UserAccount>, AppError> {
    let user = ssr::require_user().await?;
    let users = ssr::workbench()?.users(&user).await;
    if let Err(e) = &users {
        ssr::set_error_status(e);
    }
    users
}

/// The kernel targets and registrations under way.
#[server(prefix = "/api/ui", endpoint = "targets")]
pub async fn list_targets() -> Result<TargetsPage, AppError> {
    let user = ssr::require_user().await?;
    ssr::workbench()?.targets(&user).await
}

/// One target by name.
#[server(prefix = "/api/ui", endpoint = "target")]
pub async fn get_target(name: String) -> Result<TargetPage, AppError> {
    let user = ssr::require_user().await?;
    let page = ssr::workbench()?.target(&user, name).await;
    if let Err(e) = &page {
        ssr::set_error_status(e);
    }
    page
}

/// The message a refused form left for this page, if any (see [`crate::model::FlashMessage`]).
#[server(prefix = "/api/ui", endpoint = "flash")]
pub async fn flash_message() -> Result<Option<String>, AppError> {
    ssr::require_user().await?;
    Ok(
        leptos_axum::extract::<axum::Extension<crate::model::FlashMessage>>()
            .await
            .ok()
            .map(|axum::Extension(flash)| flash.0),
    )
}

/// The refused form submission being shown again, if this page render is one.
#[server(prefix = "/api/ui", endpoint = "rejected")]
pub async fn load_rejected_submission() -> Result<Option<RejectedSubmission>, AppError> {
    ssr::require_user().await?;
    Ok(use_context::<RejectedSubmission>())
}

/// Server-side plumbing: what the backend provides and how server functions reach it.
#[cfg(feature = "ssr")]
pub mod ssr {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    /// A boxed future, so [`Workbench`] can be used as a trait object.
    pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// What the pages need from the backend. The backend implements it over its database
    /// and provides an [`SharedWorkbench`] as Leptos context.
    pub trait Workbench: Send + Sync + 'static {
        /// The patches `filter` selects for `user`, most urgent first.
        fn list_patches<'a>(
            &'a self,
            user: &'a SessionUser,
            filter: PatchFilter,
        ) -> BoxFuture<'a, Result<Vec<PatchSummary>, AppError>>;

        /// One patch with a rendered revision: its first lines, or all of them.
        fn patch_page<'a>(
            &'a self,
            user: &'a SessionUser,
            id: i64,
            revision: Option<i64>,
            all_lines: bool,
        ) -> BoxFuture<'a, Result<PatchPage, AppError>>;

        /// The hunks of file `file` (its index) of a revision from hunk `from` on: what
        /// the patch page held back.
        fn file_hunks<'a>(
            &'a self,
            user: &'a SessionUser,
            id: i64,
            revision: i64,
            file: usize,
            from: usize,
        ) -> BoxFuture<'a, Result<FileHunks, AppError>>;

        /// Lines of a target's copy of a changed file next to one of its hunks,
        /// highlighted as the diff is.
        fn context_lines<'a>(
            &'a self,
            user: &'a SessionUser,
            query: ContextQuery,
        ) -> BoxFuture<'a, Result<Vec<LineView>, AppError>>;

        /// The impact panel of a revision: each target's analysis and one's graph.
        fn impact<'a>(
            &'a self,
            user: &'a SessionUser,
            id: i64,
            revision: Option<i64>,
            target: Option<String>,
            query: String,
        ) -> BoxFuture<'a, Result<ImpactView, AppError>>;

        /// The interdiff between two revisions.
        fn interdiff<'a>(
            &'a self,
            user: &'a SessionUser,
            id: i64,
            from: i64,
            to: i64,
        ) -> BoxFuture<'a, Result<InterdiffView, AppError>>;

        /// Audit events matching a filter.
        fn audit<'a>(
            &'a self,
            user: &'a SessionUser,
            filter: AuditFilter,
        ) -> BoxFuture<'a, Result<AuditPage, AppError>>;

        /// The policy in force.
        fn policy(&self) -> PolicyView;

        /// Every user (admins only).
        fn users<'a>(
            &'a self,
            user: &'a SessionUser,
        ) -> BoxFuture<'a, Result<Vec<UserAccount>, AppError>>;

        /// The kernel targets and registrations under way.
        fn targets<'a>(
            &'a self,
            user: &'a SessionUser,
        ) -> BoxFuture<'a, Result<TargetsPage, AppError>>;

        /// One target by name.
        fn target<'a>(
            &'a self,
            user: &'a SessionUser,
            name: String,
        ) -> BoxFuture<'a, Result<TargetPage, AppError>>;
    }

    /// The form the backend provides the workbench in.
    pub type SharedWorkbench = Arc<dyn Workbench>;

    /// The workbench from context.
    pub fn workbench() -> Result<SharedWorkbench, AppError> {
        use_context::<SharedWorkbench>().ok_or_else(|| {
            leptos::logging::error!("no Workbench in context: the router was set up without it");
            AppError::Internal
        })
    }

    /// The user the session layer resolved for this request, if any.
    pub async fn session_user() -> Option<SessionUser> {
        leptos_axum::extract::<axum::Extension<SessionUser>>()
            .await
            .ok()
            .map(|axum::Extension(user)| user)
    }

    /// The signed-in user, or [`AppError::NotSignedIn`].
    pub async fn require_user() -> Result<SessionUser, AppError> {
        match session_user().await {
            Some(user) => Ok(user),
            None => {
                set_status(401);
                Err(AppError::NotSignedIn)
            }
        }
    }

    /// Sets the HTTP status of the response being rendered to what `error` means: a page
    /// that shows an error must not answer 200.
    pub fn set_error_status(error: &AppError) {
        set_status(error.refusal().http_status());
    }

    /// Sets the HTTP status of the response being rendered.
    pub fn set_status(code: u16) {
        if let (Some(options), Ok(status)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            axum::http::StatusCode::from_u16(code),
        ) {
            options.set_status(status);
        }
    }
}
