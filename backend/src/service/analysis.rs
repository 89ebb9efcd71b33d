//! Analyses: every revision against each target its patch follows, run as `analyze` jobs
//! (queued by [`super::analysis_queue`]).
//!
//! A report is keyed by the diff's SHA-256, the target's build-id and the report version,
//! so the same diff analysed twice for one build gives one row. Recording it updates the
//! patch's functions to replace (the widest target's) and the state that depends on it.

use super::analysis_queue::{source_index_path, AnalyzePayload, ANALYZE};
use super::review;
use super::worker::{BoxFuture, JobHandler, Progress};
use crate::store::jobs::Job;
use crate::store::targets::{self, NewAnalysis, Outcome};
use crate::store::{audit, Database, DbError, Tx};
use analyzer::cache;
use analyzer::impact::{self, AnalysisError, ImpactReport, TargetSource, REPORT_VERSION};
use analyzer::source::{KernelConfig, SourceDir, SourceIndex};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::eligibility::Policy;
use graftbench_domain::PatchId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The most hunks one analysis takes.
pub const MAX_HUNKS: usize = 2000;

/// What it produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnalyzeResult {
    outcome: Outcome,
    functions_to_replace: Option<i64>,
    summary: String,
    report: Option<serde_json::Value>,
}

/// What a target offers an analysis: its index, its source when it has one, and its
/// kbuild directory (whose `.config` says what the build compiles).
#[derive(Debug, Clone)]
struct TargetFiles {
    index_path: PathBuf,
    source_dir: Option<PathBuf>,
    kbuild_dir: Option<PathBuf>,
}

/// The build's configuration from its kbuild directory: `.config` (a Debian headers
/// package and a build tree have it), else `include/generated/autoconf.h`. None when the
/// directory has neither: the analysis then follows every conditional branch.
fn build_config(kbuild: &std::path::Path) -> Result<Option<KernelConfig>, String> {
    for candidate in [".config", "include/generated/autoconf.h"] {
        let path = kbuild.join(candidate);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        // Its own regular file, not a link: its lines may be quoted in an error every
        // user sees, and a link could make that another file's.
        if !meta.is_file() {
            return Err(format!(
                "the target's {candidate} is not a regular file (a link?)"
            ));
        }
        return KernelConfig::read(&path)
            .map(Some)
            .map_err(|e| format!("the target's {candidate}: {e}"));
    }
    Ok(None)
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
    // What the build's configuration leaves out, said with the reason: a reviewer should
    // see why a fix needs no live patch here.
    let nothing_else = report.changed_functions.is_empty()
        && report.data_changes.is_empty()
        && report.expansions.iter().all(|e| e.functions.is_empty());
    if let Some(first) = report.not_compiled.first().filter(|_| nothing_else) {
        return (
            Outcome::NoCode,
            format!(
                "no code of this build changes: {} changed line(s) are not compiled in its configuration ({})",
                report.not_compiled.len(),
                first.why
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
    // Only with the source: the configuration decides which of its lines are compiled.
    let config = match (&source, &files.kbuild_dir) {
        (Some(_), Some(kbuild)) => build_config(kbuild)?,
        _ => None,
    };
    let target_source = source.as_ref().map(|tree| TargetSource {
        tree,
        index: source_index.as_ref(),
        config: config.as_ref(),
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
        let failed = job.clone();
        Box::pin(async move {
            let redactor = Arc::clone(&settings);
            let outcome = async move {
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
                    kbuild_dir: target.kbuild_dir.as_ref().map(PathBuf::from),
                };
                let result = tokio::task::spawn_blocking(move || analyse(&revision.diff, &files))
                    .await
                    .map_err(|e| format!("the analysis stopped: {e}"))??;
                serde_json::to_value(&result).map_err(|e| e.to_string())
            }
            .await;
            outcome.map_err(|e| redactor.job_error(&failed, e))
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
