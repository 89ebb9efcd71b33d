//! Review in the database: sign-offs, revisions, line comments and the patch's state.
//!
//! Every change runs in one transaction that starts by bumping the patch's
//! `review_version`: that first write takes SQLite's write lock (waiting out the busy
//! timeout rather than failing on a stale read snapshot) and PostgreSQL's row lock, so
//! changes to one patch queue behind each other and each sees the last one's result.
//! Inside, the rules decide ([`workflow::allowed`] on the state computed from the rows,
//! never from what the client believes), the change is written, the state is computed
//! again and stored, and every step is an audit event in the same transaction.

use crate::audit;
use crate::clock;
use crate::db::{Database, DbError};
use crate::patches::NewRevision;
use crate::submission::ValidDiff;
use graftbench_app::model::{
    Action, Category, CvssView, DeadlineView, EligibilityView, Role, SessionUser, SignOffView,
    State, Tier, Verdict,
};
use graftbench_domain::audit::{AuditAction, AuditSubject, SignOffKind};
use graftbench_domain::eligibility::{self, Facts, Policy};
use graftbench_domain::workflow::{self, Denied, Phase, SignOff};
use graftbench_domain::{PatchId, RevisionNumber, UserId};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The longest comment or justification accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 10_000;

/// Why a review request was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The rules do not allow it (role, author, state).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// No such patch, revision or thread.
    #[error("{0} not found")]
    NotFound(String),
    /// A sign-off that names a revision which is no longer the current one.
    #[error(
        "revision {named} is no longer current: revision {current} (sha256 {current_sha256}) \
         is. Review it and sign off again"
    )]
    StaleRevision {
        /// What the request named (number and short hash, or the hash).
        named: String,
        /// The current revision's number.
        current: i64,
        /// Its SHA-256.
        current_sha256: String,
    },
    /// Allowed, but the request is missing something or names something that does not fit.
    #[error("{0}")]
    Invalid(String),
    /// Allowed in principle, but not now (nothing to withdraw, identical revision).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ReviewError {
    fn from(e: sqlx::Error) -> Self {
        ReviewError::Db(DbError::Sqlx(e))
    }
}

fn corrupt(what: String) -> ReviewError {
    ReviewError::Db(DbError::Corrupt(what))
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Draft => "draft",
        Phase::Open => "open",
        Phase::Rejected => "rejected",
        Phase::Withdrawn => "withdrawn",
    }
}

fn parse_phase(name: &str) -> Result<Phase, ReviewError> {
    Ok(match name {
        "draft" => Phase::Draft,
        "open" => Phase::Open,
        "rejected" => Phase::Rejected,
        "withdrawn" => Phase::Withdrawn,
        other => return Err(corrupt(format!("unknown phase `{other}`"))),
    })
}

/// What the rules need to know about a patch, read in one transaction.
#[derive(Debug, Clone)]
pub struct PatchFacts {
    /// Patch id.
    pub id: i64,
    /// Its author's user id.
    pub author_id: UserId,
    /// Stored phase.
    pub phase: Phase,
    /// Stored state (as last computed).
    pub stored_state: State,
    /// What it fixes.
    pub category: Category,
    /// Change tier.
    pub tier: Tier,
    /// When the problem was reported.
    pub reported_at: String,
    /// CVSS vector, may be empty.
    pub cvss_vector: String,
    /// Functions the module replaces, once analysed.
    pub functions_to_replace: Option<i64>,
    /// The latest revision.
    pub current_revision: RevisionNumber,
    /// Its SHA-256.
    pub current_sha256: String,
}

/// A sign-off row.
#[derive(Debug, Clone)]
pub struct StoredSignOff {
    /// Id.
    pub id: i64,
    /// Who.
    pub user_id: UserId,
    /// Display name.
    pub user: String,
    /// What it says.
    pub verdict: SignOffKind,
    /// Revision number.
    pub revision: RevisionNumber,
    /// Revision SHA-256.
    pub revision_sha256: String,
    /// Comment or justification.
    pub comment: String,
    /// When.
    pub created_at: String,
    /// When withdrawn, if it was.
    pub withdrawn_at: Option<String>,
}

/// What the rules make of a patch.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The state.
    pub state: State,
    /// Eligibility, with the scored vector.
    pub eligibility: EligibilityView,
    /// Approvals counted on the current revision.
    pub approvals: u32,
}

/// Applies the rules to a patch's facts and sign-offs: pure.
pub fn evaluate(facts: &PatchFacts, sign_offs: &[StoredSignOff], policy: &Policy) -> Evaluation {
    let scored = (!facts.cvss_vector.is_empty())
        .then(|| eligibility::score(&facts.cvss_vector).ok())
        .flatten();
    // The exception is about what the bug does, not about the code: a security officer's
    // justification stays valid across revisions until withdrawn.
    let justification = sign_offs
        .iter()
        .find(|s| s.verdict == SignOffKind::Exception && s.withdrawn_at.is_none())
        .map(|s| s.comment.as_str());
    let verdict = eligibility::assess(
        &Facts {
            cvss: scored.as_ref(),
            category: Some(facts.category),
            exception_justification: justification,
            functions_to_replace: facts
                .functions_to_replace
                .and_then(|n| usize::try_from(n).ok()),
        },
        policy,
    );
    let counted: Vec<SignOff> = sign_offs
        .iter()
        .filter_map(|s| {
            Some(SignOff {
                user: s.user_id,
                revision: s.revision,
                verdict: s.verdict.verdict()?,
                withdrawn: s.withdrawn_at.is_some(),
            })
        })
        .collect();
    let state = workflow::state(
        facts.phase,
        facts.author_id,
        facts.current_revision,
        &counted,
        verdict.eligible,
        policy,
    );
    let mut approvers: Vec<UserId> = counted
        .iter()
        .filter(|s| {
            s.revision == facts.current_revision
                && !s.withdrawn
                && s.verdict == Verdict::Approve
                && s.user != facts.author_id
        })
        .map(|s| s.user)
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    Evaluation {
        state,
        eligibility: EligibilityView {
            eligible: verdict.eligible,
            reasons: verdict.reasons,
            cvss: scored.map(|s| CvssView {
                vector: s.vector,
                version: s.version,
                score: s.score,
                severity: s.severity,
            }),
            category: facts.category,
        },
        approvals: u32::try_from(approvers.len()).unwrap_or(u32::MAX),
    }
}

/// The deadline of a patch as of `now`.
pub fn deadline(
    facts: &PatchFacts,
    state: State,
    policy: &Policy,
    now: OffsetDateTime,
) -> DeadlineView {
    let reported = OffsetDateTime::parse(&facts.reported_at, &Rfc3339).ok();
    let due = reported.map(|at| policy.deadline(facts.tier, at));
    DeadlineView {
        tier: facts.tier,
        reported_at: facts.reported_at.clone(),
        due_at: due.map(clock::format).unwrap_or_default(),
        seconds_left: due
            .filter(|_| state.is_active())
            .map(|due| (due - now).whole_seconds()),
    }
}

const FACTS_SQL: &str = "SELECT p.id, p.author_id, p.phase, p.state, p.category, p.tier,
        p.reported_at, p.cvss_vector, p.functions_to_replace,
        r.number AS current_revision, r.diff_sha256 AS current_sha256
    FROM patches p
    JOIN revisions r ON r.patch_id = p.id
        AND r.number = (SELECT MAX(number) FROM revisions WHERE patch_id = p.id)";

fn facts_from_row(row: &AnyRow) -> Result<PatchFacts, ReviewError> {
    let state: String = row.try_get("state")?;
    let category: String = row.try_get("category")?;
    let tier: String = row.try_get("tier")?;
    Ok(PatchFacts {
        id: row.try_get("id")?,
        author_id: UserId(row.try_get("author_id")?),
        phase: parse_phase(&row.try_get::<String, _>("phase")?)?,
        stored_state: State::parse(&state).ok_or_else(|| corrupt(format!("state `{state}`")))?,
        category: Category::parse(&category)
            .ok_or_else(|| corrupt(format!("category `{category}`")))?,
        tier: Tier::parse(&tier).ok_or_else(|| corrupt(format!("tier `{tier}`")))?,
        reported_at: row.try_get("reported_at")?,
        cvss_vector: row.try_get("cvss_vector")?,
        functions_to_replace: row.try_get("functions_to_replace")?,
        current_revision: RevisionNumber(row.try_get("current_revision")?),
        current_sha256: row.try_get("current_sha256")?,
    })
}

const SIGN_OFFS_SQL: &str = "SELECT s.id, s.user_id, u.display_name, s.verdict, s.revision,
        s.revision_sha256, s.comment, s.created_at, s.withdrawn_at
    FROM sign_offs s JOIN users u ON u.id = s.user_id
    WHERE s.patch_id = $1 ORDER BY s.id DESC";

fn sign_off_from_row(row: &AnyRow) -> Result<StoredSignOff, ReviewError> {
    Ok(StoredSignOff {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        user: row.try_get("display_name")?,
        verdict: {
            let verdict: String = row.try_get("verdict")?;
            SignOffKind::parse(&verdict).ok_or_else(|| corrupt(format!("verdict `{verdict}`")))?
        },
        revision: RevisionNumber(row.try_get("revision")?),
        revision_sha256: row.try_get("revision_sha256")?,
        comment: row.try_get("comment")?,
        created_at: row.try_get("created_at")?,
        withdrawn_at: row.try_get("withdrawn_at")?,
    })
}

/// A patch's facts and sign-offs, as read together.
struct ReviewRows {
    facts: PatchFacts,
    sign_offs: Vec<StoredSignOff>,
}

async fn lock(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
) -> Result<ReviewRows, ReviewError> {
    let bumped =
        sqlx::query("UPDATE patches SET review_version = review_version + 1 WHERE id = $1")
            .bind(patch_id)
            .execute(&mut **tx)
            .await?;
    if bumped.rows_affected() == 0 {
        return Err(ReviewError::NotFound(format!("patch {patch_id}")));
    }
    read(tx, patch_id)
        .await?
        .ok_or_else(|| ReviewError::NotFound(format!("patch {patch_id}")))
}

/// A patch's facts and sign-offs, on `conn` (a transaction's, or the pool's).
async fn read(conn: &mut AnyConnection, patch_id: i64) -> Result<Option<ReviewRows>, ReviewError> {
    let Some(row) = sqlx::query(&format!("{FACTS_SQL} WHERE p.id = $1"))
        .bind(patch_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let facts = facts_from_row(&row)?;
    let sign_offs = sqlx::query(SIGN_OFFS_SQL)
        .bind(patch_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(sign_off_from_row)
        .collect::<Result<_, _>>()?;
    Ok(Some(ReviewRows { facts, sign_offs }))
}

/// Re-reads what changed, computes the state and stores it; a change of state is an
/// audit event of its own.
async fn settle(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    actor: &str,
    policy: &Policy,
) -> Result<State, ReviewError> {
    let ReviewRows { facts, sign_offs } = read(tx, patch_id)
        .await?
        .ok_or_else(|| ReviewError::NotFound(format!("patch {patch_id}")))?;
    let evaluation = evaluate(&facts, &sign_offs, policy);
    if evaluation.state != facts.stored_state {
        sqlx::query("UPDATE patches SET state = $1 WHERE id = $2")
            .bind(evaluation.state.as_str())
            .bind(patch_id)
            .execute(&mut **tx)
            .await?;
        audit::append(
            tx,
            actor,
            AuditAction::PatchStateChanged,
            &AuditSubject::Patch(PatchId(patch_id)),
            &serde_json::json!({
                "from": facts.stored_state.as_str(),
                "to": evaluation.state.as_str(),
                "revision": facts.current_revision,
                "approvals": evaluation.approvals,
                "eligible": evaluation.eligibility.eligible,
            }),
        )
        .await?;
    }
    Ok(evaluation.state)
}

/// An action on a patch as a client sends it.
#[derive(Debug, Clone, Default)]
pub struct ActionRequest {
    /// For sign-offs: the SHA-256 of the revision reviewed (a unique prefix of at least
    /// 12 hex digits is accepted).
    pub revision_sha256: Option<String>,
    /// Comment, reason or justification.
    pub comment: String,
}

fn checked_comment(text: &str, required: Option<&str>) -> Result<String, ReviewError> {
    let text = text.trim();
    if text.is_empty() {
        if let Some(what) = required {
            return Err(ReviewError::Invalid(format!(
                "{what} needs a comment saying why"
            )));
        }
    }
    if text.chars().count() > MAX_COMMENT_CHARS {
        return Err(ReviewError::Invalid(format!(
            "the comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Checks that a sign-off names the current revision.
fn names_current(
    facts: &PatchFacts,
    named: Option<&str>,
    revisions: &[(i64, String)],
) -> Result<(), ReviewError> {
    let Some(named) = named.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(ReviewError::Invalid(format!(
            "a sign-off must name the revision it is for: send revision_sha256 \
             (the current revision {} is {})",
            facts.current_revision, facts.current_sha256
        )));
    };
    let named = named.to_ascii_lowercase();
    if named.len() < 12 || !named.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReviewError::Invalid(format!(
            "`{}` is not a revision's SHA-256 (64 hex digits, or a prefix of at least 12)",
            named.chars().take(70).collect::<String>()
        )));
    }
    if facts.current_sha256.starts_with(&named) {
        return Ok(());
    }
    let which = revisions
        .iter()
        .find(|(_, sha)| sha.starts_with(&named))
        .map(|(n, sha)| format!("r{n} ({})", sha.get(..12).unwrap_or(sha)));
    match which {
        Some(which) => Err(ReviewError::StaleRevision {
            named: which,
            current: facts.current_revision.get(),
            current_sha256: facts.current_sha256.clone(),
        }),
        None => Err(ReviewError::NotFound(format!(
            "a revision of patch {} with sha256 {named}",
            facts.id
        ))),
    }
}

async fn revision_hashes(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
) -> Result<Vec<(i64, String)>, ReviewError> {
    let rows = sqlx::query(
        "SELECT number, diff_sha256 FROM revisions WHERE patch_id = $1 ORDER BY number",
    )
    .bind(patch_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("number")?, r.try_get("diff_sha256")?)))
        .collect()
}

async fn set_phase(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    phase: Phase,
) -> Result<(), ReviewError> {
    sqlx::query("UPDATE patches SET phase = $1 WHERE id = $2")
        .bind(phase_name(phase))
        .bind(patch_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What an action left behind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionOutcome {
    /// The patch.
    pub patch: i64,
    /// The action taken.
    pub action: Action,
    /// The state afterwards.
    pub state: State,
    /// The current revision.
    pub revision: i64,
}

impl Database {
    /// Takes `action` on a patch for `user`: checked against the rules, written, the
    /// state recomputed, all audited, in one transaction. Comments and revisions have
    /// their own methods ([`Database::add_comment`], [`Database::upload_revision`]).
    pub async fn act(
        &self,
        user: &SessionUser,
        patch_id: i64,
        action: Action,
        request: &ActionRequest,
        policy: &Policy,
    ) -> Result<ActionOutcome, ReviewError> {
        let mut tx = self.pool().begin().await?;
        let ReviewRows { facts, sign_offs } = lock(&mut tx, patch_id).await?;
        let now_state = evaluate(&facts, &sign_offs, policy).state;
        workflow::allowed(action, user.id, &user.roles, facts.author_id, now_state)?;
        if policy.role_grants_need_second_admin {
            granted_independently(&mut tx, patch_id, user.id, action).await?;
        }
        let subject = AuditSubject::Patch(PatchId(patch_id));
        let now = clock::now();
        match action {
            Action::Approve | Action::Reject | Action::SignException => {
                let revisions = revision_hashes(&mut tx, patch_id).await?;
                names_current(&facts, request.revision_sha256.as_deref(), &revisions)?;
                let (verdict, required) = match action {
                    Action::Approve => (SignOffKind::Approve, None),
                    Action::Reject => (SignOffKind::Reject, Some("a rejection")),
                    _ => (SignOffKind::Exception, Some("an exception sign-off")),
                };
                if action == Action::SignException && facts.category == Category::Vulnerability {
                    return Err(ReviewError::Invalid(
                        "this patch is filed as a vulnerability: its CVSS score decides, \
                         there is no exception to sign off"
                            .into(),
                    ));
                }
                let comment = checked_comment(&request.comment, required)?;
                // A new verdict replaces the same person's earlier one on this revision.
                let kinds: &[SignOffKind] = if verdict == SignOffKind::Exception {
                    &[SignOffKind::Exception]
                } else {
                    &[SignOffKind::Approve, SignOffKind::Reject]
                };
                for kind in kinds {
                    sqlx::query(
                        "UPDATE sign_offs SET withdrawn_at = $1
                         WHERE patch_id = $2 AND revision = $3 AND user_id = $4
                           AND verdict = $5 AND withdrawn_at IS NULL",
                    )
                    .bind(&now)
                    .bind(patch_id)
                    .bind(facts.current_revision.get())
                    .bind(user.id.get())
                    .bind(kind.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO sign_offs (patch_id, revision, revision_sha256, user_id,
                         verdict, comment, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(patch_id)
                .bind(facts.current_revision.get())
                .bind(&facts.current_sha256)
                .bind(user.id.get())
                .bind(verdict.as_str())
                .bind(&comment)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                audit::append(
                    &mut tx,
                    &user.username,
                    AuditAction::SignOff(verdict),
                    &subject,
                    &serde_json::json!({
                        "revision": facts.current_revision,
                        "sha256": facts.current_sha256,
                        "comment": comment,
                    }),
                )
                .await?;
            }
            Action::WithdrawSignOff => {
                let withdrawn: Vec<String> = sqlx::query_scalar(
                    "UPDATE sign_offs SET withdrawn_at = $1
                     WHERE patch_id = $2 AND revision = $3 AND user_id = $4
                       AND verdict IN ('approve', 'reject') AND withdrawn_at IS NULL
                     RETURNING verdict",
                )
                .bind(&now)
                .bind(patch_id)
                .bind(facts.current_revision.get())
                .bind(user.id.get())
                .fetch_all(&mut *tx)
                .await?;
                let Some(verdict) = withdrawn.first() else {
                    return Err(ReviewError::Conflict(format!(
                        "you have no sign-off on revision {} to withdraw",
                        facts.current_revision
                    )));
                };
                audit::append(
                    &mut tx,
                    &user.username,
                    AuditAction::SignOffWithdrawn,
                    &subject,
                    &serde_json::json!({
                        "revision": facts.current_revision,
                        "verdict": verdict,
                        "comment": checked_comment(&request.comment, None)?,
                    }),
                )
                .await?;
            }
            Action::Submit | Action::Decline | Action::Withdraw | Action::Reopen => {
                let (phase, event, required) = match action {
                    Action::Submit => (Phase::Open, AuditAction::PatchSubmittedForReview, None),
                    Action::Decline => (
                        Phase::Rejected,
                        AuditAction::PatchDeclined,
                        Some("declining a patch"),
                    ),
                    Action::Withdraw => (Phase::Withdrawn, AuditAction::PatchWithdrawn, None),
                    _ => (Phase::Draft, AuditAction::PatchReopened, None),
                };
                let comment = checked_comment(&request.comment, required)?;
                set_phase(&mut tx, patch_id, phase).await?;
                audit::append(
                    &mut tx,
                    &user.username,
                    event,
                    &subject,
                    &serde_json::json!({
                        "from": phase_name(facts.phase),
                        "to": phase_name(phase),
                        "comment": comment,
                    }),
                )
                .await?;
            }
            Action::Comment | Action::UploadRevision => {
                return Err(ReviewError::Invalid(format!(
                    "`{}` has its own endpoint: POST /api/v1/patches/{patch_id}/{}",
                    action.as_str(),
                    if action == Action::Comment {
                        "comments"
                    } else {
                        "revisions"
                    }
                )));
            }
        }
        let state = settle(&mut tx, patch_id, &user.username, policy).await?;
        tx.commit().await?;
        Ok(ActionOutcome {
            patch: patch_id,
            action,
            state,
            revision: facts.current_revision.get(),
        })
    }

    /// Stores the next revision of a patch. Sign-offs on earlier revisions stop counting.
    pub async fn upload_revision(
        &self,
        user: &SessionUser,
        patch_id: i64,
        diff: &ValidDiff,
        policy: &Policy,
    ) -> Result<ActionOutcome, ReviewError> {
        let mut tx = self.pool().begin().await?;
        let ReviewRows { facts, sign_offs } = lock(&mut tx, patch_id).await?;
        let now_state = evaluate(&facts, &sign_offs, policy).state;
        workflow::allowed(
            Action::UploadRevision,
            user.id,
            &user.roles,
            facts.author_id,
            now_state,
        )?;
        if diff.sha256 == facts.current_sha256 {
            return Err(ReviewError::Conflict(format!(
                "this diff is identical to revision {} (sha256 {})",
                facts.current_revision, facts.current_sha256
            )));
        }
        let now = clock::now();
        let number = facts.current_revision.get() + 1;
        NewRevision {
            patch_id,
            number,
            diff: &diff.diff,
            sha256: &diff.sha256,
            format: diff.patch.format,
            submitted_by: user.id.get(),
            at: &now,
        }
        .insert(&mut tx)
        .await?;
        audit::append(
            &mut tx,
            &user.username,
            AuditAction::RevisionUploaded,
            &AuditSubject::Patch(PatchId(patch_id)),
            &serde_json::json!({
                "revision": number,
                "sha256": diff.sha256,
                "previous": { "revision": facts.current_revision, "sha256": facts.current_sha256 },
            }),
        )
        .await?;
        let state = settle(&mut tx, patch_id, &user.username, policy).await?;
        tx.commit().await?;
        Ok(ActionOutcome {
            patch: patch_id,
            action: Action::UploadRevision,
            state,
            revision: number,
        })
    }

    /// Computes every open patch's state again under `policy` (at start-up: the policy
    /// file may have changed), recording each change as the `system`'s.
    pub async fn recompute_states(&self, policy: &Policy) -> Result<usize, ReviewError> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM patches WHERE phase = 'open' ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        let mut changed = 0;
        for id in ids {
            let mut tx = self.pool().begin().await?;
            let ReviewRows { facts, .. } = lock(&mut tx, id).await?;
            if settle(&mut tx, id, "system", policy).await? != facts.stored_state {
                changed += 1;
            }
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// A patch's facts and sign-offs, for pages.
    pub async fn review_facts(
        &self,
        patch_id: i64,
    ) -> Result<Option<(PatchFacts, Vec<StoredSignOff>)>, ReviewError> {
        let mut conn = self.pool().acquire().await?;
        Ok(read(&mut conn, patch_id)
            .await?
            .map(|locked| (locked.facts, locked.sign_offs)))
    }

    /// Every patch's facts with its live exception sign-offs, for the dashboard.
    pub async fn all_review_facts(
        &self,
    ) -> Result<Vec<(PatchFacts, Vec<StoredSignOff>)>, ReviewError> {
        let rows = sqlx::query(FACTS_SQL).fetch_all(self.pool()).await?;
        let exceptions: Vec<(i64, StoredSignOff)> = sqlx::query(
            "SELECT s.id, s.user_id, u.display_name, s.verdict, s.revision, s.revision_sha256,
                    s.patch_id, s.comment, s.created_at, s.withdrawn_at
             FROM sign_offs s JOIN users u ON u.id = s.user_id
             WHERE s.verdict = 'exception' AND s.withdrawn_at IS NULL",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("patch_id")?, sign_off_from_row(row)?)))
        .collect::<Result<_, ReviewError>>()?;
        rows.iter()
            .map(|row| {
                let facts = facts_from_row(row)?;
                let own = exceptions
                    .iter()
                    .filter(|(patch, _)| *patch == facts.id)
                    .map(|(_, s)| s.clone())
                    .collect();
                Ok((facts, own))
            })
            .collect()
    }
}

/// Sign-offs as shown: newest first, older revisions marked outdated.
pub fn sign_off_views(
    sign_offs: &[StoredSignOff],
    current_revision: RevisionNumber,
) -> Vec<SignOffView> {
    sign_offs
        .iter()
        .map(|s| SignOffView {
            id: s.id,
            user: s.user.clone(),
            verdict: s.verdict,
            revision: s.revision.get(),
            revision_sha256: s.revision_sha256.clone(),
            comment: s.comment.clone(),
            created_at: s.created_at.clone(),
            withdrawn_at: s.withdrawn_at.clone(),
            outdated: s.verdict != SignOffKind::Exception && s.revision != current_revision,
        })
        .collect()
}

/// Who wrote a patch and where it stands, read under its lock.
#[derive(Debug, Clone, Copy)]
pub struct LockedState {
    /// The author's user id.
    pub author_id: UserId,
    /// The state computed now.
    pub state: State,
}

/// Refuses a sign-off that counts (an approval, an exception) from someone whose signing
/// role was granted or confirmed by an admin who wrote the patch or one of its revisions,
/// or who created the account that did: otherwise an admin could make accounts that
/// approve the admin's own patches.
async fn granted_independently(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    user_id: UserId,
    action: Action,
) -> Result<(), ReviewError> {
    let (role, name) = match action {
        Action::Approve => (Role::Reviewer, "reviewer"),
        Action::SignException => (Role::SecurityOfficer, "security officer"),
        _ => return Ok(()),
    };
    // The writers of the patch, and the admins who made their accounts: an admin who
    // creates an author account and hands it the patch has still written it.
    let by_a_writer: i64 = sqlx::query_scalar(
        "WITH writers AS (
             SELECT author_id AS id FROM patches WHERE id = $3
             UNION SELECT submitted_by FROM revisions WHERE patch_id = $3
         ), touched AS (
             SELECT id FROM writers
             UNION SELECT u.created_by FROM users u JOIN writers w ON u.id = w.id
             WHERE u.created_by IS NOT NULL
         )
         SELECT COUNT(*) FROM user_roles ur
         WHERE ur.user_id = $1 AND ur.role = $2
           AND (ur.granted_by IN (SELECT id FROM touched)
                OR ur.confirmed_by IN (SELECT id FROM touched))",
    )
    .bind(user_id.get())
    .bind(role.as_str())
    .bind(patch_id)
    .fetch_one(&mut **tx)
    .await?;
    if by_a_writer > 0 {
        return Err(ReviewError::Denied(workflow::Denied::GrantedByAuthor {
            role: name,
        }));
    }
    Ok(())
}

/// Takes the patch's lock in `tx` and computes its state: for changes that need the
/// rules' answer but do not move the state themselves (comments).
pub async fn lock_and_evaluate(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    policy: &Policy,
) -> Result<LockedState, ReviewError> {
    let ReviewRows { facts, sign_offs } = lock(tx, patch_id).await?;
    Ok(LockedState {
        author_id: facts.author_id,
        state: evaluate(&facts, &sign_offs, policy).state,
    })
}
