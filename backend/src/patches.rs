//! Patches and revisions in the database, and the views the pages read.

use crate::clock;
use crate::db::{Database, DbError};
use crate::render::DiffRenderer;
use crate::review::{self, ReviewError};
use crate::submission::ValidSubmission;
use analyzer::patch::PatchFormat;
use graftbench_app::api::ssr::{BoxFuture, Workbench};
use graftbench_app::model::{
    AppError, AuditEventView, AuditFilter, AuditPage, InterdiffView, MailView, PatchInfo,
    PatchPage, PatchSummary, PolicyView, ReviewView, RevisionSummary, RevisionView, Role,
    SessionUser, State, UserAccount,
};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::eligibility::{LoadedPolicy, Policy};
use graftbench_domain::workflow;
use graftbench_domain::PatchId;
use sqlx::Row;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What storing a new patch returns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedPatch {
    /// Patch id.
    pub id: i64,
    /// Title as stored.
    pub title: String,
    /// Revision number (1).
    pub revision: i64,
    /// SHA-256 of revision 1.
    pub sha256: String,
}

fn format_name(format: PatchFormat) -> &'static str {
    match format {
        PatchFormat::Unified => "unified",
        PatchFormat::GitDiff => "git-diff",
        PatchFormat::Mail => "mail",
    }
}

/// A revision about to be stored, with its bytes.
pub(crate) struct NewRevision<'a> {
    pub(crate) patch_id: i64,
    pub(crate) number: i64,
    pub(crate) diff: &'a [u8],
    pub(crate) sha256: &'a str,
    pub(crate) format: PatchFormat,
    pub(crate) submitted_by: i64,
    pub(crate) at: &'a str,
}

impl NewRevision<'_> {
    /// Stores the bytes (once per content: the same diff may serve several revisions) and
    /// the revision pointing at them.
    pub(crate) async fn insert(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO diff_blobs (sha256, content, byte_len, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(self.sha256)
        .bind(self.diff)
        .bind(i64::try_from(self.diff.len()).unwrap_or(i64::MAX))
        .bind(self.at)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO revisions (patch_id, number, diff_sha256, format, submitted_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.patch_id)
        .bind(self.number)
        .bind(self.sha256)
        .bind(format_name(self.format))
        .bind(self.submitted_by)
        .bind(self.at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// One stored revision with its bytes.
#[derive(Debug, Clone)]
pub struct StoredRevision {
    /// Revision number.
    pub number: i64,
    /// SHA-256.
    pub sha256: String,
    /// Submission format.
    pub format: String,
    /// The bytes as submitted.
    pub diff: Vec<u8>,
}

impl Database {
    /// Stores a new patch and its revision 1 in one transaction.
    pub async fn create_patch(
        &self,
        author: &SessionUser,
        patch: &ValidSubmission,
    ) -> Result<CreatedPatch, DbError> {
        let now = clock::now();
        let mut tx = self.pool().begin().await?;
        // Nobody has signed off yet: a new patch is a draft or in review, nothing else.
        let (phase, state) = if patch.draft {
            ("draft", State::Draft)
        } else {
            ("open", State::InReview)
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO patches (title, cvss_vector, author_id, created_at, phase, state,
                 category, tier, reported_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&patch.title)
        .bind(&patch.cvss_vector)
        .bind(author.id.get())
        .bind(&now)
        .bind(phase)
        .bind(state.as_str())
        .bind(patch.category.as_str())
        .bind(patch.tier.as_str())
        .bind(&patch.reported_at)
        .fetch_one(&mut *tx)
        .await?;
        for (position, cve) in (0_i64..).zip(&patch.cves) {
            sqlx::query("INSERT INTO patch_cves (patch_id, position, cve_id) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(position)
                .bind(cve)
                .execute(&mut *tx)
                .await?;
        }
        let revision = NewRevision {
            patch_id: id,
            number: 1,
            diff: &patch.diff,
            sha256: &patch.sha256,
            format: patch.patch.format,
            submitted_by: author.id.get(),
            at: &now,
        };
        revision.insert(&mut tx).await?;
        crate::audit::append(
            &mut tx,
            &author.username,
            AuditAction::PatchSubmitted,
            &AuditSubject::Patch(PatchId(id)),
            &serde_json::json!({
                "title": patch.title,
                "revision": 1,
                "sha256": patch.sha256,
                "cves": patch.cves,
                "cvss_vector": patch.cvss_vector,
                "category": patch.category.as_str(),
                "tier": patch.tier.as_str(),
                "reported_at": patch.reported_at,
                "state": state.as_str(),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedPatch {
            id,
            title: patch.title.clone(),
            revision: 1,
            sha256: patch.sha256.clone(),
        })
    }

    async fn cves_by_patch(
        &self,
        patch_id: Option<i64>,
    ) -> Result<HashMap<i64, Vec<String>>, DbError> {
        let rows = match patch_id {
            Some(id) => {
                sqlx::query(
                    "SELECT patch_id, cve_id FROM patch_cves WHERE patch_id = $1 ORDER BY position",
                )
                .bind(id)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query("SELECT patch_id, cve_id FROM patch_cves ORDER BY patch_id, position")
                    .fetch_all(self.pool())
                    .await?
            }
        };
        let mut map: HashMap<i64, Vec<String>> = HashMap::new();
        for row in rows {
            map.entry(row.try_get("patch_id")?)
                .or_default()
                .push(row.try_get("cve_id")?);
        }
        Ok(map)
    }

    /// Every patch, most urgent first: open ones by deadline, then closed ones, newest
    /// first.
    pub async fn list_patches(&self, policy: &Policy) -> Result<Vec<PatchSummary>, DbError> {
        let rows = sqlx::query(
            "SELECT p.id, p.title, u.display_name AS author, p.created_at,
                    (SELECT COUNT(*) FROM revisions r WHERE r.patch_id = p.id) AS revisions
             FROM patches p JOIN users u ON u.id = p.author_id
             ORDER BY p.id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        let mut cves = self.cves_by_patch(None).await?;
        let mut review: HashMap<i64, _> = self
            .all_review_facts()
            .await
            .map_err(review_db_error)?
            .into_iter()
            .map(|(facts, sign_offs)| (facts.id, (facts, sign_offs)))
            .collect();
        let now = time::OffsetDateTime::now_utc();
        let mut list = rows
            .into_iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                let (facts, sign_offs) = review
                    .remove(&id)
                    .ok_or_else(|| DbError::Corrupt(format!("patch {id} has no revision")))?;
                let evaluation = review::evaluate(&facts, &sign_offs, policy);
                // The stored state is what every change computed; the list shows it, and
                // eligibility as the policy in force sees it.
                let state = facts.stored_state;
                Ok(PatchSummary {
                    id,
                    title: row.try_get("title")?,
                    cves: cves.remove(&id).unwrap_or_default(),
                    author: row.try_get("author")?,
                    created_at: row.try_get("created_at")?,
                    revisions: row.try_get("revisions")?,
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

    /// One patch's metadata.
    pub async fn patch(&self, id: i64) -> Result<Option<PatchInfo>, DbError> {
        let row = sqlx::query(
            "SELECT p.id, p.title, p.cvss_vector, u.display_name AS author, p.created_at
             FROM patches p JOIN users u ON u.id = p.author_id
             WHERE p.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PatchInfo {
            id,
            title: row.try_get("title")?,
            cves: self
                .cves_by_patch(Some(id))
                .await?
                .remove(&id)
                .unwrap_or_default(),
            cvss_vector: row.try_get("cvss_vector")?,
            author: row.try_get("author")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// A patch's revisions, oldest first.
    pub async fn revisions(&self, patch_id: i64) -> Result<Vec<RevisionSummary>, DbError> {
        let rows = sqlx::query(
            "SELECT r.number, r.diff_sha256, u.display_name AS submitted_by, r.created_at
             FROM revisions r JOIN users u ON u.id = r.submitted_by
             WHERE r.patch_id = $1 ORDER BY r.number",
        )
        .bind(patch_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(RevisionSummary {
                    number: row.try_get("number")?,
                    sha256: row.try_get("diff_sha256")?,
                    submitted_by: row.try_get("submitted_by")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// One revision with its bytes.
    pub async fn revision(
        &self,
        patch_id: i64,
        number: i64,
    ) -> Result<Option<StoredRevision>, DbError> {
        let row = sqlx::query(
            "SELECT r.number, r.diff_sha256, r.format, b.content
             FROM revisions r JOIN diff_blobs b ON b.sha256 = r.diff_sha256
             WHERE r.patch_id = $1 AND r.number = $2",
        )
        .bind(patch_id)
        .bind(number)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored = StoredRevision {
            number: row.try_get("number")?,
            sha256: row.try_get("diff_sha256")?,
            format: row.try_get("format")?,
            diff: row.try_get("content")?,
        };
        // Hashing 5 MiB takes milliseconds of CPU: off the async workers.
        let stored = tokio::task::spawn_blocking(move || {
            check_content_hash(&stored.sha256, &stored.diff).map(|()| stored)
        })
        .await
        .map_err(|e| DbError::Corrupt(format!("hashing task failed: {e}")))??;
        Ok(Some(stored))
    }

    /// Rows per table, for tests that must show a refused request wrote nothing.
    pub async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, DbError> {
        let mut counts = Vec::new();
        for table in [
            "users",
            "user_roles",
            "diff_blobs",
            "patches",
            "patch_cves",
            "revisions",
            "sign_offs",
            "comments",
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(self.pool())
                .await?;
            counts.push((table, n));
        }
        Ok(counts)
    }
}

/// Refuses bytes that do not hash to the SHA-256 they are stored under.
///
/// Revisions are content-addressed and sign-offs name the hash, so bytes changed in the
/// database would be shown and built under an approval given to other bytes.
pub fn check_content_hash(sha256: &str, content: &[u8]) -> Result<(), DbError> {
    use sha2::{Digest, Sha256};
    let actual = hex::encode(Sha256::digest(content));
    if actual == sha256 {
        return Ok(());
    }
    tracing::error!(
        target: "graftbench::security",
        stored = %sha256,
        actual = %actual,
        "ALERT: a stored diff does not match its SHA-256; refusing to serve it"
    );
    Err(DbError::Tampered {
        sha256: sha256.to_owned(),
        actual,
    })
}

/// Who may read the audit trail.
pub const AUDIT_READERS: [Role; 3] = [Role::Auditor, Role::SecurityOfficer, Role::Admin];
/// The most events the audit page shows at once (the newest that match).
pub const AUDIT_PAGE_LIMIT: i64 = 500;

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
}

impl DbWorkbench {
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
        Ok(PatchPage {
            info: patch,
            revisions,
            shown,
            review,
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
            .await
            .map_err(review_db_error)?
            .ok_or_else(|| DbError::Corrupt(format!("patch {id} has no revision")))?;
        let evaluation = review::evaluate(&facts, &sign_offs, policy);
        let state = evaluation.state;
        Ok(ReviewView {
            state,
            current_revision: facts.current_revision.get(),
            current_sha256: facts.current_sha256.clone(),
            approvals: evaluation.approvals,
            approvals_required: policy.approvals_required,
            deadline: review::deadline(&facts, state, policy, time::OffsetDateTime::now_utc()),
            eligibility: evaluation.eligibility,
            sign_offs: review::sign_off_views(&sign_offs, facts.current_revision),
            threads: db.threads(id).await.map_err(review_db_error)?,
            actions: workflow::offered(user.id, &user.roles, facts.author_id, state),
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

/// A review error met while reading: only the database can fail there.
fn review_db_error(e: ReviewError) -> DbError {
    match e {
        ReviewError::Db(e) => e,
        other => DbError::Corrupt(other.to_string()),
    }
}

fn internal(e: DbError) -> AppError {
    tracing::error!(error = %e, "database error");
    AppError::Internal
}

impl Workbench for DbWorkbench {
    fn list_patches<'a>(
        &'a self,
        _user: &'a SessionUser,
    ) -> BoxFuture<'a, Result<Vec<PatchSummary>, AppError>> {
        Box::pin(async move {
            self.db
                .list_patches(&self.policy.policy)
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
            for number in [from, to] {
                let stored = self.db.revision(id, number).await.map_err(internal)?;
                let Some(stored) = stored else {
                    return Err(AppError::NotFound(format!(
                        "revision {number} of patch {id}"
                    )));
                };
                sides.push(stored.diff);
            }
            // Two diffs of up to 5 MiB each: CPU work, off the async workers.
            let hunks = tokio::task::spawn_blocking(move || {
                crate::interdiff::interdiff(&sides[0], &sides[1])
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "interdiff task failed");
                AppError::Internal
            })?;
            Ok(InterdiffView {
                info,
                revisions: self.db.revisions(id).await.map_err(internal)?,
                from,
                to,
                hunks,
            })
        })
    }

    fn audit<'a>(
        &'a self,
        user: &'a SessionUser,
        filter: AuditFilter,
    ) -> BoxFuture<'a, Result<AuditPage, AppError>> {
        Box::pin(async move {
            if !AUDIT_READERS.iter().any(|r| user.has_role(*r)) {
                return Err(AppError::Forbidden(
                    "the audit trail is for auditors, security officers and admins".into(),
                ));
            }
            let (events, matched) = self
                .db
                .search_audit(&filter, AUDIT_PAGE_LIMIT)
                .await
                .map_err(internal)?;
            let broken = self
                .db
                .verify_audit()
                .await
                .map_err(internal)?
                .err()
                .map(|b| b.to_string());
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
                broken,
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
}
