//! Analyses: every revision against each target its patch follows, as `analyze` jobs.
//!
//! A revision is queued for analysis in the transaction that stores it; a target's
//! registration or re-index queues the current revision of every open patch that follows
//! it; at start-up, whatever has no analysis in the current report version is queued.
//! A report is keyed by the diff's SHA-256, the target's build-id and the report version,
//! so the same diff analysed twice for one build gives one row. Recording it updates the
//! patch's functions to replace (the widest target's) and the state that depends on it.

use super::review;
use super::worker::{BoxFuture, JobHandler, Progress};
use crate::store::jobs::{enqueue_job_in, Job, NewJob};
use crate::store::targets::{self, NewAnalysis, Outcome};
use crate::store::{audit, Database, DbError, Tx};
use analyzer::cache;
use analyzer::impact::{self, AnalysisError, ImpactReport, TargetSource, REPORT_VERSION};
use analyzer::source::{SourceDir, SourceIndex};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::eligibility::Policy;
use graftbench_domain::PatchId;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The job kind.
pub const ANALYZE: &str = "analyze";

/// The most hunks one analysis takes.
pub const MAX_HUNKS: usize = 2000;

/// What an analysis job is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnalyzePayload {
    patch_id: i64,
    revision: i64,
    sha256: String,
    target_id: i64,
    build_id: String,
}

/// What it produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnalyzeResult {
    outcome: Outcome,
    functions_to_replace: Option<i64>,
    summary: String,
    report: Option<serde_json::Value>,
}

fn job_for(patch_id: i64, revision: i64, sha256: &str, target_id: i64, build_id: &str) -> NewJob {
    NewJob {
        kind: ANALYZE.to_owned(),
        key: format!("{ANALYZE}:{sha256}:{build_id}:{REPORT_VERSION}"),
        payload: serde_json::json!(AnalyzePayload {
            patch_id,
            revision,
            sha256: sha256.to_owned(),
            target_id,
            build_id: build_id.to_owned(),
        }),
        max_attempts: 3,
        timeout: Duration::from_secs(600),
    }
}

async fn analysed(tx: &mut Tx, sha256: &str, build_id: &str) -> Result<bool, DbError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM analyses WHERE diff_sha256 = $1 AND build_id = $2 AND report_version = $3",
    )
    .bind(sha256)
    .bind(build_id)
    .bind(i64::from(REPORT_VERSION))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// Queues the analysis of revision `revision` (`sha256`) of patch `patch_id` against each
/// target it follows, in `tx`: the jobs queued.
pub async fn queue_for_revision(
    tx: &mut Tx,
    patch_id: i64,
    revision: i64,
    sha256: &str,
) -> Result<usize, DbError> {
    let mut queued = 0;
    for target in targets::targets_of_patch_in(tx, patch_id).await? {
        if analysed(tx, sha256, &target.build_id).await? {
            continue;
        }
        enqueue_job_in(
            tx,
            &job_for(patch_id, revision, sha256, target.id, &target.build_id),
        )
        .await?;
        queued += 1;
    }
    Ok(queued)
}

/// Queues, in `tx`, the analysis of the current revision of every open patch that
/// follows target `target_id` (a new or re-indexed target). A re-indexed target's
/// analyses are made again: the index may differ.
pub async fn queue_for_target(tx: &mut Tx, target_id: i64) -> Result<(), DbError> {
    let target_build: String = sqlx::query_scalar("SELECT build_id FROM targets WHERE id = $1")
        .bind(target_id)
        .fetch_one(&mut **tx)
        .await?;
    let rows = sqlx::query(
        "SELECT r.patch_id, r.number, r.diff_sha256 FROM revisions r
         JOIN patches p ON p.id = r.patch_id
         WHERE p.phase IN ('draft', 'open')
           AND r.number = (SELECT MAX(number) FROM revisions WHERE patch_id = r.patch_id)
           AND (NOT EXISTS (SELECT 1 FROM patch_targets pt WHERE pt.patch_id = p.id)
                OR EXISTS (SELECT 1 FROM patch_targets pt
                           WHERE pt.patch_id = p.id AND pt.target_id = $1))
         ORDER BY r.patch_id",
    )
    .bind(target_id)
    .fetch_all(&mut **tx)
    .await?;
    // A rebuilt index may answer differently: its old analyses go.
    sqlx::query("DELETE FROM analyses WHERE target_id = $1 AND report_version = $2")
        .bind(target_id)
        .bind(i64::from(REPORT_VERSION))
        .execute(&mut **tx)
        .await?;
    for row in rows {
        let (patch, number, sha): (i64, i64, String) = (
            row.try_get("patch_id")?,
            row.try_get("number")?,
            row.try_get("diff_sha256")?,
        );
        enqueue_job_in(tx, &job_for(patch, number, &sha, target_id, &target_build)).await?;
    }
    Ok(())
}

/// Queues what has no analysis in the current report version (at start-up: a new
/// Graftbench may report differently).
pub async fn queue_missing(db: &Database) -> Result<usize, DbError> {
    let mut queued = 0;
    for (patch, number, sha) in db.current_open_revisions().await? {
        let mut tx = db.begin().await?;
        queued += queue_for_revision(&mut tx, patch, number, &sha).await?;
        tx.commit().await?;
    }
    Ok(queued)
}

/// The file beside a target's index that holds its source's identifier index.
pub fn source_index_path(index_path: &Path) -> PathBuf {
    index_path.with_file_name("source.gbsrc")
}

/// What a target offers an analysis: its index, and its source when it has one.
#[derive(Debug, Clone)]
struct TargetFiles {
    index_path: PathBuf,
    source_dir: Option<PathBuf>,
}

/// One line for people on a report: what to replace, or why nothing can be said.
fn outcome_of(report: &ImpactReport) -> (Outcome, String) {
    let not_applied: Vec<String> = report
        .hunks
        .iter()
        .filter(|h| !h.analysed)
        .map(|h| format!("{} hunk {} (line {})", h.path, h.hunk, h.fix_line))
        .collect();
    let functions = report.replace.len();
    if !not_applied.is_empty() {
        let shown: Vec<&str> = not_applied.iter().take(3).map(String::as_str).collect();
        let more = not_applied.len().saturating_sub(3);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return (
            Outcome::NotApplicable,
            format!(
                "{} of {} hunk(s) do not apply to this build ({}{more}): no live patch of this fix for it",
                not_applied.len(),
                report.hunks.len(),
                shown.join(", ")
            ),
        );
    }
    if !report.not_analysable.is_empty() {
        return (
            Outcome::Incomplete,
            format!(
                "{functions} function(s) to replace, but {} changed line(s) could not be tied to code{}",
                report.not_analysable.len(),
                if report.basis == analyzer::impact::LineBasis::AsWritten {
                    " (the target has no source tree)"
                } else {
                    ""
                }
            ),
        );
    }
    if report.objects.is_empty() {
        return (Outcome::NoCode, "no code of this build changes".to_owned());
    }
    (
        Outcome::Analysed,
        format!(
            "{functions} function(s) to replace in {}",
            report.objects.join(", ")
        ),
    )
}

/// The analysis of one diff against one target, off the async workers: mapped onto the
/// target's own source when it has one, else checked against its debug information.
fn analyse(diff: &[u8], files: &TargetFiles) -> Result<AnalyzeResult, String> {
    let patch = analyzer::patch::parse(diff).map_err(|e| format!("the diff: {e}"))?;
    // Placing a hunk reads its file; the report has a line per hunk. A live patch of
    // more hunks than this is not one a reviewer can check either.
    let hunks: usize = patch.files.iter().map(|f| f.hunks.len()).sum();
    if hunks > MAX_HUNKS {
        return Ok(AnalyzeResult {
            outcome: Outcome::Failed,
            functions_to_replace: None,
            summary: format!("the fix has {hunks} hunks; an analysis takes at most {MAX_HUNKS}"),
            report: None,
        });
    }
    let changed = impact::changed_lines(&patch);
    let paths: Vec<&str> = changed.iter().map(|c| c.path.as_str()).collect();
    let source = files
        .source_dir
        .as_deref()
        .map(SourceDir::new)
        .transpose()
        .map_err(|e| format!("the target's source: {e}"))?;
    let source_index =
        match &source {
            Some(_) => {
                let path = source_index_path(&files.index_path);
                match cache::map(&path) {
                    Ok(bytes) => Some(SourceIndex::from_bytes(&bytes).map_err(|e| {
                        format!("the target's source index {}: {e}", path.display())
                    })?),
                    Err(_) => None,
                }
            }
            None => None,
        };
    // With the source, what the fix changes may expand anywhere (a header's macro in a
    // module): every object is read.
    let which = if source.is_some() {
        cache::Objects::All
    } else {
        cache::Objects::For(&paths)
    };
    let index = cache::read(&files.index_path, which).map_err(|e| e.to_string())?;
    let target_source = source.as_ref().map(|tree| TargetSource {
        tree,
        index: source_index.as_ref(),
    });
    let outcome = impact::analyze_on(&patch, &index, target_source);
    // Hundreds of thousands of small allocations, freed on another thread.
    std::thread::spawn(move || drop(index));
    match outcome {
        Ok(report) => {
            let (outcome, summary) = outcome_of(&report);
            Ok(AnalyzeResult {
                outcome,
                functions_to_replace: Some(report.replace.len() as i64),
                summary,
                report: Some(serde_json::to_value(&report).map_err(|e| e.to_string())?),
            })
        }
        Err(e @ (AnalysisError::NoKnownFile { .. } | AnalysisError::NothingChanged)) => {
            Ok(AnalyzeResult {
                outcome: Outcome::NoCode,
                functions_to_replace: None,
                summary: e.to_string(),
                report: None,
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `analyze` jobs.
pub struct AnalyzeHandler {
    /// The store: the diff and the target.
    pub db: Database,
    /// The policy the patches' states are computed under.
    pub policy: Arc<Policy>,
    /// The target root in-house builds' files must still be under.
    pub settings: Arc<super::targets::TargetSettings>,
}

impl JobHandler for AnalyzeHandler {
    fn kind(&self) -> &'static str {
        ANALYZE
    }

    fn run(
        &self,
        job: Job,
        progress: Progress,
    ) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let db = self.db.clone();
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            let payload: AnalyzePayload = super::worker::payload(&job)?;
            let target = super::targets::target_for_job(&db, payload.target_id).await?;
            let revision = db
                .revision(payload.patch_id, payload.revision)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "revision {} of patch {} is gone",
                        payload.revision, payload.patch_id
                    )
                })?;
            super::targets::check_files(&settings, &target)?;
            progress.set("analysing", 0.1);
            let files = TargetFiles {
                index_path: PathBuf::from(&target.index_path),
                source_dir: target.source_dir.as_ref().map(PathBuf::from),
            };
            let result = tokio::task::spawn_blocking(move || analyse(&revision.diff, &files))
                .await
                .map_err(|e| format!("the analysis stopped: {e}"))??;
            serde_json::to_value(&result).map_err(|e| e.to_string())
        })
    }

    fn record<'a>(
        &'a self,
        tx: &'a mut Tx,
        job: &'a Job,
        result: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let payload: AnalyzePayload = super::worker::payload(job)?;
            let result: AnalyzeResult =
                serde_json::from_value(result.clone()).map_err(|e| e.to_string())?;
            record(tx, &payload, &result, &self.policy)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

async fn record(
    tx: &mut Tx,
    payload: &AnalyzePayload,
    result: &AnalyzeResult,
    policy: &Policy,
) -> Result<(), review::ReviewError> {
    let new = targets::insert_analysis(
        tx,
        &NewAnalysis {
            diff_sha256: &payload.sha256,
            target_id: payload.target_id,
            build_id: &payload.build_id,
            report_version: i64::from(REPORT_VERSION),
            outcome: result.outcome,
            functions_to_replace: result.functions_to_replace,
            summary: &result.summary,
            report: result.report.as_ref(),
        },
    )
    .await?;
    if !new {
        return Ok(());
    }
    let target: String = sqlx::query_scalar("SELECT name FROM targets WHERE id = $1")
        .bind(payload.target_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::from)?;
    // Every open patch whose current revision is this diff takes the new scope.
    for (patch_id, revision) in targets::patches_at_current_diff_in(tx, &payload.sha256).await? {
        review::lock_for_system(tx, patch_id).await?;
        targets::refresh_scope_in(tx, patch_id).await?;
        audit::append(
            tx,
            "system",
            AuditAction::AnalysisRecorded,
            &AuditSubject::Patch(PatchId(patch_id)),
            &serde_json::json!({
                "revision": revision,
                "sha256": payload.sha256,
                "target": target,
                "build_id": payload.build_id,
                "report_version": REPORT_VERSION,
                "outcome": result.outcome.as_str(),
                "functions_to_replace": result.functions_to_replace,
            }),
        )
        .await?;
        review::settle_as_system(tx, patch_id, policy).await?;
    }
    Ok(())
}
