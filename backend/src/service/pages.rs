//! What the pages read: the patch list, a patch page with its rendered revision (cached,
//! rendered once however many ask), interdiffs, the audit page, users and the policy:
//! the [`Workbench`] the Leptos server functions call.

use crate::render::DiffRenderer;
use crate::service::review;
use crate::store::patches::StoredRevision;
use crate::store::{Database, DbError};
use graftbench_app::api::ssr::{BoxFuture, Workbench};
use graftbench_app::model::{
    AppError, AuditEventView, AuditFilter, AuditPage, CheckpointView, ConsideredView, ImpactView,
    InterdiffView, MailView, PatchPage, PatchSummary, PolicyView, ReviewView, RevisionView, Role,
    SegmentView, SessionUser, TargetPage, TargetsPage, UserAccount,
};
use graftbench_domain::eligibility::{LoadedPolicy, Policy};
use graftbench_domain::workflow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Every patch, most urgent first: open ones by deadline, then closed ones, newest
/// first.
pub async fn list_patches(db: &Database, policy: &Policy) -> Result<Vec<PatchSummary>, DbError> {
    let rows = db.listed_patches().await?;
    let mut review: HashMap<i64, _> = db
        .all_review_facts()
        .await?
        .into_iter()
        .map(|(facts, sign_offs)| (facts.id, (facts, sign_offs)))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let mut list = rows
        .into_iter()
        .map(|row| {
            let id = row.id;
            let (facts, sign_offs) = review
                .remove(&id)
                .ok_or_else(|| DbError::Corrupt(format!("patch {id} has no revision")))?;
            let evaluation = review::evaluate(&facts, &sign_offs, policy);
            // The stored state is what every change computed; the list shows it, and
            // eligibility as the policy in force sees it.
            let state = facts.stored_state;
            Ok(PatchSummary {
                id,
                title: row.title,
                cves: row.cves,
                author: row.author,
                created_at: row.created_at,
                revisions: row.revisions,
                state,
                deadline: review::deadline(&facts, state, policy, now),
                eligible: evaluation.eligibility.eligible,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    // Open first, soonest due first; then closed, newest first (the query's order).
    list.sort_by(|a, b| {
        let key = |p: &PatchSummary| match p.deadline.seconds_left {
            Some(left) => (0, left),
            None => (1, 0),
        };
        key(a).cmp(&key(b))
    });
    Ok(list)
}

/// The most events the audit page shows at once (the newest that match).
pub const AUDIT_PAGE_LIMIT: i64 = 500;
/// The most checkpoints the audit page lists (the API lists more).
pub const AUDIT_PAGE_CHECKPOINTS: i64 = 5;

/// How many rendered revisions to keep in memory.
const RENDER_CACHE_ENTRIES: usize = 32;

/// A revision's rendering, or the one render of it under way: concurrent requests for
/// the same revision wait for that render instead of starting their own.
type RenderSlot = Arc<tokio::sync::OnceCell<Arc<RevisionView>>>;

/// Rendered revisions by SHA-256. A revision's bytes never change, so its rendering
/// never goes stale; only the renderer's own version could change it, and that changes
/// only with a new binary.
#[derive(Default)]
struct RenderCache {
    entries: HashMap<String, RenderSlot>,
    order: VecDeque<String>,
}

impl RenderCache {
    /// The slot for `sha256`, made (and the oldest slot dropped) when there is none.
    fn slot(&mut self, sha256: &str) -> RenderSlot {
        if let Some(slot) = self.entries.get(sha256) {
            return Arc::clone(slot);
        }
        let slot = RenderSlot::default();
        self.entries.insert(sha256.to_owned(), Arc::clone(&slot));
        self.order.push_back(sha256.to_owned());
        while self.order.len() > RENDER_CACHE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
        slot
    }
}

/// The [`Workbench`] the pages use, over the database.
pub struct DbWorkbench {
    db: Database,
    policy: Arc<LoadedPolicy>,
    renderer: Arc<DiffRenderer>,
    rendered: Mutex<RenderCache>,
    renders_started: AtomicUsize,
    target_root: Option<std::path::PathBuf>,
    no_target_notice: Option<String>,
}

impl DbWorkbench {
    /// Names `root` as the directory in-house targets are registered from (pages show it).
    pub fn with_target_root(mut self, root: Option<std::path::PathBuf>) -> DbWorkbench {
        self.target_root = root;
        self
    }

    /// Why there is no kernel target, when the server knows (see
    /// [`crate::web::ServerConfig::no_target_notice`]).
    pub fn with_no_target_notice(mut self, notice: Option<String>) -> DbWorkbench {
        self.no_target_notice = notice;
        self
    }

    /// A workbench over `db`.
    pub fn new(
        db: Database,
        renderer: Arc<DiffRenderer>,
        policy: Arc<LoadedPolicy>,
    ) -> DbWorkbench {
        DbWorkbench {
            db,
            policy,
            renderer,
            rendered: Mutex::new(RenderCache::default()),
            renders_started: AtomicUsize::new(0),
            target_root: None,
            no_target_notice: None,
        }
    }

    /// The rendering of revision `number` of patch `id` (whose bytes hash to `sha256`),
    /// from the cache, or rendered once however many requests ask for it at the same time.
    /// The bytes are read (and checked against their hash) only to render them.
    async fn rendered(
        &self,
        id: i64,
        number: i64,
        sha256: &str,
    ) -> Result<Arc<RevisionView>, AppError> {
        let slot = match self.rendered.lock() {
            Ok(mut cache) => cache.slot(sha256),
            // A poisoned cache only costs a render.
            Err(_) => RenderSlot::default(),
        };
        let view = slot
            .get_or_try_init(|| async move {
                let Some(stored) = self.db.revision(id, number).await.map_err(internal)? else {
                    return Err(AppError::NotFound(format!(
                        "revision {number} of patch {id}"
                    )));
                };
                self.renders_started.fetch_add(1, Ordering::Relaxed);
                let renderer = Arc::clone(&self.renderer);
                // Parsing and highlighting are CPU work: off the async workers.
                tokio::task::spawn_blocking(move || render_revision(&renderer, stored))
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "rendering task failed");
                        AppError::Internal
                    })?
                    .map(Arc::new)
            })
            .await?;
        Ok(Arc::clone(view))
    }

    /// How many renders have started since the server did: for tests that show
    /// concurrent requests share one.
    pub fn renders_started(&self) -> usize {
        self.renders_started.load(Ordering::Relaxed)
    }

    /// The patch page for one revision (the latest when `revision` is `None`).
    pub async fn page(
        &self,
        user: &SessionUser,
        id: i64,
        revision: Option<i64>,
    ) -> Result<PatchPage, AppError> {
        let Some(patch) = self.db.patch(id).await.map_err(internal)? else {
            return Err(AppError::NotFound(format!("patch {id}")));
        };
        let revisions = self.db.revisions(id).await.map_err(internal)?;
        let number = match revision {
            Some(n) => n,
            None => revisions.last().map(|r| r.number).unwrap_or(1),
        };
        let Some(summary) = revisions.iter().find(|r| r.number == number) else {
            return Err(AppError::NotFound(format!(
                "revision {number} of patch {id}"
            )));
        };
        let view = self.rendered(id, number, &summary.sha256).await?;
        // The same bytes may be revision 1 of one patch and revision 3 of another.
        let shown = RevisionView {
            number,
            ..(*view).clone()
        };
        let review = self.review(user, id).await.map_err(internal)?;
        let mut pitfalls = crate::service::impact::pitfalls_of(&self.db, id, number).await?;
        for pitfall in &mut pitfalls {
            let (side, line) = pitfall.anchor_line();
            pitfall.considered = review
                .threads
                .iter()
                .filter(|t| {
                    t.revision == number
                        && t.pitfall.as_deref() == Some(pitfall.kind.as_str())
                        && t.path == pitfall.path
                        && (t.side.as_str(), t.line) == (side, line)
                })
                .filter_map(|t| {
                    t.comments.first().map(|c| ConsideredView {
                        by: c.author.clone(),
                        comment: c.body.clone(),
                        at: c.created_at.clone(),
                        revision: t.revision,
                    })
                })
                .collect();
        }
        Ok(PatchPage {
            info: patch,
            revisions,
            shown,
            review,
            pitfalls,
        })
    }
}

impl DbWorkbench {
    /// The review side of the patch page, for `user`.
    pub async fn review(&self, user: &SessionUser, id: i64) -> Result<ReviewView, DbError> {
        review_view(&self.db, &self.policy.policy, user, id).await
    }
}

/// The review side of a patch for `user`: state, eligibility, deadline, sign-offs,
/// threads and the actions the rules offer.
pub async fn review_view(
    db: &Database,
    policy: &Policy,
    user: &SessionUser,
    id: i64,
) -> Result<ReviewView, DbError> {
    {
        let (facts, sign_offs) = db
            .review_facts(id)
            .await?
            .ok_or_else(|| DbError::Corrupt(format!("patch {id} has no revision")))?;
        let evaluation = review::evaluate(&facts, &sign_offs, policy);
        let state = evaluation.state;
        let mut actions = workflow::offered(
            user.id,
            &user.roles,
            facts.author_id,
            state,
            &review::standing(&facts, &sign_offs, user.id),
        );
        if policy.role_grants_need_second_admin {
            // The four-eyes rule on granted roles reads the accounts: asked only where it
            // can refuse, the same way the action asks it.
            let mut tx = db.begin().await?;
            let mut kept = Vec::with_capacity(actions.len());
            for action in actions {
                match review::granted_independently(&mut tx, id, user.id, action).await {
                    Ok(()) => kept.push(action),
                    Err(review::ReviewError::Db(e)) => return Err(e),
                    Err(_) => {}
                }
            }
            actions = kept;
        }
        Ok(ReviewView {
            state,
            current_revision: facts.current_revision.get(),
            current_sha256: facts.current_sha256.to_string(),
            approvals: evaluation.approvals,
            approvals_required: policy.approvals_required,
            deadline: review::deadline(&facts, state, policy, time::OffsetDateTime::now_utc()),
            eligibility: evaluation.eligibility,
            sign_offs: review::sign_off_views(&sign_offs, facts.current_revision),
            threads: db.threads(id).await?,
            actions,
        })
    }
}

/// Parses and renders a stored revision.
pub fn render_revision(
    renderer: &DiffRenderer,
    stored: StoredRevision,
) -> Result<RevisionView, AppError> {
    let parsed = analyzer::patch::parse(&stored.diff).map_err(|e| {
        // It parsed when it was accepted; failing now means the parser changed.
        tracing::error!(sha256 = %stored.sha256, error = %e, "stored revision no longer parses");
        AppError::Internal
    })?;
    let stats = parsed.stats();
    Ok(RevisionView {
        number: stored.number,
        sha256: stored.sha256,
        format: stored.format,
        mail: parsed.mail.as_ref().map(|m| MailView {
            commit: m.commit.clone(),
            from: m.from.clone(),
            date: m.date.clone(),
            subject: m.subject.clone(),
            message: m.message.clone(),
        }),
        files_changed: stats.files,
        added: stats.added,
        removed: stats.removed,
        files: renderer.render(&parsed),
    })
}

fn internal(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "store error");
    AppError::Internal
}

impl Workbench for DbWorkbench {
    fn list_patches<'a>(
        &'a self,
        _user: &'a SessionUser,
    ) -> BoxFuture<'a, Result<Vec<PatchSummary>, AppError>> {
        Box::pin(async move {
            list_patches(&self.db, &self.policy.policy)
                .await
                .map_err(internal)
        })
    }

    fn patch_page<'a>(
        &'a self,
        user: &'a SessionUser,
        id: i64,
        revision: Option<i64>,
    ) -> BoxFuture<'a, Result<PatchPage, AppError>> {
        Box::pin(self.page(user, id, revision))
    }

    fn impact<'a>(
        &'a self,
        _user: &'a SessionUser,
        id: i64,
        revision: i64,
        target: Option<String>,
        query: String,
    ) -> BoxFuture<'a, Result<ImpactView, AppError>> {
        Box::pin(crate::service::impact::impact_view(
            &self.db,
            crate::service::impact::ImpactQuery {
                patch: id,
                revision,
                target,
                query,
                no_target_notice: self.no_target_notice.clone(),
            },
        ))
    }

    fn interdiff<'a>(
        &'a self,
        _user: &'a SessionUser,
        id: i64,
        from: i64,
        to: i64,
    ) -> BoxFuture<'a, Result<InterdiffView, AppError>> {
        Box::pin(async move {
            let Some(info) = self.db.patch(id).await.map_err(internal)? else {
                return Err(AppError::NotFound(format!("patch {id}")));
            };
            let mut sides = Vec::with_capacity(2);
            let mut shas = Vec::with_capacity(2);
            for number in [from, to] {
                let stored = self.db.revision(id, number).await.map_err(internal)?;
                let Some(stored) = stored else {
                    return Err(AppError::NotFound(format!(
                        "revision {number} of patch {id}"
                    )));
                };
                shas.push(stored.sha256.clone());
                sides.push(stored);
            }
            let replace_sets =
                crate::service::impact::replace_set_changes(&self.db, id, &shas[0], &shas[1])
                    .await?;
            // Two diffs of up to 5 MiB each to parse, compare and highlight: CPU work, off
            // the async workers.
            let renderer = Arc::clone(&self.renderer);
            let (files, rebased, message) = tokio::task::spawn_blocking(move || {
                let [older, newer] = [&sides[0], &sides[1]].map(|stored| {
                    analyzer::patch::parse(&stored.diff).map_err(|e| {
                        // It parsed when it was accepted; failing now means the parser changed.
                        tracing::error!(sha256 = %stored.sha256, error = %e, "stored revision no longer parses");
                        AppError::Internal
                    })
                });
                let (older, newer) = (older?, newer?);
                let diff = crate::interdiff::interdiff(&older, &newer);
                let files = renderer.render(&analyzer::patch::Patch {
                    format: newer.format,
                    mail: None,
                    files: diff.files,
                });
                Ok::<_, AppError>((files, diff.rebased, diff.message))
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "interdiff task failed");
                AppError::Internal
            })??;
            Ok(InterdiffView {
                info,
                revisions: self.db.revisions(id).await.map_err(internal)?,
                from,
                to,
                files,
                rebased,
                message,
                replace_sets,
            })
        })
    }

    fn audit<'a>(
        &'a self,
        user: &'a SessionUser,
        filter: AuditFilter,
    ) -> BoxFuture<'a, Result<AuditPage, AppError>> {
        Box::pin(async move {
            if !user.reads_audit() {
                return Err(AppError::Forbidden(
                    "the audit trail is for auditors, security officers and admins".into(),
                ));
            }
            let (events, matched) = self
                .db
                .search_audit(&filter, AUDIT_PAGE_LIMIT)
                .await
                .map_err(internal)?;
            let check = crate::service::tree::check(&self.db)
                .await
                .map_err(internal)?;
            let checkpoints = self
                .db
                .checkpoints(AUDIT_PAGE_CHECKPOINTS)
                .await
                .map_err(internal)?;
            let oldest_online = self.db.oldest_online_event().await.map_err(internal)?;
            let segments = self.db.segments().await.map_err(internal)?;
            Ok(AuditPage {
                events: events
                    .into_iter()
                    .map(|e| AuditEventView {
                        seq: e.seq,
                        at: e.at,
                        actor: e.actor,
                        action: e.action,
                        subject: e.subject,
                        details: e.details,
                        hash: e.hash,
                    })
                    .collect(),
                matched,
                limit: AUDIT_PAGE_LIMIT,
                broken: check.broken,
                tree_leaves: i64::try_from(check.leaves).unwrap_or(i64::MAX),
                checkpoints: checkpoints
                    .into_iter()
                    .map(|c| CheckpointView {
                        size: c.size,
                        created_at: c.created_at,
                        root: c.root,
                    })
                    .collect(),
                online_months: self.policy.policy.audit.online_months,
                oldest_online: oldest_online.map(|e| (e.seq, e.at)),
                segments: segments
                    .into_iter()
                    .map(|s| SegmentView {
                        first_seq: s.first_seq,
                        last_seq: s.last_seq,
                        first_at: s.first_at,
                        last_at: s.last_at,
                        file: s.file,
                        sha256: s.sha256,
                    })
                    .collect(),
            })
        })
    }

    fn policy(&self) -> PolicyView {
        PolicyView {
            source: self.policy.source(),
            toml: self.policy.to_toml(),
        }
    }

    fn users<'a>(
        &'a self,
        user: &'a SessionUser,
    ) -> BoxFuture<'a, Result<Vec<UserAccount>, AppError>> {
        Box::pin(async move {
            if !user.has_role(Role::Admin) {
                return Err(AppError::Forbidden(
                    "managing users needs the admin role".into(),
                ));
            }
            self.db.list_users().await.map_err(internal)
        })
    }

    fn targets<'a>(
        &'a self,
        user: &'a SessionUser,
    ) -> BoxFuture<'a, Result<TargetsPage, AppError>> {
        Box::pin(async move {
            super::targets::targets_page(&self.db, self.target_root.as_deref(), user)
                .await
                .map_err(internal)
        })
    }

    fn target<'a>(
        &'a self,
        user: &'a SessionUser,
        name: String,
    ) -> BoxFuture<'a, Result<TargetPage, AppError>> {
        Box::pin(async move {
            super::targets::target_page(&self.db, user, &name)
                .await
                .map_err(internal)?
                .ok_or_else(|| AppError::NotFound(format!("target {name}")))
        })
    }
}
