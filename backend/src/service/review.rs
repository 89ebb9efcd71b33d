//! Review: sign-offs, revisions and the patch's state, as use cases over the store.
//!
//! Every change runs in one transaction that starts by taking the patch's review lock
//! ([`reviews::lock`]): changes to one patch queue behind each other and each sees the last
//! one's result. Inside, the rules decide ([`workflow::allowed`] on the state computed
//! from the rows, never from what the client believes), the change is written, the state
//! is computed again and stored, and every step is an audit event in the same
//! transaction.

use crate::clock;
use crate::service::submit::ValidDiff;
use crate::store::audit;
use crate::store::comments;
use crate::store::patches::NewRevision;
use crate::store::reviews::{self, PatchFacts, ReviewRows, StoredSignOff};
use crate::store::{self, Database, DbError, Tx};
use graftbench_app::model::{
    Action, Category, CvssView, DeadlineView, EligibilityView, Role, SessionUser, SignOffView,
    State, Verdict,
};
use graftbench_domain::audit::{AuditAction, AuditSubject, SignOffKind};
use graftbench_domain::eligibility::{self, Facts, Policy};
use graftbench_domain::workflow::{self, Denied, Phase, SignOff};
use graftbench_domain::{PatchId, Refusal, RevisionNumber, UserId};
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

impl ReviewError {
    /// How this refusal is answered ([`Refusal`]'s table); only the store fails with 500.
    pub fn refusal(&self) -> Refusal {
        match self {
            ReviewError::Denied(denied) => denied.refusal(),
            ReviewError::NotFound(_) => Refusal::NotFound,
            ReviewError::StaleRevision { .. } | ReviewError::Conflict(_) => Refusal::Conflict,
            ReviewError::Invalid(_) => Refusal::Invalid,
            ReviewError::Db(_) => Refusal::Internal,
        }
    }
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
            analysis_problem: facts.analysis_problem.as_deref(),
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

/// Takes the patch's lock in `tx` and reads its rows; no such patch is a 404.
async fn lock(tx: &mut Tx, patch_id: i64) -> Result<ReviewRows, ReviewError> {
    reviews::lock(tx, patch_id)
        .await?
        .ok_or_else(|| ReviewError::NotFound(format!("patch {patch_id}")))
}

/// Re-reads what changed, computes the state and stores it; a change of state is an
/// audit event of its own.
async fn settle(
    tx: &mut Tx,
    patch_id: i64,
    actor: &str,
    policy: &Policy,
) -> Result<State, ReviewError> {
    let ReviewRows { facts, sign_offs } = reviews::read(tx, patch_id)
        .await?
        .ok_or_else(|| ReviewError::NotFound(format!("patch {patch_id}")))?;
    let evaluation = evaluate(&facts, &sign_offs, policy);
    if evaluation.state != facts.stored_state {
        reviews::store_state(tx, patch_id, evaluation.state).await?;
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
    if facts.current_sha256.to_string().starts_with(&named) {
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
            current_sha256: facts.current_sha256.to_string(),
        }),
        None => Err(ReviewError::NotFound(format!(
            "a revision of patch {} with sha256 {named}",
            facts.id
        ))),
    }
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
    /// The user's drafts published with a verdict: the comments' ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<i64>,
}

/// Takes `action` on a patch for `user`: checked against the rules, written, the
/// state recomputed, all audited, in one transaction. Comments and revisions have
/// their own functions ([`crate::service::comments::add_comment`], [`upload_revision`]).
pub async fn act(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    action: Action,
    request: &ActionRequest,
    policy: &Policy,
) -> Result<ActionOutcome, ReviewError> {
    let mut tx = db.begin().await?;
    let ReviewRows { facts, sign_offs } = lock(&mut tx, patch_id).await?;
    let now_state = evaluate(&facts, &sign_offs, policy).state;
    workflow::allowed(action, user.id, &user.roles, facts.author_id, now_state)?;
    workflow::applies(action, &standing(&facts, &sign_offs, user.id))?;
    if policy.role_grants_need_second_admin {
        granted_independently(&mut tx, patch_id, user.id, action).await?;
    }
    let subject = AuditSubject::Patch(PatchId(patch_id));
    let now = clock::now();
    let mut published = Vec::new();
    match action {
        Action::Approve | Action::Reject | Action::SignException => {
            let revisions = reviews::revision_hashes(&mut tx, patch_id).await?;
            names_current(&facts, request.revision_sha256.as_deref(), &revisions)?;
            let (verdict, required) = match action {
                Action::Approve => (SignOffKind::Approve, None),
                Action::Reject => (SignOffKind::Reject, Some("a rejection")),
                _ => (SignOffKind::Exception, Some("an exception sign-off")),
            };
            let comment = checked_comment(&request.comment, required)?;
            // A new verdict replaces the same person's earlier one on this revision.
            reviews::replace_sign_off(&mut tx, &facts, user.id, verdict, &comment, &now).await?;
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
            // The reviewer's drafts go out with the verdict (Gerrit's reply), where the
            // rules let them comment now.
            let may_comment = workflow::allowed(
                Action::Comment,
                user.id,
                &user.roles,
                facts.author_id,
                now_state,
            );
            if may_comment.is_ok() {
                published = comments::publish_drafts(
                    &mut tx,
                    patch_id,
                    (user.id.get(), &user.username),
                    &now,
                    Some(action.as_str()),
                )
                .await?;
            }
        }
        Action::WithdrawSignOff => {
            let withdrawn = reviews::withdraw_sign_off(
                &mut tx,
                patch_id,
                facts.current_revision,
                user.id,
                &now,
            )
            .await?;
            let Some(verdict) = withdrawn else {
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
            reviews::set_phase(&mut tx, patch_id, phase).await?;
            audit::append(
                &mut tx,
                &user.username,
                event,
                &subject,
                &serde_json::json!({
                    "from": reviews::phase_name(facts.phase),
                    "to": reviews::phase_name(phase),
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
    store::commit(tx).await?;
    Ok(ActionOutcome {
        patch: patch_id,
        action,
        state,
        revision: facts.current_revision.get(),
        published,
    })
}

/// Stores the next revision of a patch. Sign-offs on earlier revisions stop counting.
pub async fn upload_revision(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    diff: &ValidDiff,
    policy: &Policy,
) -> Result<ActionOutcome, ReviewError> {
    let mut tx = db.begin().await?;
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
    let files = crate::service::submit::revision_files(&diff.patch);
    NewRevision {
        patch_id,
        number,
        diff: &diff.diff,
        sha256: diff.sha256,
        format: diff.patch.format,
        submitted_by: user.id.get(),
        at: &now,
        files: &files,
    }
    .insert(&mut tx)
    .await?;
    crate::service::analysis_queue::queue_for_revision(
        &mut tx,
        patch_id,
        number,
        &diff.sha256.to_string(),
    )
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
    // The scope was the previous revision's: the new one's comes with its analyses (an
    // identical diff analysed before has them already).
    crate::store::targets::refresh_scope_in(&mut tx, patch_id).await?;
    let state = settle(&mut tx, patch_id, &user.username, policy).await?;
    store::commit(tx).await?;
    Ok(ActionOutcome {
        patch: patch_id,
        action: Action::UploadRevision,
        state,
        revision: number,
        published: Vec::new(),
    })
}

/// Takes patch `patch_id`'s lock in `tx` for a change the system makes (an analysis
/// recorded); [`settle_as_system`] then brings its state up to date.
pub async fn lock_for_system(tx: &mut Tx, patch_id: i64) -> Result<(), ReviewError> {
    lock(tx, patch_id).await.map(drop)
}

/// Computes patch `patch_id`'s state after a change the system made, in `tx` (locked
/// with [`lock_for_system`]); a change of state is audited as the system's.
pub async fn settle_as_system(
    tx: &mut Tx,
    patch_id: i64,
    policy: &Policy,
) -> Result<State, ReviewError> {
    settle(tx, patch_id, "system", policy).await
}

/// Computes every open patch's state again under `policy` (at start-up: the policy
/// file may have changed), recording each change as the `system`'s.
pub async fn recompute_states(db: &Database, policy: &Policy) -> Result<usize, ReviewError> {
    let mut changed = 0;
    for id in db.open_patch_ids().await? {
        let mut tx = db.begin().await?;
        let ReviewRows { facts, .. } = lock(&mut tx, id).await?;
        if settle(&mut tx, id, "system", policy).await? != facts.stored_state {
            changed += 1;
        }
        store::commit(tx).await?;
    }
    Ok(changed)
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
            revision_sha256: s.revision_sha256.to_string(),
            comment: s.comment.clone(),
            created_at: s.created_at.clone(),
            withdrawn_at: s.withdrawn_at.clone(),
            outdated: s.verdict != SignOffKind::Exception && s.revision != current_revision,
        })
        .collect()
}

/// Where `actor` stands on a patch: the standing [`workflow::applies`] decides by, for
/// the page's offer and for the action alike.
pub fn standing(
    facts: &PatchFacts,
    sign_offs: &[StoredSignOff],
    actor: UserId,
) -> workflow::Standing {
    workflow::Standing::of(
        actor,
        facts.current_revision,
        facts.category == Category::Vulnerability,
        sign_offs
            .iter()
            .map(|s| (s.user_id, s.revision, s.verdict, s.withdrawn_at.is_some())),
    )
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
pub async fn granted_independently(
    tx: &mut Tx,
    patch_id: i64,
    user_id: UserId,
    action: Action,
) -> Result<(), ReviewError> {
    let (role, name) = match action {
        Action::Approve => (Role::Reviewer, "reviewer"),
        Action::SignException => (Role::SecurityOfficer, "security officer"),
        _ => return Ok(()),
    };
    let by_a_writer = reviews::role_granted_by_a_writer(tx, patch_id, user_id, role).await?;
    if by_a_writer {
        return Err(ReviewError::Denied(workflow::Denied::GrantedByAuthor {
            role: name,
        }));
    }
    Ok(())
}

/// Takes the patch's lock in `tx` and computes its state: for changes that need the
/// rules' answer but do not move the state themselves (comments).
pub async fn lock_and_evaluate(
    tx: &mut Tx,
    patch_id: i64,
    policy: &Policy,
) -> Result<LockedState, ReviewError> {
    let ReviewRows { facts, sign_offs } = lock(tx, patch_id).await?;
    Ok(LockedState {
        author_id: facts.author_id,
        state: evaluate(&facts, &sign_offs, policy).state,
    })
}
