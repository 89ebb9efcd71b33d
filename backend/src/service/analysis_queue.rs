//! Queueing analyses: every revision against each target its patch follows, as
//! `analyze` jobs ([`super::analysis`] runs them).
//!
//! A revision is queued for analysis in the transaction that stores it; a target's
//! registration or re-index queues the current revision of every open patch that follows
//! it; at start-up, whatever has no analysis in the current report version is queued.
//! Apart from the analysis itself so that storing a revision (in `review`) does not
//! depend on recording an analysis (which settles the review).

use crate::store::jobs::{enqueue_job_in, NewJob};
use crate::store::targets;
use crate::store::{Database, DbError, Tx};
use analyzer::impact::REPORT_VERSION;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The job kind.
pub const ANALYZE: &str = "analyze";

/// What an analysis job is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzePayload {
    /// The patch that asked.
    pub patch_id: i64,
    /// Its revision.
    pub revision: i64,
    /// The revision's SHA-256.
    pub sha256: String,
    /// The target.
    pub target_id: i64,
    /// Its build-id.
    pub build_id: String,
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
