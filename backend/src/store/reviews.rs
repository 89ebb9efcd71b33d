//! The rows the review rules read and write: a patch's facts (phase, stored state,
//! category, tier, current revision) and its sign-offs, under a per-patch lock.

use super::Database;
use super::DbError;
use graftbench_domain::workflow::Phase;
use graftbench_domain::{Category, RevisionNumber, Role, Sha256, SignOffKind, State, Tier, UserId};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use std::collections::HashMap;

fn corrupt(what: String) -> DbError {
    DbError::Corrupt(what)
}

/// A SHA-256 column, as the digest it must be.
fn digest(row: &AnyRow, column: &str) -> Result<Sha256, DbError> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|e: graftbench_domain::ids::NotSha256| corrupt(format!("{column}: {e}")))
}

/// The stored name of a phase.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Draft => "draft",
        Phase::Open => "open",
        Phase::Rejected => "rejected",
        Phase::Withdrawn => "withdrawn",
    }
}

fn parse_phase(name: &str) -> Result<Phase, DbError> {
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
    /// Why the current revision's analyses say no complete live patch can be built.
    pub analysis_problem: Option<String>,
    /// The latest revision.
    pub current_revision: RevisionNumber,
    /// Its SHA-256.
    pub current_sha256: Sha256,
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
    /// User name (as the audit trail names the actor).
    pub username: String,
    /// What it says.
    pub verdict: SignOffKind,
    /// Revision number.
    pub revision: RevisionNumber,
    /// Revision SHA-256.
    pub revision_sha256: Sha256,
    /// Comment or justification.
    pub comment: String,
    /// When.
    pub created_at: String,
    /// When withdrawn, if it was.
    pub withdrawn_at: Option<String>,
}

/// A patch's facts, with the newest error of an analysis of its current revision that
/// failed after its retries (in the current report version) and was not queued again.
static FACTS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT p.id, p.author_id, p.phase, p.state, p.category, p.tier,
            p.reported_at, p.cvss_vector, p.functions_to_replace, p.analysis_problem,
            r.number AS current_revision, r.diff_sha256 AS current_sha256,
            (SELECT j.error FROM jobs j
             WHERE j.kind = 'analyze' AND j.state = 'failed'
               AND j.key LIKE 'analyze:' || r.diff_sha256 || ':%:{version}'
               AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.key = j.key AND k.id > j.id)
             ORDER BY j.id DESC LIMIT 1) AS failed_analysis
        FROM patches p
        JOIN revisions r ON r.patch_id = p.id
            AND r.number = (SELECT MAX(number) FROM revisions WHERE patch_id = p.id)",
        version = analyzer::impact::REPORT_VERSION
    )
});

fn facts_from_row(row: &AnyRow) -> Result<PatchFacts, DbError> {
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
        analysis_problem: {
            let problem: Option<String> = row.try_get("analysis_problem")?;
            let failed: Option<String> = row.try_get("failed_analysis")?;
            // An analysis that could not be made leaves the scope unknown: that blocks
            // as a partial one does.
            problem.or(failed.map(|e| format!("an analysis failed after its retries: {e}")))
        },
        current_revision: RevisionNumber(row.try_get("current_revision")?),
        current_sha256: digest(row, "current_sha256")?,
    })
}

const SIGN_OFFS_SQL: &str =
    "SELECT s.id, s.user_id, u.display_name, u.username, s.verdict, s.revision,
        s.revision_sha256, s.comment, s.created_at, s.withdrawn_at
    FROM sign_offs s JOIN users u ON u.id = s.user_id
    WHERE s.patch_id = $1 ORDER BY s.id DESC";

fn sign_off_from_row(row: &AnyRow) -> Result<StoredSignOff, DbError> {
    Ok(StoredSignOff {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        user: row.try_get("display_name")?,
        username: row.try_get("username")?,
        verdict: {
            let verdict: String = row.try_get("verdict")?;
            SignOffKind::parse(&verdict).ok_or_else(|| corrupt(format!("verdict `{verdict}`")))?
        },
        revision: RevisionNumber(row.try_get("revision")?),
        revision_sha256: digest(row, "revision_sha256")?,
        comment: row.try_get("comment")?,
        created_at: row.try_get("created_at")?,
        withdrawn_at: row.try_get("withdrawn_at")?,
    })
}

/// A patch's facts and sign-offs, as read together.
pub struct ReviewRows {
    /// The facts.
    pub facts: PatchFacts,
    /// Its sign-offs, newest first.
    pub sign_offs: Vec<StoredSignOff>,
}

/// Takes the patch's review lock in `tx` (concurrent changes to one patch queue here)
/// and reads its facts and sign-offs; `None` when there is no such patch.
pub async fn lock(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
) -> Result<Option<ReviewRows>, DbError> {
    let bumped =
        sqlx::query("UPDATE patches SET review_version = review_version + 1 WHERE id = $1")
            .bind(patch_id)
            .execute(&mut **tx)
            .await?;
    if bumped.rows_affected() == 0 {
        return Ok(None);
    }
    read(tx, patch_id).await
}

/// A patch's facts and sign-offs, on `conn` (a transaction's, or the pool's).
pub async fn read(conn: &mut AnyConnection, patch_id: i64) -> Result<Option<ReviewRows>, DbError> {
    let Some(row) = sqlx::query(&format!("{} WHERE p.id = $1", *FACTS_SQL))
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

/// Every revision of a patch: (number, SHA-256), oldest first.
pub async fn revision_hashes(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
) -> Result<Vec<(i64, String)>, DbError> {
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

/// Stores where a patch is (draft, open, rejected, withdrawn).
pub async fn set_phase(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    phase: Phase,
) -> Result<(), DbError> {
    sqlx::query("UPDATE patches SET phase = $1 WHERE id = $2")
        .bind(phase_name(phase))
        .bind(patch_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores the state the rules computed.
pub async fn store_state(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    state: State,
) -> Result<(), DbError> {
    sqlx::query("UPDATE patches SET state = $1 WHERE id = $2")
        .bind(state.as_str())
        .bind(patch_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records `user`'s sign-off of `kind` on the current revision, replacing the same
/// person's earlier one of that family (approve/reject, or exception) on it.
pub async fn replace_sign_off(
    tx: &mut Transaction<'static, Any>,
    facts: &PatchFacts,
    user: UserId,
    kind: SignOffKind,
    comment: &str,
    now: &str,
) -> Result<(), DbError> {
    let kinds: &[SignOffKind] = if kind == SignOffKind::Exception {
        &[SignOffKind::Exception]
    } else {
        &[SignOffKind::Approve, SignOffKind::Reject]
    };
    for earlier in kinds {
        sqlx::query(
            "UPDATE sign_offs SET withdrawn_at = $1
             WHERE patch_id = $2 AND revision = $3 AND user_id = $4
               AND verdict = $5 AND withdrawn_at IS NULL",
        )
        .bind(now)
        .bind(facts.id)
        .bind(facts.current_revision.get())
        .bind(user.get())
        .bind(earlier.as_str())
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO sign_offs (patch_id, revision, revision_sha256, user_id,
             verdict, comment, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(facts.id)
    .bind(facts.current_revision.get())
    .bind(facts.current_sha256.to_string())
    .bind(user.get())
    .bind(kind.as_str())
    .bind(comment)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Withdraws `user`'s approval or rejection of `revision`; the verdict withdrawn, if any.
pub async fn withdraw_sign_off(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    revision: RevisionNumber,
    user: UserId,
    now: &str,
) -> Result<Option<String>, DbError> {
    let withdrawn: Vec<String> = sqlx::query_scalar(
        "UPDATE sign_offs SET withdrawn_at = $1
         WHERE patch_id = $2 AND revision = $3 AND user_id = $4
           AND verdict IN ('approve', 'reject') AND withdrawn_at IS NULL
         RETURNING verdict",
    )
    .bind(now)
    .bind(patch_id)
    .bind(revision.get())
    .bind(user.get())
    .fetch_all(&mut **tx)
    .await?;
    Ok(withdrawn.into_iter().next())
}

/// The writers of patch `$1` and the admins who made their accounts (`touched`): an admin
/// who creates an author account and hands it the patch has still written it.
macro_rules! touched_by_writers {
    () => {
        "WITH writers AS (
             SELECT author_id AS id FROM patches WHERE id = $1
             UNION SELECT submitted_by FROM revisions WHERE patch_id = $1
         ), touched AS (
             SELECT id FROM writers
             UNION SELECT u.created_by FROM users u JOIN writers w ON u.id = w.id
             WHERE u.created_by IS NOT NULL
         ) "
    };
}

/// Whether `user`'s `role` was granted or confirmed by someone who wrote the patch (or
/// one of its revisions), or by the admin who created such a writer's account.
pub async fn role_granted_by_a_writer(
    tx: &mut Transaction<'static, Any>,
    patch_id: i64,
    user: UserId,
    role: Role,
) -> Result<bool, DbError> {
    let by_a_writer: i64 = sqlx::query_scalar(concat!(
        touched_by_writers!(),
        "SELECT COUNT(*) FROM user_roles ur
         WHERE ur.user_id = $2 AND ur.role = $3
           AND (ur.granted_by IN (SELECT id FROM touched)
                OR ur.confirmed_by IN (SELECT id FROM touched))"
    ))
    .bind(patch_id)
    .bind(user.get())
    .bind(role.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok(by_a_writer > 0)
}

impl Database {
    /// The holders of `role` for whom [`role_granted_by_a_writer`] holds on patch
    /// `patch_id`, in one statement (the patch page's list of reviewers a review can be
    /// requested from leaves them out).
    pub async fn role_granted_by_a_writer_to(
        &self,
        patch_id: i64,
        role: Role,
    ) -> Result<Vec<UserId>, DbError> {
        let ids: Vec<i64> = sqlx::query_scalar(concat!(
            touched_by_writers!(),
            "SELECT DISTINCT ur.user_id FROM user_roles ur
             WHERE ur.role = $2
               AND (ur.granted_by IN (SELECT id FROM touched)
                    OR ur.confirmed_by IN (SELECT id FROM touched))"
        ))
        .bind(patch_id)
        .bind(role.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    /// The patches on which [`role_granted_by_a_writer`] holds for `user`'s `role`, in one
    /// statement (the dashboard asks it of every patch that would wait for `user`).
    pub async fn patches_whose_writers_granted(
        &self,
        user: UserId,
        role: Role,
    ) -> Result<std::collections::HashSet<i64>, DbError> {
        // A writer of a patch, or the admin who made the writer's account, granted or
        // confirmed the role.
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT w.patch_id FROM (
                 SELECT id AS patch_id, author_id AS writer FROM patches
                 UNION SELECT patch_id, submitted_by FROM revisions
             ) w
             JOIN users u ON u.id = w.writer
             JOIN user_roles ur ON ur.user_id = $1 AND ur.role = $2
             WHERE ur.granted_by = w.writer OR ur.confirmed_by = w.writer
                OR ur.granted_by = u.created_by OR ur.confirmed_by = u.created_by",
        )
        .bind(user.get())
        .bind(role.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().collect())
    }

    /// The ids of patches open for review, in order.
    pub async fn open_patch_ids(&self) -> Result<Vec<i64>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM patches WHERE phase = 'open' ORDER BY id")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// A patch's facts and sign-offs, for pages.
    pub async fn review_facts(
        &self,
        patch_id: i64,
    ) -> Result<Option<(PatchFacts, Vec<StoredSignOff>)>, DbError> {
        let mut conn = self.pool().acquire().await?;
        Ok(read(&mut conn, patch_id)
            .await?
            .map(|locked| (locked.facts, locked.sign_offs)))
    }

    /// Every patch's facts with its live exception sign-offs and `viewer`'s own live
    /// sign-offs (what the dashboard needs: eligibility, and whether a patch waits for
    /// the viewer).
    pub async fn all_review_facts(
        &self,
        viewer: UserId,
    ) -> Result<Vec<(PatchFacts, Vec<StoredSignOff>)>, DbError> {
        let rows = sqlx::query(&FACTS_SQL).fetch_all(self.pool()).await?;
        let mut sign_offs: HashMap<i64, Vec<StoredSignOff>> = HashMap::new();
        let live = sqlx::query(
            "SELECT s.id, s.user_id, u.display_name, u.username, s.verdict, s.revision, s.revision_sha256,
                    s.patch_id, s.comment, s.created_at, s.withdrawn_at
             FROM sign_offs s JOIN users u ON u.id = s.user_id
             WHERE s.withdrawn_at IS NULL AND (s.verdict = 'exception' OR s.user_id = $1)",
        )
        .bind(viewer.get())
        .fetch_all(self.pool())
        .await?;
        for row in &live {
            sign_offs
                .entry(row.try_get("patch_id")?)
                .or_default()
                .push(sign_off_from_row(row)?);
        }
        rows.iter()
            .map(|row| {
                let facts = facts_from_row(row)?;
                let own = sign_offs.remove(&facts.id).unwrap_or_default();
                Ok((facts, own))
            })
            .collect()
    }
}
