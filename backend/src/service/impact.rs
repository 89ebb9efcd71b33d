//! The impact panel of the patch page: one revision against each target its patch is
//! analysed for (the analysis job while it runs, then the report's counts and how the
//! targets differ), and the graph of one target's report ([`crate::impact_graph`]).

use crate::impact_graph;
use crate::service::analysis_queue::ANALYZE;
use crate::service::targets::{job_summary, REGISTER};
use crate::store::targets::Analysis;
use crate::store::Database;
use analyzer::impact::{ImpactReport, REPORT_VERSION};
use graftbench_app::model::{AppError, ImpactView, PitfallView, ReplaceSetChange, TargetImpact};
use std::collections::{BTreeMap, BTreeSet};

/// Pitfalls shown on a revision's lines, at most (a diff of thousands of hunks that each
/// shift the lines below has as many line-shift pitfalls; the first ones say it).
const MAX_PITFALLS_SHOWN: usize = 500;

/// Characters of a graph search kept.
const MAX_SEARCH_CHARS: usize = 128;

/// Differences spelled out per pair of targets, at most.
const DIFFERENCES_LISTED: usize = 8;

/// What the impact panel asks for.
#[derive(Debug, Clone)]
pub struct ImpactQuery {
    /// The patch.
    pub patch: i64,
    /// Its revision (the latest when `None`).
    pub revision: Option<i64>,
    /// The target whose graph to draw (the first with a report when `None`).
    pub target: Option<String>,
    /// The search over the graph's lists.
    pub query: String,
    /// Why there is no target, when the server knows.
    pub no_target_notice: Option<String>,
}

/// A report read back, with its target.
struct Read {
    target: String,
    report: ImpactReport,
}

fn internal(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "impact panel");
    AppError::Internal
}

/// The active targets patch `patch` is analysed for.
pub async fn targets_of(
    db: &Database,
    patch: i64,
) -> Result<Vec<crate::store::targets::Target>, AppError> {
    db.targets_of_patch(patch).await.map_err(internal)
}

/// The current analyses of `sha256` (a revision of a patch following `targets`): on
/// those targets, of their current build, in this report version.
async fn current_analyses(
    db: &Database,
    targets: &[crate::store::targets::Target],
    sha256: &str,
) -> Result<Vec<Analysis>, AppError> {
    if targets.is_empty() {
        return Ok(Vec::new()); // nothing to read: no analysis is current without a target
    }
    Ok(db
        .analyses_of(sha256)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|a| {
            a.report_version == i64::from(REPORT_VERSION)
                && targets
                    .iter()
                    .any(|t| t.id == a.target_id && t.build_id == a.build_id)
        })
        .collect())
}

/// The impact panel for `query`.
pub async fn impact_view(db: &Database, query: ImpactQuery) -> Result<ImpactView, AppError> {
    let Some((revision, sha256)) = db
        .revision_numbered(query.patch, query.revision)
        .await
        .map_err(internal)?
    else {
        return Err(AppError::NotFound(match query.revision {
            Some(number) => format!("revision {number} of patch {}", query.patch),
            None => format!("patch {}", query.patch),
        }));
    };
    let targets = targets_of(db, query.patch).await?;
    let analyses = current_analyses(db, &targets, &sha256).await?;
    // The analysis jobs say where each target's row stands: none to read without targets.
    let jobs = if targets.is_empty() {
        Vec::new()
    } else {
        db.jobs_with_key_prefix(&format!("{ANALYZE}:{sha256}:"), 200)
            .await
            .map_err(internal)?
    };
    // The diff (read and checked against its hash) only when a report needs it for the
    // graph: most views of most patches have none yet.
    let diff = if analyses.iter().any(|a| a.report.is_some()) {
        db.revision(query.patch, revision)
            .await
            .map_err(internal)?
            .map(|stored| stored.diff)
    } else {
        None
    };

    // Reports are parsed (and the graph drawn) off the async workers.
    let wanted = query.target.clone();
    // A function name is short; a longer search is cut rather than refused.
    let search: String = query.query.trim().chars().take(MAX_SEARCH_CHARS).collect();
    let rows: Vec<(String, Option<crate::store::jobs::Job>, Option<Analysis>)> = targets
        .iter()
        .map(|t| {
            let analysis = analyses
                .iter()
                .find(|a| a.target_id == t.id && a.build_id == t.build_id)
                .cloned();
            // Newest first: the job of this build and report version.
            let job = jobs
                .iter()
                .find(|j| {
                    j.key
                        .ends_with(&format!(":{}:{REPORT_VERSION}", t.build_id))
                })
                .cloned();
            (t.name.clone(), job, analysis)
        })
        .collect();
    // Without targets, the registration under way (or the last one, failed) says when
    // the graph comes, or why it does not.
    let registration = if rows.is_empty() {
        db.jobs_with_key_prefix(&format!("{REGISTER}:"), 1)
            .await
            .map_err(internal)?
            .into_iter()
            .next()
            .filter(|job| job.state != crate::store::jobs::JobState::Done)
            .map(job_summary)
    } else {
        None
    };
    let notice = query.no_target_notice.clone();
    // Without a diff there is no report to parse nor graph to draw: a few rows, built
    // here rather than handed to another thread.
    let mut view = if diff.is_some() {
        tokio::task::spawn_blocking(move || build_view(revision, rows, diff, wanted, &search))
            .await
            .map_err(internal)??
    } else {
        build_view(revision, rows, None, wanted, &search)?
    };
    if view.targets.is_empty() {
        view.no_graph = Some(match (&registration, notice) {
            (Some(job), _) if job.is_active() => format!(
                "No graph yet: the kernel target is being registered ({}); the fix is \
                 analysed as soon as it is ready.",
                job.label
            ),
            (Some(job), _) => format!(
                "No graph: the kernel target could not be registered ({}): {}",
                job.label,
                job.error.clone().unwrap_or_else(|| job.state.clone())
            ),
            (None, Some(notice)) => format!("No graph: {notice}"),
            (None, None) => "No graph: no kernel target is registered, so the fix has nothing \
                             to be analysed against. A release manager adds one on the \
                             Targets page."
                .to_owned(),
        });
        view.registration = registration;
    }
    Ok(view)
}

fn build_view(
    revision: i64,
    rows: Vec<(String, Option<crate::store::jobs::Job>, Option<Analysis>)>,
    diff: Option<Vec<u8>>,
    wanted: Option<String>,
    search: &str,
) -> Result<ImpactView, AppError> {
    let mut reads: Vec<Read> = Vec::new();
    let mut matrix: Vec<TargetImpact> = Vec::new();
    for (target, job, analysis) in rows {
        let mut row = TargetImpact {
            target: target.clone(),
            state: "queued".to_owned(),
            job: None,
            summary: String::new(),
            replace: 0,
            cannot_replace: 0,
            pitfalls: 0,
            hunks_not_applied: 0,
            differences: Vec::new(),
        };
        match (analysis, job) {
            (Some(analysis), _) => {
                row.state = analysis.outcome.as_str().to_owned();
                row.summary = analysis.summary;
                if let Some(report) = analysis
                    .report
                    .and_then(|json| serde_json::from_value::<ImpactReport>(json).ok())
                {
                    row.replace = report.replace.len();
                    row.cannot_replace = report.unpatchable.len();
                    row.pitfalls = report.pitfalls.len();
                    row.hunks_not_applied = report.hunks.iter().filter(|h| !h.analysed).count();
                    reads.push(Read { target, report });
                }
            }
            (None, Some(job)) => {
                row.state = job.state.as_str().to_owned();
                let mut summary = job_summary(job);
                summary.label = format!("analyse for {}", row.target);
                row.summary = summary.error.clone().unwrap_or_default();
                row.job = Some(summary);
            }
            (None, None) => {
                row.summary = "not analysed yet".to_owned();
            }
        }
        matrix.push(row);
    }
    differences(&mut matrix, &reads);

    let selected = wanted
        .filter(|name| matrix.iter().any(|r| &r.target == name))
        .or_else(|| reads.first().map(|r| r.target.clone()))
        .or_else(|| matrix.first().map(|r| r.target.clone()));
    let chosen = selected
        .as_ref()
        .and_then(|name| reads.iter().find(|r| &r.target == name));
    let (graph, no_graph) = match chosen {
        Some(read) => {
            // Read by the caller whenever a report exists, as this one does.
            let Some(diff) = diff else {
                tracing::error!("an impact report without its diff");
                return Err(AppError::Internal);
            };
            let patch = analyzer::patch::parse(&diff).map_err(|e| {
                tracing::error!(error = %e, "a stored revision no longer parses");
                AppError::Internal
            })?;
            (
                Some(impact_graph::build(&read.report, &patch, search)),
                None,
            )
        }
        // Without any target, the caller says why (a registration under way, or none).
        None => {
            let why = selected
                .as_ref()
                .and_then(|name| matrix.iter().find(|r| &r.target == name))
                .map(|row| match &row.job {
                    Some(job) if job.is_active() => {
                        format!("Analysing the fix for {}…", row.target)
                    }
                    _ => format!("No report for {}: {}", row.target, row.summary),
                });
            (None, why)
        }
    };
    Ok(ImpactView {
        revision,
        registration: None,
        targets: matrix,
        selected,
        graph,
        no_graph,
        query: search.to_owned(),
    })
}

/// A report's replace set (`object:symbol`) and its hunks not applied (path, number).
type ReportSets<'r> = (BTreeSet<String>, BTreeSet<(&'r str, u32)>);

/// Spells out, for each target, what its report has that another target's has not:
/// functions replaced only here (inlined here, out of line there), hunks that do not
/// apply here.
fn differences(matrix: &mut [TargetImpact], reads: &[Read]) {
    // Each report's replace set and hunks not applied, once.
    let sets: Vec<ReportSets<'_>> = reads
        .iter()
        .map(|read| {
            let replaced = read
                .report
                .replace
                .iter()
                .map(|r| format!("{}:{}", r.object, r.symbol))
                .collect();
            let not_applied = read
                .report
                .hunks
                .iter()
                .filter(|h| !h.analysed)
                .map(|h| (h.path.as_str(), h.hunk))
                .collect();
            (replaced, not_applied)
        })
        .collect();
    for (read, (mine, my_hunks)) in reads.iter().zip(&sets) {
        let Some(row) = matrix.iter_mut().find(|r| r.target == read.target) else {
            continue;
        };
        for (other, (theirs, their_hunks)) in reads
            .iter()
            .zip(&sets)
            .filter(|(o, _)| o.target != read.target)
        {
            for (path, hunk) in my_hunks.difference(their_hunks) {
                row.differences.push(format!(
                    "hunk {hunk} of {path} does not apply here; it does on {}",
                    other.target
                ));
            }
            let only: Vec<&String> = mine.difference(theirs).collect();
            if !only.is_empty() {
                let names: Vec<&str> = only
                    .iter()
                    .take(DIFFERENCES_LISTED)
                    .map(|s| s.split_once(':').map_or(s.as_str(), |(_, name)| name))
                    .collect();
                let more = only.len().saturating_sub(DIFFERENCES_LISTED);
                let why = read
                    .report
                    .replace
                    .iter()
                    .find(|r| format!("{}:{}", r.object, r.symbol) == *only[0])
                    .map(|r| r.reasons.join(", "))
                    .unwrap_or_default();
                row.differences.push(format!(
                    "replaces {}{} that {} does not{}",
                    names.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    },
                    other.target,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" (here: {why})")
                    }
                ));
            }
        }
    }
}

/// The pitfalls the current analyses of revision `number` of patch `patch` found, each
/// on its diff line, merged over the targets that found it, in diff order.
pub async fn pitfalls_of(
    db: &Database,
    patch: i64,
    number: i64,
) -> Result<Vec<PitfallView>, AppError> {
    let Some((number, sha256)) = db
        .revision_numbered(patch, Some(number))
        .await
        .map_err(internal)?
    else {
        return Ok(Vec::new());
    };
    let targets = targets_of(db, patch).await?;
    pitfalls_on(db, patch, (number, &sha256), &targets).await
}

/// [`pitfalls_of`] for a caller that has read the patch's active targets and knows the
/// revision's SHA-256.
pub async fn pitfalls_on(
    db: &Database,
    patch: i64,
    (number, sha256): (i64, &str),
    targets: &[crate::store::targets::Target],
) -> Result<Vec<PitfallView>, AppError> {
    let analyses: Vec<Analysis> = current_analyses(db, targets, sha256)
        .await?
        .into_iter()
        .filter(|a| a.report.is_some())
        .collect();
    if analyses.is_empty() {
        return Ok(Vec::new());
    }
    // Only now the bytes (checked against their hash): most pages have no report.
    let Some(stored) = db.revision(patch, number).await.map_err(internal)? else {
        return Ok(Vec::new());
    };
    let diff = stored.diff;
    tokio::task::spawn_blocking(move || place_all(&diff, analyses))
        .await
        .map_err(internal)?
}

fn place_all(diff: &[u8], analyses: Vec<Analysis>) -> Result<Vec<PitfallView>, AppError> {
    let patch = analyzer::patch::parse(diff).map_err(|e| {
        tracing::error!(error = %e, "a stored revision no longer parses");
        AppError::Internal
    })?;
    // (file, old, new, kind) -> the view.
    let mut merged: BTreeMap<(usize, Option<u32>, Option<u32>, String), PitfallView> =
        BTreeMap::new();
    for analysis in analyses {
        let Some(report) = analysis
            .report
            .and_then(|json| serde_json::from_value::<ImpactReport>(json).ok())
        else {
            continue;
        };
        for placed in impact_graph::place_pitfalls(&report, &patch) {
            let kind = placed.pitfall.kind;
            let key = (placed.file, placed.old, placed.new, kind.name().to_owned());
            let (guide_title, _) = kind.guide_section();
            let view = merged.entry(key).or_insert_with(|| PitfallView {
                anchor: String::new(),
                kind: kind.name().to_owned(),
                file: placed.file,
                path: placed.pitfall.path.clone(),
                old: placed.old,
                new: placed.new,
                why: kind.why_it_matters().to_owned(),
                detail: placed.pitfall.detail.clone(),
                guide_title: guide_title.to_owned(),
                guide_url: kind.guide_url(),
                targets: Vec::new(),
                considered: Vec::new(),
            });
            if !view.targets.contains(&analysis.target) {
                view.targets.push(analysis.target.clone());
            }
        }
    }
    Ok(merged
        .into_values()
        .take(MAX_PITFALLS_SHOWN)
        .enumerate()
        .map(|(i, mut view)| {
            view.anchor = format!("pitfall-{}", i + 1);
            view
        })
        .collect())
}

/// The functions to replace in each target's current analysis of `sha256`, by target
/// name: `object:symbol` (`:N` appended for an `old_sympos`), or `None` without a report.
async fn replace_sets(
    db: &Database,
    patch: i64,
    sha256: &str,
) -> Result<BTreeMap<String, Option<BTreeSet<String>>>, AppError> {
    let mut sets = BTreeMap::new();
    let targets = targets_of(db, patch).await?;
    for analysis in current_analyses(db, &targets, sha256).await? {
        let set = analysis
            .report
            .and_then(|json| json.get("replace").cloned())
            .and_then(|replace| {
                serde_json::from_value::<Vec<analyzer::impact::Replacement>>(replace).ok()
            })
            .map(|replace| {
                replace
                    .iter()
                    .map(|r| match r.old_sympos {
                        0 => format!("{}:{}", r.object, r.symbol),
                        n => format!("{}:{}:{n}", r.object, r.symbol),
                    })
                    .collect()
            });
        sets.insert(analysis.target, set);
    }
    Ok(sets)
}

/// How the functions to replace changed from the revision `from_sha` to `to_sha` of
/// patch `patch`, per target either has a current analysis on.
pub async fn replace_set_changes(
    db: &Database,
    patch: i64,
    from_sha: &str,
    to_sha: &str,
) -> Result<Vec<ReplaceSetChange>, AppError> {
    let before = replace_sets(db, patch, from_sha).await?;
    let after = replace_sets(db, patch, to_sha).await?;
    let targets: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    Ok(targets
        .into_iter()
        .map(|target| {
            let old = before.get(target).cloned().flatten();
            let new = after.get(target).cloned().flatten();
            match (old, new) {
                (Some(old), Some(new)) => ReplaceSetChange {
                    target: target.clone(),
                    added: new.difference(&old).cloned().collect(),
                    removed: old.difference(&new).cloned().collect(),
                    kept: old.intersection(&new).count(),
                    missing: None,
                },
                (old, _) => ReplaceSetChange {
                    target: target.clone(),
                    added: Vec::new(),
                    removed: Vec::new(),
                    kept: 0,
                    missing: Some(
                        if old.is_none() {
                            "the older revision has no report for this target"
                        } else {
                            "the newer revision has no report for this target (yet)"
                        }
                        .to_owned(),
                    ),
                },
            }
        })
        .collect())
}
